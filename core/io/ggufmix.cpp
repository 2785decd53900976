#include "io/ggufmix.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <numeric>

#include "io/ggufwriter.h"

namespace quantlens {

namespace {

struct MixInfo {
    GgufMix mix;
    const char* name;
    uint32_t ftype;
    GgmlType base;  // llama_ftype_get_default_type
};

constexpr MixInfo kMixes[] = {
    {GgufMix::Q4_K_S, "q4_k_s", 14, GgmlType::Q4_K},
    {GgufMix::Q4_K_M, "q4_k_m", 15, GgmlType::Q4_K},
    {GgufMix::Q5_K_S, "q5_k_s", 16, GgmlType::Q5_K},
    {GgufMix::Q5_K_M, "q5_k_m", 17, GgmlType::Q5_K},
};

const MixInfo& info(GgufMix m)
{
    for (const MixInfo& i : kMixes)
        if (i.mix == m)
            return i;
    return kMixes[0];
}

enum class Role { TokenEmbd, Output, AttnV, AttnK, AttnQ, AttnOutput, FfnUp, FfnGate, FfnDown, Other };

bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// llama-quant.cpp's tensor categories, tested in the same order (attn_qkv and attn_kv_b count
// as attn_v there: they carry the values).
Role roleOf(const std::string& n)
{
    if (n == "output.weight")
        return Role::Output;
    if (n == "token_embd.weight" || n == "per_layer_token_embd.weight")
        return Role::TokenEmbd;
    if (has(n, "attn_qkv.weight") || has(n, "attn_kv_b.weight") || has(n, "attn_v.weight"))
        return Role::AttnV;
    if (has(n, "attn_k.weight"))
        return Role::AttnK;
    if (has(n, "attn_q.weight"))
        return Role::AttnQ;
    if (has(n, "attn_output.weight"))
        return Role::AttnOutput;
    if (has(n, "ffn_up"))
        return Role::FfnUp;
    if (has(n, "ffn_gate"))
        return Role::FfnGate;
    if (has(n, "ffn_down"))
        return Role::FfnDown;
    return Role::Other;
}

// ggml_n_dims: trailing dimensions of 1 do not count (a [1, 64] tensor is 1-D to ggml).
int ggmlDims(const std::vector<int64_t>& shape)
{
    int dims = 1;
    for (size_t i = 0; i < shape.size(); ++i)  // shape is outermost first: ne[k] = shape[rank-1-k]
        if (shape[i] > 1) {
            dims = std::max(dims, int(shape.size() - i));
        }
    return dims;
}

// tensor_allows_quantization: matrices (and expert stacks) whose name ends in "weight",
// minus the small or special ones llama.cpp leaves alone.
bool quantizable(const Tensor& t)
{
    if (ggmlDims(t.shape) < 2)
        return false;
    const std::string& n = t.name;
    if (n.size() < 6 || n.compare(n.size() - 6, 6, "weight") != 0)
        return false;
    static const char* const kKeep[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight", "time_mix_first.weight",
        "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
        "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
        "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
        ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"};
    for (const char* k : kKeep)
        if (has(n, k))
            return false;
    return n != "position_embd.weight" && n != "token_types.weight";
}

// The layer number of "blk.N....", -1 for tensors outside the blocks.
int blockOf(const std::string& n)
{
    if (n.rfind("blk.", 0) != 0)
        return -1;
    char* end = nullptr;
    const long v = std::strtol(n.c_str() + 4, &end, 10);
    return end != n.c_str() + 4 && *end == '.' ? int(v) : -1;
}

int64_t metaInt(const Model& m, const std::string& key)
{
    for (const auto& [k, v] : m.metadata)
        if (k == key)
            return std::strtoll(v.c_str(), nullptr, 10);
    return 0;
}

std::string metaText(const Model& m, const std::string& key)
{
    for (const auto& [k, v] : m.metadata)
        if (k == key)
            return v;
    return {};
}

// The layers that get more bits: the first and last eighth and every third one between.
bool useMoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

std::string typeName(GgmlType t) { return ggmlTypeInfo(t)->name; }

}  // namespace

const std::vector<GgufMix>& allGgufMixes()
{
    static const std::vector<GgufMix> all{GgufMix::Q4_K_S, GgufMix::Q4_K_M, GgufMix::Q5_K_S, GgufMix::Q5_K_M};
    return all;
}

std::string ggufMixName(GgufMix m) { return info(m).name; }

std::optional<GgufMix> parseGgufMix(const std::string& s)
{
    std::string l = s;
    for (char& c : l)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    for (const MixInfo& i : kMixes)
        if (l == i.name)
            return i.mix;
    return std::nullopt;
}

uint32_t ggufMixFileType(GgufMix m) { return info(m).ftype; }

std::vector<GgufMixChoice> ggufMixTypes(GgufMix mix, const Model& m)
{
    const MixInfo& mi = info(mix);
    const std::string arch = metaText(m, "general.architecture");
    const bool falcon = arch == "falcon";
    const int64_t nExpert = metaInt(m, arch + ".expert_count");
    const int nLayer = int(metaInt(m, arch + ".block_count"));
    // llama.cpp's LLM_TYPE_70B test as its quantize tool applies it: 80 Llama blocks with
    // grouped-query attention.
    const bool is70b = arch == "llama" && nLayer == 80
                       && metaInt(m, arch + ".attention.head_count") != metaInt(m, arch + ".attention.head_count_kv");
    const bool tied = !m.find("output.weight");
    const bool km = mix == GgufMix::Q4_K_M || mix == GgufMix::Q5_K_M;

    // llama.cpp walks the tensors by block number, then name, counting attn_v-like and
    // ffn_down tensors as it goes: the counters are positions in that order.
    std::vector<size_t> order(m.tensors.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const int la = blockOf(m.tensors[a].name), lb = blockOf(m.tensors[b].name);
        return la != lb ? la < lb : m.tensors[a].name < m.tensors[b].name;
    });
    int nAttnV = 0;
    for (const Tensor& t : m.tensors)
        if (roleOf(t.name) == Role::AttnV)
            ++nAttnV;
    int iAttnV = 0, iFfnDown = 0;

