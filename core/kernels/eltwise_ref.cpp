// The baseline element-wise variant (vec8's vectors as SSE pairs) and the choice between
// the variants, which follows the GEMM's (dispatch.cpp).
#include <exception>
#include <string>

#include "kernels/cpufeatures.h"
#include "kernels/gemm.h"

#define QL_ELTWISE_NS ref
#include "kernels/eltwise_impl.h"

namespace quantlens::kernels {

#ifdef QUANTLENS_HAVE_kernels_avx2
extern const EltwiseKernels kEltwiseAvx2;
#endif

const EltwiseKernels kEltwiseRef = {"ref", ref::gelu, ref::geluTanh, ref::siluMul, ref::addInPlace,
                                    ref::maskedSoftmax, ref::layerNormRow, ref::rmsNormRow};

const EltwiseKernels& activeEltwise()
{
    // Never throws: a bad QUANTLENS_ISA is reported by the GEMM, and the runners' worker
    // threads must not die of it here.
    static const EltwiseKernels* e = []() -> const EltwiseKernels* {
        try {
            const std::string isa = activeIsa();
#ifdef QUANTLENS_HAVE_kernels_avx2
            if (isa == "avx512vnni" || isa == "avxvnni" || isa == "avx2")
                return &kEltwiseAvx2;
#endif
        } catch (const std::exception&) {
        }
        return &kEltwiseRef;
    }();
    return *e;
}

std::vector<const EltwiseKernels*> availableEltwise()
{
    std::vector<const EltwiseKernels*> v;
#ifdef QUANTLENS_HAVE_kernels_avx2
    if (cpuFeatures().avx2)
        v.push_back(&kEltwiseAvx2);
#endif
    v.push_back(&kEltwiseRef);
    return v;
}

}  // namespace quantlens::kernels
