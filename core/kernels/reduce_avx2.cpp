// AVX2 reductions: the lanes of reduce_ref.cpp held in registers (two ymm of floats for
// the 16 min/max lanes, two ymm of doubles for the 8 sum lanes), so every lane sees the
// same elements in the same order and the results are bit-identical.
#include <immintrin.h>

#include <cfloat>

#include "kernels/reduce.h"

namespace quantlens::kernels {

namespace {

inline __m256 finiteMask(__m256 v)
{
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    return _mm256_cmp_ps(_mm256_and_ps(v, absMask), _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ);  // NaN: false
}

// lo = (a < lo) ? a : lo with a = finite ? v : lo: exactly vminps(a, lo). A non-finite
// value may as well be +FLT_MAX (-FLT_MAX for hi): it can never replace the lane either,
// and then the blend does not wait for the running lane.
inline void minMaxStep(__m256 v, __m256& lo, __m256& hi)
{
    const __m256 fin = finiteMask(v);
    lo = _mm256_min_ps(_mm256_blendv_ps(_mm256_set1_ps(FLT_MAX), v, fin), lo);
    hi = _mm256_max_ps(_mm256_blendv_ps(_mm256_set1_ps(-FLT_MAX), v, fin), hi);
}

void minMaxFiniteAvx2(const float* p, int64_t groups, float* lo, float* hi)
{
    __m256 lo0 = _mm256_loadu_ps(lo), lo1 = _mm256_loadu_ps(lo + 8);
    __m256 hi0 = _mm256_loadu_ps(hi), hi1 = _mm256_loadu_ps(hi + 8);
    for (int64_t g = 0; g < groups; ++g, p += kMinMaxLanes) {
        minMaxStep(_mm256_loadu_ps(p), lo0, hi0);
        minMaxStep(_mm256_loadu_ps(p + 8), lo1, hi1);
    }
    _mm256_storeu_ps(lo, lo0);
    _mm256_storeu_ps(lo + 8, lo1);
    _mm256_storeu_ps(hi, hi0);
    _mm256_storeu_ps(hi + 8, hi1);
}

void statsSumAvx2(const float* p, int64_t blocks, double* sum, int64_t* nonFinite, float* lo, float* hi)
{
    __m256 l = _mm256_loadu_ps(lo), h = _mm256_loadu_ps(hi);
    for (int64_t b = 0; b < blocks; ++b) {
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        __m256i bad = _mm256_setzero_si256();
        for (int64_t i = 0; i < kStatsBlock; i += kStatsLanes, p += kStatsLanes) {
            const __m256 v = _mm256_loadu_ps(p);
            const __m256 fin = finiteMask(v);
            const __m256 kept = _mm256_and_ps(v, fin);  // non-finite -> +0.0, as the reference adds
            s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(kept)));
            s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(kept, 1)));
            bad = _mm256_sub_epi32(bad, _mm256_castps_si256(_mm256_xor_ps(fin, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))));
            l = _mm256_min_ps(_mm256_blendv_ps(l, v, fin), l);
            h = _mm256_max_ps(_mm256_blendv_ps(h, v, fin), h);
        }
        alignas(32) double s[8];
        alignas(32) int32_t c[8];
        _mm256_store_pd(s, s0);
        _mm256_store_pd(s + 4, s1);
        _mm256_store_si256(reinterpret_cast<__m256i*>(c), bad);
        for (int j = 0; j < 8; ++j) {
            *sum += s[j];
            *nonFinite += c[j];
        }
    }
    _mm256_storeu_ps(lo, l);
    _mm256_storeu_ps(hi, h);
}

