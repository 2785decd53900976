#include "io/mappedfile.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "truncationguard.h"

namespace quantlens {

namespace {

// Used only when the guard's table is full: a private anonymous copy cannot change
// under us. pread in a loop because a short read is legal.
bool readInto(int fd, std::byte* dst, size_t n)
{
    size_t done = 0;
    while (done < n) {
        const ssize_t r = ::pread(fd, dst + done, n - done, off_t(done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        done += size_t(r);
    }
    return true;
}

}  // namespace

Result<std::shared_ptr<const MappedFile>> MappedFile::open(const std::string& path)
{
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever;
    // it has no effect on regular files, which are all we accept.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return makeError("open", std::string("cannot open: ") + std::strerror(errno), path);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        return makeError("open", std::string("cannot stat: ") + std::strerror(e), path);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return makeError("not-a-file", describeNonRegular(st.st_mode), path);
    }
    std::shared_ptr<MappedFile> f(new MappedFile);
    f->path_ = path;
    f->size_ = static_cast<size_t>(st.st_size);
    if (f->size_ > 0) {
        void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            return makeError("open", std::string("cannot map: ") + std::strerror(e), path);
        }
        f->data_ = static_cast<const std::byte*>(p);
        f->slot_ = truncationguard::registerMapping(f->data_, f->size_, &f->path_);
        if (f->slot_ < 0) {
            void* a = ::mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            const bool copied = a != MAP_FAILED && readInto(fd, static_cast<std::byte*>(a), f->size_);
            ::munmap(p, f->size_);
            f->data_ = nullptr;
            if (!copied) {
                if (a != MAP_FAILED)
                    ::munmap(a, f->size_);
                ::close(fd);
                return makeError("open", "cannot read the whole file (it changed while reading?)", path);
            }
            ::mprotect(a, f->size_, PROT_READ);
            f->data_ = static_cast<const std::byte*>(a);
        }
    }
    ::close(fd);
    return std::shared_ptr<const MappedFile>(std::move(f));
}

MappedFile::~MappedFile()
{
    truncationguard::unregisterMapping(slot_);
    if (data_)
        ::munmap(const_cast<std::byte*>(data_), size_);
}

bool MappedFile::changed() const
{
    return data_ && truncationguard::changedFile(data_, size_).has_value();
}

void releaseMappedPages(std::span<const std::byte> bytes)
{
    if (bytes.empty() || !truncationguard::insideMapping(bytes.data(), bytes.size()))
        return;
    // Only whole pages inside the range: a neighbour's bytes on a shared page stay.
    const auto page = uintptr_t(::sysconf(_SC_PAGESIZE));
    const auto a = reinterpret_cast<uintptr_t>(bytes.data());
    const uintptr_t from = (a + page - 1) & ~(page - 1);
    const uintptr_t to = (a + bytes.size()) & ~(page - 1);
    if (to > from)
        ::madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);
}

std::string describeNonRegular(unsigned mode)
{
    if (S_ISFIFO(mode))
        return "is a named pipe (FIFO), not a model file: it cannot be mapped or read twice";
    if (S_ISSOCK(mode))
        return "is a socket, not a model file";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "is a device, not a model file";
    if (S_ISDIR(mode))
        return "is a folder, not a model file";
    return "is not a regular file";
}

}  // namespace quantlens
