#pragma once
// safetensors writing: a streaming writer for any list of arrays, and the two exports
// built on it (DESIGN.md "Export layouts"):
//  - int8: <name> (I8/U8, original shape), <name>_scale (F32), <name>_zero_point (I32)
//    for each quantized tensor (so "x.weight" gives "x.weight_scale"), every other model
//    tensor copied unchanged (block types such as GGUF Q8_0 decoded to F32);
//  - fake-quant: the same model with the quantized tensors replaced by their
//    dequantized float32 values, loadable straight back into PyTorch.
// The header JSON is padded with spaces to a multiple of 8 bytes and data offsets are
// contiguous in header order, as the format's reference implementation writes them.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "io/atomicfile.h"
#include "io/exporter.h"

namespace quantlens {

struct SafetensorsItem {
    std::string name;
    DType dtype = DType::F32;  // scalar types only
    std::vector<int64_t> shape;
    // Writes exactly numel(shape) * element size bytes, little-endian C order.
    std::function<Status(AtomicFile&)> writeData;
};

using SafetensorsMetadata = std::vector<std::pair<std::string, std::string>>;

// The header bytes (8-byte length + padded JSON) for `items`; validates names, dtypes and sizes.
Result<std::vector<std::byte>> safetensorsHeader(const std::vector<SafetensorsItem>& items, const SafetensorsMetadata& metadata);

// Writes `items` to `path` atomically; refuses to write over any of `inputs`.
Result<int64_t> writeSafetensors(const std::string& path, const std::vector<SafetensorsItem>& items,
                                 const SafetensorsMetadata& metadata, const std::vector<std::string>& inputs,
                                 const ExportProgress& progress = {});

// Writes the bytes of a scalar tensor as contiguous little-endian, whatever its strides
// and byte order; checks the view against its storage first.
Status writeTensorBytes(AtomicFile& out, const Tensor& t);

Result<ExportReport> writeSafetensorsExport(const Model& m, const std::vector<ExportEntry>& entries,
                                            const ExportOptions& opts, const ExportProgress& progress, bool fakeQuant);

}  // namespace quantlens
