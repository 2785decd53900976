#pragma once
// Reads the float32 weights of a transformer runner out of a Model, checking name, shape,
// layout and finiteness; every error names the tensor.
#include <string>
#include <vector>

#include "model.h"
#include "result.h"

namespace quantlens {

struct WeightFetcher {
    const Model& m;

    Result<std::vector<float>> get(const std::string& name, const std::vector<int64_t>& shape) const;
    // A linear weight as [out, in]: stored that way (nn.Linear) or as [in, out] (GPT-2's
    // Conv1D, which the readers mark Layout::InOut), then transposed here.
    Result<std::vector<float>> linearWeight(const std::string& name, int64_t out, int64_t in) const;
    bool has(const std::string& name) const { return m.find(name) != nullptr; }
};

}  // namespace quantlens
