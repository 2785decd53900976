#pragma once
// The one description of how a model is quantized (issue #17). The window edits it, the
// runner executes it (Run, Sensitivity), the exports write it, and the session file is
// its serialization (plan/session.h, docs/sessions.md). No Qt.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "quant/quantspec.h"
#include "quant/weightmethod.h"
#include "result.h"
#include "layers.h"
#include "tensor.h"

namespace quantlens {

// How a quantized layer's input is treated at run time. The same for every layer, whether
// its weights run on the int8 kernels or are simulated.
enum class ActivationMode {
    DynamicPerTensor,  // quantize_dynamic: uint8 affine from this call's min/max (the default)
    DynamicPerToken,   // one uint8 scale/zero point per token (row)
    None,              // weight-only: activations stay float (llama.cpp, W4A16 checkpoints)
    Static,            // uint8 affine from a range calibrated once per layer (W8A8 static)
};
std::string activationModeName(ActivationMode m);  // "per-tensor", "per-token", "none", "static"
Result<ActivationMode> parseActivationMode(const std::string& s);

struct ActivationSpec {
    ActivationMode mode = ActivationMode::DynamicPerTensor;
    bool reduceRange = true;  // PyTorch passes reduce_range=True on x86 (7-bit activations)
    // Static: the layer's input range (the plan keeps one per layer in activationRanges; the
    // runner hands each layer its own).
    float staticLo = 0.0f, staticHi = 0.0f;
    bool operator==(const ActivationSpec&) const = default;
};

// A layer input's calibrated range for static activations.
struct ActivationRange {
    float lo = 0.0f, hi = 0.0f;
    bool operator==(const ActivationRange&) const = default;
};

// The token sequences the plan's activation-aware methods calibrate on. The window stores
// the ids it ran (so a saved plan replays exactly); the command line may name a file.
struct CalibrationSource {
    std::vector<std::vector<int64_t>> tokens;  // inline ids, one sequence each
    std::string tokensFile;                    // whitespace-separated ids, one sequence per line
    std::string textFile;                      // plain text, one sequence per line (the model's tokenizer)
    int64_t randomTokens = 0;                  // > 0: one sequence of random ids (seed 1), as Sensitivity's default
    bool empty() const { return tokens.empty() && tokensFile.empty() && textFile.empty() && randomTokens <= 0; }
    std::string describe() const;              // "3 sequences, 384 ids", "tokens.txt", ...
    bool operator==(const CalibrationSource&) const = default;
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
    // How each linear layer's integers are found: round to nearest unless the layer (or the
    // model-wide default) names GPTQ or SmoothQuant, which need `calibration`.
    MethodSpec defaultMethod;
    std::map<std::string, MethodSpec> methods;  // weight tensor name -> its own method
    CalibrationSource calibration;
    // Static activations: each quantized layer's input range, by its weight tensor's name
    // (tasks/staticranges.h calibrates them; the window's Activations tab sets one).
    std::map<std::string, ActivationRange> activationRanges;

    const QuantSpec& specFor(const std::string& name) const;
    bool isTuned(const std::string& name) const { return overrides.count(name) > 0; }
    PlanDecision decide(const Tensor& t) const;
    const MethodSpec& methodFor(const std::string& name) const;
    bool usesMethods() const;  // any layer (or the default) is not round-to-nearest
    bool operator==(const QuantPlan&) const = default;
};

// Whether a spec's integers run on the int8 GEMM (signed 8-bit symmetric, zero point 0, per
// tensor or per output channel) rather than being simulated through the float GEMM.
bool runsOnInt8Kernels(const QuantSpec& s, const ActivationSpec& a);

}  // namespace quantlens
