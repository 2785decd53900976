#pragma once
// Readers take a path (they mmap it); fuzz input is handed over as an anonymous
// in-memory file reachable through /proc/self/fd, so nothing touches the disk.
#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace quantlens::fuzz {

template <class F>
void withMemFile(const uint8_t* data, size_t size, F&& fn)
{
    const int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return;
    size_t off = 0;
    while (off < size) {
        const ssize_t w = write(fd, data + off, size - off);
        if (w <= 0)
            break;
        off += size_t(w);
    }
    fn("/proc/self/fd/" + std::to_string(fd));
    close(fd);
}

}  // namespace quantlens::fuzz
