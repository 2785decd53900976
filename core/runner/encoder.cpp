#include "runner/encoder.h"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alignedarray.h"
#include "quant/calibrate.h"
#include "runner/dynamiclinear.h"
#include "runner/encoderops.h"
#include "runner/simulatedlinear.h"
#include "runner/llamaconfig.h"
#include "runner/weightfetcher.h"

namespace quantlens {

using namespace encoderops;

namespace {
// quantize_dynamic's weights: per-tensor symmetric qint8.
QuantSpec defaultLinearSpec()
{
    QuantSpec s;
    s.scheme = Scheme::TorchSymmetric;
    s.granularity = Granularity::PerTensor;
    return s;
}
}  // namespace

struct EncoderRunner::Linear {
    std::string name;  // HF prefix, without ".weight"
    int64_t in = 0, out = 0;
    std::vector<float> weight;  // [out, in], the nn.Linear layout
    std::vector<float> bias;    // [out]
    bool quantized = false;
    std::unique_ptr<DynamicLinear> q;      // on the int8 GEMM
    std::unique_ptr<SimulatedLinear> sim;  // or simulated through the float GEMM
    QuantSpec spec = defaultLinearSpec();
    // Integers a method found (GPTQ), used instead of quantize(weight, spec) when the spec
    // asked for is theirs.
    std::optional<QuantizedTensor> given;
    std::optional<std::pair<float, float>> staticRange;  // the input range under static activations
};

namespace {

// The per-layer tensor names of each family, in execution order.
struct LayerNames {
    const char* q;
    const char* k;
    const char* v;
    const char* o;
    const char* ln1;
    const char* fc1;
    const char* fc2;
    const char* ln2;
};
constexpr LayerNames kBertNames{"attention.self.query", "attention.self.key", "attention.self.value",
                                "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                                "output.dense", "output.LayerNorm"};
constexpr LayerNames kDistilNames{"attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                                  "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm"};

const LayerNames& namesOf(EncoderFamily f) { return f == EncoderFamily::DistilBert ? kDistilNames : kBertNames; }

std::string layerPrefix(const EncoderConfig& c, int64_t l)
{
    return c.prefix + (c.family == EncoderFamily::DistilBert ? "transformer.layer." : "encoder.layer.") +
           std::to_string(l) + ".";
}

}  // namespace

std::string encoderFamilyName(EncoderFamily f)
{
    switch (f) {
    case EncoderFamily::Bert: return "bert";
    case EncoderFamily::Roberta: return "roberta";
    case EncoderFamily::DistilBert: return "distilbert";
    case EncoderFamily::Gpt2: return "gpt2";
    case EncoderFamily::Llama: return "llama";
    }
    return "?";
}

Result<bool> readHfConfigHints(const std::string& path, EncoderOptions& opt)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return false;
    std::stringstream ss;
    ss << in.rdbuf();
    const auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
        return makeError("bad-json", "config.json is not a JSON object", path);
    auto intField = [&](const char* key) -> int64_t {
        auto it = j.find(key);
        return (it != j.end() && it->is_number_integer()) ? it->get<int64_t>() : 0;
    };
    if (opt.heads <= 0) {
        int64_t h = intField("num_attention_heads");
        if (h <= 0)
            h = intField("n_heads");
        if (h <= 0)
            h = intField("n_head");  // GPT-2
        if (h > 0)
            opt.heads = h;
    }
    if (opt.layerNormEps <= 0) {
        for (const char* key : {"layer_norm_eps", "layer_norm_epsilon", "rms_norm_eps"}) {
            auto it = j.find(key);
            if (opt.layerNormEps <= 0 && it != j.end() && it->is_number() && it->get<double>() > 0)
                opt.layerNormEps = it->get<double>();
        }
    }
    if (auto it = j.find("rope_theta"); opt.ropeTheta <= 0 && it != j.end() && it->is_number() && it->get<double>() > 0)
        opt.ropeTheta = it->get<double>();
    if (opt.maxPositions <= 0)
        opt.maxPositions = intField("max_position_embeddings");
    // Mistral windows every layer; Qwen2 names a window too but applies it only when
    // use_sliding_window is true, and then to some layers.
    if (const int64_t w = intField("sliding_window"); opt.slidingWindow == 0 && w > 0) {
        const auto use = j.find("use_sliding_window");
        if (use == j.end())
            opt.slidingWindow = w;
        else if (use->is_boolean() && use->get<bool>())
            opt.slidingWindow = -1;
    }
    if (auto it = j.find("rope_scaling"); opt.ropeScaling.type.empty() && it != j.end() && it->is_object()) {
        RopeScaling& r = opt.ropeScaling;
        for (const char* key : {"rope_type", "type"})  // "type" in configs before transformers 4.45
            if (auto t = it->find(key); r.type.empty() && t != it->end() && t->is_string())
                r.type = t->get<std::string>();
        if (r.type.empty())
            r.type = "unnamed";  // refused by the runner, which cannot tell what it means
        auto number = [&](const char* key, double& dst) {
            if (auto v = it->find(key); v != it->end() && v->is_number())
                dst = v->get<double>();
        };
        number("factor", r.factor);
        number("low_freq_factor", r.lowFreqFactor);
        number("high_freq_factor", r.highFreqFactor);
        number("original_max_position_embeddings", r.originalMaxPositions);
    }
    return true;
}

namespace {

Status chooseHeads(EncoderConfig& c, const EncoderOptions& opt)
{
    if (opt.heads > 0) {
        c.heads = opt.heads;
    } else {
        if (c.hidden % 64 != 0)
            return makeError("heads-unknown", "cannot infer the number of attention heads for hidden size " +
                                                  std::to_string(c.hidden) + " (not a multiple of 64): give --heads");
        c.heads = c.hidden / 64;
    }
    if (c.hidden % c.heads != 0)
        return makeError("bad-heads", std::to_string(c.heads) + " heads do not divide hidden size " +
                                          std::to_string(c.hidden));
    return Ok{};
}

std::string gpt2Layer(const EncoderConfig& c, int64_t l) { return c.prefix + "h." + std::to_string(l) + "."; }

// The [in, out] extent of a GPT-2 Conv1D weight (or [out, in] if someone stored it as a Linear).
int64_t conv1dOut(const Tensor& t) { return t.layout == Layout::InOut ? t.shape[1] : t.shape[0]; }

Result<EncoderConfig> inferGpt2Config(const Model& m, const Tensor& wte, const std::string& prefix,
                                      const EncoderOptions& opt)
{
    EncoderConfig c;
    c.family = EncoderFamily::Gpt2;
    c.prefix = prefix;
    if (wte.rank() != 2 || wte.shape[0] <= 0 || wte.shape[1] <= 0)
        return makeError("bad-shape", "token embeddings must be 2-D [vocab, hidden], got " + shapeString(wte.shape), {},
                         -1, wte.name);
    c.vocab = wte.shape[0];
    c.hidden = wte.shape[1];
    const Tensor* wpe = m.find(prefix + "wpe.weight");
    if (!wpe)
        return makeError("missing-tensor", "no position embeddings", {}, -1, prefix + "wpe.weight");
    if (wpe->rank() != 2 || wpe->shape[1] != c.hidden || wpe->shape[0] <= 0)
        return makeError("bad-shape", "position embeddings have shape " + shapeString(wpe->shape) +
                                          ", expected [positions, " + std::to_string(c.hidden) + "]", {}, -1, wpe->name);
    c.maxPositions = wpe->shape[0];
    while (m.find(gpt2Layer(c, c.layers) + "attn.c_attn.weight"))
        ++c.layers;
    const std::string fcName = gpt2Layer(c, 0) + "mlp.c_fc.weight";
    const Tensor* fc = m.find(fcName);
    if (!fc || fc->rank() != 2 || conv1dOut(*fc) <= 0)
        return makeError("bad-shape", "cannot infer the MLP size from '" + fcName + "'", {}, -1, fcName);
    c.intermediate = conv1dOut(*fc);
    if (auto h = chooseHeads(c, opt); !h)
        return h.error();
    c.layerNormEps = opt.layerNormEps > 0 ? opt.layerNormEps : 1e-5;
    return c;
}

}  // namespace

Result<EncoderConfig> inferEncoderConfig(const Model& m, const EncoderOptions& opt)
{
    if (auto llama = inferLlamaConfig(m, opt))
        return *llama;
    static constexpr std::string_view kWte = "wte.weight";
    for (const Tensor& t : m.tensors)
        if (t.group.empty() && t.name.ends_with(kWte)) {
            const std::string prefix = t.name.substr(0, t.name.size() - kWte.size());
            if (prefix.empty() || prefix.back() == '.')
                if (m.find(prefix + "h.0.attn.c_attn.weight"))
                    return inferGpt2Config(m, t, prefix, opt);
        }

    static constexpr std::string_view kWord = "embeddings.word_embeddings.weight";
    EncoderConfig c;
    const Tensor* word = nullptr;
    for (const Tensor& t : m.tensors)
        if (t.group.empty() && t.name.ends_with(kWord)) {
            word = &t;
            break;
        }
    if (!word)
        return makeError("not-an-encoder",
                         "no '*embeddings.word_embeddings.weight', '*wte.weight', '*embed_tokens.weight' or "
                         "'token_embd.weight': not a BERT-family encoder, GPT-2 or Llama");
    c.prefix = word->name.substr(0, word->name.size() - kWord.size());
    if (word->rank() != 2 || word->shape[0] <= 0 || word->shape[1] <= 0)
        return makeError("bad-shape", "word embeddings must be 2-D [vocab, hidden], got " + shapeString(word->shape),
                         {}, -1, word->name);
    c.vocab = word->shape[0];
    c.hidden = word->shape[1];

    auto has = [&](const std::string& n) { return m.find(n) != nullptr; };
    if (has(c.prefix + "transformer.layer.0.attention.q_lin.weight"))
        c.family = EncoderFamily::DistilBert;
    else if (has(c.prefix + "encoder.layer.0.attention.self.query.weight"))
        c.family = EncoderFamily::Bert;
    else
        return makeError("not-an-encoder", "found '" + word->name +
                                               "' but neither BERT (encoder.layer.0.attention.self.query) nor "
                                               "DistilBERT (transformer.layer.0.attention.q_lin) layers");

    const Tensor* pos = m.find(c.prefix + "embeddings.position_embeddings.weight");
    if (!pos)
        return makeError("missing-tensor", "no position embeddings (absolute positions are required)", {}, -1,
                         c.prefix + "embeddings.position_embeddings.weight");
    if (pos->rank() != 2 || pos->shape[1] != c.hidden || pos->shape[0] <= 0)
        return makeError("bad-shape", "position embeddings have shape " + shapeString(pos->shape) +
                                          ", expected [positions, " + std::to_string(c.hidden) + "]", {}, -1, pos->name);
    c.maxPositions = pos->shape[0];
    if (const Tensor* type = m.find(c.prefix + "embeddings.token_type_embeddings.weight")) {
        if (type->rank() != 2 || type->shape[1] != c.hidden || type->shape[0] <= 0)
            return makeError("bad-shape", "token type embeddings have shape " + shapeString(type->shape), {}, -1,
                             type->name);
        c.typeVocab = type->shape[0];
    } else if (c.family != EncoderFamily::DistilBert) {
        return makeError("missing-tensor", "BERT-style encoder without token type embeddings", {}, -1,
                         c.prefix + "embeddings.token_type_embeddings.weight");
    }
    // RoBERTa checkpoints keep BERT's names under "roberta." (also XLM-R, CamemBERT);
    // bare RoBERTa names are recognised by their single token type.
    if (c.family == EncoderFamily::Bert && (c.prefix.find("roberta") != std::string::npos || c.typeVocab == 1)) {
        c.family = EncoderFamily::Roberta;
        c.padId = 1;
        c.robertaPositions = true;
    }

    const LayerNames& names = namesOf(c.family);
    while (has(layerPrefix(c, c.layers) + names.q + ".weight"))
        ++c.layers;
    const Tensor* fc1 = m.find(layerPrefix(c, 0) + names.fc1 + ".weight");
    if (!fc1 || fc1->rank() != 2 || fc1->shape[1] != c.hidden || fc1->shape[0] <= 0)
        return makeError("bad-shape", "cannot infer the intermediate size from '" + layerPrefix(c, 0) + names.fc1 +
                                          ".weight'", {}, -1, layerPrefix(c, 0) + names.fc1 + ".weight");
    c.intermediate = fc1->shape[0];

    if (auto h = chooseHeads(c, opt); !h)
        return h.error();
    c.layerNormEps = opt.layerNormEps > 0 ? opt.layerNormEps : (c.family == EncoderFamily::Roberta ? 1e-5 : 1e-12);
    return c;
}

Result<EncoderInput> makeEncoderInput(const std::vector<std::vector<int64_t>>& seqs, int64_t padId)
{
    EncoderInput in;
    in.batch = int64_t(seqs.size());
    for (const auto& s : seqs)
        in.seqLen = std::max(in.seqLen, int64_t(s.size()));
    if (in.batch == 0 || in.seqLen == 0)
        return makeError("empty-input", "no tokens to run");
    in.ids.assign(size_t(in.tokens()), padId);
    in.mask.assign(size_t(in.tokens()), 0);
    for (int64_t b = 0; b < in.batch; ++b)
        for (size_t t = 0; t < seqs[size_t(b)].size(); ++t) {
            in.ids[size_t(b * in.seqLen) + t] = seqs[size_t(b)][t];
            in.mask[size_t(b * in.seqLen) + t] = 1;
        }
    return in;
}

EncoderInput randomEncoderInput(int64_t batch, int64_t len, int64_t vocab, uint64_t seed, int64_t firstId)
{
    EncoderInput in;
    in.batch = std::max<int64_t>(batch, 0);
    in.seqLen = std::max<int64_t>(len, 0);
    if (vocab <= firstId)
        firstId = 0;
    const uint64_t span = uint64_t(std::max<int64_t>(vocab - firstId, 1));
    uint64_t s = seed;
    for (int64_t i = 0; i < in.tokens(); ++i) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);  // splitmix64: same ids on every platform
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        in.ids.push_back(firstId + int64_t(z % span));
    }
    in.mask.assign(size_t(in.tokens()), 1);
    return in;
}

