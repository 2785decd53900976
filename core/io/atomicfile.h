#pragma once
// Writes a file so that the final name only ever holds a complete file: the bytes go
// to a temporary file in the target's folder (same file system, so rename(2) is atomic)
// and are renamed into place by commit(). Until then an existing file under the final
// name stays untouched; on failure, cancel or destruction the temporary is removed.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "result.h"

namespace quantlens {

class AtomicFile {
public:
    // Refuses (code "same-as-input") when finalPath names the same file as any of
    // `inputs` — by st_dev/st_ino, so hard links and symlinks count, and by canonical
    // path. Inputs that do not exist on disk (the built-in demo) are ignored.
    static Result<AtomicFile> create(const std::string& finalPath, const std::vector<std::string>& inputs);

    AtomicFile(AtomicFile&& other) noexcept;
    AtomicFile& operator=(AtomicFile&& other) noexcept;
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile();  // discard() unless committed

    const std::string& finalPath() const { return finalPath_; }
    // For libraries that open files by name (HDF5): they may truncate and rewrite it.
    const std::string& tempPath() const { return tempPath_; }

    // Also starts the disk writeback of every whole 8 MiB written (sync_file_range, no
    // wait), so commit()'s fsync waits for the last few MiB, not for the whole file.
    Status write(std::span<const std::byte> bytes);
    Status write(const void* data, size_t n) { return write({static_cast<const std::byte*>(data), n}); }
    int64_t bytesWritten() const { return written_; }

    // Flushes to disk, gives the file ordinary permissions (0666 & ~umask, as a plain
    // open() would) and renames it over finalPath.
    Status commit();
    // Removes the temporary file; the final name is left as it was.
    void discard();

private:
    AtomicFile() = default;
    std::string finalPath_;
    std::string tempPath_;
    int fd_ = -1;
    int64_t written_ = 0;
    int64_t flushedTo_ = 0;  // writeback started up to here (write() starts it as it goes)
    bool done_ = false;
};

// The same check on its own: an error if `target` is the same file as an input.
Status checkNotAnInput(const std::string& target, const std::vector<std::string>& inputs);

}  // namespace quantlens
