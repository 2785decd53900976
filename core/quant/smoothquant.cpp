#include "quant/smoothquant.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "quant/metrics.h"
#include "quant/quantize.h"

namespace quantlens {

std::vector<float> weightColumnAbsMax(const std::vector<std::span<const float>>& weights, int64_t in)
{
    std::vector<float> m(size_t(std::max<int64_t>(in, 0)), 0.0f);
    for (std::span<const float> w : weights) {
        const int64_t rows = in > 0 ? int64_t(w.size()) / in : 0;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < in; ++j)
                m[size_t(j)] = std::max(m[size_t(j)], std::fabs(w[size_t(r * in + j)]));
    }
    return m;
}

std::vector<float> smoothQuantScales(std::span<const float> actAbsMax, std::span<const float> weightAbsMax, double alpha)
{
    std::vector<float> s(actAbsMax.size(), 1.0f);
    for (size_t j = 0; j < s.size() && j < weightAbsMax.size(); ++j) {
        // float32 pow and division, as the reference does on float tensors
        const float wmax = std::max(weightAbsMax[j], 1e-5f);
        const float v = std::pow(actAbsMax[j], float(alpha)) / std::pow(wmax, float(1.0 - alpha));
        s[j] = std::max(v, 1e-5f);
    }
    return s;
}

void scaleWeightColumns(std::span<float> w, int64_t out, int64_t in, std::span<const float> s)
{
    if (int64_t(w.size()) != out * in || int64_t(s.size()) != in)
        return;
    for (int64_t r = 0; r < out; ++r)
        for (int64_t j = 0; j < in; ++j)
            w[size_t(r * in + j)] *= s[size_t(j)];
}

void divideByScales(std::span<float> v, std::span<const float> s)
{
    for (size_t j = 0; j < v.size() && j < s.size(); ++j)
        v[j] /= s[j];
}

Result<double> w8a8OutputSqnrDb(std::span<const float> x, int64_t n, std::span<const float> w, int64_t out, int64_t in,
                                std::span<const float> s, const W8A8Options& opt)
{
    if (n <= 0 || out <= 0 || in <= 0 || int64_t(x.size()) != n * in || int64_t(w.size()) != out * in)
        return makeError("bad-shape", "W8A8 error needs x [n, in] and w [out, in] of matching sizes");
    if (!s.empty() && int64_t(s.size()) != in)
        return makeError("bad-shape", "SmoothQuant needs one scale per input channel");
    std::vector<float> xs(x.begin(), x.end()), ws(w.begin(), w.end());
    if (!s.empty()) {
        for (int64_t r = 0; r < n; ++r)
            divideByScales(std::span<float>(xs.data() + r * in, size_t(in)), s);
        scaleWeightColumns(ws, out, in, s);
    }
    QuantSpec a;
    a.scheme = Scheme::TorchSymmetric;
    a.granularity = opt.perTokenActivations ? Granularity::PerChannel : Granularity::PerTensor;
    QuantSpec b = a;
    b.granularity = opt.perChannelWeights ? Granularity::PerChannel : Granularity::PerTensor;
    auto xq = quantize(xs, {n, in}, a);
    if (!xq)
        return xq.error();
    auto wq = quantize(ws, {out, in}, b);
    if (!wq)
        return wq.error();
    const std::vector<float> xd = dequantize(*xq), wd = dequantize(*wq);
    std::vector<float> y(size_t(n * out)), yq(size_t(n * out));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(n), blasint(out), blasint(in), 1.0f, x.data(),
                blasint(in), w.data(), blasint(in), 0.0f, y.data(), blasint(out));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(n), blasint(out), blasint(in), 1.0f, xd.data(),
                blasint(in), wd.data(), blasint(in), 0.0f, yq.data(), blasint(out));
    return computeMetrics(y, yq).sqnrDb;
}

Result<std::vector<SmoothQuantPoint>> smoothQuantSweep(std::span<const float> x, int64_t n, std::span<const float> w,
                                                       int64_t out, int64_t in, std::span<const float> actAbsMax,
                                                       const std::vector<double>& alphas, const W8A8Options& opt)
{
    if (int64_t(actAbsMax.size()) != in)
        return makeError("bad-shape", "one activation maximum per input channel is needed");
    const std::vector<float> wmax = weightColumnAbsMax({w}, in);
    std::vector<SmoothQuantPoint> pts;
    for (double alpha : alphas) {
        const std::vector<float> s = smoothQuantScales(actAbsMax, wmax, alpha);
        auto e = w8a8OutputSqnrDb(x, n, w, out, in, s, opt);
        if (!e)
            return e.error();
        pts.push_back({alpha, *e});
    }
    return pts;
}

}  // namespace quantlens
