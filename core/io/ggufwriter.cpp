#include "io/ggufwriter.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <unordered_map>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/atomicfile.h"
#include "io/gguf.h"
#include "io/ggufspecmap.h"
#include "io/mappedfile.h"
#include "io/readat.h"
#include "scratchbuffer.h"
#include "truncationguard.h"
#include "quant/ggmlblocks.h"

namespace quantlens {

namespace {

constexpr uint32_t kTypeU32 = 4;
constexpr uint32_t kTypeString = 8;
constexpr uint32_t kTypeArray = 9;
constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION, what llama-quantize records

// The source header as bytes to copy: each KV whole (key, type, value) and each tensor info
// taken apart. readGguf has already validated the file; this pass still checks every
// length, so a file that changed in between fails cleanly.
struct RawKv {
    std::string key;
    std::span<const std::byte> bytes;
};
struct RawTensor {
    std::string name;
    std::vector<uint64_t> ne;  // innermost first, as stored
    uint32_t type = 0;
    uint64_t offset = 0;       // from the start of the data section
};
struct RawHeader {
    uint32_t version = 3;
    uint64_t alignment = 32;
    std::vector<RawKv> kvs;
    std::vector<RawTensor> tensors;
    uint64_t dataStart = 0;  // file offset of the data section
};

class Reader {
public:
    Reader(std::span<const std::byte> b, const std::string& path) : b_(b), path_(path) {}
    size_t pos = 0;

