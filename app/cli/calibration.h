#pragma once
// Calibration input and weight methods on the command line, shared by `activations` and
// `quantize --method gptq|smoothquant:ALPHA`. The methods themselves run in core's
// use-case layer (tasks/methodprep.h), as they do for the window.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model.h"
#include "plan/quantplan.h"
#include "runner/encoder.h"
#include "tasks/methodprep.h"

namespace quantlens::cli {

// The runner over `m`, with config.json beside the model (if any) for what shapes cannot tell.
EncoderRunner makeCalibrationRunner(const Model& m, const std::string& modelArg, int64_t heads);

// Token ids (--calib-tokens) or text (--calib-text): exactly one is given. Says on stderr
// what was read (and which tokenizer).
std::vector<std::vector<int64_t>> readCalibration(const std::string& tokens, const std::string& text,
                                                  const std::string& modelArg, int64_t vocab);

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
// The method for each of `tensors` and the calibration files, written into `plan` (over
// what a loaded plan says).
void applyMethodArgs(const MethodArgs& a, const std::vector<std::string>& tensors, QuantPlan& plan);

// The plan's methods run, with progress on a terminal; failures are one-line Failures.
PreparedPlan prepareForCli(std::shared_ptr<const Model> m, const std::string& modelArg, int64_t heads,
                           const QuantPlan& plan);

// What a method did to one layer: the --json object and the text line.
nlohmann::ordered_json methodReport(const MethodLayerOutcome& o);
std::string methodSummary(const MethodLayerOutcome& o);

}  // namespace quantlens::cli
