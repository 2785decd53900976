#include "tasks/modelhints.h"

#include <filesystem>

namespace quantlens {

ModelHints modelHints(const std::string& modelPath, int64_t heads)
{
    ModelHints h;
    h.options.heads = heads;
    if (modelPath.empty() || modelPath == "demo")
        return h;
    std::error_code ec;
    const std::filesystem::path p(modelPath);
    const auto dir = std::filesystem::is_directory(p, ec) ? p : p.parent_path();
    const auto cfg = (dir.empty() ? std::filesystem::path(".") : dir) / "config.json";
    auto r = readHfConfigHints(cfg.string(), h.options);
    if (!r)
        h.warning = "ignoring " + r.error().oneLine();
    else if (*r)
        h.configPath = cfg.string();
    return h;
}

std::string headsSource(const ModelHints& h, const EncoderConfig& c, int64_t userHeads, const std::string& userLabel)
{
    if (userHeads > 0)
        return userLabel;
    if (h.options.heads > 0)
        return "config.json";
    if (!c.headsFrom.empty())
        return c.headsFrom;
    return "hidden/64";
}

bool headsAreGuessed(const std::string& source) { return source == "hidden/64"; }

}  // namespace quantlens
