#include "runner/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace quantlens {

QuantSpec SensitivityOptions::defaultDynamicSpec()
{
    QuantSpec s;
    s.scheme = Scheme::TorchSymmetric;
    s.granularity = Granularity::PerTensor;
    return s;
}

namespace {

const QuantSpec& specFor(const SensitivityOptions& opt, const std::string& name)
{
    for (const auto& [n, s] : opt.specs)
        if (n == name || n == name + ".weight")
            return s;
    return opt.defaultSpec;
}

// Sets every layer's switch to `want[i]`, touching only those that change.
Status applySwitches(EncoderRunner& r, const std::vector<uint8_t>& want, const SensitivityOptions& opt,
                     const std::vector<std::string>& names)
{
    for (int64_t i = 0; i < r.linearCount(); ++i) {
        const bool on = want[size_t(i)] != 0;
        if (r.isQuantized(i) == on)
            continue;
        if (auto s = r.setQuantized(i, on, on ? &specFor(opt, names[size_t(i)]) : nullptr); !s)
            return s;
    }
    return Ok{};
}

bool kept(const SensitivityOptions& opt, const std::string& name)
{
    return opt.keepFloat.count(name) || opt.keepFloat.count(name + ".weight");
}

int64_t realTokens(const EncoderInput& in)
{
    int64_t n = 0;
    for (uint8_t m : in.mask)
        n += m != 0;
    return n;
}

}  // namespace

NextTokenComparison compareNextToken(const std::vector<float>& refLogits, const std::vector<float>& logits,
                                     const EncoderInput& in, int64_t vocab)
{
    NextTokenComparison c;
    const int64_t n = in.tokens();
    if (vocab <= 0 || int64_t(refLogits.size()) != n * vocab || logits.size() != refLogits.size())
        return c;
    c.valid = true;
    double sum = 0, agree = 0;
    int64_t count = 0;
    std::vector<double> lp(static_cast<size_t>(vocab)), lq(static_cast<size_t>(vocab));
    // log-softmax in double: a KL of 1e-6 must not drown in float rounding.
    auto logSoftmax = [vocab](const float* z, std::vector<double>& out) {
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t v = 0; v < vocab; ++v)
            mx = std::max(mx, double(z[v]));
        double s = 0;
        for (int64_t v = 0; v < vocab; ++v)
            s += std::exp(double(z[v]) - mx);
        const double lse = mx + std::log(s);
        for (int64_t v = 0; v < vocab; ++v)
            out[size_t(v)] = double(z[v]) - lse;
    };
    for (int64_t t = 0; t < n; ++t) {
        if (!in.mask[size_t(t)])
            continue;
        const float* p = refLogits.data() + t * vocab;
        const float* q = logits.data() + t * vocab;
        logSoftmax(p, lp);
        logSoftmax(q, lq);
        double kl = 0;
        for (int64_t v = 0; v < vocab; ++v)
            kl += std::exp(lp[size_t(v)]) * (lp[size_t(v)] - lq[size_t(v)]);
        kl = std::max(0.0, kl);
        sum += kl;
        c.maxKld = std::max(c.maxKld, kl);
        agree += std::max_element(p, p + vocab) - p == std::max_element(q, q + vocab) - q;
        ++count;
    }
    if (count > 0) {
        c.meanKld = sum / double(count);
        c.top1Agreement = agree / double(count);
    }
    return c;
}

