#pragma once
// Writes NumPy .npy files (format 1.0; 2.0 only when the header needs more than 64 KiB),
// always C order and little-endian, through AtomicFile.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dtype.h"
#include "io/atomicfile.h"
#include "result.h"

namespace quantlens {

// The descr numpy uses for a scalar dtype ("<f4", "|i1", "|b1", ...); empty for block types.
std::string npyDescr(DType t);

// Magic, version, header length and the header dict, padded with spaces and a final
// newline so the data starts at a multiple of 64 bytes, as numpy >= 1.20 writes it.
std::vector<std::byte> npyHeader(const std::string& descr, const std::vector<int64_t>& shape);

// `data` must hold exactly numel(shape) elements of `t` in little-endian C order.
Status writeNpy(AtomicFile& out, DType t, const std::vector<int64_t>& shape, std::span<const std::byte> data);
// Creates, writes and commits `path` (refusing to overwrite any of `inputs`).
Status writeNpyFile(const std::string& path, DType t, const std::vector<int64_t>& shape,
                    std::span<const std::byte> data, const std::vector<std::string>& inputs = {});

}  // namespace quantlens
