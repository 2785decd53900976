// ggml's k-quant reference quantizers (quantize_row_q4_K_ref, _q5_K_ref, _q6_K_ref):
// super-blocks of 256 values with 6-bit (Q4_K/Q5_K) or 8-bit (Q6_K) sub-block scales.
// Every expression keeps ggml's operand order and float/int conversions; the file is built
// with -ffp-contract=off so none of them is fused.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "halffloat.h"
#include "quant/ggmlkquant.h"
#include "quant/ggmlquantdetail.h"

namespace quantlens::ggmlref {

namespace {

using ggmldetail::nearestInt;
using ggmldetail::putHalf;

constexpr int kQK = 256;

// Eight lanes of floats / ints (GCC and Clang vector extensions; plain SSE2 pairs on the
// baseline x86-64 build). Each lane does exactly the scalar code's operations in its order,
// so the bits are ggml's.
constexpr int kLanes = 4;
using F8 = float __attribute__((vector_size(16)));
using I8 = int32_t __attribute__((vector_size(16)));

// nearestInt, lane by lane.
inline I8 nearestInt8(F8 v)
{
    const F8 t = v + 12582912.0f;
    return (std::bit_cast<I8>(t) & 0x007fffff) - 0x00400000;
}

// std::max(lo, std::min(hi, l)), lane by lane (comparisons give -1, all bits, or 0).
inline I8 clampLevels(I8 l, int lo, int hi)
{
    const I8 under = l < lo;
    l = (l & ~under) | (lo & under);
    const I8 over = l > hi;
    return (l & ~over) | (hi & over);
}
constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: below it a sub-block is "all zero"

// make_qkx2_quants with use_mad = false (the only way Q4_K and Q5_K call it): an affine
// fit of n values to levels 0..nmax, trying nstep+1 scales around nmax/(max-min) and
// keeping the one with the smallest weighted squared error. Returns the scale; *negMin
// receives -min (>= 0).
float makeQkx2(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* negMin, float rmin,
               float rdelta, int nstep)
{
    float min = x[0];
    float max = x[0];
    float sumW = weights[0];
    float sumX = sumW * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        const float w = weights[i];
        sumW += w;
        sumX += w * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        std::memset(L, 0, size_t(n));
        *negMin = -min;
        return 0.0f;
    }
    float iscale = float(nmax) / (max - min);
    float scale = 1 / iscale;
    float bestError = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearestInt(iscale * (x[i] - min));
        L[i] = uint8_t(std::max(0, std::min(nmax, l)));
        float diff = scale * float(L[i]) + min - x[i];
        diff = diff * diff;
        bestError += weights[i] * diff;
    }
    // ggml tries the nstep + 1 candidate scales one after the other, and a candidate that wins
    // moves `min`, which the next ones start from. Here kLanes candidates run side by side from
    // the current min, each lane summing its values in ggml's order (the same bits: the
    // compiler vectorizes across lanes, never within a sum); they are then taken in ggml's
    // order, and once a winner moves min the rest of the batch is redone from the new min.
    for (int base = 0; base <= nstep;) {
        const float xmin = min;
        F8 isc;
        for (int c = 0; c < kLanes; ++c)
            isc[c] = (rmin + rdelta * float(base + c) + float(nmax)) / (max - xmin);
        F8 sumL{}, sumL2{}, sumXL{};
        I8 la[32];  // la[i][c]: value i's level for candidate c (n <= 32: ggml's sub-blocks)
        for (int i = 0; i < n; ++i) {
            const float xm = x[i] - xmin;
            const I8 l = clampLevels(nearestInt8(isc * xm), 0, nmax);
            la[i] = l;
            const F8 fl = __builtin_convertvector(l, F8);
            const float w = weights[i];
            sumL += w * fl;
            sumL2 += w * fl * fl;
            sumXL += w * fl * x[i];
        }
        F8 tScale, tMin;
        for (int c = 0; c < kLanes; ++c) {
            const float D = sumW * sumL2[c] - sumL[c] * sumL[c];
            tScale[c] = (sumW * sumXL[c] - sumX * sumL[c]) / D;
            tMin[c] = (sumL2[c] * sumX - sumL[c] * sumXL[c]) / D;
            if (tMin[c] > 0) {
                tMin[c] = 0;
                tScale[c] = sumXL[c] / sumL2[c];
            }
        }
        F8 err{};
        for (int i = 0; i < n; ++i) {
            F8 diff = tScale * __builtin_convertvector(la[i], F8) + tMin - x[i];
            diff = diff * diff;
            err += weights[i] * diff;
        }
        int next = base + kLanes;
        for (int c = 0; c < kLanes && base + c <= nstep; ++c) {
            const float D = sumW * sumL2[c] - sumL[c] * sumL[c];
            if (D > 0 && err[c] < bestError) {
                for (int i = 0; i < n; ++i)
                    L[i] = uint8_t(la[i][c]);
                bestError = err[c];
                scale = tScale[c];
                min = tMin[c];
                if (std::bit_cast<uint32_t>(min) != std::bit_cast<uint32_t>(xmin)) {
                    next = base + c + 1;  // the later lanes started from the old min
                    break;
                }
            }
        }
        base = next;
    }
    *negMin = -min;
    return scale;
}

