#pragma once
// What the HDF5 reading child (hdf5isolated.cpp) sends its parent over a pipe.
//
// Frames: [kind u8]['length' u32][payload]. Kind 'P' carries progress (f64 in [0, 1]);
// kind 'R', sent last, the result: an Error, or the Model with each tensor's data named by
// source (the file, or the memfd the child wrote), offset and size instead of a pointer.
// The child runs libhdf5 on a hostile file, so its memory may be corrupt: the parent checks
// every frame, count, string, dtype, shape, size and range before it builds a Tensor.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model.h"

namespace quantlens::hdf5wire {

// A region of the memfd as the child mapped it: tensors inside it are sent as memfd offsets.
struct Region {
    const std::byte* base = nullptr;
    int64_t offset = 0;  // in the memfd
    int64_t bytes = 0;
};

std::string progressFrame(double fraction);

// The 'R' frame. Tensor data outside every region must be a view of the MappedFile its
// keepAlive holds (how readHdf5InProcess hands out in-place data).
std::string resultFrame(const Result<Model>& r, const std::vector<Region>& regions);

// Splits a byte stream into frames. feed() consumes whole frames and keeps a partial one
// for the next call; it fails (and stays failed) on a malformed frame.
class FrameReader {
public:
    struct Events {
        std::function<bool(double)> progress;          // false stops feed() (a cancel)
        std::function<void(std::string)> result;
    };
    // False: a malformed frame (error() says so) or progress returned false (cancelled()).
    bool feed(const char* data, size_t n, const Events& on);
    bool cancelled() const { return cancelled_; }
    const std::string& error() const { return error_; }

private:
    std::string buf_;
    std::string error_;
    bool cancelled_ = false;
};

// Where the tensors' bytes are, produced on first use (the parent maps the file or the memfd
// only if some tensor lies there): the bytes and what keeps them alive.
struct Backing {
    std::span<const std::byte> bytes;
    std::shared_ptr<const void> keep;
};
using BackingSource = std::function<Result<Backing>()>;

// The Model or Error of an 'R' payload. Every tensor of the Model lies inside what `file`
// or `shared` returned; anything malformed becomes a "bad-hdf5" Error naming `path`.
Result<Model> decodeResult(const std::string& payload, const std::string& path, const BackingSource& file,
                           const BackingSource& shared);

}  // namespace quantlens::hdf5wire
