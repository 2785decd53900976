// AVX-512 VNNI: vpdpbusd multiplies u8 x s8 and accumulates four products straight into
// int32, so there is no int16 intermediate to saturate and any u8 activation is exact.
// Micro-kernel: 6 rows x one packed panel (up to 4 zmm = 64 output channels); the
// activation dword is broadcast with vpbroadcastd from memory (vpdpbusd's u8 operand
// cannot take an embedded broadcast).
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

constexpr int kMR = 6;       // most rows of a whole-panel tile (24 accumulators + 4 + 1 of 32 zmm)
constexpr int kMRHalf = 12;  // most rows of a half-panel tile (24 accumulators + 2 + 1)

inline __mmask16 tailMask(int64_t valid) { return valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1u); }

inline int32_t loadDword(const uint8_t* p)
{
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// GCC's tree-PRE pass hoists and duplicates loads in `block` until the register allocator
// spills accumulators inside the k loop (every F32 instance with 5-6 rows did); without it
// all MR*NB accumulators stay in zmm registers through the epilogue.
#if defined(__GNUC__) && !defined(__clang__)
#define QL_KEEP_ACCUMULATORS_IN_REGISTERS __attribute__((optimize("no-tree-pre")))
#else
#define QL_KEEP_ACCUMULATORS_IN_REGISTERS
#endif

// What the float epilogue of one block needs, already offset to its first row and column.
struct Epi {
    const int32_t* colSum = nullptr;
    const int32_t* aZero = nullptr;
    int64_t aZeroStride = 0;
    const float* aScale = nullptr;
    int64_t aScaleStride = 0;
    const float* wScale = nullptr;  // one per column (a per-tensor scale arrives replicated)
    const float* bias = nullptr;    // used only when Bias
};

// The accumulator start of a float block: -aZero[r] * colSum[j] (int32 arithmetic, the same
// value as the reference's `acc - aZero*colSum`). colSum is padded to whole panels.
template <int MR, int NB>
inline __attribute__((always_inline)) void startAccumulators(__m512i (&acc)[MR][NB], const Epi& e)
{
    __m512i cs[NB];
#pragma GCC unroll 4
    for (int nb = 0; nb < NB; ++nb)
        cs[nb] = _mm512_loadu_si512(e.colSum + nb * 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
        const __m512i z = _mm512_set1_epi32(e.aZero[r * e.aZeroStride]);
#pragma GCC unroll 4
        for (int nb = 0; nb < NB; ++nb)
            acc[r][nb] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_mullo_epi32(z, cs[nb]));
    }
}

// k step g (four k) of a block: one panel group of NB vectors times MR broadcast activation
// dwords. Inlined into loops whose accumulators GCC keeps in registers (checked in the
// disassembly: no stack access in any instance). Stride: bytes per group of the panel (NB*64,
// or 256 when a tile takes half of a whole panel).
template <int MR, int NB, int64_t Stride = NB * 64>
inline __attribute__((always_inline)) void kStep(__m512i (&acc)[MR][NB], const uint8_t* a, int64_t lda,
                                                 const int8_t* b, int64_t g)
{
    constexpr int64_t stride = Stride;
    __m512i bv[NB];
#pragma GCC unroll 4
    for (int nb = 0; nb < NB; ++nb)
        bv[nb] = _mm512_load_si512(reinterpret_cast<const void*>(b + g * stride + nb * 64));
#pragma GCC unroll 4
    for (int nb = 0; nb < NB; ++nb)
        _mm_prefetch(reinterpret_cast<const char*>(b + (g + 16) * stride + nb * 64), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
        const __m512i av = _mm512_set1_epi32(loadDword(a + r * lda + g * 4));
#pragma GCC unroll 4
        for (int nb = 0; nb < NB; ++nb)
            acc[r][nb] = _mm512_dpbusd_epi32(acc[r][nb], av, bv[nb]);
    }
}

