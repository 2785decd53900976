// The Llama family in the transformer runner: recognising the checkpoint, loading its
// weights and the forward pass of transformers' modeling_llama (eager attention):
//   x = embed[id]; per block x += o_proj(attn(rms_norm(x))), then with h = rms_norm(x)
//   x += down_proj(silu(gate_proj(h)) * up_proj(h)); finally rms_norm(x).
// Hugging Face names (also Mistral's, with its sliding window, and Qwen2's, whose q/k/v carry
// biases) rotate dimension i with i + d/2, as do GGUF files of architecture "qwen2"; GGUF
// files of architecture "llama" rotate 2i with 2i+1 (llama.cpp's converter permutes q and k
// rows so that both give the same model).
#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>
#include <numbers>

#include "alignedarray.h"
#include "runner/encoder.h"
#include "runner/encoderops.h"
#include "runner/llamaconfig.h"
#include "runner/weightfetcher.h"

namespace quantlens {

using namespace encoderops;

namespace {

// Per-layer names, in execution order.
struct LlamaNames {
    const char* embed;  // after the prefix
    const char* layers;
    const char* attnNorm;
    const char* q;
    const char* k;
    const char* v;
    const char* o;
    const char* ffnNorm;
    const char* gate;
    const char* up;
    const char* down;
    const char* finalNorm;
};
constexpr LlamaNames kHfNames{"embed_tokens.weight", "layers.", "input_layernorm", "self_attn.q_proj",
                              "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "norm"};
constexpr LlamaNames kGgufNames{"token_embd.weight", "blk.", "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "output_norm"};

const LlamaNames& namesOf(const EncoderConfig& c) { return c.ggufNames ? kGgufNames : kHfNames; }

std::string layer(const EncoderConfig& c, int64_t l)
{
    return c.prefix + namesOf(c).layers + std::to_string(l) + ".";
}

const std::string* metadata(const Model& m, const std::string& key)
{
    for (const auto& [k, v] : m.metadata)
        if (k == key)
            return &v;
    return nullptr;
}

// A GGUF scalar as the reader shows it; nullopt when absent or not one number (an array of
// per-layer values, say).
std::optional<double> metadataNumber(const Model& m, const std::string& key)
{
    const std::string* v = metadata(m, key);
    if (!v || v->empty())
        return std::nullopt;
    double x = 0;
    const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
    if (ec != std::errc() || end != v->data() + v->size() || !std::isfinite(x))
        return std::nullopt;
    return x;
}

// A count from the metadata: a whole number in [1, 2^31), else nullopt (a hostile file's
// 1e30 must not reach an int64 conversion, which would be undefined).
std::optional<int64_t> metadataCount(const Model& m, const std::string& key)
{
    const auto x = metadataNumber(m, key);
    if (!x || *x < 1 || *x >= 2147483648.0 || *x != std::floor(*x))
        return std::nullopt;
    return int64_t(*x);
}

Error configError(const char* code, const std::string& message, const std::string& tensor = {})
{
    return makeError(code, message, {}, -1, tensor);
}

// The rotary frequency divisors rope_scaling asks for (c.ropeFreqDivisors, one per pair).
// Hugging Face: config.json's rope_scaling, "linear" (every frequency / factor) or "llama3"
// (transformers' _compute_llama3_parameters: wavelengths above original / low_freq_factor
// are divided by factor, below original / high_freq_factor kept, and blended between).
// GGUF: llama.cpp's converter stores the llama3 divisors as rope_freqs.weight; "linear"
// scaling is rope.scaling.type with rope.scaling.factor. Anything else changes the model in
// ways not reproduced here, so it is refused rather than run wrong.
Status chooseRopeScaling(const Model& m, const EncoderOptions& opt, const std::string& arch, EncoderConfig& c)
{
    const int64_t half = c.headDim / 2;
    if (c.ggufNames) {
        if (const Tensor* t = m.find("rope_freqs.weight")) {
            if (t->shape != std::vector<int64_t>{half})
                return configError("bad-shape", "has shape " + shapeString(t->shape) + ", expected [" +
                                                    std::to_string(half) + "] (one divisor per rotary pair)", t->name);
            auto v = t->toFloat();
            if (!v)
                return v.error();
            for (float x : *v)
                if (!(x > 0) || !std::isfinite(x))
                    return configError("bad-value", "rotary frequency divisors must be positive and finite", t->name);
            c.ropeFreqDivisors.assign(v->begin(), v->end());
            c.ropeScaling = "gguf rope_freqs";
        }
        const std::string* type = metadata(m, arch + ".rope.scaling.type");
        if (!type || type->empty() || *type == "none")
            return Ok{};
        if (*type != "linear")
            return configError("unsupported-model", "GGUF rope scaling '" + *type +
                                                        "' is not run here (none, linear and rope_freqs are)");
        const auto factor = metadataNumber(m, arch + ".rope.scaling.factor");
        if (!factor || !(*factor > 0))
            return configError("bad-value", "linear rope scaling without a positive " + arch + ".rope.scaling.factor");
        if (c.ropeFreqDivisors.empty())
            c.ropeFreqDivisors.assign(size_t(half), 1.0);
        for (double& d : c.ropeFreqDivisors)
            d *= *factor;  // llama.cpp multiplies its freq_scale (1 / factor) into every angle
        c.ropeScaling = c.ropeScaling.empty() ? "linear" : c.ropeScaling + " and linear";
        return Ok{};
    }
    const RopeScaling& r = opt.ropeScaling;
    if (r.type.empty() || r.type == "default")
        return Ok{};
    if (r.type != "linear" && r.type != "llama3")
        return configError("unsupported-model", "rope_scaling '" + r.type +
                                                    "' (config.json) is not run here: only linear and llama3");
    if (!(r.factor > 0) || !std::isfinite(r.factor))
        return configError("bad-value", "rope_scaling factor must be positive");
    c.ropeScaling = r.type;
    c.ropeFreqDivisors.assign(size_t(half), r.factor);
    if (r.type == "linear")
        return Ok{};
    if (!(r.lowFreqFactor > 0) || !(r.highFreqFactor > r.lowFreqFactor) || !(r.originalMaxPositions > 0) ||
        !std::isfinite(r.highFreqFactor) || !std::isfinite(r.originalMaxPositions))
        return configError("bad-value", "llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor and a "
                                        "positive original_max_position_embeddings");
    const double lowWavelen = r.originalMaxPositions / r.lowFreqFactor;
    const double highWavelen = r.originalMaxPositions / r.highFreqFactor;
    for (int64_t i = 0; i < half; ++i) {
        const double wavelen = 2 * std::numbers::pi * std::pow(c.ropeTheta, double(2 * i) / double(c.headDim));
        double& div = c.ropeFreqDivisors[size_t(i)];
        if (wavelen < highWavelen) {
            div = 1;
        } else if (wavelen <= lowWavelen) {
            const double smooth = (r.originalMaxPositions / wavelen - r.lowFreqFactor) /
                                  (r.highFreqFactor - r.lowFreqFactor);
            div = 1 / ((1 - smooth) / r.factor + smooth);
        }
    }
    return Ok{};
}

// Rotates each head's d values in every row by the angles of the row's position (row % T).
void applyRope(float* x, int64_t rows, int64_t T, int64_t heads, int64_t d, const float* cosT, const float* sinT,
               bool adjacentPairs)
{
    const int64_t half = d / 2, ld = heads * d;
    for (int64_t r = 0; r < rows; ++r) {
        const float* c = cosT + (r % T) * half;
        const float* s = sinT + (r % T) * half;
        for (int64_t hd = 0; hd < heads; ++hd) {
            float* v = x + r * ld + hd * d;
            for (int64_t i = 0; i < half; ++i) {
                float* a = adjacentPairs ? v + 2 * i : v + i;
                float* b = adjacentPairs ? v + 2 * i + 1 : v + i + half;
                const float x0 = *a, x1 = *b;
                *a = x0 * c[i] - x1 * s[i];
                *b = x1 * c[i] + x0 * s[i];
            }
        }
    }
}

}  // namespace

std::optional<Result<EncoderConfig>> inferLlamaConfig(const Model& m, const EncoderOptions& opt)
{
    EncoderConfig c;
    c.family = EncoderFamily::Llama;
    const Tensor* embed = nullptr;
    if (m.find(kGgufNames.embed) && m.find(std::string(kGgufNames.layers) + "0." + kGgufNames.q + ".weight")) {
        embed = m.find(kGgufNames.embed);
        c.ggufNames = true;
    } else {
        static constexpr std::string_view kEmbed = kHfNames.embed;
        for (const Tensor& t : m.tensors) {
            if (!t.group.empty() || !t.name.ends_with(kEmbed))
                continue;
            const std::string prefix = t.name.substr(0, t.name.size() - kEmbed.size());
            if ((prefix.empty() || prefix.back() == '.') &&
                m.find(prefix + kHfNames.layers + "0." + kHfNames.q + ".weight")) {
                embed = &t;
                c.prefix = prefix;
                break;
            }
        }
    }
    if (!embed)
        return std::nullopt;
    const LlamaNames& n = namesOf(c);

    // In llama.cpp the rotary layout is a property of the architecture: "llama" (also
    // Mistral's and llama2.c's files) rotates adjacent pairs, as its converter permutes q and
    // k; "qwen2" keeps Hugging Face's order and rotates the halves (LLAMA_ROPE_TYPE_NEOX).
    // Others with these tensor names (phi3's fused qkv, gemma's norms, ...) are different
    // models.
    std::string arch = "llama";
    if (c.ggufNames) {
        if (const std::string* a = metadata(m, "general.architecture"))
            arch = *a;
        if (arch != "llama" && arch != "qwen2")
            return configError("unsupported-model", "GGUF architecture '" + arch +
                                                        "' is not run here: only 'llama' and 'qwen2'");
        c.ropeAdjacentPairs = arch == "llama";
    }
    auto gguf = [&](const char* key) -> std::optional<double> {
        return c.ggufNames ? metadataNumber(m, arch + "." + key) : std::nullopt;
    };
    auto ggufCount = [&](const char* key) -> std::optional<int64_t> {
        return c.ggufNames ? metadataCount(m, arch + "." + key) : std::nullopt;
    };

    if (embed->rank() != 2 || embed->shape[0] <= 0 || embed->shape[1] <= 0)
        return configError("bad-shape", "token embeddings must be 2-D [vocab, hidden], got " + shapeString(embed->shape),
                           embed->name);
    c.vocab = embed->shape[0];
    c.hidden = embed->shape[1];
    while (m.find(layer(c, c.layers) + n.q + ".weight"))
        ++c.layers;

    // Output sizes of the first layer's projections: [out, hidden] each.
    auto outputs = [&](const char* which) -> Result<int64_t> {
        const std::string name = layer(c, 0) + which + ".weight";
        const Tensor* t = m.find(name);
        if (!t)
            return configError("missing-tensor", "Llama layer 0 has no '" + name + "'", name);
        if (t->rank() != 2 || t->shape[1] != c.hidden || t->shape[0] <= 0)
            return configError("bad-shape", "has shape " + shapeString(t->shape) + ", expected [outputs, " +
                                                std::to_string(c.hidden) + "]", name);
        return t->shape[0];
    };
    auto qDim = outputs(n.q);
    if (!qDim)
        return qDim.error();
    auto kvDim = outputs(n.k);
    if (!kvDim)
        return kvDim.error();
    auto inter = outputs(n.gate);
    if (!inter)
        return inter.error();
    c.intermediate = *inter;

    if (opt.heads > 0) {
        c.heads = opt.heads;
    } else if (auto h = ggufCount("attention.head_count")) {
        c.heads = *h;
        c.headsFrom = "gguf metadata";
    } else if (*qDim % 64 == 0) {
        c.heads = *qDim / 64;
    } else {
        return configError("heads-unknown", "cannot infer the number of attention heads for " + std::to_string(*qDim) +
                                                " query outputs (not a multiple of 64): give --heads");
    }
    if (*qDim % c.heads != 0 || (*qDim / c.heads) % 2 != 0)
        return configError("bad-heads", std::to_string(c.heads) + " heads do not split " + std::to_string(*qDim) +
                                            " query outputs into heads of an even size (rotary pairs)");
    c.headDim = *qDim / c.heads;
    if (*kvDim % c.headDim != 0 || c.heads % (*kvDim / c.headDim) != 0)
        return configError("bad-heads", "key projection has " + std::to_string(*kvDim) + " outputs: not a divisor of " +
                                            std::to_string(c.heads) + " heads of size " + std::to_string(c.headDim));
    c.kvHeads = *kvDim / c.headDim;
    if (auto kv = ggufCount("attention.head_count_kv"); kv && *kv != c.kvHeads)
        return configError("bad-heads", "GGUF metadata says " + std::to_string(*kv) + " key/value heads; with " +
                                            std::to_string(c.heads) + " heads the key projection holds " +
                                            std::to_string(c.kvHeads));
    if (auto rd = ggufCount("rope.dimension_count"); rd && *rd != c.headDim)
        return configError("unsupported-model", "rotary embedding over " + std::to_string(*rd) +
                                                    " of each head's " + std::to_string(c.headDim) +
                                                    " dimensions (partial rotary) is not run here");

    // GGUF stores these as float32: the double of that float is the value llama.cpp uses.
    auto f32 = [](double v) { return double(float(v)); };
    if (opt.layerNormEps > 0)
        c.layerNormEps = opt.layerNormEps;
    else if (auto e = gguf("attention.layer_norm_rms_epsilon"); e && *e > 0)
        c.layerNormEps = f32(*e);
    else
        c.layerNormEps = 1e-5;
    if (opt.ropeTheta > 0)
        c.ropeTheta = opt.ropeTheta;
    else if (auto t = gguf("rope.freq_base"); t && *t > 0)
        c.ropeTheta = f32(*t);
    else
        c.ropeTheta = 10000;
    if (auto st = chooseRopeScaling(m, opt, arch, c); !st)
        return st.error();
    if (opt.slidingWindow < 0)
        return configError("unsupported-model", "use_sliding_window (config.json) windows some layers only; not run here");
    c.slidingWindow = opt.slidingWindow;
    if (opt.maxPositions > 0)
        c.maxPositions = opt.maxPositions;
    else if (auto p = ggufCount("context_length"))
        c.maxPositions = *p;
    else
        c.maxPositions = 2048;
    return c;
}

Status EncoderRunner::loadLlama(const WeightFetcher& f)
{
    const EncoderConfig& c = cfg_;
    const LlamaNames& n = namesOf(c);
    const int64_t h = c.hidden, qd = c.heads * c.headDim, kvd = c.kvHeads * c.headDim, inter = c.intermediate;
    auto take = [](std::vector<float>& dst, Result<std::vector<float>> v) -> Status {
        if (!v)
            return v.error();
        dst = std::move(*v);
        return Ok{};
    };
    auto linearTo = [&](int64_t& dst, const std::string& name, int64_t in, int64_t out) -> Status {
        auto i = addLinear(f, name, in, out);
        if (!i)
            return i.error();
        dst = *i;
        return Ok{};
    };
    if (auto s = take(word_, f.get(c.prefix + n.embed, {c.vocab, h})); !s)
        return s;
    for (int64_t l = 0; l < c.layers; ++l) {
        const std::string p = layer(c, l);
        Block b;
        // A braced list evaluates in order, so the linear layers are added in execution order
        // (q, k, v, o, gate, up, down); after a failure the rest still load, and the first
        // error is the one returned.
        for (Status s : {take(b.ln1.gamma, f.get(p + n.attnNorm + ".weight", {h})),
                         linearTo(b.q, p + n.q, h, qd), linearTo(b.k, p + n.k, h, kvd), linearTo(b.v, p + n.v, h, kvd),
                         linearTo(b.o, p + n.o, qd, h), take(b.ln2.gamma, f.get(p + n.ffnNorm + ".weight", {h})),
                         linearTo(b.fc1, p + n.gate, h, inter), linearTo(b.up, p + n.up, h, inter),
                         linearTo(b.fc2, p + n.down, inter, h)})
            if (!s)
                return s;
        blocks_.push_back(std::move(b));
    }
    return take(finalLn_.gamma, f.get(c.prefix + n.finalNorm + ".weight", {h}));
}

Result<std::vector<float>> EncoderRunner::forwardLlama(const EncoderInput& in) const
{
    const EncoderConfig& c = cfg_;
    const int64_t B = in.batch, T = in.seqLen, H = c.hidden, N = in.tokens(), d = c.headDim;
    const int64_t qd = c.heads * d, kvd = c.kvHeads * d, I = c.intermediate, group = c.heads / c.kvHeads;
    std::vector<float> x(size_t(N * H));
    for (int64_t i = 0; i < N; ++i)
        std::memcpy(x.data() + i * H, word_.data() + in.ids[size_t(i)] * H, size_t(H) * sizeof(float));

    // Angles t * theta^(-2i/d), formed in float as transformers' rotary embedding forms them.
    const int64_t half = d / 2;
    std::vector<float> cosT(size_t(T * half)), sinT(size_t(T * half));
    for (int64_t i = 0; i < half; ++i) {
        const double div = c.ropeFreqDivisors.empty() ? 1.0 : c.ropeFreqDivisors[size_t(i)];
        const float inv = float(1.0 / std::pow(c.ropeTheta, double(2 * i) / double(d)) / div);
        for (int64_t t = 0; t < T; ++t) {
            const float angle = float(t) * inv;
            cosT[size_t(t * half + i)] = float(std::cos(double(angle)));
            sinT[size_t(t * half + i)] = float(std::sin(double(angle)));
        }
    }

    const float alpha = float(1.0 / std::sqrt(double(d)));
    const auto arena = makeAlignedArray<float>(size_t(N * H + 2 * N * qd + 2 * N * kvd + 2 * N * I + T * T));
    float* a = arena.get();
    float* q = a + N * H;
    float* ctx = q + N * qd;
    float* k = ctx + N * qd;
    float* v = k + N * kvd;
    float* gate = v + N * kvd;
    float* up = gate + N * I;
    float* scores = up + N * I;
    CausalKeys keys(T, c.slidingWindow);

    for (const Block& blk : blocks_) {
        rmsNorm(x.data(), a, N, H, blk.ln1.gamma, c.layerNormEps);
        linear(blk.q, a, N, q);
        linear(blk.k, a, N, k);
        linear(blk.v, a, N, v);
        applyRope(q, N, T, c.heads, d, cosT.data(), sinT.data(), c.ropeAdjacentPairs);
        applyRope(k, N, T, c.kvHeads, d, cosT.data(), sinT.data(), c.ropeAdjacentPairs);
        for (int64_t b = 0; b < B; ++b) {
            keys.setSequence(in.mask.data() + b * T);
            for (int64_t hd = 0; hd < c.heads; ++hd) {
                const int64_t kvh = hd / group;  // grouped-query attention: heads share k and v
                attendHead(q + b * T * qd + hd * d, qd, k + b * T * kvd + kvh * d, v + b * T * kvd + kvh * d, kvd, T, d,
                           alpha, scores, ctx + b * T * qd + hd * d, qd,
                           [&](int64_t t, float* row) { keys.softmaxRow(t, row); });
            }
        }
        linear(blk.o, ctx, N, a);
        addInPlace(x.data(), a, N * H);
        rmsNorm(x.data(), a, N, H, blk.ln2.gamma, c.layerNormEps);
        linear(blk.fc1, a, N, gate);
        linear(blk.up, a, N, up);
        siluMul(gate, up, N * I);
        linear(blk.fc2, gate, N, a);
        addInPlace(x.data(), a, N * H);
    }
    rmsNorm(x.data(), x.data(), N, H, finalLn_.gamma, c.layerNormEps);
    return x;
}

}  // namespace quantlens
