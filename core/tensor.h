#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dtype.h"
#include "result.h"

namespace quantlens {

struct PackedWeight;

// Where a weight keeps its output channels, relative to the PyTorch convention.
enum class Layout : uint8_t {
    Plain,  // output channels on axis 0: nn.Linear [out, in], ConvNd [out, in, k...], LSTM [4h, in]
    InOut,  // output channels on the last axis: Keras Dense/LSTM kernels and GPT-2 Conv1D [in, out],
            // Keras Conv kernels [k..., in, out]; views move that axis to the front
};

// What a reader that sees the compute graph (ONNX) knows a weight feeds; readers of bare
// weight files leave Unknown and layer detection goes by name.
enum class WeightRole : uint8_t { Unknown, Linear, Conv };

// One named array. `data` is a read-only view, usually into a memory-mapped file;
// `keepAlive` owns whatever backs it. Conversion to float32 is explicit (toFloat).
struct Tensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::span<const std::byte> data;
    std::shared_ptr<const void> keepAlive;

    // Element strides (not bytes) of a non-contiguous view, e.g. a transposed torch
    // tensor or a Fortran-ordered npy. Empty means C-contiguous. `data` then starts at
    // element 0 of the view and covers every element the strides can reach.
    std::vector<int64_t> strides;
    bool bigEndian = false;
    Layout layout = Layout::Plain;
    WeightRole role = WeightRole::Unknown;

    std::string opaqueType;  // for DType::Opaque and Packed: the format's own type name ("Q4_K", "GPTQ_INT4")
    std::string group;       // "" for model weights; e.g. "optimizer" for Keras optimizer state
    std::string note;        // shown to the user: "already quantized (Q8_0)", "not decoded", ...
    // For DType::Packed: the file tensors (codes, scales, zero points) this weight is
    // decoded from; `data` then views the codes.
    std::shared_ptr<const PackedWeight> packed;

    int64_t numel() const;
    // Bytes in the file's own dtype (block types included); the mapped size when the
    // dtype has no fixed size.
    int64_t storedBytes() const;
    int64_t rank() const { return static_cast<int64_t>(shape.size()); }
    bool decodable() const { return dtype != DType::Opaque; }
    bool isContiguous() const { return strides.empty(); }

    // All elements in row-major (C) order as float32. F64/F16/BF16/ints are
    // converted exactly where float32 can hold them; block types are decoded.
    Result<std::vector<float>> toFloat() const;
    // Same into caller-provided storage of numel() floats.
    Status toFloat(std::span<float> out) const;
    // toFloat for a caller that will not read this tensor's bytes again soon (an export):
    // a contiguous tensor in a mapped file is converted a few MB at a time and each piece's
    // file pages are handed back as it goes, so the float copy never sits beside the whole
    // tensor's pages. Same result as toFloat; the pages are read again from the file if
    // anyone touches them later.
    Result<std::vector<float>> toFloatReleasingPages() const;
};

// A tensor that owns its bytes (demo model, materialised views, exports).
Tensor makeOwnedTensor(std::string name, DType dtype, std::vector<int64_t> shape,
                       std::vector<std::byte> bytes);
Tensor makeFloatTensor(std::string name, std::vector<int64_t> shape, std::vector<float> values);

std::string shapeString(const std::vector<int64_t>& shape);  // "[768, 3072]"

// The [out, in] matrix a weight is viewed, quantized per channel and drawn as. Output
// channels lead in PyTorch and ONNX ([out, in, k...], rows = shape[0]); Layout::InOut keeps
// them last ([in, out], Keras [k..., in, out]), so the stored data is a [numel/out, out]
// matrix and the view is its transpose. Vectors and scalars are one row.
struct MatrixView {
    int64_t rows = 1, cols = 0;
    bool transposed = false;  // stored as [cols, rows]
};
MatrixView matrixView(const Tensor& t);
// `stored` (numel floats in storage order) as the view's rows into `out`.
void copyAsView(const MatrixView& v, std::span<const float> stored, std::span<float> out);

}  // namespace quantlens
