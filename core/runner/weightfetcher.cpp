#include "runner/weightfetcher.h"

#include <cmath>

namespace quantlens {

Result<std::vector<float>> WeightFetcher::get(const std::string& name, const std::vector<int64_t>& shape) const
{
    const Tensor* t = m.find(name);
    if (!t)
        return makeError("missing-tensor", "encoder needs tensor '" + name + "' which the model does not have",
                         {}, -1, name);
    if (t->shape != shape)
        return makeError("bad-shape", "tensor has shape " + shapeString(t->shape) + ", the encoder expects " +
                                          shapeString(shape), {}, -1, name);
    if (t->layout != Layout::Plain)
        return makeError("bad-layout", "tensor is stored [in, out] where [out, in] is expected", {}, -1, name);
    auto v = t->toFloat();
    if (!v)
        return v.error();
    for (float x : *v)
        if (!std::isfinite(x))
            return makeError("non-finite", "tensor holds NaN or infinity", {}, -1, name);
    return v;
}

Result<std::vector<float>> WeightFetcher::linearWeight(const std::string& name, int64_t out, int64_t in) const
{
    const Tensor* t = m.find(name);
    if (!t || t->layout != Layout::InOut)
        return get(name, {out, in});
    if (t->shape != std::vector<int64_t>{in, out})
        return makeError("bad-shape", "tensor has shape " + shapeString(t->shape) + " ([in, out]), the model expects " +
                                          shapeString({in, out}), {}, -1, name);
    auto v = t->toFloat();
    if (!v)
        return v.error();
    std::vector<float> w(v->size());
    for (int64_t i = 0; i < in; ++i)
        for (int64_t o = 0; o < out; ++o) {
            const float x = (*v)[size_t(i * out + o)];
            if (!std::isfinite(x))
                return makeError("non-finite", "tensor holds NaN or infinity", {}, -1, name);
            w[size_t(o * in + i)] = x;
        }
    return w;
}

}  // namespace quantlens
