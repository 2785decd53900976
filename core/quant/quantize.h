#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dtype.h"
#include "quant/metrics.h"
#include "quant/quantspec.h"

namespace quantlens {

// Scales and zero points of one quantized tensor. One entry for per-tensor, one per
// output channel (along `axis`) for per-channel, one per (channel, group) for
// per-group and Q8_0 (row-major over [channels, groups]).
struct QuantParams {
    std::vector<float> scale;
    std::vector<int32_t> zeroPoint;
    // The clamp range of the stored integers. Usually integerRange(spec); for torch-* with
    // reduce_range at 8 bits it is the full dtype range, because torch computes the scale
    // for the reduced range but quantize_per_tensor clamps to the whole qint8/quint8.
    int32_t qmin = -128;
    int32_t qmax = 127;
    int axis = -1;            // -1 for per-tensor
    int64_t groupSize = 0;    // 0 unless per-group / Q8_0
    float rangeLo = 0.0f;     // the calibrated clip range (per-tensor; for per-channel the overall min/max of the channels')
    float rangeHi = 0.0f;
};

// What QuantizedTensor::bytesAfter() will count for `numel` integers with `scales` scale /
// zero-point pairs (Q8_0: fp16 scales, no zero point), known before quantizing. Not for
// ggml's block schemes (their size is the block layout's).
int64_t quantizedByteCount(int64_t numel, int64_t scales, const QuantSpec& s);

struct QuantizedTensor {
    std::string name;
    std::vector<int64_t> shape;
    DType sourceDtype = DType::F32;
    QuantSpec spec;
    QuantParams params;
    // One integer per element, row-major. Unsigned specs store values 0..255 as their
    // uint8 bit pattern (read with qUnsigned()).
    std::vector<int8_t> q;
    int64_t clampedCount = 0;  // elements whose scaled value fell outside [qmin, qmax]
    // The ggml block schemes (isGgmlBlockScheme): ggml's bytes, rows along the last axis,
    // exactly what a GGUF holds. q then has each element's stored code (0 for the float
    // types), params.scale is empty, params.groupSize the block size and [rangeLo, rangeHi]
    // the range of the values quantized (after a tuned clip); clampedCount counts the
    // values that clip changed.
    std::vector<std::byte> blocks;

    int64_t rank() const { return int64_t(shape.size()); }
    int64_t numel() const { return int64_t(q.size()); }
    const uint8_t* qUnsigned() const { return reinterpret_cast<const uint8_t*>(q.data()); }
    int32_t qAt(int64_t i) const { return spec.isUnsigned ? int32_t(qUnsigned()[i]) : int32_t(q[size_t(i)]); }
    int64_t bytesAfter() const;  // integer payload (bits/8 packed) + scales + zero points; ggml: blocks.size()
};

// The scheme's rule from a clip range to (scale, zero point), as quantize() applies it to
// each slice. For q8_0 the scale is the stored (fp16-rounded) d.
void scaleAndZeroPoint(const QuantSpec& spec, float lo, float hi, float& scale, int32_t& zeroPoint);

// Quantizes `x` (row-major, `shape`), calibrating the range as `spec` says.
// Never fails on finite data; degenerate ranges (all zero, constant) follow
// the reference toolchain's rule.
Result<QuantizedTensor> quantize(std::span<const float> x, const std::vector<int64_t>& shape,
                                 const QuantSpec& spec);
// Same, into `out`, reusing its buffers: no allocation once `out` has held a tensor of
// this size (the GUI calls it on every clamp-line drag).
Status quantizeInto(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec,
                    QuantizedTensor& out);
// The GUI's manual clamp: `spec` with calib = Manual and the range [lo, hi] (symmetric
// schemes use max(|lo|, |hi|)). Only the quantize pass runs, no calibration pass.
Status quantizeManualInto(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec,
                          float lo, float hi, QuantizedTensor& out);
// quantizeInto, dequantize(out, xhat) and computeMetrics(x, xhat, clampedCount) in one
// call, with the same results. Per tensor (not the ggml block schemes) it is one sweep over
// x that quantizes, dequantizes and sums while the values are in registers (the GUI's drag
// update); other specs take the three passes. xhat must hold at least x.size() values.
Result<Metrics> quantizeRoundTrip(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec,
                                  QuantizedTensor& out, std::span<float> xhat);
// The same with quantizeManualInto's manual clamp [lo, hi].
Result<Metrics> quantizeManualRoundTrip(std::span<const float> x, const std::vector<int64_t>& shape,
                                        const QuantSpec& spec, float lo, float hi, QuantizedTensor& out,
                                        std::span<float> xhat);
// Quantizes x (same shape as qt) with qt's existing scales and zero points: no
// calibration. For q8_0 the stored fp16 scale is the one used.
Status requantize(std::span<const float> x, QuantizedTensor& qt);
// out.size() must be at least the element count; (q - zero_point) * scale per slice.
void dequantize(const QuantizedTensor& qt, std::span<float> out);
std::vector<float> dequantize(const QuantizedTensor& qt);
// computeMetrics(x, dequantize(qt), qt.clampedCount), identical, without the float copy:
// it dequantizes a chunk at a time (exports of tensors larger than memory's spare room).
Metrics quantizationMetrics(std::span<const float> x, const QuantizedTensor& qt);

}  // namespace quantlens
