#include "runner/actstats.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "runner/weightfetcher.h"

namespace quantlens {

std::vector<int64_t> LayerActivationStats::outlierChannels(float threshold) const
{
    std::vector<int64_t> out;
    for (size_t j = 0; j < absMax.size(); ++j)
        if (absMax[j] > threshold)
            out.push_back(int64_t(j));
    return out;
}

float LayerActivationStats::overallMin() const
{
    return min.empty() ? 0.0f : *std::min_element(min.begin(), min.end());
}

float LayerActivationStats::overallMax() const
{
    return max.empty() ? 0.0f : *std::max_element(max.begin(), max.end());
}

const LayerActivationStats* ActivationRecording::find(const std::string& name) const
{
    for (const LayerActivationStats& l : layers)
        if (l.name == name || l.name + ".weight" == name) {
            if (l.sharedWith.empty())
                return &l;
            return find(l.sharedWith);
        }
    return nullptr;
}

Result<LinearWeight> readLinearWeight(const Model& m, const std::string& layer)
{
    const std::string name = layer.ends_with(".weight") ? layer : layer + ".weight";
    const Tensor* t = m.find(name);
    if (!t)
        return makeError("missing-tensor", "no weight '" + name + "'", {}, -1, name);
    if (t->rank() != 2)
        return makeError("bad-shape", "a linear weight is 2-D, got " + shapeString(t->shape), {}, -1, name);
    LinearWeight lw;
    lw.storedInOut = t->layout == Layout::InOut;
    lw.out = lw.storedInOut ? t->shape[1] : t->shape[0];
    lw.in = lw.storedInOut ? t->shape[0] : t->shape[1];
    auto w = WeightFetcher{m}.linearWeight(name, lw.out, lw.in);
    if (!w)
        return w.error();
    lw.w = std::move(*w);
    return lw;
}

void symmetrizeUpper(std::vector<double>& h, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j)
            h[size_t(i * n + j)] = h[size_t(j * n + i)];
}

namespace {

// Observes the runner's linear inputs; one Slot per distinct input tensor.
class Recorder {
public:
    Recorder(int64_t layerCount, std::vector<bool> chosen, const ActivationOptions& opt)
        : chosen_(std::move(chosen)), slotOf_(size_t(layerCount), -1), opt_(opt)
    {
    }

    void setMask(const uint8_t* mask, int64_t rows)
    {
        mask_ = mask;
        maskRows_ = rows;
        lastX_ = nullptr;
    }

    void observe(int64_t index, const float* x, int64_t rows, int64_t in)
    {
        if (index < 0 || index >= int64_t(chosen_.size()) || !chosen_[size_t(index)])
            return;
        int64_t& slot = slotOf_[size_t(index)];
        if (slot < 0) {
            // q, k and v (gate and up) read the very same buffer one after the other.
            if (x == lastX_ && rows == lastRows_ && in == lastIn_ && lastSlot_ >= 0) {
                slot = lastSlot_;
            } else {
                slot = int64_t(slots_.size());
                slots_.push_back(std::make_unique<LayerActivationStats>());
                LayerActivationStats& s = *slots_.back();
                s.index = index;
                s.inFeatures = in;
                s.min.assign(size_t(in), std::numeric_limits<float>::infinity());
                s.max.assign(size_t(in), -std::numeric_limits<float>::infinity());
                s.histogram.counts.assign(size_t(opt_.histogramBins), 0);
                if (opt_.hessian)
                    s.hessian.assign(size_t(in * in), 0.0);
            }
        }
        const bool fresh = !(x == lastX_ && rows == lastRows_ && in == lastIn_ && lastSlot_ == slot);
        lastX_ = x;
        lastRows_ = rows;
        lastIn_ = in;
        lastSlot_ = slot;
        if (!fresh)
            return;  // the same input, already recorded for the layer it shares with
        record(*slots_[size_t(slot)], x, rows, in);
    }

