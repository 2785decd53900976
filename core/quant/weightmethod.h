#pragma once
// How a layer's weights are turned into integers (issue #19): round to nearest, GPTQ's
// error compensation, or SmoothQuant's migration of activation outliers into the weights
// before rounding. A plan holds one per layer (plan/quantplan.h); the methods themselves
// run in runner/activationquant and tasks/methodprep, where the calibration inputs are.
#include <string>

#include "quant/gptq.h"
#include "result.h"

namespace quantlens {

enum class WeightMethod { Rtn, Gptq, SmoothQuant };

struct MethodSpec {
    WeightMethod method = WeightMethod::Rtn;
    double alpha = 0.5;  // SmoothQuant
    GptqOptions gptq;    // GPTQ
    bool operator==(const MethodSpec&) const = default;
    bool needsCalibration() const { return method != WeightMethod::Rtn; }
};

// "rtn", "gptq", "gptq:actorder", "smoothquant:ALPHA" (ALPHA in [0, 1]).
Result<MethodSpec> parseMethod(const std::string& s);
// The form parseMethod reads back ("gptq:actorder", "smoothquant:0.5").
std::string methodName(const MethodSpec& m);

}  // namespace quantlens
