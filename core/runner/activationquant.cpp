#include "runner/activationquant.h"

#include <cmath>
#include <limits>

#include "quant/metrics.h"
#include "quant/smoothquant.h"

namespace quantlens {

namespace {

// [out, in] <-> the stored [in, out] of a Conv1D weight.
template <class T>
std::vector<T> transposed(const std::vector<T>& a, int64_t rows, int64_t cols)
{
    std::vector<T> t(a.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            t[size_t(c * rows + r)] = a[size_t(r * cols + c)];
    return t;
}

}  // namespace

Result<ActivationQuantResult> quantizeWithActivations(const Model& m, const EncoderConfig& cfg,
                                                      const std::string& tensorName, const QuantSpec& spec,
                                                      const MethodSpec& method, const ActivationRecording& rec)
{
    const std::string layer =
        tensorName.ends_with(".weight") ? tensorName.substr(0, tensorName.size() - 7) : tensorName;
    const std::string weightName = layer + ".weight";
    auto base = quantizeForExport(m, weightName, spec);
    if (!base)
        return base.error();
    ActivationQuantResult res;
    res.entry = std::move(*base);
    if (method.method == WeightMethod::Rtn)
        return res;

    const LayerActivationStats* st = rec.find(layer);
    if (!st || st->tokens == 0)
        return makeError("no-calibration", "no calibration activations were recorded for this layer", {}, -1, weightName);
    auto lw = readLinearWeight(m, layer);
    if (!lw)
        return lw.error();
    if (lw->in != st->inFeatures)
        return makeError("bad-shape", "the weight has " + std::to_string(lw->in) + " inputs but the layer saw " +
                                          std::to_string(st->inFeatures), {}, -1, weightName);
    const Tensor* t = m.find(weightName);
    auto stored = t->toFloat();
    if (!stored)
        return stored.error();
    QuantizedTensor& qt = res.entry.quantized;
    auto asOutIn = [&](const std::vector<float>& v) { return lw->storedInOut ? transposed(v, lw->in, lw->out) : v; };
    auto asStored = [&](const std::vector<float>& v) { return lw->storedInOut ? transposed(v, lw->out, lw->in) : v; };

    if (method.method == WeightMethod::Gptq) {
        if (st->hessian.empty())
            return makeError("no-hessian", "GPTQ needs the layer's Hessian, which was not recorded", {}, -1, weightName);
        const std::vector<float> rtn = asOutIn(dequantize(qt));
        auto g = gptqQuantize(lw->w, lw->out, lw->in, st->hessian, spec, method.gptq);
        if (!g)
            return makeError(g.error().code, g.error().message, {}, -1, weightName);
        if (g->quantized.params.scale != qt.params.scale || g->quantized.params.zeroPoint != qt.params.zeroPoint)
            return makeError("internal", "GPTQ's scales differ from round-to-nearest's for the same spec", {}, -1,
                             weightName);
        qt.q = lw->storedInOut ? transposed(g->quantized.q, lw->out, lw->in) : g->quantized.q;
        qt.clampedCount = g->quantized.clampedCount;
        res.outIn = std::move(g->quantized);
        const std::vector<float> deq = dequantize(qt);
        res.entry.metrics = computeMetrics(*stored, deq, qt.clampedCount);
        res.rtnOutputSqnrDb = layerOutputSqnrDb(lw->w, rtn, lw->out, lw->in, st->hessian);
        res.outputSqnrDb = layerOutputSqnrDb(lw->w, asOutIn(deq), lw->out, lw->in, st->hessian);
        res.gptqLoss = g->loss;
        res.deadColumns = g->deadColumns;
        res.fellBackToRtn = g->fellBackToRtn;
        return res;
    }

    // SmoothQuant: one s for every layer reading the same norm.
    auto fold = precedingNorm(cfg, layer);
    if (!fold)
        return makeError(fold.error().code, fold.error().message, {}, -1, weightName);
    res.fold = *fold;
    std::vector<std::vector<float>> siblings;
    for (const std::string& s : fold->siblings) {
        auto w = readLinearWeight(m, s);
        if (!w)
            return w.error();
        if (w->in != lw->in)
            return makeError("bad-shape", "'" + s + "' reads the same norm but has another input width", {}, -1, weightName);
        siblings.push_back(std::move(w->w));
    }
    std::vector<std::span<const float>> spans(siblings.begin(), siblings.end());
    res.smoothScales = smoothQuantScales(st->absMax, weightColumnAbsMax(spans, lw->in), method.alpha);
    std::vector<float> ws = lw->w;
    scaleWeightColumns(ws, lw->out, lw->in, res.smoothScales);
    const std::vector<float> wsStored = asStored(ws);
    if (auto q = quantizeInto(wsStored, qt.shape, qt.spec, qt); !q)
        return makeError(q.error().code, q.error().message, {}, -1, weightName);
    res.entry.metrics = computeMetrics(wsStored, dequantize(qt), qt.clampedCount);
    res.rtnOutputSqnrDb = res.outputSqnrDb = std::numeric_limits<double>::quiet_NaN();
    if (st->keptRows > 0) {
        auto before = w8a8OutputSqnrDb(st->rows, st->keptRows, lw->w, lw->out, lw->in, {});
        auto after = w8a8OutputSqnrDb(st->rows, st->keptRows, lw->w, lw->out, lw->in, res.smoothScales);
        if (!before || !after)
            return (before ? after : before).error();
        res.rtnOutputSqnrDb = *before;
        res.outputSqnrDb = *after;
    }
    return res;
}

}  // namespace quantlens
