// quantlens-cli activations: runs calibration tokens through a transformer and prints, per
// linear layer, its input's per-channel statistics and outlier channels (|x| > 6, as
// LLM.int8 flags them), beside the weight's column maxima (the SmoothQuant picture), and
// with --smoothquant the W8A8 output error as SmoothQuant's alpha moves.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <unistd.h>
#include <vector>

#include "calibration.h"
#include "commands.h"
#include "modelarg.h"
#include "quant/smoothquant.h"
#include "runner/actstats.h"

namespace quantlens::cli {

namespace {

struct ActivationsArgs {
    std::string model;
    std::string tokens;
    std::string text;
    std::vector<std::string> layers;
    int64_t heads = 0;
    double threshold = 6.0;
    bool smoothquant = false;
    bool json = false;
};

using ojson = nlohmann::ordered_json;
ojson number(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }

ojson floats(const std::vector<float>& v)
{
    ojson a = ojson::array();
    for (float x : v)
        a.push_back(number(double(x)));
    return a;
}

constexpr double kAlphas[] = {0.0, 0.25, 0.5, 0.75, 1.0};

void runActivations(const ActivationsArgs& a)
{
    const Model m = loadModelArg(a.model);
    EncoderRunner runner = makeCalibrationRunner(m, a.model, a.heads);
    const auto seqs = readCalibration(a.tokens, a.text, a.model, runner.config().vocab);
    ActivationOptions opt;
    opt.layers = a.layers;
    opt.hessian = false;  // GPTQ's; not shown here
    opt.keepRows = a.smoothquant ? 512 : 0;
    ActivationProgress progress;
    if (isatty(fileno(stderr)))
        progress = [](int64_t done, int64_t total) {
            std::fprintf(stderr, "\ractivations: %lld/%lld sequences%s", (long long)done, (long long)total,
                         done == total ? "\n" : "");
            return true;
        };
    auto rec = recordActivations(runner, seqs, opt, progress);
    if (!rec)
        throw Failure{rec.error().oneLine()};

    ojson doc;
    doc["model"] = a.model;
    doc["family"] = encoderFamilyName(runner.config().family);
    doc["sequences"] = rec->sequences;
    doc["tokens"] = rec->tokens;
    doc["seconds"] = rec->seconds;
    doc["bytes"] = rec->bytes;
    doc["outlier_threshold"] = a.threshold;
    ojson layers = ojson::array();
    if (!a.json)
        std::printf("%s: %s, %lld sequence(s), %lld real tokens, %.3f s, %.1f MiB of statistics\n", a.model.c_str(),
                    encoderFamilyName(runner.config().family).c_str(), (long long)rec->sequences,
                    (long long)rec->tokens, rec->seconds, double(rec->bytes) / 1048576.0);
    for (const LayerActivationStats& entry : rec->layers) {
        const LayerActivationStats& s = *rec->find(entry.name);
        auto lw = readLinearWeight(m, entry.name);
        if (!lw)
            throw Failure{lw.error().oneLine()};
        const std::vector<float> wmax = weightColumnAbsMax({lw->w}, lw->in);
        const std::vector<int64_t> outliers = s.outlierChannels(float(a.threshold));
        ojson j;
        j["name"] = entry.name;
        if (!entry.sharedWith.empty())
            j["input_shared_with"] = entry.sharedWith;
        j["in_features"] = s.inFeatures;
        j["out_features"] = lw->out;
        j["tokens"] = s.tokens;
        j["range"] = {number(s.overallMin()), number(s.overallMax())};
        j["min"] = floats(s.min);
        j["max"] = floats(s.max);
        j["absmax"] = floats(s.absMax);
        j["weight_column_absmax"] = floats(wmax);
        j["outlier_channels"] = outliers;
        j["histogram"] = {{"lo", s.histogram.lo}, {"hi", s.histogram.hi}, {"counts", s.histogram.counts}};
        std::vector<SmoothQuantPoint> sweep;
        double noSmoothing = 0;
        if (a.smoothquant && s.keptRows > 0) {
            auto pts = smoothQuantSweep(s.rows, s.keptRows, lw->w, lw->out, lw->in, s.absMax,
                                        std::vector<double>(std::begin(kAlphas), std::end(kAlphas)));
            auto base = w8a8OutputSqnrDb(s.rows, s.keptRows, lw->w, lw->out, lw->in, {});
            if (!pts || !base)
                throw Failure{(pts ? base.error() : pts.error()).oneLine()};
            sweep = *pts;
            noSmoothing = *base;
            ojson sj = ojson::array();
            for (const SmoothQuantPoint& p : sweep)
                sj.push_back({{"alpha", p.alpha}, {"w8a8_output_sqnr_db", number(p.sqnrDb)}});
            j["smoothquant"] = {{"rows", s.keptRows}, {"no_smoothing_w8a8_output_sqnr_db", number(noSmoothing)},
                                {"sweep", sj}};
        }
        layers.push_back(std::move(j));
        if (a.json)
            continue;

        // The channels that matter first: largest absmax.
        std::vector<int64_t> order(size_t(s.inFeatures));
        std::iota(order.begin(), order.end(), 0);
        const size_t top = std::min<size_t>(order.size(), 8);
        std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(top), order.end(),
                          [&](int64_t x, int64_t y) { return s.absMax[size_t(x)] > s.absMax[size_t(y)]; });
        std::vector<float> sorted = s.absMax;
        std::nth_element(sorted.begin(), sorted.begin() + std::ptrdiff_t(sorted.size() / 2), sorted.end());
        const float median = sorted.empty() ? 0.0f : sorted[sorted.size() / 2];
        std::printf("\n%s  [%lld -> %lld]%s%s  range [%.4g, %.4g], median channel absmax %.4g, %zu outlier channel%s "
                    "(|x| > %g)\n",
                    entry.name.c_str(), (long long)s.inFeatures, (long long)lw->out,
                    entry.sharedWith.empty() ? "" : "  input of ", entry.sharedWith.c_str(), double(s.overallMin()),
                    double(s.overallMax()), double(median), outliers.size(), outliers.size() == 1 ? "" : "s",
                    a.threshold);
        std::printf("  %8s %12s %12s %12s %12s\n", "channel", "min", "max", "absmax", "w col absmax");
        for (size_t k = 0; k < top; ++k) {
            const size_t c = size_t(order[k]);
            std::printf("  %8zu %12.5g %12.5g %12.5g %12.5g%s\n", c, double(s.min[c]), double(s.max[c]),
                        double(s.absMax[c]), double(wmax[c]), s.absMax[c] > float(a.threshold) ? "  outlier" : "");
        }
        if (!sweep.empty()) {
            std::printf("  W8A8 output SQNR: no smoothing %.2f dB", noSmoothing);
            for (const SmoothQuantPoint& p : sweep)
                std::printf(", alpha %.2f %.2f dB", p.alpha, p.sqnrDb);
            std::printf("\n");
        }
    }
    if (a.json) {
        doc["layers"] = std::move(layers);
        std::cout << doc.dump() << "\n";
    }
}

}  // namespace

