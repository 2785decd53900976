#include "runner/simulatedlinear.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "runner/dynamiclinear.h"

namespace quantlens {

namespace {

// n values quantized with one (scale, zero point), the rounding of the int8 path's
// quantizeU8: nearest-even of x/s + zp, clamped to [0, 255].
void roundTrip(float* x, int64_t n, const ActParams& p)
{
    const float inv = 1.0f / p.scale;
    for (int64_t i = 0; i < n; ++i) {
        const float t = std::min(std::fma(x[i], inv, float(p.zeroPoint)), 2147483520.0f);
        const long q = std::clamp<long>(std::lrint(t), 0, 255);
        x[i] = float(q - p.zeroPoint) * p.scale;
    }
}

void roundTrip(float* x, int64_t n, float mn, float mx, bool reduceRange)
{
    if (!std::isfinite(mn) || !std::isfinite(mx)) {
        std::fill_n(x, n, std::numeric_limits<float>::quiet_NaN());
        return;
    }
    roundTrip(x, n, chooseQuantizationParams(mn, mx, 0, 255, reduceRange));
}

void minMax(const float* x, int64_t n, float& mn, float& mx)
{
    mn = std::numeric_limits<float>::infinity();
    mx = -mn;
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(x[i])) {
            mn = mx = std::numeric_limits<float>::quiet_NaN();
            return;
        }
        mn = std::min(mn, x[i]);
        mx = std::max(mx, x[i]);
    }
}

}  // namespace

ActParams staticActivationParams(const ActivationSpec& a)
{
    return chooseQuantizationParams(a.staticLo, a.staticHi, 0, 255, a.reduceRange);
}

void fakeQuantizeActivations(float* x, int64_t rows, int64_t cols, const ActivationSpec& a)
{
    if (rows <= 0 || cols <= 0 || a.mode == ActivationMode::None)
        return;
    float mn, mx;
    if (a.mode == ActivationMode::Static) {
        if (!std::isfinite(a.staticLo) || !std::isfinite(a.staticHi))
            std::fill_n(x, rows * cols, std::numeric_limits<float>::quiet_NaN());
        else
            roundTrip(x, rows * cols, staticActivationParams(a));
        return;
    }
    if (a.mode == ActivationMode::DynamicPerTensor) {
        minMax(x, rows * cols, mn, mx);
        roundTrip(x, rows * cols, mn, mx, a.reduceRange);
        return;
    }
    for (int64_t r = 0; r < rows; ++r) {
        minMax(x + r * cols, cols, mn, mx);
        roundTrip(x + r * cols, cols, mn, mx, a.reduceRange);
    }
}

Result<SimulatedLinear> SimulatedLinear::create(const QuantizedTensor& qw, std::span<const float> bias,
                                                const ActivationSpec& act)
{
    if (qw.rank() != 2 || qw.shape[0] <= 0 || qw.shape[1] <= 0)
        return makeError("bad-shape", "quantized weights must be a non-empty [out, in] matrix", {}, -1, qw.name);
    SimulatedLinear s;
    s.out_ = qw.shape[0];
    s.in_ = qw.shape[1];
    if (!bias.empty() && int64_t(bias.size()) != s.out_)
        return makeError("bad-shape", "bias does not match the outputs", {}, -1, qw.name);
    s.w_ = dequantize(qw);
    s.bias_.assign(bias.begin(), bias.end());
    s.act_ = act;
    return s;
}

void SimulatedLinear::forward(const float* x, int64_t m, float* y) const
{
    if (m <= 0)
        return;
    const float* in = x;
    thread_local std::vector<float> scratch;
    if (act_.mode != ActivationMode::None) {
        scratch.assign(x, x + m * in_);
        fakeQuantizeActivations(scratch.data(), m, in_, act_);
        in = scratch.data();
    }
    for (int64_t r = 0; r < m; ++r) {
        if (bias_.empty())
            std::fill_n(y + r * out_, out_, 0.0f);
        else
            std::copy(bias_.begin(), bias_.end(), y + r * out_);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(out_), blasint(in_), 1.0f, in,
                blasint(in_), w_.data(), blasint(in_), 1.0f, y, blasint(out_));
}

}  // namespace quantlens
