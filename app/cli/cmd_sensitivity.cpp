#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "calibration.h"
#include "io/atomicfile.h"
#include "plan/session.h"
#include "commands.h"
#include "modelarg.h"
#include "runner/encoder.h"
#include "runner/sensitivity.h"
#include "tasks/modelhints.h"
#include "tasks/modelrun.h"
#include "tasks/planfile.h"
#include "tasks/staticranges.h"

namespace quantlens::cli {

namespace {

struct SensitivityArgs {
    std::string model;
    std::string tokens;
    std::string calibTokens, calibText;  // over the plan's calibration, for its GPTQ/SmoothQuant
    std::string actCalib = "minmax";     // static activations: the calibrator of missing ranges
    int64_t random = 0;
    int64_t heads = 0;
    std::string view = "one";
    std::string rankBy = "cosine";
    std::string plan;
    std::string preset = "quantize-dynamic";
    std::string act;
    std::string savePlan;  // the evaluated plan, with the ranges calibrated here, as a session file
    bool json = false;
};

// JSON has no inf/nan: an exact layer's SQNR becomes null.
nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

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
    return randomEncoderInput(1, a.random > 0 ? a.random : kDefaultEvalTokens, c.vocab);
}

// The plan to evaluate: a saved one (--plan), else a preset, with --act on top.
Session planFor(const SensitivityArgs& a, const Model& m)
{
    Session plan;
    plan.plan() = a.preset == "default" ? QuantPlan{} : QuantPlan::quantizeDynamicPreset();
    if (!a.plan.empty()) {
        auto p = loadPlanFor(a.plan, m);
        if (!p)
            throw Failure{p.error().oneLine()};
        for (const std::string& w : p->warnings)
            std::fprintf(stderr, "quantlens-cli: %s\n", w.c_str());
        plan = std::move(p->session);
    }
    if (!a.act.empty()) {
        auto mode = parseActivationMode(a.act);
        if (!mode)
            throw Failure{mode.error().message};
        plan.activations.mode = *mode;
    }
    return plan;
}

// --save-plan: what was evaluated, so `quantize --plan` exports it (a static plan's ranges
// included). Calibration files are made absolute: a session names them relative to itself.
void savePlan(const SensitivityArgs& a, const Model& m, Session s)
{
    if (Status st = checkNotAnInput(a.savePlan, m.files); !st)
        throw Failure{"--save-plan: " + st.error().oneLine()};
    s.modelPath = m.files.empty() ? a.model : m.files.front();
    s.modelTensors = int64_t(m.tensors.size());
    s.modelFingerprint = modelFingerprint(m);
    for (std::string* f : {&s.calibration.tokensFile, &s.calibration.textFile})
        if (!f->empty())
            *f = std::filesystem::absolute(*f).string();
    if (Status st = saveSession(a.savePlan, s); !st)
        throw Failure{"--save-plan: " + st.error().oneLine()};
    std::fprintf(stderr, "saved the plan (activations %s, %zu static range%s) to %s\n",
                 activationModeName(s.activations.mode).c_str(), s.activationRanges.size(),
                 s.activationRanges.size() == 1 ? "" : "s", a.savePlan.c_str());
}

void runSensitivity(const SensitivityArgs& a)
{
    const auto source = std::make_shared<const Model>(loadModelArg(a.model));
    const ModelHints hints = modelHints(a.model, a.heads);
    if (!hints.warning.empty())
        std::fprintf(stderr, "quantlens-cli: %s\n", hints.warning.c_str());
    Session session = planFor(a, *source);
    QuantPlan& plan = session.plan();
    if (!a.calibTokens.empty() || !a.calibText.empty()) {
        plan.calibration = {};
        plan.calibration.tokensFile = a.calibTokens;
        plan.calibration.textFile = a.calibText;
    }
    // GPTQ / SmoothQuant run first; the model then evaluated is the plan's (smoothed) one.
    const PreparedPlan prep = prepareForCli(source, a.model, a.heads, plan);
    const Model& m = *prep.model;
    if (plan.activations.mode == ActivationMode::Static) {
        // Ranges the plan lacks are calibrated now, on the (smoothed) float model.
        StaticRangeOptions so;
        if (Status s = parseCalib(a.actCalib, so.calibrator); !s)
            throw Failure{"--act-calib: " + s.error().message};
        auto ranges = calibrateActivationRanges(prep.model, a.model == "demo" ? std::string() : a.model, hints.options,
                                                plan, so);
        if (!ranges)
            throw Failure{ranges.error().oneLine() +
                          (ranges.error().code == "no-calibration" ? " (give --calib-tokens FILE or --calib-text FILE)" : "")};
        for (const auto& [name, r] : *ranges)
            plan.activationRanges.try_emplace(name, r);
    }
    if (!a.savePlan.empty())
        savePlan(a, *source, session);
    auto runner = EncoderRunner::create(m, hints.options);
    if (!runner)
        throw Failure{runner.error().oneLine()};
    const EncoderConfig& c = runner->config();
    // The weights' shapes do not tell the head count, and a wrong one changes every
    // attention: say where it came from, and when it is only a guess.
    const std::string headsFrom = headsSource(hints, c, a.heads);
    const EncoderInput in = loadInput(a, c);

    ModelRunRequest req;
    req.view = a.view == "all-but-one" ? SensitivityView::AllButOne : SensitivityView::OneQuantized;
    req.rankBy = a.rankBy == "sqnr" ? SensitivityMetric::Sqnr : SensitivityMetric::Cosine;
    // A live counter on a terminal only; logs and pipes get nothing.
    if (isatty(fileno(stderr)))
        req.progress = [](int64_t done, int64_t total) {
            std::fprintf(stderr, "\rsensitivity: %lld/%lld forward passes%s", (long long)done, (long long)total,
                         done == total ? "\n" : "");
            return true;
        };
    auto run = runModelUnderPlan(*runner, m, plan, in, req, &prep);
    if (!run)
        throw Failure{run.error().oneLine()};
    const SensitivityReport* rep = &run->sensitivity;
    const PlanFigure& pf = rep->plan;

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
    nlohmann::json planDoc = {{"source", a.plan.empty() ? "preset " + a.preset : a.plan},
                               {"activations", activationModeName(plan.activations.mode)},
                               {"cosine", number(pf.hidden.cosine)},
                               {"sqnr_db", number(pf.hidden.sqnrDb)},
                               {"max_abs_error", number(pf.hidden.maxAbsError)},
                               {"min_token_cosine", number(pf.hidden.minTokenCosine)},
                               {"quantized_layers", pf.quantizedLayers},
                               {"simulated_layers", pf.simulatedLayers},
                               {"kept_float_layers", pf.keptLayers}};
    if (pf.next.valid) {
        planDoc["kld_mean"] = number(pf.next.meanKld);
        planDoc["kld_max"] = number(pf.next.maxKld);
        planDoc["top1_agreement"] = number(pf.next.top1Agreement);
    }
    if (plan.usesMethods()) {
        planDoc["calibration"] = prep.calibration;
        nlohmann::json methods = nlohmann::json::array();
        for (const MethodLayerOutcome& o : prep.layers)
            methods.push_back(nlohmann::json::parse(methodReport(o).dump()));
        planDoc["methods"] = std::move(methods);
    }
    doc["plan"] = std::move(planDoc);
    nlohmann::json layers = nlohmann::json::array();
    for (const LayerSensitivity& l : rep->layers)
        layers.push_back({{"name", l.name},
                          {"rank", l.rank},
                          {"scheme", schemeName(run->layers[size_t(l.index)].decision.spec.scheme)},
                          {"granularity", granularityName(run->layers[size_t(l.index)].decision.spec)},
                          {"simulated", run->layers[size_t(l.index)].simulated},
                          {"method", run->layers[size_t(l.index)].method},
                          {"cosine", number(l.cosine)},
                          {"sqnr_db", number(l.sqnrDb)},
                          {"max_abs_error", number(l.maxAbsError)}});
    doc["layers"] = std::move(layers);
    if (a.json) {
        std::cout << doc.dump(1) << "\n";
        return;
    }
    const std::string headsNote = !headsAreGuessed(headsFrom) ? headsFrom
                                  : a.model == "demo"        ? "hidden / 64"
                                                             : "hidden / 64, a guess: give --heads or put config.json beside the model";
    const std::string kv = c.family == EncoderFamily::Llama && c.kvHeads != c.heads
                               ? " over " + std::to_string(c.kvHeads) + " key/value heads"
                               : "";
    std::printf("%s: %s, %lld layers, hidden %lld, %lld head%s%s (%s); %lld sequence(s), %lld tokens\n", a.model.c_str(),
                encoderFamilyName(c.family).c_str(), (long long)c.layers, (long long)c.hidden, (long long)c.heads,
                c.heads == 1 ? "" : "s", kv.c_str(), headsNote.c_str(), (long long)in.batch, (long long)rep->tokens);
    std::printf("plan (%s; %lld layers quantized, %lld simulated, %lld kept float32; activations %s): cosine %.6f, "
                "SQNR %.2f dB, max abs error %.4g\n",
                a.plan.empty() ? ("preset " + a.preset).c_str() : a.plan.c_str(), (long long)pf.quantizedLayers,
                (long long)pf.simulatedLayers, (long long)pf.keptLayers, activationModeName(plan.activations.mode).c_str(),
                pf.hidden.cosine, pf.hidden.sqnrDb, pf.hidden.maxAbsError);
    if (pf.next.valid)
        std::printf("next token vs float32: KL divergence mean %.4g, max %.4g nats; top-1 agreement %.2f%%\n",
                    pf.next.meanKld, pf.next.maxKld, 100.0 * pf.next.top1Agreement);
    std::printf("all layers quantized: cosine %.6f, SQNR %.2f dB, max abs error %.4g\n", rep->allQuantized.cosine,
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
    auto* plan = cmd->add_option("--plan", a->plan, "a saved plan (session file): each layer as it says")
                     ->check(CLI::ExistingFile);
    auto* preset = cmd->add_option("--preset", a->preset,
                                   "without --plan: quantize-dynamic (PyTorch's quantize_dynamic, per-tensor weights) or "
                                   "default (the window's default plan: per-channel weights)")
                       ->check(CLI::IsMember({"quantize-dynamic", "default"}))
                       ->capture_default_str();
    plan->excludes(preset);
    cmd->add_option("--act", a->act, "activations: per-tensor (dynamic, as quantize_dynamic), per-token, static (calibrated ranges) or none (weight-only)")
        ->check(CLI::IsMember({"per-tensor", "per-token", "static", "none"}));
    cmd->add_option("--calib-tokens", a->calibTokens, "calibration token ids for the plan's GPTQ/SmoothQuant layers "
                                                      "(over the plan's own calibration)")
        ->check(CLI::ExistingFile)
        ->excludes(cmd->add_option("--calib-text", a->calibText, "calibration text for the plan's GPTQ/SmoothQuant layers, "
                                                                 "one sequence per line (the model's tokenizer)")
                       ->check(CLI::ExistingFile));
    cmd->add_option("--act-calib", a->actCalib, "static activations: the calibrator of the layers' input ranges the plan "
                                                "lacks (minmax|percentile:P|mse|entropy|hist-l2)")
        ->capture_default_str();
    cmd->add_option("--save-plan", a->savePlan, "write the evaluated plan as a session file, with the static ranges "
                                                "calibrated here (for quantize --plan)");
    cmd->add_flag("--json", a->json, "print one JSON document on stdout");
    cmd->callback([a] { runSensitivity(*a); });
}

}  // namespace quantlens::cli
