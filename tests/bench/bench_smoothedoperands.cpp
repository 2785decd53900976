// What one α step of the Activations view's SmoothQuant histograms costs (smoothedOperands),
// one thread, on DistilBERT/GPT-2-sized layers: W [3072, 768] (ffn.lin1) and [768, 3072]
// (ffn.lin2) with 512 kept input rows. The view precomputes every α step with the recording,
// so this is the background cost per step, not the slider's.
//
//   bench_smoothedoperands [--repeats N]
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "quant/smoothedoperands.h"
#include "quant/smoothquant.h"

using namespace quantlens;

namespace {

double cpuNow()
{
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

void run(int64_t out, int64_t in, int64_t rows, int repeats)
{
    std::mt19937 rng(1);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(size_t(rows * in)), w(size_t(out * in));
    for (float& v : x)
        v = g(rng);
    for (float& v : w)
        v = 0.04f * g(rng);
    std::vector<float> amax(size_t(in), 0.0f);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < in; ++j)
            amax[size_t(j)] = std::max(amax[size_t(j)], std::abs(x[size_t(r * in + j)]));
    const std::vector<float> wmax = weightColumnAbsMax({w}, in);
    double best = 1e30;
    for (int k = 0; k < repeats; ++k) {
        const std::vector<float> s = smoothQuantScales(amax, wmax, double(k % 21) / 20.0);
        const double t0 = cpuNow();
        auto r = smoothedOperands(x, rows, w, out, in, amax, wmax, s, 201);
        const double t = cpuNow() - t0;
        if (!r) {
            std::fprintf(stderr, "%s\n", r.error().oneLine().c_str());
            std::exit(1);
        }
        best = std::min(best, t);
    }
    std::printf("W [%lld, %lld], X [%lld, %lld], 201 bins: %.2f ms per α step (best of %d, CPU time)\n",
                (long long)out, (long long)in, (long long)rows, (long long)in, best * 1e3, repeats);
}

}  // namespace

int main(int argc, char** argv)
{
    int repeats = 21;
    for (int i = 1; i + 1 < argc; i += 2)
        if (std::strcmp(argv[i], "--repeats") == 0)
            repeats = std::max(1, std::atoi(argv[i + 1]));
    run(3072, 768, 512, repeats);
    run(768, 3072, 512, repeats);
    return 0;
}
