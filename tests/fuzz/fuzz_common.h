#pragma once
// Readers take a path (they mmap it); fuzz input is handed over as an anonymous
// in-memory file reachable through /proc/self/fd, so nothing touches the disk.
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

#include "model.h"
#include "runner/encoder.h"

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

// A model whose names make it a transformer (BERT, GPT-2, Llama) goes on to the runner: its
// configuration comes from shapes and (GGUF) metadata the file controls. Small ones are
// built and run on four tokens, in float32 and in int8.
inline void runTransformerIfSmall(const Model& m)
{
    auto c = inferEncoderConfig(m);
    if (!c.ok()) {
        (void)c.error().oneLine();
        return;
    }
    int64_t total = 0;
    for (const Tensor& t : m.tensors)
        total += t.numel();
    if (total > (int64_t(1) << 20))
        return;
    auto r = EncoderRunner::create(m);
    if (!r.ok()) {
        (void)r.error().oneLine();
        return;
    }
    const EncoderInput in = randomEncoderInput(1, std::min<int64_t>(4, c->maxPositions), c->vocab, 1, 0);
    (void)r->forward(in);
    if (r->setAllQuantized(true).ok())
        (void)r->forward(in);
}

}  // namespace quantlens::fuzz
