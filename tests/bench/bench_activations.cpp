// Calibration and GPTQ cost (issue #19), one thread: records every linear layer's input
// statistics and Hessian over calibration tokens on the built-in demo model shaped as asked
// (default 8 layers, hidden 512, FFN 2048: DistilBERT-shaped, 48 linear layers), then
// GPTQs every layer at 4 bits, group 128. Prints time per layer and in total, the bytes the
// statistics hold and the peak resident memory. With --dump DIR it also writes the widest
// layer's weight and Hessian as .npy for tests/scripts/bench_torch_gptq.py, which times
// the torch reference on the same layer in the same run.
//
//   bench_activations [--layers N] [--hidden H] [--tokens T] [--sequences S] [--dump DIR]
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "io/demomodel.h"
#include "io/npywriter.h"
#include "quant/gptq.h"
#include "runner/actstats.h"
#include "runner/encoder.h"
#include "runner/fp32linear.h"

using namespace quantlens;

namespace {

// CPU time of this process: on a shared, loaded machine wall time mostly measures the
// other processes; with one thread, CPU time is what one core spent.
struct Clock {
    std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
    double cpu = cpuNow();
    static double cpuNow()
    {
        timespec t{};
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
        return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
    }
    double cpuSeconds() const { return cpuNow() - cpu; }
    double wallSeconds() const
    {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count();
    }
};

long peakRssKiB()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

void fail(const Error& e)
{
    std::fprintf(stderr, "%s\n", e.oneLine().c_str());
    std::exit(1);
}

}  // namespace

int main(int argc, char** argv)
{
    int layers = 8, hidden = 512, tokens = 128, sequences = 4;
    std::string dump;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--dump") {
            dump = argv[i + 1];
            continue;
        }
        const int v = std::atoi(argv[i + 1]);
        if (k == "--layers") layers = v;
        else if (k == "--hidden") hidden = v;
        else if (k == "--tokens") tokens = v;
        else if (k == "--sequences") sequences = v;
    }
    setBlasThreads(1);
    const Model m = makeDemoModel(layers, hidden);
    auto r = EncoderRunner::create(m);
    if (!r)
        fail(r.error());
    std::vector<std::vector<int64_t>> seqs;
    for (int s = 0; s < sequences; ++s)
        seqs.push_back(randomEncoderInput(1, tokens, r->config().vocab, uint64_t(s + 1)).ids);

    const long rssBefore = peakRssKiB();
    Clock c0;
    auto fwd = r->forward(randomEncoderInput(int64_t(sequences), tokens, r->config().vocab));
    if (!fwd)
        fail(fwd.error());
    const double forwardOnly = c0.cpuSeconds();
    Clock c1;
    auto rec = recordActivations(*r, seqs);
    if (!rec)
        fail(rec.error());
    const double calib = c1.cpuSeconds(), calibWall = c1.wallSeconds();
    std::printf("model: demo %d layers, hidden %d, FFN %d, %lld linear layers; %d x %d tokens, one thread\n", layers,
                hidden, 4 * hidden, (long long)r->linearCount(), sequences, tokens);
    std::printf("calibration (stats + histogram + Hessian of every layer): %.3f s CPU (%.3f s wall; the plain "
                "forward: %.3f s CPU), %.1f MiB of statistics, peak RSS %.1f MiB (%.1f before)\n",
                calib, calibWall, forwardOnly, double(rec->bytes) / 1048576.0, double(peakRssKiB()) / 1024.0,
                double(rssBefore) / 1024.0);

    QuantSpec spec;
    spec.scheme = Scheme::TorchSymmetric;
    spec.bits = 4;
    spec.granularity = Granularity::PerGroup;
    spec.groupSize = 128;
    double total = 0;
    std::string widest;
    int64_t widestIn = 0;
    for (const LayerActivationStats& l : rec->layers) {
        const LayerActivationStats& s = *rec->find(l.name);
        auto lw = readLinearWeight(m, l.name);
        if (!lw)
            fail(lw.error());
        Clock c;
        auto g = gptqQuantize(lw->w, lw->out, lw->in, s.hessian, spec);
        const double t = c.cpuSeconds();
        if (!g)
            fail(g.error());
        total += t;
        if (l.index < 6)  // the first block's layers; the rest repeat them
            std::printf("  GPTQ %-48s [%lld x %lld] %.3f s CPU\n", l.name.c_str(), (long long)lw->out, (long long)lw->in, t);
        if (lw->in > widestIn) {
            widestIn = lw->in;
            widest = l.name;
        }
    }
    std::printf("GPTQ 4-bit group 128, all %zu layers: %.3f s CPU; peak RSS %.1f MiB\n", rec->layers.size(), total,
                double(peakRssKiB()) / 1024.0);

    if (!dump.empty()) {
        const LayerActivationStats& s = *rec->find(widest);
        auto lw = readLinearWeight(m, widest);
        if (!lw)
            fail(lw.error());
        Clock c;
        auto g = gptqQuantize(lw->w, lw->out, lw->in, s.hessian, spec);
        const double t = c.cpuSeconds();
        if (!g)
            fail(g.error());
        auto bytes = [](const auto& v) { return std::as_bytes(std::span(v)); };
        std::vector<int32_t> q(g->quantized.q.begin(), g->quantized.q.end());
        for (Status st : {writeNpyFile(dump + "/weight.npy", DType::F32, {lw->out, lw->in}, bytes(lw->w)),
                          writeNpyFile(dump + "/hessian.npy", DType::F64, {lw->in, lw->in}, bytes(s.hessian)),
                          writeNpyFile(dump + "/q.npy", DType::I32, {lw->out, lw->in}, bytes(q))})
            if (!st)
                fail(st.error());
        std::printf("dumped %s [%lld x %lld]: quantlens GPTQ %.3f s CPU\n", widest.c_str(), (long long)lw->out,
                    (long long)lw->in, t);
    }
    return 0;
}
