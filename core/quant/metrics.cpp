#include "quant/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace quantlens {

namespace {

struct Sums {
    double err2 = 0, x2 = 0, y2 = 0, xy = 0;
    float maxAbs = 0;
};

// GCC does not vectorise a float reduction without -ffast-math (it may not reorder the
// additions), so the sums are kept in 8 explicit lanes that it can map onto SIMD
// registers. Lanes are float over short blocks (error < 1e-6 relative per block) and
// flushed into double, which keeps the total accurate for multi-million-element tensors.
Sums accumulate(const float* x, const float* y, int64_t n)
{
    constexpr int W = 8;
    constexpr int64_t kBlock = 512;
    Sums s;
    float maxLane[W] = {};
    int64_t i = 0;
    while (i < n) {
        const int64_t end = std::min(n, i + kBlock);
        float e2[W] = {}, a2[W] = {}, b2[W] = {}, ab[W] = {};
        for (; i + W <= end; i += W) {
            for (int j = 0; j < W; ++j) {
                const float a = x[i + j], b = y[i + j], d = a - b;
                e2[j] += d * d;
                a2[j] += a * a;
                b2[j] += b * b;
                ab[j] += a * b;
                const float ad = std::fabs(d);
                maxLane[j] = ad > maxLane[j] ? ad : maxLane[j];
            }
        }
        for (; i < end; ++i) {
            const float a = x[i], b = y[i], d = a - b;
            e2[0] += d * d;
            a2[0] += a * a;
            b2[0] += b * b;
            ab[0] += a * b;
            maxLane[0] = std::max(maxLane[0], std::fabs(d));
        }
        for (int j = 0; j < W; ++j) {
            s.err2 += e2[j];
            s.x2 += a2[j];
            s.y2 += b2[j];
            s.xy += ab[j];
        }
    }
    for (int j = 0; j < W; ++j)
        s.maxAbs = std::max(s.maxAbs, maxLane[j]);
    return s;
}

Metrics fromSums(const Sums& s, int64_t n, int64_t clampedCount)
{
    Metrics m;
    m.count = n;
    m.mse = n > 0 ? s.err2 / double(n) : 0.0;
    if (s.err2 == 0.0)
        m.sqnrDb = std::numeric_limits<double>::infinity();
    else if (s.x2 == 0.0)
        m.sqnrDb = -std::numeric_limits<double>::infinity();
    else
        m.sqnrDb = 10.0 * std::log10(s.x2 / s.err2);
    if (s.x2 == 0.0 && s.y2 == 0.0)
        m.cosine = 1.0;
    else if (s.x2 == 0.0 || s.y2 == 0.0)
        m.cosine = 0.0;
    else
        m.cosine = s.xy / (std::sqrt(s.x2) * std::sqrt(s.y2));
    m.maxAbsError = s.maxAbs;
    m.clampedFraction = n > 0 ? double(clampedCount) / double(n) : 0.0;
    return m;
}

}  // namespace

Metrics computeMetrics(std::span<const float> x, std::span<const float> xhat, int64_t clampedCount)
{
    const int64_t n = int64_t(std::min(x.size(), xhat.size()));
    return fromSums(accumulate(x.data(), xhat.data(), n), n, clampedCount);
}

std::vector<Metrics> computeRowMetrics(std::span<const float> x, std::span<const float> xhat, int64_t rows,
                                       int64_t cols)
{
    std::vector<Metrics> out;
    if (rows <= 0 || cols <= 0)
        return out;
    // Refuse shapes that do not fit the buffers instead of reading past them.
    if (rows > int64_t(x.size()) / cols || rows * cols > int64_t(xhat.size()))
        return out;
    out.reserve(size_t(rows));
    for (int64_t r = 0; r < rows; ++r)
        out.push_back(fromSums(accumulate(x.data() + r * cols, xhat.data() + r * cols, cols), cols, 0));
    return out;
}

TensorStats computeStats(std::span<const float> x)
{
    TensorStats st;
    double sum = 0;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    int64_t finite = 0;
    for (const float v : x) {
        if (!std::isfinite(v)) {
            ++st.nonFinite;
            continue;
        }
        ++finite;
        sum += v;
        lo = std::min(lo, double(v));
        hi = std::max(hi, double(v));
    }
    st.count = finite;
    if (finite == 0)
        return st;
    st.min = lo;
    st.max = hi;
    st.mean = sum / double(finite);
    // Second pass around the mean: sum(x^2) - n*mean^2 cancels badly for offset data.
    double ss = 0;
    for (const float v : x)
        if (std::isfinite(v)) {
            const double d = double(v) - st.mean;
            ss += d * d;
        }
    st.std = std::sqrt(ss / double(finite));
    return st;
}

}  // namespace quantlens
