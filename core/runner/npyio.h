#pragma once
// Minimal .npy I/O for the runner's `run` command and its fixtures: C-order arrays of
// float32, float64 (read as float32), int8, uint8 and int32. The general reader that maps
// .npy/.npz files as models lives in io/npy.h; this one reads a whole small file into memory.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "result.h"

namespace quantlens::npyio {

struct Array {
    std::string descr;  // "<f4", "|u1", "|i1", "<i4", "<f8"
    std::vector<int64_t> shape;
    std::vector<std::byte> data;  // little-endian, C order, exactly numel * itemsize bytes
    int64_t numel() const;
};

// Validates magic, version, header length against the file size, the dict, the dtype, the
// shape product (overflow-checked) and that the payload is exactly the bytes the header
// promises; C order only.
Result<Array> read(const std::string& path);
// The array as float32 (from <f4 or <f8); errors for other dtypes.
Result<std::vector<float>> readFloat32(const std::string& path, std::vector<int64_t>& shape);

// Writes float32 C-order data (format 1.0), via a temporary file renamed into place.
Status writeFloat32(const std::string& path, const std::vector<int64_t>& shape, std::span<const float> values);

}  // namespace quantlens::npyio
