#include "plan/quantplan.h"

namespace quantlens {

std::string activationModeName(ActivationMode m)
{
    switch (m) {
    case ActivationMode::DynamicPerTensor: return "per-tensor";
    case ActivationMode::DynamicPerToken: return "per-token";
    case ActivationMode::None: return "none";
    case ActivationMode::Static: return "static";
    }
    return "per-tensor";
}

Result<ActivationMode> parseActivationMode(const std::string& s)
{
    if (s == "per-tensor" || s == "dynamic" || s == "dynamic-per-tensor")
        return ActivationMode::DynamicPerTensor;
    if (s == "per-token" || s == "per-row" || s == "dynamic-per-token")
        return ActivationMode::DynamicPerToken;
    if (s == "none" || s == "weight-only")
        return ActivationMode::None;
    if (s == "static")
        return ActivationMode::Static;
    return makeError("bad-activations", "unknown activation mode '" + s + "' (per-tensor, per-token, static or none)");
}

QuantSpec QuantPlan::defaultWeightSpec()
{
    QuantSpec s;
    s.scheme = Scheme::TorchSymmetric;
    s.granularity = Granularity::PerChannel;
    return s;
}

QuantPlan QuantPlan::quantizeDynamicPreset()
{
    QuantPlan p;
    p.defaultSpec.granularity = Granularity::PerTensor;
    p.activations = ActivationSpec{};
    return p;
}

const QuantSpec& QuantPlan::specFor(const std::string& name) const
{
    auto it = overrides.find(name);
    return it == overrides.end() ? defaultSpec : it->second;
}

const MethodSpec& QuantPlan::methodFor(const std::string& name) const
{
    auto it = methods.find(name);
    return it == methods.end() ? defaultMethod : it->second;
}

bool QuantPlan::usesMethods() const
{
    if (defaultMethod.needsCalibration())
        return true;
    for (const auto& [name, m] : methods)
        if (m.needsCalibration() && !keepFloat.count(name))
            return true;
    return false;
}

std::string CalibrationSource::describe() const
{
    if (!tokens.empty()) {
        size_t ids = 0;
        for (const auto& s : tokens)
            ids += s.size();
        return std::to_string(tokens.size()) + (tokens.size() == 1 ? " sequence, " : " sequences, ") +
               std::to_string(ids) + " token ids";
    }
    if (!tokensFile.empty())
        return "token ids from " + tokensFile;
    if (!textFile.empty())
        return "text from " + textFile;
    if (randomTokens > 0)
        return std::to_string(randomTokens) + " random token ids";
    return "none";
}

PlanDecision QuantPlan::decide(const Tensor& t) const
{
    PlanDecision d;
    d.tuned = isTuned(t.name);
    d.spec = specFor(t.name);
    d.spec.axis = outputChannelAxis(t);
    if (keepFloat.count(t.name)) {
        d.reason = "kept in float32";
        return d;
    }
    if (!t.decodable()) {
        d.reason = "not decodable (" + (t.opaqueType.empty() ? std::string("unknown type") : t.opaqueType) + ")";
        return d;
    }
    if (t.numel() == 0) {
        d.reason = "empty";
        return d;
    }
    if (!quantizedByDefault(t) && !(quantizeVectors && t.rank() >= 1) && !d.tuned) {
        d.reason = notQuantizedReason(t) + ": not quantized by default";
        return d;
    }
    d.quantize = true;
    return d;
}

bool runsOnInt8Kernels(const QuantSpec& s, const ActivationSpec& a)
{
    const bool symmetric = s.scheme == Scheme::TorchSymmetric || s.scheme == Scheme::NarrowSymmetric;
    // Static ranges run simulated: the int8 GEMM computes its activation scale per call.
    return a.mode != ActivationMode::None && a.mode != ActivationMode::Static && symmetric && s.bits == 8 && !s.isUnsigned &&
           (s.granularity == Granularity::PerTensor || s.granularity == Granularity::PerChannel);
}

}  // namespace quantlens
