#include "quant/ggmlquant.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include <sched.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "halffloat.h"
#include "quant/ggmlkquant.h"
#include "quant/ggmlquantdetail.h"

// Bit-exactness depends on evaluating each float expression exactly as ggml's C does: the
// file is compiled with -ffp-contract=off (core/CMakeLists.txt) so no a*b+c becomes an FMA.

namespace quantlens {

namespace {

constexpr std::array<GgmlTypeInfo, 11> kTypes{{
    {GgmlType::F32, "f32", 1, 4, DType::F32},
    {GgmlType::F16, "f16", 1, 2, DType::F16},
    {GgmlType::Q4_0, "q4_0", 32, 18, DType::Q4_0},
    {GgmlType::Q4_1, "q4_1", 32, 20, DType::Q4_1},
    {GgmlType::Q5_0, "q5_0", 32, 22, DType::Q5_0},
    {GgmlType::Q5_1, "q5_1", 32, 24, DType::Q5_1},
    {GgmlType::Q8_0, "q8_0", 32, 34, DType::Q8_0},
    {GgmlType::Q4_K, "q4_K", 256, 144, DType::Q4_K},
    {GgmlType::Q5_K, "q5_K", 256, 176, DType::Q5_K},
    {GgmlType::Q6_K, "q6_K", 256, 210, DType::Q6_K},
    {GgmlType::BF16, "bf16", 1, 2, DType::BF16},
}};

using ggmldetail::putHalf;
using ggmldetail::toInt8Like;

// The value with the largest magnitude, first one on ties (the legacy symmetric blocks
// divide by it with its sign).
float signedAbsMax(const float* x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j)
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    return max;
}

void minMax(const float* x, int n, float& min, float& max)
{
    min = FLT_MAX;
    max = -FLT_MAX;
    for (int j = 0; j < n; ++j) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
}

}  // namespace

const GgmlTypeInfo* ggmlTypeInfo(GgmlType t) { return ggmlTypeInfo(uint32_t(t)); }

const GgmlTypeInfo* ggmlTypeInfo(uint32_t id)
{
    for (const GgmlTypeInfo& i : kTypes)
        if (uint32_t(i.type) == id)
            return &i;
    return nullptr;
}

std::optional<GgmlType> ggmlTypeForScheme(Scheme s)
{
    switch (s) {
    case Scheme::Q8_0: return GgmlType::Q8_0;
    case Scheme::Q4_0: return GgmlType::Q4_0;
    case Scheme::Q4_1: return GgmlType::Q4_1;
    case Scheme::Q5_0: return GgmlType::Q5_0;
    case Scheme::Q5_1: return GgmlType::Q5_1;
    case Scheme::Q4_K: return GgmlType::Q4_K;
    case Scheme::Q5_K: return GgmlType::Q5_K;
    case Scheme::Q6_K: return GgmlType::Q6_K;
    case Scheme::F16: return GgmlType::F16;
    case Scheme::BF16: return GgmlType::BF16;
    case Scheme::F32: return GgmlType::F32;
    default: return std::nullopt;
    }
}

Scheme schemeForGgmlType(GgmlType t)
{
    switch (t) {
    case GgmlType::F32: return Scheme::F32;
    case GgmlType::F16: return Scheme::F16;
    case GgmlType::BF16: return Scheme::BF16;
    case GgmlType::Q4_0: return Scheme::Q4_0;
    case GgmlType::Q4_1: return Scheme::Q4_1;
    case GgmlType::Q5_0: return Scheme::Q5_0;
    case GgmlType::Q5_1: return Scheme::Q5_1;
    case GgmlType::Q8_0: return Scheme::Q8_0;
    case GgmlType::Q4_K: return Scheme::Q4_K;
    case GgmlType::Q5_K: return Scheme::Q5_K;
    case GgmlType::Q6_K: return Scheme::Q6_K;
    }
    return Scheme::F32;
}

Result<int64_t> ggmlRowBytes(GgmlType t, int64_t rowLen)
{
    const GgmlTypeInfo* info = ggmlTypeInfo(t);
    if (!info)
        return makeError("bad-type", "ggml type " + std::to_string(uint32_t(t)) + " cannot be written");
    if (rowLen < 0 || rowLen % info->blockElems != 0)
        return makeError("bad-row", std::string(info->name) + " needs rows that are a multiple of "
                                        + std::to_string(info->blockElems) + " values; this row has "
                                        + std::to_string(rowLen));
    return rowLen / info->blockElems * info->blockBytes;
}

