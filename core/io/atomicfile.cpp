#include "io/atomicfile.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

namespace quantlens {

namespace fs = std::filesystem;

namespace {

std::string errnoText(int e) { return std::strerror(e); }

// The process umask without changing it: umask(2) can only be read by setting it,
// which would race with other threads creating files.
mode_t currentUmask()
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("Umask:", 0) == 0)
            return mode_t(std::strtoul(line.c_str() + 6, nullptr, 8) & 0777);
    }
    return 022;
}

bool sameCanonical(const std::string& a, const std::string& b)
{
    std::error_code ea, eb;
    const fs::path ca = fs::weakly_canonical(fs::absolute(a, ea), ea);
    const fs::path cb = fs::weakly_canonical(fs::absolute(b, eb), eb);
    return !ea && !eb && ca == cb;
}

}  // namespace

Status checkNotAnInput(const std::string& target, const std::vector<std::string>& inputs)
{
    struct stat ts {};
    const bool targetExists = ::stat(target.c_str(), &ts) == 0;
    for (const std::string& in : inputs) {
        struct stat is {};
        if (::stat(in.c_str(), &is) != 0)
            continue;  // not a file on disk (the demo model), so nothing to protect
        const bool sameInode = targetExists && ts.st_dev == is.st_dev && ts.st_ino == is.st_ino;
        if (sameInode || sameCanonical(target, in))
            return makeError("same-as-input", "refusing to write over the input file " + in, target);
    }
    return Ok{};
}

Result<AtomicFile> AtomicFile::create(const std::string& finalPath, const std::vector<std::string>& inputs)
{
    if (finalPath.empty())
        return makeError("bad-path", "empty output path");
    if (Status s = checkNotAnInput(finalPath, inputs); !s)
        return s.error();
    std::error_code ec;
    if (fs::is_directory(finalPath, ec))
        return makeError("is-directory", "output path is a directory", finalPath);

    const fs::path target(finalPath);
    fs::path dir = target.parent_path();
    if (dir.empty())
        dir = ".";
    if (!fs::is_directory(dir, ec))
        return makeError("no-directory", "output folder does not exist", finalPath);
    std::string tmpl = (dir / ("." + target.filename().string() + ".quantlens-tmp-XXXXXX")).string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const int fd = ::mkostemp(buf.data(), O_CLOEXEC);
    if (fd < 0)
        return makeError("create", "cannot create a temporary file next to the output: " + errnoText(errno), finalPath);

    AtomicFile f;
    f.finalPath_ = finalPath;
    f.tempPath_ = buf.data();
    f.fd_ = fd;
    return f;
}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : finalPath_(std::move(o.finalPath_)), tempPath_(std::move(o.tempPath_)), fd_(o.fd_), written_(o.written_),
      flushedTo_(o.flushedTo_), done_(o.done_)
{
    o.fd_ = -1;
    o.done_ = true;
}

AtomicFile& AtomicFile::operator=(AtomicFile&& o) noexcept
{
    if (this != &o) {
        discard();
        finalPath_ = std::move(o.finalPath_);
        tempPath_ = std::move(o.tempPath_);
        fd_ = o.fd_;
        written_ = o.written_;
        flushedTo_ = o.flushedTo_;
        done_ = o.done_;
        o.fd_ = -1;
        o.done_ = true;
    }
    return *this;
}

AtomicFile::~AtomicFile() { discard(); }

Status AtomicFile::write(std::span<const std::byte> bytes)
{
    if (done_ || fd_ < 0)
        return makeError("closed", "write after commit or discard", finalPath_);
    const std::byte* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
        const ssize_t n = ::write(fd_, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return makeError("write", "cannot write: " + errnoText(errno), finalPath_, written_);
        }
        p += n;
        left -= size_t(n);
        written_ += n;
    }
    // A hint only: an error here shows again, and is reported, at commit()'s fsync.
    constexpr int64_t kWritebackStep = int64_t(8) << 20;
    if (written_ - flushedTo_ >= kWritebackStep) {
        ::sync_file_range(fd_, flushedTo_, written_ - flushedTo_, SYNC_FILE_RANGE_WRITE);
        flushedTo_ = written_;
    }
    return Ok{};
}

Status AtomicFile::commit()
{
    if (done_ || fd_ < 0)
        return makeError("closed", "commit after commit or discard", finalPath_);
    // Keep the mode of a file we replace; otherwise what open(O_CREAT, 0666) would give.
    struct stat old {};
    const mode_t mode = ::stat(finalPath_.c_str(), &old) == 0 ? (old.st_mode & 07777) : (0666 & ~currentUmask());
    if (::fchmod(fd_, mode) != 0 || ::fsync(fd_) != 0) {
        const int e = errno;
        discard();
        return makeError("write", "cannot finish the file: " + errnoText(e), finalPath_);
    }
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
        const int e = errno;
        discard();
        return makeError("write", "cannot close the file: " + errnoText(e), finalPath_);
    }
    if (::rename(tempPath_.c_str(), finalPath_.c_str()) != 0) {
        const int e = errno;
        discard();
        return makeError("rename", "cannot move the finished file into place: " + errnoText(e), finalPath_);
    }
    done_ = true;
    // Make the rename itself durable; failure here does not undo a complete file.
    fs::path dir = fs::path(finalPath_).parent_path();
    if (dir.empty())
        dir = ".";
    if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    return Ok{};
}

void AtomicFile::discard()
{
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    if (!done_ && !tempPath_.empty())
        ::unlink(tempPath_.c_str());
    done_ = true;
}

}  // namespace quantlens
