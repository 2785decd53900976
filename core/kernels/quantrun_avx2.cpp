// AVX2 table of kernels/quantrun.h. Same arithmetic as quantrun_ref.cpp, lane for lane, so
// results are identical: _mm256_round_ps(nearest) is the half-to-even the portable
// magic-number trick computes on the same clamped values, and the metric lanes use
// separate multiply and add (no FMA) in the same 16-lane, 512-block order.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/kernels_internal.h"
#include "kernels/quantrun.h"

namespace quantlens::quantrun {

namespace {

template <Kernel K>
inline __m256i roundClamp(__m256 xv, __m256 s, __m256 vlo, __m256 vhi, __m256i zp, __m256i qmin, __m256i qmax,
                          __m256i& equalCount)
{
    __m256 v = K == Kernel::DivHalfEven ? _mm256_div_ps(xv, s) : _mm256_mul_ps(xv, s);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));  // NaN -> 0 -> zp
    v = _mm256_max_ps(v, vlo);
    v = _mm256_min_ps(v, vhi);
    __m256i r;
    if constexpr (K == Kernel::MulInvHalfAway) {
        const __m256i t = _mm256_cvttps_epi32(v);
        const __m256 f = _mm256_sub_ps(v, _mm256_cvtepi32_ps(t));
        const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ));
        const __m256i down = _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(-0.5f), _CMP_LE_OQ));
        r = _mm256_add_epi32(_mm256_sub_epi32(t, up), down);  // masks are -1
    } else {
        r = _mm256_cvttps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    r = _mm256_add_epi32(r, zp);
    const __m256i c = _mm256_min_epi32(_mm256_max_epi32(r, qmin), qmax);
    equalCount = _mm256_sub_epi32(equalCount, _mm256_cmpeq_epi32(c, r));
    return c;
}

template <Kernel K>
int64_t run(const float* x, int8_t* q, int64_t n, float s, int32_t zp, int32_t qmin, int32_t qmax)
{
    const __m256 sv = _mm256_set1_ps(s);
    const __m256 vlo = _mm256_set1_ps(float(qmin - zp - 1));
    const __m256 vhi = _mm256_set1_ps(float(qmax - zp + 1));
    const __m256i zpv = _mm256_set1_epi32(zp), lo = _mm256_set1_epi32(qmin), hi = _mm256_set1_epi32(qmax);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const bool isUnsigned = qmin >= 0;
    __m256i equal = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i a = roundClamp<K>(_mm256_loadu_ps(x + i), sv, vlo, vhi, zpv, lo, hi, equal);
        const __m256i b = roundClamp<K>(_mm256_loadu_ps(x + i + 8), sv, vlo, vhi, zpv, lo, hi, equal);
        const __m256i c = roundClamp<K>(_mm256_loadu_ps(x + i + 16), sv, vlo, vhi, zpv, lo, hi, equal);
        const __m256i d = roundClamp<K>(_mm256_loadu_ps(x + i + 24), sv, vlo, vhi, zpv, lo, hi, equal);
        const __m256i ab = _mm256_packs_epi32(a, b);  // values are within [-128, 255]: no saturation
        const __m256i cd = _mm256_packs_epi32(c, d);
        const __m256i bytes = isUnsigned ? _mm256_packus_epi16(ab, cd) : _mm256_packs_epi16(ab, cd);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(bytes, order));
    }
    alignas(32) int32_t e[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(e), equal);
    int64_t equalTotal = 0;
    for (const int32_t v : e)
        equalTotal += v;
    const int64_t clamped = i - equalTotal;
    return clamped + kQuantRef.quantize(x + i, q + i, n - i, K, s, zp, qmin, qmax);
}

int64_t quantizeAvx2(const float* x, int8_t* q, int64_t n, Kernel k, float s, int32_t zp, int32_t qmin, int32_t qmax)
{
    switch (k) {
    case Kernel::DivHalfEven: return run<Kernel::DivHalfEven>(x, q, n, s, zp, qmin, qmax);
    case Kernel::MulInvHalfEven: return run<Kernel::MulInvHalfEven>(x, q, n, s, zp, qmin, qmax);
    case Kernel::MulInvHalfAway: return run<Kernel::MulInvHalfAway>(x, q, n, s, zp, qmin, qmax);
    }
    return 0;
}

// The reference's 16 float lanes as two ymm halves (lanes 0-7 and 8-15): a 16-value chunk
// adds its first 8 products to the first half and the next 8 to the second.
struct Lanes {
    __m256 e2[2], a2[2], b2[2], ab[2], mx;
    void clear()
    {
        for (int h = 0; h < 2; ++h)
            e2[h] = a2[h] = b2[h] = ab[h] = _mm256_setzero_ps();
    }
    void add(int h, __m256 a, __m256 b, __m256 absMask)
    {
        const __m256 d = _mm256_sub_ps(a, b);
        e2[h] = _mm256_add_ps(e2[h], _mm256_mul_ps(d, d));
        a2[h] = _mm256_add_ps(a2[h], _mm256_mul_ps(a, a));
        b2[h] = _mm256_add_ps(b2[h], _mm256_mul_ps(b, b));
        ab[h] = _mm256_add_ps(ab[h], _mm256_mul_ps(a, b));
        mx = _mm256_max_ps(_mm256_and_ps(d, absMask), mx);
    }
    // The end of a block from memory: whole 16-value chunks into the lanes, the rest one by
    // one into lane 0, then the lanes into the double totals in lane order.
    void finishBlock(const float* x, const float* y, int64_t i, int64_t end, Sums& s, float& tailMax, __m256 absMask)
    {
        for (; i + 16 <= end; i += 16) {
            add(0, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), absMask);
            add(1, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), absMask);
        }
        alignas(32) float l[4][kSumLanes];
        for (int h = 0; h < 2; ++h) {
            _mm256_store_ps(l[0] + 8 * h, e2[h]);
            _mm256_store_ps(l[1] + 8 * h, a2[h]);
            _mm256_store_ps(l[2] + 8 * h, b2[h]);
            _mm256_store_ps(l[3] + 8 * h, ab[h]);
        }
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
    float maxOf(float tailMax) const
    {
        alignas(32) float m[8];
        _mm256_store_ps(m, mx);
        for (const float v : m)
            tailMax = std::max(tailMax, v);
        return tailMax;
    }
};

