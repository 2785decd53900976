#include "quant/calibrate.h"

#include <cfloat>
#include <cmath>

namespace quantlens {

bool isSymmetricScheme(Scheme s)
{
    return s == Scheme::TorchSymmetric || s == Scheme::NarrowSymmetric || s == Scheme::Q8_0;
}

Range minMaxRange(std::span<const float> x)
{
    // Written as compare-selects so GCC turns it into minps/maxps; the finiteness test
    // keeps a stray inf from a damaged file from blowing the scale up to inf.
    float lo = FLT_MAX, hi = -FLT_MAX;
    const float* p = x.data();
    const size_t n = x.size();
    for (size_t i = 0; i < n; ++i) {
        const float v = p[i];
        const bool fin = std::fabs(v) <= FLT_MAX;
        const float a = fin ? v : lo;
        const float b = fin ? v : hi;
        lo = a < lo ? a : lo;
        hi = b > hi ? b : hi;
    }
    if (lo > hi)
        return {0.0f, 0.0f};
    return {lo, hi};
}

Result<Range> calibrateRange(std::span<const float> x, const QuantSpec& spec)
{
    switch (spec.calib) {
    case CalibMethod::MinMax: return minMaxRange(x);
    case CalibMethod::Manual:
        if (!std::isfinite(spec.manualLo) || !std::isfinite(spec.manualHi) || !(spec.manualLo <= spec.manualHi))
            return makeError("bad-spec", "manual range needs finite lo <= hi");
        return Range{spec.manualLo, spec.manualHi};
    default: break;
    }
    return makeError("unsupported", "calibration '" + calibName(spec) + "' is not available yet");
}

std::vector<CalibSuggestion> suggestRanges(std::span<const float> x, const QuantSpec& spec)
{
    std::vector<CalibSuggestion> out;
    const Range mm = minMaxRange(x);
    QuantSpec s = spec;
    s.calib = CalibMethod::MinMax;
    out.push_back({CalibMethod::MinMax, calibName(s), mm.lo, mm.hi});
    if (spec.calib == CalibMethod::Manual)
        out.push_back({CalibMethod::Manual, calibName(spec), spec.manualLo, spec.manualHi});
    return out;
}

}  // namespace quantlens