// One block: rows [0, MR) of `a` times one panel `b` of NB*16 columns over all of K, then
// its epilogue, writing straight from the accumulators to the output. The accumulators are
// locals indexed only by fully unrolled loops, so GCC keeps them in zmm registers. Writing
// them to a stack array and reading them back for the epilogue (as this code did) cost
// about 200 cycles per block on Zen 5 - ~8% at K = 768 - presumably because 512-bit
// store-to-load forwarding is slow there.
// F32: the accumulators start at -aZero*colSum (int32 arithmetic, the same value as the
// reference's `acc - aZero*colSum`), so the epilogue is convert, scale, add bias, store.
// Full: all NB*16 columns are real (every panel but a partial last one), so no masks.
template <int MR, int NB, bool F32, bool Full, bool Bias, int64_t Stride = NB * 64>
QL_KEEP_ACCUMULATORS_IN_REGISTERS void block(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b,
                                             const Epi& e, void* out, int64_t ldo, int64_t cols)
{
    __m512i acc[MR][NB];
    if constexpr (F32) {
        startAccumulators<MR, NB>(acc, e);
    } else {
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
            for (int nb = 0; nb < NB; ++nb)
                acc[r][nb] = _mm512_setzero_si512();
    }
    for (int64_t g = 0; g < groups; ++g)
        kStep<MR, NB, Stride>(acc, a, lda, b, g);
    if constexpr (F32) {
        // Scales and bias are loaded again for every vector rather than held: with all
        // accumulators live there are no registers left for them.
        const float* const wScale = e.wScale;
        const float* const bias = e.bias;
        const float* const aScale = e.aScale;
        const int64_t aScaleStride = e.aScaleStride;
        float* const y = static_cast<float*>(out);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
            const __m512 sa = _mm512_set1_ps(aScale[r * aScaleStride]);
#pragma GCC unroll 4
            for (int nb = 0; nb < NB; ++nb) {
                const __mmask16 mk = Full ? __mmask16(0xFFFF) : tailMask(cols - nb * 16);
                const __m512 ws = _mm512_maskz_loadu_ps(mk, wScale + nb * 16);
                __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][nb]), _mm512_mul_ps(sa, ws));
                if constexpr (Bias)
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, bias + nb * 16));
                if constexpr (Full)
                    _mm512_storeu_ps(y + r * ldo + nb * 16, v);
                else
                    _mm512_mask_storeu_ps(y + r * ldo + nb * 16, mk, v);
            }
        }
    } else {
        int32_t* const c = static_cast<int32_t*>(out);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
            for (int nb = 0; nb < NB; ++nb) {
                if constexpr (Full)
                    _mm512_storeu_si512(c + r * ldo + nb * 16, acc[r][nb]);
                else
                    _mm512_mask_storeu_epi32(c + r * ldo + nb * 16, tailMask(cols - nb * 16), acc[r][nb]);
            }
    }
}

// Calls f(first row, rows) for ceil(m/mr) blocks of nearly equal height (32 = 6+6+5+5+5+5,
// 8 = 4+4) instead of 6s and a remainder: every block streams the whole panel, and a short
// tail block (8 = 6+2) pays that for few rows and too few independent accumulators to hide
// vpdpbusd latency.
template <class F>
inline void forEachRowBlock(int64_t m, int64_t mr, F&& f)
{
    const int64_t blocks = (m + mr - 1) / mr;
    const int64_t base = m / blocks, extra = m % blocks;
    for (int64_t blk = 0, i = 0; blk < blocks; ++blk) {
        const int64_t rows = base + (blk < extra ? 1 : 0);
        f(i, rows);
        i += rows;
    }
}

// The output of the row tile starting at row i and column c0, and (float output) the
// epilogue's operands for it; wScale points at column c0's scale.
template <bool F32, bool Bias>
void* tileOutput(const Requant* rq, const float* wScale, const int32_t* colSum, int64_t c0, int64_t i, void* out,
                 int64_t ldo, Epi& e)
{
    if constexpr (F32) {
        e.colSum = colSum + c0;
        e.aZero = rq->aZero + i * rq->aZeroStride;
        e.aZeroStride = rq->aZeroStride;
        e.aScale = rq->aScale + i * rq->aScaleStride;
        e.aScaleStride = rq->aScaleStride;
        e.wScale = wScale;
        e.bias = Bias ? rq->bias + c0 : nullptr;
        return static_cast<float*>(out) + i * ldo + c0;
    } else {
        return static_cast<int32_t*>(out) + i * ldo + c0;
    }
}

