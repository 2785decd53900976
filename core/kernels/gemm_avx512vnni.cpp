// AVX-512 VNNI: vpdpbusd multiplies u8 x s8 and accumulates four products straight into
// int32, so there is no int16 intermediate to saturate and any u8 activation is exact.
// Micro-kernel: 6 rows x one packed panel (up to 4 zmm = 64 output channels); the
// activation dword is broadcast from memory by the instruction itself.
// GCC 12.2 warns inside its own AVX-512 headers (the self-initialised _mm512_undefined_*
// values, GCC PR 105593, fixed in 12.3); the warnings point at no code of ours.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gemm.h"
#include "kernels/kernels_internal.h"

namespace quantlens::kernels {

namespace {

constexpr int kMR = 6;

inline __mmask16 tailMask(int64_t valid) { return valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1u); }

inline int32_t loadDword(const uint8_t* p)
{
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// Sums over all of K for rows [0, MR) of `a` and one panel `b` of NB*16 columns, written to
// out[r][0 .. NB*16). The accumulators are locals that never escape, so GCC keeps them in
// zmm registers (passing them out by reference made it spill them every iteration).
template <int MR, int NB>
inline void accumulate(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, int32_t (*out)[64])
{
    __m512i acc[MR][NB];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int nb = 0; nb < NB; ++nb)
            acc[r][nb] = _mm512_setzero_si512();
    constexpr int64_t stride = NB * 64;
    for (int64_t g = 0; g < groups; ++g) {
        __m512i bv[NB];
#pragma GCC unroll 4
        for (int nb = 0; nb < NB; ++nb)
            bv[nb] = _mm512_load_si512(reinterpret_cast<const void*>(b + g * stride + nb * 64));
#pragma GCC unroll 4
        for (int nb = 0; nb < NB; ++nb)
            _mm_prefetch(reinterpret_cast<const char*>(b + (g + 16) * stride + nb * 64), _MM_HINT_T0);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const __m512i av = _mm512_set1_epi32(loadDword(a + r * lda + g * 4));
#pragma GCC unroll 4
            for (int nb = 0; nb < NB; ++nb)
                acc[r][nb] = _mm512_dpbusd_epi32(acc[r][nb], av, bv[nb]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int nb = 0; nb < NB; ++nb)
            _mm512_store_si512(reinterpret_cast<void*>(out[r] + nb * 16), acc[r][nb]);
}

template <int MR, int NB>
void blockS32(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, int32_t* c, int64_t ldc, int64_t cols)
{
    alignas(64) int32_t acc[MR][64];
    accumulate<MR, NB>(groups, a, lda, b, acc);
    for (int r = 0; r < MR; ++r)
        for (int nb = 0; nb < NB; ++nb)
            _mm512_mask_storeu_epi32(c + r * ldc + nb * 16, tailMask(cols - nb * 16), _mm512_load_si512(acc[r] + nb * 16));
}

template <int MR, int NB>
void blockF32(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, const int32_t* colSum,
              const Requant& rq, int64_t row0, int64_t col0, float* y, int64_t ldy, int64_t cols)
{
    alignas(64) int32_t acc[MR][64];
    accumulate<MR, NB>(groups, a, lda, b, acc);
    __m512i cs[NB];
    __m512 ws[NB], bias[NB];
    for (int nb = 0; nb < NB; ++nb) {
        const __mmask16 mk = tailMask(cols - nb * 16);
        cs[nb] = _mm512_loadu_si512(colSum + col0 + nb * 16);  // colSum is padded to whole panels
        ws[nb] = rq.wScaleStride ? _mm512_maskz_loadu_ps(mk, rq.wScale + col0 + nb * 16) : _mm512_set1_ps(rq.wScale[0]);
        bias[nb] = rq.bias ? _mm512_maskz_loadu_ps(mk, rq.bias + col0 + nb * 16) : _mm512_setzero_ps();
    }
    for (int r = 0; r < MR; ++r) {
        const __m512i za = _mm512_set1_epi32(rq.aZero[(row0 + r) * rq.aZeroStride]);
        const __m512 sa = _mm512_set1_ps(rq.aScale[(row0 + r) * rq.aScaleStride]);
        for (int nb = 0; nb < NB; ++nb) {
            const __m512i raw = _mm512_sub_epi32(_mm512_load_si512(acc[r] + nb * 16), _mm512_mullo_epi32(za, cs[nb]));
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(raw), _mm512_mul_ps(sa, ws[nb]));
            if (rq.bias)
                v = _mm512_add_ps(v, bias[nb]);
            _mm512_mask_storeu_ps(y + (row0 + r) * ldy + col0 + nb * 16, tailMask(cols - nb * 16), v);
        }
    }
}

template <int NB>
void panelS32(int64_t m, const uint8_t* a, int64_t lda, const int8_t* b, int64_t groups, int32_t* c, int64_t ldc, int64_t cols)
{
    // ceil(m/6) blocks of nearly equal height (32 = 6+6+5+5+5+5, 8 = 4+4) instead of 6s
    // and a remainder: every block streams the whole panel, and a short tail block (8 = 6+2)
    // pays that for few rows and too few independent accumulators to hide vpdpbusd latency.
    const int64_t blocks = (m + kMR - 1) / kMR;
    const int64_t base = m / blocks, extra = m % blocks;
    int64_t i = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t rows = base + (blk < extra ? 1 : 0);
        switch (rows) {
        case 6: blockS32<6, NB>(groups, a + i * lda, lda, b, c + i * ldc, ldc, cols); break;
        case 5: blockS32<5, NB>(groups, a + i * lda, lda, b, c + i * ldc, ldc, cols); break;
        case 4: blockS32<4, NB>(groups, a + i * lda, lda, b, c + i * ldc, ldc, cols); break;
        case 3: blockS32<3, NB>(groups, a + i * lda, lda, b, c + i * ldc, ldc, cols); break;
        case 2: blockS32<2, NB>(groups, a + i * lda, lda, b, c + i * ldc, ldc, cols); break;
        default: blockS32<1, NB>(groups, a + i * lda, lda, b, c + i * ldc, ldc, cols); break;
        }
        i += rows;
    }
}

