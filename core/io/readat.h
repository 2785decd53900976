#pragma once
// Reading a source file through pread instead of a mapping, for writers that copy a
// tensor's bytes unchanged: a file that shrank since it was opened then fails with the
// usual "file changed while reading" reason (truncationguard.h), not with SIGBUS or a
// half-written output.
#include <cstddef>
#include <cstdint>
#include <string>

#include "result.h"

namespace quantlens {

// An owned file descriptor, closed on destruction.
struct Fd {
    int fd = -1;
    Fd() = default;
    explicit Fd(int f) : fd(f) {}
    Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
    Fd& operator=(Fd&& o) noexcept;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd();
};

// n bytes at `offset` of the file open as fd; a short read means the file shrank since
// it was measured, reported as truncationguard::fileChangedError(path, tensor).
Status readAt(int fd, void* dst, size_t n, uint64_t offset, const std::string& path, const std::string& tensor = {});

}  // namespace quantlens