// Blocks of 512 as in the reference, including a last, shorter block: its whole 16-value
// chunks go through the vector lanes too (a 768-wide row is 512 + 256, and leaving the 256
// to the portable loop made it a third of a drag update's metric time).
void sumsAvx2(const float* x, const float* y, int64_t n, Sums* acc)
{
    Sums s = *acc;
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    Lanes L;
    L.mx = _mm256_setzero_ps();
    float tailMax = 0;
    for (int64_t i = 0; i < n;) {
        const int64_t end = std::min(n, i + kSumBlock);
        L.clear();
        L.finishBlock(x, y, i, end, s, tailMax, absMask);
        i = end;
    }
    s.maxAbs = std::max(s.maxAbs, L.maxOf(tailMax));
    *acc = s;
}

void dequantizeAvx2(const int8_t* q, float* out, int64_t n, bool isUnsigned, float scale, int32_t zp)
{
    const __m256 fzp = _mm256_set1_ps(float(zp)), sc = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i));
        const __m256i v = isUnsigned ? _mm256_cvtepu8_epi32(b) : _mm256_cvtepi8_epi32(b);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(v), fzp), sc));
    }
    kQuantRef.dequantize(q + i, out + i, n - i, isUnsigned, scale, zp);
}

// Quantize, dequantize and the metric lanes per 32 values while they are in registers;
// the end of a block that is not a whole 32 goes through the separate loops (a few values).
template <Kernel K>
int64_t roundTripK(const float* x, int8_t* q, float* y, int64_t n, float s, float scale, int32_t zp, int32_t qmin,
                   int32_t qmax, bool isUnsigned, Sums* out)
{
    const __m256 sv = _mm256_set1_ps(s), sc = _mm256_set1_ps(scale), fzp = _mm256_set1_ps(float(zp));
    const __m256 vlo = _mm256_set1_ps(float(qmin - zp - 1));
    const __m256 vhi = _mm256_set1_ps(float(qmax - zp + 1));
    const __m256i zpv = _mm256_set1_epi32(zp), lo = _mm256_set1_epi32(qmin), hi = _mm256_set1_epi32(qmax);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256i equal = _mm256_setzero_si256();
    int64_t clamped = 0;
    Sums sums;
    Lanes L;
    L.mx = _mm256_setzero_ps();
    float tailMax = 0;
    for (int64_t i = 0; i < n;) {
        const int64_t end = std::min(n, i + kSumBlock);
        L.clear();
        for (; i + 32 <= end; i += 32) {
            const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
            const __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
            const __m256i a = roundClamp<K>(x0, sv, vlo, vhi, zpv, lo, hi, equal);
            const __m256i b = roundClamp<K>(x1, sv, vlo, vhi, zpv, lo, hi, equal);
            const __m256i c = roundClamp<K>(x2, sv, vlo, vhi, zpv, lo, hi, equal);
            const __m256i d = roundClamp<K>(x3, sv, vlo, vhi, zpv, lo, hi, equal);
            const __m256i ab = _mm256_packs_epi32(a, b);
            const __m256i cd = _mm256_packs_epi32(c, d);
            const __m256i bytes = isUnsigned ? _mm256_packus_epi16(ab, cd) : _mm256_packs_epi16(ab, cd);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(bytes, order));
            const __m256 y0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(a), fzp), sc);
            const __m256 y1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(b), fzp), sc);
            const __m256 y2 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(c), fzp), sc);
            const __m256 y3 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(d), fzp), sc);
            _mm256_storeu_ps(y + i, y0);
            _mm256_storeu_ps(y + i + 8, y1);
            _mm256_storeu_ps(y + i + 16, y2);
            _mm256_storeu_ps(y + i + 24, y3);
            L.add(0, x0, y0, absMask);
            L.add(1, x1, y1, absMask);
            L.add(0, x2, y2, absMask);
            L.add(1, x3, y3, absMask);
        }
        if (i < end) {
            clamped += quantizeAvx2(x + i, q + i, end - i, K, s, zp, qmin, qmax);
            dequantizeAvx2(q + i, y + i, end - i, isUnsigned, scale, zp);
        }
        L.finishBlock(x, y, i, end, sums, tailMax, absMask);
        i = end;
    }
    alignas(32) int32_t e[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(e), equal);
    int64_t vectorValues = 0, equalTotal = 0;
    for (const int32_t v : e)
        equalTotal += v;
    // Every value the 32-wide loop saw added one to `equal` or was clamped.
    for (int64_t i = 0; i < n; i += kSumBlock)
        vectorValues += (std::min(n, i + kSumBlock) - i) / 32 * 32;
    clamped += vectorValues - equalTotal;
    sums.maxAbs = L.maxOf(tailMax);
    *out = sums;
    return clamped;
}

int64_t roundTripAvx2(const float* x, int8_t* q, float* y, int64_t n, Kernel k, float s, float scale, int32_t zp,
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

const QuantKernels kQuantAvx2{"avx2", quantizeAvx2, dequantizeAvx2, sumsAvx2, histogramSlotsAvx2, roundTripAvx2};

}  // namespace quantlens::quantrun