    Result<uint64_t> u(size_t n)
    {
        if (b_.size() - pos < n)
            return makeError("truncated", "file ends inside the GGUF header", path_, int64_t(pos));
        uint64_t v = 0;
        for (size_t i = 0; i < n; ++i)
            v |= uint64_t(uint8_t(b_[pos + i])) << (8 * i);
        pos += n;
        return v;
    }
    Result<std::string> str()
    {
        auto n = u(8);
        if (!n)
            return n.error();
        if (*n > b_.size() - pos)
            return makeError("truncated", "a string runs past the end of the file", path_, int64_t(pos));
        std::string s(reinterpret_cast<const char*>(b_.data() + pos), size_t(*n));
        pos += size_t(*n);
        return s;
    }
    Status skipValue(uint64_t type, int depth)
    {
        static constexpr int kSize[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        if (type == kTypeString) {
            auto s = u(8);
            if (!s)
                return s.error();
            if (*s > b_.size() - pos)
                return makeError("truncated", "a string value runs past the end of the file", path_, int64_t(pos));
            pos += size_t(*s);
            return Ok{};
        }
        if (type == kTypeArray) {
            if (depth > 4)
                return makeError("too-deep", "arrays nested too deeply", path_, int64_t(pos));
            auto et = u(4);
            if (!et)
                return et.error();
            auto n = u(8);
            if (!n)
                return n.error();
            if (*et < 13 && *et != kTypeString && *et != kTypeArray) {
                const uint64_t sz = uint64_t(kSize[*et]);
                if (*n > (b_.size() - pos) / sz)
                    return makeError("truncated", "an array runs past the end of the file", path_, int64_t(pos));
                pos += size_t(*n * sz);
                return Ok{};
            }
            for (uint64_t i = 0; i < *n; ++i)
                if (Status s = skipValue(*et, depth + 1); !s)
                    return s;
            return Ok{};
        }
        if (type >= 13)
            return makeError("bad-type", "unknown value type " + std::to_string(type), path_, int64_t(pos));
        if (b_.size() - pos < size_t(kSize[type]))
            return makeError("truncated", "file ends inside a value", path_, int64_t(pos));
        pos += size_t(kSize[type]);
        return Ok{};
    }
    std::span<const std::byte> slice(size_t from) const { return b_.subspan(from, pos - from); }

private:
    std::span<const std::byte> b_;
    const std::string& path_;
};

Result<RawHeader> readRawHeader(std::span<const std::byte> b, const std::string& path)
{
    Reader r(b, path);
    RawHeader h;
    auto magic = r.u(4);
    if (!magic)
        return magic.error();
    auto version = r.u(4);
    if (!version)
        return version.error();
    h.version = uint32_t(*version);
    auto nt = r.u(8);
    auto nkv = nt ? r.u(8) : nt;
    if (!nkv)
        return nkv.error();
    for (uint64_t i = 0; i < *nkv; ++i) {
        const size_t start = r.pos;
        auto key = r.str();
        if (!key)
            return key.error();
        auto type = r.u(4);
        if (!type)
            return type.error();
        const size_t valueAt = r.pos;
        if (Status s = r.skipValue(*type, 0); !s)
            return s.error();
        if (*key == "general.alignment") {
            // The spec says uint32; readGguf tolerates any unsigned integer, so does this.
            const size_t n = *type == 0 ? 1 : *type == 2 ? 2 : *type == kTypeU32 ? 4 : *type == 10 ? 8 : 0;
            uint64_t a = 0;
            for (size_t k = 0; k < n; ++k)
                a |= uint64_t(uint8_t(b[valueAt + k])) << (8 * k);
            if (n)
                h.alignment = a;
        }
        h.kvs.push_back({*key, r.slice(start)});
    }
    for (uint64_t i = 0; i < *nt; ++i) {
        RawTensor t;
        auto name = r.str();
        if (!name)
            return name.error();
        t.name = *name;
        auto nd = r.u(4);
        if (!nd)
            return nd.error();
        if (*nd > 8)
            return makeError("bad-shape", "too many dimensions", path, int64_t(r.pos), t.name);
        for (uint64_t d = 0; d < *nd; ++d) {
            auto x = r.u(8);
            if (!x)
                return x.error();
            t.ne.push_back(*x);
        }
        auto type = r.u(4);
        if (!type)
            return type.error();
        t.type = uint32_t(*type);
        auto off = r.u(8);
        if (!off)
            return off.error();
        t.offset = *off;
        h.tensors.push_back(std::move(t));
    }
    h.dataStart = h.alignment ? (r.pos + h.alignment - 1) / h.alignment * h.alignment : r.pos;
    return h;
}

void put(std::vector<std::byte>& out, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        out.push_back(std::byte(uint8_t(v >> (8 * i))));
}

void putString(std::vector<std::byte>& out, const std::string& s)
{
    put(out, s.size(), 8);
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out.insert(out.end(), p, p + s.size());
}

void putU32Kv(std::vector<std::byte>& out, const std::string& key, uint32_t v)
{
    putString(out, key);
    put(out, kTypeU32, 4);
    put(out, v, 4);
}

// Values per decoded piece when the written tensor is checked against its source: a
// multiple of every block length and of MetricsRun::kPiece, 256 KiB of floats.
constexpr int64_t kCheckPiece = 65536;
static_assert(kCheckPiece % MetricsRun::kPiece == 0 && kCheckPiece % 256 == 0);

constexpr uint64_t kCopyPiece = uint64_t(8) << 20;  // bytes per read of a tensor copied unchanged

uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Drops the source pages of a tensor already written from this process's memory (they are
// clean file pages; touching them again re-reads the file), so a model larger than RAM
// streams through with about one tensor resident.
void releasePages(std::span<const std::byte> data)
{
    static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(data.data()) + page - 1) / page * page;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(data.data()) + data.size()) / page * page;
    if (end > begin)
        ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

std::string sourceTypeName(uint32_t id, const Tensor& t)
{
    if (const GgmlTypeInfo* i = ggmlTypeInfo(id))
        return i->name;
    std::string s = t.dtype == DType::Opaque ? t.opaqueType : std::string(dtypeName(t.dtype));
    for (char& c : s)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

struct Plan {
    bool quantize = false;
    uint32_t type = 0;
    uint64_t bytes = 0;
    const QuantSpec* spec = nullptr;
    bool mapped = false;  // spec is not a ggml scheme: clip as its calibrator says
};

}  // namespace

GgmlType ggmlFallbackType(GgmlType wanted, int64_t rowLen)
{
    const GgmlTypeInfo* w = ggmlTypeInfo(wanted);
    if (!w || rowLen % w->blockElems == 0)
        return wanted;
    GgmlType fb = GgmlType::F16;
    switch (wanted) {
    case GgmlType::Q4_K: fb = GgmlType::Q5_0; break;
    case GgmlType::Q5_K: fb = GgmlType::Q5_1; break;
    case GgmlType::Q6_K: fb = GgmlType::Q8_0; break;
    default: return GgmlType::F16;  // a 32-value block type: nothing smaller to demote to
    }
    return rowLen % ggmlTypeInfo(fb)->blockElems == 0 ? fb : GgmlType::F16;
}

uint32_t llamaFileType(GgmlType mostly)
{
    switch (mostly) {
    case GgmlType::F32: return 0;   // LLAMA_FTYPE_ALL_F32
    case GgmlType::F16: return 1;   // MOSTLY_F16
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 3;
    case GgmlType::Q8_0: return 7;
    case GgmlType::Q5_0: return 8;
    case GgmlType::Q5_1: return 9;
    case GgmlType::Q4_K: return 14;  // MOSTLY_Q4_K_S: Q4_K everywhere chosen
    case GgmlType::Q5_K: return 16;  // MOSTLY_Q5_K_S
    case GgmlType::Q6_K: return 18;
    case GgmlType::BF16: return 32;
    }
    return 0;
}

bool isGgufFile(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    char m[4] = {};
    return f.read(m, 4) && std::memcmp(m, "GGUF", 4) == 0;
}

Result<GgufWriteReport> writeGgufExport(const std::string& sourcePath, const std::vector<GgufDecision>& decisions,
                                        const GgufWriteOptions& opts, const ExportProgress& progress)
{
    if (!isGgufFile(sourcePath))
        return makeError("bad-pair", "a GGUF export (.gguf) rewrites a GGUF model, and this file is not GGUF", sourcePath);
    auto model = readGguf(sourcePath);
    if (!model)
        return model.error();
    auto mf = MappedFile::open(sourcePath);
    if (!mf)
        return mf.error();
    auto raw = readRawHeader((*mf)->bytes(), sourcePath);
    if (!raw)
        return raw.error();
    const RawHeader& H = *raw;
    if (H.tensors.size() != model->tensors.size())
        return makeError("changed", "the file changed while it was read", sourcePath);

    struct Chosen {
        const GgufDecision* decision;
        GgmlMapping mapping;
    };
    std::unordered_map<std::string, Chosen> chosen;
    for (const GgufDecision& d : decisions) {
        if (!model->find(d.tensor))
            return makeError("no-tensor", "no tensor named '" + d.tensor + "' in the source", sourcePath, -1, d.tensor);
        auto mapping = ggmlTypeForSpec(d.spec);
        if (!mapping)
            return makeError(mapping.error().code, mapping.error().message, {}, -1, d.tensor);
        chosen[d.tensor] = {&d, *mapping};
    }

    GgufWriteReport report;
    report.outPath = opts.outPath;
    std::vector<Plan> plans(H.tensors.size());
    std::map<uint32_t, int64_t> elementsByType;  // over the chosen tensors, for general.file_type
    for (size_t i = 0; i < H.tensors.size(); ++i) {
        const RawTensor& rt = H.tensors[i];
        const Tensor& t = model->tensors[i];
        GgufTensorResult r;
        r.name = rt.name;
        r.shape = t.shape;
        r.sourceType = sourceTypeName(rt.type, t);
        r.bytesBefore = int64_t(t.data.size());
        Plan& p = plans[i];
        p.type = rt.type;
        p.bytes = t.data.size();
        auto it = chosen.find(rt.name);
        if (it != chosen.end()) {
            const QuantSpec& spec = it->second.decision->spec;
            const GgmlType wanted = it->second.mapping.type;
            r.requested = ggmlTypeInfo(wanted)->name;
            r.mapped = it->second.mapping.mapped;
            r.why = r.mapped ? it->second.mapping.why : it->second.decision->why;
            const int64_t rowLen = rt.ne.empty() ? 1 : int64_t(rt.ne[0]);
            const bool floatTarget = wanted == GgmlType::F32 || wanted == GgmlType::F16 || wanted == GgmlType::BF16;
            if (!t.decodable()) {
                return makeError("not-decoded", "tensor type " + r.sourceType + " cannot be decoded, so it cannot be "
                                                    "re-quantized", sourcePath, -1, rt.name);
            } else if (t.numel() == 0) {
                r.note = "empty: copied";
            } else if (rt.ne.size() < 2 && !floatTarget) {
                r.note = "1-D: kept as is (llama-quantize quantizes matrices only)";
            } else {
                const GgmlType type = ggmlFallbackType(wanted, rowLen);
                if (type != wanted)
                    r.note = "row of " + std::to_string(rowLen) + " values is not a multiple of "
                             + std::to_string(ggmlTypeInfo(wanted)->blockElems) + ": " + ggmlTypeInfo(wanted)->name
                             + " falls back to " + ggmlTypeInfo(type)->name + " as llama-quantize does";
                const bool clips = spec.calib != CalibMethod::MinMax;
                if (uint32_t(type) == rt.type && !clips) {
                    r.note += std::string(r.note.empty() ? "" : "; ") + "already " + ggmlTypeInfo(type)->name + ": copied";
                } else {
                    p.quantize = true;
                    p.type = uint32_t(type);
                    p.spec = &spec;
                    p.mapped = r.mapped;
                    p.bytes = uint64_t(t.numel() / ggmlTypeInfo(type)->blockElems * ggmlTypeInfo(type)->blockBytes);
                    r.clipped = clips;
                }
                elementsByType[uint32_t(type)] += t.numel();
            }
        }
        r.written = ggmlTypeInfo(p.type) ? ggmlTypeInfo(p.type)->name : r.sourceType;
        r.bytesAfter = int64_t(p.bytes);
        report.tensors.push_back(std::move(r));
    }

    // general.file_type: the caller's, else the type most chosen values were written as.
    std::optional<uint32_t> fileType = opts.fileType;
    if (!fileType && !elementsByType.empty()) {
        auto best = std::max_element(elementsByType.begin(), elementsByType.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
        fileType = llamaFileType(GgmlType(best->first));
    }

    // Header: the source's KVs in order, file_type and quantization_version replaced or added.
    std::vector<std::byte> head;
    head.insert(head.end(), {std::byte('G'), std::byte('G'), std::byte('U'), std::byte('F')});
    put(head, H.version, 4);
    put(head, H.tensors.size(), 8);
    const size_t kvCountAt = head.size();
    put(head, 0, 8);
    bool haveFileType = false, haveQv = false;
    uint64_t nkv = 0;
    for (const RawKv& kv : H.kvs) {
        ++nkv;
        if (kv.key == "general.file_type" && fileType) {
            putU32Kv(head, kv.key, *fileType);
            haveFileType = true;
        } else if (kv.key == "general.quantization_version" && fileType) {
            putU32Kv(head, kv.key, kQuantizationVersion);
            haveQv = true;
        } else {
            head.insert(head.end(), kv.bytes.begin(), kv.bytes.end());
        }
    }
    if (fileType && !haveFileType) {
        putU32Kv(head, "general.file_type", *fileType);
        ++nkv;
    }
    if (fileType && !haveQv) {
        putU32Kv(head, "general.quantization_version", kQuantizationVersion);
        ++nkv;
    }
    for (size_t b = 0; b < 8; ++b)
        head[kvCountAt + b] = std::byte(uint8_t(nkv >> (8 * b)));
    uint64_t offset = 0;
    for (size_t i = 0; i < H.tensors.size(); ++i) {
        const RawTensor& rt = H.tensors[i];
        putString(head, rt.name);
        put(head, rt.ne.size(), 4);
        for (uint64_t d : rt.ne)
            put(head, d, 8);
        put(head, plans[i].type, 4);
        put(head, offset, 8);
        offset += alignUp(plans[i].bytes, H.alignment);
    }
    head.resize(size_t(alignUp(head.size(), H.alignment)), std::byte{0});

    auto file = AtomicFile::create(opts.outPath, {sourcePath});
    if (!file)
        return file.error();
    if (Status s = file->write(head); !s)
        return s.error();
    const std::vector<std::byte> zeros(size_t(H.alignment), std::byte{0});
    Fd srcFd{::open(sourcePath.c_str(), O_RDONLY | O_CLOEXEC)};
    if (srcFd.fd < 0)
        return makeError("open", std::string("cannot open: ") + std::strerror(errno), sourcePath);
    // Grown, never shrunk or zero-filled: the largest tensor's pages fault in once, not
    // once per tensor (that and a zero fill per resize were a fifth of a q8_0 export).
    ScratchBuffer<float> converted, clippedCopy;  // the float values (read or converted); the clipped values
    ScratchBuffer<std::byte> out, copyBuffer;
    std::vector<float> back(static_cast<size_t>(kCheckPiece));  // one decoded piece, cache-sized
    const double n = double(std::max<size_t>(1, H.tensors.size()));
    for (size_t i = 0; i < H.tensors.size(); ++i) {
        const Tensor& t = model->tensors[i];
        const Plan& p = plans[i];
        GgufTensorResult& r = report.tensors[i];
        if (!exportdetail::report(progress, double(i) / n, (p.quantize ? "quantizing " : "copying ") + t.name))
            return exportdetail::cancelled(opts.outPath);
        if (!p.quantize) {
            // Copied through a reused buffer with pread, not written from the mapping: a
            // source that shrank then fails as "file changed", not as a write error.
            const uint64_t from = H.dataStart + H.tensors[i].offset;
            for (uint64_t done = 0; done < p.bytes;) {
                const size_t len = size_t(std::min<uint64_t>(p.bytes - done, kCopyPiece));
                std::span<std::byte> piece = copyBuffer.get(len);
                if (Status s = readAt(srcFd.fd, piece.data(), len, from + done, sourcePath, t.name); !s)
                    return s.error();
                if (Status s = file->write(piece); !s)
                    return s.error();
                done += len;
            }
        } else {
            const size_t numel = size_t(t.numel());
            // The values before any clip. Float32 source bytes are read with pread into the
            // reused buffer: the kernel copies from the page cache through its own large
            // pages, where reading the mapping took a fault per 4 KiB page and a TLB miss
            // per page (a third of a q8_0 export).
            std::span<float> x = converted.get(numel);
            const bool direct = t.dtype == DType::F32 && t.strides.empty() && !t.packed
                                && t.bigEndian == (std::endian::native == std::endian::big)
                                && t.data.size() / 4 >= numel;
            if (direct) {
                if (Status s = readAt(srcFd.fd, x.data(), numel * 4, H.dataStart + H.tensors[i].offset, sourcePath, t.name); !s)
                    return s.error();
            } else if (Status s = t.toFloat(x); !s) {
                return s.error();
            }
            const std::span<const float> source = x;
            const int64_t rowLen = t.shape.empty() ? 1 : t.shape.back();
            const bool clips = p.spec->calib != CalibMethod::MinMax;
            std::span<const float> values = source;  // what the blocks are made from
            if (clips) {
                std::span<float> c = clippedCopy.get(numel);
                std::copy(source.begin(), source.end(), c.begin());
                Result<int64_t> changed = int64_t(0);
                if (p.mapped) {
                    changed = clipAsSpec(c, rowLen, *p.spec);
                } else if (auto clip = ggmlClipRange(source, *p.spec); !clip) {
                    changed = clip.error();
                } else if (*clip) {
                    changed = clipValues(source, **clip, c.data());
                }
                if (!changed) {
                    Error e = changed.error();
                    e.tensor = t.name;
                    return e;
                }
                r.clippedValues = *changed;
                values = c;
            }
            std::span<std::byte> blocks = out.get(size_t(p.bytes));
            if (Status s = ggmlQuantize(GgmlType(p.type), values, rowLen, blocks); !s) {
                Error e = s.error();
                e.tensor = t.name;
                return e;
            }
            if (Status s = file->write(blocks); !s)
                return s.error();
            // The written tensor decoded as ggml decodes it, against the values before the
            // clip, a cache-sized piece at a time (the same bits as one pass over the tensor).
            const GgmlTypeInfo* wt = ggmlTypeInfo(GgmlType(p.type));
            MetricsRun run;
            bool decoded = true;
            for (size_t at = 0; at < numel && decoded; at += size_t(kCheckPiece)) {
                const size_t len = std::min(numel - at, size_t(kCheckPiece));
                Tensor piece;
                piece.dtype = wt->dtype;
                piece.shape = {int64_t(len)};
                piece.data = std::span<const std::byte>(blocks).subspan(at / size_t(wt->blockElems) * size_t(wt->blockBytes),
                                                                        len / size_t(wt->blockElems) * size_t(wt->blockBytes));
                const std::span<float> y = std::span<float>(back).first(len);
                decoded = piece.toFloat(y).ok();
                if (decoded)
                    run.add(source.subspan(at, len), y);
            }
            if (decoded) {
                r.metrics = run.finish();
                r.haveMetrics = true;
            }
        }
        releasePages(t.data);
        const uint64_t pad = alignUp(p.bytes, H.alignment) - p.bytes;
        if (pad)
            if (Status s = file->write(std::span<const std::byte>(zeros).first(size_t(pad))); !s)
                return s.error();
    }
    if (!exportdetail::report(progress, 1.0, "finishing " + opts.outPath))
        return exportdetail::cancelled(opts.outPath);
    report.bytesWritten = file->bytesWritten();
    if (Status s = file->commit(); !s)
        return s.error();
    report.fileType = fileType.value_or(0);
    return report;
}

}  // namespace quantlens
