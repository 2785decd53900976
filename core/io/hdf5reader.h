#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "model.h"

namespace quantlens {

// Opens an HDF5 file (Keras .h5 or any other) in a child process: libhdf5 1.10.8 is not
// hardened against hostile files (fuzzing found an invalid free, overreads and hangs inside
// it), so it never runs in the caller's process. Datasets come back as views of the file
// (contiguous, stored as read) or of a shared memory file the child wrote (converted or
// inflated). A crash of libhdf5 becomes a "bad-hdf5" error; cancelling through `progress`
// ends the child at once, even inside one large read.
Result<Model> readHdf5(const std::string& path, const OpenProgress& progress = {});

// Where readHdf5InProcess puts a dataset it has to convert or inflate: `bytes` writable
// bytes (null if there is no memory for them), with `keep` owning them.
using Hdf5Buffer = std::function<std::byte*(int64_t bytes, std::shared_ptr<const void>& keep)>;

// The same reader in this process, with libhdf5's bugs able to crash it: what the child of
// readHdf5 runs, and what the fuzzer drives to find bugs in our own code. Buffers come from
// the heap unless `buffer` is given.
Result<Model> readHdf5InProcess(const std::string& path, const OpenProgress& progress = {},
                                const Hdf5Buffer& buffer = {});

}  // namespace quantlens
