#include "io/ggufspecmap.h"

#include <algorithm>
#include <cmath>

#include "quant/calibrate.h"
#include "quant/ggmlblocks.h"

namespace quantlens {

namespace {

std::string describe(const QuantSpec& s)
{
    return std::to_string(s.bits) + "-bit " + (isSymmetricScheme(s.scheme) ? "symmetric" : "affine") + " "
           + granularityName(s) + " (" + schemeName(s.scheme) + ")";
}

}  // namespace

Result<GgmlMapping> ggmlTypeForSpec(const QuantSpec& spec)
{
    GgmlMapping m;
    if (auto t = ggmlTypeForScheme(spec.scheme)) {
        m.type = *t;
        return m;
    }
    m.mapped = true;
    const bool sym = isSymmetricScheme(spec.scheme);
    const bool g256 = spec.granularity == Granularity::PerGroup && spec.groupSize == 256;
    const std::string from = describe(spec);
    std::string how;
    switch (spec.bits) {
    case 8:
        m.type = GgmlType::Q8_0;
        how = sym ? "same bits, symmetric" : "ggml has no 8-bit affine weight type; the symmetric 8-bit one";
        break;
    case 7:
        m.type = GgmlType::Q8_0;
        how = "ggml has no 7-bit type; the next width up";
        break;
    case 6:
        m.type = GgmlType::Q6_K;
        how = sym ? "same bits, symmetric (256-value super-blocks of 16-value scales)"
                  : "ggml's only 6-bit type (symmetric; no 6-bit affine exists)";
        break;
    case 5:
    case 4: {
        const bool five = spec.bits == 5;
        if (!sym && g256) {
            m.type = five ? GgmlType::Q5_K : GgmlType::Q4_K;
            how = "same bits, affine, groups of 256 (k-quant super-blocks with a scale and min per 32)";
        } else if (sym) {
            m.type = five ? GgmlType::Q5_0 : GgmlType::Q4_0;
            how = "same bits, symmetric";
        } else {
            m.type = five ? GgmlType::Q5_1 : GgmlType::Q4_1;
            how = "same bits, affine (scale and min)";
        }
        break;
    }
    default:
        return makeError("no-ggml-type", from + " has no ggml type Quantlens writes (Q2_K/Q3_K are not implemented) "
                                                "and a wider type would not be what was tuned");
    }
    const int64_t block = ggmlTypeInfo(m.type)->blockElems;
    std::string grain;
    if (spec.granularity == Granularity::PerGroup && spec.groupSize == block)
        grain = "same groups of " + std::to_string(block);
    else
        grain = "one scale per " + std::to_string(block) + " values instead of " + granularityName(spec);
    m.why = from + " -> " + ggmlTypeInfo(m.type)->name + ": " + how + "; " + grain;
    if (spec.reduceRange)
        m.why += "; reduce-range dropped (ggml uses its full range)";
    return m;
}

Result<int64_t> clipAsSpec(std::span<float> x, int64_t rowLen, const QuantSpec& spec)
{
    if (spec.calib == CalibMethod::MinMax)
        return int64_t(0);
    const bool sym = isSymmetricScheme(spec.scheme);
    auto clipSlice = [&](std::span<float> s) -> Result<int64_t> {
        Range r{spec.manualLo, spec.manualHi};
        if (spec.calib != CalibMethod::Manual) {
            auto c = calibrateRange(s, spec);
            if (!c)
                return c.error();
            r = *c;
        }
        if (sym) {
            const float a = std::max(std::fabs(r.lo), std::fabs(r.hi));
            r = {-a, a};
        }
        return clipValues(s, r, s.data());
    };
    if (spec.calib == CalibMethod::Manual || spec.granularity == Granularity::PerTensor || rowLen <= 0)
        return clipSlice(x);
    // Per channel: each row; per group: each group of a row (the last one may be shorter).
    const int64_t step = spec.granularity == Granularity::PerGroup && spec.groupSize > 0 ? std::min(rowLen, spec.groupSize)
                                                                                          : rowLen;
    int64_t changed = 0;
    for (int64_t row = 0; row + rowLen <= int64_t(x.size()); row += rowLen)
        for (int64_t at = 0; at < rowLen; at += step) {
            auto n = clipSlice(x.subspan(size_t(row + at), size_t(std::min(step, rowLen - at))));
            if (!n)
                return n.error();
            changed += *n;
        }
    return changed;
}

}  // namespace quantlens
