#include "io/exportentryjson.h"

#include <cmath>
#include <string>

namespace quantlens {

namespace {

using ojson = nlohmann::ordered_json;

// JSON has no infinity: an exact round trip (SQNR = inf) is written as null.
ojson finiteOrNull(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }

}  // namespace

void describeExportEntry(const ExportEntry& e, ojson& j)
{
    const QuantizedTensor& qt = e.quantized;
    j["scheme"] = schemeName(qt.spec.scheme);
    j["granularity"] = storedGranularity(qt);
    j["axis"] = storedAxis(qt);
    j["group_size"] = qt.params.groupSize;
    j["bits"] = qt.spec.bits;
    j["qmin"] = qt.params.qmin;
    j["qmax"] = qt.params.qmax;
    j["calib"] = calibName(qt.spec);
    j["range_lo"] = finiteOrNull(qt.params.rangeLo);
    j["range_hi"] = finiteOrNull(qt.params.rangeHi);
    j["source_dtype"] = std::string(dtypeName(qt.sourceDtype));
    j["mse"] = finiteOrNull(e.metrics.mse);
    j["sqnr_db"] = finiteOrNull(e.metrics.sqnrDb);
    if (const auto& in = e.staticInput)
        j["input_activation"] = {{"mode", "static"}, {"dtype", "uint8"}, {"qmin", 0}, {"qmax", 255},
                                 {"scale", in->scale}, {"zero_point", in->zeroPoint}, {"range_lo", in->lo},
                                 {"range_hi", in->hi}, {"reduce_range", in->reduceRange}};
}

}  // namespace quantlens
