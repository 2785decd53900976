// AVX-512 table of kernels/quantrun.h. Quantization runs 16 values per zmm with mask
// registers for NaN, rounding and the ends of a run (no scalar tail); the metric sums keep
// the reference's 16 float lanes in one zmm per sum, so every result equals
// quantrun_ref.cpp's bit for bit.
// GCC 12.2 warns inside its own AVX-512 headers (GCC PR 105593, fixed in 12.3), as in
// gemm_avx512vnni.cpp; the warnings point at no code of ours.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/kernels_internal.h"
#include "kernels/quantrun.h"

namespace quantlens::quantrun {

namespace {

struct Q512 {
    __m512 s, vlo, vhi;
    __m512i zp, qmin, qmax;
    Q512(float sv, int32_t z, int32_t lo, int32_t hi)
        : s(_mm512_set1_ps(sv)), vlo(_mm512_set1_ps(float(lo - z - 1))), vhi(_mm512_set1_ps(float(hi - z + 1))),
          zp(_mm512_set1_epi32(z)), qmin(_mm512_set1_epi32(lo)), qmax(_mm512_set1_epi32(hi))
    {
    }
};

// One zmm of quantrun_ref.cpp's quantizeOne; `clamped` gets the lanes (within `m`) whose
// rounded value fell outside [qmin, qmax].
template <Kernel K>
inline __m512i roundClamp(__m512 xv, const Q512& p, __mmask16 m, int64_t& clamped)
{
    __m512 v = K == Kernel::DivHalfEven ? _mm512_div_ps(xv, p.s) : _mm512_mul_ps(xv, p.s);
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);  // NaN -> 0 -> zp
    v = _mm512_min_ps(_mm512_max_ps(v, p.vlo), p.vhi);
    __m512i r;
    if constexpr (K == Kernel::MulInvHalfAway) {
        const __m512i t = _mm512_cvttps_epi32(v);
        const __m512 f = _mm512_sub_ps(v, _mm512_cvtepi32_ps(t));
        const __m512i one = _mm512_set1_epi32(1);
        r = _mm512_mask_add_epi32(t, _mm512_cmp_ps_mask(f, _mm512_set1_ps(0.5f), _CMP_GE_OQ), t, one);
        r = _mm512_mask_sub_epi32(r, _mm512_cmp_ps_mask(f, _mm512_set1_ps(-0.5f), _CMP_LE_OQ), r, one);
    } else {
        r = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    r = _mm512_add_epi32(r, p.zp);
    const __m512i c = _mm512_min_epi32(_mm512_max_epi32(r, p.qmin), p.qmax);
    clamped += __builtin_popcount(unsigned(_mm512_mask_cmpneq_epi32_mask(m, c, r)));
    return c;
}

inline __mmask16 firstN(int64_t k) { return k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << k) - 1); }

template <Kernel K>
int64_t quantizeK(const float* x, int8_t* q, int64_t n, float s, int32_t zp, int32_t qmin, int32_t qmax)
{
    const Q512 p(s, zp, qmin, qmax);
    int64_t clamped = 0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512i a = roundClamp<K>(_mm512_loadu_ps(x + i), p, 0xFFFF, clamped);
        const __m512i b = roundClamp<K>(_mm512_loadu_ps(x + i + 16), p, 0xFFFF, clamped);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(a));  // low bytes
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i + 16), _mm512_cvtepi32_epi8(b));
    }
    for (; i < n; i += 16) {
        const __mmask16 m = firstN(n - i);
        const __m512i a = roundClamp<K>(_mm512_maskz_loadu_ps(m, x + i), p, m, clamped);
        _mm512_mask_cvtepi32_storeu_epi8(q + i, m, a);
    }
    return clamped;
}

int64_t quantizeAvx512(const float* x, int8_t* q, int64_t n, Kernel k, float s, int32_t zp, int32_t qmin, int32_t qmax)
{
    switch (k) {
    case Kernel::DivHalfEven: return quantizeK<Kernel::DivHalfEven>(x, q, n, s, zp, qmin, qmax);
    case Kernel::MulInvHalfEven: return quantizeK<Kernel::MulInvHalfEven>(x, q, n, s, zp, qmin, qmax);
    case Kernel::MulInvHalfAway: return quantizeK<Kernel::MulInvHalfAway>(x, q, n, s, zp, qmin, qmax);
    }
    return 0;
}

inline __m512 dequant16(__m128i bytes, bool isUnsigned, __m512 fzp, __m512 sc)
{
    const __m512i v = isUnsigned ? _mm512_cvtepu8_epi32(bytes) : _mm512_cvtepi8_epi32(bytes);
    return _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(v), fzp), sc);
}

void dequantizeAvx512(const int8_t* q, float* out, int64_t n, bool isUnsigned, float scale, int32_t zp)
{
    const __m512 fzp = _mm512_set1_ps(float(zp)), sc = _mm512_set1_ps(scale);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, dequant16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)), isUnsigned, fzp, sc));
    if (i < n) {
        const __mmask16 m = firstN(n - i);
        _mm512_mask_storeu_ps(out + i, m, dequant16(_mm_maskz_loadu_epi8(m, q + i), isUnsigned, fzp, sc));
    }
}

