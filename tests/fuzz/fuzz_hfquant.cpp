// libFuzzer target for the quantized Hugging Face readers (core/io/hfquant.*, ctread.cpp,
// gptqread.cpp, core/packedweight.*): the first byte picks one of four quantization_configs
// (compressed-tensors int-quantized, pack-quantized with per-module groups, GPTQ v1, GPTQ
// v2), the rest is a safetensors file. Any input must give a Model or an Error, never a
// crash, and every packed weight must decode without reading outside its parts. Seed with
// tests/fuzz/seeds/hfquant (made by tests/scripts/make_hfquant_fixtures.py).
#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "io/hfquant.h"
#include "io/safetensors.h"

namespace {

const char* const kConfigs[] = {
    R"({"quant_method": "compressed-tensors", "format": "int-quantized", "quantization_status": "compressed",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "int",
        "symmetric": true, "strategy": "channel"}}}})",
    R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int",
        "symmetric": true, "strategy": "group", "group_size": 32}, "format": "pack-quantized"},
        "group_1": {"targets": ["model.layers.0.mlp.gate_proj"], "weights": {"num_bits": 4, "type": "int",
        "symmetric": true, "strategy": "channel"}},
        "group_2": {"targets": ["re:.*down_proj$"], "weights": {"num_bits": 4, "type": "int",
        "symmetric": false, "strategy": "group", "group_size": 32, "actorder": "group"}}}})",
    R"({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": true, "sym": true, "checkpoint_format": "gptq"})",
    R"({"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": false, "checkpoint_format": "gptq_v2"})",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < 1)
        return 0;
    static const std::vector<nlohmann::ordered_json> configs = [] {
        std::vector<nlohmann::ordered_json> v;
        for (const char* c : kConfigs)
            v.push_back(nlohmann::ordered_json::parse(c));
        return v;
    }();
    const auto& qc = configs[data[0] % configs.size()];
    quantlens::fuzz::withMemFile(data + 1, size - 1, [&](const std::string& path) {
        auto m = quantlens::readSafetensors(path);
        if (!m)
            return;
        const std::string method = qc["quant_method"].get<std::string>();
        quantlens::Status s = method == "gptq" ? quantlens::decodeGptq(*m, qc, "config.json")
                                               : quantlens::decodeCompressedTensors(*m, qc, "config.json");
        if (!s) {
            (void)s.error().oneLine();
            return;
        }
        quantlens::fuzz::decodeAll(quantlens::Result<quantlens::Model>(std::move(*m)), 1 << 20);
    });
    return 0;
}
