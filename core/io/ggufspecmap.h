#pragma once
// A spec that is not a ggml type (a tuned int8 per-channel range, 4-bit affine groups of 32,
// ...) written into a GGUF: the nearest ggml type for its bits, symmetry and grouping, and
// the tuned range applied by clipping before the block quantization. What cannot be
// mapped honestly (2- and 3-bit: the Q2_K/Q3_K types are not written) is refused.
#include <span>
#include <string>

#include "quant/ggmlquant.h"
#include "quant/quantspec.h"
#include "result.h"

namespace quantlens {

struct GgmlMapping {
    GgmlType type = GgmlType::Q8_0;
    bool mapped = false;  // false: spec.scheme is that ggml type already
    std::string why;      // one line: what the spec was, what it became and why
};

// The ggml type a spec is written as. An error (code "no-ggml-type") names why none fits.
Result<GgmlMapping> ggmlTypeForSpec(const QuantSpec& spec);

// Clips x (rows of rowLen values; a GGUF row is one output channel) to the range the mapped
// spec's calibrator picks: one range per tensor, per row (per-channel) or per group of a
// row (per-group); symmetric schemes clip at +-max(|lo|, |hi|). Returns how many values
// changed (0 for minmax).
Result<int64_t> clipAsSpec(std::span<float> x, int64_t rowLen, const QuantSpec& spec);

}  // namespace quantlens
