// Sharded Hugging Face checkpoints: model.safetensors.index.json (or the older
// pytorch_model.bin.index.json, same JSON) names which shard holds each tensor.
#include <filesystem>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "io/mappedfile.h"
#include "io/pytorch.h"
#include "io/safetensors.h"
#include "layers.h"

namespace quantlens {

namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// Real indexes list a few thousand tensors (~1 MB for the largest LLMs).
constexpr size_t kMaxIndexBytes = 64u << 20;

// A shard name must stay inside the index's folder: an index from the internet
// must not make us map /etc/passwd or ../../secret.safetensors.
bool isSafeShardName(const std::string& name)
{
    if (name.empty() || name.find('\0') != std::string::npos || name.find('\\') != std::string::npos)
        return false;
    const fs::path p(name);
    if (p.is_absolute() || p.has_root_name() || p.has_root_directory())
        return false;
    for (const fs::path& part : p)
        if (part == "..")
            return false;
    return true;
}

}  // namespace

Result<Model> readSafetensorsIndex(const std::string& indexPath)
{
    auto mapped = MappedFile::open(indexPath);
    if (!mapped)
        return mapped.error();
    const auto bytes = (*mapped)->bytes();
    if (bytes.size() > kMaxIndexBytes)
        return makeError("header-too-large", "index is " + std::to_string(bytes.size()) + " bytes; the limit is " +
                                                 std::to_string(kMaxIndexBytes),
                         indexPath);
    Json index;
    try {
        index = Json::parse(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    } catch (const Json::exception& ex) {
        return makeError("bad-json", std::string("index is not valid JSON: ") + ex.what(), indexPath);
    }
    if (!index.is_object())
        return makeError("bad-header", std::string("index is a JSON ") + index.type_name() + ", not an object", indexPath);
    const auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object())
        return makeError("bad-header", "index has no \"weight_map\" object", indexPath);

    Model model;
    model.format = "safetensors-sharded";
    bool torchShards = false;  // decided by the shards' names below: one index holds one kind
    if (const auto md = index.find("metadata"); md != index.end()) {
        if (!md->is_object())
            return makeError("bad-metadata", "\"metadata\" is not an object", indexPath);
        // HF writes {"total_size": <number>}: keep non-strings as their JSON text.
        for (auto it = md->begin(); it != md->end(); ++it)
            model.metadata.emplace_back(it.key(), it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
    }

    // Shards in order of first mention; each tensor remembers its shard.
    std::vector<std::string> shardNames;
    std::unordered_map<std::string, size_t> shardIndex;
    std::vector<std::pair<std::string, size_t>> wanted;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it.value().is_string())
            return makeError("bad-header", "weight_map value is not a shard file name", indexPath, -1, it.key());
        const std::string shard = it.value().get<std::string>();
        if (!isSafeShardName(shard))
            return makeError("unsafe-path", "shard '" + shard + "' is not a plain relative path inside the index folder",
                             indexPath, -1, it.key());
        auto [pos, inserted] = shardIndex.emplace(shard, shardNames.size());
        if (inserted)
            shardNames.push_back(shard);
        wanted.emplace_back(it.key(), pos->second);
    }
    if (shardNames.empty())
        return makeError("bad-header", "weight_map is empty", indexPath);
    auto isTorchShard = [](const std::string& n) { return n.size() > 4 && n.compare(n.size() - 4, 4, ".bin") == 0; };
    torchShards = isTorchShard(shardNames.front());
    for (const std::string& n : shardNames)
        if (isTorchShard(n) != torchShards)
            return makeError("bad-header", "weight_map mixes .bin and safetensors shards ('" + shardNames.front() + "', '" + n + "')",
                             indexPath);
    if (torchShards)
        model.format = "pytorch-sharded";

    const fs::path folder = fs::path(indexPath).parent_path();
    std::vector<Model> shards;
    shards.reserve(shardNames.size());
    for (const std::string& name : shardNames) {
        const std::string shardPath = (folder / name).string();
        auto shard = torchShards ? readPytorch(shardPath) : readSafetensors(shardPath);
        if (!shard)
            return shard.error();  // names the shard file and what is wrong with it
        shards.push_back(std::move(*shard));
    }

    for (const auto& [tensor, s] : wanted)
        if (!shards[s].find(tensor))
            return makeError("missing-tensor", "weight_map puts it in shard '" + shardNames[s] + "', which does not contain it",
                             indexPath, -1, tensor);

    std::set<std::string> seen;
    std::set<std::pair<std::string, std::string>> seenMeta(model.metadata.begin(), model.metadata.end());
    for (size_t s = 0; s < shards.size(); ++s) {
        model.files.push_back(shards[s].files.front());
        for (auto& kv : shards[s].metadata)
            if (seenMeta.insert(kv).second)
                model.metadata.push_back(kv);
        for (Tensor& t : shards[s].tensors) {
            if (!seen.insert(t.name).second)
                return makeError("duplicate-tensor", "appears in more than one shard (again in '" + shardNames[s] + "')",
                                 indexPath, -1, t.name);
            model.tensors.push_back(std::move(t));
        }
    }
    markConv1DLayouts(model);
    return model;
}

}  // namespace quantlens