Result<std::vector<std::vector<int64_t>>> parseTokenText(const std::string& text)
{
    std::vector<std::vector<int64_t>> out;
    std::istringstream lines(text);
    std::string line;
    int64_t lineNo = 0;
    while (std::getline(lines, line)) {
        ++lineNo;
        std::vector<int64_t> seq;
        std::istringstream words(line);
        std::string w;
        while (words >> w) {
            int64_t v = 0;
            const auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), v);
            if (ec != std::errc() || p != w.data() + w.size())
                return makeError("bad-token", "line " + std::to_string(lineNo) + ": '" + w + "' is not an integer token id");
            seq.push_back(v);
        }
        if (!seq.empty())
            out.push_back(std::move(seq));
    }
    if (out.empty())
        return makeError("empty-input", "no token ids found");
    return out;
}

HiddenComparison compareHidden(const std::vector<float>& ref, const std::vector<float>& x, const EncoderInput& in,
                               int64_t hidden)
{
    HiddenComparison c;
    c.tokenCosine.assign(size_t(in.tokens()), 1.0);
    if (hidden <= 0 || ref.size() != x.size() || int64_t(ref.size()) != in.tokens() * hidden)
        return c;
    double dot = 0, rr = 0, xx = 0, err = 0, sumCos = 0;
    int64_t real = 0;
    c.minTokenCosine = 1;
    for (int64_t t = 0; t < in.tokens(); ++t) {
        if (!in.mask[size_t(t)])
            continue;
        const float* a = ref.data() + t * hidden;
        const float* b = x.data() + t * hidden;
        double d = 0, na = 0, nb = 0;
        for (int64_t i = 0; i < hidden; ++i) {
            d += double(a[i]) * b[i];
            na += double(a[i]) * a[i];
            nb += double(b[i]) * b[i];
            const double e = double(a[i]) - b[i];
            err += e * e;
            c.maxAbsError = std::max(c.maxAbsError, std::fabs(e));
        }
        const double cos = (na == 0 && nb == 0) ? 1.0 : (na == 0 || nb == 0) ? 0.0 : d / std::sqrt(na * nb);
        c.tokenCosine[size_t(t)] = cos;
        c.minTokenCosine = std::min(c.minTokenCosine, cos);
        sumCos += cos;
        ++real;
        dot += d;
        rr += na;
        xx += nb;
    }
    c.cosine = (rr == 0 && xx == 0) ? 1.0 : (rr == 0 || xx == 0) ? 0.0 : dot / std::sqrt(rr * xx);
    c.meanTokenCosine = real ? sumCos / double(real) : 1.0;
    c.sqnrDb = err == 0 ? std::numeric_limits<double>::infinity()
                        : (rr == 0 ? -std::numeric_limits<double>::infinity() : 10.0 * std::log10(rr / err));
    return c;
}