// make_qx_quants with rmse_type 1 and no importance weights (Q6_K's call): symmetric levels
// -nmax..nmax-1 stored as 0..2*nmax-1, the scale refined by a weighted (x^2) least squares
// over 18 nearby candidates.
float makeQx(int n, int nmax, const float* x, int8_t* L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        std::memset(L, 0, size_t(n));
        return 0.0f;
    }
    float iscale = float(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearestInt(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = int8_t(l + nmax);
        const float w = x[i] * x[i];
        const float fl = float(l);
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    // The 18 candidates -9..9 (not 0) are independent until picked: kLanes at a time, each
    // lane summing in ggml's order, then taken in ggml's order against the best so far.
    constexpr int kCand[18] = {-9, -8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (int base = 0; base < 18; base += kLanes) {
        F8 isc;
        for (int c = 0; c < kLanes; ++c)
            isc[c] = -(float(nmax) + 0.1f * float(kCand[std::min(17, base + c)])) / max;
        F8 lx{}, l2{};
        I8 la[16];  // n <= 16: Q6_K's sub-blocks
        for (int i = 0; i < n; ++i) {
            const I8 l = clampLevels(nearestInt8(isc * x[i]), -nmax, nmax - 1);
            la[i] = l;
            const F8 fl = __builtin_convertvector(l, F8);
            const float w = x[i] * x[i];
            lx += w * x[i] * fl;
            l2 += w * fl * fl;
        }
        for (int c = 0; c < kLanes && base + c < 18; ++c)
            if (l2[c] > 0 && lx[c] * lx[c] > best * l2[c]) {
                for (int i = 0; i < n; ++i)
                    L[i] = int8_t(nmax + la[i][c]);
                scale = lx[c] / l2[c];
                best = scale * lx[c];
            }
    }
    return scale;
}

// get_scale_min_k4: sub-block j's 6-bit scale and min out of the 12 packed bytes.
void scaleMinK4(int j, const uint8_t* q, uint8_t& d, uint8_t& m)
{
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// The part Q4_K and Q5_K share: per 32-value sub-block an affine fit, the scales and mins
// quantized to 6 bits against fp16 d / dmin, then every value re-quantized against the
// stored scales. Writes d, dmin and scales[12] at blk[0..16); L gets the 256 levels.
void affineSuperBlock(const float* x, int nmax, float rmin, int nstep, uint8_t* L, std::byte* blk)
{
    float mins[kQK / 32], scales[kQK / 32], weights[32];
    float maxScale = 0, maxMin = 0;
    for (int j = 0; j < kQK / 32; ++j) {
        const float* xs = x + 32 * j;
        float sumX2 = 0;
        for (int l = 0; l < 32; ++l)
            sumX2 += xs[l] * xs[l];
        const float avX = std::sqrt(sumX2 / 32);
        for (int l = 0; l < 32; ++l)
            weights[l] = avX + std::fabs(xs[l]);
        scales[j] = makeQkx2(32, nmax, xs, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
        if (scales[j] > maxScale)
            maxScale = scales[j];
        if (mins[j] > maxMin)
            maxMin = mins[j];
    }
    const float invScale = maxScale > 0 ? 63.f / maxScale : 0.f;
    const float invMin = maxMin > 0 ? 63.f / maxMin : 0.f;
    uint8_t sc[12] = {};
    for (int j = 0; j < kQK / 32; ++j) {
        uint8_t ls = uint8_t(nearestInt(invScale * scales[j]));
        uint8_t lm = uint8_t(nearestInt(invMin * mins[j]));
        ls = std::min<uint8_t>(63, ls);
        lm = std::min<uint8_t>(63, lm);
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] |= uint8_t((ls >> 4) << 6);
            sc[j] |= uint8_t((lm >> 4) << 6);
        }
    }
    const uint16_t dh = floatToHalf(maxScale / 63.f);
    const uint16_t mh = floatToHalf(maxMin / 63.f);
    putHalf(blk, dh);
    putHalf(blk + 2, mh);
    std::memcpy(blk + 4, sc, 12);
    const float dAll = halfToFloat(dh), mAll = halfToFloat(mh);
    for (int j = 0; j < kQK / 32; ++j) {
        uint8_t s, m;
        scaleMinK4(j, sc, s, m);
        const float d = dAll * float(s);
        if (d == 0.0f)
            continue;
        const float dm = mAll * float(m);
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearestInt((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = uint8_t(std::max(0, std::min(nmax, l)));
        }
    }
}

}  // namespace

void quantizeQ4_K(const float* x, std::byte* y, int64_t k)
{
    uint8_t L[kQK];
    for (int64_t i = 0; i < k / kQK; ++i, x += kQK, y += 144) {
        affineSuperBlock(x, 15, -1.f, 20, L, y);
        std::byte* q = y + 16;
        for (int j = 0; j < kQK; j += 64, q += 32)
            for (int l = 0; l < 32; ++l)
                q[l] = std::byte(uint8_t(L[j + l] | (L[j + l + 32] << 4)));
    }
}

void quantizeQ5_K(const float* x, std::byte* y, int64_t k)
{
    uint8_t L[kQK];
    for (int64_t i = 0; i < k / kQK; ++i, x += kQK, y += 176) {
        affineSuperBlock(x, 31, -0.5f, 15, L, y);
        uint8_t qh[32] = {};
        std::byte* ql = y + 48;
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < kQK; n += 64, ql += 32) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                int l2 = L[n + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = std::byte(uint8_t(l1 | (l2 << 4)));
            }
            m1 = uint8_t(m1 << 2);
            m2 = uint8_t(m2 << 2);
        }
        std::memcpy(y + 16, qh, 32);
    }
}

