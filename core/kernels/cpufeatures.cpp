#include "kernels/cpufeatures.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace quantlens::kernels {

namespace {

#if defined(__x86_64__) || defined(__i386__)
uint64_t xgetbv0()
{
    uint32_t lo = 0, hi = 0;
    // Raw encoding of xgetbv so the file needs no -mxsave.
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t(hi) << 32) | lo;
}

CpuFeatures detect()
{
    CpuFeatures f;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        std::memcpy(f.vendor, &b, 4);
        std::memcpy(f.vendor + 4, &d, 4);
        std::memcpy(f.vendor + 8, &c, 4);
    }
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return f;
    // Intel SDM / AMD APM: the extended family adds to a base family of 15, the extended
    // model is the high nibble for families 6 and >= 15.
    const int baseFamily = int((a >> 8) & 0xF), baseModel = int((a >> 4) & 0xF);
    f.family = baseFamily == 0xF ? baseFamily + int((a >> 20) & 0xFF) : baseFamily;
    f.model = (baseFamily == 6 || baseFamily == 0xF) ? (int((a >> 16) & 0xF) << 4) | baseModel : baseModel;
    f.stepping = int(a & 0xF);
    const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!osxsave || !avx)
        return f;
    const uint64_t xcr0 = xgetbv0();
    const bool ymmState = (xcr0 & 0x6) == 0x6;          // SSE + AVX state
    const bool zmmState = (xcr0 & 0xE6) == 0xE6;        // + opmask, ZMM_Hi256, Hi16_ZMM
    if (!ymmState)
        return f;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return f;
    const bool avx2 = b & (1u << 5);
    const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
               avx512vl = b & (1u << 31), avx512vnni = c & (1u << 11);
    f.avx2 = avx2 && fma && f16c;
    f.avx512vnni = zmmState && avx512f && avx512dq && avx512bw && avx512vl && avx512vnni && f.avx2;
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1))
        f.avxvnni = f.avx2 && (a1 & (1u << 4));
    return f;
}
#else
CpuFeatures detect() { return {}; }
#endif

}  // namespace

const CpuFeatures& cpuFeatures()
{
    static const CpuFeatures f = detect();
    return f;
}

}  // namespace quantlens::kernels
