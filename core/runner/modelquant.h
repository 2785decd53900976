#pragma once
// quantize_dynamic for a whole model: every linear layer (findLinearLayers) becomes a
// DynamicLinear, and the summary says what that does to memory and to each weight.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model.h"
#include "runner/dynamiclinear.h"

namespace quantlens {

struct LinearQuantSummary {
    std::string prefix;
    int64_t inFeatures = 0, outFeatures = 0;
    bool transposed = false;
    int64_t bytesBefore = 0;  // weight + bias as stored in the file
    int64_t bytesAfter = 0;   // int8 weight + scales + zero points + float32 bias
    double weightSqnrDb = 0;  // of the int8 weight against the float weight
    double weightMaxAbsError = 0;
};

struct ModelQuantSummary {
    std::vector<LinearQuantSummary> layers;
    int64_t bytesBefore = 0, bytesAfter = 0;
    double ratio = 0;  // bytesBefore / bytesAfter
    // The runnable layers, in the same order as `layers` (empty unless asked for).
    std::vector<std::shared_ptr<const DynamicLinear>> linears;
};

// Quantizes every linear layer of `m`. Fails on the first layer that cannot be read or
// quantized, naming it. keepLinears=false drops the packed layers after measuring them.
Result<ModelQuantSummary> quantizeAllLinear(const Model& m, const DynamicLinearOptions& options = {},
                                            bool keepLinears = false);

}  // namespace quantlens
