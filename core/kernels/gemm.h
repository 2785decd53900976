#pragma once
// int8 GEMM for dynamic-quantized linear layers: u8 activations x s8 weights -> s32,
// with an optional fused float epilogue. docs/kernels.md explains the packed layout,
// the epilogue and why the AVX2 path needs to know whether activations fit in 7 bits.
//
// Conventions: A is [M, K] row-major (activations), W is [N, K] row-major (an nn.Linear
// weight, one row per output channel), C/Y is [M, N] row-major:
//     acc[i][j] = sum_k A[i][k] * W[j][k]
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace quantlens::kernels {

// ---- the specification (gemm_ref.cpp): plain loops, no packing ----
void gemm_u8s8s32_ref(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda,
                      const int8_t* w, int64_t ldw, int32_t* c, int64_t ldc);
void gemm_s8s8s32_ref(int64_t m, int64_t n, int64_t k, const int8_t* a, int64_t lda,
                      const int8_t* w, int64_t ldw, int32_t* c, int64_t ldc);

// The fused epilogue of PyTorch's dynamic quantized linear (FBGEMM ReQuantizeForFloat):
//     y[i][j] = float(acc[i][j] - aZero[i] * colSum[j]) * float(aScale[i] * wScale[j]) + bias[j]
// A stride of 0 broadcasts one value (per-tensor); 1 walks an array (per-row / per-channel).
struct Requant {
    const int32_t* aZero = nullptr;
    int64_t aZeroStride = 0;
    const float* aScale = nullptr;
    int64_t aScaleStride = 0;
    const float* wScale = nullptr;
    int64_t wScaleStride = 0;
    const float* bias = nullptr;  // nullptr: no bias
};
// Reference epilogue on an unpacked W (colSum computed here): the oracle for the fused kernels.
void requant_f32_ref(int64_t m, int64_t n, const int32_t* acc, int64_t ldacc,
                     const int32_t* colSum, const Requant& rq, float* y, int64_t ldy);

// ---- packed weights ----
// W is stored in panels of up to kPanel output channels; inside a panel, for every group of
// four k: the panel's columns, each as 4 consecutive int8 (the operand shape of vpdpbusd
// and vpmaddubsw). K is zero-padded to a multiple of 4 and the last panel to a multiple of 16
// columns, so the padding contributes nothing to any sum.
struct PackedWeights {
    static constexpr int64_t kPanel = 64;
    int64_t n = 0, k = 0;
    int64_t k4 = 0;       // K rounded up to a multiple of 4
    int64_t panels = 0;
    std::shared_ptr<int8_t[]> data;  // 64-byte aligned
    std::vector<int32_t> colSum;     // sum_k W[j][k], padded with zeros to panels*kPanel

    int64_t panelWidth(int64_t p) const;  // multiple of 16, <= kPanel
    const int8_t* panel(int64_t p) const { return data.get() + p * kPanel * k4; }
    int64_t bytes() const { return panels * kPanel * k4; }
};
PackedWeights packWeights(const int8_t* w, int64_t n, int64_t k, int64_t ldw);

// Activations handed to the packed kernels must have readable rows of k4 bytes
// (lda >= k4); the bytes beyond K may hold anything because W's padding is zero.
inline int64_t paddedK(int64_t k) { return (k + 3) / 4 * 4; }

// ---- how a call walks the packed weights (chosen per CPU: kernels/gemmtune.h) ----
// Every blocking computes the same integers and the same floats in the same order (the
// output is bit-identical whichever is used); they differ only in speed, which depends on
// the CPU's caches and ports. Each ISA lists its candidates; docs/kernels.md has the history.
struct GemmBlocking {
    const char* name;       // "6x64", "12x32-r96", ...: stable, stored in the tuning cache
    int tileRows;           // most rows per micro-tile; M is split into ceil(M/tileRows) even tiles
    int tileCols;           // output channels per micro-tile: 64 = a whole panel, 32 = half of one
    int rowChunk;           // 0: each panel sweeps all M rows; n: rows in chunks of n, panels inside
    bool deferEpilogue;     // float output: a tile's epilogue runs inside the next tile's k loop
    // tileRows < M <= halfTilesUpTo: half-panel tiles of up to 12 rows instead (one tile per half
    // rather than two or more tiles that each stream the whole panel); 0: never.
    int halfTilesUpTo = 0;
};

// ---- one ISA's kernels (dispatch.cpp builds the table) ----
struct GemmKernels {
    const char* name;  // "avx512vnni", "avxvnni", "avx2", "ref"
    // Computes the output columns of panels [p0, p1) only (threads split by panel); c / y
    // point at column 0 of the full [M, N] output, and columns >= N are never written.
    // aMax128: every activation byte is <= 128 (true for reduce_range activations: their
    // range maps to 0..127 and rounding can add at most one). Only the AVX2 path uses it:
    // vpmaddubsw saturates its int16 pair sum for a > 128 (2 * 255 * -128 = -65280), while
    // 2 * 128 * -128 = -32768 and 2 * 128 * 127 = 32512 still fit. Without the guarantee
    // AVX2 takes an exact, slower route.
    // `blocking` must be one of this table's `blockings` (any of them gives the same bits).
    void (*gemmS32)(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0,
                    int64_t p1, int32_t* c, int64_t ldc, bool aMax128, const GemmBlocking& blocking);
    void (*gemmF32)(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0,
                    int64_t p1, const Requant& rq, float* y, int64_t ldy, bool aMax128,
                    const GemmBlocking& blocking);
    // min and max of n floats (n >= 1). Returns false when any element is NaN (then mn/mx
    // are meaningless); infinities come out as the min or max and the caller rejects them.
    bool (*minMax)(const float* x, int64_t n, float* mn, float* mx);
    // q[i] = clamp(nearbyint(fma(x[i], invScale, zeroPoint)), 0, 255): FBGEMM's Quantize<uint8_t>.
    void (*quantizeU8)(const float* x, int64_t n, float invScale, int32_t zeroPoint, uint8_t* q);
    // The blockings this variant implements; blockings[0] is the generic default.
    const GemmBlocking* blockings;
    int blockingCount;
};

// Every variant built into this binary that this CPU and OS can run, best first, "ref" last.
const std::vector<const GemmKernels*>& availableKernels();
// The variant in use: QUANTLENS_ISA if set (throws std::runtime_error naming the valid
// choices when that path is unknown, not built or not supported here), else the best one.
const GemmKernels& activeKernels();
const char* activeIsa();
// Names of all variants compiled in (supported here or not), for messages.
std::vector<std::string> builtIsaNames();

// Convenience wrappers over a kernel table, covering all panels, with the blocking chosen
// for this CPU (activeBlocking) unless one is given.
void gemmU8S8S32(const GemmKernels& kr, int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w,
                 int32_t* c, int64_t ldc, bool aMax128, const GemmBlocking* blocking = nullptr);
// s8 activations: a^0x80 turns them into u8 = a+128, and 128*colSum takes the offset back out.
void gemmS8S8S32(const GemmKernels& kr, int64_t m, const int8_t* a, int64_t lda, const PackedWeights& w,
                 int32_t* c, int64_t ldc, const GemmBlocking* blocking = nullptr);

}  // namespace quantlens::kernels