// The reference's 16 float lanes, one zmm per sum.
struct Lanes {
    __m512 e2, a2, b2, ab, mx;
    void clear() { e2 = a2 = b2 = ab = _mm512_setzero_ps(); }
    void add16(__m512 a, __m512 b)
    {
        const __m512 d = _mm512_sub_ps(a, b);
        e2 = _mm512_add_ps(e2, _mm512_mul_ps(d, d));
        a2 = _mm512_add_ps(a2, _mm512_mul_ps(a, a));
        b2 = _mm512_add_ps(b2, _mm512_mul_ps(b, b));
        ab = _mm512_add_ps(ab, _mm512_mul_ps(a, b));
        mx = _mm512_max_ps(_mm512_abs_ps(d), mx);  // a NaN |d| never wins, as in the reference
    }
};

// The end of a block: whole 16-value chunks into the lanes, then the rest one by one into
// lane 0; the lanes go into the double totals in lane order.
inline void finishBlock(Lanes& L, const float* x, const float* y, int64_t i, int64_t end, Sums& s, float& tailMax)
{
    for (; i + 16 <= end; i += 16)
        L.add16(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
    alignas(64) float l[4][kSumLanes];
    _mm512_store_ps(l[0], L.e2);
    _mm512_store_ps(l[1], L.a2);
    _mm512_store_ps(l[2], L.b2);
    _mm512_store_ps(l[3], L.ab);
    for (; i < end; ++i) {
        const float a = x[i], b = y[i], d = a - b;
        l[0][0] += d * d;
        l[1][0] += a * a;
        l[2][0] += b * b;
        l[3][0] += a * b;
        tailMax = std::max(tailMax, std::fabs(d));
    }
    for (int j = 0; j < kSumLanes; ++j) {
        s.err2 += l[0][j];
        s.x2 += l[1][j];
        s.y2 += l[2][j];
        s.xy += l[3][j];
    }
}

inline float maxOf(const Lanes& L, float tailMax)
{
    return std::max(tailMax, _mm512_reduce_max_ps(L.mx));
}

void sumsAvx512(const float* x, const float* y, int64_t n, Sums* acc)
{
    Sums s = *acc;
    Lanes L;
    L.mx = _mm512_setzero_ps();
    float tailMax = 0;
    for (int64_t i = 0; i < n;) {
        const int64_t end = std::min(n, i + kSumBlock);
        L.clear();
        for (; i + 16 <= end; i += 16)
            L.add16(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
        finishBlock(L, x, y, i, end, s, tailMax);
        i = end;
    }
    s.maxAbs = std::max(s.maxAbs, maxOf(L, tailMax));
    *acc = s;
}

// Quantize, dequantize and the metric lanes per 32 values while they are in registers.
template <Kernel K>
int64_t roundTripK(const float* x, int8_t* q, float* y, int64_t n, float s, float scale, int32_t zp, int32_t qmin,
                   int32_t qmax, bool isUnsigned, Sums* out)
{
    (void)isUnsigned;  // c already is the value the stored byte stands for, signed or not
    const Q512 p(s, zp, qmin, qmax);
    const __m512 sc = _mm512_set1_ps(scale), fzp = _mm512_set1_ps(float(zp));
    int64_t clamped = 0;
    Sums sums;
    Lanes L;
    L.mx = _mm512_setzero_ps();
    float tailMax = 0;
    for (int64_t i = 0; i < n;) {
        const int64_t end = std::min(n, i + kSumBlock);
        L.clear();
        for (; i + 32 <= end; i += 32) {
            const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
            const __m512i a = roundClamp<K>(x0, p, 0xFFFF, clamped);
            const __m512i b = roundClamp<K>(x1, p, 0xFFFF, clamped);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(a));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i + 16), _mm512_cvtepi32_epi8(b));
            // c is the stored integer itself (within the type's range), so float(c) is the
            // dequantizer's float(q).
            const __m512 y0 = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(a), fzp), sc);
            const __m512 y1 = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(b), fzp), sc);
            _mm512_storeu_ps(y + i, y0);
            _mm512_storeu_ps(y + i + 16, y1);
            L.add16(x0, y0);
            L.add16(x1, y1);
        }
        for (int64_t j = i; j < end; j += 16) {
            const __mmask16 m = firstN(end - j);
            const __m512i a = roundClamp<K>(_mm512_maskz_loadu_ps(m, x + j), p, m, clamped);
            _mm512_mask_cvtepi32_storeu_epi8(q + j, m, a);
            _mm512_mask_storeu_ps(y + j, m, _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(a), fzp), sc));
        }
        finishBlock(L, x, y, i, end, sums, tailMax);
        i = end;
    }
    sums.maxAbs = maxOf(L, tailMax);
    *out = sums;
    return clamped;
}

int64_t roundTripAvx512(const float* x, int8_t* q, float* y, int64_t n, Kernel k, float s, float scale, int32_t zp,
                        int32_t qmin, int32_t qmax, bool isUnsigned, Sums* sums)
{
    switch (k) {
    case Kernel::DivHalfEven: return roundTripK<Kernel::DivHalfEven>(x, q, y, n, s, scale, zp, qmin, qmax, isUnsigned, sums);
    case Kernel::MulInvHalfEven:
        return roundTripK<Kernel::MulInvHalfEven>(x, q, y, n, s, scale, zp, qmin, qmax, isUnsigned, sums);
    case Kernel::MulInvHalfAway:
        return roundTripK<Kernel::MulInvHalfAway>(x, q, y, n, s, scale, zp, qmin, qmax, isUnsigned, sums);
    }
    return 0;
}

}  // namespace

const QuantKernels kQuantAvx512{"avx512", quantizeAvx512, dequantizeAvx512, sumsAvx512, histogramSlotsAvx512,
                                roundTripAvx512};

}  // namespace quantlens::quantrun
