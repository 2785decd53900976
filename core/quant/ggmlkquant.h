#pragma once
// ggml's k-quant reference quantizers (256-value super-blocks); see ggmlquant.h.
#include <cstddef>
#include <cstdint>

namespace quantlens::ggmlref {

// One or more rows, k a multiple of 256; y receives k/256 blocks of 144 / 176 / 210 bytes.
void quantizeQ4_K(const float* x, std::byte* y, int64_t k);
void quantizeQ5_K(const float* x, std::byte* y, int64_t k);
void quantizeQ6_K(const float* x, std::byte* y, int64_t k);

}  // namespace quantlens::ggmlref
