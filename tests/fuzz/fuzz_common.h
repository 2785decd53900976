#pragma once
// Readers take a path (they mmap it); fuzz input is handed over as an anonymous
// in-memory file reachable through /proc/self/fd, so nothing touches the disk.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

#include "model.h"

namespace quantlens::fuzz {

inline void writeAll(int fd, const uint8_t* data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        const ssize_t w = write(fd, data + off, size - off);
        if (w <= 0)
            break;
        off += size_t(w);
    }
}

template <class F>
void withMemFile(const uint8_t* data, size_t size, F&& fn)
{
    const int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return;
    writeAll(fd, data, size);
    fn("/proc/self/fd/" + std::to_string(fd));
    close(fd);
}

// For libraries that resolve the real path of what they open (HDF5): a named temporary
// file in /dev/shm (memory) or /tmp, removed afterwards.
template <class F>
void withTempFile(const uint8_t* data, size_t size, F&& fn)
{
    static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string path = dir + "/ql-fuzz-XXXXXX";
    const int fd = mkstemp(path.data());
    if (fd < 0)
        return;
    writeAll(fd, data, size);
    close(fd);
    fn(path);
    unlink(path.c_str());
}

// What every target does with a reader's answer: format the error (it must be printable),
// or decode every tensor it accepted. maxNumel bounds time only: the readers have already
// checked every view against the bytes behind it.
inline void decodeAll(const Result<Model>& m, int64_t maxNumel = INT64_MAX)
{
    if (!m.ok()) {
        (void)m.error().oneLine();
        return;
    }
    for (const Tensor& t : m->tensors)
        if (t.decodable() && t.numel() <= maxNumel)
            (void)t.toFloat();
}

}  // namespace quantlens::fuzz
