#pragma once
// Calibration input shared by `activations` and `quantize --method gptq|smoothquant`: the
// model's runner and the token sequences to record its layers' inputs over.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "io/exporter.h"
#include "model.h"
#include "quant/quantspec.h"
#include "runner/encoder.h"

namespace quantlens::cli {

// The runner over `m`, with config.json beside the model (if any) for what shapes cannot tell.
EncoderRunner makeCalibrationRunner(const Model& m, const std::string& modelArg, int64_t heads);

// Token ids, whitespace-separated, one sequence per line (as `sensitivity --tokens`).
std::vector<std::vector<int64_t>> readCalibrationTokens(const std::string& path);
// Plain text, one sequence per non-empty line, through the model's own tokenizer
// (runner/tokenizer.h); says on stderr which tokenizer it used.
std::vector<std::vector<int64_t>> readCalibrationText(const std::string& path, const std::string& modelArg);
// Exactly one of the two given: tokens or text.
std::vector<std::vector<int64_t>> readCalibration(const std::string& tokens, const std::string& text,
                                                  const std::string& modelArg);

}  // namespace quantlens::cli

namespace quantlens::cli {

// `quantize --method rtn|gptq|smoothquant:ALPHA --calib-tokens FILE [--act-order] [--heads N]`
struct MethodArgs {
    std::string method = "rtn";
    std::string calibTokens;
    std::string calibText;
    int64_t heads = 0;
    bool actOrder = false;
};
void addMethodOptions(CLI::App* cmd, MethodArgs& a);
// Checks the command line before anything is opened (throws CLI::ValidationError).
void validateMethodArgs(const MethodArgs& a);
bool usesActivations(const MethodArgs& a);

struct MethodEntry {
    ExportEntry entry;
    nlohmann::ordered_json report;  // method, output errors, SmoothQuant scales and fold target
    std::string summary;            // one line for the text output
};
// Records the chosen layers' inputs over the calibration tokens, then quantizes each item
// (weight tensors of linear layers the runner knows) with the method.
// `items`: (weight tensor name, its spec), e.g. from a plan.
std::vector<MethodEntry> quantizeWithMethod(const Model& m, const std::string& modelArg,
                                            const std::vector<std::pair<std::string, QuantSpec>>& items,
                                            const MethodArgs& a);

}  // namespace quantlens::cli
