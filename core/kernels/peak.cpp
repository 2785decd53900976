#include "kernels/peak.h"

#include <cstring>

#include "kernels/gemm.h"

namespace quantlens::kernels {

#ifdef QUANTLENS_HAVE_kernels_avx512
double vnniPeakGopsAvx512();  // peak_avx512vnni.cpp, built with the AVX-512 flags
#endif

double vnniPeakGops()
{
#ifdef QUANTLENS_HAVE_kernels_avx512
    if (std::strcmp(activeIsa(), "avx512vnni") == 0)
        return vnniPeakGopsAvx512();
#endif
    return 0;
}

}  // namespace quantlens::kernels