// wScale points at the panel's first column.
template <int NB, bool F32, bool Full, bool Bias>
void panel(int64_t m, int64_t mr, const uint8_t* a, int64_t lda, const int8_t* b, int64_t groups, const Requant* rq,
           const float* wScale, const int32_t* colSum, int64_t col0, void* out, int64_t ldo, int64_t cols)
{
    forEachRowBlock(m, mr, [&](int64_t i, int64_t rows) {
        Epi e;
        void* o = tileOutput<F32, Bias>(rq, wScale, colSum, col0, i, out, ldo, e);
        const uint8_t* ab = a + i * lda;
        switch (rows) {
        case 6: block<6, NB, F32, Full, Bias>(groups, ab, lda, b, e, o, ldo, cols); break;
        case 5: block<5, NB, F32, Full, Bias>(groups, ab, lda, b, e, o, ldo, cols); break;
        case 4: block<4, NB, F32, Full, Bias>(groups, ab, lda, b, e, o, ldo, cols); break;
        case 3: block<3, NB, F32, Full, Bias>(groups, ab, lda, b, e, o, ldo, cols); break;
        case 2: block<2, NB, F32, Full, Bias>(groups, ab, lda, b, e, o, ldo, cols); break;
        default: block<1, NB, F32, Full, Bias>(groups, ab, lda, b, e, o, ldo, cols); break;
        }
    });
}

// A whole 64-column panel as two 32-column halves, each swept over all rows in tiles of up to
// 12 rows: the half a tile streams is 24 KB at K = 768 and stays in a 48 KB L1 across the
// tiles, at the cost of twice the broadcasts per multiply (docs/kernels.md, session 6).
template <bool F32, bool Bias>
void halfPanels(int64_t m, int64_t mr, const uint8_t* a, int64_t lda, const int8_t* b, int64_t groups,
                const Requant* rq, const float* wScale, const int32_t* colSum, int64_t col0, void* out, int64_t ldo)
{
    for (int64_t h = 0; h < 2; ++h) {
        const int64_t c0 = col0 + 32 * h;
        const int8_t* bh = b + 128 * h;
        forEachRowBlock(m, mr, [&](int64_t i, int64_t rows) {
            Epi e;
            void* o = tileOutput<F32, Bias>(rq, wScale + 32 * h, colSum, c0, i, out, ldo, e);
            const uint8_t* ab = a + i * lda;
            switch (rows) {
            case 12: block<12, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 11: block<11, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 10: block<10, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 9: block<9, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 8: block<8, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 7: block<7, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 6: block<6, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 5: block<5, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 4: block<4, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 3: block<3, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            case 2: block<2, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            default: block<1, 2, F32, true, Bias, 256>(groups, ab, lda, bh, e, o, ldo, 32); break;
            }
        });
    }
}

// A block whose float epilogue has not run yet: its raw accumulators wait in an L1-resident
// buffer and are converted and stored one vector at a time inside the next block's k loop.
struct Pending {
    const int32_t* acc = nullptr;  // rows x 4 vectors of 16 int32
    float* y = nullptr;            // its first output row, at the panel's first column
    const float* aScale = nullptr;
    int64_t aScaleStride = 0;
    const float* wScale = nullptr;  // the panel's 64 column scales
    const float* bias = nullptr;    // used only when Bias
    int rows = 0;                   // 0: nothing pending
};

// Vector t (row t/4, columns 16*(t%4)...) of a pending block: the same operations, in the same
// order, as block()'s epilogue, so the output is bit-identical either way.
template <bool Bias>
inline __attribute__((always_inline)) void finishVector(const Pending& p, int t, int64_t ldo)
{
    const int r = t >> 2, nb = t & 3;
    const __m512 s = _mm512_mul_ps(_mm512_set1_ps(p.aScale[r * p.aScaleStride]), _mm512_loadu_ps(p.wScale + nb * 16));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(p.acc + t * 16)), s);
    if constexpr (Bias)
        v = _mm512_add_ps(v, _mm512_loadu_ps(p.bias + nb * 16));
    _mm512_storeu_ps(p.y + r * ldo + nb * 16, v);
}

template <bool Bias>
void finishPending(Pending& p, int64_t ldo)
{
    for (int t = 0; t < p.rows * 4; ++t)
        finishVector<Bias>(p, t, ldo);
    p.rows = 0;
}

