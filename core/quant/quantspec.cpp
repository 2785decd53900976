#include "quant/quantspec.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <system_error>

namespace quantlens {

namespace {

// Shortest text that reads back to the same value, so names round-trip through parse*.
template <class F>
std::string shortest(F v)
{
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

template <class T>
bool parseNumber(std::string_view s, T& out)
{
    if (s.empty())
        return false;
    if (s.front() == '+')  // from_chars rejects a leading '+', people type it
        s.remove_prefix(1);
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

Error badSpec(const std::string& what, const std::string& text, const std::string& expected)
{
    return makeError("bad-spec", "unknown " + what + " '" + text + "' (expected " + expected + ")");
}

}  // namespace

std::string schemeName(Scheme s)
{
    switch (s) {
    case Scheme::Seed: return "seed";
    case Scheme::TorchSymmetric: return "torch-symmetric";
    case Scheme::TorchAffine: return "torch-affine";
    case Scheme::NarrowSymmetric: return "narrow-symmetric";
    case Scheme::Q8_0: return "q8_0";
    case Scheme::Q4_0: return "q4_0";
    case Scheme::Q4_1: return "q4_1";
    case Scheme::Q5_0: return "q5_0";
    case Scheme::Q5_1: return "q5_1";
    case Scheme::Q4_K: return "q4_k";
    case Scheme::Q5_K: return "q5_k";
    case Scheme::Q6_K: return "q6_k";
    case Scheme::F16: return "f16";
    case Scheme::BF16: return "bf16";
    case Scheme::F32: return "f32";
    }
    return "unknown";
}

bool isGgmlScheme(Scheme s) { return s == Scheme::Q8_0 || isGgmlBlockScheme(s); }

bool isGgmlBlockScheme(Scheme s)
{
    switch (s) {
    case Scheme::Q4_0: case Scheme::Q4_1: case Scheme::Q5_0: case Scheme::Q5_1:
    case Scheme::Q4_K: case Scheme::Q5_K: case Scheme::Q6_K:
    case Scheme::F16: case Scheme::BF16: case Scheme::F32:
        return true;
    default:
        return false;
    }
}

const std::vector<Scheme>& allSchemes()
{
    static const std::vector<Scheme> all{Scheme::Seed, Scheme::TorchSymmetric, Scheme::TorchAffine,
                                         Scheme::NarrowSymmetric, Scheme::Q8_0, Scheme::Q4_0, Scheme::Q4_1,
                                         Scheme::Q5_0, Scheme::Q5_1, Scheme::Q4_K, Scheme::Q5_K, Scheme::Q6_K,
                                         Scheme::F16, Scheme::BF16, Scheme::F32};
    return all;
}

std::string granularityName(const QuantSpec& s)
{
    switch (s.granularity) {
    case Granularity::PerTensor: return "tensor";
    case Granularity::PerChannel: return "channel";
    case Granularity::PerGroup: return "group:" + std::to_string(s.groupSize);
    }
    return "unknown";
}

std::string calibName(const QuantSpec& s)
{
    switch (s.calib) {
    case CalibMethod::MinMax: return "minmax";
    case CalibMethod::Percentile: return "percentile:" + shortest(s.percentile);
    case CalibMethod::Mse: return "mse";
    case CalibMethod::Entropy: return "entropy";
    case CalibMethod::HistogramL2: return "hist-l2";
    case CalibMethod::Manual: return "manual:" + shortest(s.manualLo) + "," + shortest(s.manualHi);
    }
    return "unknown";
}

Result<Scheme> parseScheme(const std::string& s)
{
    std::string lower = s;
    for (char& c : lower)  // ggml spells them q4_K, llama.cpp's tools Q4_K: accept any case
        c = char(std::tolower(static_cast<unsigned char>(c)));
    for (Scheme k : allSchemes())
        if (lower == schemeName(k))
            return k;
    return badSpec("scheme", s, "seed, torch-symmetric, torch-affine, narrow-symmetric, q8_0, q4_0, q4_1, q5_0, q5_1, "
                                "q4_k, q5_k, q6_k, f16, bf16 or f32");
}

Status parseGranularity(const std::string& s, QuantSpec& spec)
{
    if (s == "tensor") {
        spec.granularity = Granularity::PerTensor;
        spec.groupSize = 0;
        return Ok{};
    }
    if (s == "channel") {
        spec.granularity = Granularity::PerChannel;
        spec.groupSize = 0;
        return Ok{};
    }
    const std::string_view prefix = "group:";
    if (s.rfind(prefix, 0) == 0) {
        int64_t g = 0;
        if (!parseNumber(std::string_view(s).substr(prefix.size()), g) || g < 1)
            return makeError("bad-spec", "group size in '" + s + "' must be a positive integer");
        spec.granularity = Granularity::PerGroup;
        spec.groupSize = g;
        return Ok{};
    }
    return badSpec("granularity", s, "tensor, channel or group:G");
}

Status parseCalib(const std::string& s, QuantSpec& spec)
{
    const std::string_view sv = s;
    if (s == "minmax") {
        spec.calib = CalibMethod::MinMax;
        return Ok{};
    }
    if (s == "mse") {
        spec.calib = CalibMethod::Mse;
        return Ok{};
    }
    if (s == "entropy") {
        spec.calib = CalibMethod::Entropy;
        return Ok{};
    }
    if (s == "hist-l2") {
        spec.calib = CalibMethod::HistogramL2;
        return Ok{};
    }
    if (sv.rfind("percentile:", 0) == 0) {
        double p = 0;
        if (!parseNumber(sv.substr(11), p) || !(p > 0.0 && p <= 100.0))
            return makeError("bad-spec", "percentile in '" + s + "' must be a number in (0, 100]");
        spec.calib = CalibMethod::Percentile;
        spec.percentile = p;
        return Ok{};
    }
    if (sv.rfind("manual:", 0) == 0) {
        const std::string_view rest = sv.substr(7);
        const size_t comma = rest.find(',');
        float lo = 0, hi = 0;
        if (comma == std::string_view::npos || !parseNumber(rest.substr(0, comma), lo)
            || !parseNumber(rest.substr(comma + 1), hi))
            return makeError("bad-spec", "manual range '" + s + "' must look like manual:LO,HI");
        if (!std::isfinite(lo) || !std::isfinite(hi) || !(lo <= hi))
            return makeError("bad-spec", "manual range '" + s + "' needs finite LO <= HI");
        spec.calib = CalibMethod::Manual;
        spec.manualLo = lo;
        spec.manualHi = hi;
        return Ok{};
    }
    return badSpec("calibration", s, "minmax, percentile:P, mse, entropy, hist-l2 or manual:LO,HI");
}

void integerRange(const QuantSpec& s, int32_t& qmin, int32_t& qmax)
{
    const int bits = s.bits < 2 ? 2 : (s.bits > 8 ? 8 : s.bits);
    switch (s.scheme) {
    case Scheme::NarrowSymmetric:
        // ONNX Runtime's get_qmin_qmax_for_qType(symmetric=True): int8 [-127, 127],
        // reduce_range int8 [-64, 64] (sic: that is ORT's table), uint8 [0, 255] / [0, 127].
        if (s.isUnsigned) {
            qmin = 0;
            qmax = (1 << (s.reduceRange ? bits - 1 : bits)) - 1;
        } else if (s.reduceRange) {
            qmax = 1 << (bits - 2);
            qmin = -qmax;
        } else {
            qmax = (1 << (bits - 1)) - 1;
            qmin = -qmax;
        }
        return;
    case Scheme::Q8_0:
        // ggml: d = amax/127 makes the range symmetric; -128 never occurs.
        qmax = (1 << (bits - 1)) - 1;
        qmin = -qmax;
        return;
    // The stored codes of the ggml block schemes (QuantizedTensor::q): signed for the
    // symmetric blocks, unsigned levels for the ones with a min; none for the float types.
    case Scheme::Q4_0: qmin = -8; qmax = 7; return;
    case Scheme::Q5_0: qmin = -16; qmax = 15; return;
    case Scheme::Q6_K: qmin = -32; qmax = 31; return;
    case Scheme::Q4_1: case Scheme::Q4_K: qmin = 0; qmax = 15; return;
    case Scheme::Q5_1: case Scheme::Q5_K: qmin = 0; qmax = 31; return;
    case Scheme::F16: case Scheme::BF16: case Scheme::F32: qmin = 0; qmax = 0; return;
    case Scheme::Seed:
    case Scheme::TorchSymmetric:
    case Scheme::TorchAffine:
        break;
    }
    if (s.isUnsigned) {
        qmin = 0;
        qmax = (1 << bits) - 1;
    } else {
        qmin = -(1 << (bits - 1));
        qmax = (1 << (bits - 1)) - 1;
    }
    if (s.reduceRange) {
        // torch calculate_qmin_qmax: default 8-bit ranges become [-64, 63] / [0, 127];
        // custom ranges (our bits < 8) are floor-halved, which gives the same numbers.
        qmin = qmin >= 0 ? qmin / 2 : -((-qmin + 1) / 2);
        qmax = qmax / 2;
    }
}

}  // namespace quantlens