void quantizeQ6_K(const float* x, std::byte* y, int64_t k)
{
    int8_t L[kQK];
    float scales[kQK / 16];
    for (int64_t i = 0; i < k / kQK; ++i, x += kQK, y += 210) {
        float maxScale = 0, maxAbsScale = 0;
        for (int ib = 0; ib < kQK / 16; ++ib) {
            const float scale = makeQx(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float a = std::fabs(scale);
            if (a > maxAbsScale) {
                maxAbsScale = a;
                maxScale = scale;
            }
        }
        if (maxAbsScale < kGroupMaxEps) {
            std::memset(y, 0, 210);
            continue;
        }
        const float iscale = -128.f / maxScale;
        const uint16_t dh = floatToHalf(1 / iscale);
        int8_t sc[kQK / 16];
        for (int ib = 0; ib < kQK / 16; ++ib)
            sc[ib] = int8_t(std::min(127, nearestInt(iscale * scales[ib])));
        const float dAll = halfToFloat(dh);
        for (int j = 0; j < kQK / 16; ++j) {
            const float d = dAll * float(sc[j]);
            if (d == 0.0f)
                continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearestInt(x[16 * j + ii] / d);
                l = std::max(-32, std::min(31, l));
                L[16 * j + ii] = int8_t(l + 32);
            }
        }
        std::byte* ql = y;
        std::byte* qh = y + 128;
        for (int j = 0; j < kQK; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t a = uint8_t(L[j + l]), b = uint8_t(L[j + l + 32]);
                const uint8_t c = uint8_t(L[j + l + 64]), d = uint8_t(L[j + l + 96]);
                ql[l] = std::byte(uint8_t((a & 0xF) | ((c & 0xF) << 4)));
                ql[l + 32] = std::byte(uint8_t((b & 0xF) | ((d & 0xF) << 4)));
                qh[l] = std::byte(uint8_t((a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((d >> 4) << 6)));
            }
        }
        std::memcpy(y + 192, sc, 16);
        putHalf(y + 208, dh);
    }
}

}  // namespace quantlens::ggmlref