// block<MR, 4, F32, Full> with its epilogue moved out of the way of the k loop. Storing a
// block's 24 output vectors straight after its last vpdpbusd cost 3-5% of the GEMM at K = 768
// (the same stores from registers a few cycles earlier, or no stores, cost almost nothing);
// here the accumulators go to `park` and the previous block's vectors are finished one every
// `step` k steps, where the load/store ports and the non-multiply FP pipes are idle. Measured
// in one process against block(): 128x3072x768 1.016-1.028x, 128x768x768 1.016-1.022x,
// 128x768x3072 1.004x, M = 32 1.01x; M = 1 and 8 lost ~1%, so panels() uses it from M = 16.
template <int MR, bool Bias>
QL_KEEP_ACCUMULATORS_IN_REGISTERS void blockDeferred(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b,
                                                     const Epi& e, int64_t ldo, const Pending& prev, int32_t* park)
{
    __m512i acc[MR][4];
    startAccumulators<MR, 4>(acc, e);
    int64_t g = 0;
    const int items = prev.rows * 4;
    if (items > 0) {
        const int64_t step = groups / items;  // >= 1: the caller sends only groups >= 24
        for (int t = 0; t < items; ++t) {
            for (int64_t s = 0; s < step; ++s, ++g)
                kStep<MR, 4>(acc, a, lda, b, g);
            finishVector<Bias>(prev, t, ldo);
        }
    }
    for (; g < groups; ++g)
        kStep<MR, 4>(acc, a, lda, b, g);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int nb = 0; nb < 4; ++nb)
            _mm512_store_si512(park + (r * 4 + nb) * 16, acc[r][nb]);
}

// panel<4, true, true, Bias> through blockDeferred: each block finishes the one before it
// (`pend`, which may come from the previous panel) and leaves its own epilogue pending.
template <bool Bias>
void panelDeferred(int64_t m, int64_t mr, const uint8_t* a, int64_t lda, const int8_t* b, int64_t groups,
                   const Requant& rq, const float* wScale, const int32_t* colSum, int64_t col0, float* out,
                   int64_t ldo, Pending& pend, int32_t* park)
{
    forEachRowBlock(m, mr, [&](int64_t i, int64_t rows) {
        Epi e;
        e.colSum = colSum + col0;
        e.aZero = rq.aZero + i * rq.aZeroStride;
        e.aZeroStride = rq.aZeroStride;
        const uint8_t* ab = a + i * lda;
        switch (rows) {
        case 6: blockDeferred<6, Bias>(groups, ab, lda, b, e, ldo, pend, park); break;
        case 5: blockDeferred<5, Bias>(groups, ab, lda, b, e, ldo, pend, park); break;
        case 4: blockDeferred<4, Bias>(groups, ab, lda, b, e, ldo, pend, park); break;
        case 3: blockDeferred<3, Bias>(groups, ab, lda, b, e, ldo, pend, park); break;
        case 2: blockDeferred<2, Bias>(groups, ab, lda, b, e, ldo, pend, park); break;
        default: blockDeferred<1, Bias>(groups, ab, lda, b, e, ldo, pend, park); break;
        }
        pend.acc = park;
        pend.y = out + i * ldo + col0;
        pend.aScale = rq.aScale + i * rq.aScaleStride;
        pend.aScaleStride = rq.aScaleStride;
        pend.wScale = wScale;
        pend.bias = Bias ? rq.bias + col0 : nullptr;
        pend.rows = int(rows);
    });
}