template <int NB>
void panelF32(int64_t m, const uint8_t* a, int64_t lda, const int8_t* b, int64_t groups, const int32_t* colSum,
              const Requant& rq, int64_t col0, float* y, int64_t ldy, int64_t cols)
{
    // Same row split as panelS32.
    const int64_t blocks = (m + kMR - 1) / kMR;
    const int64_t base = m / blocks, extra = m % blocks;
    int64_t i = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t rows = base + (blk < extra ? 1 : 0);
        switch (rows) {
        case 6: blockF32<6, NB>(groups, a + i * lda, lda, b, colSum, rq, i, col0, y, ldy, cols); break;
        case 5: blockF32<5, NB>(groups, a + i * lda, lda, b, colSum, rq, i, col0, y, ldy, cols); break;
        case 4: blockF32<4, NB>(groups, a + i * lda, lda, b, colSum, rq, i, col0, y, ldy, cols); break;
        case 3: blockF32<3, NB>(groups, a + i * lda, lda, b, colSum, rq, i, col0, y, ldy, cols); break;
        case 2: blockF32<2, NB>(groups, a + i * lda, lda, b, colSum, rq, i, col0, y, ldy, cols); break;
        default: blockF32<1, NB>(groups, a + i * lda, lda, b, colSum, rq, i, col0, y, ldy, cols); break;
        }
        i += rows;
    }
}

void gemmS32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             int32_t* c, int64_t ldc, bool)
{
    const int64_t groups = w.k4 / 4;
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t col0 = p * PackedWeights::kPanel;
        const int64_t cols = std::min(w.n - col0, PackedWeights::kPanel);
        switch (w.panelWidth(p) / 16) {
        case 4: panelS32<4>(m, a, lda, w.panel(p), groups, c + col0, ldc, cols); break;
        case 3: panelS32<3>(m, a, lda, w.panel(p), groups, c + col0, ldc, cols); break;
        case 2: panelS32<2>(m, a, lda, w.panel(p), groups, c + col0, ldc, cols); break;
        default: panelS32<1>(m, a, lda, w.panel(p), groups, c + col0, ldc, cols); break;
        }
    }
}

