// The AVX2 element-wise variant: eltwise_impl.h compiled with -mavx2, one ymm per vec8
// vector. Bit-identical to eltwise_ref.cpp (no FMA contraction: kernels/ build with
// -ffp-contract=off).
#define QL_ELTWISE_NS avx2
#include "kernels/eltwise_impl.h"

namespace quantlens::kernels {

extern const EltwiseKernels kEltwiseAvx2;
const EltwiseKernels kEltwiseAvx2 = {"avx2", avx2::gelu, avx2::geluTanh, avx2::siluMul, avx2::addInPlace,
                                     avx2::maskedSoftmax, avx2::layerNormRow, avx2::rmsNormRow};

}  // namespace quantlens::kernels
