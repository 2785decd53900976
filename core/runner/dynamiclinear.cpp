#include "runner/dynamiclinear.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

#include "kernels/gemmtune.h"
#include "runner/fp32linear.h"

namespace quantlens {

namespace {

// PyTorch's SMALL_SCALE_THRESHOLD (aten/src/ATen/native/quantized/cpu/QuantUtils.h).
constexpr float kSmallScaleThreshold = 6.1e-5f;

// The int32 accumulator holds at most 255 * 128 * K, and the zero-point correction
// doubles that bound; K up to 32768 keeps both inside int32 (as FBGEMM requires too).
constexpr int64_t kMaxInFeatures = 32768;

thread_local ActParams tLastParams;

struct Scratch {
    std::vector<uint8_t> qa;
    std::vector<int32_t> rowZero;
    std::vector<float> rowScale;
    std::vector<float> partMin, partMax;  // per-thread min/max of the activation rows
    std::vector<uint8_t> partOk;
};
thread_local Scratch tScratch;

// Splits [0, count) into `parts` contiguous ranges (parts in [1, count]) and runs
// run(part, begin, end) for each on its own thread, the caller's included.
template <class F>
void splitWork(int64_t count, int parts, const F& run)
{
    if (parts <= 1) {
        run(0, int64_t(0), count);
        return;
    }
#ifdef QUANTLENS_HAVE_OPENMP
    // OpenMP keeps its threads between calls. Creating and joining a std::thread per call
    // cost 50-100 us on the development VM, which ate most of the second core's share:
    // 2 threads on 3072->768 at M=128 went 806 -> 564 us that way, 806 -> 420 us here.
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int i = 0; i < parts; ++i)
        run(i, count * i / parts, count * (i + 1) / parts);
#else
    std::vector<std::thread> helpers;
    helpers.reserve(size_t(parts - 1));
    for (int i = 1; i < parts; ++i)
        helpers.emplace_back([&, i] { run(i, count * i / parts, count * (i + 1) / parts); });
    run(0, int64_t(0), count / parts);
    for (auto& h : helpers)
        h.join();
#endif
}

int partsFor(int64_t count, int threads) { return int(std::clamp<int64_t>(threads, 1, count)); }

// Threads pay off only when each gets several microseconds of work.
int threadsFor(int64_t m, int64_t in, int64_t out, int threads) { return m * in * out >= (int64_t(1) << 22) ? threads : 1; }

uint8_t quantizeOne(float x, float inv, int32_t zp)
{
    const float t = std::min(std::fma(x, inv, float(zp)), 2147483520.0f);
    return uint8_t(std::clamp<long>(std::lrint(t), 0, 255));
}

}  // namespace

ActParams chooseQuantizationParams(float min, float max, int32_t qmin, int32_t qmax, bool reduceRange)
{
    // Transcribed from PyTorch 1.13 quant_utils::ChooseQuantizationParams with
    // preserve_sparsity = force_scale_power_of_two = false; the float/double mix is theirs.
    if (reduceRange) {
        qmin = qmin / 2;
        qmax = qmax / 2;
    }
    min = std::min(min, 0.0f);
    max = std::max(max, 0.0f);
    double scale = (double(max) - min) / (qmax - qmin);
    if (float(scale) == 0.0f || std::isinf(1.0f / float(scale)))
        scale = 0.1;
    if (scale < kSmallScaleThreshold) {
        const float orgScale = float(scale);
        scale = kSmallScaleThreshold;
        if (min == 0.0f) {
            max = kSmallScaleThreshold * float(qmax - qmin);
        } else if (max == 0.0f) {
            min = -kSmallScaleThreshold * float(qmax - qmin);
        } else {
            const float amplifier = kSmallScaleThreshold / orgScale;
            min *= amplifier;
            max *= amplifier;
        }
    }
    // The zero point from whichever end adds the smaller terms (less rounding error).
    const double zpFromMin = qmin - min / scale;
    const double zpFromMax = qmax - max / scale;
    const double zpFromMinError = std::abs(double(qmin)) + std::abs(min / scale);
    const double zpFromMaxError = std::abs(double(qmax)) + std::abs(max / scale);
    const double initialZp = zpFromMinError < zpFromMaxError ? zpFromMin : zpFromMax;
    int32_t nudged;
    if (initialZp < qmin)
        nudged = qmin;
    else if (initialZp > qmax)
        nudged = qmax;
    else
        nudged = int32_t(std::nearbyint(initialZp));
    return {float(scale), nudged};
}

