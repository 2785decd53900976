#pragma once
// The one description of how a model is quantized (issue #17). The window edits it, the
// runner executes it (Run, Sensitivity), the exports write it, and the session file is
// its serialization (plan/session.h, docs/sessions.md). No Qt.
#include <map>
#include <set>
#include <string>

#include "quant/quantspec.h"
#include "result.h"
#include "tensor.h"

namespace quantlens {

// How a quantized layer's input is treated at run time. The same for every layer, whether
// its weights run on the int8 kernels or are simulated.
enum class ActivationMode {
    DynamicPerTensor,  // quantize_dynamic: uint8 affine from this call's min/max (the default)
    DynamicPerToken,   // one uint8 scale/zero point per token (row)
    None,              // weight-only: activations stay float (llama.cpp, W4A16 checkpoints)
};
std::string activationModeName(ActivationMode m);  // "per-tensor", "per-token", "none"
Result<ActivationMode> parseActivationMode(const std::string& s);

struct ActivationSpec {
    ActivationMode mode = ActivationMode::DynamicPerTensor;
    bool reduceRange = true;  // PyTorch passes reduce_range=True on x86 (7-bit activations)
    bool operator==(const ActivationSpec&) const = default;
};

// What the plan does with one tensor.
struct PlanDecision {
    bool quantize = false;
    QuantSpec spec;       // with axis set for the tensor's stored layout
    bool tuned = false;   // the spec is the tensor's own override
    std::string reason;   // why it is not quantized ("kept in float32", "a 1-D vector ...")
};

struct QuantPlan {
    // Symmetric int8 per output channel: what PyTorch, ONNX Runtime and llm-compressor use
    // for weights.
    static QuantSpec defaultWeightSpec();
    // PyTorch's quantize_dynamic(model, {nn.Linear}, qint8) on x86: torch-symmetric per tensor
    // weights, dynamic per-tensor uint8 activations with reduce_range.
    static QuantPlan quantizeDynamicPreset();

    QuantSpec defaultSpec = defaultWeightSpec();
    ActivationSpec activations;
    std::map<std::string, QuantSpec> overrides;  // tensor name -> its own spec
    std::set<std::string> keepFloat;             // tensors left in float32
    // 1-D tensors (norm gains, biases) are not quantized unless this is on or they have an
    // override: they are a rounding error of the model's size and quantizing them hurts.
    bool quantizeVectors = false;

    const QuantSpec& specFor(const std::string& name) const;
    bool isTuned(const std::string& name) const { return overrides.count(name) > 0; }
    PlanDecision decide(const Tensor& t) const;
    bool operator==(const QuantPlan&) const = default;
};

// The output-channel axis of a tensor as stored: 1 for [in, out] kernels (Keras Dense,
// GPT-2 Conv1D), the last axis for Keras convolutions [k..., in, out], else 0.
int outputChannelAxis(const Tensor& t);

// Whether a spec's integers run on the int8 GEMM (signed 8-bit symmetric, zero point 0, per
// tensor or per output channel) rather than being simulated through the float GEMM.
bool runsOnInt8Kernels(const QuantSpec& s, const ActivationSpec& a);

}  // namespace quantlens
