#include "quant/metrics.h"

#include "kernels/reduce.h"
#include "kernels/quantrun.h"
#include "workteam.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>

namespace quantlens {

using quantrun::Sums;

namespace {

Sums accumulate(const float* x, const float* y, int64_t n)
{
    Sums s;
    quantrun::activeQuant().sums(x, y, n, &s);
    return s;
}

}  // namespace

Sums sumChunks(const float* x, const float* y, int64_t n)
{
    constexpr int64_t C = quantrun::kSumChunk;
    if (n <= C)
        return accumulate(x, y, n);
    const int64_t chunks = (n + C - 1) / C;
    std::vector<Sums> part(static_cast<size_t>(chunks));
    parallelFor(
        chunks, [&](int64_t c) { part[size_t(c)] = accumulate(x + c * C, y + c * C, std::min(C, n - c * C)); },
        n >= kTeamMinValues);
    Sums total;
    for (int64_t c = 0; c < chunks; ++c)
        quantrun::foldChunk(total, part[size_t(c)], c == 0);
    return total;
}

Metrics metricsFromSums(const Sums& s, int64_t n, int64_t clampedCount)
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

Metrics computeMetrics(std::span<const float> x, std::span<const float> xhat, int64_t clampedCount)
{
    const int64_t n = int64_t(std::min(x.size(), xhat.size()));
    return metricsFromSums(sumChunks(x.data(), xhat.data(), n), n, clampedCount);
}

static_assert(quantrun::kSumChunk % MetricsRun::kPiece == 0 && MetricsRun::kPiece % quantrun::kSumBlock == 0,
              "pieces must end where the sums flush their lanes");

void MetricsRun::add(std::span<const float> x, std::span<const float> xhat)
{
    constexpr int64_t C = quantrun::kSumChunk;
    int64_t n = int64_t(std::min(x.size(), xhat.size()));
    const float* a = x.data();
    const float* b = xhat.data();
    while (n > 0) {
        const int64_t k = std::min(n, C - n_ % C);
        quantrun::activeQuant().sums(a, b, k, &chunk_);
        n_ += k;
        a += k;
        b += k;
        n -= k;
        if (n_ % C == 0) {
            quantrun::foldChunk(total_, chunk_, n_ == C);
            chunk_ = Sums{};
        }
    }
}

Metrics MetricsRun::finish(int64_t clampedCount) const
{
    constexpr int64_t C = quantrun::kSumChunk;
    Sums t = total_;
    if (n_ % C != 0)
        quantrun::foldChunk(t, chunk_, n_ < C);
    return metricsFromSums(t, n_, clampedCount);
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
    out.resize(size_t(rows));
    // Rows are independent: groups of rows of about a sum chunk each go to the team.
    const int64_t perPart = std::max<int64_t>(1, quantrun::kSumChunk / cols);
    parallelFor(
        (rows + perPart - 1) / perPart,
        [&](int64_t p) {
            for (int64_t r = p * perPart; r < std::min(rows, (p + 1) * perPart); ++r)
                out[size_t(r)] = metricsFromSums(sumChunks(x.data() + r * cols, xhat.data() + r * cols, cols), cols, 0);
        },
        rows * cols >= kTeamMinValues);
    return out;
}

TensorStats computeStats(std::span<const float> x)
{
    // Float64 lanes (the contract in metrics.h: numpy-comparable mean/std to ~1e-12, which
    // float lanes missed by 3e-6 on near-zero means). Non-finite values count as 0 in the
    // sums and are skipped by min/max. Not on the drag path, so double lanes are fine.
    // Lanes and blocks as kernels/reduce.h defines them: every ISA sums in that order.
    constexpr int W = kernels::kStatsLanes;
    const kernels::ReduceKernels& kr = kernels::activeReduce();
    TensorStats st;
    const float* p = x.data();
    const int64_t n = int64_t(x.size());
    float lo[W], hi[W];
    int64_t nonFinite = 0;
    for (int j = 0; j < W; ++j) {
        lo[j] = FLT_MAX;
        hi[j] = -FLT_MAX;
    }
    double sum = 0;
    const int64_t blocks = n / kernels::kStatsBlock;
    kr.statsSum(p, blocks, &sum, &nonFinite, lo, hi);
    int64_t i = blocks * kernels::kStatsBlock;
    for (; i < n; ++i) {
        const float v = p[i];
        if (std::fabs(v) <= FLT_MAX) {
            sum += v;
            lo[0] = std::min(lo[0], v);
            hi[0] = std::max(hi[0], v);
        } else {
            ++nonFinite;
        }
    }
    st.nonFinite = nonFinite;
    const int64_t finite = n - st.nonFinite;
    st.count = finite;
    if (finite == 0)
        return st;
    float l = FLT_MAX, h = -FLT_MAX;
    for (int j = 0; j < W; ++j) {
        l = std::min(l, lo[j]);
        h = std::max(h, hi[j]);
    }
    st.min = l;
    st.max = h;
    st.mean = sum / double(finite);
    // Second pass around the mean: sum(x^2) - n*mean^2 cancels badly for offset data.
    const float m = float(st.mean);
    const double mErr = st.mean - double(m);  // the float mean's error, corrected below
    double ss = 0, sd = 0;
    kr.statsDev(p, blocks, m, &sd, &ss);
    i = blocks * kernels::kStatsBlock;
    for (; i < n; ++i) {
        const float v = p[i];
        if (std::fabs(v) <= FLT_MAX) {
            const double d = double(v) - double(m);
            ss += d * d;
            sd += d;
        }
    }
    // sum((x - mean)^2) = sum((x - m)^2) - 2*(mean - m)*sum(x - m) + n*(mean - m)^2
    const double var = (ss - 2.0 * mErr * sd + double(finite) * mErr * mErr) / double(finite);
    st.std = std::sqrt(std::max(var, 0.0));
    return st;
}

}  // namespace quantlens
