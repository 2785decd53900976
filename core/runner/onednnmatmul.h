#pragma once
// oneDNN's int8 matmul (u8 activations x s8 weights -> f32 with scale, source zero point
// and bias) on the same operands as our kernels: the side-by-side reference for benchmarks.
// Only built when CMake found libdnnl (QUANTLENS_HAVE_ONEDNN); otherwise create() says so.
#include <cstdint>
#include <memory>

#include "result.h"

namespace quantlens {

class OnednnInt8Matmul {
public:
    static bool available();
    // wq: [n, k] int8 (one row per output channel), per-tensor weight scale.
    static Result<OnednnInt8Matmul> create(int64_t m, int64_t n, int64_t k, const int8_t* wq, float aScale,
                                           int32_t aZero, float wScale, const float* bias);
    // a: [m, k] u8 row-major (lda = k); y: [m, n] f32.
    void run(const uint8_t* a, float* y) const;
    // oneDNN's OpenMP thread count for the calling thread (no-op when oneDNN is absent).
    static void setThreads(int threads);

    OnednnInt8Matmul(OnednnInt8Matmul&&) noexcept;
    OnednnInt8Matmul& operator=(OnednnInt8Matmul&&) noexcept;
    ~OnednnInt8Matmul();

private:
    OnednnInt8Matmul();
    struct Impl;
    std::unique_ptr<Impl> d_;
};

}  // namespace quantlens
