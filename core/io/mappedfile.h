#pragma once
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "result.h"

namespace quantlens {

// A read-only memory mapping of a whole file (PROT_READ, MAP_PRIVATE): readers take
// views into it and tensors keep it alive through shared_ptr. Opening never writes.
// Only regular files are accepted (a FIFO is refused at once, never waited on). The
// mapping is registered with truncationguard.h, so the file shrinking under it reads
// as zeros and sets changed() instead of killing the process with SIGBUS.
class MappedFile {
public:
    static Result<std::shared_ptr<const MappedFile>> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::span<const std::byte> bytes() const { return {data_, size_}; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // True once a read hit a page the file no longer has (it was truncated or replaced
    // in place); whatever was read from this mapping since may be zeros.
    bool changed() const;

private:
    MappedFile() = default;
    const std::byte* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
    int slot_ = -1;
};

// Drops the pages of `bytes` from this process's resident set if they are file-backed
// mapped pages (the page cache keeps them; reading again faults them back in). A whole-
// model pass calls it after each tensor so its RSS stays near one tensor, not the file.
// Owned memory is left alone.
void releaseMappedPages(std::span<const std::byte> bytes);

// Why a path of this st_mode is not a model file: "is a named pipe (FIFO), ...".
std::string describeNonRegular(unsigned mode);

}  // namespace quantlens
