#pragma once
// The quantizer's inner loops (core/quant: quantize, dequantize, metrics, histogram), one
// table per ISA: quantrun_ref.cpp is the specification, quantrun_avx2.cpp and
// quantrun_avx512.cpp (with histogram_avx2/avx512.cpp) give identical results. Which one
// runs follows the GEMM's run-time choice (kernels/dispatch.cpp), so the one QUANTLENS_ISA
// override forces these too; tst_quantrun compares every variant this CPU has with ref.
#include <cstdint>
#include <vector>

namespace quantlens::quantrun {

enum class Kernel : int {
    DivHalfEven,     // seed (torch `w / scale`), ONNX Runtime (numpy `x / scale`.round())
    MulInvHalfEven,  // torch quantize_per_tensor/channel: nearbyint(x * (1.0f / scale))
    MulInvHalfAway,  // ggml quantize_row_q8_0_ref: roundf(x * id)
};

// Sums for the metrics over n values (x the reference, y the approximation). The order is
// the contract: blocks of kSumBlock values from the start; in a block, whole chunks of
// kSumLanes go lane by lane (lane j takes elements j, j+16, ... of the block) into float
// lanes, the < kSumLanes values left at the end of a block go one by one into lane 0, and
// after each block the lanes are added to the double totals in lane order.
struct Sums {
    double err2 = 0, x2 = 0, y2 = 0, xy = 0;
    float maxAbs = 0;
};
// 16: one zmm per sum (two ymm); with 8, AVX-512 had to split every product vector and add
// its halves one after the other, which made the sums half of the round trip's work.
constexpr int kSumLanes = 16;
constexpr int64_t kSumBlock = 512;
// Above the kernels: a run longer than kSumChunk values is summed chunk by chunk, each
// chunk (kSumChunk values from the run's start, the last shorter) from zero, and the
// chunks' totals are then folded in chunk order, the first taken as it is (so a run of
// one chunk keeps the bits of one call). The chunks do not depend on each other, so
// threads can take any of them: the metrics are the same bits whatever number ran.
constexpr int64_t kSumChunk = 64 * kSumBlock;
inline void foldChunk(Sums& total, const Sums& chunk, bool first)
{
    if (first) {
        total = chunk;
        return;
    }
    total.err2 += chunk.err2;
    total.x2 += chunk.x2;
    total.y2 += chunk.y2;
    total.xy += chunk.xy;
    total.maxAbs = chunk.maxAbs > total.maxAbs ? chunk.maxAbs : total.maxAbs;
}

// Histogram slots (see computeHistogram): 0 below, 1..bins the bins, bins+1 above, bins+2
// NaN (counted nowhere), -2 "within tol of an edge: decide with numpy's float64 edges".
// SIMD variants may flag a different set of values as -2 (never a wrong slot), NaN and
// values beyond lo or hi included (AVX-512 does): the caller decides every -2 exactly, so
// the final counts are numpy's either way.
struct SlotParams {
    float loF, hiF, scale, tol, lastF, binsF;
    int32_t bins;
};

struct QuantKernels {
    const char* name;  // "avx512", "avx2", "ref"
    // s is the scale for DivHalfEven and the multiplier (1/scale, or ggml's id) otherwise.
    // Returns how many values rounded outside [qmin, qmax]; NaN maps to zp. Stores the low
    // byte of each integer (unsigned targets keep their 0..255 bit pattern).
    int64_t (*quantize)(const float* x, int8_t* q, int64_t n, Kernel k, float s, int32_t zp, int32_t qmin,
                        int32_t qmax);
    // out = (q - zp) * scale, one rounding (torch's dequantize_val, ONNX Runtime).
    void (*dequantize)(const int8_t* q, float* out, int64_t n, bool isUnsigned, float scale, int32_t zp);
    // Adds n values' sums to *acc. A run split at multiples of kSumBlock gives, bit for
    // bit, what one call over the whole run gives (the totals grow block by block).
    void (*sums)(const float* x, const float* y, int64_t n, Sums* acc);
    // Slots of n values (of |x| if absolute); the positions of the -2 slots go to nearAt
    // (room for n) in increasing order, their count is returned.
    int (*histogramSlots)(const float* x, int32_t* slots, int n, const SlotParams& p, bool absolute, int32_t* nearAt);
    // quantize, then dequantize into y, then sums(x, y): one sweep, the same results as the
    // three calls in a row. `scale` is the dequantization scale (s may be its inverse).
    int64_t (*roundTrip)(const float* x, int8_t* q, float* y, int64_t n, Kernel k, float s, float scale, int32_t zp,
                         int32_t qmin, int32_t qmax, bool isUnsigned, Sums* sums);
};

extern const QuantKernels kQuantRef;
// The variant matching activeKernels(): avx512vnni -> avx512, avxvnni/avx2 -> avx2, ref -> ref.
const QuantKernels& activeQuant();
// Every variant this binary has and this CPU runs, best first, ref last (for tests and benches).
std::vector<const QuantKernels*> availableQuant();

}  // namespace quantlens::quantrun
