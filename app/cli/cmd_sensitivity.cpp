#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "commands.h"
#include "modelarg.h"
#include "runner/encoder.h"
#include "runner/sensitivity.h"

namespace quantlens::cli {

namespace {

struct SensitivityArgs {
    std::string model;
    std::string tokens;
    int64_t random = 0;
    int64_t heads = 0;
    std::string view = "one";
    std::string rankBy = "cosine";
    bool json = false;
};

// JSON has no inf/nan: an exact layer's SQNR becomes null.
nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

// A Hugging Face config.json beside the weights knows the head count the shapes cannot tell.
void applyConfigJson(const std::string& model, EncoderOptions& opt)
{
    if (model == "demo")
        return;
    std::error_code ec;
    const std::filesystem::path p(model);
    const auto dir = std::filesystem::is_directory(p, ec) ? p : p.parent_path();
    const auto cfg = (dir.empty() ? std::filesystem::path(".") : dir) / "config.json";
    auto r = readHfConfigHints(cfg.string(), opt);
    if (!r)
        std::fprintf(stderr, "quantlens-cli: ignoring %s\n", r.error().oneLine().c_str());
}

EncoderInput loadInput(const SensitivityArgs& a, const EncoderConfig& c)
{
    if (!a.tokens.empty()) {
        std::ifstream in(a.tokens, std::ios::binary);
        if (!in)
            throw Failure{a.tokens + ": cannot open token file"};
        std::stringstream ss;
        ss << in.rdbuf();
        auto seqs = parseTokenText(ss.str());
        if (!seqs)
            throw Failure{a.tokens + ": " + seqs.error().message};
        auto input = makeEncoderInput(*seqs, c.padId);
        if (!input)
            throw Failure{a.tokens + ": " + input.error().message};
        return std::move(*input);
    }
    return randomEncoderInput(1, a.random > 0 ? a.random : 128, c.vocab);
}

void runSensitivity(const SensitivityArgs& a)
{
    const Model m = loadModelArg(a.model);
    EncoderOptions eo;
    eo.heads = a.heads;
    applyConfigJson(a.model, eo);
    auto runner = EncoderRunner::create(m, eo);
    if (!runner)
        throw Failure{runner.error().oneLine()};
    const EncoderConfig& c = runner->config();
    // The weights' shapes do not tell the head count, and a wrong one changes every
    // attention: say where it came from, and when it is only a guess.
    const std::string headsFrom = a.heads > 0          ? "--heads"
                                  : eo.heads > 0       ? "config.json"
                                  : !c.headsFrom.empty() ? c.headsFrom
                                                       : "hidden/64";
    const EncoderInput in = loadInput(a, c);

    SensitivityOptions so;
    so.view = a.view == "all-but-one" ? SensitivityView::AllButOne : SensitivityView::OneQuantized;
    so.rankBy = a.rankBy == "sqnr" ? SensitivityMetric::Sqnr : SensitivityMetric::Cosine;
    // A live counter on a terminal only; logs and pipes get nothing.
    if (isatty(fileno(stderr)))
        so.progress = [](int64_t done, int64_t total) {
            std::fprintf(stderr, "\rsensitivity: %lld/%lld forward passes%s", (long long)done, (long long)total,
                         done == total ? "\n" : "");
            return true;
        };
    auto rep = computeSensitivity(*runner, in, so);
    if (!rep)
        throw Failure{rep.error().oneLine()};

    nlohmann::json doc;
    doc["model"] = a.model;
    doc["family"] = encoderFamilyName(c.family);
    doc["config"] = {{"hidden", c.hidden}, {"layers", c.layers}, {"intermediate", c.intermediate},
                     {"heads", c.heads}, {"heads_from", headsFrom}, {"vocab", c.vocab},
                     {"layer_norm_eps", c.layerNormEps}};
    if (c.family == EncoderFamily::Llama) {
        doc["config"]["kv_heads"] = c.kvHeads;
        doc["config"]["head_dim"] = c.headDim;
        doc["config"]["rope_theta"] = c.ropeTheta;
        doc["config"]["rope_layout"] = c.ropeAdjacentPairs ? "adjacent pairs" : "halves";
        doc["config"]["rope_scaling"] = c.ropeScaling.empty() ? "none" : c.ropeScaling;
    }
    doc["view"] = a.view;
    doc["rank_by"] = a.rankBy;
    doc["sequences"] = in.batch;
    doc["tokens"] = rep->tokens;
    doc["all_quantized"] = {{"cosine", number(rep->allQuantized.cosine)},
                            {"sqnr_db", number(rep->allQuantized.sqnrDb)},
                            {"max_abs_error", number(rep->allQuantized.maxAbsError)},
                            {"min_token_cosine", number(rep->allQuantized.minTokenCosine)}};
    nlohmann::json layers = nlohmann::json::array();
    for (const LayerSensitivity& l : rep->layers)
        layers.push_back({{"name", l.name},
                          {"rank", l.rank},
                          {"cosine", number(l.cosine)},
                          {"sqnr_db", number(l.sqnrDb)},
                          {"max_abs_error", number(l.maxAbsError)}});
    doc["layers"] = std::move(layers);
    if (a.json) {
        std::cout << doc.dump(1) << "\n";
        return;
    }
    const std::string headsNote = headsFrom != "hidden/64" ? headsFrom
                                  : a.model == "demo"        ? "hidden / 64"
                                                             : "hidden / 64, a guess: give --heads or put config.json beside the model";
    const std::string kv = c.family == EncoderFamily::Llama && c.kvHeads != c.heads
                               ? " over " + std::to_string(c.kvHeads) + " key/value heads"
                               : "";
    std::printf("%s: %s, %lld layers, hidden %lld, %lld head%s%s (%s); %lld sequence(s), %lld tokens\n", a.model.c_str(),
                encoderFamilyName(c.family).c_str(), (long long)c.layers, (long long)c.hidden, (long long)c.heads,
                c.heads == 1 ? "" : "s", kv.c_str(), headsNote.c_str(), (long long)in.batch, (long long)rep->tokens);
    std::printf("all layers int8: cosine %.6f, SQNR %.2f dB, max abs error %.4g\n", rep->allQuantized.cosine,
                rep->allQuantized.sqnrDb, rep->allQuantized.maxAbsError);
    std::printf("%s, most sensitive first:\n", a.view == "all-but-one" ? "every layer int8 except" : "only this layer int8");
    std::printf("%4s  %-64s %10s %10s %12s\n", "rank", "layer", "1-cosine", "SQNR dB", "max abs err");
    for (const LayerSensitivity& l : rep->layers)
        std::printf("%4lld  %-64s %10.3e %10.2f %12.4g\n", (long long)l.rank, l.name.c_str(), 1.0 - l.cosine, l.sqnrDb,
                    l.maxAbsError);
}

}  // namespace

void addSensitivityCommand(CLI::App& app)
{
    auto a = std::make_shared<SensitivityArgs>();
    auto* cmd = app.add_subcommand(
        "sensitivity", "Rank a transformer's linear layers by how much int8 quantization of each moves the output");
    cmd->add_option("MODEL", a->model, "BERT/RoBERTa/DistilBERT, GPT-2 or Llama-family weights (file or folder), or 'demo'")->required();
    auto* tokens = cmd->add_option("--tokens", a->tokens, "token ids: whitespace-separated, one sequence per line")
                       ->check(CLI::ExistingFile);
    auto* random = cmd->add_option("--random", a->random, "one sequence of N random token ids (default 128)")
                       ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
    tokens->excludes(random);
    cmd->add_option("--heads", a->heads, "attention heads (default: config.json beside the model, else hidden/64)")
        ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
    cmd->add_option("--view", a->view, "one: only this layer int8; all-but-one: every layer int8 except this one")
        ->check(CLI::IsMember({"one", "all-but-one"}));
    cmd->add_option("--rank-by", a->rankBy, "cosine (1 - cosine) or sqnr, of the last hidden state vs float32")
        ->check(CLI::IsMember({"cosine", "sqnr"}));
    cmd->add_flag("--json", a->json, "print one JSON document on stdout");
    cmd->callback([a] { runSensitivity(*a); });
}

}  // namespace quantlens::cli
