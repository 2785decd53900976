// AVX2 slot computation for computeHistogram (core/quant/histogram.cpp): the same float
// formula as the portable slotOf, 8 values at a time. Values near an edge are flagged -2
// and decided exactly by the caller, so both paths give numpy's counts.
#include <immintrin.h>

#include "kernels/kernels_internal.h"
#include "kernels/quantrun.h"

namespace quantlens::quantrun {

int histogramSlotsAvx2(const float* x, int32_t* slots, int n, const SlotParams& p, bool absolute, int32_t* nearAt)
{
    const __m256 loF = _mm256_set1_ps(p.loF), hiF = _mm256_set1_ps(p.hiF), scale = _mm256_set1_ps(p.scale);
    const __m256 tol = _mm256_set1_ps(p.tol), oneMinusTol = _mm256_set1_ps(1.0f - p.tol);
    const __m256 lastF = _mm256_set1_ps(p.lastF), binsF = _mm256_set1_ps(p.binsF), zero = _mm256_setzero_ps();
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i one = _mm256_set1_epi32(1), above = _mm256_set1_epi32(p.bins + 1);
    const __m256i nearSlot = _mm256_set1_epi32(-2), nanSlot = _mm256_set1_epi32(p.bins + 2), below = _mm256_setzero_si256();
    int i = 0, near = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (absolute)
            v = _mm256_and_ps(v, absMask);
        __m256 f = _mm256_max_ps(_mm256_mul_ps(_mm256_sub_ps(v, loF), scale), zero);  // NaN -> 0, handled below
        const __m256 g = _mm256_min_ps(f, binsF);
        const __m256 frac = _mm256_sub_ps(g, _mm256_cvtepi32_ps(_mm256_cvttps_epi32(g)));
        const __m256 nearEdge = _mm256_or_ps(_mm256_cmp_ps(frac, tol, _CMP_LT_OQ), _mm256_cmp_ps(frac, oneMinusTol, _CMP_GT_OQ));
        f = _mm256_min_ps(f, lastF);
        __m256i b = _mm256_add_epi32(_mm256_cvttps_epi32(f), one);
        b = _mm256_blendv_epi8(b, nearSlot, _mm256_castps_si256(nearEdge));
        const int nearMask = _mm256_movemask_ps(nearEdge);
        b = _mm256_blendv_epi8(b, below, _mm256_castps_si256(_mm256_cmp_ps(v, loF, _CMP_LT_OQ)));
        b = _mm256_blendv_epi8(b, above, _mm256_castps_si256(_mm256_cmp_ps(v, hiF, _CMP_GT_OQ)));
        b = _mm256_blendv_epi8(b, nanSlot, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(slots + i), b);
        if (nearMask) {  // rare; below/above/NaN may have replaced the flag
            unsigned m = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(b, nearSlot))));
            for (; m; m &= m - 1)
                nearAt[near++] = i + __builtin_ctz(m);
        }
    }
    for (; i < n; ++i) {  // a short last chunk: the exact path decides
        float v = x[i];
        if (absolute)
            v = v < 0 ? -v : v;
        slots[i] = v != v ? p.bins + 2 : (v < p.loF ? 0 : (v > p.hiF ? p.bins + 1 : -2));
        if (slots[i] == -2)
            nearAt[near++] = i;
    }
    return near;
}

}  // namespace quantlens::quantrun
