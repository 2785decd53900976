#include "quant/calibrate.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>

#include "kernels/reduce.h"
#include "quant/histogram.h"
#include "quant/quantize.h"

namespace quantlens {

namespace {

constexpr int kBins = 2048;     // TensorRT / pytorch-quantization and torch's HistogramObserver
constexpr int kStartBin = 128;  // pytorch-quantization's start_bin for entropy and mse

// np.histogram(|x|, bins=2048, range=(0, amax)), as pytorch-quantization's
// calibrate_weights() builds it; computeAbsHistogram gives numpy's counts exactly.
void absHistogram(std::span<const float> x, float amax, std::vector<double>& counts)
{
    const Histogram h = computeAbsHistogram(x, double(amax), kBins);
    counts.assign(h.counts.begin(), h.counts.end());
}

// Round half to even for |v| < 2^22 without a libm call (see quantize.cpp).
inline float roundHalfEven(float v)
{
    return (v + 12582912.0f) - 12582912.0f;
}

// pytorch-quantization _compute_amax_percentile: cdf = cumsum(hist / total) in float64,
// idx = searchsorted(cdf, p/100) (first cdf >= p/100), amax = edges[idx].
float percentileAmaxTrt(const std::vector<double>& hist, float amax, double percentile)
{
    double total = 0;
    for (const double c : hist)
        total += c;
    if (total == 0)
        return 0.0f;
    const double target = percentile / 100.0;
    double cdf = 0;
    size_t idx = hist.size();
    for (size_t i = 0; i < hist.size(); ++i) {
        cdf += hist[i] / total;
        if (cdf >= target) {
            idx = i;
            break;
        }
    }
    return float(double(idx) * double(amax) / double(kBins));
}

// pytorch-quantization _compute_amax_entropy (TensorRT's legacy KL calibrator): for every
// candidate end bin i in [128, 2048], the reference P is bins[:i] with everything beyond
// folded into bin i-1; Q merges bins[:i] into 128 groups (bin j -> floor(128 j / i)) and
// spreads each group's count evenly over its non-empty bins (empty bins stay empty: that
// is the "smoothing"). The last i with the smallest KL(P||Q) wins; amax = edges[i].
// Computed in O(128) per candidate from prefix sums instead of O(i):
//   KL = (sum_j r_j log r_j - sum_j r_j log q_j) / SP + log(SQ / SP),
// where group k contributes S_k log(S_k / m_k) to the second sum.
float entropyAmaxTrt(std::vector<double> bins, float amax, int bits)
{
    const int nq = 1 << (bits - 1);
    const int n = int(bins.size());
    bins[0] = bins[1];  // sic: the reference overwrites the zero bin with its neighbour
    std::vector<double> P(size_t(n) + 1, 0.0), NZ(size_t(n) + 1, 0.0), RL(size_t(n) + 1, 0.0);
    for (int j = 0; j < n; ++j) {
        const double b = bins[size_t(j)];
        P[size_t(j) + 1] = P[size_t(j)] + b;
        NZ[size_t(j) + 1] = NZ[size_t(j)] + (b != 0 ? 1.0 : 0.0);
        RL[size_t(j) + 1] = RL[size_t(j)] + (b > 0 ? b * std::log(b) : 0.0);
    }
    const double total = P[size_t(n)];
    if (total <= 0)
        return 0.0f;
    double best = std::numeric_limits<double>::infinity();
    int bestI = -1;
    for (int i = std::min(kStartBin, n); i <= n; ++i) {
        const double tail = total - P[size_t(i)];
        const double last = bins[size_t(i) - 1];
        const double SQ = P[size_t(i)];
        double kl;
        if (SQ <= 0 || (last == 0 && tail > 0)) {
            kl = std::numeric_limits<double>::infinity();
        } else {
            const double rLast = last + tail;
            double sumRlogR = RL[size_t(i) - 1] + (rLast > 0 ? rLast * std::log(rLast) : 0.0);
            double sumRlogQ = 0;
            double lastGroupLogQ = 0;
            for (int k = 0; k < nq; ++k) {
                const int64_t j0 = (int64_t(k) * i + nq - 1) / nq;
                const int64_t j1 = std::min<int64_t>((int64_t(k + 1) * i + nq - 1) / nq, i);
                if (j1 <= j0)
                    continue;
                const double S = P[size_t(j1)] - P[size_t(j0)];
                const double m = NZ[size_t(j1)] - NZ[size_t(j0)];
                if (m > 0 && S > 0) {
                    const double lq = std::log(S / m);
                    sumRlogQ += S * lq;
                    if (j1 == i)
                        lastGroupLogQ = lq;
                }
            }
            sumRlogQ += tail * lastGroupLogQ;  // the folded tail sits in bin i-1 (non-empty here)
            kl = (sumRlogR - sumRlogQ) / total + std::log(SQ / total);
        }
        if (!(kl > best)) {  // ties go to the later bin, as the reference's reversed argmin
            if (!std::isnan(kl)) {
                best = kl;
                bestI = i;
            }
        }
    }
    if (bestI < 0)
        return amax;
    return float(double(bestI) * double(amax) / double(kBins));
}

// pytorch-quantization _compute_amax_mse: candidates are the bin centres from bin 128 on;
// the objective is sum(count * (fake_quant(centre) - centre)^2) with its narrow-range
// quantizer (scale = maxBound / amax, round half even, clamp to +-maxBound), in float32
// like the reference. First minimum wins.
float mseAmaxTrt(const std::vector<double>& hist, float amax, int bits)
{
    std::vector<float> centers;
    std::vector<double> counts;
    std::vector<float> allCenters(hist.size());
    for (size_t b = 0; b < hist.size(); ++b) {
        const float e0 = float(double(b) * double(amax) / double(kBins));
        const float e1 = float(double(b + 1) * double(amax) / double(kBins));
        allCenters[b] = (e0 + e1) / 2.0f;
        if (hist[b] != 0) {
            centers.push_back(allCenters[b]);
            counts.push_back(hist[b]);
        }
    }
    const float maxBound = float((1 << (bits - 1)) - 1);
    double best = std::numeric_limits<double>::infinity();
    float bestAmax = amax;
    for (size_t i = kStartBin; i < allCenters.size(); ++i) {
        const float a = allCenters[i];
        float scale = maxBound / a;
        if (a <= 1.0f / float(1 << 24))
            scale = 0.0f;
        double err = 0;
        for (size_t c = 0; c < centers.size(); ++c) {
            float q = std::clamp(centers[c] * scale, -maxBound - 1.0f, maxBound + 1.0f);
            q = std::clamp(roundHalfEven(q), -maxBound, maxBound);
            const float d = q / scale - centers[c];
            err += double(d * d * float(counts[c]));
        }
        // the reference compares float32 means
        const float mean = float(err / double(hist.size()));
        if (mean < best) {
            best = mean;
            bestAmax = a;
        }
    }
    return bestAmax;
}

// Round trip of one value through the scheme (for the affine MSE search).
float fakeQuant(const QuantSpec& spec, float v, float scale, int32_t zp, int32_t qmin, int32_t qmax)
{
    float t = spec.scheme == Scheme::Seed ? v / scale : v * (1.0f / scale);
    if (t != t)
        t = 0;
    t = std::clamp(t, -1.0e6f, 1.0e6f);
    int64_t q = int64_t(roundHalfEven(t)) + zp;
    q = std::clamp<int64_t>(q, qmin, qmax);
    return (float(q) - float(zp)) * scale;
}

// Affine MSE search (ours; pytorch-quantization has only the symmetric one): shrink
// [lo, hi] by t = (i+1)/2048 for i >= 127, keep the t whose round trip through the
// scheme has the smallest error on a 2048-bin histogram of x (each bin at its centre).
Range mseRangeAffine(std::span<const float> x, const QuantSpec& spec, Range mm)
{
    const Histogram h = computeHistogram(x, mm.lo, mm.hi, kBins);
    std::vector<float> centers;
    std::vector<double> counts;
    for (size_t b = 0; b < h.counts.size(); ++b)
        if (h.counts[b] != 0) {
            centers.push_back(float(h.binCenter(b)));
            counts.push_back(double(h.counts[b]));
        }
    int32_t qmin = 0, qmax = 0;
    integerRange(spec, qmin, qmax);
    double best = std::numeric_limits<double>::infinity();
    Range bestR = mm;
    for (int i = kStartBin - 1; i < kBins; ++i) {
        const double t = double(i + 1) / double(kBins);
        const Range r{float(double(mm.lo) * t), float(double(mm.hi) * t)};
        float scale = 0;
        int32_t zp = 0;
        scaleAndZeroPoint(spec, r.lo, r.hi, scale, zp);
        if (!(scale > 0) || !std::isfinite(scale))
            continue;
        double err = 0;
        for (size_t c = 0; c < centers.size(); ++c) {
            const double d = double(fakeQuant(spec, centers[c], scale, zp, qmin, qmax)) - double(centers[c]);
            err += d * d * counts[c];
        }
        if (err < best) {
            best = err;
            bestR = r;
        }
    }
    return bestR;
}

// The k-th smallest finite value (0-based) without sorting everything: a numpy-exact
// histogram says which bin holds rank k; only that bin's values (edge_b <= v < edge_b+1)
// are gathered and selected from.
double orderStatistic(std::span<const float> x, int64_t k, Range mm, const Histogram& h, std::vector<float>& scratch)
{
    const int bins = int(h.counts.size());
    int64_t before = 0;
    int b = 0;
    for (; b < bins; ++b) {
        if (before + h.counts[size_t(b)] > k)
            break;
        before += h.counts[size_t(b)];
    }
    if (b >= bins || mm.hi <= mm.lo)
        return double(b >= bins ? mm.hi : mm.lo);
    const double step = (h.hi - h.lo) / double(bins);
    const double e0 = double(b) * step + h.lo;
    const double e1 = b + 1 == bins ? h.hi : double(b + 1) * step + h.lo;
    const bool lastBin = b + 1 == bins;
    scratch.clear();
    for (const float v : x) {
        const double d = v;
        if (d >= e0 && (d < e1 || (lastBin && d <= e1)))
            scratch.push_back(v);
    }
    const int64_t r = k - before;
    if (int64_t(scratch.size()) != h.counts[size_t(b)] || r < 0 || r >= int64_t(scratch.size())) {
        // cannot happen with numpy-exact bins; select from everything rather than be wrong
        scratch.clear();
        for (const float v : x)
            if (std::isfinite(v))
                scratch.push_back(v);
        if (k >= int64_t(scratch.size()))
            return double(mm.hi);
        std::nth_element(scratch.begin(), scratch.begin() + k, scratch.end());
        return double(scratch[size_t(k)]);
    }
    std::nth_element(scratch.begin(), scratch.begin() + r, scratch.end());
    return double(scratch[size_t(r)]);
}

// numpy.percentile(x, q), method 'linear' (numpy 1.24 _quantile + _lerp), on float64 values.
double numpyPercentile(std::span<const float> x, int64_t n, double q100, Range mm, const Histogram& h,
                       std::vector<float>& scratch)
{
    const double q = q100 / 100.0;
    const double virt = (double(n) * q + (1.0 + q * (1.0 - 1.0 - 1.0))) - 1.0;
    double prevD = std::floor(virt);
    int64_t prev = int64_t(prevD);
    int64_t next = prev + 1;
    prev = std::clamp<int64_t>(prev, 0, n - 1);
    next = std::clamp<int64_t>(next, 0, n - 1);
    const double gamma = virt - prevD;
    const double a = orderStatistic(x, prev, mm, h, scratch);
    const double b = next == prev ? a : orderStatistic(x, next, mm, h, scratch);
    const double diff = b - a;
    if (gamma >= 0.5)
        return b - diff * (1.0 - gamma);
    return a + diff * gamma;
}

int64_t finiteCount(std::span<const float> x)
{
    int64_t n = 0;
    for (const float v : x)
        n += std::isfinite(v) ? 1 : 0;
    return n;
}

}  // namespace

bool isSymmetricScheme(Scheme s)
{
    return s == Scheme::TorchSymmetric || s == Scheme::NarrowSymmetric || s == Scheme::Q8_0;
}

Range minMaxRange(std::span<const float> x)
{
    // 16 lanes over whole groups (kernels/reduce.h fixes the lanes, so every ISA gives the
    // same answer, zero signs included). The finiteness test keeps a stray inf from a
    // damaged file from blowing the scale up.
    constexpr int W = kernels::kMinMaxLanes;
    float lo[W], hi[W];
    for (int j = 0; j < W; ++j) {
        lo[j] = FLT_MAX;
        hi[j] = -FLT_MAX;
    }
    const float* p = x.data();
    const size_t n = x.size();
    const size_t groups = n / W;
    kernels::activeReduce().minMaxFinite(p, int64_t(groups), lo, hi);
    size_t i = groups * W;
    for (; i < n; ++i) {
        const float v = p[i];
        if (std::fabs(v) <= FLT_MAX) {
            lo[0] = std::min(lo[0], v);
            hi[0] = std::max(hi[0], v);
        }
    }
    float l = FLT_MAX, h = -FLT_MAX;
    for (int j = 0; j < W; ++j) {
        l = std::min(l, lo[j]);
        h = std::max(h, hi[j]);
    }
    if (l > h)
        return {0.0f, 0.0f};
    return {l, h};
}

Range percentileRange(std::span<const float> x, double percentile, bool symmetric)
{
    const Range mm = minMaxRange(x);
    if (symmetric) {
        const float amax = std::max(std::fabs(mm.lo), std::fabs(mm.hi));
        if (amax == 0.0f)
            return {0.0f, 0.0f};
        std::vector<double> hist;
        absHistogram(x, amax, hist);
        const float a = percentileAmaxTrt(hist, amax, percentile);
        return {-a, a};
    }
    std::vector<float> scratch;
    const Histogram h = computeHistogram(x, mm.lo, mm.hi, 4096);
    const int64_t n = h.total();  // finite values (NaN is not counted; inf was skipped by minmax and lands in below/above)
    if (n == 0)
        return {0.0f, 0.0f};
    const double lo = numpyPercentile(x, n, 100.0 - percentile, mm, h, scratch);
    const double hi = numpyPercentile(x, n, percentile, mm, h, scratch);
    return {float(lo), float(hi)};
}

Range entropyRange(std::span<const float> x, const QuantSpec& spec)
{
    const Range mm = minMaxRange(x);
    const float amax = std::max(std::fabs(mm.lo), std::fabs(mm.hi));
    if (amax == 0.0f)
        return {0.0f, 0.0f};
    std::vector<double> hist;
    absHistogram(x, amax, hist);
    const float a = entropyAmaxTrt(std::move(hist), amax, std::clamp(spec.bits, 2, 8));
    if (isSymmetricScheme(spec.scheme))
        return {-a, a};
    // Affine schemes: the KL calibrator is defined on |x|; clip each side at amax.
    return {std::max(mm.lo, -a), std::min(mm.hi, a)};
}

Range mseRange(std::span<const float> x, const QuantSpec& spec)
{
    const Range mm = minMaxRange(x);
    if (mm.lo == mm.hi)
        return mm;
    if (isSymmetricScheme(spec.scheme)) {
        const float amax = std::max(std::fabs(mm.lo), std::fabs(mm.hi));
        std::vector<double> hist;
        absHistogram(x, amax, hist);
        const float a = mseAmaxTrt(hist, amax, std::clamp(spec.bits, 2, 8));
        return {-a, a};
    }
    return mseRangeAffine(x, spec, mm);
}

namespace {

// c10 div_floor_floating(a, b) for float, as torch.div(..., rounding_mode='floor') runs it.
float divFloorTorch(float a, float b)
{
    if (b == 0.0f)
        return a / b;
    const float mod = std::fmod(a, b);
    float div = (a - mod) / b;
    if (mod != 0.0f && ((b < 0.0f) != (mod < 0.0f)))
        div -= 1.0f;
    float fl;
    if (div != 0.0f) {
        fl = std::floor(div);
        if (div - fl > 0.5f)
            fl += 1.0f;
    } else {
        fl = std::copysign(0.0f, a / b);
    }
    return fl;
}

// The same, with a fast path: far from an integer quotient, floor(a / b) is the answer.
inline float divFloorFast(float a, float b)
{
    const float q = a / b;
    const float f = std::floor(q);
    const float frac = q - f;
    if (frac > 1e-3f && frac < 1.0f - 1e-3f && std::fabs(q) < 1e6f)
        return f;
    return divFloorTorch(a, b);
}

// torch.ao.quantization.HistogramObserver (torch 1.13), one forward() then
// _non_linear_param_search(), with its arithmetic: the histogram and the error terms in
// float32, bin widths as Python floats (double), sums of the error in double.
struct TorchHistogramObserver {
    std::vector<float> hist;  // torch keeps counts as float32
    float minVal = 0, maxVal = 0;
    int bins = kBins;
    int dstBins = 256;  // 2 ** iinfo(dtype).bits, for qint8 and quint8 alike

