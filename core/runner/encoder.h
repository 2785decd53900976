#pragma once
// End-to-end BERT-family encoder (BERT, RoBERTa, DistilBERT), GPT-2 or Llama-family decoder
// over a Model's tensors, as Hugging Face (or, for Llama, llama.cpp's GGUF) names them, in
// float32 (OpenBLAS sgemm) with every linear layer switchable to int8 DynamicLinear (PyTorch
// quantize_dynamic semantics). It computes the last hidden state only: no pooler, no task or
// LM heads. GPT-2 runs with its causal mask, pre-LayerNorm blocks, ln_f and gelu_new; its
// Conv1D weights ([in, out]) are transposed on load, and c_attn stays one fused q|k|v layer,
// as the checkpoint has it. Llama (also Mistral, Qwen2 and others with its names): RMSNorm,
// rotary positions, grouped-query attention, SiLU-gated MLP, causal mask, final norm.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model.h"
#include "plan/quantplan.h"
#include "quant/quantspec.h"
#include "result.h"
#include "runner/dynamiclinear.h"

namespace quantlens {

struct WeightFetcher;

enum class EncoderFamily { Bert, Roberta, DistilBert, Gpt2, Llama };
std::string encoderFamilyName(EncoderFamily f);  // "bert", "roberta", "distilbert", "gpt2", "llama"

// What the tensor shapes say, plus what they cannot (heads, eps), from EncoderOptions.
struct EncoderConfig {
    EncoderFamily family = EncoderFamily::Bert;
    std::string prefix;          // "bert.", "distilbert.", "roberta.", "transformer." (GPT-2), "model." (Llama) or ""
    int64_t vocab = 0;
    int64_t maxPositions = 0;
    int64_t typeVocab = 0;       // 0: no token type table (DistilBERT)
    int64_t hidden = 0;
    int64_t layers = 0;
    int64_t intermediate = 0;
    int64_t heads = 0;
    double layerNormEps = 1e-12;  // 1e-5 for RoBERTa and GPT-2; Llama: RMSNorm's eps
    // Llama only: the model tells what the shapes cannot.
    int64_t kvHeads = 0;          // key/value heads (grouped-query attention); 0 elsewhere
    int64_t headDim = 0;          // q_proj's outputs / heads
    double ropeTheta = 10000;     // rotary base
    // Rotary layout: dimension 2i pairs with 2i+1 (GGUF of architecture llama, Meta's original)
    // or i with i + d/2 (Hugging Face's rotate_half, GGUF qwen2; llama.cpp's converter permutes
    // a llama's q and k between them).
    bool ropeAdjacentPairs = false;
    bool ggufNames = false;       // llama.cpp's blk.N.attn_q names (and GGUF metadata) rather than Hugging Face's
    // rope_scaling: rotary pair i turns at theta^(-2i/d) / ropeFreqDivisors[i] (empty: 1).
    std::vector<double> ropeFreqDivisors;
    std::string ropeScaling;      // "", "linear", "llama3" or "gguf rope_freqs": where the divisors came from
    int64_t slidingWindow = 0;    // Mistral: a query sees the last this many positions; 0: all
    std::string headsFrom;        // "gguf metadata" when the file itself gave the head count
    int64_t padId = 0;           // 1 for RoBERTa; GPT-2 has no padding token, any id works under the mask
    // RoBERTa numbers positions from padding_idx+1 = 2 and gives padding tokens position
    // padding_idx (transformers create_position_ids_from_input_ids).
    bool robertaPositions = false;
};

// Hugging Face config.json's rope_scaling (transformers' modeling_rope_utils).
struct RopeScaling {
    std::string type;             // "" or "default": none; "linear", "llama3"; anything else is refused
    double factor = 1;
    double lowFreqFactor = 1;     // llama3
    double highFreqFactor = 4;    // llama3
    double originalMaxPositions = 8192;  // llama3
};

struct EncoderOptions {
    int64_t heads = 0;          // 0: GGUF metadata, else hidden/64 (BERT-base, GPT-2 convention), an error if that does not divide
    double layerNormEps = 0;    // 0: 1e-12 (BERT, DistilBERT), 1e-5 (RoBERTa, GPT-2, Llama unless GGUF metadata says)
    double ropeTheta = 0;       // Llama; 0: GGUF metadata, else 10000
    int64_t maxPositions = 0;   // Llama (no position table); 0: GGUF context_length, else 2048
    RopeScaling ropeScaling;    // Llama with Hugging Face names (GGUF files carry their own)
    // Llama family: config.json's sliding_window (Mistral); -1: a window on some layers only
    // (Qwen2's use_sliding_window), which is refused.
    int64_t slidingWindow = 0;
};

// Reads num_attention_heads / n_heads / n_head, layer_norm_eps / layer_norm_epsilon / rms_norm_eps,
// rope_theta, max_position_embeddings, rope_scaling and sliding_window from a Hugging Face config.json
// into `opt` where `opt` leaves them unset. A missing file is not an error (returns false).
Result<bool> readHfConfigHints(const std::string& configJsonPath, EncoderOptions& opt);

Result<EncoderConfig> inferEncoderConfig(const Model& m, const EncoderOptions& opt = {});

// A padded batch: ids and mask are [batch, seqLen] row-major; mask 1 = real token.
struct EncoderInput {
    int64_t batch = 0;
    int64_t seqLen = 0;
    std::vector<int64_t> ids;
    std::vector<uint8_t> mask;
    int64_t tokens() const { return batch * seqLen; }
};

// Pads sequences of different lengths to the longest with padId and mask 0.
Result<EncoderInput> makeEncoderInput(const std::vector<std::vector<int64_t>>& sequences, int64_t padId);
// One or more sequences of random ids in [firstId, vocab) of length `len` (deterministic per seed).
EncoderInput randomEncoderInput(int64_t batch, int64_t len, int64_t vocab, uint64_t seed = 1, int64_t firstId = 3);
// Parses whitespace-separated ids, one sequence per line; blank lines are skipped.
Result<std::vector<std::vector<int64_t>>> parseTokenText(const std::string& text);

// Difference between two last hidden states [tokens, hidden], over real tokens only.
struct HiddenComparison {
    double cosine = 1;        // over all real tokens' values at once
    double sqnrDb = 0;        // 10 log10(sum ref^2 / sum (ref-x)^2); +inf when identical
    double maxAbsError = 0;
    double minTokenCosine = 1;
    double meanTokenCosine = 1;
    std::vector<double> tokenCosine;  // one per token (1 for padding)
};
HiddenComparison compareHidden(const std::vector<float>& ref, const std::vector<float>& x,
                               const EncoderInput& in, int64_t hidden);

class EncoderRunner {
public:
    // Materialises every weight as float32. Errors name the missing or mis-shaped tensor.
    static Result<EncoderRunner> create(const Model& m, const EncoderOptions& opt = {});

