#pragma once
// A Linear weight stored as integer codes plus per-group scales (and zero points) in
// separate tensors of the file, as compressed-tensors and GPTQ checkpoints hold it. The
// reader gathers the parts into one PackedWeight behind the logical `<m>.weight`
// [out, in]; Tensor::toFloat decodes it on demand, one tensor at a time, so opening a
// large checkpoint touches none of its weights. Dequantization is
//     w[o][i] = (q[o][i] - zero(o, g(i))) * scale(o, g(i))
// with g(i) the input's group (g_idx when the file has one, else i / (in / groups)).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "result.h"
#include "tensor.h"

namespace quantlens {

struct PackedWeight {
    // Where the codes of output o, input i live.
    enum class Codes : uint8_t {
        Plain,       // an integer tensor [out, in] (compressed-tensors int-quantized)
        PackedRows,  // int32 [out, ceil(in / pf)]: input i in word [o][i / pf], bits (i % pf) * bits,
                     // stored as value + 2^(bits-1) (compressed-tensors pack_to_int32)
        PackedCols,  // int32 [in / pf, out]: input i in word [i / pf][o], unsigned (GPTQ qweight)
    };
    // Where the zero point of (o, g) lives; Plain/CtPacked use the scale's [rows, groups]
    // layout, GptqPacked the [groups, out] one.
    enum class Zeros : uint8_t {
        None,
        Plain,      // a tensor shaped like the scale
        CtPacked,   // int32 [ceil(rows / pf), groups], packed along rows, offset 2^(bits-1)
        GptqPacked  // int32 [groups, out / pf], unsigned, plus `zeroOffset` (GPTQ v1 stores zero - 1)
    };

    int64_t out = 0, in = 0;
    int bits = 8;
    Codes codes = Codes::Plain;
    Tensor q;  // the codes
    // Scale layout: [rows, groups] with each row shared by out / rows outputs
    // (compressed-tensors: [1] per tensor, [out, 1] per channel, [out, G] per group), or,
    // with scaleGroupsMajor, [groups, out] (GPTQ scales).
    Tensor scale;
    bool scaleGroupsMajor = false;
    int64_t scaleRows = 1, groups = 1;
    Zeros zeros = Zeros::None;
    Tensor zero;
    int zeroOffset = 0;
    Tensor gIdx;         // optional: the group of each input (length in)
    bool gIdxColumnOrder = false;  // compressed-tensors: a -1 in g_idx means "not used"
    DType roundTo = DType::F32;  // the reference dequantizes in this dtype (the scale's, for compressed-tensors)
    std::vector<Tensor> others;  // parts read at open only (weight_shape): counted in bytes and ranges

    // Checks every shape, dtype and size against the others (and g_idx's values) before
    // anything decodes; the error names the part and says what is wrong in one line.
    Status check(const std::string& name) const;
    // Bytes of every part in the file: the effective bits per weight are 8 * this / (out * in).
    int64_t storedBytes() const;
    // Decodes all out * in values, row-major [out, in].
    Status decode(std::span<float> y, const std::string& name) const;
    // The file bytes each part views, for the truncation guard.
    std::vector<std::span<const std::byte>> ranges() const;
};

}  // namespace quantlens
