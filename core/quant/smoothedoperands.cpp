#include "quant/smoothedoperands.h"

#include <algorithm>
#include <cmath>

namespace quantlens {

namespace {

// Median of v (the upper middle for an even count), v reordered.
double median(std::vector<float>& v)
{
    if (v.empty())
        return 0;
    auto mid = v.begin() + std::ptrdiff_t(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    return double(*mid);
}

void addInto(Histogram& sum, const Histogram& part)
{
    for (size_t i = 0; i < sum.counts.size() && i < part.counts.size(); ++i)
        sum.counts[i] += part.counts[i];
    sum.below += part.below;
    sum.above += part.above;
}

// Histogram over [-range, range] of rows [rows, in] transformed by `f(row, j, v)`, a block of
// rows at a time (no copy of the whole operand: W can be 768 x 3072 and more), with each
// row's largest magnitude in rowMax.
template <class F>
Histogram scaledHistogram(std::span<const float> m, int64_t rows, int64_t in, double range, int bins, F f,
                          std::vector<float>& rowMax)
{
    Histogram h;
    h.lo = -range;
    h.hi = range;
    h.counts.assign(size_t(bins), 0);
    rowMax.assign(size_t(rows), 0.0f);
    const int64_t block = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(in, 1));
    std::vector<float> buf;
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
        const int64_t r1 = std::min(rows, r0 + block);
        buf.resize(size_t((r1 - r0) * in));
        for (int64_t r = r0; r < r1; ++r) {
            float mx = 0;
            for (int64_t j = 0; j < in; ++j) {
                const float v = f(m[size_t(r * in + j)], j);
                buf[size_t((r - r0) * in + j)] = v;
                mx = std::max(mx, std::fabs(v));
            }
            rowMax[size_t(r)] = mx;
        }
        // The same binning as computeHistogram on the whole operand: the range is fixed.
        addInto(h, computeHistogram(buf, -range, range, bins));
    }
    return h;
}

}  // namespace

Result<SmoothedOperands> smoothedOperands(std::span<const float> x, int64_t n, std::span<const float> w, int64_t out,
                                          int64_t in, std::span<const float> actAbsMax,
                                          std::span<const float> weightAbsMax, std::span<const float> s, int bins)
{
    if (n < 0 || out <= 0 || in <= 0 || int64_t(x.size()) != n * in || int64_t(w.size()) != out * in)
        return makeError("bad-shape", "smoothed operands need x [n, in] and w [out, in] of matching sizes");
    if (int64_t(actAbsMax.size()) != in || int64_t(weightAbsMax.size()) != in || int64_t(s.size()) != in)
        return makeError("bad-shape", "smoothed operands need one maximum and one scale per input channel");
    if (bins < 1)
        return makeError("bad-bins", "a histogram needs at least one bin");
    for (float v : s)
        if (!(v > 0.0f) || !std::isfinite(v))
            return makeError("bad-scale", "SmoothQuant scales must be positive and finite");
    SmoothedOperands r;
    r.scales.assign(s.begin(), s.end());
    r.actAbsMax.resize(size_t(in));
    r.weightAbsMax.resize(size_t(in));
    for (int64_t j = 0; j < in; ++j) {
        // The same float operations as the W8A8 run (divideByScales, scaleWeightColumns), and
        // rounding is monotonic, so no smoothed value exceeds these.
        r.actAbsMax[size_t(j)] = actAbsMax[size_t(j)] / s[size_t(j)];
        r.weightAbsMax[size_t(j)] = weightAbsMax[size_t(j)] * s[size_t(j)];
        r.actRange = std::max(r.actRange, double(r.actAbsMax[size_t(j)]));
        r.weightRange = std::max(r.weightRange, double(r.weightAbsMax[size_t(j)]));
    }
    std::vector<float> rowMax;
    r.activations = scaledHistogram(
        x, n, in, r.actRange, bins, [&](float v, int64_t j) { return v / s[size_t(j)]; }, rowMax);
    r.medianTokenRange = median(rowMax);
    r.weights = scaledHistogram(
        w, out, in, r.weightRange, bins, [&](float v, int64_t j) { return v * s[size_t(j)]; }, rowMax);
    r.medianRowRange = median(rowMax);
    return r;
}

}  // namespace quantlens
