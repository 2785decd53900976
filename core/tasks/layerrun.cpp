#include "tasks/layerrun.h"

#include <algorithm>
#include <random>

#include "alignedarray.h"
#include "kernels/gemm.h"
#include "runner/calltiming.h"
#include "runner/fp32linear.h"

namespace quantlens {

Result<PlannedLinear> PlannedLinear::create(const LinearLayer& layer, QuantSpec spec, const ActivationSpec& act,
                                            int threads, const QuantizedTensor* given)
{
    std::vector<float> w, b;
    if (auto s = loadLinearWeights(layer, w, b); !s)
        return s.error();
    spec.axis = 0;  // loadLinearWeights gives [out, in]
    const bool useGiven = given && given->spec == spec && given->shape == std::vector<int64_t>{layer.outFeatures, layer.inFeatures};
    auto qt = useGiven ? Result<QuantizedTensor>(*given) : quantize(w, {layer.outFeatures, layer.inFeatures}, spec);
    if (!qt)
        return makeError(qt.error().code, qt.error().message, {}, -1, layer.weight ? layer.weight->name : layer.prefix);
    qt->name = layer.weight ? layer.weight->name : layer.prefix;
    PlannedLinear p;
    p.spec_ = spec;
    if (runsOnInt8Kernels(spec, act)) {
        DynamicLinearOptions o;
        o.act = act.mode == ActivationMode::DynamicPerToken ? ActQuant::PerRow : ActQuant::PerTensor;
        o.reduceRange = act.reduceRange;
        o.threads = threads;
        auto d = DynamicLinear::fromQuantized(std::move(*qt), b, o);
        if (!d)
            return d.error();
        p.kernel_ = std::make_shared<const DynamicLinear>(std::move(*d));
    } else {
        auto s = SimulatedLinear::create(*qt, b, act);
        if (!s)
            return s.error();
        p.sim_ = std::make_shared<const SimulatedLinear>(std::move(*s));
    }
    return p;
}

void PlannedLinear::forward(const float* x, int64_t m, float* y) const
{
    if (kernel_)
        kernel_->forward(x, m, y);
    else if (sim_)
        sim_->forward(x, m, y);
}

std::string PlannedLinear::isa() const { return kernel_ ? kernel_->isa() : "simulated (float GEMM)"; }

Result<LayerRunResult> runLayerUnderPlan(const LinearLayer& layer, const PlanDecision& d, const ActivationSpec& act,
                                         const LayerRunRequest& req)
{
    if (!d.quantize)
        return makeError("not-quantized", "the plan leaves this layer unquantized: " + d.reason, {}, -1,
                         layer.weight ? layer.weight->name : layer.prefix);
    if (act.mode == ActivationMode::Static && act.staticLo == 0.0f && act.staticHi == 0.0f)
        return makeError("no-static-range", "static activations need this layer's input range: calibrate it in the "
                                            "Activations tab (or sensitivity --act static)", {}, -1,
                         layer.weight ? layer.weight->name : layer.prefix);
    LayerRunResult r;
    r.in = layer.inFeatures;
    r.out = layer.outFeatures;
    r.act = act;
    std::vector<float> x = req.input;
    if (x.empty()) {
        if (req.tokens <= 0)
            return makeError("bad-input", "give an input or a token count");
        x.resize(size_t(req.tokens * layer.inFeatures));
        std::mt19937 rng(kLayerRunSeed);
        std::normal_distribution<float> dist(0.0f, 1.0f);
        for (float& v : x)
            v = dist(rng);
    } else if (int64_t(x.size()) % std::max<int64_t>(1, layer.inFeatures) != 0) {
        return makeError("bad-input", "the input does not hold whole rows of " + std::to_string(layer.inFeatures));
    }
    r.tokens = int64_t(x.size()) / layer.inFeatures;
    auto cancelled = [&] {
        r.cancelled = req.cancel && req.cancel->load();
        return r.cancelled;
    };
    auto fp = Fp32Linear::fromLayer(layer);
    if (!fp)
        return fp.error();
    auto q = PlannedLinear::create(layer, d.spec, act, 1, req.given);
    if (!q)
        return q.error();
    r.spec = q->spec();
    r.simulated = q->simulated();
    r.isa = q->isa();
    // On a line boundary, as PyTorch's outputs: split stores cost 3% at 768 outputs (alignedarray.h).
    AlignedVector<float> yRef(size_t(r.tokens * r.out)), y(yRef.size());
    if (cancelled())
        return r;
    fp->forward(x.data(), r.tokens, yRef.data());  // warm-up and the reference
    q->forward(x.data(), r.tokens, y.data());
    if (cancelled())
        return r;
    CallTimingOptions to;
    to.timed = req.timed;
    to.repeats = req.repeats;
    to.minRepeatSeconds = req.minRepeatSeconds;
    to.cancel = req.cancel;
    const std::vector<CallTiming> t = timeCalls({[&] { fp->forward(x.data(), r.tokens, yRef.data()); },
                                                 [&] { q->forward(x.data(), r.tokens, y.data()); }},
                                                to);
    if (t.empty()) {
        r.cancelled = true;
        return r;
    }
    r.fp32Seconds = t[0].median;
    r.quantSeconds = t[1].median;
    r.yRef.assign(yRef.begin(), yRef.end());
    r.y.assign(y.begin(), y.end());
    r.err = computeMetrics(r.yRef, r.y);
    return r;
}

}  // namespace quantlens
