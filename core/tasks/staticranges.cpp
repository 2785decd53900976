#include "tasks/staticranges.h"

#include "quant/calibrate.h"
#include "runner/actstats.h"
#include "tasks/methodprep.h"

namespace quantlens {

Result<std::map<std::string, ActivationRange>> calibrateActivationRanges(
    std::shared_ptr<const Model> m, const std::string& modelPath, const EncoderOptions& eo, const QuantPlan& plan,
    const StaticRangeOptions& opt, const std::function<bool(double)>& progress)
{
    auto runner = EncoderRunner::create(*m, eo);
    if (!runner)
        return runner.error();
    auto seqs = loadCalibration(plan.calibration, modelPath, runner->config().vocab);
    if (!seqs)
        return seqs.error();
    ActivationOptions ao;
    std::map<std::string, std::string> tensorOf;  // layer prefix -> weight tensor
    for (int64_t i = 0; i < runner->linearCount(); ++i) {
        const std::string tensor = runner->weightName(i);
        // Every layer, quantized by the plan or not: the sensitivity ranking quantizes each.
        ao.layers.push_back(runner->linearNames()[size_t(i)]);
        tensorOf[ao.layers.back()] = tensor;
    }
    std::map<std::string, ActivationRange> out;
    if (ao.layers.empty())
        return out;
    ao.hessian = false;
    const bool minmax = opt.calibrator.calib == CalibMethod::MinMax;
    ao.keepRows = minmax ? 0 : opt.sampleRows;
    auto rec = recordActivations(*runner, *seqs, ao, [&](int64_t done, int64_t total) {
        return !progress || progress(double(done) / double(std::max<int64_t>(total, 1)));
    });
    if (!rec)
        return rec.error();
    // The activations are uint8 affine: the calibrators work on the values as an affine
    // weight range would.
    QuantSpec spec = opt.calibrator;
    spec.scheme = Scheme::TorchAffine;
    spec.granularity = Granularity::PerTensor;
    for (const LayerActivationStats& st : rec->layers) {
        const LayerActivationStats* src = rec->find(st.name);  // q, k, v share one input
        if (!src || src->tokens == 0)
            return makeError("no-calibration", "no calibration inputs reached this layer", {}, -1, st.name);
        ActivationRange r{src->overallMin(), src->overallMax()};
        if (!minmax) {
            auto c = calibrateRange(src->rows, spec);
            if (!c)
                return makeError(c.error().code, c.error().message, {}, -1, st.name);
            r = {c->lo, c->hi};
        }
        out[tensorOf[st.name]] = r;
    }
    return out;
}

}  // namespace quantlens
