#include "quant/quantize.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "halffloat.h"
#include "quant/calibrate.h"
#include "quant/ggmlblocks.h"
#include "quant/metrics.h"
#include "quant/rounding.h"
#include "kernels/quantrun.h"
#include "workteam.h"

namespace quantlens {

namespace {

using quantrun::Kernel;


// Long runs go to the work team in sum-sized chunks (the chunks of the metrics contract,
// so the round trip's sums are computeMetrics' bits on any number of threads).
void forChunks(int64_t n, const std::function<void(int64_t c, int64_t begin, int64_t len)>& fn)
{
    constexpr int64_t C = quantrun::kSumChunk;
    parallelFor((n + C - 1) / C, [&](int64_t c) { fn(c, c * C, std::min(C, n - c * C)); }, n >= kTeamMinValues);
}

// Quantizes n contiguous values with one scale/zero point. Returns how many values
// rounded outside [qmin, qmax]. NaN maps to the zero point. No allocation below the
// team's threshold: this is the loop the GUI runs while the user drags a clamp line.
int64_t quantizeRun(const float* x, int8_t* q, int64_t n, Kernel kernel, float scale, int32_t zp,
                    int32_t qmin, int32_t qmax)
{
    const quantrun::QuantKernels& kr = quantrun::activeQuant();
    const float s = roundingMultiplier(kernel, scale);
    if (n < kTeamMinValues)
        return kr.quantize(x, q, n, kernel, s, zp, qmin, qmax);
    std::atomic<int64_t> clamped{0};
    forChunks(n, [&](int64_t, int64_t b, int64_t len) { clamped += kr.quantize(x + b, q + b, len, kernel, s, zp, qmin, qmax); });
    return clamped.load();
}

void dequantizeRun(const int8_t* q, float* out, int64_t n, bool isUnsigned, float scale, int32_t zp)
{
    const quantrun::QuantKernels& kr = quantrun::activeQuant();
    forChunks(n, [&](int64_t, int64_t b, int64_t len) { kr.dequantize(q + b, out + b, len, isUnsigned, scale, zp); });
}

// The one-sweep round trip of a run (kernels/quantrun.h roundTrip), chunk by chunk, the
// chunks' sums folded in order into *sums (which must be empty).
int64_t roundTripRun(const float* x, int8_t* q, float* y, int64_t n, Kernel kernel, float scale, int32_t zp,
                     int32_t qmin, int32_t qmax, bool isUnsigned, quantrun::Sums* sums)
{
    const quantrun::QuantKernels& kr = quantrun::activeQuant();
    const float s = roundingMultiplier(kernel, scale);
    if (n <= quantrun::kSumChunk)
        return kr.roundTrip(x, q, y, n, kernel, s, scale, zp, qmin, qmax, isUnsigned, sums);
    std::vector<quantrun::Sums> part(size_t((n + quantrun::kSumChunk - 1) / quantrun::kSumChunk));
    std::atomic<int64_t> clamped{0};
    forChunks(n, [&](int64_t c, int64_t b, int64_t len) {
        clamped += kr.roundTrip(x + b, q + b, y + b, len, kernel, s, scale, zp, qmin, qmax, isUnsigned, &part[size_t(c)]);
    });
    for (size_t c = 0; c < part.size(); ++c)
        quantrun::foldChunk(*sums, part[c], c == 0);
    return clamped.load();
}

struct ScaleZp {
    float scale;
    int32_t zp;
};

// The scheme's rule from a calibrated range to (scale, zero point).
ScaleZp paramsFromRange(const QuantSpec& spec, Range r, int32_t qmin, int32_t qmax)
{
    switch (spec.scheme) {
    case Scheme::Seed:
        // (max - min) / 255 in float32; zero point 0 (the snippet has none).
        return {(r.hi - r.lo) / float(qmax - qmin), 0};
    case Scheme::TorchSymmetric: {
        // observer.py _calculate_qparams, per_tensor/per_channel_symmetric, in float32.
        const float minNeg = std::min(r.lo, 0.0f);
        const float maxPos = std::max(r.hi, 0.0f);
        const float amax = std::max(-minNeg, maxPos);
        float scale = amax / float(double(qmax - qmin) / 2.0);
        scale = std::max(scale, FLT_EPSILON);
        int32_t zp = 0;
        if (spec.isUnsigned)  // quint8: 128 for the default range, midpoint for custom (bits < 8) ranges
            zp = spec.bits >= 8 ? 128 : (qmin + qmax) / 2;
        return {scale, zp};
    }
    case Scheme::TorchAffine: {
        const float minNeg = std::min(r.lo, 0.0f);
        const float maxPos = std::max(r.hi, 0.0f);
        float scale = (maxPos - minNeg) / float(qmax - qmin);
        scale = std::max(scale, FLT_EPSILON);
        // torch.round is half to even; minNeg / scale is a float32 division.
        const float t = std::nearbyint(minNeg / scale);
        int64_t zp = int64_t(qmin) - int64_t(t);
        zp = std::clamp<int64_t>(zp, qmin, qmax);
        return {scale, int32_t(zp)};
    }
    case Scheme::NarrowSymmetric: {
        // onnxruntime quant_utils.compute_scale_zp(symmetric=True): dr / dq in float64,
        // stored as float32; a scale below FLT_MIN becomes 1 with zero point 0.
        const float rmin = std::min(r.lo, 0.0f);
        const float rmax = std::max(r.hi, 0.0f);
        const float absmax = std::max(std::fabs(rmin), std::fabs(rmax));
        const double dr = double(absmax) - double(-absmax);
        const double s = dr / (double(qmax) - double(qmin));
        if (s < double(FLT_MIN))
            return {1.0f, 0};
        return {float(s), int32_t(std::nearbyint(double(qmin + qmax) / 2.0))};
    }
    case Scheme::Q8_0: {
        // ggml quantize_row_q8_0_ref: d = amax / 127 (float), stored as fp16.
        const float amax = std::max(std::fabs(r.lo), std::fabs(r.hi));
        const float d = amax / float(qmax);
        return {d, 0};
    }
    default: {
        // ggml block schemes pick a scale per block; for markers and grids the range's
        // symmetric step is the closest single number (1 for the float types).
        const float amax = std::max(std::fabs(r.lo), std::fabs(r.hi));
        return {qmax > 0 && amax > 0 ? amax / float(qmax) : 1.0f, 0};
    }
    }
}

// Where the values of one scale live. The tensor is seen as [outer, C, inner] around the
// channel axis; a channel's "row" is its outer*inner values in memory order (for [out, in]
// with axis 0 that is the row itself; for [in, out] with axis 1 it runs down the input axis).
struct Layout {
    int64_t outer = 1, C = 1, inner = 1;
    int64_t K = 1;          // values per channel
    int64_t group = 0;      // values per group along the channel row (0: whole row)
    int64_t groupsPerChannel = 1;
    bool perTensor = true;

