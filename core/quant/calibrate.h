#pragma once
// Range calibration: which [lo, hi] a tensor (or one channel / group of it) is clipped to
// before the scheme turns the range into a scale and zero point. Each calibrator works on
// one slice of values; quantize() calls it once per tensor, channel or group.
// See docs/quantization.md for the algorithms and the toolchains they reproduce.
#include <span>
#include <string>
#include <vector>

#include "quant/quantspec.h"

namespace quantlens {

struct Range {
    float lo = 0.0f;
    float hi = 0.0f;
};

// True for the schemes whose range is symmetric about zero (the calibrators then work on |x|).
bool isSymmetricScheme(Scheme s);

// Finite min and max (NaN and +-inf skipped); {0, 0} when nothing finite is there.
Range minMaxRange(std::span<const float> x);

// The individual calibrators (calibrateRange dispatches to these):
// percentile: symmetric -> pytorch-quantization's histogram percentile of |x| (2048 bins
// over [0, max|x|], the edge where the CDF first reaches P), returned as [-a, a];
// otherwise numpy.percentile(x, [100-P, P]) ('linear'), exactly.
Range percentileRange(std::span<const float> x, double percentile, bool symmetric);
// pytorch-quantization / TensorRT entropy (KL) calibrator on |x|; affine schemes clip each side at the amax.
Range entropyRange(std::span<const float> x, const QuantSpec& spec);
// MSE-optimal clip: symmetric -> pytorch-quantization's histogram MSE search; affine -> our
// shrink search on a 2048-bin histogram of x (see docs/quantization.md).
Range mseRange(std::span<const float> x, const QuantSpec& spec);
// torch 1.13 HistogramObserver: the [new_min, new_max] its _non_linear_param_search picks.
Range histogramL2Range(std::span<const float> x);

// The range spec.calib picks for these values. Symmetric schemes get a range that is
// symmetric or only its magnitude matters (the scheme uses max(|lo|, |hi|)).
Result<Range> calibrateRange(std::span<const float> x, const QuantSpec& spec);

// For the GUI's markers: every calibrator's range for this tensor, per tensor, in a fixed
// order (minmax, percentile at spec.percentile, mse, entropy, hist-l2, and manual when
// spec.calib is Manual). Labels are calibName() spellings.
struct CalibSuggestion {
    CalibMethod method;
    std::string label;
    float lo;
    float hi;
};
std::vector<CalibSuggestion> suggestRanges(std::span<const float> x, const QuantSpec& spec);

}  // namespace quantlens
