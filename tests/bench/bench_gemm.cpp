// Benchmark of the int8 dynamic linear on DistilBERT shapes: microseconds per call (median
// of repeats, hot cache, one thread unless argv[1] says otherwise), GOP/s = 2*M*N*K/time,
// and the speed-up over float32 OpenBLAS and over oneDNN's int8 matmul.
//   build-k/tests/bench_gemm [threads] [tokens...]
// With AVX-512 VNNI active, each row also measures the vpdpbusd zmm peak (independent
// chains, nothing else) right before it, so "%peak" compares against the clock the CPU ran
// at in that moment (a shared or warm machine runs well below the idle 1080 GOP/s). The
// peak is always timed in thread CPU time: compare with QUANTLENS_BENCH_CPU_TIME=1 figures.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include <immintrin.h>

#include "kernels/gemm.h"
#include "runner/fp32linear.h"
#include "runner/linearbench.h"

using namespace quantlens;

namespace {

double threadSeconds()
{
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

#if defined(__x86_64__) && defined(__GNUC__)
// 24 independent vpdpbusd chains (enough to cover its latency at two per cycle), written
// in asm because GCC spills an array of 24 accumulators in a loop this simple. Int8 GOP/s =
// 2 * 64 multiply-adds per instruction; thread CPU time, fastest of 5 runs of ~10 ms.
#define QL_DP(i) "vpdpbusd %%zmm24, %%zmm25, %%zmm" #i "\n\t"
__attribute__((target("avx512f,avx512vnni"))) double vnniPeakGops()
{
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
        constexpr long kIters = 1500000;
        const double t0 = threadSeconds();
        for (long i = 0; i < kIters; ++i)
            asm volatile(QL_DP(0) QL_DP(1) QL_DP(2) QL_DP(3) QL_DP(4) QL_DP(5) QL_DP(6) QL_DP(7) QL_DP(8) QL_DP(9)
                             QL_DP(10) QL_DP(11) QL_DP(12) QL_DP(13) QL_DP(14) QL_DP(15) QL_DP(16) QL_DP(17) QL_DP(18)
                                 QL_DP(19) QL_DP(20) QL_DP(21) QL_DP(22) QL_DP(23)::
                                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                                       "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",
                                       "xmm19", "xmm20", "xmm21", "xmm22", "xmm23");
        const double dt = threadSeconds() - t0;
        best = std::max(best, 2.0 * 64 * 24 * double(kIters) / dt * 1e-9);
    }
    return best;
}
#undef QL_DP
#else
double vnniPeakGops() { return 0; }
#endif

}  // namespace

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
    const bool peak = std::strcmp(kernels::activeIsa(), "avx512vnni") == 0;
    std::printf("%-10s %5s | %16s %16s %16s %16s | %8s %8s | %8s %8s | %6s %6s\n", "shape", "M", "fp32 us", "int8 us",
                "gemm us", "oneDNN us", "int8GOPs", "gemmGOPs", "x fp32", "x oneDNN", "peak", "%peak");
    std::printf("(peak: vpdpbusd zmm GOP/s measured just before the row; %%peak = gemmGOPs / peak;\n"
                " oneDNN output vs ours: max |diff| printed last)\n");
    for (const LinearBenchShape& s : distilbertBenchShapes())
        for (int64_t m : tokens) {
            const double peakGops = peak ? vnniPeakGops() : 0;
            auto r = benchLinear(s, m, o);
            if (!r) {
                std::fprintf(stderr, "%s\n", r.error().oneLine().c_str());
                return 1;
            }
            char peakText[32] = "     -      -";
            if (peakGops > 0)
                std::snprintf(peakText, sizeof peakText, "%6.0f %5.0f%%", peakGops, 100.0 * r->gemmGops() / peakGops);
            std::printf("%-10s %5lld | %7.1f (%6.1f) %7.1f (%6.1f) %7.1f (%6.1f) %7.1f (%6.1f) | %8.0f %8.0f | %8.2f %8.2f | "
                        "%s  %.2g\n",
                        s.name.c_str(), static_cast<long long>(m), r->fp32Seconds * 1e6, r->fp32BestSeconds * 1e6,
                        r->int8Seconds * 1e6, r->int8BestSeconds * 1e6, r->gemmSeconds * 1e6, r->gemmBestSeconds * 1e6,
                        r->onednnInt8Seconds * 1e6, r->onednnBestSeconds * 1e6, r->int8Gops(), r->gemmGops(), r->speedup(),
                        r->onednnInt8Seconds > 0 ? r->onednnInt8Seconds / r->int8Seconds : 0.0, peakText,
                        r->onednnMaxAbsDiff);
        }
    return 0;
}
