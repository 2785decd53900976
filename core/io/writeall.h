#pragma once
#include <cerrno>
#include <cstddef>
#include <unistd.h>

namespace quantlens {

// Writes all n bytes to fd, retrying short writes and EINTR; false on any other failure
// (a closed pipe, a full disk). For the HDF5 reading children, which report over pipes.
inline bool writeAll(int fd, const void* data, size_t n)
{
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= size_t(w);
    }
    return true;
}

}  // namespace quantlens
