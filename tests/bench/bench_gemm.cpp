// Benchmark of the int8 dynamic linear on DistilBERT shapes: microseconds per call (median
// of repeats, hot cache, one thread unless argv[1] says otherwise), GOP/s = 2*M*N*K/time,
// and the speed-up over float32 OpenBLAS and over oneDNN's int8 matmul.
//   build-k/tests/bench_gemm [threads] [tokens...]
// With AVX-512 VNNI active, each row also measures the vpdpbusd zmm peak (independent
// chains, nothing else) right before it, so "%peak" compares against the clock the CPU ran
// at in that moment (a shared or warm machine runs well below the idle 1080 GOP/s). The
// peak is always timed in thread CPU time: compare with QUANTLENS_BENCH_CPU_TIME=1 figures.
// It prints the GEMM blocking chosen for this CPU and why (kernels/gemmtune.h), and a second
// table with the GEMM alone under every candidate blocking, timed interleaved with the rest
// (QUANTLENS_BENCH_BLOCKINGS=0 skips those).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/gemmtune.h"
#include "kernels/peak.h"
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
    const kernels::BlockingChoice& bc = kernels::activeBlocking(kernels::activeKernels());
    std::printf("cpu %s; blocking %s (%s: %s)\n", kernels::cpuKey().c_str(), bc.blocking->name, bc.source.c_str(),
                bc.why.c_str());
    const char* bb = std::getenv("QUANTLENS_BENCH_BLOCKINGS");
    o.allBlockings = !(bb && std::strcmp(bb, "0") == 0);
    std::vector<std::string> perBlocking;
    std::printf("median of repeats (fastest repeat in parentheses)\n");
    const bool peak = std::strcmp(kernels::activeIsa(), "avx512vnni") == 0;
    std::printf("%-10s %5s | %16s %16s %16s %16s | %8s %8s | %8s %8s | %6s %6s\n", "shape", "M", "fp32 us", "int8 us",
                "gemm us", "oneDNN us", "int8GOPs", "gemmGOPs", "x fp32", "x oneDNN", "peak", "%peak");
    std::printf("(peak: vpdpbusd zmm GOP/s measured just before the row; %%peak = gemmGOPs / peak;\n"
                " oneDNN output vs ours: max |diff| printed last)\n");
    for (const LinearBenchShape& s : distilbertBenchShapes())
        for (int64_t m : tokens) {
            const double peakGops = peak ? kernels::vnniPeakGops() : 0;
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
            if (!r->blockingSeconds.empty()) {
                char line[64];
                std::snprintf(line, sizeof line, "%-10s %5lld |", s.name.c_str(), static_cast<long long>(m));
                std::string text = line;
                for (const auto& [name, sec] : r->blockingSeconds) {
                    std::snprintf(line, sizeof line, " %8.1f %5.2f |", sec * 1e6,
                                  r->onednnInt8Seconds > 0 ? r->onednnInt8Seconds / sec : 0.0);
                    text += line;
                }
                perBlocking.push_back(text);
            }
        }
    if (!perBlocking.empty()) {
        const kernels::GemmKernels& kr = kernels::activeKernels();
        std::printf("\nGEMM + epilogue alone per candidate blocking: us, x oneDNN (> 1: faster than oneDNN)\n%-16s |",
                    "shape M");
        for (int i = 0; i < kr.blockingCount; ++i)
            std::printf(" %14s |", kr.blockings[i].name);
        std::printf("\n");
        for (const std::string& l : perBlocking)
            std::printf("%s\n", l.c_str());
    }
    return 0;
}