    EncoderRunner(EncoderRunner&&) noexcept;
    EncoderRunner& operator=(EncoderRunner&&) noexcept;
    ~EncoderRunner();

    const EncoderConfig& config() const { return cfg_; }

    // The linear layers in execution order, by HF prefix ("bert.encoder.layer.0.attention.self.query",
    // "transformer.h.0.attn.c_attn").
    std::vector<std::string> linearNames() const;
    int64_t linearCount() const { return int64_t(linears_.size()); }

    // The weight tensor of linear layer `index` in the model ("transformer.h.0.attn.c_attn.weight").
    std::string weightName(int64_t index) const;
    // The transformer block holding linear layer `index` (0-based), or -1 for none.
    int64_t blockOf(int64_t index) const;

    // Switches one linear layer (by index or prefix) to its quantized form or back to float32.
    // The quantized weights are built on first use with `spec` (default: torch-symmetric per
    // tensor, as quantize_dynamic) and kept; passing a different spec rebuilds them, nullptr
    // keeps the current one. Any spec quantize() takes: the layer then computes with exactly
    // the integers and scales quantize() gives for its [out, in] weight. Signed 8-bit
    // symmetric weights per tensor or per channel run on the int8 GEMM (DynamicLinear);
    // every other scheme, and every layer when activations are not quantized, is simulated
    // (its dequantized weights through the float GEMM, activations quantized and
    // dequantized as the int8 path would): isSimulated() says which.
    Status setQuantized(int64_t index, bool on, const QuantSpec* spec = nullptr);
    Status setQuantized(const std::string& prefix, bool on, const QuantSpec* spec = nullptr);
    Status setAllQuantized(bool on);
    // Integers found by a method (GPTQ) for layer `index`, [out, in] with axis 0: while set,
    // setQuantized with their spec computes with them instead of rounding to nearest.
    // nullopt forgets them.
    Status setGivenWeights(int64_t index, std::optional<QuantizedTensor> q);
    // Layer `index`'s input range [lo, hi] for static activations (required for every
    // quantized layer when the activations are static); nullopt forgets it.
    Status setStaticRange(int64_t index, std::optional<std::pair<float, float>> range);
    bool isQuantized(int64_t index) const;
    bool isSimulated(int64_t index) const;  // its quantized form is simulated (see setQuantized)
    // Activation handling, reduce_range, threads and kernels of every quantized layer
    // (default: DynamicLinearOptions{}, i.e. quantize_dynamic's behaviour, one thread).
    Status setDynamicOptions(const DynamicLinearOptions& o);
    // The plan's activations for every quantized layer; DynamicPerTensor with reduce_range
    // is quantize_dynamic's. Rebuilds the layers already quantized.
    Status setActivations(const ActivationSpec& a);
    const ActivationSpec& activations() const { return activations_; }
    // The spec the layer's quantized weights were (or will by default be) built with.
    QuantSpec quantSpec(int64_t index) const;