Result<SensitivityReport> computeSensitivity(EncoderRunner& r, const EncoderInput& in, const SensitivityOptions& opt)
{
    const int64_t L = r.linearCount();
    const std::vector<std::string> names = r.linearNames();
    for (const auto& spec : opt.specs) {
        const std::string& n = spec.first;  // named: clang 14 cannot capture a structured binding in a lambda (P1091, clang 16)
        if (std::find_if(names.begin(), names.end(), [&](const std::string& x) { return x == n || x + ".weight" == n; }) ==
            names.end())
            return makeError("no-such-layer", "a spec names '" + n + "', which is not a linear layer of the encoder", {}, -1, n);
    }
    if (realTokens(in) == 0)
        return makeError("empty-input", "the attention mask marks no real token");

    // Remember the caller's switches and specs to put them back however this ends.
    std::vector<uint8_t> saved(static_cast<size_t>(L));
    std::vector<QuantSpec> savedSpecs(static_cast<size_t>(L));
    for (int64_t i = 0; i < L; ++i) {
        saved[size_t(i)] = r.isQuantized(i);
        savedSpecs[size_t(i)] = r.quantSpec(i);
    }
    struct Restore {
        EncoderRunner& r;
        const std::vector<uint8_t>& saved;
        const std::vector<QuantSpec>& specs;
        ~Restore()
        {
            for (int64_t i = 0; i < r.linearCount(); ++i)
                (void)r.setQuantized(i, saved[size_t(i)] != 0, saved[size_t(i)] ? &specs[size_t(i)] : nullptr);
        }
    } restore{r, saved, savedSpecs};

    SensitivityReport rep;
    rep.view = opt.view;
    rep.tokens = realTokens(in);
    const int64_t total = L + 2 + (opt.keepFloat.empty() ? 0 : 1);
    int64_t done = 0;
    auto step = [&]() { return !opt.progress || opt.progress(++done, total); };
    auto cancelled = [] { return makeError("cancelled", "sensitivity analysis cancelled"); };

    std::vector<uint8_t> want(static_cast<size_t>(L), 0);
    if (auto s = applySwitches(r, want, opt, names); !s)
        return s.error();
    auto ref = r.forward(in);
    if (!ref)
        return ref.error();
    if (!step())
        return cancelled();

    std::fill(want.begin(), want.end(), uint8_t(1));
    if (auto s = applySwitches(r, want, opt, names); !s)
        return s.error();
    auto all = r.forward(in);
    if (!all)
        return all.error();
    rep.allQuantized = compareHidden(*ref, *all, in, r.config().hidden);
    if (!step())
        return cancelled();

    // The plan end to end: the same run unless it keeps layers in float32.
    std::vector<float> planOut;
    for (int64_t i = 0; i < L; ++i) {
        const bool keep = kept(opt, names[size_t(i)]);
        want[size_t(i)] = keep ? 0 : 1;
        rep.plan.keptLayers += keep;
    }
    if (rep.plan.keptLayers > 0) {
        if (auto s = applySwitches(r, want, opt, names); !s)
            return s.error();
        auto y = r.forward(in);
        if (!y)
            return y.error();
        planOut = std::move(*y);
    } else {
        planOut = *all;
    }
    for (int64_t i = 0; i < L; ++i)
        if (want[size_t(i)]) {
            ++rep.plan.quantizedLayers;
            rep.plan.simulatedLayers += r.isSimulated(i);
        }
    rep.plan.hidden = compareHidden(*ref, planOut, in, r.config().hidden);
    if (r.hasOutputHead())
        rep.plan.next = compareNextToken(r.logits(*ref), r.logits(planOut), in, r.config().vocab);

    const bool one = opt.view == SensitivityView::OneQuantized;
    for (int64_t i = 0; i < L; ++i) {
        std::fill(want.begin(), want.end(), uint8_t(one ? 0 : 1));
        want[size_t(i)] = one ? 1 : 0;
        if (auto s = applySwitches(r, want, opt, names); !s)
            return s.error();
        auto y = r.forward(in);
        if (!y)
            return y.error();
        const HiddenComparison c = compareHidden(*ref, *y, in, r.config().hidden);
        LayerSensitivity ls;
        ls.name = names[size_t(i)];
        ls.index = i;
        ls.cosine = c.cosine;
        ls.sqnrDb = c.sqnrDb;
        ls.maxAbsError = c.maxAbsError;
        rep.layers.push_back(std::move(ls));
        if (!step())
            return cancelled();
    }

    // One layer int8: the worse the output, the more sensitive. All but one: the better the
    // output with this layer back in float32, the more sensitive.
    const bool cos = opt.rankBy == SensitivityMetric::Cosine;
    auto damage = [&](const LayerSensitivity& l) {
        const double v = cos ? 1.0 - l.cosine : -l.sqnrDb;  // larger = further from fp32
        return one ? v : -v;
    };
    std::stable_sort(rep.layers.begin(), rep.layers.end(), [&](const LayerSensitivity& a, const LayerSensitivity& b) {
        return damage(a) > damage(b);
    });
    for (size_t i = 0; i < rep.layers.size(); ++i)
        rep.layers[i].rank = int64_t(i + 1);
    return rep;
}

}  // namespace quantlens
