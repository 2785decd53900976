#include "io/mappedfile.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quantlens {

Result<std::shared_ptr<const MappedFile>> MappedFile::open(const std::string& path)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
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
        return makeError("open", "not a regular file", path);
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
    }
    ::close(fd);
    return std::shared_ptr<const MappedFile>(std::move(f));
}

MappedFile::~MappedFile()
{
    if (data_)
        ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace quantlens
