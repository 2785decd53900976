#pragma once
// Internal: the per-slice quantize loop and the metric sums, portable and AVX2. Both
// paths give identical results (the AVX2 one is checked against the portable one in
// tst_quant_properties); which one runs follows the GEMM's run-time choice
// (kernels/dispatch.cpp, activeReduce), so QUANTLENS_ISA=ref forces the portable one.
#include <cstdint>

namespace quantlens::quantrun {

enum class Kernel : int {
    DivHalfEven,     // seed (torch `w / scale`), ONNX Runtime (numpy `x / scale`.round())
    MulInvHalfEven,  // torch quantize_per_tensor/channel: nearbyint(x * (1.0f / scale))
    MulInvHalfAway,  // ggml quantize_row_q8_0_ref: roundf(x * id)
};

// s is the scale for DivHalfEven and the multiplier (1/scale, or ggml's id) otherwise.
// Returns how many values rounded outside [qmin, qmax]; NaN maps to zp. Stores the low
// byte of each integer (unsigned targets keep their 0..255 bit pattern).
int64_t quantizeRef(const float* x, int8_t* q, int64_t n, Kernel k, float s, int32_t zp, int32_t qmin, int32_t qmax);
int64_t quantizeAvx2(const float* x, int8_t* q, int64_t n, Kernel k, float s, int32_t zp, int32_t qmin, int32_t qmax);
bool haveAvx2();  // the dispatch chose an AVX2-or-better path (not QUANTLENS_ISA=ref)

// Sums for the metrics over n values: in 8 float lanes per block of 512, flushed to double.
struct Sums {
    double err2 = 0, x2 = 0, y2 = 0, xy = 0;
    float maxAbs = 0;
};
// `start` continues earlier sums (the AVX2 path hands its tail over this way).
Sums sumsRef(const float* x, const float* y, int64_t n, Sums start = {});
Sums sumsAvx2(const float* x, const float* y, int64_t n);

// Histogram slots (see computeHistogram): 0 below, 1..bins the bins, bins+1 above, -1 NaN,
// -2 "within tol of an edge: decide with numpy's float64 edges". The AVX2 version may flag
// a different set of values as -2 (never a wrong bin): the final counts are numpy's either way.
struct SlotParams {
    float loF, hiF, scale, tol, lastF, binsF;
    int32_t bins;
};
void histogramSlotsAvx2(const float* x, int32_t* slots, int n, const SlotParams& p, bool absolute);

}  // namespace quantlens::quantrun
