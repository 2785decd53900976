#include "runner/linearbench.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <utility>

#include "alignedarray.h"
#include "layers.h"
#include "runner/calltiming.h"
#include "runner/dynamiclinear.h"
#include "runner/fp32linear.h"
#include "runner/onednnmatmul.h"

namespace quantlens {

namespace {

// LayerNorm-output-like activations with two outlier channels, as transformer inputs have.
std::vector<float> benchInput(int64_t tokens, int64_t in)
{
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(size_t(tokens * in));
    for (int64_t i = 0; i < tokens; ++i)
        for (int64_t k = 0; k < in; ++k)
            x[size_t(i * in + k)] = nd(rng) * (k == 17 ? 8.0f : k == in / 3 ? 4.0f : 1.0f);
    return x;
}

LinearBenchShape synthetic(int64_t in, int64_t out)
{
    LinearBenchShape s;
    s.name = std::to_string(in) + "->" + std::to_string(out);
    s.in = in;
    s.out = out;
    std::mt19937 rng(uint32_t(in * 31 + out));
    std::normal_distribution<float> nd(0.0f, 0.04f);
    s.weight.resize(size_t(in * out));
    for (auto& w : s.weight)
        w = nd(rng);
    for (int i = 0; i < 64; ++i)  // a few outliers, as trained weights have
        s.weight[size_t(rng() % s.weight.size())] *= 8.0f;
    s.bias.resize(size_t(out));
    for (auto& b : s.bias)
        b = nd(rng) * 0.5f;
    return s;
}

}  // namespace

std::vector<LinearBenchShape> distilbertBenchShapes()
{
    return {synthetic(768, 768), synthetic(768, 3072), synthetic(3072, 768)};
}

Result<std::vector<LinearBenchShape>> modelBenchShapes(const Model& m)
{
    std::vector<LinearBenchShape> v;
    std::set<std::pair<int64_t, int64_t>> seen;
    for (const LinearLayer& l : findLinearLayers(m)) {
        if (!seen.insert({l.inFeatures, l.outFeatures}).second)
            continue;
        LinearBenchShape s;
        s.name = l.prefix;
        s.in = l.inFeatures;
        s.out = l.outFeatures;
        if (auto st = loadLinearWeights(l, s.weight, s.bias); !st)
            return st.error();
        if (s.bias.empty())
            s.bias.assign(size_t(s.out), 0.0f);
        v.push_back(std::move(s));
    }
    if (v.empty())
        return makeError("no-linear-layers", "the model has no linear layers to benchmark");
    return v;
}

Result<LinearBenchRow> benchLinear(const LinearBenchShape& s, int64_t tokens, const LinearBenchOptions& o)
{
    if (tokens <= 0)
        return makeError("bad-argument", "tokens must be positive");
    setBlasThreads(o.threads);
    OnednnInt8Matmul::setThreads(o.threads);
    auto fp = Fp32Linear::create(s.weight, s.out, s.in, Layout::Plain, s.bias);
    if (!fp)
        return fp.error();
    DynamicLinearOptions dopt;
    dopt.threads = o.threads;
    auto dl = DynamicLinear::create(s.weight, s.out, s.in, Layout::Plain, s.bias, dopt);
    if (!dl)
        return dl.error();
    const std::vector<float> x = benchInput(tokens, s.in);
    // On a line boundary, as PyTorch's output tensors are (alignedarray.h).
    const auto yBuffer = makeAlignedArray<float>(size_t(tokens * s.out));
    const std::span<float> y(yBuffer.get(), size_t(tokens * s.out));

    LinearBenchRow row;
    row.name = s.name;
    row.in = s.in;
    row.out = s.out;
    row.tokens = tokens;
    // The same quantized activations for our GEMM alone and for oneDNN.
    dl->forward(x.data(), tokens, y.data());
    const ActParams p = DynamicLinear::lastActParams();
    const int64_t k4 = kernels::paddedK(s.in);
    std::vector<uint8_t> qa(size_t(tokens * k4), 0);
    for (int64_t i = 0; i < tokens; ++i)
        dl->gemmKernels().quantizeU8(x.data() + i * s.in, s.in, 1.0f / p.scale, p.zeroPoint, qa.data() + i * k4);

    std::vector<std::function<void()>> fs = {
        [&] { fp->forward(x.data(), tokens, y.data()); },
        [&] { dl->forward(x.data(), tokens, y.data()); },
        [&] { dl->forwardQuantized(qa.data(), tokens, p, y.data()); },
    };
    std::optional<OnednnInt8Matmul> dn;
    if (OnednnInt8Matmul::available() && k4 == s.in && dl->weight().params.scale.size() == 1) {
        auto made = OnednnInt8Matmul::create(tokens, s.out, s.in, dl->weight().q.data(), p.scale, p.zeroPoint,
                                             dl->weight().params.scale[0], s.bias.data());
        if (made) {
            dn.emplace(std::move(made.value()));
            fs.push_back([&] { dn->run(qa.data(), y.data()); });
        }
    }
    const size_t firstBlocking = fs.size();
    std::vector<DynamicLinear> variants;
    if (o.allBlockings) {
        const kernels::GemmKernels& kr = dl->gemmKernels();
        for (int i = 0; i < kr.blockingCount; ++i) {
            DynamicLinearOptions vo = dopt;
            vo.kernels = &kr;
            vo.blocking = &kr.blockings[i];
            auto v = DynamicLinear::create(s.weight, s.out, s.in, Layout::Plain, s.bias, vo);
            if (!v)
                return v.error();
            variants.push_back(std::move(v.value()));
        }
        for (const DynamicLinear& v : variants) {
            const DynamicLinear* vp = &v;
            fs.push_back([&, vp] { vp->forwardQuantized(qa.data(), tokens, p, y.data()); });
        }
    }
    CallTimingOptions to;
    to.repeats = o.repeats;
    to.minRepeatSeconds = o.minRepeatSeconds;
    to.threadCpuTime = o.threadCpuTime;
    const std::vector<CallTiming> t = timeCalls(fs, to);
    row.fp32Seconds = t[0].median;
    row.fp32BestSeconds = t[0].best;
    row.int8Seconds = t[1].median;
    row.int8BestSeconds = t[1].best;
    row.gemmSeconds = t[2].median;
    row.gemmBestSeconds = t[2].best;
    row.blocking = dl->gemmBlocking().name;
    for (size_t i = 0; i < variants.size(); ++i)
        row.blockingSeconds.emplace_back(variants[i].gemmBlocking().name, t[firstBlocking + i].median);
    if (dn) {
        row.onednnInt8Seconds = t[3].median;
        row.onednnBestSeconds = t[3].best;
        // Check oneDNN computed the same thing (else its time would mean nothing).
        std::vector<float> ours(y.size());
        dl->forwardQuantized(qa.data(), tokens, p, ours.data());
        dn->run(qa.data(), y.data());
        for (size_t i = 0; i < y.size(); ++i)
            row.onednnMaxAbsDiff = std::max(row.onednnMaxAbsDiff, double(std::abs(y[i] - ours[i])));
    }
    return row;
}

}  // namespace quantlens