    void observe(std::span<const float> x)
    {
        const Range mm = minMaxRange(x);
        minVal = mm.lo;
        maxVal = mm.hi;
        // forward() calls torch.histc(x, bins, min=int(min_val), max=int(max_val)):
        // int() truncates the range to integers (values outside are not counted).
        // histc falls back to the data's min/max when the two are equal, then to +-1.
        double L = std::trunc(double(minVal)), R = std::trunc(double(maxVal));
        if (L == R) {
            L = double(minVal);
            R = double(maxVal);
        }
        if (L == R) {
            L -= 1;
            R += 1;
        }
        const float Lf = float(L), Rf = float(R);
        hist.assign(size_t(bins), 0.0f);
        std::vector<int64_t> counts(size_t(bins) + 1, 0);  // slot `bins` collects the skipped values
        const float nb = float(int64_t(bins));
        const float width = Rf - Lf;
        // pos = int64((elt - L) * bins / (R - L)), a true float32 division as in ATen's
        // histogramdd_cpu_contiguous; computed in fixed chunks so it vectorises.
        constexpr int kChunk = 256;
        int32_t idx[kChunk];
        auto slot = [&](float e) {
            const bool in = (e >= Lf) & (e <= Rf);
            float f = (e - Lf) * nb / width;
            f = in ? f : 0.0f;
            int32_t pos = int32_t(f);
            pos = pos >= bins ? bins - 1 : pos;
            return in ? pos : bins;
        };
        size_t start = 0;
        for (; start + kChunk <= x.size(); start += kChunk) {
            const float* __restrict p = x.data() + start;
            for (int i = 0; i < kChunk; ++i)
                idx[i] = slot(p[i]);
            for (int i = 0; i < kChunk; ++i)
                ++counts[size_t(idx[i])];
        }
        for (; start < x.size(); ++start)
            ++counts[size_t(slot(x[start]))];
        for (int i = 0; i < bins; ++i)
            hist[size_t(i)] = float(counts[size_t(i)]);
    }

