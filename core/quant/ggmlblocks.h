#pragma once
// The ggml block schemes inside quantize()/dequantize(): clip as the spec asks, quantize
// rows (the last, contiguous axis) with ggml's reference quantizer, keep ggml's bytes and
// each element's stored code. Decoding is the GGUF reader's, so what the window shows is
// what opening the exported file gives.
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "quant/calibrate.h"
#include "quant/ggmlquant.h"
#include "quant/quantize.h"

namespace quantlens {

Status quantizeGgmlInto(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec,
                        QuantizedTensor& out);
void dequantizeGgml(const QuantizedTensor& qt, std::span<float> out);

// The range a ggml scheme clips to before its blocks: nullopt for minmax (ggml's own rule,
// nothing clipped), the manual range, or the percentile range over the whole tensor.
// Calibrators that search a per-tensor int8 grid (mse, entropy, hist-l2) mean nothing for
// per-block scales and are refused.
Result<std::optional<Range>> ggmlClipRange(std::span<const float> x, const QuantSpec& spec);
// dst[i] = clamp(x[i], r.lo, r.hi) (NaN kept); returns how many values changed.
int64_t clipValues(std::span<const float> x, Range r, float* dst);

// Each element's stored code out of n values' blocks (see integerRange for the ranges).
void ggmlCodes(GgmlType t, const std::byte* blocks, int64_t n, int8_t* q);

}  // namespace quantlens
