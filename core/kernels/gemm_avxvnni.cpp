// AVX-VNNI: the VEX-encoded 256-bit vpdpbusd (Alder Lake and later, Zen 5). Same exactness
// as AVX-512 VNNI (products accumulate straight into int32); 16 ymm registers allow 6 rows.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gemm.h"
#include "kernels/kernels_internal.h"

namespace quantlens::kernels {

namespace {

#include "kernels/gemm_ymm_impl.h"

struct DotVnni {
    using Prep = __m256i;
    static Prep prep(__m256i a4) { return a4; }
    static __m256i dot(__m256i acc, const Prep& a, __m256i b) { return _mm256_dpbusd_avx_epi32(acc, a, b); }
};

// Rows per tile: 6 (12 accumulators + 2 weight vectors + 1 broadcast of 16 ymm) or 4.
void gemmS32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             int32_t* c, int64_t ldc, bool, const GemmBlocking& bl)
{
    if (bl.tileRows <= 4)
        ymmGemmS32<DotVnni, 4>(m, a, lda, w, p0, p1, c, ldc);
    else
        ymmGemmS32<DotVnni, 6>(m, a, lda, w, p0, p1, c, ldc);
}

void gemmF32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             const Requant& rq, float* y, int64_t ldy, bool, const GemmBlocking& bl)
{
    if (bl.tileRows <= 4)
        ymmGemmF32<DotVnni, 4>(m, a, lda, w, p0, p1, rq, y, ldy);
    else
        ymmGemmF32<DotVnni, 6>(m, a, lda, w, p0, p1, rq, y, ldy);
}

const GemmBlocking kBlockings[] = {{"6x16", 6, 16, 0, false, 0}, {"4x16", 4, 16, 0, false, 0}};

}  // namespace

const GemmKernels kKernelsAvxVnni = {"avxvnni", gemmS32, gemmF32, ymmMinMax, ymmQuantizeU8, kBlockings, 2};

}  // namespace quantlens::kernels
