#include "tasks/methodprep.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <span>
#include <sstream>

#include "quant/smoothquant.h"
#include "runner/activationquant.h"
#include "runner/actstats.h"
#include "runner/tokenizer.h"

namespace quantlens {

namespace {

Result<std::string> readText(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return makeError("open-failed", "cannot open calibration file", path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct PlannedLayer {
    int64_t index = 0;
    std::string layer, tensor;
    QuantSpec spec;
    MethodSpec method;
};

// [out, in] -> the model's stored layout, and the stored tensor replaced by those floats.
Status replaceWeight(Model& m, const std::string& tensor, const std::vector<float>& outIn, int64_t out, int64_t in,
                     bool storedInOut)
{
    const Tensor* old = m.find(tensor);
    if (!old)
        return makeError("no-such-tensor", "missing from the model", {}, -1, tensor);
    std::vector<float> stored = outIn;
    if (storedInOut)
        for (int64_t r = 0; r < out; ++r)
            for (int64_t c = 0; c < in; ++c)
                stored[size_t(c * out + r)] = outIn[size_t(r * in + c)];
    Tensor t = makeFloatTensor(tensor, old->shape, std::move(stored));
    t.role = old->role;
    t.layout = old->layout;  // GPT-2's Conv1D stays [in, out]
    t.note = "smoothed by the plan (SmoothQuant)";
    for (Tensor& x : m.tensors)
        if (x.name == tensor)
            x = std::move(t);
    return Ok{};
}

Status replaceVector(Model& m, const std::string& tensor, std::span<const float> s)
{
    const Tensor* old = m.find(tensor);
    if (!old)
        return makeError("no-such-tensor", "the norm to fold SmoothQuant's scales into is missing", {}, -1, tensor);
    auto v = old->toFloat();
    if (!v)
        return v.error();
    if (v->size() != s.size())
        return makeError("bad-shape", "the norm has " + std::to_string(v->size()) + " values for " +
                                          std::to_string(s.size()) + " smoothing scales", {}, -1, tensor);
    divideByScales(*v, s);
    Tensor t = makeFloatTensor(tensor, old->shape, std::move(*v));
    t.role = old->role;
    t.note = "divided by SmoothQuant's scales (plan)";
    for (Tensor& x : m.tensors)
        if (x.name == tensor)
            x = std::move(t);
    return Ok{};
}

}  // namespace

Result<std::vector<std::vector<int64_t>>> loadCalibration(const CalibrationSource& c, const std::string& modelPath,
                                                          int64_t vocab, std::string* described)
{
    std::vector<std::vector<int64_t>> seqs;
    if (described)
        *described = c.describe();
    if (!c.tokens.empty()) {
        seqs = c.tokens;
    } else if (!c.tokensFile.empty()) {
        auto text = readText(c.tokensFile);
        if (!text)
            return text.error();
        auto parsed = parseTokenText(*text);
        if (!parsed)
            return makeError(parsed.error().code, parsed.error().message, c.tokensFile);
        seqs = std::move(*parsed);
    } else if (!c.textFile.empty()) {
        auto tok = TextTokenizer::forModel(modelPath);
        if (!tok)
            return tok.error();
        auto text = readText(c.textFile);
        if (!text)
            return text.error();
        auto enc = tok->encodeLines(*text);
        if (!enc)
            return makeError(enc.error().code, enc.error().message, c.textFile);
        seqs = std::move(*enc);
        if (described)
            *described += ", tokenized with " + tok->source();
    } else if (c.randomTokens > 0) {
        seqs.push_back(randomEncoderInput(1, c.randomTokens, vocab).ids);
    } else {
        return makeError("no-calibration", "the plan's GPTQ/SmoothQuant layers and static activation ranges need calibration tokens, and it names none");
    }
    if (seqs.empty())
        return makeError("no-calibration", "the calibration input holds no tokens");
    for (const auto& s : seqs)
        for (int64_t id : s)
            if (id < 0 || id >= vocab)
                return makeError("bad-token", "calibration token id " + std::to_string(id) +
                                                  " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    return seqs;
}

Result<PreparedPlan> preparePlan(std::shared_ptr<const Model> m, const std::string& modelPath, const EncoderOptions& eo,
                                 const QuantPlan& plan, const PrepareProgress& progress)
{
    const auto t0 = std::chrono::steady_clock::now();
    PreparedPlan out;
    out.model = m;
    if (!plan.usesMethods())
        return out;
    auto cancelled = [] { return makeError("cancelled", "cancelled"); };
    auto report = [&](double f, const std::string& stage) { return !progress || progress(f, stage); };

    auto runner = EncoderRunner::create(*m, eo);
    if (!runner)
        return runner.error();
    // The layers the plan quantizes with a method; a method on a layer the runner does not
    // execute has no calibration inputs.
    std::vector<PlannedLayer> smooth, gptq;
    const std::vector<std::string> names = runner->linearNames();
    std::set<std::string> runnerTensors;
    for (int64_t i = 0; i < int64_t(names.size()); ++i) {
        PlannedLayer p{i, names[size_t(i)], runner->weightName(i), {}, {}};
        runnerTensors.insert(p.tensor);
        const Tensor* t = m->find(p.tensor);
        if (!t)
            return makeError("no-such-tensor", "the runner's layer has no weight tensor in the model", {}, -1, p.tensor);
        const PlanDecision d = plan.decide(*t);
        p.method = plan.methodFor(p.tensor);
        if (!d.quantize || !p.method.needsCalibration())
            continue;
        p.spec = d.spec;
        (p.method.method == WeightMethod::SmoothQuant ? smooth : gptq).push_back(std::move(p));
    }
    for (const auto& [name, method] : plan.methods)
        if (method.needsCalibration() && !runnerTensors.count(name) && !plan.keepFloat.count(name))
            return makeError("no-calibration-inputs",
                             "is not a linear layer the " + encoderFamilyName(runner->config().family) +
                                 " runner executes, so " + methodName(method) + " has no calibration inputs for it",
                             {}, -1, name);
    auto seqs = loadCalibration(plan.calibration, modelPath, runner->config().vocab, &out.calibration);
    if (!seqs)
        return seqs.error();
    const std::vector<std::vector<int64_t>>& calibration = *seqs;
    for (const auto& s : calibration) {
        out.sequences += 1;
        out.tokens += int64_t(s.size());
    }

    // 1. SmoothQuant: one s per norm, from the input's absmax and every reader's weights.
    Model smoothedModel = *m;
    if (!smooth.empty()) {
        if (!report(0.0, "recording activations for SmoothQuant"))
            return cancelled();
        ActivationOptions ao;
        for (const PlannedLayer& p : smooth)
            ao.layers.push_back(p.layer);
        ao.hessian = false;
        ao.keepRows = 512;
        auto rec = recordActivations(*runner, calibration, ao, [&](int64_t done, int64_t total) {
            return report(0.3 * double(done) / double(std::max<int64_t>(total, 1)), "recording activations for SmoothQuant");
        });
        if (!rec)
            return rec.error();
        std::set<std::string> foldedNorms;
        for (const PlannedLayer& p : smooth) {
            MethodLayerOutcome o;
            o.tensor = p.tensor;
            o.layer = p.layer;
            o.asked = p.method;
            auto fold = precedingNorm(runner->config(), p.layer);
            if (!fold) {
                o.applied = "rtn";
                o.why = fold.error().message;
                out.layers.push_back(std::move(o));
                continue;
            }
            o.fold = *fold;
            const LayerActivationStats* st = rec->find(p.layer);
            if (!st || st->tokens == 0)
                return makeError("no-calibration", "no calibration activations were recorded for this layer", {}, -1,
                                 p.tensor);
            // Siblings share the norm's output, so one s serves all: the first layer of the
            // group that asks for smoothing sets α; the others are smoothed with it.
            if (foldedNorms.count(fold->gamma)) {
                o.applied = "smoothquant (with " + fold->siblings.front() + ", sharing its norm)";
                out.layers.push_back(std::move(o));
                continue;
            }
            foldedNorms.insert(fold->gamma);
            std::vector<LinearWeight> sibs;
            for (const std::string& s : fold->siblings) {
                auto w = readLinearWeight(*m, s);
                if (!w)
                    return w.error();
                if (w->in != st->inFeatures)
                    return makeError("bad-shape", "'" + s + "' reads the same norm but has another input width", {}, -1,
                                     p.tensor);
                sibs.push_back(std::move(*w));
            }
            std::vector<std::span<const float>> spans;
            for (const LinearWeight& w : sibs)
                spans.emplace_back(w.w);
            o.smoothScales = smoothQuantScales(st->absMax, weightColumnAbsMax(spans, st->inFeatures), p.method.alpha);
            const LinearWeight* own = nullptr;
            for (size_t k = 0; k < sibs.size(); ++k)
                if (fold->siblings[k] == p.layer)
                    own = &sibs[k];
            if (own && st->keptRows > 0) {
                auto before = w8a8OutputSqnrDb(st->rows, st->keptRows, own->w, own->out, own->in, {});
                auto after = w8a8OutputSqnrDb(st->rows, st->keptRows, own->w, own->out, own->in, o.smoothScales);
                if (!before || !after)
                    return (before ? after : before).error();
                o.baselineOutputSqnrDb = *before;
                o.outputSqnrDb = *after;
            } else {
                o.baselineOutputSqnrDb = o.outputSqnrDb = std::numeric_limits<double>::quiet_NaN();
            }
            for (size_t k = 0; k < sibs.size(); ++k) {
                LinearWeight& w = sibs[k];
                scaleWeightColumns(w.w, w.out, w.in, o.smoothScales);
                const std::string name = fold->siblings[k] + ".weight";
                if (Status s = replaceWeight(smoothedModel, name, w.w, w.out, w.in, w.storedInOut); !s)
                    return s.error();
                out.replaced.push_back(name);
            }
            for (const std::string& norm : {fold->gamma, fold->beta})
                if (!norm.empty()) {
                    if (Status s = replaceVector(smoothedModel, norm, o.smoothScales); !s)
                        return s.error();
                    out.replaced.push_back(norm);
                }
            o.applied = methodName(p.method);
            out.layers.push_back(std::move(o));
        }
        out.model = std::make_shared<const Model>(std::move(smoothedModel));
        runner = EncoderRunner::create(*out.model, eo);  // GPTQ calibrates on the smoothed model
        if (!runner)
            return runner.error();
    }

    // 2. GPTQ on the (smoothed) model's inputs, one Hessian per layer, block after block as
    // llm-compressor's sequential pipeline does: a block's inputs come from the blocks before
    // it computing with their GPTQ weights (activations float), so each layer's error
    // compensation sees the inputs the quantized model will give it.
    if (!gptq.empty()) {
        const double base = smooth.empty() ? 0.0 : 0.3;
        ActivationSpec weightOnly;
        weightOnly.mode = ActivationMode::None;
        if (Status s = runner->setActivations(weightOnly); !s)
            return s.error();
        std::map<int64_t, std::vector<const PlannedLayer*>> byBlock;  // -1 (none) first
        for (const PlannedLayer& p : gptq)
            byBlock[runner->blockOf(p.index)].push_back(&p);
        size_t done = 0;
        for (const auto& [block, layers] : byBlock) {
            const std::string stage = "recording activations for GPTQ" +
                                      (block >= 0 ? " (block " + std::to_string(block) + ")" : std::string());
            const double at = base + (1.0 - base) * double(done) / double(gptq.size());
            const double share = (1.0 - base) * double(layers.size()) / double(gptq.size());
            if (!report(at, stage))
                return cancelled();
            ActivationOptions ao;
            for (const PlannedLayer* p : layers)
                ao.layers.push_back(p->layer);
            ao.hessian = true;
            auto rec = recordActivations(*runner, calibration, ao, [&](int64_t d, int64_t total) {
                return report(at + 0.5 * share * double(d) / double(std::max<int64_t>(total, 1)), stage);
            });
            if (!rec)
                return rec.error();
            for (size_t k = 0; k < layers.size(); ++k) {
                const PlannedLayer& p = *layers[k];
                if (!report(at + share * (0.5 + 0.5 * double(k) / double(layers.size())), "GPTQ " + p.tensor))
                    return cancelled();
                auto r = quantizeWithActivations(*out.model, runner->config(), p.tensor, p.spec, p.method, *rec);
                if (!r)
                    return r.error();
                MethodLayerOutcome o;
                o.tensor = p.tensor;
                o.layer = p.layer;
                o.asked = p.method;
                o.applied = r->fellBackToRtn ? "rtn" : methodName(p.method);
                if (r->fellBackToRtn)
                    o.why = "the Hessian is not positive definite even damped: rounded to nearest, as llm-compressor does";
                o.baselineOutputSqnrDb = r->rtnOutputSqnrDb;
                o.outputSqnrDb = r->outputSqnrDb;
                o.gptqLoss = r->gptqLoss;
                o.deadColumns = r->deadColumns;
                o.fellBackToRtn = r->fellBackToRtn;
                out.layers.push_back(std::move(o));
                // The later blocks calibrate on this layer's GPTQ weights.
                if (Status s = runner->setGivenWeights(p.index, r->outIn); !s)
                    return s.error();
                if (Status s = runner->setQuantized(p.index, true, &p.spec); !s)
                    return s.error();
                out.runnerWeights[p.tensor] = std::move(r->outIn);
                out.entries[p.tensor] = std::move(r->entry);
            }
            done += layers.size();
        }
    }
    report(1.0, "done");
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
}

Result<std::optional<QuantizedTensor>> layerMethodWeights(std::shared_ptr<const Model> m, const std::string& modelPath,
                                                          const EncoderOptions& eo, const QuantPlan& plan,
                                                          const std::string& tensor, const PrepareProgress& progress)
{
    const MethodSpec method = plan.methodFor(tensor);
    const Tensor* t = m->find(tensor);
    if (!t || method.method != WeightMethod::Gptq || !plan.decide(*t).quantize)
        return std::optional<QuantizedTensor>();
    QuantPlan one = plan;
    one.defaultMethod = {};
    one.methods = {{tensor, method}};
    auto prep = preparePlan(std::move(m), modelPath, eo, one, progress);
    if (!prep)
        return prep.error();
    auto it = prep->runnerWeights.find(tensor);
    if (it == prep->runnerWeights.end())
        return std::optional<QuantizedTensor>();
    return std::optional<QuantizedTensor>(std::move(it->second));
}

}  // namespace quantlens