void statsDevAvx2(const float* p, int64_t blocks, float m, double* sumD, double* sumD2)
{
    const __m256d md = _mm256_set1_pd(double(m));
    const __m256d absMask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
    const __m256d maxF = _mm256_set1_pd(double(FLT_MAX));
    for (int64_t b = 0; b < blocks; ++b) {
        __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();  // sum d, lanes 0-3 / 4-7
        __m256d q0 = _mm256_setzero_pd(), q1 = _mm256_setzero_pd();  // sum d*d
        for (int64_t i = 0; i < kStatsBlock; i += kStatsLanes, p += kStatsLanes) {
            const __m256 v = _mm256_loadu_ps(p);
            const __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            const __m256d v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
            const __m256d f0 = _mm256_cmp_pd(_mm256_and_pd(v0, absMask), maxF, _CMP_LE_OQ);
            const __m256d f1 = _mm256_cmp_pd(_mm256_and_pd(v1, absMask), maxF, _CMP_LE_OQ);
            const __m256d d0 = _mm256_and_pd(_mm256_sub_pd(v0, md), f0);
            const __m256d d1 = _mm256_and_pd(_mm256_sub_pd(v1, md), f1);
            q0 = _mm256_add_pd(q0, _mm256_mul_pd(d0, d0));
            q1 = _mm256_add_pd(q1, _mm256_mul_pd(d1, d1));
            a0 = _mm256_add_pd(a0, d0);
            a1 = _mm256_add_pd(a1, d1);
        }
        alignas(32) double s1[8], s2[8];
        _mm256_store_pd(s1, a0);
        _mm256_store_pd(s1 + 4, a1);
        _mm256_store_pd(s2, q0);
        _mm256_store_pd(s2 + 4, q1);
        for (int j = 0; j < 8; ++j) {
            *sumD2 += s2[j];
            *sumD += s1[j];
        }
    }
}

template <bool Diff>
void foldMaxAbsLoop(const float* a, const float* b, int64_t n, float* mag, float* val)
{
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 maxF = _mm256_set1_ps(FLT_MAX);
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        const __m256 v = Diff ? _mm256_sub_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c)) : _mm256_loadu_ps(a + c);
        const __m256 m = _mm256_and_ps(v, absMask);
        const __m256 old = _mm256_loadu_ps(mag + c);
        const __m256 take = _mm256_and_ps(_mm256_cmp_ps(m, old, _CMP_GT_OQ), _mm256_cmp_ps(m, maxF, _CMP_LE_OQ));
        _mm256_storeu_ps(mag + c, _mm256_blendv_ps(old, m, take));
        _mm256_storeu_ps(val + c, _mm256_blendv_ps(_mm256_loadu_ps(val + c), v, take));
    }
    foldMaxAbsTail(a + c, Diff ? b + c : nullptr, n - c, mag + c, val + c);
}

void foldMaxAbsAvx2(const float* a, const float* b, int64_t n, float* mag, float* val)
{
    if (b)
        foldMaxAbsLoop<true>(a, b, n, mag, val);
    else
        foldMaxAbsLoop<false>(a, b, n, mag, val);
}

// Eight cells at a time, as the AVX-512 variant (reduce_avx512.cpp) does sixteen.
void foldCellsAvx2(const float* mag, const float* val, int64_t n, int64_t pool, float* cellMag, float* cellVal)
{
    int64_t g0 = 0;
    if (pool < (int64_t(1) << 27)) {
        const __m256i base = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int32_t(pool)));
        for (; (g0 + 8) * pool <= n; g0 += 8) {
            const float* m0 = mag + g0 * pool;
            const float* v0 = val + g0 * pool;
            __m256 bm = _mm256_set1_ps(-1.0f), bv = _mm256_setzero_ps();
            for (int64_t k = 0; k < pool; ++k) {
                const __m256i idx = _mm256_add_epi32(base, _mm256_set1_epi32(int32_t(k)));
                const __m256 m = _mm256_i32gather_ps(m0, idx, 4);
                const __m256 take = _mm256_cmp_ps(m, bm, _CMP_GT_OQ);
                bm = _mm256_blendv_ps(bm, m, take);
                bv = _mm256_mask_i32gather_ps(bv, v0, idx, take, 4);
            }
            _mm256_storeu_ps(cellMag + g0, bm);
            _mm256_storeu_ps(cellVal + g0, bv);
        }
    }
    foldCellsTail(mag + g0 * pool, val + g0 * pool, n - g0 * pool, pool, cellMag + g0, cellVal + g0);
}

}  // namespace

extern const ReduceKernels kReduceAvx2;
const ReduceKernels kReduceAvx2 = {"avx2", minMaxFiniteAvx2, statsSumAvx2, statsDevAvx2, foldMaxAbsAvx2, foldCellsAvx2};

}  // namespace quantlens::kernels
