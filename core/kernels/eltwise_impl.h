// The bodies of kernels/eltwise.h, included by eltwise_ref.cpp and eltwise_avx2.cpp only,
// each with its own QL_ELTWISE_NS and its own -m flags, so every vec8 helper is inlined
// into a caller of the same ISA (what makes the two variants bit-identical, and what
// clang requires for 32-byte vectors passed by value).
#include <cmath>
#include <cstring>

#include "kernels/eltwise.h"
#include "vec8.h"

#ifndef QL_ELTWISE_NS
#error "define QL_ELTWISE_NS before including eltwise_impl.h"
#endif

namespace quantlens::kernels::QL_ELTWISE_NS {

namespace {

using namespace vec8;

// exp as 2^k * exp(r), r in [-ln2/2, ln2/2], degree-6 Taylor (< 2e-7 relative); k is
// rounded with the 1.5*2^23 trick. Inputs are clamped to [-87, 88], so it never overflows.
QL_VEC_INLINE v8f vexp(v8f x)
{
    x = vmax(vmin(x, splat(88.0f)), splat(-87.0f));
    const v8f k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const v8f r = x - k * 0.693145751953125f - k * 1.428606765330187e-06f;
    v8f p = splat(1.0f / 720.0f);
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const v8i e = (__builtin_convertvector(k, v8i) + 127) << 23;
    return p * asF(e);
}

// GELU in the exact erf form (transformers' "gelu" for BERT, RoBERTa and DistilBERT), with
// erf(z) = 1 - poly(t) exp(-z^2), t = 1/(1 + p|z|) (Abramowitz-Stegun 7.1.26, |error| <= 1.5e-7,
// below float32's resolution of the 0.5 x (1 + erf) it feeds).
QL_VEC_INLINE v8f vgelu(v8f v)
{
    const v8f z = v * 0.70710678118654752f;
    const v8i zi = asI(z);
    const v8f a = asF(zi & 0x7fffffff);
    const v8f t = 1.0f / (1.0f + 0.3275911f * a);
    const v8f poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    const v8f m = 1.0f - poly * vexp(-a * a);  // erf(|z|) >= 0
    const v8f e = asF(asI(m) | (zi & int32_t(0x80000000u)));  // copysign
    return 0.5f * v * (1.0f + e);
}

// Applies f to n floats 8 at a time; the last partial block goes through a zero-padded copy.
template <class F>
QL_VEC_INLINE void map8(float* x, int64_t n, F f)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        store8(x + i, f(load8(x + i), i));
    if (i < n) {
        float buf[8] = {};
        std::memcpy(buf, x + i, size_t(n - i) * sizeof(float));
        const v8f r = f(load8(buf), i);
        store8(buf, r);
        std::memcpy(x + i, buf, size_t(n - i) * sizeof(float));
    }
}

// torch.nn.LayerNorm over the last dimension (biased variance), with float partial sums in
// 8 lanes: for n = 768 they lose nothing that matters against the 1e-4 tolerance.
void layerNormRow(float* v, int64_t n, const float* g, const float* b, float eps)
{
    v8f acc = splat(0.0f);
    float sum = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc += load8(v + i);
    for (; i < n; ++i)
        sum += v[i];
    const float mean = (sum + hsum(acc)) / float(n);
    v8f accSq = splat(0.0f);
    float sq = 0;
    for (i = 0; i + 8 <= n; i += 8) {
        const v8f d = load8(v + i) - mean;
        accSq += d * d;
    }
    for (; i < n; ++i)
        sq += (v[i] - mean) * (v[i] - mean);
    const float inv = 1.0f / std::sqrt((sq + hsum(accSq)) / float(n) + eps);
    for (i = 0; i + 8 <= n; i += 8)
        store8(v + i, (load8(v + i) - mean) * inv * load8(g + i) + load8(b + i));
    for (; i < n; ++i)
        v[i] = (v[i] - mean) * inv * g[i] + b[i];
}

// RMSNorm of one row, as transformers' LlamaRMSNorm in float32: the mean of squares over the
// row, then x * rsqrt(ms + eps) * g (llama.cpp's rms_norm and mul compute the same).
void rmsNormRow(const float* x, float* y, int64_t n, const float* g, float eps)
{
    v8f acc = splat(0.0f);
    float sq = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const v8f v = load8(x + i);
        acc += v * v;
    }
    for (; i < n; ++i)
        sq += x[i] * x[i];
    const float inv = 1.0f / std::sqrt((sq + hsum(acc)) / float(n) + eps);
    for (i = 0; i + 8 <= n; i += 8)
        store8(y + i, load8(g + i) * (load8(x + i) * inv));
    for (; i < n; ++i)
        y[i] = g[i] * (x[i] * inv);
}

void gelu(float* x, int64_t n)
{
    map8(x, n, [](v8f v, int64_t) __attribute__((always_inline)) { return vgelu(v); });
}

// GPT-2's gelu_new, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), computed as
// x / (1 + exp(-2u)): the same function, and no cancellation in 1 + tanh for u << 0.
void geluTanh(float* x, int64_t n)
{
    map8(x, n, [](v8f v, int64_t) __attribute__((always_inline)) {
        const v8f u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        return v / (1.0f + vexp(-2.0f * u));
    });
}

// silu(g) = g / (1 + exp(-g)); exp clamps, so a very negative g gives -0, never NaN.
void siluMul(float* gate, const float* up, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const v8f g = load8(gate + i);
        store8(gate + i, g / (1.0f + vexp(-g)) * load8(up + i));
    }
    for (; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + vexp(splat(-g))[0]) * up[i];
    }
}

void addInPlace(float* x, const float* y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        store8(x + i, load8(x + i) + load8(y + i));
    for (; i < n; ++i)
        x[i] += y[i];
}

void maskedSoftmax(float* s, int64_t n, const float* keep)
{
    float mx = -3.4e38f;
    for (int64_t j = 0; j < n; ++j)
        mx = keep[j] != 0.0f && s[j] > mx ? s[j] : mx;
    // Masked scores may exceed mx; vexp clamps, so their product with 0 stays 0, never NaN.
    int64_t j = 0;
    v8f acc = splat(0.0f);
    for (; j + 8 <= n; j += 8) {
        const v8f e = vexp(load8(s + j) - mx) * load8(keep + j);
        store8(s + j, e);
        acc += e;
    }
    float sum = hsum(acc);
    for (; j < n; ++j) {
        const float e = vexp(splat(s[j] - mx))[0] * keep[j];
        s[j] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
    map8(s, n, [inv](v8f v, int64_t) __attribute__((always_inline)) { return v * inv; });
}

}  // namespace

}  // namespace quantlens::kernels::QL_ELTWISE_NS
