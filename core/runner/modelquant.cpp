#include "runner/modelquant.h"

#include "layers.h"
#include "quant/metrics.h"
#include "runner/fp32linear.h"

namespace quantlens {

namespace {

int64_t storedBytes(const Tensor* t) { return t ? t->storedBytes() : 0; }

}  // namespace

Result<ModelQuantSummary> quantizeAllLinear(const Model& m, const DynamicLinearOptions& options, bool keepLinears)
{
    ModelQuantSummary s;
    for (const LinearLayer& l : findLinearLayers(m)) {
        std::vector<float> w, b;
        if (auto st = loadLinearWeights(l, w, b); !st) {
            Error e = st.error();
            e.message = "layer '" + l.prefix + "': " + e.message;
            return e;
        }
        auto d = DynamicLinear::create(w, l.outFeatures, l.inFeatures, Layout::Plain, b, options);
        if (!d) {
            Error e = d.error();
            e.message = "layer '" + l.prefix + "': " + e.message;
            return e;
        }
        LinearQuantSummary ls;
        ls.prefix = l.prefix;
        ls.inFeatures = l.inFeatures;
        ls.outFeatures = l.outFeatures;
        ls.transposed = l.transposed();
        ls.bytesBefore = storedBytes(l.weight) + storedBytes(l.bias);
        ls.bytesAfter = d->bytesAfter();
        const Metrics mt = computeMetrics(w, dequantize(d->weight()));
        ls.weightSqnrDb = mt.sqnrDb;
        ls.weightMaxAbsError = mt.maxAbsError;
        s.bytesBefore += ls.bytesBefore;
        s.bytesAfter += ls.bytesAfter;
        s.layers.push_back(std::move(ls));
        if (keepLinears)
            s.linears.push_back(std::make_shared<const DynamicLinear>(std::move(d.value())));
    }
    s.ratio = s.bytesAfter > 0 ? double(s.bytesBefore) / double(s.bytesAfter) : 0.0;
    return s;
}

}  // namespace quantlens
