#pragma once
// What this CPU *and* its OS support. An instruction set counts only when CPUID reports it
// and XGETBV shows the OS saves the matching register state (YMM for AVX*, ZMM/opmask for
// AVX-512); otherwise the first instruction would fault.
namespace quantlens::kernels {

struct CpuFeatures {
    bool avx2 = false;      // AVX2 + FMA + F16C with OS YMM state
    bool avxvnni = false;   // AVX-VNNI (VEX vpdpbusd on ymm)
    bool avx512vnni = false;  // AVX-512 F/BW/DQ/VL/VNNI with OS ZMM state
    // CPUID leaf 0 / leaf 1 identity (display family and model, extended fields folded in):
    // the key of the GEMM blocking table and cache (kernels/gemmtune.h).
    char vendor[13] = {};  // "GenuineIntel", "AuthenticAMD"; empty off x86
    int family = 0, model = 0, stepping = 0;
};

const CpuFeatures& cpuFeatures();

}  // namespace quantlens::kernels
