#include "calibration.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "runner/activationquant.h"
#include "runner/tokenizer.h"

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

std::vector<std::vector<int64_t>> readCalibrationText(const std::string& path, const std::string& modelArg)
{
    auto tok = TextTokenizer::forModel(modelArg);
    if (!tok)
        throw Failure{tok.error().oneLine()};
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Failure{path + ": cannot open text file"};
    std::stringstream ss;
    ss << in.rdbuf();
    auto seqs = tok->encodeLines(ss.str());
    if (!seqs)
        throw Failure{path + ": " + seqs.error().message};
    std::fprintf(stderr, "tokenized %s with %s\n", path.c_str(), tok->source().c_str());
    return std::move(*seqs);
}

std::vector<std::vector<int64_t>> readCalibration(const std::string& tokens, const std::string& text,
                                                  const std::string& modelArg)
{
    return text.empty() ? readCalibrationTokens(tokens) : readCalibrationText(text, modelArg);
}

void addMethodOptions(CLI::App* cmd, MethodArgs& a)
{
    cmd->add_option("--method", a.method,
                    "rtn (round to nearest), gptq (error compensation over calibration inputs) or smoothquant:ALPHA "
                    "(weights W·s, s = max|X|^ALPHA / max|W|^(1-ALPHA), then round to nearest)")
        ->capture_default_str();
    cmd->add_option("--calib-tokens", a.calibTokens, "calibration token ids for gptq/smoothquant: whitespace-separated, "
                                                     "one sequence per line")
        ->check(CLI::ExistingFile)
        ->excludes(cmd->add_option("--calib-text", a.calibText,
                                   "calibration text for gptq/smoothquant, one sequence per line, tokenized by the "
                                   "model's own tokenizer (GGUF llama vocabulary or tokenizer.model)")
                       ->check(CLI::ExistingFile));
    cmd->add_flag("--act-order", a.actOrder, "gptq: visit columns in descending Hessian diagonal (actorder=weight)");
    cmd->add_option("--heads", a.heads, "attention heads for the calibration run (default: config.json, else hidden/64)")
        ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
}

void validateMethodArgs(const MethodArgs& a)
{
    if (auto m = parseMethod(a.method); !m)
        throw CLI::ValidationError("--method", m.error().message);
    if (usesActivations(a) && a.calibTokens.empty() && a.calibText.empty())
        throw CLI::ValidationError("--method", a.method + " needs calibration inputs: give --calib-tokens FILE or --calib-text FILE");
    if (a.actOrder && a.method != "gptq")
        throw CLI::ValidationError("--act-order", "only with --method gptq");
}

bool usesActivations(const MethodArgs& a) { return a.method != "rtn"; }

namespace {

nlohmann::ordered_json number(double v)
{
    return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

}  // namespace

std::vector<MethodEntry> quantizeWithMethod(const Model& m, const std::string& modelArg,
                                            const std::vector<std::pair<std::string, QuantSpec>>& items,
                                            const MethodArgs& a)
{
    std::vector<std::string> names;
    for (const auto& it : items)
        names.push_back(it.first);
    MethodSpec method = *parseMethod(a.method);
    method.gptq.actOrder = a.actOrder;
    EncoderRunner runner = makeCalibrationRunner(m, modelArg, a.heads);
    const auto known = runner.linearNames();
    ActivationOptions opt;
    for (const std::string& n : names) {
        const std::string layer = n.ends_with(".weight") ? n.substr(0, n.size() - 7) : n;
        if (std::find(known.begin(), known.end(), layer) == known.end())
            throw Failure{"'" + n + "' is not a linear layer the " + encoderFamilyName(runner.config().family) +
                          " runner executes, so it has no calibration inputs (use --method rtn for it)"};
        opt.layers.push_back(layer);
    }
    opt.hessian = method.method == WeightMethod::Gptq;
    opt.keepRows = method.method == WeightMethod::SmoothQuant ? 512 : 0;
    const auto seqs = readCalibration(a.calibTokens, a.calibText, modelArg);
    auto rec = recordActivations(runner, seqs, opt);
    if (!rec)
        throw Failure{rec.error().oneLine()};
    std::fprintf(stderr, "calibration: %lld sequence(s), %lld tokens, %.2f s, %.1f MiB of statistics\n",
                 (long long)rec->sequences, (long long)rec->tokens, rec->seconds, double(rec->bytes) / 1048576.0);
    std::vector<MethodEntry> out;
    for (size_t i = 0; i < names.size(); ++i) {
        std::fprintf(stderr, "[%zu/%zu] %s %s\n", i + 1, names.size(), methodName(method).c_str(), names[i].c_str());
        // SmoothQuant over --all-linear: layers after attention or the MLP have no norm to
        // fold 1/s into; they are rounded to nearest, and the report says why.
        MethodSpec own = method;
        std::string why;
        if (method.method == WeightMethod::SmoothQuant)
            if (auto f = precedingNorm(runner.config(), opt.layers[i]); !f) {
                own.method = WeightMethod::Rtn;
                why = f.error().message;
            }
        auto r = quantizeWithActivations(m, runner.config(), names[i], items[i].second, own, *rec);
        if (!r)
            throw Failure{r.error().oneLine()};
        MethodEntry e;
        e.report["method"] = methodName(own);
        if (own.method == WeightMethod::Rtn) {
            e.report["not_smoothed"] = why;
            e.summary = names[i] + ": rtn (not smoothed: " + why + ")";
            e.entry = std::move(r->entry);
            out.push_back(std::move(e));
            continue;
        }
        const bool sq = method.method == WeightMethod::SmoothQuant;
        // GPTQ: weights quantized, activations float (from the Hessian); SmoothQuant: W8A8 on kept rows.
        e.report["output_error"] = sq ? "w8a8 per-token activations, per-channel int8 weights" : "weights only";
        e.report[sq ? "unsmoothed_output_sqnr_db" : "rtn_output_sqnr_db"] = number(r->rtnOutputSqnrDb);
        e.report["output_sqnr_db"] = number(r->outputSqnrDb);
        if (method.method == WeightMethod::Gptq) {
            e.report["gptq_loss"] = number(r->gptqLoss);
            e.report["dead_columns"] = r->deadColumns;
            e.report["fell_back_to_rtn"] = r->fellBackToRtn;
        }
        if (sq) {
            e.report["fold_into"] = {{"gamma", r->fold.gamma}, {"beta", r->fold.beta.empty() ? nlohmann::ordered_json(nullptr)
                                                                                               : nlohmann::ordered_json(r->fold.beta)},
                                     {"layers", r->fold.siblings}};
            e.report["smooth_scales"] = r->smoothScales;
            // The exporters write weights only: the norm stays as the file has it.
            std::fprintf(stderr, "warning: %s is exported smoothed (W*s); to run it, divide %s%s by the same "
                                 "smooth_scales (--json)\n",
                         names[i].c_str(), r->fold.gamma.c_str(), r->fold.beta.empty() ? "" : (" and " + r->fold.beta).c_str());
        }
        char line[256];
        std::snprintf(line, sizeof line, "%s: %s, layer output SQNR %.2f dB (%s %.2f dB)%s", names[i].c_str(),
                      methodName(method).c_str(), r->outputSqnrDb, sq ? "W8A8 unsmoothed" : "round to nearest",
                      r->rtnOutputSqnrDb, r->fellBackToRtn ? ", Hessian not positive definite: round to nearest" : "");
        e.summary = line;
        e.entry = std::move(r->entry);
        out.push_back(std::move(e));
    }
    return out;
}

}  // namespace quantlens::cli
