#include "io/hfquant.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace quantlens {

namespace {

using Json = nlohmann::ordered_json;

// Real config.json files are a few kB; quantization configs with per-module rules
// (GPTQModel's "dynamic") stay far below this.
constexpr uintmax_t kMaxConfigBytes = 16u << 20;
constexpr int kMaxConfigDepth = 32;

// The JSON object in `path`; a null Json when the file does not exist.
Result<Json> readJsonObject(const std::string& path)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
        return Json();
    const auto size = fs::file_size(path, ec);
    const std::string file = fs::path(path).filename().string();
    if (ec || size > kMaxConfigBytes)
        return makeError("bad-config", file + " is larger than 16 MiB or unreadable", path);
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    bool tooDeep = false;
    Json j = Json::parse(
        ss.str(),
        [&](int depth, Json::parse_event_t, Json&) {
            tooDeep = tooDeep || depth > kMaxConfigDepth;
            return !tooDeep;
        },
        false);
    if (tooDeep)
        return makeError("bad-config", file + " nests deeper than " + std::to_string(kMaxConfigDepth) + " levels", path);
    if (j.is_discarded() || !j.is_object())
        return makeError("bad-config", file + " is not a JSON object", path);
    return j;
}

}  // namespace

Status decodeHfQuantization(Model& m, const std::string& folder)
{
    namespace fs = std::filesystem;
    const fs::path dir(folder.empty() ? "." : folder);
    std::string path = (dir / "config.json").string();
    auto config = readJsonObject(path);
    if (!config)
        return config.error();
    auto qc = config->is_object() ? config->find("quantization_config") : config->end();
    if (!config->is_object() || qc == config->end() || qc->is_null()) {
        // Older AutoGPTQ checkpoints keep their settings in quantize_config.json instead.
        path = (dir / "quantize_config.json").string();
        config = readJsonObject(path);
        if (!config)
            return config.error();
        if (config->is_null())
            return Ok{};  // nothing says the integers are quantized weights
        for (const Tensor& t : m.tensors)
            if (t.name.ends_with(".qweight"))
                return decodeGptq(m, *config, path);
        return Ok{};
    }
    if (!qc->is_object())
        return makeError("bad-config", "quantization_config is not an object", path);
    const auto method = qc->find("quant_method");
    if (method == qc->end() || !method->is_string())
        return makeError("bad-config", "quantization_config has no quant_method string", path);
    const std::string name = method->get<std::string>();
    if (name == "compressed-tensors")
        return decodeCompressedTensors(m, *qc, path);
    if (name == "gptq")
        return decodeGptq(m, *qc, path);
    return Ok{};  // awq, bitsandbytes, fp8, ...: listed as stored
}

namespace hfquant {

Rewrite::Rewrite(Model& m, std::string path) : m_(m), path_(std::move(path)), drop_(m.tensors.size(), false)
{
    index_.reserve(m.tensors.size());
    for (size_t i = 0; i < m.tensors.size(); ++i)
        index_.emplace_back(m.tensors[i].name, i);
    std::sort(index_.begin(), index_.end());
}

const Tensor* Rewrite::find(const std::string& name) const
{
    auto it = std::lower_bound(index_.begin(), index_.end(), std::pair<std::string, size_t>(name, 0));
    return it != index_.end() && it->first == name ? &m_.tensors[it->second] : nullptr;
}

Status Rewrite::add(const std::string& module, const std::string& codesName, PackedWeight pw,
                    const std::vector<std::string>& parts, std::string typeLabel, std::string note)
{
    const std::string name = module + ".weight";
    if (Status s = pw.check(name); !s) {
        Error e = s.error();
        e.path = path_;
        return e;
    }
    const Tensor* codes = find(codesName);
    if (!codes)
        return makeError("internal", "codes tensor '" + codesName + "' is gone", path_, -1, name);
    if (const Tensor* w = find(name); w && w != codes)
        return makeError("bad-packed", "the file holds both '" + name + "' and the packed '" + codesName + "'", path_, -1, name);
    Tensor t;
    t.name = name;
    t.dtype = DType::Packed;
    t.shape = {pw.out, pw.in};
    t.data = codes->data;
    t.keepAlive = codes->keepAlive;
    t.opaqueType = std::move(typeLabel);
    t.note = std::move(note);
    t.packed = std::make_shared<const PackedWeight>(std::move(pw));
    const size_t at = size_t(codes - m_.tensors.data());
    replace_.emplace_back(at, std::move(t));
    for (const std::string& p : parts)
        if (const Tensor* x = find(p); x && x != codes)
            drop_[size_t(x - m_.tensors.data())] = true;
    return Ok{};
}

void Rewrite::apply()
{
    for (auto& [at, t] : replace_)
        m_.tensors[at] = std::move(t);
    std::vector<Tensor> kept;
    kept.reserve(m_.tensors.size());
    for (size_t i = 0; i < m_.tensors.size(); ++i)
        if (!drop_[i])
            kept.push_back(std::move(m_.tensors[i]));
    m_.tensors = std::move(kept);
    replace_.clear();
}

}  // namespace hfquant

}  // namespace quantlens