Result<DynamicLinear> DynamicLinear::create(std::span<const float> weight, int64_t outFeatures, int64_t inFeatures,
                                            Layout layout, std::span<const float> bias,
                                            const DynamicLinearOptions& options)
{
    if (inFeatures > kMaxInFeatures)
        return makeError("too-large", "int8 linear layers support at most " + std::to_string(kMaxInFeatures) +
                                          " input features (int32 accumulators), this one has " +
                                          std::to_string(inFeatures));
    if (options.weightGranularity != Granularity::PerTensor && options.weightGranularity != Granularity::PerChannel)
        return makeError("unsupported", "dynamic int8 linear layers take per-tensor or per-channel weights");
    // Fp32Linear::create validates the shapes and does the [in, out] transpose.
    auto f = Fp32Linear::create(weight, outFeatures, inFeatures, layout, bias);
    if (!f)
        return f.error();
    for (float v : f->weight())
        if (!std::isfinite(v))
            return makeError("non-finite", "the weight holds NaN or infinity; it cannot be quantized");

    QuantSpec spec;
    spec.scheme = Scheme::TorchSymmetric;
    spec.granularity = options.weightGranularity;
    spec.axis = 0;
    auto q = quantize(f->weight(), {outFeatures, inFeatures}, spec);
    if (!q)
        return q.error();

    return fromQuantized(std::move(q.value()), f->bias(), options);
}

Result<DynamicLinear> DynamicLinear::fromQuantized(QuantizedTensor qw, std::span<const float> bias,
                                                   const DynamicLinearOptions& options)
{
    if (qw.rank() != 2 || qw.shape[0] <= 0 || qw.shape[1] <= 0 || qw.numel() != qw.shape[0] * qw.shape[1])
        return makeError("bad-shape", "int8 weights must be a non-empty [out, in] matrix", {}, -1, qw.name);
    const int64_t outFeatures = qw.shape[0], inFeatures = qw.shape[1];
    if (inFeatures > kMaxInFeatures)
        return makeError("too-large", "int8 linear layers support at most " + std::to_string(kMaxInFeatures) +
                                          " input features (int32 accumulators), this one has " +
                                          std::to_string(inFeatures));
    if (qw.spec.isUnsigned || qw.spec.bits != 8 || qw.params.qmin < -128 || qw.params.qmax > 127)
        return makeError("unsupported", "the int8 GEMM takes signed 8-bit weights", {}, -1, qw.name);
    if (!bias.empty() && int64_t(bias.size()) != outFeatures)
        return makeError("bad-shape", "bias has " + std::to_string(bias.size()) + " values for " +
                                          std::to_string(outFeatures) + " outputs", {}, -1, qw.name);
    const int64_t scales = int64_t(qw.params.scale.size());
    const bool perChannel = scales == outFeatures && scales > 1 && qw.params.axis == 0;
    if (scales != 1 && !perChannel)
        return makeError("unsupported", "the int8 GEMM takes one weight scale or one per output row, got " +
                                            std::to_string(scales), {}, -1, qw.name);
    for (int32_t z : qw.params.zeroPoint)
        if (z != 0)
            return makeError("unsupported", "the int8 GEMM takes symmetric weights (zero point 0)", {}, -1, qw.name);

    DynamicLinear d;
    d.in_ = inFeatures;
    d.out_ = outFeatures;
    d.qw_ = std::move(qw);
    d.bias_.assign(bias.begin(), bias.end());
    d.wScale_ = d.qw_.params.scale;
    d.packed_ = kernels::packWeights(d.qw_.q.data(), outFeatures, inFeatures, inFeatures);
    d.opt_ = options;
    d.opt_.weightGranularity = perChannel ? Granularity::PerChannel : Granularity::PerTensor;
    d.opt_.threads = std::max(1, options.threads);
    d.kr_ = options.kernels ? options.kernels : &kernels::activeKernels();
    if (options.blocking) {
        if (!kernels::findBlocking(*d.kr_, options.blocking->name))
            return makeError("bad-argument", std::string("blocking ") + options.blocking->name + " is not one of " +
                                                 d.kr_->name + "'s");
        d.bl_ = kernels::findBlocking(*d.kr_, options.blocking->name);
    } else {
        d.bl_ = kernels::activeBlocking(*d.kr_).blocking;
    }
    return d;
}

Result<DynamicLinear> DynamicLinear::fromLayer(const LinearLayer& layer, const DynamicLinearOptions& options)
{
    std::vector<float> w, b;
    if (auto s = loadLinearWeights(layer, w, b); !s)
        return s.error();
    return create(w, layer.outFeatures, layer.inFeatures, Layout::Plain, b, options);
}

int64_t DynamicLinear::bytesAfter() const { return qw_.bytesAfter() + int64_t(bias_.size() * sizeof(float)); }

ActParams DynamicLinear::lastActParams() { return tLastParams; }

