#pragma once
// Quantized Hugging Face checkpoints: config.json's quantization_config says how the
// weights of a safetensors checkpoint are stored, and these turn each quantized Linear's
// file tensors (codes, scales, zero points, g_idx, shape) into one decodable `<m>.weight`
// [out, in] of DType::Packed (core/packedweight.h), decoded only when asked for.
//  - compressed-tensors "int-quantized" / "naive-quantized" and "pack-quantized"
//    (core/io/ctread.cpp);
//  - GPTQ (AutoGPTQ, GPTQModel, AutoRound's GPTQ format) packed int2/4/8 (core/io/gptqread.cpp).
// Other quant_methods leave the model as the file has it.
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "model.h"
#include "packedweight.h"

namespace quantlens {

// Reads `<folder>/config.json`, if there is one, and decodes what its quantization_config
// describes. A checkpoint whose tensors do not fit that description fails with one line.
Status decodeHfQuantization(Model& m, const std::string& folder);

Status decodeCompressedTensors(Model& m, const nlohmann::ordered_json& qc, const std::string& configPath);
Status decodeGptq(Model& m, const nlohmann::ordered_json& qc, const std::string& configPath);

namespace hfquant {

// The model's tensors by name, and the rewrite: each packed weight takes the place of its
// codes tensor, its parts leave the tensor list (they live on inside the PackedWeight).
class Rewrite {
public:
    // `path`: the file named in add()'s errors.
    Rewrite(Model& m, std::string path);
    const Tensor* find(const std::string& name) const;
    // Checks `pw`, then replaces `codesName` by `<module>.weight` and drops `parts`.
    Status add(const std::string& module, const std::string& codesName, PackedWeight pw,
               const std::vector<std::string>& parts, std::string typeLabel, std::string note);
    void apply();

private:
    Model& m_;
    std::string path_;
    std::vector<std::pair<std::string, size_t>> index_;  // sorted by name
    std::vector<std::pair<size_t, Tensor>> replace_;
    std::vector<bool> drop_;
};

}  // namespace hfquant

}  // namespace quantlens
