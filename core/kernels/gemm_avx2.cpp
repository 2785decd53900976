// AVX2 without VNNI: vpmaddubsw multiplies u8 x s8 pairs into *saturating* int16, then
// vpmaddwd sums pairs into int32. Two products of 255 * -128 = -65280 cannot fit int16, so
// this path is exact only for activations <= 128 (2*128*-128 = -32768 still fits). PyTorch's
// x86 dynamic quantization uses reduce_range (0..127) for exactly this reason. Callers say
// whether their activations fit (aMax128); when they may not, each activation byte is split
// into lo = a & 127 and hi = a >> 7 and both halves are multiplied separately, which is
// exact for any u8 at about half the speed. docs/kernels.md has the arithmetic.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gemm.h"
#include "kernels/kernels_internal.h"

namespace quantlens::kernels {

namespace {

#include "kernels/gemm_ymm_impl.h"

// Activations known to be <= 128: one vpmaddubsw can never saturate.
struct DotMaddubs {
    using Prep = __m256i;
    static Prep prep(__m256i a4) { return a4; }
    static __m256i dot(__m256i acc, const Prep& a, __m256i b)
    {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)));
    }
};

// Any u8: a = 128*hi + lo with lo <= 127 and hi in {0, 1}; neither product pair saturates
// (|lo pair| <= 32512, |hi pair| <= 256), and vpmaddwd by 128 scales hi back in int32.
struct DotSplit {
    struct Prep {
        __m256i lo, hi;
    };
    static Prep prep(__m256i a4)
    {
        const __m256i lo = _mm256_and_si256(a4, _mm256_set1_epi8(0x7f));
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(a4, 7), _mm256_set1_epi8(0x01));
        return {lo, hi};
    }
    static __m256i dot(__m256i acc, const Prep& a, __m256i b)
    {
        const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(a.lo, b), _mm256_set1_epi16(1));
        const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(a.hi, b), _mm256_set1_epi16(128));
        return _mm256_add_epi32(acc, _mm256_add_epi32(plo, phi));
    }
};

// Rows per tile: 4 (12 of the 16 ymm registers hold accumulators and operands of the split
// form) or 2 (half the registers, for a CPU whose loads or renamer prefer fewer live values).
template <class Dot>
void s32With(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1, int32_t* c,
             int64_t ldc, const GemmBlocking& bl)
{
    if (bl.tileRows <= 2)
        ymmGemmS32<Dot, 2>(m, a, lda, w, p0, p1, c, ldc);
    else
        ymmGemmS32<Dot, 4>(m, a, lda, w, p0, p1, c, ldc);
}

template <class Dot>
void f32With(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             const Requant& rq, float* y, int64_t ldy, const GemmBlocking& bl)
{
    if (bl.tileRows <= 2)
        ymmGemmF32<Dot, 2>(m, a, lda, w, p0, p1, rq, y, ldy);
    else
        ymmGemmF32<Dot, 4>(m, a, lda, w, p0, p1, rq, y, ldy);
}

void gemmS32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             int32_t* c, int64_t ldc, bool aMax128, const GemmBlocking& bl)
{
    if (aMax128)
        s32With<DotMaddubs>(m, a, lda, w, p0, p1, c, ldc, bl);
    else
        s32With<DotSplit>(m, a, lda, w, p0, p1, c, ldc, bl);
}

void gemmF32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             const Requant& rq, float* y, int64_t ldy, bool aMax128, const GemmBlocking& bl)
{
    if (aMax128)
        f32With<DotMaddubs>(m, a, lda, w, p0, p1, rq, y, ldy, bl);
    else
        f32With<DotSplit>(m, a, lda, w, p0, p1, rq, y, ldy, bl);
}

const GemmBlocking kBlockings[] = {{"4x16", 4, 16, 0, false, 0}, {"2x16", 2, 16, 0, false, 0}};

}  // namespace

const GemmKernels kKernelsAvx2 = {"avx2", gemmS32, gemmF32, ymmMinMax, ymmQuantizeU8, kBlockings, 2};

}  // namespace quantlens::kernels
