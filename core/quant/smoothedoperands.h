#pragma once
// What SmoothQuant at one α does to a layer's two operands, for the Activations view: the
// per-channel maxima after smoothing, the histograms of X / s and W · diag(s), and the int8
// ranges the W8A8 run of smoothquant.h gives them (per token for X, per output row for W),
// so the view can show why one α quantizes better than another.
#include <cstdint>
#include <span>
#include <vector>

#include "quant/histogram.h"
#include "result.h"

namespace quantlens {

struct SmoothedOperands {
    double alpha = 0;
    std::vector<float> scales;        // s_j
    std::vector<float> actAbsMax;     // max|X_j| / s_j over every recorded token
    std::vector<float> weightAbsMax;  // max|W_j| · s_j
    // Over [-R, R], R the largest magnitude (actRange, weightRange): nothing falls outside.
    Histogram activations;  // X / s over the given rows
    Histogram weights;      // W · diag(s)
    double actRange = 0;     // max_j actAbsMax: the widest token's int8 range is ±this at most
    double weightRange = 0;  // max_j weightAbsMax: the widest output row's
    // The middle of the per-token (per-row) absmax: the int8 step of a typical token (output
    // row) is this / 127. An outlier channel drags every token's range up to its size.
    double medianTokenRange = 0;
    double medianRowRange = 0;
};

// x: rows [n, in] (a sample of the recorded inputs); w: [out, in]; actAbsMax and
// weightAbsMax: the per-input-channel maxima (over every recorded token; over W's rows);
// s: the scales (smoothQuantScales, or all ones for no smoothing). `bins` >= 1.
Result<SmoothedOperands> smoothedOperands(std::span<const float> x, int64_t n, std::span<const float> w, int64_t out,
                                          int64_t in, std::span<const float> actAbsMax,
                                          std::span<const float> weightAbsMax, std::span<const float> s, int bins);

}  // namespace quantlens