void addActivationsCommand(CLI::App& app)
{
    auto a = std::make_shared<ActivationsArgs>();
    auto* cmd = app.add_subcommand("activations",
                                   "Per-channel statistics and outlier channels of every linear layer's input over "
                                   "calibration tokens");
    cmd->add_option("MODEL", a->model, "BERT/RoBERTa/DistilBERT, GPT-2 or Llama-family weights (file or folder), or 'demo'")
        ->required();
    auto* tokens = cmd->add_option("--calib-tokens", a->tokens, "token ids: whitespace-separated, one sequence per line")
                       ->check(CLI::ExistingFile);
    auto* text = cmd->add_option("--calib-text", a->text,
                                 "plain text, one sequence per line, tokenized by the model's own tokenizer (GGUF "
                                 "llama vocabulary or a SentencePiece tokenizer.model beside the weights)")
                     ->check(CLI::ExistingFile);
    tokens->excludes(text);
    cmd->add_option("--layer", a->layers, "only layers whose name starts with PREFIX; repeat for more")
        ->allow_extra_args(false);
    cmd->add_option("--heads", a->heads, "attention heads (default: config.json beside the model, else hidden/64)")
        ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
    cmd->add_option("--outlier-threshold", a->threshold, "a channel is an outlier when some |x| exceeds this")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cmd->add_flag("--smoothquant", a->smoothquant,
                  "also the W8A8 output SQNR (per-token int8 activations, per-channel int8 weights) for "
                  "SmoothQuant alpha 0, 0.25, 0.5, 0.75, 1, over the first 512 real tokens");
    cmd->add_flag("--json", a->json, "print one JSON document on stdout");
    cmd->callback([a] {
        if (a->tokens.empty() == a->text.empty())
            throw CLI::ValidationError("activations", "give --calib-tokens FILE or --calib-text FILE");
        runActivations(*a);
    });
}

}  // namespace quantlens::cli