// The loop nest: row chunks (bl.rowChunk rows, or all of M) -> panels [p0, p1) -> tiles of
// one panel (whole, or its two halves) over the chunk's rows -> k.
template <bool F32, bool Bias>
void panels(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
            const Requant* rq, void* out, int64_t ldo, const GemmBlocking& bl)
{
    const int64_t groups = w.k4 / 4;
    const int32_t* cs = w.colSum.data();
    // A per-tensor weight scale is replicated over one panel's columns, so the epilogue loads
    // scales the same way for both granularities (the same float either way: bit-identical).
    alignas(64) float wRep[PackedWeights::kPanel];
    const bool perChannel = F32 && rq->wScaleStride != 0;
    if (F32 && !perChannel)
        std::fill_n(wRep, PackedWeights::kPanel, rq->wScale[0]);
    const bool half = bl.tileCols == 32 || (m > bl.tileRows && m <= std::min<int64_t>(bl.halfTilesUpTo, kMRHalf));
    const int64_t mrWhole = std::clamp<int64_t>(bl.tileRows, 1, kMR);
    const int64_t mrHalf = bl.tileCols == 32 ? std::clamp<int64_t>(bl.tileRows, 1, kMRHalf) : kMRHalf;
    const int64_t chunk = bl.rowChunk > 0 ? bl.rowChunk : std::max<int64_t>(m, 1);
    Pending pend;
    alignas(64) int32_t park[kMR * 64];
    for (int64_t i0 = 0; i0 < m; i0 += chunk) {
        const int64_t mc = std::min(chunk, m - i0);
        const uint8_t* ac = a + i0 * lda;
        void* oc = F32 ? static_cast<void*>(static_cast<float*>(out) + i0 * ldo)
                       : static_cast<void*>(static_cast<int32_t*>(out) + i0 * ldo);
        Requant rc;
        if constexpr (F32) {
            rc = *rq;
            rc.aZero += i0 * rq->aZeroStride;
            rc.aScale += i0 * rq->aScaleStride;
        }
        const Requant* rcp = F32 ? &rc : nullptr;
        for (int64_t p = p0; p < p1; ++p) {
            const int64_t col0 = p * PackedWeights::kPanel;
            const int64_t cols = std::min(w.n - col0, PackedWeights::kPanel);
            const int8_t* b = w.panel(p);
            const float* ws = perChannel ? rq->wScale + col0 : wRep;
            const bool whole = w.panelWidth(p) == 64 && cols == 64;
            if constexpr (F32) {
                // Below 16 rows (three blocks) deferring cost ~1% (M = 1 and 8) instead of gaining.
                if (!half && bl.deferEpilogue && whole && groups >= 4 * kMR && mc >= 16) {
                    panelDeferred<Bias>(mc, mrWhole, ac, lda, b, groups, rc, ws, cs, col0, static_cast<float*>(oc),
                                        ldo, pend, park);
                    continue;
                }
                finishPending<Bias>(pend, ldo);
            }
            if (half && whole) {
                halfPanels<F32, Bias>(mc, mrHalf, ac, lda, b, groups, rcp, ws, cs, col0, oc, ldo);
                continue;
            }
            // Only the last panel can be partial; its width is cols rounded up to 16.
            switch (w.panelWidth(p) / 16) {
            case 4:
                if (cols == 64)
                    panel<4, F32, true, Bias>(mc, mrWhole, ac, lda, b, groups, rcp, ws, cs, col0, oc, ldo, cols);
                else
                    panel<4, F32, false, Bias>(mc, mrWhole, ac, lda, b, groups, rcp, ws, cs, col0, oc, ldo, cols);
                break;
            case 3: panel<3, F32, false, Bias>(mc, mrWhole, ac, lda, b, groups, rcp, ws, cs, col0, oc, ldo, cols); break;
            case 2: panel<2, F32, false, Bias>(mc, mrWhole, ac, lda, b, groups, rcp, ws, cs, col0, oc, ldo, cols); break;
            default: panel<1, F32, false, Bias>(mc, mrWhole, ac, lda, b, groups, rcp, ws, cs, col0, oc, ldo, cols); break;
            }
        }
    }
    if constexpr (F32)
        finishPending<Bias>(pend, ldo);
}

void gemmS32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             int32_t* c, int64_t ldc, bool, const GemmBlocking& bl)
{
    panels<false, false>(m, a, lda, w, p0, p1, nullptr, c, ldc, bl);
}

void gemmF32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             const Requant& rq, float* y, int64_t ldy, bool, const GemmBlocking& bl)
{
    if (rq.bias)
        panels<true, true>(m, a, lda, w, p0, p1, &rq, y, ldy, bl);
    else
        panels<true, false>(m, a, lda, w, p0, p1, &rq, y, ldy, bl);
}

// The candidates the first-use measurement chooses from (kernels/gemmtune.cpp), [0] first.
// 6x64: the tile every session's measurements on Zen 5 converged on (docs/kernels.md).
// -direct: each tile's epilogue right after its k loop (no parking in L1).
// 12x32: half-panel tiles, whose weights stay in L1 across row tiles at K <= 768.
// -r96: rows in chunks of 96, so a chunk's activations (72-288 KB at K = 768-3072) stay in
// L2 while every panel passes over them, instead of all of M's at large M.
// -s12: 6x64, but 7 to 12 rows as one 12x32 tile per half panel instead of two 6x64 tiles
// that each stream the whole panel (M = 1 stays on 6x64: a 1x32 tile has only two chains).
const GemmBlocking kBlockings[] = {
    {"6x64", 6, 64, 0, true, 0},
    {"6x64-direct", 6, 64, 0, false, 0},
    {"12x32", 12, 32, 0, false, 0},
    {"6x64-r96", 6, 64, 96, true, 0},
    {"12x32-r96", 12, 32, 96, false, 0},
    {"6x64-s12", 6, 64, 0, true, 12},
};

