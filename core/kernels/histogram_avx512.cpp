// AVX-512 slot computation for computeHistogram (core/quant/histogram.cpp): the float
// formula of quantrun_ref.cpp's slotOf, 16 values at a time, mask registers in place of
// blends, a masked load for the end of a run. Values near an edge are flagged -2 and their
// positions listed; the caller decides them exactly, so every ISA gives numpy's counts.
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
    const __m512 loF = _mm512_set1_ps(p.loF), hiF = _mm512_set1_ps(p.hiF), scale = _mm512_set1_ps(p.scale);
    const __m512 tol = _mm512_set1_ps(p.tol), oneF = _mm512_set1_ps(1.0f);
    const __m512 binsF = _mm512_set1_ps(p.binsF), zero = _mm512_setzero_ps();
    const __m512i one = _mm512_set1_epi32(1), last = _mm512_set1_epi32(p.bins - 1), above = _mm512_set1_epi32(p.bins + 1);
    const __m512i nearSlot = _mm512_set1_epi32(-2), nanSlot = _mm512_set1_epi32(p.bins + 2);
    // One vector's slots; `m` masks the lanes that exist (all but at the end of a run).
    auto slots16 = [&](__m512 v, __mmask16 m, __mmask16& flagged) {
        if (absolute)
            v = _mm512_abs_ps(v);
        const __m512 f = _mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(v, loF), scale), zero);  // NaN -> 0, handled below
        const __m512 g = _mm512_min_ps(f, binsF);
        const __m512i t = _mm512_cvttps_epi32(g);
        const __m512 frac = _mm512_sub_ps(g, _mm512_cvtepi32_ps(t));
        // int(min(f, last)) = min(int(g), last) for f >= 0: one conversion for both
        __m512i b = _mm512_add_epi32(_mm512_min_epi32(t, last), one);
        const __mmask16 below = _mm512_cmp_ps_mask(v, loF, _CMP_LT_OQ);
        const __mmask16 over = _mm512_cmp_ps_mask(v, hiF, _CMP_GT_OQ);
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        // Combined with mask-register operations: written as plain & | ~ on __mmask16, GCC
        // moved the masks through general registers and back, which cost 8% of the pass.
        const __mmask16 inRange = _kandn_mask16(_kor_mask16(_kor_mask16(below, over), nan), m);
        const __mmask16 nearEdge =
            _mm512_mask_cmp_ps_mask(inRange, _mm512_min_ps(frac, _mm512_sub_ps(oneF, frac)), tol, _CMP_LT_OQ);
        b = _mm512_mask_mov_epi32(_mm512_setzero_si512(), _knot_mask16(below), b);
        b = _mm512_mask_mov_epi32(b, over, above);
        b = _mm512_mask_mov_epi32(b, nan, nanSlot);
        flagged = nearEdge;
        return _mm512_mask_mov_epi32(b, nearEdge, nearSlot);
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