namespace {

// The four legacy 32-value blocks share one loop: a fp16 scale d (and min m for the affine
// ones), the 5th bit of each value in a 32-bit qh for the 5-bit ones, then 16 bytes of
// nibble pairs (value j low, value j + 16 high). Symmetric blocks divide by the signed
// absmax over -2^(bits-1) and add 2^(bits-1) + 0.5; affine ones scale (x - min) by
// (max - min) / (2^bits - 1) and add 0.5. ggml clamps to 2^bits - 1 except in Q5_1.
template <int Bits, bool Affine>
void quantizeLegacy(const float* x, std::byte* y, int64_t k)
{
    constexpr int kMax = (1 << Bits) - 1;
    constexpr int kQh = Affine ? 4 : 2;                      // where qh (or the nibbles) start
    constexpr int kNibbles = kQh + (Bits == 5 ? 4 : 0);
    constexpr int kBlock = kNibbles + 16;
    constexpr bool kClamp = !(Affine && Bits == 5);
    constexpr float kOffset = Affine ? 0.5f : float(1 << (Bits - 1)) + 0.5f;
    for (int64_t i = 0; i < k / 32; ++i, x += 32, y += kBlock) {
        float min = 0.0f, d;
        if constexpr (Affine) {
            float max;
            minMax(x, 32, min, max);
            d = (max - min) / kMax;
        } else {
            d = signedAbsMax(x, 32) / -(1 << (Bits - 1));
        }
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        putHalf(y, floatToHalf(d));
        if constexpr (Affine)
            putHalf(y + 2, floatToHalf(min));
        auto code = [&](float v) {
            const int q = toInt8Like((Affine ? v - min : v) * id + kOffset);
            return uint8_t(kClamp ? std::min(kMax, q) : q);
        };
        uint32_t qh = 0;
        for (int j = 0; j < 16; ++j) {
            const uint8_t a = code(x[j]);
            const uint8_t b = code(x[j + 16]);
            y[kNibbles + j] = std::byte(uint8_t((a & 0x0F) | ((b & 0x0F) << 4)));
            qh |= uint32_t((a & 0x10u) >> 4) << j;
            qh |= uint32_t((b & 0x10u) >> 4) << (j + 16);
        }
        if constexpr (Bits == 5)
            for (int b = 0; b < 4; ++b)
                y[kQh + b] = std::byte(uint8_t(qh >> (8 * b)));
    }
}

}  // namespace

namespace ggmlref {

void quantizeQ4_0(const float* x, std::byte* y, int64_t k) { quantizeLegacy<4, false>(x, y, k); }
void quantizeQ4_1(const float* x, std::byte* y, int64_t k) { quantizeLegacy<4, true>(x, y, k); }
void quantizeQ5_0(const float* x, std::byte* y, int64_t k) { quantizeLegacy<5, false>(x, y, k); }
void quantizeQ5_1(const float* x, std::byte* y, int64_t k) { quantizeLegacy<5, true>(x, y, k); }

void quantizeQ8_0(const float* x, std::byte* y, int64_t k)
{
    for (int64_t i = 0; i < k / 32; ++i, x += 32, y += 34) {
#if defined(__SSE2__)
        // Four lanes doing the scalar code below value by value (libm's roundf is a call per
        // value and was half of a q8_0 export's time). maxps(|v|, m) is std::max(m, |v|),
        // NaN skipped; the largest of non-NaN values does not depend on the order.
        const __m128 absMask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
        __m128 m = _mm_setzero_ps();
        for (int j = 0; j < 32; j += 4)
            m = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(x + j), absMask), m);
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
        const float amax = _mm_cvtss_f32(m);
#else
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j)
            amax = std::max(amax, std::fabs(x[j]));