// Values before x's first 64-byte boundary (at most 15, never more than n). The loops below
// start there: a 64-byte load that straddles two cache lines costs about twice one that does
// not, and a float array from malloc is only 16-byte aligned (768x128 floats from L2:
// quantizeU8 9.2 -> 4.6 us; 3072x128 from L3: minMax 26 -> 20 us, quantizeU8 40 -> 24 us).
inline int64_t headToLine(const float* x, int64_t n)
{
    return std::min<int64_t>(n, int64_t((64 - (reinterpret_cast<uintptr_t>(x) & 63)) & 63) / int64_t(sizeof(float)));
}

// Two streams, the halves of x walked side by side: an activation bigger than L2 comes from
// L3 here (the GEMM before it evicted it), and two sequential streams keep more misses in
// flight than one.
bool minMax(const float* x, int64_t n, float* mn, float* mx)
{
    // Masked-off lanes repeat x[0], which cannot change the result.
    const __m512 first = _mm512_set1_ps(x[0]);
    __m512 lo0 = first, hi0 = first, lo1 = first, hi1 = first;
    __mmask16 nan = 0;
    const auto partial = [&](const float* p, int64_t count) {
        const __m512 v = _mm512_mask_loadu_ps(first, tailMask(count), p);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        lo0 = _mm512_min_ps(lo0, v);
        hi0 = _mm512_max_ps(hi0, v);
    };
    const int64_t head = headToLine(x, n);
    if (head > 0)
        partial(x, head);
    const float* x0 = x + head;
    const int64_t rest = n - head;
    const int64_t half = rest / 32 * 16;  // the streams cover [0, half) and [half, 2*half) of x0
    const float* x1 = x0 + half;
    for (int64_t i = 0; i < half; i += 16) {
        // The hardware prefetchers alone leave this loop waiting on L2 or L3: 2 KB ahead
        // takes 768x128 floats in L2 from 7.1 to 3.9 us and 3072x128 from L3 from 36 to
        // 22 us (line-aligned, in isolation). A prefetch never faults past the end.
        _mm_prefetch(reinterpret_cast<const char*>(x0 + i + 512), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(x1 + i + 512), _MM_HINT_T0);
        // Each vector is compared with itself so that it is used twice and GCC keeps it in a
        // register; comparing v0 with v1 let GCC fold the load of v1 into three instructions,
        // three loads that each cost a full one when x was not line-aligned (twice as slow).
        const __m512 v0 = _mm512_loadu_ps(x0 + i), v1 = _mm512_loadu_ps(x1 + i);
        nan |= _mm512_cmp_ps_mask(v0, v0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v1, v1, _CMP_UNORD_Q);
        lo0 = _mm512_min_ps(lo0, v0);
        hi0 = _mm512_max_ps(hi0, v0);
        lo1 = _mm512_min_ps(lo1, v1);
        hi1 = _mm512_max_ps(hi1, v1);
    }
    for (int64_t i = 2 * half; i < rest; i += 16)
        partial(x0 + i, rest - i);
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
    const __m512i zero = _mm512_setzero_si512(), maxv = _mm512_set1_epi32(255);
    const auto partial = [&](int64_t i, int64_t count) {
        const __mmask16 mk = tailMask(count);
        const __m512i r = round(_mm512_maskz_loadu_ps(mk, x + i));
        _mm_mask_storeu_epi8(q + i, mk, _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(r, zero), maxv)));
    };
    int64_t i = headToLine(x, n);
    if (i > 0)
        partial(0, i);
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
    for (; i < n; i += 16)
        partial(i, std::min<int64_t>(16, n - i));
}

}  // namespace

const GemmKernels kKernelsAvx512Vnni = {"avx512vnni", gemmS32, gemmF32, minMax, quantizeU8, kBlockings,
                                         int(std::size(kBlockings))};

}  // namespace quantlens::kernels
