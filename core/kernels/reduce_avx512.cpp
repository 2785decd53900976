// AVX-512 reductions: one zmm holds the 16 min/max lanes of reduce_ref.cpp, one zmm the
// 8 double sum lanes; masks replace blends. Same lanes, same order: bit-identical.
// GCC 12.2 warns inside its own AVX-512 headers (GCC PR 105593, fixed in 12.3), as in
// gemm_avx512vnni.cpp; the warnings point at no code of ours.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cfloat>

#include "kernels/reduce.h"

namespace quantlens::kernels {

namespace {

void minMaxFiniteAvx512(const float* p, int64_t groups, float* lo, float* hi)
{
    const __m512 maxF = _mm512_set1_ps(FLT_MAX);
    __m512 l = _mm512_loadu_ps(lo), h = _mm512_loadu_ps(hi);
    for (int64_t g = 0; g < groups; ++g, p += kMinMaxLanes) {
        const __m512 v = _mm512_loadu_ps(p);
        const __mmask16 fin = _mm512_cmp_ps_mask(_mm512_abs_ps(v), maxF, _CMP_LE_OQ);
        l = _mm512_min_ps(_mm512_mask_blend_ps(fin, l, v), l);
        h = _mm512_max_ps(_mm512_mask_blend_ps(fin, h, v), h);
    }
    _mm512_storeu_ps(lo, l);
    _mm512_storeu_ps(hi, h);
}

void statsSumAvx512(const float* p, int64_t blocks, double* sum, int64_t* nonFinite, float* lo, float* hi)
{
    const __m256 maxF = _mm256_set1_ps(FLT_MAX);
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 l = _mm256_loadu_ps(lo), h = _mm256_loadu_ps(hi);
    for (int64_t b = 0; b < blocks; ++b) {
        __m512d s = _mm512_setzero_pd();
        int64_t bad = 0;
        for (int64_t i = 0; i < kStatsBlock; i += kStatsLanes, p += kStatsLanes) {
            const __m256 v = _mm256_loadu_ps(p);
            const __mmask8 fin = _mm256_cmp_ps_mask(_mm256_and_ps(v, absMask), maxF, _CMP_LE_OQ);
            s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm256_maskz_mov_ps(fin, v)));  // non-finite -> +0.0
            bad += 8 - __builtin_popcount(unsigned(fin));
            l = _mm256_min_ps(_mm256_mask_blend_ps(fin, l, v), l);
            h = _mm256_max_ps(_mm256_mask_blend_ps(fin, h, v), h);
        }
        alignas(64) double sl[8];
        _mm512_store_pd(sl, s);
        for (int j = 0; j < 8; ++j)
            *sum += sl[j];
        *nonFinite += bad;
    }
    _mm256_storeu_ps(lo, l);
    _mm256_storeu_ps(hi, h);
}

void statsDevAvx512(const float* p, int64_t blocks, float m, double* sumD, double* sumD2)
{
    const __m512d md = _mm512_set1_pd(double(m));
    const __m256 maxF = _mm256_set1_ps(FLT_MAX);
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < blocks; ++b) {
        __m512d a = _mm512_setzero_pd(), q = _mm512_setzero_pd();
        for (int64_t i = 0; i < kStatsBlock; i += kStatsLanes, p += kStatsLanes) {
            const __m256 v = _mm256_loadu_ps(p);
            const __mmask8 fin = _mm256_cmp_ps_mask(_mm256_and_ps(v, absMask), maxF, _CMP_LE_OQ);
            const __m512d d = _mm512_maskz_sub_pd(fin, _mm512_cvtps_pd(v), md);  // non-finite -> +0.0
            q = _mm512_add_pd(q, _mm512_mul_pd(d, d));
            a = _mm512_add_pd(a, d);
        }
        alignas(64) double s1[8], s2[8];
        _mm512_store_pd(s1, a);
        _mm512_store_pd(s2, q);
        for (int j = 0; j < 8; ++j) {
            *sumD2 += s2[j];
            *sumD += s1[j];
        }
    }
}

}  // namespace

extern const ReduceKernels kReduceAvx512;
const ReduceKernels kReduceAvx512 = {"avx512", minMaxFiniteAvx512, statsSumAvx512, statsDevAvx512};

}  // namespace quantlens::kernels
