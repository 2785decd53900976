#pragma once
// The plan's activation-aware methods (issue #19), run once so that everything downstream
// reads their result as it reads round-to-nearest: SmoothQuant first (it changes the float
// model: W·s for every layer reading a norm, the norm divided by s), then GPTQ on the
// smoothed model's calibration inputs, block after block with the earlier blocks' GPTQ
// weights in place (its integers replace round-to-nearest's). The
// Run and Sensitivity tabs, `run`/`sensitivity`/`quantize --plan`, and every export take
// the PreparedPlan, so a plan with GPTQ is evaluated and written with GPTQ's integers.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/exporter.h"
#include "model.h"
#include "plan/quantplan.h"
#include "result.h"
#include "runner/encoder.h"
#include "runner/normfold.h"

namespace quantlens {

// The token sequences of `c` (inline ids, a token file, text through the model's own
// tokenizer, or random ids below `vocab`). `modelPath` finds the tokenizer; `described`
// (if given) receives what was read, naming the tokenizer for text.
Result<std::vector<std::vector<int64_t>>> loadCalibration(const CalibrationSource& c, const std::string& modelPath,
                                                          int64_t vocab, std::string* described = nullptr);

struct MethodLayerOutcome {
    std::string tensor;      // the weight tensor
    std::string layer;       // the runner's prefix
    MethodSpec asked;        // what the plan names for it
    std::string applied;     // methodName of what was done ("rtn" when it could not be)
    std::string why;         // why it was not applied, or "" (e.g. no norm to fold into)
    // Output SQNR of the layer on the calibration inputs. GPTQ: weights quantized, activations
    // float, round-to-nearest vs GPTQ. SmoothQuant: W8A8 on kept rows, unsmoothed vs smoothed.
    double baselineOutputSqnrDb = 0;
    double outputSqnrDb = 0;
    double gptqLoss = 0;
    int64_t deadColumns = 0;
    bool fellBackToRtn = false;
    std::vector<float> smoothScales;  // SmoothQuant: s per input channel
    NormFold fold;                    // SmoothQuant: where 1/s went
};

struct PreparedPlan {
    // The float weights the plan quantizes: the model itself, or a copy holding SmoothQuant's
    // W·s and the norms divided by s (the same function in float).
    std::shared_ptr<const Model> model;
    std::map<std::string, ExportEntry> entries;            // tensor -> GPTQ's integers, as stored
    std::map<std::string, QuantizedTensor> runnerWeights;  // the same integers, [out, in]
    std::vector<std::string> replaced;                     // tensors SmoothQuant changed (weights and norms)
    std::vector<MethodLayerOutcome> layers;                // every layer a method was asked for
    std::string calibration;  // what it calibrated on (CalibrationSource::describe)
    int64_t sequences = 0, tokens = 0;
    double seconds = 0;
    bool smoothed() const { return !replaced.empty(); }
};

// (fraction done in [0, 1], what is running); false cancels.
using PrepareProgress = std::function<bool(double fraction, const std::string& stage)>;

// Runs the plan's methods over its calibration (`modelPath` finds a text tokenizer). A plan
// without methods gives `m` back with nothing else. Layers the runner does not execute
// cannot have a method (an error names them).
Result<PreparedPlan> preparePlan(std::shared_ptr<const Model> m, const std::string& modelPath, const EncoderOptions& eo,
                                 const QuantPlan& plan, const PrepareProgress& progress = {});

// One layer's integers as the plan's method finds them, for running that layer alone (the
// Run tab, `run`): GPTQ calibrates only this layer; nullopt when the plan rounds it to
// nearest. SmoothQuant changes the layer's input too, so it shows only in model runs (the
// caller says so).
Result<std::optional<QuantizedTensor>> layerMethodWeights(std::shared_ptr<const Model> m, const std::string& modelPath,
                                                          const EncoderOptions& eo, const QuantPlan& plan,
                                                          const std::string& tensor, const PrepareProgress& progress = {});

}  // namespace quantlens
