#pragma once
// ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c, no importance matrix),
// reproduced bit for bit: the bytes are what ggml_quantize_chunk writes, so a GGUF we write
// holds exactly what llama-quantize would have written for the same float values.
// Legacy 32-value blocks and the plain float types live here; the 256-value k-quants in
// ggmlkquant.cpp. Decoding is the GGUF reader's (Tensor::toFloat).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "dtype.h"
#include "quant/quantspec.h"
#include "result.h"

namespace quantlens {

// ggml_type ids as GGUF stores them (ggml.h enum ggml_type).
enum class GgmlType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
};

struct GgmlTypeInfo {
    GgmlType type;
    const char* name;    // ggml_type_name: "q4_K", "f16", ...
    int64_t blockElems;  // values per block (1 for the float types)
    int64_t blockBytes;
    DType dtype;         // how the GGUF reader decodes it
};

// The types we can write; nullptr for any other id.
const GgmlTypeInfo* ggmlTypeInfo(GgmlType t);
const GgmlTypeInfo* ggmlTypeInfo(uint32_t id);
// The scheme that writes this type, and back (nullopt for non-ggml schemes).
std::optional<GgmlType> ggmlTypeForScheme(Scheme s);
Scheme schemeForGgmlType(GgmlType t);

// Bytes of one row of `rowLen` values; an error naming the type when rowLen is not a
// multiple of its block size (ggml never lets a block span two rows).
Result<int64_t> ggmlRowBytes(GgmlType t, int64_t rowLen);

// Quantizes x (whole rows of rowLen values) into `out` (exactly rows * ggmlRowBytes bytes),
// as ggml_quantize_chunk(t, x, out, 0, rows, rowLen, NULL) does. Values are taken as
// given: callers clip a tuned range before calling.
Status ggmlQuantize(GgmlType t, std::span<const float> x, int64_t rowLen, std::span<std::byte> out);

namespace ggmlref {
// One row each, k a multiple of the block size; y receives k/blockElems blocks.
void quantizeQ4_0(const float* x, std::byte* y, int64_t k);
void quantizeQ4_1(const float* x, std::byte* y, int64_t k);
void quantizeQ5_0(const float* x, std::byte* y, int64_t k);
void quantizeQ5_1(const float* x, std::byte* y, int64_t k);
void quantizeQ8_0(const float* x, std::byte* y, int64_t k);
// ggml_compute_fp32_to_bf16: round to nearest even, NaN kept quiet.
uint16_t floatToBf16(float f);
}  // namespace ggmlref

}  // namespace quantlens
