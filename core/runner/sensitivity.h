#pragma once
// Per-layer quantization sensitivity of an encoder (issue #8), as AIMET's "enable one
// quantizer at a time": each linear layer alone in int8 (the others float32), ranked by
// how far the last hidden state moves from the float32 one. The second view quantizes
// every layer but one: the layer whose return to float32 helps most is the most sensitive.
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "quant/quantspec.h"
#include "result.h"
#include "runner/encoder.h"

namespace quantlens {

enum class SensitivityView {
    OneQuantized,   // only this layer int8
    AllButOne,      // every layer int8 except this one
};

enum class SensitivityMetric {
    Cosine,  // 1 - cosine of the last hidden state vs float32
    Sqnr,    // SQNR (dB) of the last hidden state vs float32
};

struct LayerSensitivity {
    std::string name;      // HF prefix of the linear layer
    int64_t index = 0;     // position in EncoderRunner::linearNames()
    int64_t rank = 0;      // 1 = most sensitive
    // The whole model's last hidden state, in this layer's configuration, vs float32
    // (real tokens only).
    double cosine = 1;
    double sqnrDb = 0;
    double maxAbsError = 0;
};

struct SensitivityOptions {
    SensitivityView view = SensitivityView::OneQuantized;
    SensitivityMetric rankBy = SensitivityMetric::Cosine;
    // Per-layer specs by HF prefix (e.g. a range the user tuned in the GUI); layers not
    // listed use `defaultSpec`.
    std::vector<std::pair<std::string, QuantSpec>> specs;
    QuantSpec defaultSpec = defaultDynamicSpec();
    // Layers (prefix or weight name) the plan leaves in float32: out of the plan figure.
    std::set<std::string> keepFloat;
    // Called after each forward pass with (done, total); returning false cancels.
    std::function<bool(int64_t, int64_t)> progress;

    static QuantSpec defaultDynamicSpec();  // torch-symmetric, per tensor: quantize_dynamic's weights
};

// The next-token distributions of a causal model vs float32, over real tokens, as
// llama.cpp's KL-divergence statistics report them.
struct NextTokenComparison {
    bool valid = false;       // the model has an output head (GPT-2, Llama)
    double meanKld = 0;       // mean over tokens of KL(p_float || p_quantized), nats
    double maxKld = 0;
    double top1Agreement = 1; // share of tokens whose most likely next token is unchanged
};
NextTokenComparison compareNextToken(const std::vector<float>& refLogits, const std::vector<float>& logits,
                                     const EncoderInput& in, int64_t vocab);

// The whole plan: every layer as the plan quantizes it, kept layers in float32.
struct PlanFigure {
    HiddenComparison hidden;
    NextTokenComparison next;
    int64_t quantizedLayers = 0, simulatedLayers = 0, keptLayers = 0;
};

struct SensitivityReport {
    SensitivityView view = SensitivityView::OneQuantized;
    std::vector<LayerSensitivity> layers;  // most sensitive first
    HiddenComparison allQuantized;         // every layer quantized vs float32, for scale
    PlanFigure plan;                       // the plan end to end (keepFloat honoured)
    int64_t tokens = 0;                    // real tokens the metrics cover
};

// Leaves the runner's per-layer int8/fp32 switches as it found them.
Result<SensitivityReport> computeSensitivity(EncoderRunner& runner, const EncoderInput& in,
                                             const SensitivityOptions& opt = {});

}  // namespace quantlens
