#pragma once
// Calibration statistics of every linear layer's input (issue #19): what the activation
// outliers look like (LLM.int8, SmoothQuant) and the Hessian GPTQ needs, recorded through
// EncoderRunner's linear observer over calibration tokens, padding excluded, without
// keeping the activations themselves (except an optional bounded sample of rows).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "quant/histogram.h"
#include "result.h"
#include "runner/encoder.h"

namespace quantlens {

// The statistics of one linear layer's input X [tokens, inFeatures] over the real tokens.
// Layers fed the same tensor (q, k, v; gate, up) share one: `sharedWith` names the first.
struct LayerActivationStats {
    std::string name;        // the runner's layer prefix
    int64_t index = -1;      // in EncoderRunner::linearNames()
    std::string sharedWith;  // "" or the earlier layer whose input this is too
    int64_t inFeatures = 0;
    int64_t tokens = 0;      // rows recorded (real tokens only)
    std::vector<float> min, max, absMax;  // per input channel
    // Every value, over a symmetric range [-R, R] that doubles (merging bin pairs exactly)
    // whenever a value falls outside: R is a power of two, 2048 bins.
    Histogram histogram;
    // H = sum over tokens of 2 x xᵀ, [in, in] row-major, double; empty unless recorded.
    // GPTQ divides by `tokens` (llm-compressor's running mean), which changes nothing in it.
    std::vector<double> hessian;
    // Up to ActivationOptions::keepRows real rows of X, [keptRows, inFeatures], for the
    // layer-output errors that need X itself (SmoothQuant's W8A8 error).
    std::vector<float> rows;
    int64_t keptRows = 0;

    // LLM.int8's outlier rule: channels with some |x| above `threshold`.
    std::vector<int64_t> outlierChannels(float threshold = 6.0f) const;
    float overallMin() const;
    float overallMax() const;
};

struct ActivationOptions {
    std::vector<std::string> layers;  // prefixes (a layer whose name starts with one); empty: every layer
    bool hessian = true;
    int histogramBins = 2048;         // a power of two
    int64_t keepRows = 0;             // rows of X kept per layer (0: none)
    int64_t maxSequencesPerForward = 8;
    // Refuses (before running) when the Hessians and kept rows would need more than this.
    int64_t maxBytes = int64_t(4) << 30;
};

struct ActivationRecording {
    std::vector<LayerActivationStats> layers;  // in the runner's layer order, chosen layers only
    int64_t sequences = 0, tokens = 0;         // real tokens run
    int64_t bytes = 0;                         // held by the statistics
    double seconds = 0;                        // wall time of the forwards and the recording

    const LayerActivationStats* find(const std::string& name) const;
};

// (sequences done, total); false cancels (the result is then an error "cancelled").
using ActivationProgress = std::function<bool(int64_t done, int64_t total)>;

// Runs `sequences` through `runner` (float32 layers as they are set) and records the
// statistics. The runner's observer is set for the call and cleared after it.
Result<ActivationRecording> recordActivations(EncoderRunner& runner, const std::vector<std::vector<int64_t>>& sequences,
                                              const ActivationOptions& opt = {}, const ActivationProgress& progress = {});

// A linear layer's float weight as [out, in] (GPT-2's [in, out] Conv1D transposed).
struct LinearWeight {
    std::vector<float> w;
    int64_t out = 0, in = 0;
    bool storedInOut = false;  // the model keeps it [in, out]
};
Result<LinearWeight> readLinearWeight(const Model& m, const std::string& layer);

// Symmetrises an upper-triangle-only Hessian (what the recorder accumulates) in place.
void symmetrizeUpper(std::vector<double>& h, int64_t n);

}  // namespace quantlens