    // Next-token logits [batch * seqLen, vocab] from a last hidden state (GPT-2 and Llama: the
    // output head, or the tied token embeddings when the model has none). Kept in float32.
    bool hasOutputHead() const { return cfg_.family == EncoderFamily::Gpt2 || cfg_.family == EncoderFamily::Llama; }
    std::vector<float> logits(const std::vector<float>& hidden) const;

    // Last hidden state, [batch * seqLen, hidden] row-major (padding rows included, as
    // transformers computes them; for GPT-2 after ln_f, for Llama after the final norm). Fails
    // on ids outside the vocabulary or sequences longer than the position table (Llama: the
    // context length). GPT-2 and Llama expect right padding: a row that sees no real token
    // (left padding) attends uniformly to what the causal mask allows.
    Result<std::vector<float>> forward(const EncoderInput& in) const;

    // Called with every linear layer's input, [rows, inFeatures] row-major, before the layer
    // runs (rows = batch * seqLen, padding included): runner/actstats.h records calibration
    // statistics through it. Empty: nothing is called.
    using LinearObserver = std::function<void(int64_t index, const float* x, int64_t rows, int64_t inFeatures)>;
    void setLinearObserver(LinearObserver o) { observer_ = std::move(o); }

private:
    struct Linear;
    struct Norm {
        std::vector<float> gamma, beta;  // RMSNorm: beta empty
    };
    struct Block {
        // Indices into linears_. GPT-2: q is c_attn (q|k|v), k = v = -1. Llama: fc1 is
        // gate_proj, up is up_proj, fc2 is down_proj; ln1/ln2 the norms before attention/MLP.
        int64_t q, k, v, o, fc1, fc2, up = -1;
        Norm ln1, ln2;
    };

    EncoderRunner() = default;
    Result<int64_t> addLinear(const WeightFetcher& f, const std::string& name, int64_t in, int64_t out);
    Status loadLlama(const WeightFetcher& f);  // defined in runner/llama.cpp
    void linear(int64_t index, const float* x, int64_t rows, float* y) const;
    Result<std::vector<float>> forwardGpt2(const EncoderInput& in) const;
    Result<std::vector<float>> forwardLlama(const EncoderInput& in) const;  // defined in runner/llama.cpp

    Status rebuildQuantized();

    EncoderConfig cfg_;
    DynamicLinearOptions dynamicOptions_;
    ActivationSpec activations_;
    std::vector<float> head_;  // output / lm_head weight [vocab, hidden]; empty: tied to word_
    std::vector<float> word_, pos_, type_;
    Norm embLn_;    // BERT family: after the embeddings
    Norm finalLn_;  // GPT-2: ln_f after the last block; Llama: the final RMSNorm
    std::vector<Block> blocks_;
    std::vector<std::unique_ptr<Linear>> linears_;
    LinearObserver observer_;
};

}  // namespace quantlens
