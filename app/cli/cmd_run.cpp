// quantlens-cli run: one linear layer of a model on an input from a .npy file, in float32
// (OpenBLAS) or quantized as a plan says (--plan; without it, quantize_dynamic's int8 with
// --act/--weights); writes Y.npy and reports the time and the error against float32.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "alignedarray.h"
#include "calibration.h"
#include "commands.h"
#include "io/npy.h"
#include "io/npywriter.h"
#include "kernels/gemm.h"
#include "layers.h"
#include "modelarg.h"
#include "quant/metrics.h"
#include "runner/dynamiclinear.h"
#include "runner/fp32linear.h"
#include "tasks/layerrun.h"
#include "tasks/planfile.h"

namespace quantlens::cli {

namespace {

struct RunOptions {
    std::string model, layer, input, out, mode = "int8", act = "per-tensor", weights = "per-tensor", plan;
    bool json = false;
    int64_t heads = 0;  // for a GPTQ layer's calibration run
};

nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

// The input as float32 [tokens, in]; a 1-D input of `in` values is one token.
std::vector<float> readInput(const std::string& path, int64_t in, int64_t& tokens)
{
    auto m = readNpy(path);
    if (!m)
        throw Failure{m.error().oneLine()};
    if (m->tensors.size() != 1)
        throw Failure{path + ": expected one array"};
    const Tensor& t = m->tensors.front();
    if (!(t.rank() == 2 && t.shape[1] == in) && !(t.rank() == 1 && t.shape[0] == in))
        throw Failure{path + ": input shape " + shapeString(t.shape) + " does not fit the layer: expected [tokens, " +
                      std::to_string(in) + "]"};
    tokens = t.rank() == 2 ? t.shape[0] : 1;
    if (tokens == 0)
        throw Failure{path + ": the input has no tokens"};
    auto v = t.toFloat();
    if (!v)
        throw Failure{v.error().oneLine()};
    for (float x : *v)
        if (!std::isfinite(x))
            throw Failure{path + ": the input holds NaN or infinity"};
    return std::move(v.value());
}

template <class F>
double timeOnce(const F& f)
{
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void runRun(const RunOptions& o)
{
    const Model m = loadModelArg(o.model);
    const std::vector<LinearLayer> layers = findLinearLayers(m);
    const LinearLayer* l = findLinearLayer(layers, o.layer);
    if (!l) {
        // Names that contain what was typed first ("h.0.mlp.c_fc" for GPT-2's
        // "transformer.h.0.mlp.c_fc"), else the first few.
        std::vector<const LinearLayer*> near;
        for (const LinearLayer& c : layers)
            if (c.prefix.find(o.layer) != std::string::npos)
                near.push_back(&c);
        const bool similar = !near.empty() && !o.layer.empty();
        if (!similar)
            for (const LinearLayer& c : layers)
                near.push_back(&c);
        std::string names;
        for (size_t i = 0; i < near.size() && i < 8; ++i)
            names += (i ? ", " : "") + near[i]->prefix;
        throw Failure{"no linear layer '" + o.layer + "' in " + o.model +
                      (layers.empty() ? " (it has none)"
                                      : (similar ? " (did you mean " : " (e.g. ") + names + (near.size() > 8 ? ", ..." : "") +
                                            (similar ? "?)" : ")"))};
    }
    int64_t tokens = 0;
    const std::vector<float> x = readInput(o.input, l->inFeatures, tokens);

    // The plan: a saved one, else quantize_dynamic's with the --act/--weights choices.
    QuantPlan plan = QuantPlan::quantizeDynamicPreset();
    plan.defaultSpec.granularity = o.weights == "per-channel" ? Granularity::PerChannel : Granularity::PerTensor;
    plan.activations.mode = o.act == "per-row" ? ActivationMode::DynamicPerToken : ActivationMode::DynamicPerTensor;
    if (!o.plan.empty()) {
        auto p = loadPlanFor(o.plan, m);
        if (!p)
            throw Failure{p.error().oneLine()};
        for (const std::string& w : p->warnings)
            std::fprintf(stderr, "quantlens-cli: %s\n", w.c_str());
        plan = p->session.plan();
    }
    const PlanDecision decision = plan.decide(*l->weight);
    // A GPTQ layer runs with GPTQ's integers: the plan's GPTQ for this one layer, over its
    // calibration. (SmoothQuant changes the layer's input as well, so it shows in
    // `sensitivity`, which runs the whole model.)
    const MethodSpec method = plan.methodFor(l->weight->name);
    PreparedPlan prep;
    const QuantizedTensor* given = nullptr;
    if (o.mode != "fp32" && decision.quantize && method.method == WeightMethod::Gptq) {
        QuantPlan one = plan;
        one.defaultMethod = {};
        one.methods = {{l->weight->name, method}};
        prep = prepareForCli(std::make_shared<const Model>(m), o.model, o.heads, one);
        if (auto g = prep.runnerWeights.find(l->weight->name); g != prep.runnerWeights.end())
            given = &g->second;
    } else if (o.mode != "fp32" && decision.quantize && method.method == WeightMethod::SmoothQuant) {
        std::fprintf(stderr, "quantlens-cli: %s is smoothed by the plan (%s); one layer on a given input shows only its "
                             "rounding: run `sensitivity --plan` for the smoothed model\n",
                     l->weight->name.c_str(), methodName(method).c_str());
    }
    double seconds = 0;
    AlignedVector<float> y(size_t(tokens * l->outFeatures));  // as PyTorch's outputs (alignedarray.h)
    Metrics err;
    LayerRunResult run;
    if (o.mode == "fp32") {
        auto fp = Fp32Linear::fromLayer(*l);
        if (!fp)
            throw Failure{fp.error().oneLine()};
        fp->forward(x.data(), tokens, y.data());  // warm-up
        seconds = timeOnce([&] { fp->forward(x.data(), tokens, y.data()); });
        err = computeMetrics(y, y);
    } else {
        LayerRunRequest req;
        req.input = x;
        req.timed = false;  // one call after the warm-up, as before
        req.given = given;
        auto r = runLayerUnderPlan(*l, decision, plan.activations, req);
        if (!r)
            throw Failure{r.error().oneLine()};
        run = std::move(*r);
        std::copy(run.y.begin(), run.y.end(), y.begin());
        seconds = run.quantSeconds;
        err = run.err;
    }

    if (auto s = writeNpyFile(o.out, DType::F32, {tokens, l->outFeatures}, std::as_bytes(std::span<const float>(y)),
                              {o.input, o.model});
        !s)
        throw Failure{s.error().oneLine()};

    nlohmann::json doc;
    doc["layer"] = l->prefix;
    doc["mode"] = o.mode;
    doc["tokens"] = tokens;
    doc["in_features"] = l->inFeatures;
    doc["out_features"] = l->outFeatures;
    doc["seconds"] = seconds;
    doc["max_abs_error_vs_fp32"] = err.maxAbsError;
    doc["sqnr_db_vs_fp32"] = number(err.sqnrDb);  // exact (fp32 mode) has infinite SQNR: null
    if (o.mode == "int8") {
        doc["activation_quantization"] = o.plan.empty() ? o.act : activationModeName(plan.activations.mode);
        doc["weight_quantization"] = o.plan.empty() ? o.weights : granularityName(run.spec);
        doc["scheme"] = schemeName(run.spec.scheme);
        doc["bits"] = run.spec.bits;
        doc["simulated"] = run.simulated;
        doc["method"] = given ? methodName(method) : "rtn";
        doc["isa"] = run.simulated ? run.isa : kernels::activeIsa();
        if (!o.plan.empty())
            doc["plan"] = o.plan;
    }
    if (o.json) {
        std::cout << doc.dump(1) << "\n";
        return;
    }
    std::printf("%s (%lld -> %lld%s), %lld tokens, %s%s: %.1f us\n", l->prefix.c_str(),
                static_cast<long long>(l->inFeatures), static_cast<long long>(l->outFeatures),
                l->transposed() ? ", stored [in, out]" : "", static_cast<long long>(tokens), o.mode.c_str(),
                o.mode == "int8" ? (" (" + schemeName(run.spec.scheme) + " " + granularityName(run.spec) + " weights, " +
                                     activationModeName(plan.activations.mode) + " activations, " + run.isa + ")")
                                       .c_str()
                                 : "",
                seconds * 1e6);
    std::printf("vs fp32: max abs error %.6g, SQNR %s dB\nwrote %s [%lld, %lld] float32\n", err.maxAbsError,
                std::isfinite(err.sqnrDb) ? std::to_string(err.sqnrDb).c_str() : "inf", o.out.c_str(),
                static_cast<long long>(tokens), static_cast<long long>(l->outFeatures));
}

}  // namespace

void addRunCommand(CLI::App& app)
{
    auto o = std::make_shared<RunOptions>();
    auto* cmd = app.add_subcommand("run", "Run one linear layer in float32 or int8 on an input .npy");
    cmd->add_option("MODEL", o->model, "model file or folder, or 'demo'")->required();
    cmd->add_option("--layer", o->layer, "layer prefix (or its weight's name)")->required();
    cmd->add_option("--input", o->input, "float .npy of shape [tokens, in_features]")->required();
    cmd->add_option("--mode", o->mode, "fp32 (OpenBLAS) or int8 (dynamic quantization)")
        ->check(CLI::IsMember({"fp32", "int8"}));
    cmd->add_option("--act", o->act, "int8 activation quantization: per-tensor (PyTorch) or per-row")
        ->check(CLI::IsMember({"per-tensor", "per-row"}));
    cmd->add_option("--weights", o->weights,
                    "int8 weight scales: per-tensor (quantize_dynamic's default) or per-channel "
                    "(its per_channel_dynamic_qconfig)")
        ->check(CLI::IsMember({"per-tensor", "per-channel"}));
    cmd->add_option("--out", o->out, "output .npy, float32 [tokens, out_features]")->required();
    cmd->add_option("--heads", o->heads, "attention heads for a GPTQ layer's calibration run (default: config.json, else hidden/64)")
        ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
    cmd->add_option("--plan", o->plan, "a saved plan (session file): the layer's spec and the plan's activations "
                                       "instead of --act/--weights")
        ->check(CLI::ExistingFile);
    cmd->add_flag("--json", o->json, "print one JSON document on stdout");
    cmd->callback([o] { runRun(*o); });
}

}  // namespace quantlens::cli
