#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "result.h"
#include "tensor.h"

namespace quantlens {

// The tensors of one model (one file or a set of shards), in file order.
struct Model {
    std::string format;                // "safetensors", "pytorch", "hdf5", "keras-h5", "npy", "npz", "gguf", "onnx", "demo"
    std::vector<std::string> files;    // every file the tensors come from
    std::vector<Tensor> tensors;
    std::vector<std::pair<std::string, std::string>> metadata;  // shown as-is to the user
    bool synthetic = false;            // the built-in demo: the UI labels it

    const Tensor* find(std::string_view name) const;
    int64_t parameterCount() const;    // sum of numel over model weights (group == "")
    int64_t byteCount() const;         // stored bytes over model weights
};

// Called while a reader copies data out of the file (only HDF5 does: every other format's
// tensors are views of the mapped file, which opens in milliseconds) with the share of the
// file read so far, in [0, 1]. Returning false stops the open, which then fails with code
// "cancelled". It runs on the opening thread.
using OpenProgress = std::function<bool(double fraction)>;

// Opens any supported file, picking the reader by magic bytes (extension only as a
// tie-breaker). Never writes to the file. Errors name the file and what was wrong.
Result<Model> openModel(const std::string& path, const OpenProgress& progress = {});

}  // namespace quantlens
