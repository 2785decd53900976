#include "runner/fp32linear.h"

#include <cblas.h>

#include <algorithm>
#include <limits>

namespace quantlens {

Status loadLinearWeights(const LinearLayer& layer, std::vector<float>& weightOutIn, std::vector<float>& bias)
{
    if (!layer.weight || layer.weight->rank() != 2)
        return makeError("bad-layer", "linear layer '" + layer.prefix + "' has no 2-D weight");
    const int64_t out = layer.outFeatures, in = layer.inFeatures;
    const Tensor& w = *layer.weight;
    const bool inOut = layer.transposed();
    if ((inOut ? w.shape[0] : w.shape[1]) != in || (inOut ? w.shape[1] : w.shape[0]) != out || in <= 0 || out <= 0)
        return makeError("bad-layer", "weight shape " + shapeString(w.shape) + " does not match the layer", {}, -1, w.name);
    auto values = w.toFloat();
    if (!values)
        return values.error();
    if (inOut) {
        weightOutIn.resize(size_t(out * in));
        for (int64_t r = 0; r < in; ++r)
            for (int64_t c = 0; c < out; ++c)
                weightOutIn[size_t(c * in + r)] = (*values)[size_t(r * out + c)];
    } else {
        weightOutIn = std::move(values.value());
    }
    bias.clear();
    if (layer.bias) {
        auto b = layer.bias->toFloat();
        if (!b)
            return b.error();
        if (int64_t(b->size()) != out)
            return makeError("bad-layer", "bias has " + std::to_string(b->size()) + " values, the layer has " +
                                              std::to_string(out) + " outputs", {}, -1, layer.bias->name);
        bias = std::move(b.value());
    }
    return Ok{};
}

Result<Fp32Linear> Fp32Linear::create(std::span<const float> weight, int64_t outFeatures, int64_t inFeatures,
                                      Layout layout, std::span<const float> bias)
{
    if (outFeatures <= 0 || inFeatures <= 0 || outFeatures > std::numeric_limits<int>::max() ||
        inFeatures > std::numeric_limits<int>::max() || int64_t(weight.size()) / outFeatures != inFeatures ||
        int64_t(weight.size()) % outFeatures != 0)
        return makeError("bad-shape", "weight of " + std::to_string(weight.size()) + " values is not " +
                                          std::to_string(outFeatures) + " x " + std::to_string(inFeatures));
    if (!bias.empty() && int64_t(bias.size()) != outFeatures)
        return makeError("bad-shape", "bias has " + std::to_string(bias.size()) + " values, expected " +
                                          std::to_string(outFeatures));
    Fp32Linear l;
    l.in_ = inFeatures;
    l.out_ = outFeatures;
    if (layout == Layout::InOut) {
        l.w_.resize(weight.size());
        for (int64_t r = 0; r < inFeatures; ++r)
            for (int64_t c = 0; c < outFeatures; ++c)
                l.w_[size_t(c * inFeatures + r)] = weight[size_t(r * outFeatures + c)];
    } else {
        l.w_.assign(weight.begin(), weight.end());
    }
    l.bias_.assign(bias.begin(), bias.end());
    return l;
}

Result<Fp32Linear> Fp32Linear::fromLayer(const LinearLayer& layer)
{
    std::vector<float> w, b;
    if (auto s = loadLinearWeights(layer, w, b); !s)
        return s.error();
    return create(w, layer.outFeatures, layer.inFeatures, Layout::Plain, b);
}

void Fp32Linear::forward(const float* x, int64_t m, float* y) const
{
    if (m <= 0)
        return;
    // nn.Linear is addmm(bias, x, W^T): the bias goes in first and sgemm accumulates onto it.
    for (int64_t r = 0; r < m; ++r) {
        if (bias_.empty())
            std::fill_n(y + r * out_, out_, 0.0f);
        else
            std::copy(bias_.begin(), bias_.end(), y + r * out_);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(out_), blasint(in_), 1.0f, x,
                blasint(in_), w_.data(), blasint(in_), 1.0f, y, blasint(out_));
}

std::string blasCoreName()
{
    const char* n = openblas_get_corename();
    return n ? std::string(n) : std::string("unknown");
}

void setBlasThreads(int threads) { openblas_set_num_threads(std::max(1, threads)); }

}  // namespace quantlens
