// The portable reductions: the specification the SIMD variants reproduce bit for bit.
#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "kernels/reduce.h"

namespace quantlens::kernels {

namespace {

void minMaxFiniteRef(const float* __restrict p, int64_t groups, float* loOut, float* hiOut)
{
    // Local lanes: through the pointers GCC must assume they alias p and will not vectorise.
    constexpr int W = kMinMaxLanes;
    float lo[W], hi[W];
    std::memcpy(lo, loOut, sizeof lo);
    std::memcpy(hi, hiOut, sizeof hi);
    for (int64_t i = 0; i < groups * W; i += W)
        for (int j = 0; j < W; ++j) {
            const float v = p[i + j];
            const bool fin = std::fabs(v) <= FLT_MAX;
            const float a = fin ? v : lo[j];
            const float b = fin ? v : hi[j];
            lo[j] = a < lo[j] ? a : lo[j];
            hi[j] = b > hi[j] ? b : hi[j];
        }
    std::memcpy(loOut, lo, sizeof lo);
    std::memcpy(hiOut, hi, sizeof hi);
}

void statsSumRef(const float* p, int64_t blocks, double* sum, int64_t* nonFinite, float* lo, float* hi)
{
    constexpr int W = kStatsLanes;
    for (int64_t b = 0; b < blocks; ++b) {
        const float* q = p + b * kStatsBlock;
        double s[W] = {};
        float bad[W] = {};  // float counts: exact, at most 512 per block
        for (int64_t i = 0; i < kStatsBlock; i += W)
            for (int j = 0; j < W; ++j) {
                const float v = q[i + j];
                const bool fin = std::fabs(v) <= FLT_MAX;
                s[j] += fin ? double(v) : 0.0;
                bad[j] += fin ? 0.0f : 1.0f;
                const float l = fin ? v : lo[j];
                const float h = fin ? v : hi[j];
                lo[j] = l < lo[j] ? l : lo[j];
                hi[j] = h > hi[j] ? h : hi[j];
            }
        for (int j = 0; j < W; ++j) {
            *sum += s[j];
            *nonFinite += int64_t(bad[j]);
        }
    }
}

void statsDevRef(const float* p, int64_t blocks, float m, double* sumD, double* sumD2)
{
    constexpr int W = kStatsLanes;
    for (int64_t b = 0; b < blocks; ++b) {
        const float* q = p + b * kStatsBlock;
        double s2[W] = {}, s1[W] = {};
        for (int64_t i = 0; i < kStatsBlock; i += W)
            for (int j = 0; j < W; ++j) {
                const float v = q[i + j];
                const bool fin = std::fabs(v) <= FLT_MAX;
                const double d = fin ? double(v) - double(m) : 0.0;
                s2[j] += d * d;
                s1[j] += d;
            }
        for (int j = 0; j < W; ++j) {
            *sumD2 += s2[j];
            *sumD += s1[j];
        }
    }
}

void foldMaxAbsRef(const float* a, const float* b, int64_t n, float* mag, float* val)
{
    for (int64_t c = 0; c < n; ++c) {
        const float v = b ? a[c] - b[c] : a[c];
        const float m = std::fabs(v);
        if (m > mag[c] && m <= FLT_MAX) {
            mag[c] = m;
            val[c] = v;
        }
    }
}

// Selected with bit masks, not a branch (GCC keeps one for a ?: here): which column wins
// is a coin toss, and the missed branches cost more than the rest.
void foldCellsRef(const float* mag, const float* val, int64_t n, int64_t pool, float* cellMag, float* cellVal)
{
    for (int64_t g = 0, c0 = 0; c0 < n; ++g, c0 += pool) {
        const int64_t c1 = std::min(n, c0 + pool);
        float bm = -1.0f;
        uint32_t bv = 0;
        for (int64_t c = c0; c < c1; ++c) {
            const float m = mag[c];
            const uint32_t take = 0u - uint32_t(m > bm);
            bv ^= (bv ^ std::bit_cast<uint32_t>(val[c])) & take;
            bm = std::max(m, bm);
        }
        cellMag[g] = bm;
        cellVal[g] = std::bit_cast<float>(bv);
    }
}

}  // namespace

void foldCellsTail(const float* mag, const float* val, int64_t n, int64_t pool, float* cellMag, float* cellVal)
{
    foldCellsRef(mag, val, n, pool, cellMag, cellVal);
}

void foldMaxAbsTail(const float* a, const float* b, int64_t n, float* mag, float* val)
{
    foldMaxAbsRef(a, b, n, mag, val);
}

const ReduceKernels kReduceRef = {"ref", minMaxFiniteRef, statsSumRef, statsDevRef, foldMaxAbsRef, foldCellsRef};

}  // namespace quantlens::kernels
