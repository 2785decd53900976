// AVX2 versions of core/quant/quantrun.h. Same arithmetic as the portable loops, lane for
// lane, so results are identical: _mm256_round_ps(nearest) is the half-to-even the
// portable magic-number trick computes on the same clamped values, and the metric lanes
// use separate multiply and add (no FMA) in the same 8-lane, 512-block order.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

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
    return clamped + quantizeRef(x + i, q + i, n - i, K, s, zp, qmin, qmax);
}

}  // namespace

int64_t quantizeAvx2(const float* x, int8_t* q, int64_t n, Kernel k, float s, int32_t zp, int32_t qmin, int32_t qmax)
{
    switch (k) {
    case Kernel::DivHalfEven: return run<Kernel::DivHalfEven>(x, q, n, s, zp, qmin, qmax);
    case Kernel::MulInvHalfEven: return run<Kernel::MulInvHalfEven>(x, q, n, s, zp, qmin, qmax);
    case Kernel::MulInvHalfAway: return run<Kernel::MulInvHalfAway>(x, q, n, s, zp, qmin, qmax);
    }
    return 0;
}

// Blocks of 512 as in sumsRef, including a last, shorter block: its whole 8-lane chunks go
// through the vector lanes too (a 768-wide row is 512 + 256, and leaving the 256 to the
// portable loop made it a third of a drag update's metric time); only the < 8 values left
// after them take lane 0, as in sumsRef.
Sums sumsAvx2(const float* x, const float* y, int64_t n)
{
    constexpr int64_t kBlock = 512;
    Sums s;
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 mx = _mm256_setzero_ps();
    alignas(32) float l[4][8];
    float tailMax = 0;
    for (int64_t i = 0; i < n;) {
        const int64_t end = std::min(n, i + kBlock);
        __m256 e2 = _mm256_setzero_ps(), a2 = e2, b2 = e2, ab = e2;
        for (; i + 8 <= end; i += 8) {
            const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(y + i);
            const __m256 d = _mm256_sub_ps(a, b);
            e2 = _mm256_add_ps(e2, _mm256_mul_ps(d, d));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(a, a));
            b2 = _mm256_add_ps(b2, _mm256_mul_ps(b, b));
            ab = _mm256_add_ps(ab, _mm256_mul_ps(a, b));
            mx = _mm256_max_ps(_mm256_and_ps(d, absMask), mx);
        }
        _mm256_store_ps(l[0], e2);
        _mm256_store_ps(l[1], a2);
        _mm256_store_ps(l[2], b2);
        _mm256_store_ps(l[3], ab);
        for (; i < end; ++i) {
            const float a = x[i], b = y[i], d = a - b;
            l[0][0] += d * d;
            l[1][0] += a * a;
            l[2][0] += b * b;
            l[3][0] += a * b;
            tailMax = std::max(tailMax, std::fabs(d));
        }
        for (int j = 0; j < 8; ++j) {
            s.err2 += l[0][j];
            s.x2 += l[1][j];
            s.y2 += l[2][j];
            s.xy += l[3][j];
        }
    }
    alignas(32) float m[8];
    _mm256_store_ps(m, mx);
    s.maxAbs = tailMax;
    for (const float v : m)
        s.maxAbs = std::max(s.maxAbs, v);
    return s;
}

}  // namespace quantlens::quantrun
