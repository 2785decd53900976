// AVX-512 slot computation for computeHistogram (core/quant/histogram.cpp): the float
// index of quantrun_ref.cpp's slotOf, 16 values at a time, a masked load for the end of a
// run. Values near an edge (lo and hi included) and NaN are flagged -2 and their positions
// listed; the caller decides them exactly, so every ISA gives numpy's counts.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/kernels_internal.h"
#include "kernels/quantrun.h"

namespace quantlens::quantrun {

int histogramSlotsAvx512(const float* x, int32_t* slots, int n, const SlotParams& p, bool absolute, int32_t* nearAt)
{
    const __m512 loF = _mm512_set1_ps(p.loF), scale = _mm512_set1_ps(p.scale);
    const __m512 tol = _mm512_set1_ps(p.tol), oneF = _mm512_set1_ps(1.0f);
    const __m512 lowest = _mm512_set1_ps(-0.5f), highest = _mm512_set1_ps(p.binsF + 0.5f);
    const __m512i one = _mm512_set1_epi32(1), nearSlot = _mm512_set1_epi32(-2);
    // One vector's slots; `m` masks the lanes that exist (all but at the end of a run).
    // No compares against lo and hi: the index is clamped to [-0.5, bins + 0.5] and
    // floored, so below lo gives slot 0 and above hi slot bins + 1 by the same arithmetic,
    // and a value that close to lo or hi is within tol of edge 0 or bins and flagged like
    // any other edge (the caller decides flagged values, below / above included). NaN
    // survives the clamp (the operand order keeps it), fails every comparison with tol and
    // is flagged too. Three compares and four blends fewer than testing each case.
    auto slots16 = [&](__m512 v, __mmask16 m, __mmask16& flagged) {
        if (absolute)
            v = _mm512_abs_ps(v);
        const __m512 f = _mm512_mul_ps(_mm512_sub_ps(v, loF), scale);
        const __m512 g = _mm512_min_ps(highest, _mm512_max_ps(lowest, f));  // NaN stays NaN
        const __m512i t = _mm512_cvt_roundps_epi32(g, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m512 frac = _mm512_sub_ps(g, _mm512_cvtepi32_ps(t));
        flagged = _mm512_mask_cmp_ps_mask(m, _mm512_min_ps(frac, _mm512_sub_ps(oneF, frac)), tol, _CMP_NGE_UQ);
        return _mm512_mask_mov_epi32(_mm512_add_epi32(t, one), flagged, nearSlot);
    };
    int near = 0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __mmask16 flagged;
        _mm512_storeu_si512(slots + i, slots16(_mm512_loadu_ps(x + i), 0xFFFF, flagged));
        for (unsigned f = flagged; f; f &= f - 1)  // rare (about 1 value in 500 for 2048 bins)
            nearAt[near++] = i + __builtin_ctz(f);
    }
    if (i < n) {  // the end of a run: masked load and store
        const __mmask16 m = __mmask16((1u << (n - i)) - 1);
        __mmask16 flagged;
        _mm512_mask_storeu_epi32(slots + i, m, slots16(_mm512_maskz_loadu_ps(m, x + i), m, flagged));
        for (unsigned f = flagged; f; f &= f - 1)
            nearAt[near++] = i + __builtin_ctz(f);
    }
    return near;
}

}  // namespace quantlens::quantrun
