#pragma once
// Running a whole transformer under a quantization plan: the Sensitivity tab and
// `quantlens-cli sensitivity` both call this, so the window and the command line give the
// same figures for the same plan and tokens.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model.h"
#include "plan/quantplan.h"
#include "runner/encoder.h"
#include "runner/sensitivity.h"
#include "tasks/methodprep.h"

namespace quantlens {

// Random calibration/evaluation tokens when the user gives none: one sequence of this many.
constexpr int64_t kDefaultEvalTokens = 128;

// Each linear layer of the runner as the plan has it.
struct RunnerLayerPlan {
    std::string prefix;      // runner name ("transformer.h.0.attn.c_attn")
    std::string tensor;      // its weight tensor in the model
    PlanDecision decision;
    bool simulated = false;  // no int8 GEMM for this spec/activation mode
    std::string method = "rtn";  // how its integers were found (methodName), "" when kept float
};

// Sets the runner's activations and every linear layer's spec from `plan` (the layers stay
// switched as they were), and returns what each layer gets. Also fills `opt.specs` and
// `opt.keepFloat` so computeSensitivity ranks and measures the plan. With `prep` (the plan's
// methods, run by preparePlan; `r` and `m` must then be its model) each GPTQ layer computes
// with GPTQ's integers.
Result<std::vector<RunnerLayerPlan>> applyPlan(EncoderRunner& r, const Model& m, const QuantPlan& plan,
                                               SensitivityOptions& opt, const PreparedPlan* prep = nullptr);

struct ModelRunRequest {
    SensitivityView view = SensitivityView::OneQuantized;
    SensitivityMetric rankBy = SensitivityMetric::Cosine;
    std::function<bool(int64_t, int64_t)> progress;  // false cancels
};

struct ModelRunReport {
    SensitivityReport sensitivity;         // the per-layer ranking and the plan figure
    std::vector<RunnerLayerPlan> layers;   // execution order
};

Result<ModelRunReport> runModelUnderPlan(EncoderRunner& r, const Model& m, const QuantPlan& plan,
                                         const EncoderInput& in, const ModelRunRequest& req = {},
                                         const PreparedPlan* prep = nullptr);

}  // namespace quantlens