    int64_t slices() const { return perTensor ? 1 : C * groupsPerChannel; }
    bool contiguousChannel() const { return outer == 1; }
    int64_t index(int64_t c, int64_t p) const { return ((p / inner) * C + c) * inner + (p % inner); }
};

Result<Layout> makeLayout(const std::vector<int64_t>& shape, int64_t numel, const QuantSpec& spec)
{
    Layout L;
    const bool grouped = spec.scheme == Scheme::Q8_0 || spec.granularity == Granularity::PerGroup;
    if (spec.granularity == Granularity::PerTensor && spec.scheme != Scheme::Q8_0) {
        L.K = numel;
        L.inner = numel;
        return L;
    }
    L.perTensor = false;
    const int64_t rank = int64_t(shape.size());
    if (rank == 0 || (rank == 1 && grouped)) {
        // A scalar or vector has no separate input axis: it is one row.
        L.C = 1;
        L.inner = numel;
    } else {
        if (spec.axis < 0 || spec.axis >= rank)
            return makeError("bad-spec", "channel axis " + std::to_string(spec.axis) + " is out of range for a rank-"
                                             + std::to_string(rank) + " tensor");
        for (int64_t d = 0; d < spec.axis; ++d)
            L.outer *= shape[size_t(d)];
        L.C = shape[size_t(spec.axis)];
        L.inner = L.C == 0 ? 0 : numel / L.outer / L.C;
        if (L.outer == 0 || L.C == 0)
            L.inner = 0;
    }
    L.K = L.outer * L.inner;
    if (grouped) {
        L.group = spec.scheme == Scheme::Q8_0 ? 32 : spec.groupSize;
        if (L.group < 1)
            return makeError("bad-spec", "group size must be at least 1");
        // A row that is not a multiple of the group size ends in one shorter group.
        L.groupsPerChannel = L.K == 0 ? 0 : (L.K + L.group - 1) / L.group;
    }
    return L;
}

Status checkSpec(const QuantSpec& spec)
{
    if (spec.bits < 2 || spec.bits > 8)
        return makeError("bad-spec", "bits must be 2..8, got " + std::to_string(spec.bits));
    if (spec.scheme == Scheme::Q8_0 && spec.isUnsigned)
        return makeError("bad-spec", "q8_0 has no unsigned form");
    if (spec.scheme == Scheme::Q8_0 && spec.reduceRange)
        return makeError("bad-spec", "q8_0 has no reduce_range form");
    // 2048-bin histogram searches on 32-value blocks are meaningless and cost tens of
    // seconds on one large matrix; say so instead of hanging the caller.
    if (spec.scheme == Scheme::Q8_0
        && (spec.calib == CalibMethod::Entropy || spec.calib == CalibMethod::Mse || spec.calib == CalibMethod::HistogramL2))
        return makeError("bad-spec", "q8_0 blocks of 32 values are too small for the '" + calibName(spec)
                                         + "' calibrator (use minmax, percentile or manual)");
    if (spec.granularity == Granularity::PerGroup && spec.groupSize < 1)
        return makeError("bad-spec", "group size must be at least 1");
    return Ok{};
}

}  // namespace

void scaleAndZeroPoint(const QuantSpec& spec, float lo, float hi, float& scale, int32_t& zeroPoint)
{
    int32_t qmin = 0, qmax = 0;
    integerRange(spec, qmin, qmax);
    const ScaleZp sz = paramsFromRange(spec, Range{lo, hi}, qmin, qmax);
    scale = spec.scheme == Scheme::Q8_0 ? halfToFloat(floatToHalf(sz.scale)) : sz.scale;
    zeroPoint = sz.zp;
}

namespace {

// keepParams: quantize with out.params as they are (requantize); otherwise calibrate.
// With `roundTrip` set and a per-tensor spec, the one slice is quantized, dequantized into
// roundTrip->xhat and measured in one sweep; roundTrip->done says whether that happened.
struct RoundTripOut {
    float* xhat;
    quantrun::Sums sums;
    bool done = false;
};

Status quantizeImpl(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec,
                    QuantizedTensor& out, bool keepParams, RoundTripOut* roundTrip = nullptr)
{
    if (auto st = checkSpec(spec); !st)
        return st.error();
    const auto numel = checkedNumel(shape.data(), shape.size());
    if (!numel)
        return makeError("bad-shape", "shape has a negative or overflowing size");
    if (*numel != int64_t(x.size()))
        return makeError("bad-shape", "shape holds " + std::to_string(*numel) + " values but " + std::to_string(x.size())
                                          + " were given");
    auto layout = makeLayout(shape, *numel, spec);
    if (!layout)
        return layout.error();
    const Layout& L = *layout;

    const int64_t nslices = L.slices();
    if (keepParams
        && (int64_t(out.params.scale.size()) != nslices || int64_t(out.params.zeroPoint.size()) != nslices))
        return makeError("bad-params", "the tensor's parameters do not fit its shape and spec");
    out.shape = shape;
    out.spec = spec;
    out.q.resize(size_t(*numel));
    out.clampedCount = 0;
    QuantParams& P = out.params;
    const Kernel kernel = roundingKernel(spec.scheme);
    if (keepParams) {
        std::vector<float> xs;
        std::vector<int8_t> qs;
        for (int64_t s = 0; s < nslices; ++s) {
            const int64_t c = L.perTensor ? 0 : s / L.groupsPerChannel;
            const int64_t g = L.perTensor ? 0 : s % L.groupsPerChannel;
            const int64_t p0 = L.group > 0 ? g * L.group : 0;
            const int64_t p1 = L.perTensor ? *numel : (L.group > 0 ? std::min(p0 + L.group, L.K) : L.K);
            const float scale = P.scale[size_t(s)];
            const int32_t zp = P.zeroPoint[size_t(s)];
            if (L.perTensor || L.contiguousChannel()) {
                const int64_t base = L.perTensor ? 0 : c * L.K + p0;
                out.clampedCount += quantizeRun(x.data() + base, out.q.data() + base, p1 - p0, kernel, scale, zp, P.qmin, P.qmax);
                continue;
            }
            xs.resize(size_t(p1 - p0));
            qs.resize(size_t(p1 - p0));
            for (int64_t p = p0; p < p1; ++p)
                xs[size_t(p - p0)] = x[size_t(L.index(c, p))];
            out.clampedCount += quantizeRun(xs.data(), qs.data(), p1 - p0, kernel, scale, zp, P.qmin, P.qmax);
            for (int64_t p = p0; p < p1; ++p)
                out.q[size_t(L.index(c, p))] = qs[size_t(p - p0)];
        }
        return Ok{};
    }
    int32_t rangeMin = 0, rangeMax = 0;  // the range the scale is computed for
    integerRange(spec, rangeMin, rangeMax);
    P.qmin = rangeMin;
    P.qmax = rangeMax;
    if (spec.reduceRange && spec.bits == 8
        && (spec.scheme == Scheme::TorchSymmetric || spec.scheme == Scheme::TorchAffine)) {
        // torch: reduce_range only shrinks the observer's range; quantize_per_tensor then
        // clamps to the full qint8/quint8 range, so the top value can round to 64 (128).
        P.qmin = spec.isUnsigned ? 0 : -128;
        P.qmax = spec.isUnsigned ? 255 : 127;
    }
    P.axis = L.perTensor ? -1 : spec.axis;
    if (!L.perTensor && shape.size() <= 1 && L.group > 0)
        P.axis = 0;
    P.groupSize = L.group;
    P.scale.resize(size_t(nslices));
    P.zeroPoint.resize(size_t(nslices));
    P.rangeLo = FLT_MAX;
    P.rangeHi = -FLT_MAX;

    // Slices are independent: groups of about a sum chunk of values go to the work team,
    // each with its own scratch and tallies (integers and min/max: any order gives the same);
    // the first failing slice's error is the one reported.
    const int64_t perSlice = L.perTensor ? *numel : (L.group > 0 ? L.group : L.K);
    const bool direct = L.perTensor || L.contiguousChannel();
    const int64_t perPart = std::max<int64_t>(1, quantrun::kSumChunk / std::max<int64_t>(1, perSlice));
    struct PartOut {
        int64_t clamped = 0;
        float lo = FLT_MAX, hi = -FLT_MAX;
        std::optional<Error> error;
    };
    std::vector<PartOut> partOut(static_cast<size_t>((nslices + perPart - 1) / perPart));
    parallelFor(
        int64_t(partOut.size()),
        [&](int64_t part) {
            PartOut& po = partOut[size_t(part)];
            std::vector<float> xs;  // scratch for channels that are strided in memory
            std::vector<int8_t> qs;
            if (!direct) {
                xs.resize(size_t(perSlice));
                qs.resize(size_t(perSlice));
            }
            for (int64_t s = part * perPart; s < std::min(nslices, (part + 1) * perPart); ++s) {
                const int64_t c = L.perTensor ? 0 : s / L.groupsPerChannel;
                const int64_t g = L.perTensor ? 0 : s % L.groupsPerChannel;
                const int64_t p0 = L.group > 0 ? g * L.group : 0;
                const int64_t p1 = L.perTensor ? *numel : (L.group > 0 ? std::min(p0 + L.group, L.K) : L.K);
                const int64_t n = p1 - p0;
                const float* src;
                int8_t* dst;
                if (direct) {
                    const int64_t base = L.perTensor ? 0 : c * L.K + p0;
                    src = x.data() + base;
                    dst = out.q.data() + base;
                } else {
                    for (int64_t p = p0; p < p1; ++p)
                        xs[size_t(p - p0)] = x[size_t(L.index(c, p))];
                    src = xs.data();
                    dst = qs.data();
                }
                auto range = calibrateRange(std::span<const float>(src, size_t(n)), spec);
                if (!range) {
                    po.error = range.error();
                    return;
                }
                const ScaleZp sz = paramsFromRange(spec, *range, rangeMin, rangeMax);
                P.scale[size_t(s)] = spec.scheme == Scheme::Q8_0 ? halfToFloat(floatToHalf(sz.scale)) : sz.scale;
                P.zeroPoint[size_t(s)] = sz.zp;
                po.lo = std::min(po.lo, range->lo);
                po.hi = std::max(po.hi, range->hi);
                // Q8_0 quantizes with the float d and stores fp16(d): the reference does exactly that.
                if (spec.scheme == Scheme::Q8_0 && sz.scale != 0.0f && !std::isfinite(1.0f / sz.scale)) {
                    // A float32-subnormal d has no finite inverse: ggml's x*inf (or 0*inf) converts
                    // to int8 as 0 for every value of the block.
                    std::fill(dst, dst + n, int8_t(0));
                } else if (roundTrip && L.perTensor) {
                    po.clamped += roundTripRun(src, dst, roundTrip->xhat, n, kernel, sz.scale, sz.zp, P.qmin, P.qmax,
                                               spec.isUnsigned, &roundTrip->sums);
                    roundTrip->done = true;
                } else {
                    po.clamped += quantizeRun(src, dst, n, kernel, sz.scale, sz.zp, P.qmin, P.qmax);
                }
                if (!direct)
                    for (int64_t p = p0; p < p1; ++p)
                        out.q[size_t(L.index(c, p))] = qs[size_t(p - p0)];
            }
        },
        !L.perTensor && *numel >= kTeamMinValues);
    for (const PartOut& po : partOut) {
        if (po.error)
            return *po.error;
        out.clampedCount += po.clamped;
        P.rangeLo = std::min(P.rangeLo, po.lo);
        P.rangeHi = std::max(P.rangeHi, po.hi);
    }
    if (nslices == 0 || P.rangeLo > P.rangeHi)
        P.rangeLo = P.rangeHi = 0.0f;
    return Ok{};
}

}  // namespace

Status quantizeInto(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec,
                    QuantizedTensor& out)
{
    if (isGgmlBlockScheme(spec.scheme))
        return quantizeGgmlInto(x, shape, spec, out);
    out.blocks.clear();
    return quantizeImpl(x, shape, spec, out, false);
}

Status requantize(std::span<const float> x, QuantizedTensor& qt)
{
    const std::vector<int64_t> shape = qt.shape;
    const QuantSpec spec = qt.spec;
    if (isGgmlBlockScheme(spec.scheme))  // no calibrated parameters to keep: the blocks are the rule
        return quantizeGgmlInto(x, shape, spec, qt);
    return quantizeImpl(x, shape, spec, qt, true);
}

Result<QuantizedTensor> quantize(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec)
{
    QuantizedTensor qt;
    if (auto st = quantizeInto(x, shape, spec, qt); !st)
        return st.error();
    return qt;
}

Status quantizeManualInto(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec, float lo,
                          float hi, QuantizedTensor& out)
{
    QuantSpec s = spec;
    s.calib = CalibMethod::Manual;
    s.manualLo = lo;
    s.manualHi = hi;
    return quantizeInto(x, shape, s, out);
}

Result<Metrics> quantizeRoundTrip(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec,
                                  QuantizedTensor& out, std::span<float> xhat)
{
    if (xhat.size() < x.size())
        return makeError("bad-shape", "the dequantized buffer holds " + std::to_string(xhat.size()) + " values, "
                                          + std::to_string(x.size()) + " are needed");
    if (!isGgmlBlockScheme(spec.scheme)) {
        out.blocks.clear();
        RoundTripOut rt{xhat.data(), {}, false};
        if (auto st = quantizeImpl(x, shape, spec, out, false, &rt); !st)
            return st.error();
        if (rt.done)
            return metricsFromSums(rt.sums, int64_t(x.size()), out.clampedCount);
    } else if (auto st = quantizeInto(x, shape, spec, out); !st) {
        return st.error();
    }
    dequantize(out, xhat);
    return computeMetrics(x, xhat.first(x.size()), out.clampedCount);
}

Result<Metrics> quantizeManualRoundTrip(std::span<const float> x, const std::vector<int64_t>& shape,
                                        const QuantSpec& spec, float lo, float hi, QuantizedTensor& out,
                                        std::span<float> xhat)
{
    QuantSpec s = spec;
    s.calib = CalibMethod::Manual;
    s.manualLo = lo;
    s.manualHi = hi;
    return quantizeRoundTrip(x, shape, s, out, xhat);
}

void dequantize(const QuantizedTensor& qt, std::span<float> out)
{
    if (isGgmlBlockScheme(qt.spec.scheme)) {
        dequantizeGgml(qt, out);
        return;
    }
    const auto numel = checkedNumel(qt.shape.data(), qt.shape.size());
    if (!numel || *numel != int64_t(qt.q.size()) || int64_t(out.size()) < *numel)
        return;  // not one of ours: quantize() always makes these agree
    const QuantParams& P = qt.params;
    auto layout = makeLayout(qt.shape, *numel, qt.spec);
    if (!layout)
        return;
    const Layout& L = *layout;
    const int64_t nslices = L.slices();
    if (int64_t(P.scale.size()) < nslices || int64_t(P.zeroPoint.size()) < nslices)
        return;
    if (L.perTensor) {
        dequantizeRun(qt.q.data(), out.data(), *numel, qt.spec.isUnsigned, P.scale[0], P.zeroPoint[0]);
        return;
    }
    // Slices write disjoint values: groups of them go to the work team, as in quantizeImpl.
    const int64_t perPart = std::max<int64_t>(1, quantrun::kSumChunk / std::max<int64_t>(1, *numel / std::max<int64_t>(1, nslices)));
    parallelFor(
        (nslices + perPart - 1) / perPart,
        [&](int64_t part) {
            for (int64_t s = part * perPart; s < std::min(nslices, (part + 1) * perPart); ++s) {
                const float scale = P.scale[size_t(s)];
                const int32_t zp = P.zeroPoint[size_t(s)];
                const int64_t c = s / L.groupsPerChannel;
                const int64_t g = s % L.groupsPerChannel;
                const int64_t p0 = L.group > 0 ? g * L.group : 0;
                const int64_t p1 = L.group > 0 ? std::min(p0 + L.group, L.K) : L.K;
                if (L.contiguousChannel()) {
                    const int64_t base = c * L.K + p0;
                    dequantizeRun(qt.q.data() + base, out.data() + base, p1 - p0, qt.spec.isUnsigned, scale, zp);
                } else {
                    const float fzp = float(zp);
                    for (int64_t p = p0; p < p1; ++p) {
                        const int64_t i = L.index(c, p);
                        out[size_t(i)] = (float(qt.qAt(i)) - fzp) * scale;
                    }
                }
            }
        },
        *numel >= kTeamMinValues);
}

Metrics quantizationMetrics(std::span<const float> x, const QuantizedTensor& qt)
{
    const int64_t n = int64_t(x.size());
    const auto numel = checkedNumel(qt.shape.data(), qt.shape.size());
    auto layout = numel ? makeLayout(qt.shape, *numel, qt.spec) : Result<Layout>(makeError("bad-shape", "bad shape"));
    const QuantParams& P = qt.params;
    if (isGgmlBlockScheme(qt.spec.scheme) || !layout || *numel != n || int64_t(qt.q.size()) != n
        || int64_t(P.scale.size()) < layout->slices() || int64_t(P.zeroPoint.size()) < layout->slices())
        return computeMetrics(x, dequantize(qt), qt.clampedCount);
    const Layout& L = *layout;
    // One sum chunk at a time (kernels/quantrun.h), so the totals are computeMetrics' bits.
    constexpr int64_t kChunk = quantrun::kSumChunk;
    std::vector<float> buf(size_t(std::min(n, kChunk)));
    const quantrun::QuantKernels& kr = quantrun::activeQuant();
    quantrun::Sums acc;
    const int64_t plane = L.C * L.inner;
    for (int64_t begin = 0; begin < n; begin += kChunk) {
        const int64_t end = std::min(n, begin + kChunk);
        for (int64_t i = begin; i < end;) {
            int64_t s = 0, runEnd = end;
            if (!L.perTensor) {
                // element i is value p of channel c (see Layout); a run keeps both c and the group
                const int64_t o = i / plane, in = i % L.inner, c = (i % plane) / L.inner;
                const int64_t p = o * L.inner + in;
                const int64_t g = L.group > 0 ? p / L.group : 0;
                s = c * L.groupsPerChannel + g;
                runEnd = std::min(runEnd, i + (L.inner - in));
                if (L.group > 0)
                    runEnd = std::min(runEnd, i + (std::min((g + 1) * L.group, L.K) - p));
            }
            kr.dequantize(qt.q.data() + i, buf.data() + (i - begin), runEnd - i, qt.spec.isUnsigned, P.scale[size_t(s)],
                          P.zeroPoint[size_t(s)]);
            i = runEnd;
        }
        quantrun::Sums chunk;
        kr.sums(x.data() + begin, buf.data(), end - begin, &chunk);
        quantrun::foldChunk(acc, chunk, begin == 0);
    }
    return metricsFromSums(acc, n, qt.clampedCount);
}

std::vector<float> dequantize(const QuantizedTensor& qt)
{
    std::vector<float> out(qt.q.size());
    dequantize(qt, out);
    return out;
}

int64_t quantizedByteCount(int64_t numel, int64_t scales, const QuantSpec& s)
{
    const int64_t payload = (numel * int64_t(s.bits) + 7) / 8;
    return payload + (s.scheme == Scheme::Q8_0 ? 2 * scales : 8 * scales);
}

int64_t QuantizedTensor::bytesAfter() const
{
    const int64_t n = int64_t(q.size());
    const int64_t payload = (n * int64_t(spec.bits) + 7) / 8;
    if (isGgmlBlockScheme(spec.scheme))
        return int64_t(blocks.size());
    const int64_t nscales = int64_t(params.scale.size());
    if (spec.scheme == Scheme::Q8_0)
        return payload + 2 * nscales;  // fp16 d per block, no zero point: ggml's 34 bytes per 32 values
    return payload + 4 * nscales + 4 * int64_t(params.zeroPoint.size());
}

}  // namespace quantlens
