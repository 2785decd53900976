#include "compare/compare.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

namespace quantlens {

double bitsPerWeight(const Tensor& t)
{
    const int64_t n = t.numel();
    if (n <= 0)
        return 0;
    return double(t.storedBytes()) * 8.0 / double(n);  // a packed weight counts its scales and zero points
}

namespace {

Result<std::vector<float>> decodeSide(const Tensor& t, const SideTransform& s)
{
    if (!t.decodable())
        return makeError("not-decoded", "'" + t.name + "' is not decoded (" +
                                            (t.opaqueType.empty() ? std::string("opaque") : t.opaqueType) + ")");
    auto v = t.toFloat();
    if (!v)
        return v.error();
    applySideTransform(s, t.shape, *v);
    return v;
}

double sumSquares(const std::vector<float>& v)
{
    double s = 0;
    for (float x : v)
        s += double(x) * double(x);
    return s;
}

}  // namespace

Result<PairValues> decodePair(const TensorPair& p)
{
    PairValues out;
    auto a = decodeSide(*p.a, p.aSide);
    if (!a)
        return a.error();
    auto b = decodeSide(*p.b, p.bSide);
    if (!b)
        return b.error();
    out.a = std::move(*a);
    out.b = std::move(*b);
    out.shape = p.aSide.canonicalShape;
    return out;
}

Result<CompareReport> compareModels(const Model& a, const Model& b, const CompareProgress& progress)
{
    MatchPlan plan = matchTensors(a, b);
    CompareReport r;
    r.unmatchedA = std::move(plan.unpairedA);
    r.unmatchedB = std::move(plan.unpairedB);
    r.mismatched = std::move(plan.mismatched);
    const int64_t total = int64_t(plan.pairs.size());
    for (int64_t i = 0; i < total; ++i) {
        const TensorPair& p = plan.pairs[size_t(i)];
        if (progress && !progress(i, total, p.a->name))
            return makeError("cancelled", "comparison cancelled");
        // One side at a time is decoded, measured against the other, then both are freed.
        auto bv = decodeSide(*p.b, p.bSide);
        auto av = bv ? decodeSide(*p.a, p.aSide) : Result<std::vector<float>>(bv.error());
        if (!bv || !av) {
            r.mismatched.push_back({p.a->name, p.b->name, p.aSide.canonicalShape, p.bSide.canonicalShape,
                                    (bv ? av.error() : bv.error()).oneLine()});
            continue;
        }
        TensorComparison c;
        c.aName = p.a->name;
        c.bName = p.b->name;
        c.shape = p.aSide.canonicalShape;
        c.how = p.how;
        c.metrics = computeMetrics(*bv, *av);
        c.refEnergy = sumSquares(*bv);
        c.errEnergy = c.metrics.mse * double(c.metrics.count);
        if (c.errEnergy == 0)
            c.relFrobenius = 0;
        else if (c.refEnergy == 0)
            c.relFrobenius = std::numeric_limits<double>::infinity();
        else
            c.relFrobenius = std::sqrt(c.errEnergy / c.refEnergy);
        c.aBitsPerWeight = bitsPerWeight(*p.a);
        c.bBitsPerWeight = bitsPerWeight(*p.b);
        r.matched.push_back(std::move(c));
    }
    if (progress)
        progress(total, total, {});
    return r;
}

std::string layerOf(const std::string& name)
{
    size_t start = 0;
    while (start < name.size()) {
        size_t end = name.find('.', start);
        if (end == std::string::npos)
            break;
        const std::string_view part(name.data() + start, end - start);
        if (!part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return name.substr(0, end);
        start = end + 1;
    }
    return name;
}

std::vector<LayerComparison> compareByLayer(const CompareReport& r)
{
    std::vector<LayerComparison> out;
    std::map<std::string, size_t> index;
    std::vector<std::pair<double, double>> energy;  // err, ref
    for (size_t i = 0; i < r.matched.size(); ++i) {
        const TensorComparison& c = r.matched[i];
        const std::string l = layerOf(c.aName);
        auto [it, fresh] = index.emplace(l, out.size());
        if (fresh) {
            out.push_back({l, 0, int(i), 0});
            energy.push_back({0, 0});
        }
        LayerComparison& L = out[it->second];
        ++L.tensors;
        energy[it->second].first += c.errEnergy;
        energy[it->second].second += c.refEnergy;
        if (c.metrics.sqnrDb < r.matched[size_t(L.worst)].metrics.sqnrDb)
            L.worst = int(i);
    }
    for (size_t i = 0; i < out.size(); ++i) {
        const auto [err, ref] = energy[i];
        out[i].sqnrDb = err == 0   ? std::numeric_limits<double>::infinity()
                        : ref == 0 ? -std::numeric_limits<double>::infinity()
                                   : 10.0 * std::log10(ref / err);
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const LayerComparison& x, const LayerComparison& y) { return x.sqnrDb < y.sqnrDb; });
    return out;
}

}  // namespace quantlens
