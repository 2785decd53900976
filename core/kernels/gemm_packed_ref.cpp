// The portable entry of the dispatch table: scalar loops over the packed layout. Slow, but
// always available, and tested against the plain-loop specification in gemm_ref.cpp.
#include <algorithm>
#include <cmath>

#include "kernels/gemm.h"
#include "kernels/kernels_internal.h"

namespace quantlens::kernels {

namespace {

void accumulatePanel(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p,
                     int64_t col0, int64_t cols, int32_t* acc /* [m][cols] */)
{
    const int64_t width = w.panelWidth(p);
    const int8_t* b = w.panel(p);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < cols; ++c) {
            int32_t s = 0;
            for (int64_t g = 0; g < w.k4 / 4; ++g)
                for (int64_t t = 0; t < 4; ++t)
                    s += int32_t(a[i * lda + g * 4 + t]) * int32_t(b[(g * width + c) * 4 + t]);
            acc[i * cols + c] = s;
        }
    (void)col0;
}

void gemmS32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             int32_t* c, int64_t ldc, bool, const GemmBlocking&)
{
    std::vector<int32_t> acc;
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t col0 = p * PackedWeights::kPanel;
        const int64_t cols = std::min(w.n - col0, PackedWeights::kPanel);
        acc.resize(size_t(m * cols));
        accumulatePanel(m, a, lda, w, p, col0, cols, acc.data());
        for (int64_t i = 0; i < m; ++i)
            std::copy_n(acc.data() + i * cols, cols, c + i * ldc + col0);
    }
}

void gemmF32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
             const Requant& rq, float* y, int64_t ldy, bool, const GemmBlocking&)
{
    std::vector<int32_t> acc;
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t col0 = p * PackedWeights::kPanel;
        const int64_t cols = std::min(w.n - col0, PackedWeights::kPanel);
        acc.resize(size_t(m * cols));
        accumulatePanel(m, a, lda, w, p, col0, cols, acc.data());
        Requant shifted = rq;
        shifted.wScale = rq.wScale + col0 * rq.wScaleStride;
        shifted.bias = rq.bias ? rq.bias + col0 : nullptr;
        requant_f32_ref(m, cols, acc.data(), cols, w.colSum.data() + col0, shifted, y + col0, ldy);
    }
}

}  // namespace

bool minMax_ref(const float* x, int64_t n, float* mn, float* mx)
{
    float lo = x[0], hi = x[0];
    bool nan = false;
    for (int64_t i = 0; i < n; ++i) {
        nan |= std::isnan(x[i]);
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    *mn = lo;
    *mx = hi;
    return !nan;
}

void quantizeU8_ref(const float* x, int64_t n, float invScale, int32_t zeroPoint, uint8_t* q)
{
    const float z = float(zeroPoint);
    for (int64_t i = 0; i < n; ++i) {
        // Clip below 2^31 first, as FBGEMM does, so the float->int conversion cannot overflow.
        const float t = std::min(std::fma(x[i], invScale, z), 2147483520.0f);
        const long r = std::lrint(t);  // default rounding mode: half to even, like cvtps2dq
        q[i] = uint8_t(std::clamp<long>(r, 0, 255));
    }
}

// One scalar loop order; nothing to tune.
const GemmBlocking kRefBlockings[] = {{"panel", 1, 64, 0, false, 0}};
const GemmKernels kKernelsRef = {"ref", gemmS32, gemmF32, minMax_ref, quantizeU8_ref, kRefBlockings, 1};

}  // namespace quantlens::kernels