EncoderRunner::EncoderRunner(EncoderRunner&&) noexcept = default;
EncoderRunner& EncoderRunner::operator=(EncoderRunner&&) noexcept = default;
EncoderRunner::~EncoderRunner() = default;

Result<EncoderRunner> EncoderRunner::create(const Model& m, const EncoderOptions& opt)
{
    auto cfg = inferEncoderConfig(m, opt);
    if (!cfg)
        return cfg.error();
    EncoderRunner r;
    r.cfg_ = *cfg;
    const EncoderConfig& c = r.cfg_;
    const WeightFetcher f{m};
    const int64_t h = c.hidden;

#define QL_TAKE(dst, expr)                 \
    do {                                   \
        auto _v = (expr);                  \
        if (!_v)                           \
            return _v.error();             \
        dst = std::move(*_v);              \
    } while (0)

    auto takeNorm = [&](const std::string& name, Norm& n) -> Status {
        auto g = f.get(name + ".weight", {h});
        if (!g)
            return g.error();
        auto b = f.get(name + ".bias", {h});
        if (!b)
            return b.error();
        n.gamma = std::move(*g);
        n.beta = std::move(*b);
        return Ok{};
    };

    // The output head for next-token figures: llama.cpp's output.weight, Hugging Face's
    // lm_head.weight, else tied to the token embeddings (GPT-2, small Llamas).
    auto takeHead = [&]() -> Status {
        for (const char* name : {"output.weight", "lm_head.weight"})
            if (f.has(name)) {
                auto w = f.get(name, {c.vocab, h});
                if (!w)
                    return w.error();
                r.head_ = std::move(*w);
                break;
            }
        return Ok{};
    };
    if (c.family == EncoderFamily::Llama) {
        if (auto st = r.loadLlama(f); !st)
            return st.error();
        if (auto st = takeHead(); !st)
            return st.error();
        return r;
    }
    if (c.family == EncoderFamily::Gpt2) {
        QL_TAKE(r.word_, f.get(c.prefix + "wte.weight", {c.vocab, h}));
        QL_TAKE(r.pos_, f.get(c.prefix + "wpe.weight", {c.maxPositions, h}));
        for (int64_t l = 0; l < c.layers; ++l) {
            const std::string p = gpt2Layer(c, l);
            Block b;
            b.k = b.v = -1;
            if (auto st = takeNorm(p + "ln_1", b.ln1); !st)
                return st.error();
            QL_TAKE(b.q, r.addLinear(f, p + "attn.c_attn", h, 3 * h));
            QL_TAKE(b.o, r.addLinear(f, p + "attn.c_proj", h, h));
            if (auto st = takeNorm(p + "ln_2", b.ln2); !st)
                return st.error();
            QL_TAKE(b.fc1, r.addLinear(f, p + "mlp.c_fc", h, c.intermediate));
            QL_TAKE(b.fc2, r.addLinear(f, p + "mlp.c_proj", c.intermediate, h));
            r.blocks_.push_back(std::move(b));
        }
        if (auto st = takeNorm(c.prefix + "ln_f", r.finalLn_); !st)
            return st.error();
        if (auto st = takeHead(); !st)
            return st.error();
        return r;
    }

    QL_TAKE(r.word_, f.get(c.prefix + "embeddings.word_embeddings.weight", {c.vocab, h}));
    QL_TAKE(r.pos_, f.get(c.prefix + "embeddings.position_embeddings.weight", {c.maxPositions, h}));
    if (c.typeVocab > 0)
        QL_TAKE(r.type_, f.get(c.prefix + "embeddings.token_type_embeddings.weight", {c.typeVocab, h}));
    if (auto st = takeNorm(c.prefix + "embeddings.LayerNorm", r.embLn_); !st)
        return st.error();
    const LayerNames& n = namesOf(c.family);
    for (int64_t l = 0; l < c.layers; ++l) {
        const std::string p = layerPrefix(c, l);
        Block b;
        QL_TAKE(b.q, r.addLinear(f, p + n.q, h, h));
        QL_TAKE(b.k, r.addLinear(f, p + n.k, h, h));
        QL_TAKE(b.v, r.addLinear(f, p + n.v, h, h));
        QL_TAKE(b.o, r.addLinear(f, p + n.o, h, h));
        QL_TAKE(b.ln1.gamma, f.get(p + n.ln1 + ".weight", {h}));
        QL_TAKE(b.ln1.beta, f.get(p + n.ln1 + ".bias", {h}));
        QL_TAKE(b.fc1, r.addLinear(f, p + n.fc1, h, c.intermediate));
        QL_TAKE(b.fc2, r.addLinear(f, p + n.fc2, c.intermediate, h));
        QL_TAKE(b.ln2.gamma, f.get(p + n.ln2 + ".weight", {h}));
        QL_TAKE(b.ln2.beta, f.get(p + n.ln2 + ".bias", {h}));
        r.blocks_.push_back(std::move(b));
    }
#undef QL_TAKE
    return r;
}

