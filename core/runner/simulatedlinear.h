#pragma once
// A quantized linear layer whose integers have no int8 GEMM here (affine or grouped
// weights, fewer than 8 bits, q8_0 and the ggml blocks, seed) or that runs weight-only:
// the plan's dequantized weights go through the float GEMM, and the activations are
// quantized and dequantized as the plan says, exactly as the int8 path would see them.
// Results are what the quantized model computes up to float rounding, labelled "simulated".
#include <cstdint>
#include <span>
#include <vector>

#include "plan/quantplan.h"
#include "runner/dynamiclinear.h"
#include "quant/quantize.h"
#include "result.h"

namespace quantlens {

// Quantizes x [rows, cols] to uint8 and back in place, as DynamicLinear does before its
// GEMM (PyTorch's ChooseQuantizationParams; per tensor or per row). Rows (or, per tensor,
// the whole call) holding NaN or infinity become NaN, as the int8 path's outputs do.
void fakeQuantizeActivations(float* x, int64_t rows, int64_t cols, const ActivationSpec& a);

// The uint8 affine parameters a Static layer quantizes its input with: PyTorch's
// ChooseQuantizationParams over [staticLo, staticHi] (extended to 0; reduce_range halves the
// levels the range is spread over, the clamp stays [0, 255]). The exports write exactly
// these (tasks/exportplan.h), so a file quantizes as the runner does.
ActParams staticActivationParams(const ActivationSpec& a);

class SimulatedLinear {
public:
    // `qw` is [out, in]; any scheme quantize() produces.
    static Result<SimulatedLinear> create(const QuantizedTensor& qw, std::span<const float> bias,
                                          const ActivationSpec& act);
    void forward(const float* x, int64_t m, float* y) const;  // thread-safe
    int64_t inFeatures() const { return in_; }
    int64_t outFeatures() const { return out_; }
    const std::vector<float>& weight() const { return w_; }  // dequantized, [out, in]

private:
    int64_t in_ = 0, out_ = 0;
    std::vector<float> w_, bias_;
    ActivationSpec act_;
};

}  // namespace quantlens
