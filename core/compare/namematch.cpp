#include "compare/namematch.h"

#include <algorithm>
#include <map>
#include <optional>

#include "runner/encoder.h"
#include "runner/llamaconfig.h"

namespace quantlens {

namespace {

// Hugging Face Llama-family module names and llama.cpp's for the same module
// (llama.cpp's tensor_mapping.py for LLM_ARCH_LLAMA / QWEN2).
struct NamePair {
    const char* hf;
    const char* gguf;
};
constexpr NamePair kLayerNames[] = {
    {"self_attn.q_proj", "attn_q"},         {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},         {"self_attn.o_proj", "attn_output"},
    {"input_layernorm", "attn_norm"},       {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},          {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
constexpr NamePair kModelNames[] = {
    {"model.embed_tokens", "token_embd"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"},
};

bool allDigits(std::string_view s)
{
    return !s.empty() && s.size() < 10 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "weight" or "bias" after the module, else "".
std::string_view paramOf(std::string_view name, std::string_view& module)
{
    for (std::string_view p : {std::string_view(".weight"), std::string_view(".bias")})
        if (name.ends_with(p)) {
            module = name.substr(0, name.size() - p.size());
            return p.substr(1);
        }
    return {};
}

// The GGUF name's layer number and llama.cpp module ("blk.3.attn_q.weight" -> 3, "attn_q"), or
// nullopt for names that are not llama.cpp's Llama names.
struct GgufParts {
    std::string layer;  // "" for model-level tensors
    std::string module;
    std::string param;
};
std::optional<GgufParts> ggufParts(const std::string& name)
{
    std::string_view module;
    const std::string_view param = paramOf(name, module);
    if (param.empty())
        return std::nullopt;
    for (const NamePair& p : kModelNames)
        if (module == p.gguf)
            return GgufParts{"", p.gguf, std::string(param)};
    if (!module.starts_with("blk."))
        return std::nullopt;
    module.remove_prefix(4);
    const size_t dot = module.find('.');
    if (dot == std::string_view::npos || !allDigits(module.substr(0, dot)))
        return std::nullopt;
    const std::string_view rest = module.substr(dot + 1);
    for (const NamePair& p : kLayerNames)
        if (rest == p.gguf)
            return GgufParts{std::string(module.substr(0, dot)), p.gguf, std::string(param)};
    return std::nullopt;
}

const std::string* metadataValue(const Model& m, const std::string& key)
{
    for (const auto& [k, v] : m.metadata)
        if (k == key)
            return &v;
    return nullptr;
}

bool isRank2(const Tensor& t) { return t.rank() == 2; }

// The side of a same-name pair: [in, out] kernels are turned to [out, in] only when the other
// side is not stored that way too (two Keras files compare as they are).
SideTransform sameNameSide(const Tensor& t, const Tensor& other)
{
    SideTransform s;
    s.canonicalShape = t.shape;
    if (isRank2(t) && t.layout == Layout::InOut && other.layout != Layout::InOut) {
        s.transpose = true;
        s.canonicalShape = {t.shape[1], t.shape[0]};
    }
    return s;
}

SideTransform hfSide(const Tensor& t)
{
    SideTransform s;
    s.canonicalShape = t.shape;
    if (isRank2(t) && t.layout == Layout::InOut) {
        s.transpose = true;
        s.canonicalShape = {t.shape[1], t.shape[0]};
    }
    return s;
}

// What the GGUF side needs before its tensors can stand beside Hugging Face ones: llama.cpp's
// converter permutes the q and k rows of architecture "llama" (LlamaModel.permute, over
// head_count for q and head_count_kv for k); "qwen2" keeps them. Other architectures use these
// names for different models (phi3's fused qkv, gemma's offset norms), so they are not paired.
struct GgufRowOrder {
    std::string refusal;  // non-empty: no cross-scheme pairs at all, and why
    bool permuted = false;
    int64_t heads = 0, kvHeads = 0;
    std::string headsRefusal;  // permuted but the head counts are unknown: q/k stay unpaired
};

GgufRowOrder ggufRowOrder(const Model& g)
{
    GgufRowOrder r;
    const std::string* arch = metadataValue(g, "general.architecture");
    if (!arch) {
        r.refusal = "the GGUF-named file has no general.architecture, so its q/k row order is unknown";
        return r;
    }
    if (*arch == "qwen2")
        return r;
    if (*arch != "llama") {
        r.refusal = "GGUF architecture '" + *arch + "' is not paired with Hugging Face names (llama and qwen2 are)";
        return r;
    }
    r.permuted = true;
    // The runner's reading of the GGUF metadata (head_count, head_count_kv checked against the
    // shapes) is the one source of the head counts.
    // Without head_count the runner would guess from the width; a guess is no base for a pairing.
    if (!metadataValue(g, "llama.attention.head_count")) {
        r.headsRefusal = "llama.attention.head_count is missing from the GGUF metadata, so llama.cpp's q/k row "
                         "permutation cannot be undone";
        return r;
    }
    auto cfg = inferLlamaConfig(g, EncoderOptions{});
    if (!cfg) {
        r.headsRefusal = "no Llama layer 0 to read the head counts from";
    } else if (!*cfg) {
        r.headsRefusal = "head counts unknown: " + cfg->error().message;
    } else if ((*cfg)->headsFrom != "gguf metadata") {
        r.headsRefusal = "llama.attention.head_count in the GGUF metadata is not a head count";
    } else {
        r.heads = (*cfg)->heads;
        r.kvHeads = (*cfg)->kvHeads;
    }
    return r;
}

struct Keyed {
    const Tensor* t = nullptr;
    bool gguf = false;
};

}  // namespace

std::string ggufNameForHf(const std::string& hfName)
{
    std::string_view module;
    const std::string_view param = paramOf(hfName, module);
    if (param.empty())
        return {};
    for (const NamePair& p : kModelNames)
        if (module == p.hf)
            return std::string(p.gguf) + "." + std::string(param);
    if (!module.starts_with("model.layers."))
        return {};
    module.remove_prefix(13);
    const size_t dot = module.find('.');
    if (dot == std::string_view::npos || !allDigits(module.substr(0, dot)))
        return {};
    const std::string_view rest = module.substr(dot + 1);
    for (const NamePair& p : kLayerNames)
        if (rest == p.hf)
            return "blk." + std::string(module.substr(0, dot)) + "." + p.gguf + "." + std::string(param);
    return {};
}

MatchPlan matchTensors(const Model& a, const Model& b)
{
    MatchPlan plan;
    std::map<std::string, const Tensor*> byNameB;
    for (const Tensor& t : b.tensors)
        byNameB.emplace(t.name, &t);
    std::map<std::string, const Tensor*> byNameA;
    for (const Tensor& t : a.tensors)
        byNameA.emplace(t.name, &t);

    // Cross-scheme keys (the GGUF name) of the tensors without a same-name partner.
    std::map<std::string, std::vector<Keyed>> keysA, keysB;
    auto keyOf = [](const Tensor& t) -> std::optional<Keyed> {
        if (std::string g = ggufNameForHf(t.name); !g.empty())
            return Keyed{&t, false};
        if (ggufParts(t.name))
            return Keyed{&t, true};
        return std::nullopt;
    };
    auto key = [](const Keyed& k) { return k.gguf ? k.t->name : ggufNameForHf(k.t->name); };
    for (const Tensor& t : a.tensors)
        if (!byNameB.count(t.name))
            if (auto k = keyOf(t))
                keysA[key(*k)].push_back(*k);
    for (const Tensor& t : b.tensors)
        if (!byNameA.count(t.name))
            if (auto k = keyOf(t))
                keysB[key(*k)].push_back(*k);

    std::optional<GgufRowOrder> orderA, orderB;  // read once, only when needed
    auto orderOf = [&](bool sideA) -> const GgufRowOrder& {
        std::optional<GgufRowOrder>& o = sideA ? orderA : orderB;
        if (!o)
            o = ggufRowOrder(sideA ? a : b);
        return *o;
    };

    std::map<const Tensor*, std::string> reasonB;  // b tensors left over, with why
    std::map<const Tensor*, bool> pairedB;

    auto addPair = [&](TensorPair p) {
        pairedB[p.b] = true;
        if (p.aSide.canonicalShape != p.bSide.canonicalShape) {
            plan.mismatched.push_back({p.a->name, p.b->name, p.aSide.canonicalShape, p.bSide.canonicalShape,
                                       "shapes differ after mapping (" + p.how + ")"});
            return;
        }
        plan.pairs.push_back(std::move(p));
    };

    for (const Tensor& t : a.tensors) {
        if (auto it = byNameB.find(t.name); it != byNameB.end()) {
            TensorPair p{&t, it->second, sameNameSide(t, *it->second), sameNameSide(*it->second, t), "same name"};
            if (p.aSide.transpose || p.bSide.transpose)
                p.how += ", [in, out] kernel transposed";
            addPair(std::move(p));
            continue;
        }
        const auto k = keyOf(t);
        if (!k) {
            plan.unpairedA.push_back({t.name, "no tensor of this name in the other file, and no other naming scheme "
                                              "maps it (Llama-family Hugging Face <-> GGUF names are mapped)"});
            continue;
        }
        const std::string kk = key(*k);
        const auto& mineSame = keysA[kk];
        const auto itB = keysB.find(kk);
        if (mineSame.size() > 1) {
            plan.unpairedA.push_back({t.name, "several tensors of this file map to '" + kk + "'"});
            continue;
        }
        std::vector<const Keyed*> others;
        if (itB != keysB.end())
            for (const Keyed& o : itB->second)
                if (o.gguf != k->gguf)
                    others.push_back(&o);
        if (others.empty()) {
            plan.unpairedA.push_back({t.name, k->gguf ? "no Hugging Face counterpart of this GGUF name in the other file"
                                                      : "the other file has neither this name nor its GGUF name '" + kk + "'"});
            continue;
        }
        if (others.size() > 1) {
            plan.unpairedA.push_back({t.name, "several tensors of the other file map to '" + kk + "'"});
            for (const Keyed* o : others)
                reasonB[o->t] = "several tensors map to '" + kk + "'";
            continue;
        }
        const Tensor& o = *others[0]->t;
        const Tensor& gTensor = k->gguf ? t : o;
        const GgufRowOrder& order = orderOf(k->gguf);
        if (!order.refusal.empty()) {
            plan.unpairedA.push_back({t.name, order.refusal});
            reasonB[&o] = order.refusal;
            continue;
        }
        SideTransform gSide;
        gSide.canonicalShape = gTensor.shape;
        std::string how = "gguf<->hf";
        const auto parts = ggufParts(gTensor.name);
        if (order.permuted && (parts->module == "attn_q" || parts->module == "attn_k")) {
            if (!order.headsRefusal.empty()) {
                plan.unpairedA.push_back({t.name, order.headsRefusal});
                reasonB[&o] = order.headsRefusal;
                continue;
            }
            gSide.unpermuteHeads = parts->module == "attn_q" ? order.heads : order.kvHeads;
            const int64_t rows = gTensor.rank() >= 1 ? gTensor.shape[0] : 0;
            if (gTensor.rank() > 2 || rows % gSide.unpermuteHeads != 0 || (rows / gSide.unpermuteHeads) % 2 != 0) {
                plan.mismatched.push_back({t.name, o.name, t.shape, o.shape,
                                           std::to_string(rows) + " rows do not split into " +
                                               std::to_string(gSide.unpermuteHeads) + " heads of an even size"});
                pairedB[&o] = true;
                continue;
            }
            how += ", q/k rows un-permuted (" + std::to_string(gSide.unpermuteHeads) + " heads)";
        }
        const SideTransform hSide = hfSide(k->gguf ? o : t);
        if (hSide.transpose)
            how += ", [in, out] kernel transposed";
        TensorPair p{&t, &o, k->gguf ? gSide : hSide, k->gguf ? hSide : gSide, how};
        addPair(std::move(p));
    }

    for (const Tensor& t : b.tensors) {
        if (pairedB.count(&t))
            continue;
        if (auto r = reasonB.find(&t); r != reasonB.end()) {
            plan.unpairedB.push_back({t.name, r->second});
            continue;
        }
        const auto k = keyOf(t);
        if (!k)
            plan.unpairedB.push_back({t.name, "no tensor of this name in the other file, and no other naming scheme "
                                              "maps it (Llama-family Hugging Face <-> GGUF names are mapped)"});
        else if (keysB[key(*k)].size() > 1)
            plan.unpairedB.push_back({t.name, "several tensors of this file map to '" + key(*k) + "'"});
        else
            plan.unpairedB.push_back({t.name, k->gguf ? "no Hugging Face counterpart of this GGUF name in the other file"
                                                      : "the other file has neither this name nor its GGUF name '" +
                                                            key(*k) + "'"});
    }
    return plan;
}

namespace {

// Moves rows (rowLen floats each) so that row d ends up holding what row src(d) held, in place:
// every cycle of the permutation is followed once with one row of scratch.
template <class Src>
void permuteRowsInPlace(std::vector<float>& v, int64_t rows, int64_t rowLen, Src src)
{
    std::vector<bool> done(static_cast<size_t>(rows), false);
    std::vector<float> tmp(static_cast<size_t>(rowLen));
    auto row = [&](int64_t r) { return v.begin() + r * rowLen; };
    for (int64_t start = 0; start < rows; ++start) {
        if (done[size_t(start)])
            continue;
        std::copy(row(start), row(start) + rowLen, tmp.begin());
        int64_t d = start;
        for (;;) {
            done[size_t(d)] = true;
            const int64_t s = src(d);
            if (s == start) {
                std::copy(tmp.begin(), tmp.end(), row(d));
                break;
            }
            std::copy(row(s), row(s) + rowLen, row(d));
            d = s;
        }
    }
}

}  // namespace

void applySideTransform(const SideTransform& t, const std::vector<int64_t>& storedShape, std::vector<float>& v)
{
    if (t.transpose && storedShape.size() == 2) {
        const int64_t r = storedShape[0], c = storedShape[1];
        // Element d of the [c, r] result is element (d % r, d / r) of the stored [r, c].
        permuteRowsInPlace(v, r * c, 1, [r, c](int64_t d) { return (d % r) * c + d / r; });
    }
    if (t.unpermuteHeads > 0 && !t.canonicalShape.empty()) {
        const int64_t rows = t.canonicalShape[0];
        const int64_t rowLen = rows > 0 ? int64_t(v.size()) / rows : 0;
        const int64_t dh = rows / t.unpermuteHeads, half = dh / 2;
        // llama.cpp stores head h's row 2i+j where Hugging Face has row j*half+i
        // (reshape(heads, 2, half, ...).swapaxes(1, 2) in its converter).
        permuteRowsInPlace(v, rows, rowLen, [dh, half](int64_t d) {
            const int64_t h = d / dh, rem = d % dh, j = rem / half, i = rem % half;
            return h * dh + 2 * i + j;
        });
    }
}

}  // namespace quantlens