Result<int64_t> EncoderRunner::addLinear(const WeightFetcher& f, const std::string& name, int64_t in, int64_t out)
{
    auto lin = std::make_unique<Linear>();
    lin->name = name;
    lin->in = in;
    lin->out = out;
    auto w = f.linearWeight(name + ".weight", out, in);
    if (!w)
        return w.error();
    lin->weight = std::move(*w);
    if (f.has(name + ".bias")) {
        auto b = f.get(name + ".bias", {out});
        if (!b)
            return b.error();
        lin->bias = std::move(*b);
    } else {
        lin->bias.assign(size_t(out), 0.0f);  // bias=False layers
    }
    linears_.push_back(std::move(lin));
    return int64_t(linears_.size() - 1);
}

std::vector<std::string> EncoderRunner::linearNames() const
{
    std::vector<std::string> out;
    for (const auto& l : linears_)
        out.push_back(l->name);
    return out;
}

int64_t EncoderRunner::blockOf(int64_t index) const
{
    for (size_t b = 0; b < blocks_.size(); ++b) {
        const Block& k = blocks_[b];
        for (const int64_t i : {k.q, k.k, k.v, k.o, k.fc1, k.fc2, k.up})
            if (i >= 0 && i == index)
                return int64_t(b);
    }
    return -1;
}

