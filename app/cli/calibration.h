#pragma once
// Calibration input shared by `activations` and `quantize --method gptq|smoothquant`: the
// model's runner and the token sequences to record its layers' inputs over.
#include <cstdint>
#include <string>
#include <vector>

#include "model.h"
#include "runner/encoder.h"

namespace quantlens::cli {

// The runner over `m`, with config.json beside the model (if any) for what shapes cannot tell.
EncoderRunner makeCalibrationRunner(const Model& m, const std::string& modelArg, int64_t heads);

// Token ids, whitespace-separated, one sequence per line (as `sensitivity --tokens`).
std::vector<std::vector<int64_t>> readCalibrationTokens(const std::string& path);

}  // namespace quantlens::cli
