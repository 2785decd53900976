#include "model.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>

#include "io/gguf.h"
#include "io/hdf5reader.h"
#include "io/hfquant.h"
#include "io/mappedfile.h"
#include "io/npy.h"
#include "io/onnx.h"
#include "io/pytorch.h"
#include "io/safetensors.h"
#include "truncationguard.h"
#include "io/zipsniff.h"

namespace quantlens {

namespace {

bool endsWith(const std::string& s, std::string_view suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// What identifies one version of a file: replaced (new inode) or rewritten (size, mtime).
struct FileVersion {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    struct timespec mtime {};
    bool operator==(const FileVersion& o) const
    {
        return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
               mtime.tv_nsec == o.mtime.tv_nsec;
    }
};

FileVersion versionOf(const struct stat& st)
{
    return {st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}

Result<Model> openByContent(const std::string& path, const OpenProgress& progress);

}  // namespace

Result<Model> openModel(const std::string& path, const OpenProgress& progress)
{
    // Refuse what is not a file or folder before anything opens it: open(2) on a FIFO
    // waits for a writer, a device may never end.
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return makeError("open", std::string("cannot open: ") + std::strerror(errno), path);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return makeError("not-a-file", describeNonRegular(st.st_mode), path);
    if (S_ISDIR(st.st_mode))
        return openByContent(path, progress);

    // A file rewritten while its reader ran may parse into nonsense or fail on the zero
    // pages the truncation guard substitutes; either way the honest answer is the same.
    const FileVersion before = versionOf(st);
    Result<Model> r = openByContent(path, progress);
    struct stat after {};
    if (::stat(path.c_str(), &after) != 0 || !(versionOf(after) == before))
        return truncationguard::fileChangedError(path);
    if (r)
        for (const Tensor& t : r->tensors) {
            if (Status c = truncationguard::checkRange(t.data.data(), t.data.size(), t.name); !c)
                return c.error();
            if (t.packed)
                for (const auto& range : t.packed->ranges())
                    if (Status c = truncationguard::checkRange(range.data(), range.size(), t.name); !c)
                        return c.error();
        }
    return r;
}

namespace {

Result<Model> openByContent(const std::string& path, const OpenProgress& progress)
{
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        // A Hugging Face folder: prefer safetensors (what HF itself loads first), the shard
        // index before a single file; older repositories hold only torch.save checkpoints.
        for (const char* n : {"model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                              "pytorch_model.bin"}) {
            auto p = (std::filesystem::path(path) / n).string();
            if (std::filesystem::exists(p, ec))
                return openModel(p, progress);
        }
        return makeError("unknown-format",
                         "folder holds no model.safetensors, pytorch_model.bin or their .index.json shard index", path);
    }

    std::ifstream in(path, std::ios::binary);
    if (!in)
        return makeError("open", std::string("cannot open: ") + std::strerror(errno), path);
    unsigned char head[16] = {};
    in.read(reinterpret_cast<char*>(head), sizeof head);
    const auto got = static_cast<size_t>(in.gcount());
    if (got == 0)
        return makeError("empty", "file is empty", path, 0);

    auto magic = [&](const char* m, size_t n, size_t at = 0) {
        return got >= at + n && std::memcmp(head + at, m, n) == 0;
    };

    if (magic("GGUF", 4))
        return readGguf(path);
    if (magic("\x89HDF\r\n\x1a\n", 8))
        return readHdf5(path, progress);
    if (magic("\x93NUMPY", 6))
        return readNpy(path);
    if (magic("PK\x03\x04", 4) || magic("PK\x05\x06", 4)) {
        // Both torch.save and np.savez write zips: a data.pkl member decides.
        auto kind = sniffZip(path);
        if (!kind)
            return kind.error();
        return *kind == ZipKind::Npz ? readNpz(path) : readPytorch(path);
    }
    if (magic("\x80", 1) && got >= 2 && head[1] >= 2 && head[1] <= 5 && !endsWith(path, ".onnx"))
        return readPytorch(path);  // legacy torch.save: a bare pickle stream
    const bool safetensors = got >= 9 && head[8] == '{';  // u64 little-endian header length, then the JSON header
    if (safetensors || (head[0] == '{' && endsWith(path, ".json"))) {
        auto m = safetensors ? readSafetensors(path) : readSafetensorsIndex(path);
        if (!m)
            return m;
        // A Hugging Face checkpoint's config.json says which integer tensors are quantized weights.
        if (Status s = decodeHfQuantization(*m, std::filesystem::path(path).parent_path().string()); !s)
            return s.error();
        return m;
    }
    if (endsWith(path, ".onnx") || head[0] == 0x08)
        return readOnnx(path);  // protobuf has no magic: field 1 (ir_version) comes first
    // HDF5 allows a user block of 512, 1024, ... bytes before the signature.
    if (endsWith(path, ".h5") || endsWith(path, ".hdf5") || endsWith(path, ".keras"))
        return readHdf5(path, progress);
    return makeError("unknown-format", "not a recognised model file (no known magic bytes)", path, 0);
}

}  // namespace

}  // namespace quantlens
