#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "layers.h"
#include "result.h"

namespace quantlens {

// y = x W^T + b in float32 through OpenBLAS sgemm (as nn.Linear's addmm): the honest
// baseline every int8 speed-up and error is measured against.
class Fp32Linear {
public:
    static Result<Fp32Linear> create(std::span<const float> weight, int64_t outFeatures, int64_t inFeatures,
                                     Layout layout, std::span<const float> bias);
    static Result<Fp32Linear> fromLayer(const LinearLayer& layer);
    void forward(const float* x, int64_t m, float* y) const;
    int64_t inFeatures() const { return in_; }
    int64_t outFeatures() const { return out_; }
    const std::vector<float>& weight() const { return w_; }  // [out, in]
    const std::vector<float>& bias() const { return bias_; }

private:
    int64_t in_ = 0, out_ = 0;
    std::vector<float> w_, bias_;
};

// The layer's weight as float32 [out, in] (transposed from [in, out] when the layer says so)
// and its bias (empty if none), validated against the layer's shape.
Status loadLinearWeights(const LinearLayer& layer, std::vector<float>& weightOutIn, std::vector<float>& bias);

// OpenBLAS's core name ("Haswell", "SkylakeX", ...) and its thread count control.
std::string blasCoreName();
void setBlasThreads(int threads);

}  // namespace quantlens
