#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/quantrun.h"

namespace quantlens {

// Round-trip error of x -> xhat. Named by formula:
//   mse = sum((x-xhat)^2)/n; sqnrDb = 10*log10(sum(x^2)/sum((x-xhat)^2)) (inf if exact);
//   cosine = <x,xhat>/(|x||xhat|) (1 when both are zero); maxAbsError = max|x-xhat|.
struct Metrics {
    double mse = 0;
    double sqnrDb = 0;
    double cosine = 1;
    double maxAbsError = 0;
    double clampedFraction = 0;
    int64_t count = 0;
};

Metrics computeMetrics(std::span<const float> x, std::span<const float> xhat, int64_t clampedCount = 0);
// The metrics of n values from their sums (kernels/quantrun.h), as computeMetrics forms them.
Metrics metricsFromSums(const quantrun::Sums& s, int64_t n, int64_t clampedCount);
// The sums of n values in the chunked order of kernels/quantrun.h (kSumChunk), the chunks
// spread over the work team (workteam.h) for long runs: the same bits on any thread count.
quantrun::Sums sumChunks(const float* x, const float* y, int64_t n);
// computeMetrics fed piece by piece, so a caller can compare a tensor with its decoded copy
// one cache-sized piece at a time: pieces whose lengths are multiples of kPiece (the last
// may be shorter) give the bits of one computeMetrics call over the whole run.
class MetricsRun {
public:
    static constexpr int64_t kPiece = 512;
    void add(std::span<const float> x, std::span<const float> xhat);
    Metrics finish(int64_t clampedCount = 0) const;

private:
    quantrun::Sums total_, chunk_;  // the folded whole chunks, the chunk being filled
    int64_t n_ = 0;
};
// Per output channel along axis 0 of a [rows, cols] matrix.
std::vector<Metrics> computeRowMetrics(std::span<const float> x, std::span<const float> xhat, int64_t rows, int64_t cols);

struct TensorStats {
    double min = 0, max = 0, mean = 0, std = 0;  // float64 accumulation, population std (ddof=0)
    int64_t count = 0;
    int64_t nonFinite = 0;  // NaN/inf, excluded from the statistics
};
TensorStats computeStats(std::span<const float> x);

}  // namespace quantlens