    std::vector<GgufMixChoice> out(m.tensors.size());
    for (size_t idx : order) {
        const Tensor& t = m.tensors[idx];
        GgufMixChoice& c = out[idx];
        if (!quantizable(t)) {
            c.why = ggmlDims(t.shape) < 2 ? "1-D: kept" : "kept as stored (llama-quantize leaves this tensor)";
            continue;
        }
        c.quantize = true;
        const Role role = roleOf(t.name);
        GgmlType type = mi.base;
        std::string why = "base type of " + std::string(mi.name);
        const int64_t rowLen = t.shape.empty() ? 1 : t.shape.back();
        if (role == Role::Output || (tied && role == Role::TokenEmbd)) {
            const std::string who = role == Role::Output ? "output" : "token_embd (tied to the output)";
            if (falcon || rowLen % ggmlTypeInfo(type)->blockElems != 0) {
                type = GgmlType::Q8_0;
                why = who + ": q8_0 (" + (falcon ? "falcon" : "row not a multiple of 256") + ")";
            } else {
                type = GgmlType::Q6_K;
                why = who + ": q6_k";
            }
        } else if (role == Role::AttnV) {
            if (km && useMoreBits(iAttnV, nAttnV)) {
                type = GgmlType::Q6_K;
                why = "attn_v " + std::to_string(iAttnV) + " of " + std::to_string(nAttnV) + ": use_more_bits, q6_k";
            } else if (mix == GgufMix::Q4_K_S && iAttnV < 4) {
                type = GgmlType::Q5_K;
                why = "attn_v of the first 4: q5_k";
            }
            if (is70b && type == GgmlType::Q4_K) {
                type = GgmlType::Q5_K;
                why = "attn_v of a 70B model (8 heads share it): q5_k";
            }
            if (nExpert == 8) {
                type = GgmlType::Q8_0;
                why = "attn_v of an 8-expert model: q8_0";
            }
            ++iAttnV;
        } else if (role == Role::AttnK && nExpert == 8) {
            type = GgmlType::Q8_0;
            why = "attn_k of an 8-expert model: q8_0";
        } else if (role == Role::FfnDown) {
            int layer = iFfnDown;
            if (nExpert > 1)
                layer = blockOf(t.name);  // experts are not consecutive: the name says the layer
            const int n = nLayer;
            if (mix == GgufMix::Q4_K_M && falcon) {
                type = layer < n / 16 ? GgmlType::Q6_K : useMoreBits(layer, n) ? GgmlType::Q5_K : GgmlType::Q4_K;
                why = "falcon ffn_down layer " + std::to_string(layer) + ": " + typeName(type);
            } else if (km && useMoreBits(layer, n)) {
                type = GgmlType::Q6_K;
                why = "ffn_down layer " + std::to_string(layer) + " of " + std::to_string(n) + ": use_more_bits, q6_k";
            } else if (mix == GgufMix::Q4_K_S && !falcon && layer < n / 8) {
                type = GgmlType::Q5_K;
                why = "ffn_down in the first eighth: q5_k";
            }
            ++iFfnDown;
        } else if (role == Role::AttnOutput && !falcon && nExpert == 8
                   && (mix == GgufMix::Q4_K_S || mix == GgufMix::Q4_K_M)) {
            type = GgmlType::Q5_K;
            why = "attn_output of an 8-expert model: q5_k";
        }
        // tensor_type_fallback: a row that is not whole blocks demotes the type.
        const GgmlType fb = ggmlFallbackType(type, rowLen);
        if (fb != type)
            why += "; row of " + std::to_string(rowLen) + " is not a multiple of "
                   + std::to_string(ggmlTypeInfo(type)->blockElems) + ": " + typeName(fb);
        c.type = fb;
        c.why = why;
    }
    return out;
}

}  // namespace quantlens
