#pragma once
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "result.h"

namespace quantlens {

// A read-only memory mapping of a whole file (PROT_READ, MAP_PRIVATE): readers take
// views into it and tensors keep it alive through shared_ptr. Opening never writes.
class MappedFile {
public:
    static Result<std::shared_ptr<const MappedFile>> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::span<const std::byte> bytes() const { return {data_, size_}; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    MappedFile() = default;
    const std::byte* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

}  // namespace quantlens