bool EncoderRunner::isQuantized(int64_t index) const
{
    return index >= 0 && index < linearCount() && linears_[size_t(index)]->quantized;
}

bool EncoderRunner::isSimulated(int64_t index) const
{
    return index >= 0 && index < linearCount() && linears_[size_t(index)]->sim != nullptr;
}

std::string EncoderRunner::weightName(int64_t index) const
{
    return index >= 0 && index < linearCount() ? linears_[size_t(index)]->name + ".weight" : std::string();
}

QuantSpec EncoderRunner::quantSpec(int64_t index) const
{
    return index >= 0 && index < linearCount() ? linears_[size_t(index)]->spec : defaultLinearSpec();
}

Status EncoderRunner::setQuantized(const std::string& prefix, bool on, const QuantSpec* spec)
{
    for (size_t i = 0; i < linears_.size(); ++i)
        if (namesLayer(prefix, linears_[i]->name))
            return setQuantized(int64_t(i), on, spec);
    return makeError("no-such-layer", "the encoder has no linear layer '" + prefix + "'", {}, -1, prefix);
}

Status EncoderRunner::setAllQuantized(bool on)
{
    for (int64_t i = 0; i < linearCount(); ++i)
        if (auto s = setQuantized(i, on); !s)
            return s;
    return Ok{};
}

