#pragma once
// llama-quantize's per-tensor type mixes (Q4_K_M and friends): which tensors a llama.cpp
// file type quantizes and to which ggml type, as llama_tensor_get_type (src/llama-quant.cpp)
// decides without an importance matrix. Checked against llama.cpp's own llama_model_quantize
// (tests/scripts/make_gguf_mix_fixtures.py, tests/data/gguf/mix_expected.json).
// Q3_K_M and the other Q2/Q3/IQ mixes need ggml types Quantlens does not write.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model.h"
#include "quant/ggmlquant.h"

namespace quantlens {

enum class GgufMix { Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M };

const std::vector<GgufMix>& allGgufMixes();
std::string ggufMixName(GgufMix m);          // "q4_k_m"
std::optional<GgufMix> parseGgufMix(const std::string& s);  // case-insensitive
uint32_t ggufMixFileType(GgufMix m);         // llama_ftype: MOSTLY_Q4_K_M = 15, ...

// One tensor's part in the mix; quantize = false leaves it as stored (1-D, norms, ...).
struct GgufMixChoice {
    bool quantize = false;
    GgmlType type = GgmlType::F32;
    std::string why;  // the rule that picked the type, and any row-length fallback
};

// One choice per m.tensors entry. The model facts the rules read (architecture, expert
// count, block count, head counts) come from m.metadata as the GGUF reader lists them.
std::vector<GgufMixChoice> ggufMixTypes(GgufMix mix, const Model& m);

}  // namespace quantlens
