#include "runner/normfold.h"

#include <array>

namespace quantlens {

namespace {

struct FoldRule {
    const char* suffix;          // of the layer prefix
    const char* norm;            // sibling of the layer's block, without ".weight"
    std::array<const char*, 3> siblings;
    bool hasBias;
};

// Relative to the block ("...h.3.", "...layers.3.", "blk.3.").
constexpr FoldRule kGpt2[] = {
    {"attn.c_attn", "ln_1", {"attn.c_attn", nullptr, nullptr}, true},
    {"mlp.c_fc", "ln_2", {"mlp.c_fc", nullptr, nullptr}, true},
};
constexpr FoldRule kLlamaHf[] = {
    {"self_attn.q_proj", "input_layernorm", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, false},
    {"self_attn.k_proj", "input_layernorm", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, false},
    {"self_attn.v_proj", "input_layernorm", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, false},
    {"mlp.gate_proj", "post_attention_layernorm", {"mlp.gate_proj", "mlp.up_proj", nullptr}, false},
    {"mlp.up_proj", "post_attention_layernorm", {"mlp.gate_proj", "mlp.up_proj", nullptr}, false},
};
constexpr FoldRule kLlamaGguf[] = {
    {"attn_q", "attn_norm", {"attn_q", "attn_k", "attn_v"}, false},
    {"attn_k", "attn_norm", {"attn_q", "attn_k", "attn_v"}, false},
    {"attn_v", "attn_norm", {"attn_q", "attn_k", "attn_v"}, false},
    {"ffn_gate", "ffn_norm", {"ffn_gate", "ffn_up", nullptr}, false},
    {"ffn_up", "ffn_norm", {"ffn_gate", "ffn_up", nullptr}, false},
};

template <size_t N>
Result<NormFold> match(const FoldRule (&rules)[N], const std::string& layer)
{
    for (const FoldRule& r : rules) {
        const std::string suffix = std::string(".") + r.suffix;
        if (!layer.ends_with(suffix))
            continue;
        const std::string block = layer.substr(0, layer.size() - suffix.size() + 1);
        NormFold f;
        f.gamma = block + r.norm + ".weight";
        if (r.hasBias)
            f.beta = block + r.norm + ".bias";
        for (const char* s : r.siblings)
            if (s)
                f.siblings.push_back(block + s);
        return f;
    }
    return makeError("not-foldable", "no norm right before '" + layer +
                                         "' (it reads attention or MLP outputs): SmoothQuant's scales would have to "
                                         "fold into the previous linear layer, which is not done");
}

}  // namespace

Result<NormFold> precedingNorm(const EncoderConfig& c, const std::string& layer)
{
    switch (c.family) {
    case EncoderFamily::Gpt2: return match(kGpt2, layer);
    case EncoderFamily::Llama: return c.ggufNames ? match(kLlamaGguf, layer) : match(kLlamaHf, layer);
    case EncoderFamily::Bert:
    case EncoderFamily::Roberta:
    case EncoderFamily::DistilBert: break;
    }
    return makeError("not-foldable", encoderFamilyName(c.family) +
                                         " normalises after the residual add (post-LN): the norm's output also "
                                         "feeds the residual stream, so 1/s cannot be folded into it");
}

}  // namespace quantlens
