#pragma once
// An ONNX model without the bytes of its large weights, for writers that rewrite a model
// without holding it: every byte of the file is copied except the raw_data of the main
// graph's initializers (ModelProto.graph = field 7, GraphProto.initializer = field 5,
// TensorProto.raw_data = field 9; onnx/onnx.proto) that hold `threshold` bytes or more.
// Those initializers stay, with their name, type and shape, so libprotobuf can parse and
// change the skeleton in little memory (and ONNX's version converter still sees every
// initializer); the writer copies their bytes straight from the file (io/onnxsplice.h).
// The walk is Quantlens' bounds-checked wire reader (io/protowire.h); no other field is
// decoded, so the skeleton parses to exactly what the file parses to, minus that data.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "result.h"

namespace quantlens {

struct OnnxStrippedData {
    size_t initializer = 0;  // index among the main graph's initializers
    uint64_t offset = 0;     // of the first raw_data byte in the file
    uint64_t length = 0;
};

struct OnnxSkeleton {
    std::string bytes;  // a serialized ModelProto
    std::vector<OnnxStrippedData> stripped;
};

// `file` is the whole model file (offsets are relative to its start).
Result<OnnxSkeleton> buildOnnxSkeleton(std::span<const std::byte> file, const std::string& path, uint64_t threshold);

}  // namespace quantlens
