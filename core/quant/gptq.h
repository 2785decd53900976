#pragma once
// GPTQ (Frantar et al. 2022) for one linear layer, in llm-compressor's order of operations
// (modifiers/quantization/gptq/gptq_quantize.py): the scales come first, from the float
// weights by the spec's own rule (its "observer"); dead columns (diag H = 0) are zeroed;
// H is damped by dampening·mean(diag H), inverted through Cholesky, and the upper Cholesky
// factor of the inverse drives the column-by-column error feedback, 128 columns a block.
// The result is a QuantizedTensor with the same scales as round-to-nearest, so everything
// downstream (dequantize, metrics, exports) reads it as it reads any other.
#include <cstdint>
#include <span>
#include <vector>

#include "quant/quantize.h"
#include "result.h"

namespace quantlens {

struct GptqOptions {
    double dampening = 0.01;  // of mean(diag H), added to the diagonal
    int64_t blockSize = 128;
    // llm-compressor's actorder="weight": groups stay as stored, columns are visited in
    // descending diag(H) (stable order for ties), so no g_idx is needed downstream.
    bool actOrder = false;
    bool operator==(const GptqOptions&) const = default;
};

struct GptqResult {
    QuantizedTensor quantized;   // [out, in], spec.axis 0, the same params as quantize(W, spec)
    double loss = 0;             // llm-compressor's: sum over columns of (w - q)² / d² / 2
    int64_t deadColumns = 0;     // inputs that were always zero in calibration
    bool fellBackToRtn = false;  // H not positive definite even damped: round to nearest, as llm-compressor does
};

// weight: [out, in] row-major (nn.Linear); hessian: [in, in] row-major, symmetric, any
// positive multiple of XᵀX (GPTQ is invariant to its scale). spec: any scheme, bits and
// tensor/channel/group granularity (axis is forced to 0).
Result<GptqResult> gptqQuantize(std::span<const float> weight, int64_t out, int64_t in, std::span<const double> hessian,
                                QuantSpec spec, const GptqOptions& opt = {});

// The layer's output error on the calibration inputs without the inputs themselves:
// with H = 2 XᵀX, sum ‖X (W - Ŵ)ᵀ‖² = tr(ΔW H ΔWᵀ) / 2. Returns 10·log10 of
// tr(W H Wᵀ) / tr(ΔW H ΔWᵀ): the output SQNR in dB (bias excluded), +inf if exact.
double layerOutputSqnrDb(std::span<const float> weight, std::span<const float> approx, int64_t out, int64_t in,
                         std::span<const double> hessian);

}  // namespace quantlens
