// The specification of the int8 GEMM kernels: plain loops, nothing clever. Every SIMD
// variant is tested against these bit for bit (tests/core/tst_gemm.cpp).
#include "kernels/gemm.h"

namespace quantlens::kernels {

void gemm_u8s8s32_ref(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda,
                      const int8_t* w, int64_t ldw, int32_t* c, int64_t ldc)
{
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            int32_t acc = 0;
            for (int64_t p = 0; p < k; ++p)
                acc += int32_t(a[i * lda + p]) * int32_t(w[j * ldw + p]);
            c[i * ldc + j] = acc;
        }
}

void gemm_s8s8s32_ref(int64_t m, int64_t n, int64_t k, const int8_t* a, int64_t lda,
                      const int8_t* w, int64_t ldw, int32_t* c, int64_t ldc)
{
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            int32_t acc = 0;
            for (int64_t p = 0; p < k; ++p)
                acc += int32_t(a[i * lda + p]) * int32_t(w[j * ldw + p]);
            c[i * ldc + j] = acc;
        }
}

// FBGEMM's ReQuantizeForFloat: the scale product is formed in float first, then applied to
// the float of the zero-point-corrected accumulator, then the bias is added (no FMA).
void requant_f32_ref(int64_t m, int64_t n, const int32_t* acc, int64_t ldacc,
                     const int32_t* colSum, const Requant& rq, float* y, int64_t ldy)
{
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            const int32_t raw = acc[i * ldacc + j] - rq.aZero[i * rq.aZeroStride] * colSum[j];
            const float mult = rq.aScale[i * rq.aScaleStride] * rq.wScale[j * rq.wScaleStride];
            const float scaled = float(raw) * mult;
            y[i * ldy + j] = rq.bias ? scaled + rq.bias[j] : scaled;
        }
}

}  // namespace quantlens::kernels
