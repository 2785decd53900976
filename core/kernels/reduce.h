#pragma once
// The whole-tensor reductions behind minMaxRange (calibrate.cpp) and computeStats
// (metrics.cpp), one variant per ISA, chosen by the same dispatch and QUANTLENS_ISA as
// the GEMM (dispatch.cpp). Every variant is bit-identical to the portable one: the lane
// layout below IS the definition of the float summation order, and the SIMD variants
// keep it exactly (lane j of a block takes elements j, j+W, j+2W, ... in order; lanes
// are folded into the running total in lane order after each block). Min and max are
// order-independent except for the sign of a zero tie, which the same layout also fixes.
#include <cstdint>
#include <vector>

namespace quantlens::kernels {

struct ReduceKernels {
    const char* name;  // "avx512", "avx2", "ref"
    // minMaxRange: kMinMaxLanes lanes over whole groups of kMinMaxLanes floats; non-finite
    // values are skipped. lo/hi are read and updated (callers start at +-FLT_MAX).
    void (*minMaxFinite)(const float* x, int64_t groups, float* lo, float* hi);
    // computeStats, first pass over `blocks` whole blocks of kStatsBlock floats: per block
    // kStatsLanes double lanes summing the finite values, then added to *sum in lane order;
    // non-finite values counted; lo/hi (kStatsLanes each) updated with the finite values.
    void (*statsSum)(const float* x, int64_t blocks, double* sum, int64_t* nonFinite, float* lo, float* hi);
    // Second pass: sums of d and d*d with d = double(v) - double(m) over finite v, same order.
    void (*statsDev)(const float* x, int64_t blocks, float m, double* sumD, double* sumD2);
    // Heatmap max-abs pooling, one source row: for each column c < n, v = a[c] (b null) or
    // a[c] - b[c] replaces mag[c] = |v|, val[c] = v when |v| > mag[c] and v is finite (a
    // tie keeps the earlier row). Order-independent per column, so exact in every variant.
    void (*foldMaxAbs)(const float* a, const float* b, int64_t n, float* mag, float* val);
    // The band's columns (mag/val from foldMaxAbs, n of them) to cells of `pool` columns
    // (the last may be shorter): cell g gets the largest mag of its columns and that
    // column's val, strictly larger winning (so the first column on a tie); -1 and 0 when
    // every mag is -1. Writes ceil(n / pool) cells. Exact in every variant.
    void (*foldCells)(const float* mag, const float* val, int64_t n, int64_t pool, float* cellMag, float* cellVal);
};

constexpr int kMinMaxLanes = 16;
constexpr int kStatsLanes = 8;
constexpr int64_t kStatsBlock = 512;

extern const ReduceKernels kReduceRef;
// The reference fold, for the last columns of the SIMD variants.
void foldMaxAbsTail(const float* a, const float* b, int64_t n, float* mag, float* val);
// The reference cell fold, for the last cells of the SIMD variants.
void foldCellsTail(const float* mag, const float* val, int64_t n, int64_t pool, float* cellMag, float* cellVal);
// The variant matching activeKernels(): avx512vnni -> avx512, avxvnni/avx2 -> avx2, ref -> ref.
const ReduceKernels& activeReduce();
// Every variant this binary has and this CPU runs (tests compare each with kReduceRef).
std::vector<const ReduceKernels*> availableReduce();

}  // namespace quantlens::kernels
