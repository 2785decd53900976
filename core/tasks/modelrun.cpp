#include "tasks/modelrun.h"

#include <algorithm>
#include <optional>

#include "runner/fp32linear.h"

namespace quantlens {

Result<std::vector<RunnerLayerPlan>> applyPlan(EncoderRunner& r, const Model& m, const QuantPlan& plan,
                                               SensitivityOptions& opt, const PreparedPlan* prep)
{
    std::vector<RunnerLayerPlan> out;
    opt.specs.clear();
    opt.keepFloat.clear();
    const std::vector<std::string> names = r.linearNames();
    for (int64_t i = 0; i < int64_t(names.size()); ++i) {
        RunnerLayerPlan lp;
        lp.prefix = names[size_t(i)];
        lp.tensor = r.weightName(i);
        const Tensor* t = m.find(lp.tensor);
        if (!t)
            return makeError("no-such-tensor", "the runner's layer has no weight tensor in the model", {}, -1, lp.tensor);
        lp.decision = plan.decide(*t);
        lp.simulated = !runsOnInt8Kernels(lp.decision.spec, plan.activations);
        std::optional<QuantizedTensor> given;
        lp.method = "rtn";
        if (prep)
            if (auto g = prep->runnerWeights.find(lp.tensor); g != prep->runnerWeights.end()) {
                given = g->second;
                lp.method = methodName(plan.methodFor(lp.tensor));
            }
        if (prep && std::find(prep->replaced.begin(), prep->replaced.end(), lp.tensor) != prep->replaced.end())
            lp.method = "smoothed, " + lp.method;  // W·s, whatever then rounds it
        if (!lp.decision.quantize)
            lp.method.clear();
        if (auto s = r.setGivenWeights(i, std::move(given)); !s)
            return s.error();
        std::optional<std::pair<float, float>> range;
        if (auto it = plan.activationRanges.find(lp.tensor); it != plan.activationRanges.end())
            range = std::pair{it->second.lo, it->second.hi};
        if (plan.activations.mode == ActivationMode::Static && !range)
            return makeError("no-static-range", "static activations need every linear layer's input range (the ranking "
                                                "quantizes each), and the plan has none for this one: calibrate the ranges",
                             {}, -1, lp.tensor);
        if (auto s = r.setStaticRange(i, range); !s)
            return s.error();
        opt.specs.emplace_back(lp.prefix, lp.decision.spec);
        if (!lp.decision.quantize)
            opt.keepFloat.insert(lp.prefix);
        out.push_back(std::move(lp));
    }
    // After the ranges: switching to static rebuilds every quantized layer with its own.
    if (auto s = r.setActivations(plan.activations); !s)
        return s.error();
    return out;
}

Result<ModelRunReport> runModelUnderPlan(EncoderRunner& r, const Model& m, const QuantPlan& plan,
                                         const EncoderInput& in, const ModelRunRequest& req, const PreparedPlan* prep)
{
    // One BLAS thread, in the window and the CLI alike: OpenBLAS splits an sgemm differently
    // for another thread count and the sums change in their last bits, so a saved plan would
    // not replay to exactly the figure the window showed.
    setBlasThreads(1);
    SensitivityOptions opt;
    opt.view = req.view;
    opt.rankBy = req.rankBy;
    opt.progress = req.progress;
    auto layers = applyPlan(r, m, plan, opt, prep);
    if (!layers)
        return layers.error();
    auto rep = computeSensitivity(r, in, opt);
    if (!rep)
        return rep.error();
    ModelRunReport out;
    out.sensitivity = std::move(*rep);
    out.layers = std::move(*layers);
    return out;
}

}  // namespace quantlens