Status EncoderRunner::setQuantized(int64_t index, bool on, const QuantSpec* spec)
{
    if (index < 0 || index >= linearCount())
        return makeError("no-such-layer", "linear layer index " + std::to_string(index) + " is outside [0, " +
                                              std::to_string(linearCount()) + ")");
    Linear& l = *linears_[size_t(index)];
    if (!on) {
        l.quantized = false;
        return Ok{};
    }
    QuantSpec want = spec ? *spec : l.spec;
    want.axis = 0;  // the runner holds every weight as [out, in]
    if ((!l.q && !l.sim) || want != l.spec) {
        // The plan's integers: quantize() on the [out, in] weight, as the Tensor tab shows them,
        // or those a method gave for this very spec.
        const bool useGiven = l.given && l.given->spec == want;
        auto qt = useGiven ? Result<QuantizedTensor>(*l.given) : quantize(l.weight, {l.out, l.in}, want);
        if (!qt)
            return makeError(qt.error().code, qt.error().message, {}, -1, l.name);
        qt->name = l.name + ".weight";
        l.q.reset();
        l.sim.reset();
        if (runsOnInt8Kernels(want, activations_)) {
            auto d = DynamicLinear::fromQuantized(std::move(*qt), l.bias, dynamicOptions_);
            if (!d)
                return makeError(d.error().code, d.error().message, {}, -1, l.name);
            l.q = std::make_unique<DynamicLinear>(std::move(*d));
        } else {
            ActivationSpec act = activations_;
            if (act.mode == ActivationMode::Static) {
                if (!l.staticRange)
                    return makeError("no-static-range", "static activations need this layer's input range: calibrate it "
                                                        "(Activations tab, or the plan's activation ranges)", {}, -1, l.name);
                act.staticLo = l.staticRange->first;
                act.staticHi = l.staticRange->second;
            }
            auto sl = SimulatedLinear::create(*qt, l.bias, act);
            if (!sl)
                return makeError(sl.error().code, sl.error().message, {}, -1, l.name);
            l.sim = std::make_unique<SimulatedLinear>(std::move(*sl));
        }
        l.spec = want;
    }
    l.quantized = true;
    return Ok{};
}

Status EncoderRunner::setGivenWeights(int64_t index, std::optional<QuantizedTensor> q)
{
    if (index < 0 || index >= linearCount())
        return makeError("no-such-layer", "linear layer index " + std::to_string(index) + " is outside [0, " +
                                              std::to_string(linearCount()) + ")");
    Linear& l = *linears_[size_t(index)];
    if (q) {
        if (q->shape != std::vector<int64_t>{l.out, l.in} || q->spec.axis != 0 || int64_t(q->q.size()) != l.out * l.in)
            return makeError("bad-shape", "given integers must be [out, in] = [" + std::to_string(l.out) + ", " +
                                              std::to_string(l.in) + "] with axis 0", {}, -1, l.name);
    }
    l.given = std::move(q);
    // Built from the other integers: rebuild on next use.
    const bool was = l.quantized;
    l.q.reset();
    l.sim.reset();
    l.quantized = false;
    return was ? setQuantized(index, true, &l.spec) : Status(Ok{});
}

Status EncoderRunner::setStaticRange(int64_t index, std::optional<std::pair<float, float>> range)
{
    if (index < 0 || index >= linearCount())
        return makeError("no-such-layer", "linear layer index " + std::to_string(index) + " is outside [0, " +
                                              std::to_string(linearCount()) + ")");
    Linear& l = *linears_[size_t(index)];
    if (l.staticRange == range)
        return Ok{};
    l.staticRange = range;
    const bool was = l.quantized;
    l.q.reset();
    l.sim.reset();
    l.quantized = false;
    return was ? setQuantized(index, true, &l.spec) : Status(Ok{});
}

Status EncoderRunner::rebuildQuantized()
{
    for (auto& l : linears_) {
        if (!l->q && !l->sim)
            continue;
        const bool was = l->quantized;
        l->q.reset();  // rebuilt with the new options on next use
        l->sim.reset();
        if (was)
            if (auto s = setQuantized(l->name, true, &l->spec); !s)
                return s;
    }
    return Ok{};
}