#endif
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        putHalf(y, floatToHalf(d));
#if defined(__SSE2__)
        // roundf(v) then (int8_t): t = trunc(v) and v - t are exact, so half away from zero
        // is t + (v - t >= 0.5) - (v - t <= -0.5); |v| >= 2^31 and NaN store 0, the low byte
        // of cvttss2si's INT_MIN (toInt8Like). The low bytes are packed without saturation.
        const __m128 vid = _mm_set1_ps(id), limit = _mm_set1_ps(2147483648.0f);
        const __m128 half = _mm_set1_ps(0.5f), mhalf = _mm_set1_ps(-0.5f);
        const __m128i lowByte = _mm_set1_epi32(0xff);
        __m128i q[8];
        for (int j = 0; j < 8; ++j) {
            const __m128 v = _mm_mul_ps(_mm_loadu_ps(x + 4 * j), vid);
            const __m128i t = _mm_cvttps_epi32(v);
            const __m128 f = _mm_sub_ps(v, _mm_cvtepi32_ps(t));
            __m128i r = _mm_sub_epi32(t, _mm_castps_si128(_mm_cmpge_ps(f, half)));
            r = _mm_add_epi32(r, _mm_castps_si128(_mm_cmple_ps(f, mhalf)));
            const __m128i inRange = _mm_castps_si128(_mm_cmplt_ps(_mm_and_ps(v, absMask), limit));
            q[j] = _mm_and_si128(_mm_and_si128(r, inRange), lowByte);
        }
        for (int h = 0; h < 2; ++h) {
            const __m128i a = _mm_packs_epi32(q[4 * h], q[4 * h + 1]);
            const __m128i b = _mm_packs_epi32(q[4 * h + 2], q[4 * h + 3]);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 2 + 16 * h), _mm_packus_epi16(a, b));
        }
#else
        for (int j = 0; j < 32; ++j)
            y[2 + j] = std::byte(uint8_t(toInt8Like(std::round(x[j] * id))));
#endif
    }
}

uint16_t floatToBf16(float f)
{
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return uint16_t((u >> 16) | 64);
    return uint16_t((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

}  // namespace ggmlref

namespace {

// The cores this process may run on (taskset / cgroup cpusets), not the machine's count.
int64_t usableCores()
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return std::max(1, CPU_COUNT(&set));
    return std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()));
}

// n values (whole rows) of x into their blocks at py.
void quantizeSpan(GgmlType t, const float* px, std::byte* py, int64_t n)
{
    switch (t) {
    case GgmlType::F32: std::memcpy(py, px, size_t(n) * 4); break;
    case GgmlType::F16:
        for (int64_t i = 0; i < n; ++i)
            putHalf(py + 2 * i, floatToHalf(px[i]));
        break;
    case GgmlType::BF16:
        for (int64_t i = 0; i < n; ++i)
            putHalf(py + 2 * i, ggmlref::floatToBf16(px[i]));
        break;
    // Every row is whole blocks, so a run of rows is one long row.
    case GgmlType::Q4_0: ggmlref::quantizeQ4_0(px, py, n); break;
    case GgmlType::Q4_1: ggmlref::quantizeQ4_1(px, py, n); break;
    case GgmlType::Q5_0: ggmlref::quantizeQ5_0(px, py, n); break;
    case GgmlType::Q5_1: ggmlref::quantizeQ5_1(px, py, n); break;
    case GgmlType::Q8_0: ggmlref::quantizeQ8_0(px, py, n); break;
    case GgmlType::Q4_K: ggmlref::quantizeQ4_K(px, py, n); break;
    case GgmlType::Q5_K: ggmlref::quantizeQ5_K(px, py, n); break;
    case GgmlType::Q6_K: ggmlref::quantizeQ6_K(px, py, n); break;
    }
}

}  // namespace

Status ggmlQuantize(GgmlType t, std::span<const float> x, int64_t rowLen, std::span<std::byte> out)
{
    auto rb = ggmlRowBytes(t, rowLen);
    if (!rb)
        return rb.error();
    const int64_t n = int64_t(x.size());
    if (rowLen == 0 ? n != 0 : n % rowLen != 0)
        return makeError("bad-shape", std::to_string(n) + " values are not whole rows of " + std::to_string(rowLen));
    const int64_t rows = rowLen == 0 ? 0 : n / rowLen;
    if (int64_t(out.size()) != rows * *rb)
        return makeError("bad-size", "output holds " + std::to_string(out.size()) + " bytes, "
                                         + std::to_string(rows * *rb) + " needed");
    // Blocks never span rows, so whole rows can go to different cores and the bytes are the
    // same as one pass (ggml's llama-quantize splits the same way). Below ~64K values a
    // thread costs more than it saves.
    const int64_t cores = usableCores();
    const int64_t parts = std::max<int64_t>(1, std::min<int64_t>({n >> 16, cores, rows, 16}));
    auto part = [&](int64_t i) {
        const int64_t r0 = rows * i / parts, r1 = rows * (i + 1) / parts;
        quantizeSpan(t, x.data() + r0 * rowLen, out.data() + r0 * *rb, (r1 - r0) * rowLen);
    };
    std::vector<std::thread> helpers;
    for (int64_t i = 1; i < parts; ++i)
        helpers.emplace_back(part, i);
    part(0);
    for (std::thread& h : helpers)
        h.join();
    return Ok{};
}

}  // namespace quantlens
