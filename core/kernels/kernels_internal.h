#pragma once
// Shared between the kernel files and dispatch.cpp only; not part of the public API.
#include "kernels/gemm.h"
#include "kernels/quantrun.h"
#include "kernels/reduce.h"

namespace quantlens::kernels {

extern const GemmKernels kKernelsRef;
#ifdef QUANTLENS_HAVE_kernels_avx2
extern const GemmKernels kKernelsAvx2;
#endif
#ifdef QUANTLENS_HAVE_kernels_avxvnni
extern const GemmKernels kKernelsAvxVnni;
#endif
#ifdef QUANTLENS_HAVE_kernels_avx512
extern const GemmKernels kKernelsAvx512Vnni;
#endif

#ifdef QUANTLENS_HAVE_kernels_avx2
extern const ReduceKernels kReduceAvx2;
#endif
#ifdef QUANTLENS_HAVE_kernels_avx512
extern const ReduceKernels kReduceAvx512;
#endif

bool minMax_ref(const float* x, int64_t n, float* mn, float* mx);
void quantizeU8_ref(const float* x, int64_t n, float invScale, int32_t zeroPoint, uint8_t* q);

}  // namespace quantlens::kernels

namespace quantlens::quantrun {
#ifdef QUANTLENS_HAVE_kernels_avx2
extern const QuantKernels kQuantAvx2;
int histogramSlotsAvx2(const float* x, int32_t* slots, int n, const SlotParams& p, bool absolute, int32_t* nearAt);
#endif
#ifdef QUANTLENS_HAVE_kernels_avx512
extern const QuantKernels kQuantAvx512;
int histogramSlotsAvx512(const float* x, int32_t* slots, int n, const SlotParams& p, bool absolute, int32_t* nearAt);
#endif
}  // namespace quantlens::quantrun
