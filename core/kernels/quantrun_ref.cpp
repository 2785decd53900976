// The portable quantizer loops: the specification every SIMD table in quantrun_*.cpp
// equals, and what runs under QUANTLENS_ISA=ref or on a CPU without AVX2.
#include <algorithm>
#include <cmath>

#include "kernels/quantrun.h"

namespace quantlens::quantrun {

namespace {

// 1.5 * 2^23: adding and subtracting it rounds to an integer, half to even, in the
// default rounding mode, for |v| < 2^22. The caller clamps v into that range first.
// (std::nearbyint would be a libm call per element without SSE4.1.)
constexpr float kRoundMagic = 12582912.0f;

// GCC 12 at -O2 vectorises only loops whose trip count needs no scalar epilogue and whose
// pointers need no run-time alias check ("very cheap" cost model); int8_t stores may alias
// the floats unless the pointers are __restrict. Hot loops therefore run over fixed blocks
// of kBlock values through __restrict pointers, with a scalar tail.
constexpr int kBlock = 32;  // = the q8_0 block, so those vectorise too

struct RunParams {
    float s;         // scale (DivHalfEven) or 1/scale
    int32_t zp, qmin, qmax;
    float vlo, vhi;  // clamp bounds one step outside [qmin, qmax] relative to zp; |bounds| << 2^22
};

template <Kernel K>
inline int32_t quantizeOne(float xv, const RunParams& p, int32_t& clamped)
{
    float v = K == Kernel::DivHalfEven ? xv / p.s : xv * p.s;
    v = v == v ? v : 0.0f;  // NaN -> the zero point
    v = v < p.vlo ? p.vlo : v;
    v = v > p.vhi ? p.vhi : v;
    int32_t r;
    if constexpr (K == Kernel::MulInvHalfAway) {
        // roundf: half away from zero. t = trunc(v) is exact, so is v - t.
        const int32_t t = int32_t(v);
        const float f = v - float(t);
        r = t + int32_t(f >= 0.5f) - int32_t(f <= -0.5f);
    } else {
        v = (v + kRoundMagic) - kRoundMagic;
        r = int32_t(v);
    }
    r += p.zp;
    int32_t c = r < p.qmin ? p.qmin : r;
    c = c > p.qmax ? p.qmax : c;
    clamped += int32_t(c != r);
    return c;
}

template <Kernel K>
int64_t quantizeRunK(const float* __restrict x, int8_t* __restrict q, int64_t n, const RunParams& p)
{
    int64_t clamped = 0;
    int64_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
        int32_t cl = 0;
        for (int j = 0; j < kBlock; ++j)
            q[i + j] = int8_t(quantizeOne<K>(x[i + j], p, cl));
        clamped += cl;
    }
    int32_t cl = 0;
    for (; i < n; ++i)
        q[i] = int8_t(quantizeOne<K>(x[i], p, cl));
    return clamped + cl;
}

int64_t quantizeRef(const float* x, int8_t* q, int64_t n, Kernel k, float s, int32_t zp, int32_t qmin, int32_t qmax)
{
    const RunParams p{s, zp, qmin, qmax, float(qmin - zp - 1), float(qmax - zp + 1)};
    switch (k) {
    case Kernel::DivHalfEven: return quantizeRunK<Kernel::DivHalfEven>(x, q, n, p);
    case Kernel::MulInvHalfEven: return quantizeRunK<Kernel::MulInvHalfEven>(x, q, n, p);
    case Kernel::MulInvHalfAway: return quantizeRunK<Kernel::MulInvHalfAway>(x, q, n, p);
    }
    return 0;
}

void dequantizeRef(const int8_t* __restrict q, float* __restrict out, int64_t n, bool isUnsigned, float scale, int32_t zp)
{
    const float fzp = float(zp);
    int64_t i = 0;
    if (isUnsigned) {
        const uint8_t* __restrict u = reinterpret_cast<const uint8_t*>(q);
        for (; i + kBlock <= n; i += kBlock)
            for (int j = 0; j < kBlock; ++j)
                out[i + j] = (float(u[i + j]) - fzp) * scale;
        for (; i < n; ++i)
            out[i] = (float(u[i]) - fzp) * scale;
    } else {
        for (; i + kBlock <= n; i += kBlock)
            for (int j = 0; j < kBlock; ++j)
                out[i + j] = (float(q[i + j]) - fzp) * scale;
        for (; i < n; ++i)
            out[i] = (float(q[i]) - fzp) * scale;
    }
}

// GCC does not vectorise a float reduction without -ffast-math (it may not reorder the
// additions), so the sums are kept in 16 explicit lanes that it can map onto SIMD
// registers. Lanes are float over short blocks (error < 1e-6 relative per block) and
// flushed into double, which keeps the total accurate for multi-million-element tensors.
void sumsRef(const float* x, const float* y, int64_t n, Sums* acc)
{
    constexpr int W = kSumLanes;
    Sums s = *acc;
    float maxLane[W] = {};
    int64_t i = 0;
    while (i < n) {
        const int64_t end = std::min(n, i + kSumBlock);
        float e2[W] = {}, a2[W] = {}, b2[W] = {}, ab[W] = {};
        for (; i + W <= end; i += W) {
            for (int j = 0; j < W; ++j) {
                const float a = x[i + j], b = y[i + j], d = a - b;
                e2[j] += d * d;
                a2[j] += a * a;
                b2[j] += b * b;
                ab[j] += a * b;
                const float ad = std::fabs(d);
                maxLane[j] = ad > maxLane[j] ? ad : maxLane[j];
            }
        }
        for (; i < end; ++i) {
            const float a = x[i], b = y[i], d = a - b;
            e2[0] += d * d;
            a2[0] += a * a;
            b2[0] += b * b;
            ab[0] += a * b;
            maxLane[0] = std::max(maxLane[0], std::fabs(d));
        }
        for (int j = 0; j < W; ++j) {
            s.err2 += e2[j];
            s.x2 += a2[j];
            s.y2 += b2[j];
            s.xy += ab[j];
        }
    }
    for (int j = 0; j < W; ++j)
        s.maxAbs = std::max(s.maxAbs, maxLane[j]);
    *acc = s;
}

// The slot of one value, branch-free so the loop vectorises.
template <bool Abs>
inline int32_t slotOf(float v0, const SlotParams& p)
{
    const float v = Abs ? std::fabs(v0) : v0;
    float f = (v - p.loF) * p.scale;
    f = f >= 0.0f ? f : 0.0f;  // NaN -> 0 as well: converting NaN to int below would be UB
    float g = f > p.binsF ? p.binsF : f;
    const float frac = g - float(int32_t(g));
    const bool near = (frac < p.tol) | (frac > 1.0f - p.tol);
    f = f > p.lastF ? p.lastF : f;
    int32_t b = int32_t(f) + 1;
    b = near ? -2 : b;
    b = v < p.loF ? 0 : b;
    b = v > p.hiF ? p.bins + 1 : b;
    b = v != v ? p.bins + 2 : b;
    return b;
}

template <bool Abs>
int slotsK(const float* __restrict x, int32_t* __restrict slots, int n, const SlotParams& p, int32_t* nearAt)
{
    for (int i = 0; i < n; ++i)
        slots[i] = slotOf<Abs>(x[i], p);
    int near = 0;
    for (int i = 0; i < n; ++i)
        if (slots[i] == -2)
            nearAt[near++] = i;
    return near;
}

int histogramSlotsRef(const float* x, int32_t* slots, int n, const SlotParams& p, bool absolute, int32_t* nearAt)
{
    return absolute ? slotsK<true>(x, slots, n, p, nearAt) : slotsK<false>(x, slots, n, p, nearAt);
}

int64_t roundTripRef(const float* x, int8_t* q, float* y, int64_t n, Kernel k, float s, float scale, int32_t zp,
                     int32_t qmin, int32_t qmax, bool isUnsigned, Sums* sums)
{
    const int64_t clamped = quantizeRef(x, q, n, k, s, zp, qmin, qmax);
    dequantizeRef(q, y, n, isUnsigned, scale, zp);
    *sums = Sums{};
    sumsRef(x, y, n, sums);
    return clamped;
}

}  // namespace

const QuantKernels kQuantRef{"ref", quantizeRef, dequantizeRef, sumsRef, histogramSlotsRef, roundTripRef};

}  // namespace quantlens::quantrun
