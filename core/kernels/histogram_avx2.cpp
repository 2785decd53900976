// AVX2 slot computation for computeHistogram (core/quant/histogram.cpp): the float index
// of the portable slotOf, 8 values at a time. Values near an edge (lo and hi included) and
// NaN are flagged -2 and decided exactly by the caller, so both paths give numpy's counts.
#include <immintrin.h>

#include "kernels/kernels_internal.h"
#include "kernels/quantrun.h"

namespace quantlens::quantrun {

int histogramSlotsAvx2(const float* x, int32_t* slots, int n, const SlotParams& p, bool absolute, int32_t* nearAt)
{
    // As the AVX-512 variant: the index clamped to [-0.5, bins + 0.5] and floored gives
    // below / above without compares against lo and hi; values within tol of any edge (lo
    // and hi included) and NaN (kept by the operand order, unordered against tol) are
    // flagged for the caller's exact path.
    const __m256 loF = _mm256_set1_ps(p.loF), scale = _mm256_set1_ps(p.scale);
    const __m256 tol = _mm256_set1_ps(p.tol), oneF = _mm256_set1_ps(1.0f);
    const __m256 lowest = _mm256_set1_ps(-0.5f), highest = _mm256_set1_ps(p.binsF + 0.5f);
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i one = _mm256_set1_epi32(1), nearSlot = _mm256_set1_epi32(-2);
    int i = 0, near = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (absolute)
            v = _mm256_and_ps(v, absMask);
        const __m256 f = _mm256_mul_ps(_mm256_sub_ps(v, loF), scale);
        const __m256 g = _mm256_min_ps(highest, _mm256_max_ps(lowest, f));  // NaN stays NaN
        const __m256 fl = _mm256_floor_ps(g);
        const __m256 frac = _mm256_sub_ps(g, fl);
        const __m256 nearEdge = _mm256_cmp_ps(_mm256_min_ps(frac, _mm256_sub_ps(oneF, frac)), tol, _CMP_NGE_UQ);
        const __m256i b = _mm256_add_epi32(_mm256_cvttps_epi32(fl), one);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(slots + i),
                            _mm256_blendv_epi8(b, nearSlot, _mm256_castps_si256(nearEdge)));
        for (unsigned m = unsigned(_mm256_movemask_ps(nearEdge)); m; m &= m - 1)  // rare
            nearAt[near++] = i + __builtin_ctz(m);
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
