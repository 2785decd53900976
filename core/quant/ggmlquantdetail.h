#pragma once
// C conversions ggml's quantizers rely on, spelled out so C++ gives the same bits.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace quantlens::ggmldetail {

// Little-endian fp16/bf16 into a block.
inline void putHalf(std::byte* p, uint16_t h)
{
    p[0] = std::byte(uint8_t(h));
    p[1] = std::byte(uint8_t(h >> 8));
}

// What (int8_t)v / (uint8_t)v compile to on x86 (cvttss2si, keep the low byte): the result
// is returned as the truncated int, whose low byte is what ggml stores. Out-of-range and NaN
// give INT_MIN there, whose low byte is 0.
inline int toInt8Like(float v)
{
    if (!(v > -2147483648.0f && v < 2147483648.0f))
        return 0;
    return int(int8_t(uint8_t(uint32_t(int32_t(v)))));
}

// ggml-quants.c nearest_int: round half to even through the 1.5*2^23 magic, reading the
// mantissa bits (for |v| > 2^22 that is garbage, the same garbage ggml gets).
inline int nearestInt(float v)
{
    const float t = v + 12582912.0f;
    return (std::bit_cast<int32_t>(t) & 0x007fffff) - 0x00400000;
}

}  // namespace quantlens::ggmldetail