    static float getNorm(float begin, float end, float density)
    {
        const float norm = (end * end * end - begin * begin * begin) / 3.0f;
        return density * norm;
    }

    double quantizationError(int nextStart, int nextEnd, const std::vector<int>& nonzero) const
    {
        const double bw = (double(maxVal) - double(minVal)) / double(bins);
        const double dbw = bw * double(nextEnd - nextStart + 1) / double(dstBins);
        if (dbw == 0.0)
            return 0.0;
        const float bwf = float(bw), dbwf = float(dbw), halfDbw = float(dbw / 2);
        const float maxDst = float(dstBins - 1);
        double sum = 0;
        for (const int i : nonzero) {
            const float srcBegin = float(int64_t(i) - nextStart) * bwf;
            const float srcEnd = srcBegin + bwf;
            const float dBegin = std::clamp(divFloorFast(srcBegin, dbwf), 0.0f, maxDst);
            const float dBeginCenter = (dBegin + 0.5f) * dbwf;
            const float dEnd = std::clamp(divFloorFast(srcEnd, dbwf), 0.0f, maxDst);
            const float density = hist[size_t(i)] / bwf;
            float norm = 0.0f;
            norm += getNorm(srcBegin - dBeginCenter, halfDbw, density);
            norm += (dEnd - dBegin - 1.0f) * getNorm(float(-dbw / 2), float(dbw / 2), density);
            const float dEndCenter = dEnd * dbwf + halfDbw;
            norm += getNorm(float(-dbw / 2), srcEnd - dEndCenter, density);
            sum += double(norm);
        }
        return double(float(sum));  // norm.sum().item(): a float32 total
    }