Status EncoderRunner::setActivations(const ActivationSpec& a)
{
    activations_ = a;
    dynamicOptions_.act = a.mode == ActivationMode::DynamicPerToken ? ActQuant::PerRow : ActQuant::PerTensor;
    dynamicOptions_.reduceRange = a.reduceRange;
    return rebuildQuantized();
}

Status EncoderRunner::setDynamicOptions(const DynamicLinearOptions& o)
{
    dynamicOptions_ = o;
    activations_.mode = o.act == ActQuant::PerRow ? ActivationMode::DynamicPerToken : ActivationMode::DynamicPerTensor;
    activations_.reduceRange = o.reduceRange;
    return rebuildQuantized();
}

std::vector<float> EncoderRunner::logits(const std::vector<float>& hidden) const
{
    const int64_t H = cfg_.hidden, V = cfg_.vocab, N = H > 0 ? int64_t(hidden.size()) / H : 0;
    const std::vector<float>& w = head_.empty() ? word_ : head_;
    std::vector<float> out(size_t(N * V));
    if (N > 0 && int64_t(w.size()) == V * H)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(N), blasint(V), blasint(H), 1.0f, hidden.data(),
                    blasint(H), w.data(), blasint(H), 0.0f, out.data(), blasint(V));
    return out;
}

void EncoderRunner::linear(int64_t index, const float* x, int64_t rows, float* y) const
{
    const Linear& l = *linears_[size_t(index)];
    if (observer_)
        observer_(index, x, rows, l.in);
    if (l.quantized && l.q) {
        l.q->forward(x, rows, y);
        return;
    }
    if (l.quantized && l.sim) {
        l.sim->forward(x, rows, y);
        return;
    }
    // y = x W^T + b, as nn.Linear's addmm.
    for (int64_t r = 0; r < rows; ++r)
        std::copy(l.bias.begin(), l.bias.end(), y + r * l.out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(rows), blasint(l.out), blasint(l.in), 1.0f, x,
                blasint(l.in), l.weight.data(), blasint(l.in), 1.0f, y, blasint(l.out));
}

Result<std::vector<float>> EncoderRunner::forward(const EncoderInput& in) const
{
    const EncoderConfig& c = cfg_;
    const int64_t B = in.batch, T = in.seqLen, H = c.hidden, N = in.tokens();
    if (B <= 0 || T <= 0 || int64_t(in.ids.size()) != N || int64_t(in.mask.size()) != N)
        return makeError("bad-input", "ids and mask must both hold batch x length = " + std::to_string(N) + " values");
    const int64_t posOffset = c.robertaPositions ? c.padId + 1 : 0;
    if (T + posOffset > c.maxPositions)
        return makeError("too-long", "sequence length " + std::to_string(T) + " exceeds the " +
                                         std::to_string(c.maxPositions - posOffset) + " positions the model has");
    for (int64_t i = 0; i < N; ++i)
        if (in.ids[size_t(i)] < 0 || in.ids[size_t(i)] >= c.vocab)
            return makeError("bad-token", "token id " + std::to_string(in.ids[size_t(i)]) + " at position " +
                                              std::to_string(i % T) + " of sequence " + std::to_string(i / T) +
                                              " is outside the vocabulary [0, " + std::to_string(c.vocab) + ")");
    if (c.family == EncoderFamily::Gpt2)
        return forwardGpt2(in);
    if (c.family == EncoderFamily::Llama)
        return forwardLlama(in);

    std::vector<float> x(size_t(N * H));
    for (int64_t b = 0; b < B; ++b) {
        int64_t running = 0;
        for (int64_t t = 0; t < T; ++t) {
            const int64_t i = b * T + t;
            const int64_t id = in.ids[size_t(i)];
            int64_t p = t;
            if (c.robertaPositions) {
                running += (id != c.padId);
                p = id != c.padId ? running + c.padId : c.padId;
            }
            const float* w = word_.data() + id * H;
            const float* pe = pos_.data() + p * H;
            float* dst = x.data() + i * H;
            for (int64_t j = 0; j < H; ++j)
                dst[j] = w[j] + pe[j];
            if (!type_.empty())  // token type 0 for every token: single-segment input
                for (int64_t j = 0; j < H; ++j)
                    dst[j] += type_[size_t(j)];
        }
    }
    layerNorm(x.data(), N, H, embLn_.gamma, embLn_.beta, c.layerNormEps);

    const int64_t heads = c.heads, d = H / heads;
    const float alpha = float(1.0 / std::sqrt(double(d)));
    // One uninitialised arena per call: every buffer is fully written before it is read, and
    // zero-filling 10 MB per forward pass shows up next to the int8 GEMMs.
    const int64_t nh = N * H;
    const auto arena = makeAlignedArray<float>(size_t(5 * nh + N * c.intermediate + T * T + B * T));
    float* q = arena.get();
    float* k = q + nh;
    float* v = k + nh;
    float* ctx = v + nh;
    float* a = ctx + nh;
    float* ff = a + nh;
    float* scores = ff + N * c.intermediate;
    float* keep = scores + T * T;
    for (int64_t b = 0; b < B; ++b) {
        bool any = false;
        for (int64_t t = 0; t < T; ++t)
            any |= in.mask[size_t(b * T + t)] != 0;
        for (int64_t t = 0; t < T; ++t)
            keep[b * T + t] = (!any || in.mask[size_t(b * T + t)]) ? 1.0f : 0.0f;
    }

    for (const Block& blk : blocks_) {
        linear(blk.q, x.data(), N, q);
        linear(blk.k, x.data(), N, k);
        linear(blk.v, x.data(), N, v);
        for (int64_t b = 0; b < B; ++b) {
            for (int64_t hd = 0; hd < heads; ++hd) {
                const float* qb = q + b * T * H + hd * d;
                const float* kb = k + b * T * H + hd * d;
                const float* vb = v + b * T * H + hd * d;
                float* cb = ctx + b * T * H + hd * d;
                attendHead(qb, H, kb, vb, H, T, d, alpha, scores, cb, H,
                           [&](int64_t, float* row) { maskedSoftmax(row, T, keep + b * T); });
            }
        }
        linear(blk.o, ctx, N, a);
        addInPlace(a, x.data(), nh);
        layerNorm(a, N, H, blk.ln1.gamma, blk.ln1.beta, c.layerNormEps);
        linear(blk.fc1, a, N, ff);
        gelu(ff, N * c.intermediate);
        linear(blk.fc2, ff, N, x.data());
        addInPlace(x.data(), a, nh);
        layerNorm(x.data(), N, H, blk.ln2.gamma, blk.ln2.beta, c.layerNormEps);
    }
    return x;
}

