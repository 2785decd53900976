#pragma once
// Static activation ranges (W8A8 static, issue #19): each quantized layer's input range,
// calibrated once over the plan's calibration tokens with one of the weight calibrators,
// then fixed at run time (the runner's static mode, plan.activationRanges).
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "model.h"
#include "plan/quantplan.h"
#include "quant/quantspec.h"
#include "result.h"
#include "runner/encoder.h"

namespace quantlens {

struct StaticRangeOptions {
    // The calibrator (calib, percentile) as for weights; minmax uses every calibration token,
    // the others a sample of up to `sampleRows` rows of each layer's input.
    QuantSpec calibrator;
    int64_t sampleRows = 2048;
};

// Ranges for every linear layer the runner executes (the sensitivity ranking quantizes
// each, even those the plan keeps float), over `m` (the plan's model: PreparedPlan::model
// when SmoothQuant changed it). `modelPath` finds a text tokenizer.
Result<std::map<std::string, ActivationRange>> calibrateActivationRanges(
    std::shared_ptr<const Model> m, const std::string& modelPath, const EncoderOptions& eo, const QuantPlan& plan,
    const StaticRangeOptions& opt, const std::function<bool(double)>& progress = {});

}  // namespace quantlens
