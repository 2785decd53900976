#pragma once
// The int8 multiply-add throughput this core delivers right now, for judging a GEMM against
// the clock of the same moment (a shared or throttled machine runs well below its nominal
// peak; docs/kernels.md).

namespace quantlens::kernels {

// GOP/s of 24 independent vpdpbusd zmm chains (2 * 64 multiply-adds per instruction), this
// thread's CPU time, fastest of five ~10 ms runs. 0 when the active kernels are not the
// AVX-512 VNNI ones (there is then no single instruction whose rate bounds the GEMM).
double vnniPeakGops();

}  // namespace quantlens::kernels