// transformers' modeling_gpt2 (eager attention), inputs already checked by forward():
// x = wte[id] + wpe[t]; per block x += c_proj(attn(ln_1(x))), x += mlp.c_proj(gelu_new(c_fc(ln_2(x))));
// then ln_f. Query t sees keys j <= t that the mask marks real.
Result<std::vector<float>> EncoderRunner::forwardGpt2(const EncoderInput& in) const
{
    const EncoderConfig& c = cfg_;
    const int64_t B = in.batch, T = in.seqLen, H = c.hidden, N = in.tokens();
    std::vector<float> x(size_t(N * H));
    for (int64_t i = 0; i < N; ++i) {
        const float* w = word_.data() + in.ids[size_t(i)] * H;
        const float* pe = pos_.data() + (i % T) * H;
        float* dst = x.data() + i * H;
        for (int64_t j = 0; j < H; ++j)
            dst[j] = w[j] + pe[j];
    }

    const int64_t heads = c.heads, d = H / heads, nh = N * H, ldq = 3 * H;
    const float alpha = float(1.0 / std::sqrt(double(d)));
    const auto arena = makeAlignedArray<float>(size_t(5 * nh + N * c.intermediate + T * T));
    float* qkv = arena.get();   // [N, 3H]: q | k | v per token, as c_attn writes them
    float* ctx = qkv + 3 * nh;
    float* a = ctx + nh;
    float* ff = a + nh;
    float* scores = ff + N * c.intermediate;
    CausalKeys keys(T);

    for (const Block& blk : blocks_) {
        std::copy(x.begin(), x.end(), a);
        layerNorm(a, N, H, blk.ln1.gamma, blk.ln1.beta, c.layerNormEps);
        linear(blk.q, a, N, qkv);
        for (int64_t b = 0; b < B; ++b) {
            keys.setSequence(in.mask.data() + b * T);
            for (int64_t hd = 0; hd < heads; ++hd) {
                const float* qb = qkv + b * T * ldq + hd * d;
                attendHead(qb, ldq, qb + H, qb + 2 * H, ldq, T, d, alpha, scores, ctx + b * T * H + hd * d, H,
                           [&](int64_t t, float* row) { keys.softmaxRow(t, row); });
            }
        }
        linear(blk.o, ctx, N, a);
        addInPlace(x.data(), a, nh);
        std::copy(x.begin(), x.end(), a);
        layerNorm(a, N, H, blk.ln2.gamma, blk.ln2.beta, c.layerNormEps);
        linear(blk.fc1, a, N, ff);
        geluTanh(ff, N * c.intermediate);
        linear(blk.fc2, ff, N, a);
        addInPlace(x.data(), a, nh);
    }
    layerNorm(x.data(), N, H, finalLn_.gamma, finalLn_.beta, c.layerNormEps);
    return x;
}

}  // namespace quantlens
