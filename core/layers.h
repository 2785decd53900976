#pragma once
#include <string>
#include <vector>

#include "model.h"

namespace quantlens {

// A linear layer found by naming convention: a 2-D weight with an optional bias.
// PyTorch nn.Linear stores [out, in]; Keras Dense kernels and GPT-2 Conv1D store
// [in, out] (Tensor::layout == InOut) and are run transposed.
struct LinearLayer {
    std::string prefix;            // "transformer.layer.0.attention.q_lin"
    const Tensor* weight = nullptr;
    const Tensor* bias = nullptr;  // may be null
    int64_t inFeatures = 0;
    int64_t outFeatures = 0;
    bool transposed() const { return weight && weight->layout == Layout::InOut; }
};

// The note the ONNX reader puts on a 2-D initializer that is a MatMul or Gemm weight (B
// input): exporters often name those "onnx::MatMul_123", which no naming rule finds.
inline constexpr const char* kOnnxLinearNote = "MatMul/Gemm weight";

// Every linear layer in the model, in file order. Embedding tables
// (names containing embed/wte/wpe/embd) are 2-D but not linear layers.
std::vector<LinearLayer> findLinearLayers(const Model& m);
const LinearLayer* findLinearLayer(const std::vector<LinearLayer>& layers, const std::string& prefix);

// Marks GPT-2 style Conv1D weights (…attn.c_attn/c_proj, mlp.c_fc/c_proj) as [in, out].
// Called by readers of formats that carry no layout information.
void markConv1DLayouts(Model& m);

}  // namespace quantlens
