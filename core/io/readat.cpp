#include "io/readat.h"

#include <cerrno>
#include <cstring>

#include <unistd.h>

#include "truncationguard.h"

namespace quantlens {

Fd& Fd::operator=(Fd&& o) noexcept
{
    if (this != &o) {
        if (fd >= 0)
            ::close(fd);
        fd = o.fd;
        o.fd = -1;
    }
    return *this;
}

Fd::~Fd()
{
    if (fd >= 0)
        ::close(fd);
}

Status readAt(int fd, void* dst, size_t n, uint64_t offset, const std::string& path, const std::string& tensor)
{
    auto* p = static_cast<char*>(dst);
    while (n > 0) {
        const ssize_t got = ::pread(fd, p, n, off_t(offset));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return makeError("read", std::string("cannot read: ") + std::strerror(errno), path, int64_t(offset), tensor);
        if (got == 0)
            return truncationguard::fileChangedError(path, tensor);
        p += got;
        n -= size_t(got);
        offset += uint64_t(got);
    }
    return Ok{};
}

}  // namespace quantlens
