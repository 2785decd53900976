#include "tasks/exportplan.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "io/ggufwriter.h"
#include "layers.h"
#include "runner/simulatedlinear.h"

namespace quantlens {

namespace {

// Scales a spec produces on a tensor of this shape (the number quantize() will emit).
int64_t scaleCount(const Tensor& t, const QuantSpec& s)
{
    const int64_t n = t.numel();
    if (s.scheme == Scheme::Q8_0)
        return (n + 31) / 32;
    if (t.rank() < 2 || s.granularity == Granularity::PerTensor)
        return 1;
    const int64_t channels = t.shape[size_t(outputChannelAxis(t))];
    if (s.granularity == Granularity::PerChannel)
        return channels;
    const int64_t perChannel = channels > 0 ? n / channels : 0;
    const int64_t g = std::max<int64_t>(1, s.groupSize);
    return channels * ((perChannel + g - 1) / g);
}

}  // namespace

ExportPlan planExport(const Model& m, const Session& session, const ExportPlanOptions& opt)
{
    ExportPlan plan;
    auto skip = [&](const std::string& name, const std::string& why) {
        plan.skipped.push_back(name);
        plan.skipReasons.push_back(why);
    };
    QuantPlan p = session.plan();
    p.quantizeVectors = true;  // chosen explicitly
    plan.activations = p.activations;
    auto rangeOf = [&p](const std::string& name) -> std::optional<ActivationRange> {
        if (p.activations.mode != ActivationMode::Static)
            return std::nullopt;
        auto it = p.activationRanges.find(name);
        return it == p.activationRanges.end() ? std::nullopt : std::optional<ActivationRange>(it->second);
    };
    if (!opt.honourKeepFloat)
        p.keepFloat.clear();
    if (!opt.useOverrides)
        p.overrides.clear();
    if (opt.mix) {
        plan.mix = opt.mix;
        const std::vector<GgufMixChoice> choices = ggufMixTypes(*opt.mix, m);
        for (size_t i = 0; i < m.tensors.size(); ++i) {
            const Tensor& t = m.tensors[i];
            if (!choices[i].quantize)
                continue;
            if (p.keepFloat.count(t.name)) {
                plan.keptFloat.push_back(t.name);
                continue;
            }
            ExportPlanItem item;
            item.tensor = t.name;
            const PlanDecision d = p.decide(t);
            if (d.quantize && d.tuned) {
                item.spec = d.spec;
                item.tuned = true;
                item.why = "tuned in the window (instead of the mix's " + std::string(ggmlTypeInfo(choices[i].type)->name) + ")";
            } else {
                item.spec = p.defaultSpec;
                item.spec.scheme = schemeForGgmlType(choices[i].type);
                item.spec.granularity = Granularity::PerTensor;  // ggml's blocks decide
                item.why = choices[i].why;
            }
            item.inputRange = rangeOf(t.name);
            plan.items.push_back(std::move(item));
        }
        return plan;
    }
    std::vector<std::string> names;
    if (opt.choice == ExportChoice::AllLayers) {
        for (const QuantLayer& l : findQuantLayers(m))
            names.push_back(l.weight->name);
    } else if (opt.choice == ExportChoice::AllLinear) {
        for (const LinearLayer& l : findLinearLayers(m))
            names.push_back(l.weight->name);
    } else if (opt.choice == ExportChoice::Named) {
        const std::vector<LinearLayer> layers = findLinearLayers(m);
        std::set<std::string> seen;
        for (const std::string& n : opt.tensors) {
            const LinearLayer* l = m.find(n) ? nullptr : findLinearLayer(layers, n);
            const std::string name = l ? l->weight->name : n;  // a layer prefix such as "...attention.q_lin"
            if (!m.find(name))
                skip(n, "no such tensor");
            else if (seen.insert(name).second)
                names.push_back(name);
        }
    } else {
        // File order, not the set's alphabetical order: exports list tensors as the model does.
        for (const Tensor& t : m.tensors)
            if (session.exportSelection.count(t.name))
                names.push_back(t.name);
        for (const std::string& name : session.exportSelection)
            if (!m.find(name))
                skip(name, "no such tensor");
    }
    for (const std::string& name : names) {
        const PlanDecision d = p.decide(*m.find(name));
        if (!d.quantize) {
            if (p.keepFloat.count(name))
                plan.keptFloat.push_back(name);
            else
                skip(name, d.reason);
            continue;
        }
        ExportPlanItem item;
        item.tensor = name;
        item.tuned = d.tuned;
        item.spec = d.spec;
        item.inputRange = rangeOf(name);
        plan.items.push_back(std::move(item));
    }
    return plan;
}

ExportSizes estimateExportSizes(const Model& m, const ExportPlan& plan)
{
    ExportSizes s;
    std::set<std::string> planned;
    for (const ExportPlanItem& it : plan.items) {
        const Tensor* t = m.find(it.tensor);
        if (!t)
            continue;
        planned.insert(it.tensor);
        const int64_t n = t->numel();
        if (auto gt = ggmlTypeForScheme(it.spec.scheme); gt && it.spec.scheme != Scheme::Q8_0) {
            const GgmlTypeInfo* gi = ggmlTypeInfo(*gt);
            s.quantizedBefore += t->storedBytes();
            s.quantizedAfter += (n + gi->blockElems - 1) / gi->blockElems * gi->blockBytes;
            continue;
        }
        const int64_t after = quantizedByteCount(n, scaleCount(*t, it.spec), it.spec);
        s.quantizedBefore += t->storedBytes();
        s.quantizedAfter += after;
    }
    for (const Tensor& t : m.tensors) {
        const int64_t b = t.storedBytes();
        s.modelBefore += b;
        if (!planned.count(t.name))
            s.modelAfter += b;
    }
    s.modelAfter += s.quantizedAfter;
    return s;
}

namespace {

std::string methodExportProblem(bool anyMethod, bool smoothed, ExportFormat f)
{
    if (f == ExportFormat::Gguf && anyMethod)
        return "GGUF blocks are made by ggml's own quantizers from the source file, so the plan's GPTQ/SmoothQuant "
               "cannot be written as GGUF: use round to nearest for a GGUF export";
    const bool weightsOnly = f == ExportFormat::Hdf5 || f == ExportFormat::NpyFolder || f == ExportFormat::OnnxQdq;
    if (weightsOnly && smoothed)
        return "SmoothQuant also divides the norms before the smoothed layers, and this format writes only the "
               "quantized weights: export to safetensors or compressed-tensors, which write every tensor";
    return {};
}

}  // namespace

std::string preparedExportProblem(const PreparedPlan& prep, ExportFormat f)
{
    return methodExportProblem(!prep.entries.empty() || prep.smoothed(), prep.smoothed(), f);
}

std::string planMethodsExportProblem(const QuantPlan& plan, ExportFormat f)
{
    bool smooth = plan.defaultMethod.method == WeightMethod::SmoothQuant;
    for (const auto& [name, m] : plan.methods)
        smooth = smooth || (m.method == WeightMethod::SmoothQuant && !plan.keepFloat.count(name));
    return methodExportProblem(plan.usesMethods(), smooth, f);
}

std::string staticRangesExportProblem(const ExportPlan& plan, ExportFormat f)
{
    if (plan.activations.mode != ActivationMode::Static)
        return {};
    if (f == ExportFormat::Gguf)
        return "GGUF holds weights only and llama.cpp quantizes activations itself, so the plan's static activation "
               "ranges cannot be written as GGUF: set the plan's activations to none or dynamic for a GGUF export, or "
               "export compressed-tensors, which holds them";
    if (f == ExportFormat::OnnxQdq)
        return "the ONNX QDQ export puts DequantizeLinear on the weights only, and the plan's static activation ranges "
               "(keyed by the runner's layers) are not mapped to the graph's MatMul inputs, so they would be lost: set "
               "the plan's activations to dynamic or none for an ONNX export";
    for (const ExportPlanItem& it : plan.items) {
        if (it.inputRange && (!std::isfinite(it.inputRange->lo) || !std::isfinite(it.inputRange->hi) ||
                              it.inputRange->lo > it.inputRange->hi))
            return "'" + it.tensor + "': the plan's static activation range is not a finite [lo, hi]";
        // compressed-tensors' W8A8 static needs every quantized Linear's input_scale; lm_head
        // stays float there, so it needs none.
        if (f == ExportFormat::CompressedTensors && !it.inputRange && it.tensor != "lm_head.weight")
            return "static activations: the plan has no input range for '" + it.tensor + "', and a compressed-tensors "
                   "W8A8 static checkpoint needs one for every quantized Linear: calibrate the ranges (the Activations "
                   "tab's 'Calibrate every layer', or sensitivity --act static)";
    }
    return {};
}

ExportActivations exportActivationsFor(ActivationMode mode)
{
    switch (mode) {
    case ActivationMode::None: return ExportActivations::None;
    case ActivationMode::DynamicPerToken: return ExportActivations::DynamicPerToken;
    case ActivationMode::DynamicPerTensor: return ExportActivations::DynamicPerTensor;
    case ActivationMode::Static: return ExportActivations::Static;
    }
    return ExportActivations::Unplanned;
}

void attachStaticInput(const ExportPlan& plan, const ExportPlanItem& item, ExportEntry& e)
{
    e.staticInput.reset();
    if (plan.activations.mode != ActivationMode::Static || !item.inputRange)
        return;
    ActivationSpec a = plan.activations;
    a.staticLo = item.inputRange->lo;
    a.staticHi = item.inputRange->hi;
    const ActParams p = staticActivationParams(a);
    e.staticInput = StaticInputParams{a.staticLo, a.staticHi, p.scale, p.zeroPoint, a.reduceRange};
}

Result<ExportReport> runExportPlan(const Model& source, const ExportPlan& plan, const ExportOptions& opts,
                                   const ExportProgress& progress, const PreparedPlan* prep)
{
    if (plan.items.empty())
        return makeError("nothing-to-export", "no tensors chosen for export");
    if (prep)
        if (std::string why = preparedExportProblem(*prep, opts.format); !why.empty())
            return makeError("unsupported-pair", why);
    if (std::string why = staticRangesExportProblem(plan, opts.format); !why.empty())
        return makeError("unsupported-pair", why);
    const Model& m = prep ? *prep->model : source;
    if (opts.format == ExportFormat::Gguf) {
        // Specs that are not ggml types are mapped to the nearest one by the writer.
        std::vector<GgufDecision> decisions;
        for (const ExportPlanItem& it : plan.items)
            decisions.push_back({it.tensor, it.spec, it.why});
        ExportOptions o = opts;
        if (plan.mix)
            o.ggufFileType = ggufMixFileType(*plan.mix);
        return exportGguf(m, decisions, o, progress);
    }
    std::vector<ExportEntry> entries;
    entries.reserve(plan.items.size());
    const double n = double(plan.items.size());
    for (size_t i = 0; i < plan.items.size(); ++i) {
        const ExportPlanItem& it = plan.items[i];
        if (!exportdetail::report(progress, 0.5 * double(i) / n, "quantizing " + it.tensor))
            return exportdetail::cancelled(opts.outPath);
        if (prep)
            if (auto g = prep->entries.find(it.tensor); g != prep->entries.end()) {
                if (g->second.quantized.spec.scheme != it.spec.scheme || g->second.quantized.spec.bits != it.spec.bits ||
                    g->second.quantized.spec.granularity != it.spec.granularity)
                    return makeError("stale-method", "the plan's GPTQ integers were found for another spec: run the "
                                                     "plan's methods again", {}, -1, it.tensor);
                entries.push_back(g->second);
                attachStaticInput(plan, it, entries.back());
                continue;
            }
        auto e = quantizeForExport(m, it.tensor, it.spec);
        if (!e)
            return e.error();
        // The writer quantizes it again when its turn comes: one tensor's integers at a time.
        dropPayload(*e);
        attachStaticInput(plan, it, *e);
        entries.push_back(std::move(*e));
    }
    ExportProgress second;
    if (progress)
        second = [&progress](double f, const std::string& what) { return progress(0.5 + 0.5 * f, what); };
    ExportOptions o = opts;
    o.activations = exportActivationsFor(plan.activations.mode);
    return exportModel(m, entries, o, second);
}

}  // namespace quantlens