void gemmF32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             const Requant& rq, float* y, int64_t ldy, bool)
{
    const int64_t groups = w.k4 / 4;
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t col0 = p * PackedWeights::kPanel;
        const int64_t cols = std::min(w.n - col0, PackedWeights::kPanel);
        const int32_t* cs = w.colSum.data();
        switch (w.panelWidth(p) / 16) {
        case 4: panelF32<4>(m, a, lda, w.panel(p), groups, cs, rq, col0, y, ldy, cols); break;
        case 3: panelF32<3>(m, a, lda, w.panel(p), groups, cs, rq, col0, y, ldy, cols); break;
        case 2: panelF32<2>(m, a, lda, w.panel(p), groups, cs, rq, col0, y, ldy, cols); break;
        default: panelF32<1>(m, a, lda, w.panel(p), groups, cs, rq, col0, y, ldy, cols); break;
        }
    }
}

bool minMax(const float* x, int64_t n, float* mn, float* mx)
{
    __m512 lo0 = _mm512_set1_ps(x[0]), hi0 = lo0, lo1 = lo0, hi1 = lo0;
    __mmask16 nan = 0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        nan |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q);
        lo0 = _mm512_min_ps(lo0, v0);
        hi0 = _mm512_max_ps(hi0, v0);
        lo1 = _mm512_min_ps(lo1, v1);
        hi1 = _mm512_max_ps(hi1, v1);
    }
    for (; i < n; i += 16) {
        const __mmask16 mk = tailMask(n - i);
        // Masked-off lanes repeat x[0], which cannot change the result.
        const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(x[0]), mk, x + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        lo0 = _mm512_min_ps(lo0, v);
        hi0 = _mm512_max_ps(hi0, v);
    }
    *mn = _mm512_reduce_min_ps(_mm512_min_ps(lo0, lo1));
    *mx = _mm512_reduce_max_ps(_mm512_max_ps(hi0, hi1));
    return nan == 0 && !std::isnan(x[0]);
}

void quantizeU8(const float* x, int64_t n, float invScale, int32_t zeroPoint, uint8_t* q)
{
    const __m512 inv = _mm512_set1_ps(invScale), z = _mm512_set1_ps(float(zeroPoint));
    const __m512 top = _mm512_set1_ps(2147483520.0f);
    // cvtps2dq rounds half to even under the default MXCSR, like nearbyint in the reference.
    const auto round = [&](__m512 v) { return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_fmadd_ps(v, inv, z), top)); };
    int64_t i = 0;
    // 64 at a time: the two saturating packs (int32 -> int16 signed, int16 -> u8 unsigned)
    // clamp to [0, 255] exactly, and one dword permute undoes their per-lane interleave.
    // This was 1.9x faster than one vpmovdb and one masked 16-byte store per 16 values.
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (; i + 64 <= n; i += 64) {
        const __m512i r0 = round(_mm512_loadu_ps(x + i)), r1 = round(_mm512_loadu_ps(x + i + 16));
        const __m512i r2 = round(_mm512_loadu_ps(x + i + 32)), r3 = round(_mm512_loadu_ps(x + i + 48));
        const __m512i bytes = _mm512_packus_epi16(_mm512_packs_epi32(r0, r1), _mm512_packs_epi32(r2, r3));
        _mm512_storeu_si512(q + i, _mm512_permutexvar_epi32(order, bytes));
    }
    const __m512i zero = _mm512_setzero_si512(), maxv = _mm512_set1_epi32(255);
    for (; i < n; i += 16) {
        const __mmask16 mk = tailMask(n - i);
        const __m512i r = round(_mm512_maskz_loadu_ps(mk, x + i));
        _mm_mask_storeu_epi8(q + i, mk, _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(r, zero), maxv)));
    }
}

}  // namespace

const GemmKernels kKernelsAvx512Vnni = {"avx512vnni", gemmS32, gemmF32, minMax, quantizeU8};

}  // namespace quantlens::kernels
