#include "calibration.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "commands.h"

namespace quantlens::cli {

EncoderRunner makeCalibrationRunner(const Model& m, const std::string& modelArg, int64_t heads)
{
    EncoderOptions eo;
    eo.heads = heads;
    if (modelArg != "demo") {
        std::error_code ec;
        const std::filesystem::path p(modelArg);
        const auto dir = std::filesystem::is_directory(p, ec) ? p : p.parent_path();
        const auto cfg = (dir.empty() ? std::filesystem::path(".") : dir) / "config.json";
        if (auto r = readHfConfigHints(cfg.string(), eo); !r)
            std::fprintf(stderr, "quantlens-cli: ignoring %s\n", r.error().oneLine().c_str());
    }
    auto runner = EncoderRunner::create(m, eo);
    if (!runner)
        throw Failure{runner.error().oneLine() + " (calibration runs BERT-family, GPT-2 and Llama-family models)"};
    return std::move(*runner);
}

std::vector<std::vector<int64_t>> readCalibrationTokens(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Failure{path + ": cannot open token file"};
    std::stringstream ss;
    ss << in.rdbuf();
    auto seqs = parseTokenText(ss.str());
    if (!seqs)
        throw Failure{path + ": " + seqs.error().message};
    return std::move(*seqs);
}

}  // namespace quantlens::cli
