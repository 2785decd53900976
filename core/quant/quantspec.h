#pragma once
// What to quantize how. Each scheme is named for the toolchain it reproduces bit for
// bit; see docs/quantization.md for the derivations.
#include <cstdint>
#include <string>
#include <vector>

#include "result.h"

namespace quantlens {

enum class Scheme {
    Seed,             // scale = (max-min)/255 in float32, zp 0, q = round_half_even(clamp(w/scale, qmin, qmax))
    TorchSymmetric,   // PyTorch qint8 symmetric: absmax/((qmax-qmin)/2), eps floor, nearbyint(w * (1/scale))
    TorchAffine,      // PyTorch MinMaxObserver affine (range widened to include 0, zp clamped)
    NarrowSymmetric,  // ONNX Runtime / TensorRT: absmax/127, [-127, 127], true division
    Q8_0,             // ggml Q8_0: blocks of 32 along rows, fp16 scale absmax/127, round half away
};

enum class Granularity { PerTensor, PerChannel, PerGroup };

enum class CalibMethod {
    MinMax,       // the scheme's own min/max rule
    Percentile,   // clip at the given percentile (of |x| for symmetric schemes, of each tail otherwise)
    Mse,          // clip value minimising the round-trip MSE
    Entropy,      // TensorRT histogram calibrator (KL, 2048 bins)
    HistogramL2,  // PyTorch HistogramObserver's L2 search
    Manual,       // [manualLo, manualHi]
};

struct QuantSpec {
    Scheme scheme = Scheme::Seed;
    Granularity granularity = Granularity::PerTensor;
    int64_t groupSize = 0;     // values per group along the input axis (PerGroup)
    int bits = 8;              // 2..8
    bool isUnsigned = false;   // uint8-style target range [0, 2^bits-1]
    bool reduceRange = false;  // PyTorch reduce_range: one bit less of range
    CalibMethod calib = CalibMethod::MinMax;
    double percentile = 99.99;
    float manualLo = 0.0f;
    float manualHi = 0.0f;
    int axis = 0;              // output-channel axis in the stored layout (1 for [in, out] kernels)

    // Every field, so two specs compare equal exactly when they quantize alike.
    bool operator==(const QuantSpec&) const = default;
};

std::string schemeName(Scheme s);            // "seed", "torch-symmetric", ...
std::string granularityName(const QuantSpec& s);  // "tensor", "channel", "group:128"
std::string calibName(const QuantSpec& s);   // "minmax", "percentile:99.99", "manual:-0.1,0.2", ...
Result<Scheme> parseScheme(const std::string& s);
Status parseGranularity(const std::string& s, QuantSpec& spec);
Status parseCalib(const std::string& s, QuantSpec& spec);

// The integer range of a spec: [-128, 127] for int8, [0, 255] for uint8,
// [-127, 127] for narrow-symmetric, halved by reduceRange, scaled by bits.
void integerRange(const QuantSpec& s, int32_t& qmin, int32_t& qmax);

}  // namespace quantlens
