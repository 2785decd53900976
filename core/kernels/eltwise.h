#pragma once
// The element-wise loops of the transformer runners (runner/encoderops.h): activations,
// row softmax and the norms, one variant per ISA. Both variants are the same source
// (eltwise_impl.h on vec8.h's 8-float vectors), compiled once for the baseline (SSE pairs)
// and once with -mavx2 (one ymm), so they are bit-identical: the same float operations in
// the same order, and no FMA contraction in either (kernels/ build with -ffp-contract=off).
// A separate translation unit per ISA, not target_clones: clang rejects 32-byte vectors
// passed between an AVX2 clone and the baseline helpers it inlines (a psABI error), and
// GCC and clang then build the same code.
#include <cstdint>
#include <vector>

namespace quantlens::kernels {

struct EltwiseKernels {
    const char* name;  // "avx2", "ref"
    void (*gelu)(float* x, int64_t n);
    void (*geluTanh)(float* x, int64_t n);
    void (*siluMul)(float* gate, const float* up, int64_t n);
    void (*addInPlace)(float* x, const float* y, int64_t n);
    void (*maskedSoftmax)(float* s, int64_t n, const float* keep);
    void (*layerNormRow)(float* v, int64_t n, const float* g, const float* b, float eps);
    void (*rmsNormRow)(const float* x, float* y, int64_t n, const float* g, float eps);
};

extern const EltwiseKernels kEltwiseRef;
// The variant matching activeKernels() (avx512vnni/avxvnni/avx2 -> avx2, ref -> ref), so
// QUANTLENS_ISA forces it too; the reference where a bad QUANTLENS_ISA is set.
const EltwiseKernels& activeEltwise();
// Every variant this binary has and this CPU runs, reference last (tests compare them).
std::vector<const EltwiseKernels*> availableEltwise();

}  // namespace quantlens::kernels