    // The statistics in layer order; layers sharing an input refer to the first.
    std::vector<LayerActivationStats> finish(const std::vector<std::string>& names, int64_t& bytes)
    {
        std::vector<LayerActivationStats> out;
        std::vector<std::string> ownerName(slots_.size());
        bytes = 0;
        for (size_t i = 0; i < slotOf_.size(); ++i) {
            const int64_t slot = slotOf_[i];
            if (slot < 0)
                continue;
            if (!ownerName[size_t(slot)].empty()) {
                LayerActivationStats alias;
                alias.name = names[i];
                alias.index = int64_t(i);
                alias.sharedWith = ownerName[size_t(slot)];
                alias.inFeatures = slots_[size_t(slot)]->inFeatures;
                alias.tokens = slots_[size_t(slot)]->tokens;
                out.push_back(std::move(alias));
                continue;
            }
            LayerActivationStats& s = *slots_[size_t(slot)];
            ownerName[size_t(slot)] = names[i];
            s.name = names[i];
            s.index = int64_t(i);
            s.absMax.resize(s.min.size());
            for (size_t j = 0; j < s.min.size(); ++j) {
                if (s.tokens == 0)
                    s.min[j] = s.max[j] = 0.0f;
                s.absMax[j] = std::max(std::fabs(s.min[j]), std::fabs(s.max[j]));
            }
            if (!s.hessian.empty())
                symmetrizeUpper(s.hessian, s.inFeatures);
            bytes += int64_t(s.hessian.size() * sizeof(double) + s.rows.size() * sizeof(float) +
                             3 * s.min.size() * sizeof(float) + s.histogram.counts.size() * sizeof(int64_t));
            out.push_back(std::move(s));
        }
        return out;
    }

private:
    void record(LayerActivationStats& s, const float* x, int64_t rows, int64_t in)
    {
        // Only the real tokens: padding rows are copied out of the way.
        const float* X = x;
        int64_t n = rows;
        if (mask_ && maskRows_ == rows) {
            int64_t real = 0;
            for (int64_t r = 0; r < rows; ++r)
                real += mask_[r] != 0;
            if (real != rows) {
                gathered_.resize(size_t(real * in));
                int64_t k = 0;
                for (int64_t r = 0; r < rows; ++r)
                    if (mask_[r])
                        std::copy(x + r * in, x + (r + 1) * in, gathered_.begin() + (k++) * in);
                X = gathered_.data();
                n = real;
            }
        }
        if (n == 0)
            return;
        float amax = 0.0f;
        float* mn = s.min.data();
        float* mx = s.max.data();
        for (int64_t r = 0; r < n; ++r) {
            const float* row = X + r * in;
            for (int64_t j = 0; j < in; ++j) {
                const float v = row[j];
                mn[j] = std::min(mn[j], v);
                mx[j] = std::max(mx[j], v);
                if (std::isfinite(v))
                    amax = std::max(amax, std::fabs(v));
            }
        }
        growHistogram(s.histogram, amax);
        Histogram& h = s.histogram;
        const double R = h.hi;
        const int bins = int(h.counts.size());
        const double perUnit = double(bins) / (2.0 * R);
        for (int64_t i = 0; i < n * in; ++i) {
            const float v = X[i];
            if (!std::isfinite(v))
                continue;
            const int b = std::min(int((double(v) + R) * perUnit), bins - 1);
            ++h.counts[size_t(std::max(b, 0))];
        }
        if (!s.hessian.empty()) {
            // dsyrk needs doubles; the float -> double widening is exact.
            dX_.resize(size_t(n * in));
            std::copy(X, X + n * in, dX_.begin());
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, blasint(in), blasint(n), 2.0, dX_.data(), blasint(in),
                        1.0, s.hessian.data(), blasint(in));
        }
        if (s.keptRows < opt_.keepRows) {
            const int64_t take = std::min(opt_.keepRows - s.keptRows, n);
            s.rows.insert(s.rows.end(), X, X + take * in);
            s.keptRows += take;
        }
        s.tokens += n;
    }

    // [-R, R] with R a power of two: doubling R k times merges 2^k neighbouring bins into
    // one, exactly, because the bin count is a power of two too.
    static void growHistogram(Histogram& h, float amax)
    {
        const int bins = int(h.counts.size());
        if (h.hi <= 0) {
            int e = 0;
            std::frexp(double(std::max(amax, 1e-30f)), &e);
            h.hi = std::ldexp(1.0, e);  // > amax
            h.lo = -h.hi;
            return;
        }
        int64_t f = 1;
        while (double(amax) >= h.hi * double(f) && f < bins)
            f *= 2;
        if (f == 1)
            return;
        std::vector<int64_t> merged(size_t(bins), 0);
        const int64_t shift = (f - 1) * (bins / 2);
        for (int64_t j = 0; j < bins; ++j)
            merged[size_t((shift + j) / f)] += h.counts[size_t(j)];
        h.counts = std::move(merged);
        h.hi *= double(f);
        h.lo = -h.hi;
        if (double(amax) >= h.hi)
            growHistogram(h, amax);  // beyond bins-fold in one step: go again
    }