    Range search() const
    {
        std::vector<float> cSum(static_cast<size_t>(bins));
        double acc = 0;  // torch's cumsum accumulates float in double
        for (int i = 0; i < bins; ++i) {
            acc += double(hist[size_t(i)]);
            cSum[size_t(i)] = float(acc);
        }
        double total = 0;
        for (const float h : hist)
            total += double(h);
        total = double(float(total));
        std::vector<int> nonzero;
        for (int i = 0; i < bins; ++i)
            if (hist[size_t(i)] != 0.0f)
                nonzero.push_back(i);

        const double stepsize = 1e-5;
        double alpha = 0.0, beta = 1.0;
        int startBin = 0, endBin = bins - 1;
        double normMin = std::numeric_limits<double>::infinity();
        while (alpha < beta) {
            const double nextAlpha = alpha + stepsize;
            const double nextBeta = beta - stepsize;
            // cSum[l] < next_alpha * total compares in float32 (the Python float is cast).
            const float ta = float(nextAlpha * total);
            const float tb = float(nextBeta * total);
            // l: first index >= startBin with cSum >= ta, at most endBin (cSum is monotone)
            int l = int(std::lower_bound(cSum.begin(), cSum.end(), ta) - cSum.begin());
            l = std::clamp(l, startBin, endBin);
            // r: last index <= endBin with cSum <= tb, at least startBin
            int r = int(std::upper_bound(cSum.begin(), cSum.end(), tb) - cSum.begin()) - 1;
            r = std::clamp(r, startBin, endBin);
            int nextStart = startBin, nextEnd = endBin;
            if ((l - startBin) > (endBin - r)) {
                nextStart = l;
                alpha = nextAlpha;
            } else {
                nextEnd = r;
                beta = nextBeta;
            }
            if (nextStart == startBin && nextEnd == endBin)
                continue;
            const double norm = quantizationError(nextStart, nextEnd, nonzero);
            if (norm > normMin)
                break;
            normMin = norm;
            startBin = nextStart;
            endBin = nextEnd;
        }
        const float bw = (maxVal - minVal) / float(bins);
        return {minVal + bw * float(startBin), minVal + bw * float(endBin + 1)};
    }
};

}  // namespace

Range histogramL2Range(std::span<const float> x)
{
    if (finiteCount(x) == 0)
        return {0.0f, 0.0f};
    TorchHistogramObserver obs;
    obs.observe(x);
    return obs.search();
}

Result<Range> calibrateRange(std::span<const float> x, const QuantSpec& spec)
{
    switch (spec.calib) {
    case CalibMethod::MinMax: return minMaxRange(x);
    case CalibMethod::Manual:
        if (!std::isfinite(spec.manualLo) || !std::isfinite(spec.manualHi) || !(spec.manualLo <= spec.manualHi))
            return makeError("bad-spec", "manual range needs finite lo <= hi");
        return Range{spec.manualLo, spec.manualHi};
    case CalibMethod::Percentile:
        if (!(spec.percentile > 0.0 && spec.percentile <= 100.0))
            return makeError("bad-spec", "percentile must be in (0, 100]");
        return percentileRange(x, spec.percentile, isSymmetricScheme(spec.scheme));
    case CalibMethod::Mse: return mseRange(x, spec);
    case CalibMethod::Entropy: return entropyRange(x, spec);
    case CalibMethod::HistogramL2: return histogramL2Range(x);
    }
    return makeError("bad-spec", "unknown calibration method");
}

std::vector<CalibSuggestion> suggestRanges(std::span<const float> x, const QuantSpec& spec)
{
    std::vector<CalibSuggestion> out;
    QuantSpec s = spec;
    for (const CalibMethod m : {CalibMethod::MinMax, CalibMethod::Percentile, CalibMethod::Mse, CalibMethod::Entropy,
                                CalibMethod::HistogramL2}) {
        s.calib = m;
        if (m == CalibMethod::Percentile && !(s.percentile > 0.0 && s.percentile <= 100.0))
            s.percentile = 99.99;
        auto r = calibrateRange(x, s);
        if (r)
            out.push_back({m, calibName(s), r->lo, r->hi});
    }
    if (spec.calib == CalibMethod::Manual)
        out.push_back({CalibMethod::Manual, calibName(spec), spec.manualLo, spec.manualHi});
    return out;
}

}  // namespace quantlens