void DynamicLinear::forward(const float* x, int64_t m, float* y) const
{
    if (m <= 0)
        return;
    const kernels::GemmKernels& kr = *kr_;
    const int64_t k = in_, k4 = kernels::paddedK(in_);
    Scratch& s = tScratch;
    if (int64_t(s.qa.size()) < m * k4)
        s.qa.assign(size_t(m * k4), 0);  // zero padding columns once; W's padding is zero anyway
    const float nan = std::numeric_limits<float>::quiet_NaN();

    kernels::Requant rq;
    rq.wScale = wScale_.data();
    rq.wScaleStride = wScale_.size() > 1 ? 1 : 0;
    rq.bias = bias_.empty() ? nullptr : bias_.data();
    bool aMax128 = opt_.reduceRange;
    int32_t zp = 0;
    float scale = 1.0f;

    // Threads share the activation scan and quantization by rows as well as the GEMM by panels.
    const int threads = threadsFor(m, k, out_, opt_.threads);

    if (opt_.act == ActQuant::PerTensor) {
        const int parts = partsFor(m, threads);
        // Reused per thread: no allocation on this per-call path once the sizes are reached.
        s.partMin.resize(size_t(parts));
        s.partMax.resize(size_t(parts));
        s.partOk.resize(size_t(parts));
        splitWork(m, parts, [&](int part, int64_t r0, int64_t r1) {
            s.partOk[size_t(part)] = kr.minMax(x + r0 * k, (r1 - r0) * k, &s.partMin[size_t(part)], &s.partMax[size_t(part)]);
        });
        const float mn = *std::min_element(s.partMin.begin(), s.partMin.end());
        const float mx = *std::max_element(s.partMax.begin(), s.partMax.end());
        if (std::count(s.partOk.begin(), s.partOk.end(), uint8_t(0)) > 0 || !std::isfinite(mn) || !std::isfinite(mx)) {
            std::fill_n(y, m * out_, nan);
            return;
        }
        const ActParams p = chooseQuantizationParams(mn, mx, 0, 255, opt_.reduceRange);
        tLastParams = p;
        zp = p.zeroPoint;
        scale = p.scale;
        const float inv = 1.0f / p.scale;
        // Back to front: minMax has just read these rows front to back, so their tail is
        // the part still in L2 when x is larger than L2 (3072x128 floats: ~6 us less).
        splitWork(m, parts, [&](int, int64_t r0, int64_t r1) {
            if (k == k4) {
                constexpr int64_t kChunk = 4096;
                for (int64_t end = r1 * k; end > r0 * k; end -= kChunk) {
                    const int64_t begin = std::max<int64_t>(r0 * k, end - kChunk);
                    kr.quantizeU8(x + begin, end - begin, inv, zp, s.qa.data() + begin);
                }
            } else {
                for (int64_t i = r1 - 1; i >= r0; --i)
                    kr.quantizeU8(x + i * k, k, inv, zp, s.qa.data() + i * k4);
            }
        });
        // Quantization is monotonic, so the largest byte is the one max maps to.
        aMax128 = quantizeOne(mx, inv, zp) <= 128;
        rq.aZero = &zp;
        rq.aScale = &scale;
    } else {
        s.rowZero.resize(size_t(m));
        s.rowScale.resize(size_t(m));
        for (int64_t i = 0; i < m; ++i) {
            float mn, mx;
            const float* xi = x + i * k;
            uint8_t* qi = s.qa.data() + i * k4;
            if (!kr.minMax(xi, k, &mn, &mx) || !std::isfinite(mn) || !std::isfinite(mx)) {
                // Quantize this row as zeros and poison its output below.
                std::fill_n(qi, k, uint8_t(0));
                s.rowZero[size_t(i)] = 0;
                s.rowScale[size_t(i)] = nan;
                continue;
            }
            const ActParams p = chooseQuantizationParams(mn, mx, 0, 255, opt_.reduceRange);
            const float inv = 1.0f / p.scale;
            kr.quantizeU8(xi, k, inv, p.zeroPoint, qi);
            s.rowZero[size_t(i)] = p.zeroPoint;
            s.rowScale[size_t(i)] = p.scale;
            aMax128 = aMax128 && quantizeOne(mx, inv, p.zeroPoint) <= 128;
        }
        rq.aZero = s.rowZero.data();
        rq.aZeroStride = 1;
        rq.aScale = s.rowScale.data();
        rq.aScaleStride = 1;
    }

    const uint8_t* qa = s.qa.data();
    splitWork(packed_.panels, partsFor(packed_.panels, threads), [&](int, int64_t p0, int64_t p1) {
        kr.gemmF32(m, qa, k4, packed_, p0, p1, rq, y, out_, aMax128, *bl_);
    });
}

void DynamicLinear::forwardQuantized(const uint8_t* qa, int64_t m, const ActParams& p, float* y) const
{
    if (m <= 0)
        return;
    kernels::Requant rq;
    rq.aZero = &p.zeroPoint;
    rq.aScale = &p.scale;
    rq.wScale = wScale_.data();
    rq.wScaleStride = wScale_.size() > 1 ? 1 : 0;
    rq.bias = bias_.empty() ? nullptr : bias_.data();
    const int64_t k4 = kernels::paddedK(in_);
    const int threads = threadsFor(m, in_, out_, opt_.threads);
    const bool aMax128 = opt_.reduceRange;  // the caller quantized with reduce_range parameters
    splitWork(packed_.panels, partsFor(packed_.panels, threads), [&](int, int64_t p0, int64_t p1) {
        kr_->gemmF32(m, qa, k4, packed_, p0, p1, rq, y, out_, aMax128, *bl_);
    });
}

}  // namespace quantlens
