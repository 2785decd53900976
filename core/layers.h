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

// The layer a weight belongs to: "a.b.weight" -> "a.b"; any other name is returned as is.
std::string layerPrefix(const std::string& weightName);
// Whether `name` names the layer `prefix` or its weight.
bool namesLayer(const std::string& name, const std::string& prefix);
enum class LayerKind { Linear, Conv, Recurrent };

// A weight a user would quantize: linear layers (as above), convolutions (PyTorch/ONNX
// [out, in, k...], Keras [k..., in, out]) and recurrent gate matrices (PyTorch LSTM/GRU
// weight_ih/weight_hh [gates*hidden, in], Keras kernel/recurrent_kernel [in, gates*units]).
// Vectors (biases, norm gains) and embedding tables are not layers.
struct QuantLayer {
    std::string prefix;
    const Tensor* weight = nullptr;
    const Tensor* bias = nullptr;  // may be null
    LayerKind kind = LayerKind::Linear;
    int outAxis = 0;               // output-channel axis in the stored layout
    int64_t outChannels = 0;
};
std::vector<QuantLayer> findQuantLayers(const Model& m);
std::string layerKindName(LayerKind k);  // "linear", "conv", "recurrent"

// The stored axis that holds a weight's output channels: the last one for Layout::InOut
// ([in, out], [k..., in, out]), else the first. This is QuantSpec::axis for per-channel.
int outputChannelAxis(const Tensor& t);

// Whether the default plan quantizes a tensor: weights of rank >= 2 yes; vectors (norm
// gains, biases, running statistics) and scalars no, as PyTorch, ONNX Runtime and
// llama.cpp leave them in float (a few hundred bytes, and their errors add to every
// activation). The reason is for the user: "a 1-D vector (norm gain)".
bool quantizedByDefault(const Tensor& t);
std::string notQuantizedReason(const Tensor& t);  // "" when quantizedByDefault

// Marks GPT-2 style Conv1D weights (…attn.c_attn/c_proj, mlp.c_fc/c_proj) as [in, out].
// Called by readers of formats that carry no layout information.
void markConv1DLayouts(Model& m);

}  // namespace quantlens
