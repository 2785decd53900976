// AVX-512 reductions: one zmm holds the 8 double sum lanes of reduce_ref.cpp, the 16
// min/max lanes live in two ymm; mask registers replace blends. Same lanes, same order: bit-identical.
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

// Two 8-lane halves, as in the AVX2 file: measured on Zen 5, one 16-lane zmm chain ran
// at half the speed of two independent ymm chains (0.36 vs 0.17 ms on 9.4 MB).
void minMaxFiniteAvx512(const float* p, int64_t groups, float* lo, float* hi)
{
    // A non-finite value becomes +FLT_MAX for the min and -FLT_MAX for the max: neither
    // can replace the lane (vminps keeps the second operand on a tie), exactly as the
    // reference's "a = lo" does, and the blend no longer waits for the running lane.
    const __m256 maxF = _mm256_set1_ps(FLT_MAX), minF = _mm256_set1_ps(-FLT_MAX);
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 l0 = _mm256_loadu_ps(lo), l1 = _mm256_loadu_ps(lo + 8);
    __m256 h0 = _mm256_loadu_ps(hi), h1 = _mm256_loadu_ps(hi + 8);
    for (int64_t g = 0; g < groups; ++g, p += kMinMaxLanes) {
        const __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8);
        const __mmask8 f0 = _mm256_cmp_ps_mask(_mm256_and_ps(v0, absMask), maxF, _CMP_LE_OQ);
        const __mmask8 f1 = _mm256_cmp_ps_mask(_mm256_and_ps(v1, absMask), maxF, _CMP_LE_OQ);
        l0 = _mm256_min_ps(_mm256_mask_blend_ps(f0, maxF, v0), l0);
        l1 = _mm256_min_ps(_mm256_mask_blend_ps(f1, maxF, v1), l1);
        h0 = _mm256_max_ps(_mm256_mask_blend_ps(f0, minF, v0), h0);
        h1 = _mm256_max_ps(_mm256_mask_blend_ps(f1, minF, v1), h1);
    }
    _mm256_storeu_ps(lo, l0);
    _mm256_storeu_ps(lo + 8, l1);
    _mm256_storeu_ps(hi, h0);
    _mm256_storeu_ps(hi + 8, h1);
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

// Columns are independent (no running chain), so full zmm here. Blends and plain stores,
// not masked stores: those are microcoded on AMD (Zen 4/5) and made this slower than AVX2.
template <bool Diff>
void foldMaxAbsLoop(const float* a, const float* b, int64_t n, float* mag, float* val)
{
    const __m512 maxF = _mm512_set1_ps(FLT_MAX);
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        const __m512 v = Diff ? _mm512_sub_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c)) : _mm512_loadu_ps(a + c);
        const __m512 m = _mm512_abs_ps(v);
        const __m512 old = _mm512_loadu_ps(mag + c);
        const __mmask16 take = _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(m, maxF, _CMP_LE_OQ), m, old, _CMP_GT_OQ);
        _mm512_storeu_ps(mag + c, _mm512_mask_blend_ps(take, old, m));
        _mm512_storeu_ps(val + c, _mm512_mask_blend_ps(take, _mm512_loadu_ps(val + c), v));
    }
    foldMaxAbsTail(a + c, Diff ? b + c : nullptr, n - c, mag + c, val + c);
}

void foldMaxAbsAvx512(const float* a, const float* b, int64_t n, float* mag, float* val)
{
    if (b)
        foldMaxAbsLoop<true>(a, b, n, mag, val);
    else
        foldMaxAbsLoop<false>(a, b, n, mag, val);
}

// Sixteen cells at a time, vertically: step k gathers column k of each cell, and a lane
// takes it when strictly larger, which is the reference's first-largest rule. Cells whose
// columns all exist; the rest (and pools too wide for 32-bit gather indices) by the reference.
void foldCellsAvx512(const float* mag, const float* val, int64_t n, int64_t pool, float* cellMag, float* cellVal)
{
    int64_t g0 = 0;
    if (pool < (int64_t(1) << 26)) {
        const __m512i base = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32(int32_t(pool)));
        for (; (g0 + 16) * pool <= n; g0 += 16) {
            const float* m0 = mag + g0 * pool;
            const float* v0 = val + g0 * pool;
            __m512 bm = _mm512_set1_ps(-1.0f), bv = _mm512_setzero_ps();
            for (int64_t k = 0; k < pool; ++k) {
                const __m512i idx = _mm512_add_epi32(base, _mm512_set1_epi32(int32_t(k)));
                const __m512 m = _mm512_i32gather_ps(idx, m0, 4);
                const __mmask16 take = _mm512_cmp_ps_mask(m, bm, _CMP_GT_OQ);
                bm = _mm512_mask_blend_ps(take, bm, m);
                bv = _mm512_mask_i32gather_ps(bv, take, idx, v0, 4);
            }
            _mm512_storeu_ps(cellMag + g0, bm);
            _mm512_storeu_ps(cellVal + g0, bv);
        }
    }
    foldCellsTail(mag + g0 * pool, val + g0 * pool, n - g0 * pool, pool, cellMag + g0, cellVal + g0);
}

}  // namespace

extern const ReduceKernels kReduceAvx512;
const ReduceKernels kReduceAvx512 = {"avx512", minMaxFiniteAvx512, statsSumAvx512, statsDevAvx512,
                                     foldMaxAbsAvx512, foldCellsAvx512};

}  // namespace quantlens::kernels
