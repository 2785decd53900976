// The vpdpbusd zmm loop behind vnniPeakGops(): in asm because GCC spills an array of 24
// accumulators in a loop this simple, and 24 chains cover the instruction's latency at two
// issues per cycle.
#include <algorithm>
#include <ctime>

namespace quantlens::kernels {

namespace {

double threadSeconds()
{
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

}  // namespace

#define QL_DP(i) "vpdpbusd %%zmm24, %%zmm25, %%zmm" #i "\n\t"
double vnniPeakGopsAvx512()
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
        if (dt > 0)
            best = std::max(best, 2.0 * 64 * 24 * double(kIters) / dt * 1e-9);
    }
    return best;
}
#undef QL_DP

}  // namespace quantlens::kernels
