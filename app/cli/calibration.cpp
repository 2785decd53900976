#include "calibration.h"

#include <cmath>
#include <cstdio>
#include <unistd.h>

#include "commands.h"
#include "tasks/modelhints.h"

namespace quantlens::cli {

namespace {

nlohmann::ordered_json number(double v)
{
    return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

EncoderOptions optionsFor(const std::string& modelArg, int64_t heads)
{
    const ModelHints hints = modelHints(modelArg == "demo" ? std::string() : modelArg, heads);
    if (!hints.warning.empty())
        std::fprintf(stderr, "quantlens-cli: %s\n", hints.warning.c_str());
    return hints.options;
}

}  // namespace

EncoderRunner makeCalibrationRunner(const Model& m, const std::string& modelArg, int64_t heads)
{
    auto runner = EncoderRunner::create(m, optionsFor(modelArg, heads));
    if (!runner)
        throw Failure{runner.error().oneLine() + " (calibration runs BERT-family, GPT-2 and Llama-family models)"};
    return std::move(*runner);
}

std::vector<std::vector<int64_t>> readCalibration(const std::string& tokens, const std::string& text,
                                                  const std::string& modelArg, int64_t vocab)
{
    CalibrationSource c;
    c.tokensFile = tokens;
    c.textFile = text;
    std::string described;
    auto seqs = loadCalibration(c, modelArg, vocab, &described);
    if (!seqs)
        throw Failure{seqs.error().oneLine()};
    std::fprintf(stderr, "calibration: %s\n", described.c_str());
    return std::move(*seqs);
}

void addMethodOptions(CLI::App* cmd, MethodArgs& a)
{
    cmd->add_option("--method", a.method,
                    "rtn (round to nearest), gptq (error compensation over calibration inputs) or smoothquant:ALPHA "
                    "(s = max|X|^ALPHA / max|W|^(1-ALPHA); every layer reading the same norm gets W*s and the norm "
                    "is divided by s, then round to nearest)")
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
    auto m = parseMethod(a.method);
    if (!m)
        throw CLI::ValidationError("--method", m.error().message);
    if (m->needsCalibration() && a.calibTokens.empty() && a.calibText.empty())
        throw CLI::ValidationError("--method", a.method + " needs calibration inputs: give --calib-tokens FILE or --calib-text FILE");
    if (a.actOrder && m->method != WeightMethod::Gptq)
        throw CLI::ValidationError("--act-order", "only with --method gptq");
}

void applyMethodArgs(const MethodArgs& a, const std::vector<std::string>& tensors, QuantPlan& plan)
{
    MethodSpec m = *parseMethod(a.method);
    m.gptq.actOrder = m.gptq.actOrder || a.actOrder;
    if (m.needsCalibration())
        for (const std::string& t : tensors)
            plan.methods[t] = m;
    if (!a.calibTokens.empty() || !a.calibText.empty()) {
        plan.calibration = {};
        plan.calibration.tokensFile = a.calibTokens;
        plan.calibration.textFile = a.calibText;
    }
}

PreparedPlan prepareForCli(std::shared_ptr<const Model> m, const std::string& modelArg, int64_t heads,
                           const QuantPlan& plan)
{
    const bool tty = isatty(fileno(stderr));
    std::string last;
    auto r = preparePlan(m, modelArg == "demo" ? std::string() : modelArg, optionsFor(modelArg, heads), plan,
                         [&](double f, const std::string& stage) {
                             if (tty)
                                 std::fprintf(stderr, "\r%3d%% %-60.60s", int(f * 100), stage.c_str());
                             else if (stage != last && stage != "done")
                                 std::fprintf(stderr, "%s\n", stage.c_str());
                             last = stage;
                             return true;
                         });
    if (tty)
        std::fprintf(stderr, "\n");
    if (!r) {
        std::string hint;
        if (r.error().code == "no-calibration")
            hint = " (give --calib-tokens FILE or --calib-text FILE)";
        throw Failure{r.error().oneLine() + hint};
    }
    if (plan.usesMethods())
        std::fprintf(stderr, "calibration: %s; %lld sequence(s), %lld tokens; methods took %.2f s\n",
                     r->calibration.c_str(), (long long)r->sequences, (long long)r->tokens, r->seconds);
    return std::move(*r);
}

nlohmann::ordered_json methodReport(const MethodLayerOutcome& o)
{
    nlohmann::ordered_json j;
    j["method"] = o.applied.starts_with("smoothquant (with") ? methodName(o.asked) : o.applied;
    if (!o.why.empty())
        j[o.asked.method == WeightMethod::SmoothQuant ? "not_smoothed" : "why"] = o.why;
    if (o.asked.method == WeightMethod::Gptq) {
        j["output_error"] = "weights only";
        j["rtn_output_sqnr_db"] = number(o.baselineOutputSqnrDb);
        j["output_sqnr_db"] = number(o.outputSqnrDb);
        j["gptq_loss"] = number(o.gptqLoss);
        j["dead_columns"] = o.deadColumns;
        j["fell_back_to_rtn"] = o.fellBackToRtn;
    } else if (o.why.empty() && !o.smoothScales.empty()) {
        j["output_error"] = "w8a8 per-token activations, per-channel int8 weights";
        j["unsmoothed_output_sqnr_db"] = number(o.baselineOutputSqnrDb);
        j["output_sqnr_db"] = number(o.outputSqnrDb);
        j["fold_into"] = {{"gamma", o.fold.gamma},
                          {"beta", o.fold.beta.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(o.fold.beta)},
                          {"layers", o.fold.siblings}};
        j["smooth_scales"] = o.smoothScales;
    } else if (o.why.empty()) {
        j["smoothed_with"] = o.fold.siblings.empty() ? o.applied : o.fold.siblings.front();
    }
    return j;
}

std::string methodSummary(const MethodLayerOutcome& o)
{
    if (!o.why.empty())
        return o.tensor + ": " + o.applied + " (" + methodName(o.asked) + " not applied: " + o.why + ")";
    if (o.asked.method == WeightMethod::SmoothQuant && o.smoothScales.empty())
        return o.tensor + ": " + o.applied;
    char line[320];
    const bool sq = o.asked.method == WeightMethod::SmoothQuant;
    std::snprintf(line, sizeof line, "%s: %s, layer output SQNR %.2f dB (%s %.2f dB)%s", o.tensor.c_str(),
                  o.applied.c_str(), o.outputSqnrDb, sq ? "W8A8 unsmoothed" : "round to nearest", o.baselineOutputSqnrDb,
                  sq ? (", norm " + o.fold.gamma + " divided by s").c_str() : "");
    return line;
}

}  // namespace quantlens::cli
