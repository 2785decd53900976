#include "quant/histogram.h"

#include "kernels/quantrun.h"
#include "workteam.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

namespace quantlens {

int64_t Histogram::total() const
{
    int64_t t = below + above;
    for (const int64_t c : counts)
        t += c;
    return t;
}

namespace {

// numpy.histogram(x, bins, range=(lo, hi))'s bin for one in-range value, exactly: its
// edges are k * ((hi - lo) / bins) + lo in float64 (the last is hi), it guesses
// (x - lo) * (bins / (hi - lo)) and then corrects by one against those edges.
int32_t numpyBin(double v, double lo, double hi, int32_t bins)
{
    if (!(hi > lo))
        return 0;  // lo == hi: the only in-range value is lo itself (numpy would widen by 0.5; we keep [lo, hi])
    const double step = (hi - lo) / double(bins);
    auto edge = [&](int64_t k) { return k == bins ? hi : double(k) * step + lo; };
    const double norm = double(bins) / (hi - lo);
    int64_t b = int64_t((v - lo) * norm);
    if (b >= bins)
        b = bins - 1;
    if (b < 0)
        b = 0;
    if (v < edge(b))
        --b;
    else if (b != bins - 1 && v >= edge(b + 1))
        ++b;
    return int32_t(std::clamp<int64_t>(b, 0, bins - 1));
}

using quantrun::SlotParams;

constexpr int kChunk = 1024;

// Counts of n values by slot (kernels/quantrun.h, shifted by one): [0] below, [1..bins]
// the bins, [bins+1] above.
template <bool Abs>
std::vector<int64_t> countSlots(const float* x, int64_t n, const SlotParams& sp, double lo, double hi)
{
    const int32_t bins = sp.bins;
    std::vector<int64_t> counts(size_t(bins) + 2, 0);
    // Slots are shifted by one: 0 is "below", 1..bins are the bins, bins+1 is "above",
    // bins+2 is NaN (never counted) and -2 "near an edge, decide exactly" (kernels/quantrun.h).
    // The slot kernel lists where the -2 are, so the scatter has no test per value; the
    // increments go to four interleaved copies of the counts so runs of equal bins do not
    // serialise on one memory location.
    int32_t idx[kChunk], nearAt[kChunk];
    const size_t stride = size_t(bins) + 3;
    std::vector<int32_t> sub(4 * stride, 0);
    int32_t* s0 = sub.data();
    int32_t* s1 = s0 + stride;
    int32_t* s2 = s1 + stride;
    int32_t* s3 = s2 + stride;
    int64_t sinceFlush = 0;
    auto flush = [&] {
        for (size_t b = 0; b <= size_t(bins) + 1; ++b)
            counts[b] += int64_t(s0[b]) + s1[b] + s2[b] + s3[b];
        std::fill(sub.begin(), sub.end(), 0);
        sinceFlush = 0;
    };
    const quantrun::QuantKernels& kr = quantrun::activeQuant();
    for (int64_t start = 0; start < n; start += kChunk) {
        const float* p = x + start;
        const int m = int(std::min<int64_t>(kChunk, n - start));
        const int near = kr.histogramSlots(p, idx, m, sp, Abs, nearAt);
        for (int k = 0; k < near; ++k) {  // below, above and NaN too (kernels/quantrun.h)
            const int i = nearAt[k];
            const double v = Abs ? std::fabs(double(p[i])) : double(p[i]);
            idx[i] = v != v ? bins + 2 : v < lo ? 0 : v > hi ? bins + 1 : numpyBin(v, lo, hi, bins) + 1;
        }
        int i = 0;
        for (; i + 4 <= m; i += 4) {
            ++s0[idx[i]];
            ++s1[idx[i + 1]];
            ++s2[idx[i + 2]];
            ++s3[idx[i + 3]];
        }
        for (; i < m; ++i)
            ++s0[idx[i]];
        sinceFlush += m;
        if (sinceFlush > (int64_t(1) << 30))  // the int32 sub-counts cannot overflow
            flush();
    }
    flush();
    return counts;
}

template <bool Abs>
Histogram histogramImpl(std::span<const float> x, double lo, double hi, int bins)
{
    Histogram h;
    h.lo = lo;
    h.hi = hi;
    if (bins < 1 || !std::isfinite(lo) || !std::isfinite(hi) || hi < lo)
        return h;
    h.counts.assign(size_t(bins), 0);
    // Float bounds that give the same answers as comparing against the double bounds:
    // x < lo  <=>  x < loF (loF = smallest float >= lo), x > hi <=> x > hiF.
    float loF = float(lo);
    if (double(loF) < lo)
        loF = std::nextafter(loF, FLT_MAX);
    float hiF = float(hi);
    if (double(hiF) > hi)
        hiF = std::nextafter(hiF, -FLT_MAX);
    const bool degenerate = !(hi > lo);
    const float scale = degenerate ? 0.0f : float(double(bins) / (hi - lo));
    const int32_t last = bins - 1;
    // The float index is off from the exact one by at most a few ulps of the index plus
    // lo's float rounding; values closer than `tol` to a bin edge take the exact (numpy)
    // path, so the counts equal numpy.histogram's for any input.
    const double loErr = std::fabs(double(loF) - lo) + double(std::nextafter(std::fabs(loF), FLT_MAX) - std::fabs(loF));
    float tol = float(double(bins) * 4e-7 + loErr * double(scale) * 2.0 + 1e-6);
    if (tol > 0.25f || degenerate)
        tol = 0.5f;  // every value goes the exact way

    const SlotParams sp{loF, hiF, scale, tol, float(last), float(bins), bins};
    // Parts of whole kChunk runs go to the work team, each counting into its own array;
    // the counts are integers, so adding the parts' arrays gives one thread's counts
    // whatever the split. Four parts per thread: a thread slowed by other processes
    // leaves its last parts to the others.
    const int64_t n = int64_t(x.size());
    const int64_t runs = (n + kChunk - 1) / kChunk;
    const int64_t parts = n >= kTeamMinValues ? std::min<int64_t>(int64_t(teamThreads()) * 4, runs) : 1;
    std::vector<std::vector<int64_t>> partCounts(static_cast<size_t>(parts));
    parallelFor(parts, [&](int64_t p) {
        const int64_t b = runs * p / parts * kChunk, e = std::min(n, runs * (p + 1) / parts * kChunk);
        partCounts[size_t(p)] = countSlots<Abs>(x.data() + b, e - b, sp, lo, hi);
    });
    for (const std::vector<int64_t>& c : partCounts) {
        h.below += c[0];
        for (int b = 0; b < bins; ++b)
            h.counts[size_t(b)] += c[size_t(b) + 1];
        h.above += c[size_t(bins) + 1];
    }
    return h;
}

}  // namespace

Histogram computeHistogram(std::span<const float> x, double lo, double hi, int bins)
{
    return histogramImpl<false>(x, lo, hi, bins);
}

Histogram computeAbsHistogram(std::span<const float> x, double hi, int bins)
{
    return histogramImpl<true>(x, 0.0, hi, bins);
}

}  // namespace quantlens
