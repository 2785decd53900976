#include "runner/encoderops.h"

#include <algorithm>

#include "kernels/eltwise.h"

namespace quantlens::encoderops {

using kernels::activeEltwise;

void gelu(float* x, int64_t n) { activeEltwise().gelu(x, n); }
void geluTanh(float* x, int64_t n) { activeEltwise().geluTanh(x, n); }
void siluMul(float* gate, const float* up, int64_t n) { activeEltwise().siluMul(gate, up, n); }
void addInPlace(float* x, const float* y, int64_t n) { activeEltwise().addInPlace(x, y, n); }
void maskedSoftmax(float* s, int64_t n, const float* keep) { activeEltwise().maskedSoftmax(s, n, keep); }

void CausalKeys::setSequence(const uint8_t* mask)
{
    for (int64_t j = 0; j < T_; ++j) {
        keep_[size_t(j)] = mask[j] ? 1.0f : 0.0f;
        realBefore_[size_t(j) + 1] = realBefore_[size_t(j)] + (mask[j] ? 1 : 0);
    }
}

void CausalKeys::softmaxRow(int64_t t, float* row) const
{
    const int64_t lo = window_ > 0 && t + 1 > window_ ? t + 1 - window_ : 0;
    const bool anyReal = realBefore_[size_t(t) + 1] > realBefore_[size_t(lo)];
    std::fill(row, row + lo, 0.0f);
    maskedSoftmax(row + lo, t + 1 - lo, anyReal ? keep_.data() + lo : ones_.data());
    std::fill(row + t + 1, row + T_, 0.0f);
}

void layerNorm(float* x, int64_t rows, int64_t n, const std::vector<float>& g, const std::vector<float>& b, double eps)
{
    const kernels::EltwiseKernels& e = activeEltwise();
    for (int64_t r = 0; r < rows; ++r)
        e.layerNormRow(x + r * n, n, g.data(), b.data(), float(eps));
}

void rmsNorm(const float* x, float* y, int64_t rows, int64_t n, const std::vector<float>& g, double eps)
{
    const kernels::EltwiseKernels& e = activeEltwise();
    for (int64_t r = 0; r < rows; ++r)
        e.rmsNormRow(x + r * n, y + r * n, n, g.data(), float(eps));
}

}  // namespace quantlens::encoderops