    std::vector<bool> chosen_;
    std::vector<int64_t> slotOf_;
    std::vector<std::unique_ptr<LayerActivationStats>> slots_;
    ActivationOptions opt_;
    const uint8_t* mask_ = nullptr;
    int64_t maskRows_ = 0;
    const float* lastX_ = nullptr;
    int64_t lastRows_ = 0, lastIn_ = 0, lastSlot_ = -1;
    std::vector<float> gathered_;
    std::vector<double> dX_;
};

bool isChosen(const std::string& name, const std::vector<std::string>& prefixes)
{
    if (prefixes.empty())
        return true;
    for (const std::string& p : prefixes)
        if (name.starts_with(p) || name + ".weight" == p)
            return true;
    return false;
}

}  // namespace

Result<ActivationRecording> recordActivations(EncoderRunner& runner, const std::vector<std::vector<int64_t>>& sequences,
                                              const ActivationOptions& opt, const ActivationProgress& progress)
{
    const auto t0 = std::chrono::steady_clock::now();
    if (opt.histogramBins < 2 || (opt.histogramBins & (opt.histogramBins - 1)) != 0)
        return makeError("bad-options", "the activation histogram needs a power-of-two bin count, got " +
                                            std::to_string(opt.histogramBins));
    if (sequences.empty())
        return makeError("empty-input", "no calibration sequences");
    const std::vector<std::string> names = runner.linearNames();
    std::vector<bool> chosen(names.size());
    int64_t any = 0;
    for (size_t i = 0; i < names.size(); ++i)
        any += (chosen[i] = isChosen(names[i], opt.layers));
    if (any == 0)
        return makeError("no-such-layer", "no linear layer of the model starts with the given prefix");

    Recorder rec(int64_t(names.size()), chosen, opt);
    runner.setLinearObserver([&rec](int64_t i, const float* x, int64_t rows, int64_t in) { rec.observe(i, x, rows, in); });
    struct ClearObserver {
        EncoderRunner& r;
        ~ClearObserver() { r.setLinearObserver({}); }
    } clear{runner};

    ActivationRecording out;
    const int64_t total = int64_t(sequences.size());
    const int64_t per = std::max<int64_t>(opt.maxSequencesPerForward, 1);
    int64_t inferredBytes = -1;
    for (int64_t s0 = 0; s0 < total; s0 += per) {
        const int64_t s1 = std::min(total, s0 + per);
        std::vector<std::vector<int64_t>> chunk(sequences.begin() + s0, sequences.begin() + s1);
        auto in = makeEncoderInput(chunk, runner.config().padId);
        if (!in)
            return in.error();
        if (inferredBytes < 0) {
            // A bound before anything runs: every chosen layer at most w² doubles + kept
            // rows, w the widest input (shared inputs only lower it).
            inferredBytes = 0;
            const EncoderConfig& c = runner.config();
            for (size_t i = 0; i < names.size(); ++i)
                if (chosen[i]) {
                    const int64_t w = std::max(c.hidden, c.intermediate);
                    inferredBytes += (opt.hessian ? w * w * 8 : 0) + opt.keepRows * w * 4;
                }
            if (inferredBytes > opt.maxBytes)
                return makeError("too-large", "the activation statistics of the chosen layers could need " +
                                                  std::to_string(inferredBytes >> 20) + " MiB, over the " +
                                                  std::to_string(opt.maxBytes >> 20) +
                                                  " MiB limit: choose fewer layers (--layer) or no Hessian");
        }
        rec.setMask(in->mask.data(), in->tokens());
        auto y = runner.forward(*in);
        if (!y)
            return y.error();
        for (uint8_t m : in->mask)
            out.tokens += m != 0;
        out.sequences += s1 - s0;
        if (progress && !progress(s1, total))
            return makeError("cancelled", "activation recording cancelled");
    }
    out.layers = rec.finish(names, out.bytes);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
}

}  // namespace quantlens
