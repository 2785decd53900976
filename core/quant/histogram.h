#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace quantlens {

// Counts over [lo, hi] in `bins` equal bins, one pass. Values outside [lo, hi] are
// counted in `below`/`above`, not folded into the end bins; NaN is ignored.
// The same code feeds the plots and the percentile / entropy calibrators.
struct Histogram {
    double lo = 0, hi = 0;
    std::vector<int64_t> counts;
    int64_t below = 0, above = 0;

    double binWidth() const { return counts.empty() ? 0.0 : (hi - lo) / double(counts.size()); }
    double binCenter(size_t i) const { return lo + (double(i) + 0.5) * binWidth(); }
    int64_t total() const;
};

// Bin edges are numpy's (k * ((hi - lo) / bins) + lo, the last one hi, right edge
// inclusive for the last bin) and the counts equal numpy.histogram(x, bins, (lo, hi))'s.
Histogram computeHistogram(std::span<const float> x, double lo, double hi, int bins);
// The same over |x| and [0, hi] (the calibrators' histogram of magnitudes).
Histogram computeAbsHistogram(std::span<const float> x, double hi, int bins);

}  // namespace quantlens
