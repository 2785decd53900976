// Benchmark of the int8 dynamic linear on DistilBERT shapes: microseconds per call (median
// of repeats, hot cache, one thread unless argv[1] says otherwise), GOP/s = 2*M*N*K/time,
// and the speed-up over float32 OpenBLAS and over oneDNN's int8 matmul.
//   build-k/tests/bench_gemm [threads] [tokens...]
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/gemm.h"
#include "runner/fp32linear.h"
#include "runner/linearbench.h"

using namespace quantlens;

int main(int argc, char** argv)
{
    LinearBenchOptions o;
    o.threads = argc > 1 ? std::atoi(argv[1]) : 1;
    // QUANTLENS_BENCH_CPU_TIME=1: this thread's CPU time instead of wall time, for a loaded machine.
    o.threadCpuTime = std::getenv("QUANTLENS_BENCH_CPU_TIME") != nullptr && o.threads == 1;
    std::vector<int64_t> tokens;
    for (int i = 2; i < argc; ++i)
        tokens.push_back(std::atoll(argv[i]));
    if (tokens.empty())
        tokens = {1, 8, 32, 128};
    std::printf("isa %s, threads %d, OpenBLAS core %s, %s\n", kernels::activeIsa(), o.threads, blasCoreName().c_str(),
                o.threadCpuTime ? "thread CPU time" : "wall time");
    std::printf("median of repeats (fastest repeat in parentheses)\n");
    std::printf("%-10s %5s | %16s %16s %16s %16s | %8s %8s | %8s %8s\n", "shape", "M", "fp32 us", "int8 us", "gemm us",
                "oneDNN us", "int8GOPs", "gemmGOPs", "x fp32", "x oneDNN");
    std::printf("(oneDNN output vs ours: max |diff| printed last)\n");
    for (const LinearBenchShape& s : distilbertBenchShapes())
        for (int64_t m : tokens) {
            auto r = benchLinear(s, m, o);
            if (!r) {
                std::fprintf(stderr, "%s\n", r.error().oneLine().c_str());
                return 1;
            }
            std::printf("%-10s %5lld | %7.1f (%6.1f) %7.1f (%6.1f) %7.1f (%6.1f) %7.1f (%6.1f) | %8.0f %8.0f | %8.2f %8.2f  %.2g\n",
                        s.name.c_str(), static_cast<long long>(m), r->fp32Seconds * 1e6, r->fp32BestSeconds * 1e6,
                        r->int8Seconds * 1e6, r->int8BestSeconds * 1e6, r->gemmSeconds * 1e6, r->gemmBestSeconds * 1e6,
                        r->onednnInt8Seconds * 1e6, r->onednnBestSeconds * 1e6, r->int8Gops(), r->gemmGops(), r->speedup(),
                        r->onednnInt8Seconds > 0 ? r->onednnInt8Seconds / r->int8Seconds : 0.0, r->onednnMaxAbsDiff);
        }
    return 0;
}
