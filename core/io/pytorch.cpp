// PyTorch checkpoints: torch.save zip archives (1.6+) and the legacy pickle stream.
// The pickle is read by the restricted unpickler (io/pickle.h): nothing in the file is
// ever executed; tensors become views into the memory-mapped archive.
#include "io/pytorch.h"

#include <zip.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "io/mappedfile.h"
#include "io/pickle.h"
#include "layers.h"

namespace quantlens {

namespace {

using pickle::Kind;
using pickle::Node;
using pickle::NodeId;

constexpr pickle::AllowedGlobal kAllowed[] = {
    {"collections", "OrderedDict", pickle::GlobalKind::Dict},
    {"builtins", "dict", pickle::GlobalKind::Dict},
    {"builtins", "set", pickle::GlobalKind::Set},
    {"builtins", "frozenset", pickle::GlobalKind::Set},
    {"torch._utils", "_rebuild_tensor_v2", pickle::GlobalKind::Opaque},
    {"torch._utils", "_rebuild_parameter", pickle::GlobalKind::Opaque},
    {"torch._utils", "_rebuild_parameter_with_state", pickle::GlobalKind::Opaque},
    {"torch._tensor", "_rebuild_from_type_v2", pickle::GlobalKind::Opaque},
    // Class references only (the new_type argument of _rebuild_from_type_v2).
    {"torch", "Tensor", pickle::GlobalKind::Opaque},
    {"torch._tensor", "Tensor", pickle::GlobalKind::Opaque},
    {"torch.nn.parameter", "Parameter", pickle::GlobalKind::Opaque},
    {"torch", "device", pickle::GlobalKind::Opaque},
    {"torch", "FloatStorage", pickle::GlobalKind::Opaque},
    {"torch", "DoubleStorage", pickle::GlobalKind::Opaque},
    {"torch", "HalfStorage", pickle::GlobalKind::Opaque},
    {"torch", "BFloat16Storage", pickle::GlobalKind::Opaque},
    {"torch", "LongStorage", pickle::GlobalKind::Opaque},
    {"torch", "IntStorage", pickle::GlobalKind::Opaque},
    {"torch", "ShortStorage", pickle::GlobalKind::Opaque},
    {"torch", "CharStorage", pickle::GlobalKind::Opaque},
    {"torch", "ByteStorage", pickle::GlobalKind::Opaque},
    {"torch", "BoolStorage", pickle::GlobalKind::Opaque},
    // Known but not decodable: allowed as class references so the error can say why.
    {"torch", "ComplexFloatStorage", pickle::GlobalKind::Opaque},
    {"torch", "ComplexDoubleStorage", pickle::GlobalKind::Opaque},
    {"torch", "QInt8Storage", pickle::GlobalKind::Opaque},
    {"torch", "QUInt8Storage", pickle::GlobalKind::Opaque},
    {"torch", "QInt32Storage", pickle::GlobalKind::Opaque},
    // numpy scalars in training checkpoints (best_acc = np.float64(...)); protocol 2
    // has no bytes opcode, so their raw bytes arrive through _codecs.encode(str, 'latin1').
    {"numpy.core.multiarray", "scalar", pickle::GlobalKind::Opaque},
    {"numpy", "dtype", pickle::GlobalKind::Opaque},
    {"_codecs", "encode", pickle::GlobalKind::Opaque},
};

constexpr int kMaxNesting = 1000;
// Names are built per leaf, so hostile keys repeated through the memo must not multiply
// into gigabytes of names: real key paths are a few hundred characters at most.
constexpr size_t kMaxNameLength = 1024;
constexpr size_t kMaxKeyLength = 256;
constexpr size_t kMaxTensors = size_t(1) << 20;
constexpr size_t kMaxMetadata = 2000;
constexpr size_t kMaxMetadataText = 200;
// data.pkl holds only structure; a 1 GiB one is not a checkpoint.
constexpr uint64_t kMaxPickleBytes = uint64_t(1) << 30;

std::optional<DType> storageDType(std::string_view global)
{
    static const std::pair<std::string_view, DType> map[] = {
        {"torch.FloatStorage", DType::F32}, {"torch.DoubleStorage", DType::F64},
        {"torch.HalfStorage", DType::F16},  {"torch.BFloat16Storage", DType::BF16},
        {"torch.LongStorage", DType::I64},  {"torch.IntStorage", DType::I32},
        {"torch.ShortStorage", DType::I16}, {"torch.CharStorage", DType::I8},
        {"torch.ByteStorage", DType::U8},   {"torch.BoolStorage", DType::BOOL},
    };
    for (const auto& [n, t] : map)
        if (n == global)
            return t;
    return std::nullopt;
}

uint64_t le(std::span<const std::byte> b, size_t at, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i)
        v |= uint64_t(std::to_integer<uint8_t>(b[at + i])) << (8 * i);
    return v;
}

bool checkedAdd(uint64_t a, uint64_t b, uint64_t& out)
{
    if (a > std::numeric_limits<uint64_t>::max() - b)
        return false;
    out = a + b;
    return true;
}

// ---------------------------------------------------------------------------------------
// Zip: libzip lists members, checks methods and decompresses; the data offset of a STORED
// member (which libzip does not expose) comes from our own bounds-checked reading of the
// central directory and the local file header.

struct CentralEntry {
    uint16_t method = 0;
    uint64_t compSize = 0;
    uint64_t size = 0;
    uint64_t localOffset = 0;
};

Result<std::unordered_map<std::string, CentralEntry>> readCentralDirectory(std::span<const std::byte> f,
                                                                          const std::string& path)
{
    const size_t n = f.size();
    if (n < 22)
        return makeError("bad-zip", "zip archive is shorter than its end record", path, 0);
    size_t eocd = SIZE_MAX;
    const size_t lowest = n > 22 + 65535 ? n - 22 - 65535 : 0;
    for (size_t p = n - 22 + 1; p-- > lowest;) {
        if (le(f, p, 4) == 0x06054b50 && p + 22 + le(f, p + 20, 2) <= n) {
            eocd = p;
            break;
        }
    }
    if (eocd == SIZE_MAX)
        return makeError("bad-zip", "zip end-of-central-directory record not found", path);
    uint64_t count = le(f, eocd + 10, 2), cdSize = le(f, eocd + 12, 4), cdOffset = le(f, eocd + 16, 4);
    if (count == 0xffff || cdSize == 0xffffffff || cdOffset == 0xffffffff) {
        if (eocd < 20 || le(f, eocd - 20, 4) != 0x07064b50)
            return makeError("bad-zip", "zip64 end record locator missing", path, int64_t(eocd));
        const uint64_t z64 = le(f, eocd - 20 + 8, 8);
        if (z64 > n || n - z64 < 56 || le(f, size_t(z64), 4) != 0x06064b50)
            return makeError("bad-zip", "zip64 end record is outside the file", path, int64_t(eocd));
        count = le(f, size_t(z64) + 32, 8);
        cdSize = le(f, size_t(z64) + 40, 8);
        cdOffset = le(f, size_t(z64) + 48, 8);
    }
    uint64_t cdEnd = 0;
    if (!checkedAdd(cdOffset, cdSize, cdEnd) || cdEnd > n)
        return makeError("bad-zip", "zip central directory extends past the end of the file", path, int64_t(eocd));
    if (count > cdSize / 46)
        return makeError("bad-zip", "zip claims " + std::to_string(count) + " members, more than its directory holds", path);
    std::unordered_map<std::string, CentralEntry> out;
    size_t q = size_t(cdOffset);
    for (uint64_t i = 0; i < count; ++i) {
        if (cdEnd - q < 46 || le(f, q, 4) != 0x02014b50)
            return makeError("bad-zip", "zip central directory entry " + std::to_string(i) + " is damaged", path, int64_t(q));
        CentralEntry e;
        e.method = uint16_t(le(f, q + 10, 2));
        e.compSize = le(f, q + 20, 4);
        e.size = le(f, q + 24, 4);
        e.localOffset = le(f, q + 42, 4);
        const size_t nameLen = le(f, q + 28, 2), extraLen = le(f, q + 30, 2), commentLen = le(f, q + 32, 2);
        if (cdEnd - q - 46 < nameLen + extraLen + commentLen)
            return makeError("bad-zip", "zip central directory entry " + std::to_string(i) + " overruns the directory", path, int64_t(q));
        std::string name(reinterpret_cast<const char*>(f.data() + q + 46), nameLen);
        // Zip64 extra field: 8-byte values for exactly those fields that are 0xffffffff.
        size_t x = q + 46 + nameLen;
        const size_t xEnd = x + extraLen;
        while (xEnd - x >= 4) {
            const uint64_t id = le(f, x, 2), len = le(f, x + 2, 2);
            if (xEnd - x - 4 < len)
                break;
            if (id == 1) {
                size_t at = x + 4;
                const size_t end = at + len;
                for (uint64_t* field : {&e.size, &e.compSize, &e.localOffset}) {
                    if (*field != 0xffffffff)
                        continue;
                    if (end - at < 8)
                        return makeError("bad-zip", "zip64 extra field of '" + name + "' is too short", path, int64_t(x));
                    *field = le(f, at, 8);
                    at += 8;
                }
            }
            x += 4 + len;
        }
        out[name] = e;
        q += 46 + nameLen + extraLen + commentLen;
    }
    return out;
}

struct MemberBytes {
    std::span<const std::byte> bytes;
    std::shared_ptr<const void> keepAlive;
    int64_t fileOffset = -1;  // where bytes[0] is in the file; -1 when decompressed
};

class TorchZip {
public:
    ~TorchZip()
    {
        if (zip_)
            zip_discard(zip_);  // opened read-only: nothing to write back
    }

    Status open(std::shared_ptr<const MappedFile> file)
    {
        file_ = std::move(file);
        path_ = file_->path();
        auto cd = readCentralDirectory(file_->bytes(), path_);
        if (!cd)
            return cd.error();
        central_ = std::move(*cd);
        zip_error_t ze;
        zip_error_init(&ze);
        zip_source_t* src = zip_source_buffer_create(file_->bytes().data(), file_->size(), 0, &ze);
        if (!src) {
            std::string msg = std::string("cannot read zip archive: ") + zip_error_strerror(&ze);
            zip_error_fini(&ze);
            return makeError("bad-zip", msg, path_);
        }
        zip_ = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
        if (!zip_) {
            zip_source_free(src);
            std::string msg = std::string("not a readable zip archive: ") + zip_error_strerror(&ze);
            zip_error_fini(&ze);
            return makeError("bad-zip", msg, path_);
        }
        zip_error_fini(&ze);
        return findPrefix();
    }

    const std::string& prefix() const { return prefix_; }
    bool has(const std::string& member) const { return zip_name_locate(zip_, (prefix_ + member).c_str(), 0) >= 0; }

    // A member's bytes: a view into the mapping when STORED, else decompressed into a
    // buffer that grows only as real data arrives (a lying size cannot make us allocate).
    Result<MemberBytes> read(const std::string& member, uint64_t maxBytes = std::numeric_limits<uint64_t>::max()) const
    {
        const std::string name = prefix_ + member;
        const zip_int64_t idx = zip_name_locate(zip_, name.c_str(), 0);
        if (idx < 0)
            return makeError("missing-member", "archive has no member '" + name + "'", path_);
        zip_stat_t st;
        zip_stat_init(&st);
        if (zip_stat_index(zip_, zip_uint64_t(idx), 0, &st) != 0 || !(st.valid & ZIP_STAT_COMP_METHOD) ||
            !(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE))
            return makeError("bad-zip", "cannot stat member '" + name + "'", path_);
        auto it = central_.find(name);
        if (it == central_.end() || it->second.compSize != st.comp_size || it->second.size != st.size ||
            it->second.method != st.comp_method)
            return makeError("bad-zip", "member '" + name + "' is described inconsistently in the central directory", path_);
        if (st.size > maxBytes)
            return makeError("too-large", "member '" + name + "' claims " + std::to_string(st.size) + " bytes", path_);
        const auto f = file_->bytes();
        if (st.comp_method == ZIP_CM_STORE) {
            if (st.comp_size != st.size)
                return makeError("bad-zip", "stored member '" + name + "' has different packed and unpacked sizes", path_);
            const uint64_t lh = it->second.localOffset;
            if (lh > f.size() || f.size() - lh < 30 || le(f, size_t(lh), 4) != 0x04034b50)
                return makeError("bad-zip", "local header of '" + name + "' is missing", path_, int64_t(std::min<uint64_t>(lh, INT64_MAX)));
            const uint64_t start = lh + 30 + le(f, size_t(lh) + 26, 2) + le(f, size_t(lh) + 28, 2);
            uint64_t end = 0;
            if (!checkedAdd(start, st.size, end) || end > f.size())
                return makeError("truncated", "member '" + name + "' claims " + std::to_string(st.size) +
                                     " bytes, past the end of the archive", path_, int64_t(lh));
            return MemberBytes{f.subspan(size_t(start), size_t(st.size)), file_, int64_t(start)};
        }
        if (st.comp_method != ZIP_CM_DEFLATE)
            return makeError("unsupported", "member '" + name + "' uses zip compression method " +
                                 std::to_string(st.comp_method) + " (torch.save stores members uncompressed)", path_);
        // Deflate cannot expand more than 1032:1; a bigger claim is a lie.
        if (st.comp_size > f.size() || st.size / 1032 > st.comp_size + 1)
            return makeError("bad-zip", "member '" + name + "' claims " + std::to_string(st.size) + " bytes from " +
                                 std::to_string(st.comp_size) + " compressed bytes", path_);
        zip_file_t* zf = zip_fopen_index(zip_, zip_uint64_t(idx), 0);
        if (!zf)
            return makeError("bad-zip", std::string("cannot open member '") + name + "': " + zip_strerror(zip_), path_);
        auto buf = std::make_shared<std::vector<std::byte>>();
        constexpr uint64_t kChunk = 1 << 20;
        while (true) {
            const uint64_t want = std::min<uint64_t>(kChunk, st.size - buf->size() + 1);
            const size_t old = buf->size();
            buf->resize(old + size_t(want));
            const zip_int64_t got = zip_fread(zf, buf->data() + old, want);
            if (got < 0) {
                std::string msg = std::string("cannot decompress member '") + name + "': " + zip_file_strerror(zf);
                zip_fclose(zf);
                return makeError("bad-zip", msg, path_);
            }
            buf->resize(old + size_t(got));
            if (got == 0 || buf->size() > st.size)
                break;
        }
        zip_fclose(zf);
        if (buf->size() != st.size)
            return makeError("bad-zip", "member '" + name + "' decompresses to " + std::to_string(buf->size()) +
                                 " bytes, not the " + std::to_string(st.size) + " it claims", path_);
        return MemberBytes{std::span<const std::byte>(buf->data(), buf->size()), buf, -1};
    }

private:
    // torch.save names members "<archive>/data.pkl", "<archive>/data/<key>"; the archive
    // name is the saved file's stem in torch 1.x ("mnist/"), "archive/" for buffers.
    Status findPrefix()
    {
        const zip_int64_t n = zip_get_num_entries(zip_, 0);
        std::vector<std::string> candidates;
        for (zip_int64_t i = 0; i < n; ++i) {
            const char* nm = zip_get_name(zip_, zip_uint64_t(i), 0);
            if (!nm)
                continue;
            const std::string s(nm);
            if (s == "data.pkl")
                candidates.emplace_back();
            else if (s.size() > 9 && s.compare(s.size() - 9, 9, "/data.pkl") == 0 && s.find('/') == s.size() - 9)
                candidates.push_back(s.substr(0, s.size() - 8));
        }
        if (candidates.empty())
            return makeError("bad-checkpoint", "archive has no <name>/data.pkl member: not a torch.save file", path_);
        if (candidates.size() > 1)
            return makeError("bad-checkpoint", "archive has " + std::to_string(candidates.size()) +
                                 " data.pkl members at its top level; which one torch would load is ambiguous", path_);
        prefix_ = candidates.front();
        return Ok{};
    }

    std::shared_ptr<const MappedFile> file_;
    std::string path_;
    std::unordered_map<std::string, CentralEntry> central_;
    zip_t* zip_ = nullptr;
    std::string prefix_;
};

// ---------------------------------------------------------------------------------------
// From the pickle graph to tensors and metadata.

struct StorageRef {
    DType dtype = DType::F32;
    std::string key;
    int64_t numel = 0;
    // Legacy storage views (pre-0.4 torch): (view key, element offset, element count).
    std::optional<std::pair<int64_t, int64_t>> view;
};

struct StorageData {
    std::span<const std::byte> bytes;
    std::shared_ptr<const void> keepAlive;
};

using StorageLookup = std::function<Result<StorageData>(const StorageRef&)>;

class Walker {
public:
    Walker(const pickle::Pickle& p, StorageLookup lookup, Model& m, std::string path)
        : p_(p), lookup_(std::move(lookup)), model_(m), path_(std::move(path)), state_(p.nodes.size(), 0)
    {
    }

    Status walk(NodeId id, const std::string& name, int depth, bool optimizer)
    {
        if (depth > kMaxNesting)
            return fail("checkpoint nests containers deeper than " + std::to_string(kMaxNesting) + " levels", name);
        if (name.size() > kMaxNameLength)
            return fail("key path is longer than " + std::to_string(kMaxNameLength) + " characters", name);
        const Node& n = p_.at(id);
        if (n.isScalar() || n.kind == Kind::Bytes) {
            addMetadata(name, shortText(n, kMaxMetadataText));
            return Ok{};
        }
        if (n.kind == Kind::Call)
            return walkCall(id, name, depth, optimizer);
        if (!n.isContainer())
            return Ok{};  // class references, bare storages: not tensors, not values
        // Shared references are walked once; a container inside itself is a cycle,
        // which no state_dict has, and walking it would never end.
        if (state_[id] == 1)
            return fail("the pickle's containers contain themselves (a cycle); not a state_dict", name);
        if (state_[id] == 2)
            return Ok{};
        state_[id] = 1;
        Status s = walkContainer(n, name, depth, optimizer);
        state_[id] = 2;
        return s;
    }

    Result<StorageRef> storageRef(NodeId pidNode, const std::string& name) const
    {
        const Node& pn = p_.at(pidNode);
        if (pn.kind != Kind::PersistentId)
            return fail("tensor storage is not a persistent id", name);
        const Node& t = p_.at(pn.args);
        if (t.kind != Kind::Tuple || t.items.size() < 5 || t.items.size() > 6 ||
            p_.at(t.items[0]).kind != Kind::String || p_.at(t.items[0]).text != "storage")
            return fail("persistent id is not ('storage', type, key, location, numel)", name);
        const Node& type = p_.at(t.items[1]);
        const Node& key = p_.at(t.items[2]);
        const Node& numel = p_.at(t.items[4]);
        if (type.kind != Kind::Global)
            return fail("storage type is not a class", name);
        auto dt = storageDType(type.text);
        if (!dt)
            return fail("storage type " + type.text + " is not supported (complex and quantized tensors are not decoded)", name);
        if (key.kind != Kind::String && key.kind != Kind::Int)
            return fail("storage key is neither a string nor an integer", name);
        if (numel.kind != Kind::Int || numel.integer < 0)
            return fail("storage element count is not a non-negative integer", name);
        StorageRef r;
        r.dtype = *dt;
        r.key = key.kind == Kind::String ? key.text : std::to_string(key.integer);
        r.numel = numel.integer;
        if (r.key.empty() || r.key.size() > 256 || r.key.find('/') != std::string::npos || r.key.find('\0') != std::string::npos)
            return fail("storage key is not a plain name", name);
        if (t.items.size() == 6 && p_.at(t.items[5]).kind != Kind::None) {
            const Node& v = p_.at(t.items[5]);
            if (v.kind != Kind::Tuple || v.items.size() != 3 || p_.at(v.items[0]).kind != Kind::String ||
                p_.at(v.items[1]).kind != Kind::Int || p_.at(v.items[2]).kind != Kind::Int)
                return fail("legacy storage view is not (key, offset, size)", name);
            // The file holds the root storage under `key`; the view is a slice of it.
            r.view = std::make_pair(p_.at(v.items[1]).integer, p_.at(v.items[2]).integer);
        }
        return r;
    }

private:
    const pickle::Pickle& p_;
    StorageLookup lookup_;
    Model& model_;
    std::string path_;
    std::vector<uint8_t> state_;  // per node: 0 unseen, 1 being walked, 2 done
    std::unordered_map<std::string, size_t> tensorIndex_, metaIndex_;
    size_t droppedMetadata_ = 0;

    Error fail(std::string msg, const std::string& tensor) const
    {
        return makeError("bad-checkpoint", std::move(msg), path_, -1, shortName(tensor));
    }

public:
    // Hostile nesting makes names of any length; the error line stays readable.
    static std::string shortName(const std::string& n)
    {
        return n.size() <= 120 ? n : n.substr(0, 60) + "..." + n.substr(n.size() - 40) + " (" + std::to_string(n.size()) + " characters)";
    }

private:

    static std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

    static bool isOptimizerKey(const std::string& k)
    {
        return k == "optimizer" || k == "optimizer_state_dict" || k == "optimizer_states" || k == "optim";
    }

    // Bounded rendering: a scalar's text is cut before it is copied around.
    // The texts here are built by appending, never as "literal" + std::string temporary: that
    // operator+ inserts at position 0, and GCC 12 at -O3 warns (-Wrestrict) about the memcpy
    // inside libstdc++'s insert (a known false positive: the offsets it reports cannot occur).
    static std::string shortText(const Node& n, size_t max)
    {
        if ((n.kind == Kind::String || n.kind == Kind::Bytes || n.kind == Kind::BigInt) && n.text.size() > max) {
            if (n.kind == Kind::String)
                return n.text.substr(0, max) + "...";
            std::string s = "<";
            s += std::to_string(n.text.size());
            s += n.kind == Kind::Bytes ? "-byte bytes>" : "-byte integer>";
            return s;
        }
        return pickle::scalarText(n);
    }

    std::string keyText(NodeId id) const
    {
        const Node& k = p_.at(id);
        if (k.isScalar())
            return shortText(k, kMaxKeyLength);
        if (k.kind == Kind::Tuple && k.items.size() <= 8) {
            std::string s = "(";
            for (size_t i = 0; i < k.items.size(); ++i) {
                const Node& e = p_.at(k.items[i]);
                s += i ? ", " : "";
                s += e.isScalar() ? shortText(e, 32) : std::string("?");
            }
            return s + ")";
        }
        return "?";
    }

    void addMetadata(const std::string& name, std::string value)
    {
        if (value.size() > kMaxMetadataText)
            value = value.substr(0, kMaxMetadataText) + "...";
        const std::string key = name.empty() ? std::string("value") : name;
        if (auto it = metaIndex_.find(key); it != metaIndex_.end()) {
            model_.metadata[it->second].second = std::move(value);  // a repeated dict key: the last wins, as in Python
            return;
        }
        if (model_.metadata.size() >= kMaxMetadata) {
            ++droppedMetadata_;
            return;
        }
        metaIndex_[key] = model_.metadata.size();
        model_.metadata.emplace_back(key, std::move(value));
    }

public:
    void finish()
    {
        if (droppedMetadata_)
            model_.metadata.emplace_back("(more)", std::to_string(droppedMetadata_) + " further values not shown");
    }

private:
    Status addTensor(Tensor t)
    {
        if (auto it = tensorIndex_.find(t.name); it != tensorIndex_.end()) {
            model_.tensors[it->second] = std::move(t);
            return Ok{};
        }
        if (model_.tensors.size() >= kMaxTensors)
            return fail("checkpoint holds more than " + std::to_string(kMaxTensors) + " tensors", t.name);
        tensorIndex_[t.name] = model_.tensors.size();
        model_.tensors.push_back(std::move(t));
        return Ok{};
    }

    Status walkContainer(const Node& n, const std::string& name, int depth, bool optimizer)
    {
        if (n.kind == Kind::Dict) {
            for (size_t i = 0; i + 1 < n.items.size(); i += 2) {
                const std::string k = keyText(n.items[i]);
                Status s = walk(n.items[i + 1], join(name, k), depth + 1, optimizer || isOptimizerKey(k));
                if (!s)
                    return s;
            }
            return Ok{};
        }
        // A list of plain values (betas, param ids, a vocabulary) is one metadata value.
        const bool allScalar = std::all_of(n.items.begin(), n.items.end(), [&](NodeId c) { return p_.at(c).isScalar(); });
        if (allScalar) {
            const char* open = n.kind == Kind::Tuple ? "(" : n.kind == Kind::Set ? "{" : "[";
            const char* close = n.kind == Kind::Tuple ? ")" : n.kind == Kind::Set ? "}" : "]";
            std::string s = open;
            for (size_t i = 0; i < n.items.size() && s.size() <= kMaxMetadataText; ++i) {
                const Node& e = p_.at(n.items[i]);
                s += (i ? ", " : "") + (e.kind == Kind::String ? "'" + shortText(e, kMaxMetadataText) + "'"
                                                               : shortText(e, kMaxMetadataText));
            }
            addMetadata(name, s + close);
            return Ok{};
        }
        for (size_t i = 0; i < n.items.size(); ++i) {
            Status s = walk(n.items[i], join(name, std::to_string(i)), depth + 1, optimizer);
            if (!s)
                return s;
        }
        return Ok{};
    }

    const std::string& calleeName(const Node& call) const { return p_.at(call.callee).text; }

    Status walkCall(NodeId id, const std::string& name, int depth, bool optimizer)
    {
        const Node& c = p_.at(id);
        const std::string& fn = calleeName(c);
        const Node& args = p_.at(c.args);
        if (fn == "torch._utils._rebuild_tensor_v2" || fn == "torch._utils._rebuild_parameter" ||
            fn == "torch._utils._rebuild_parameter_with_state" || fn == "torch._tensor._rebuild_from_type_v2") {
            auto t = tensorFrom(id, name, 0);
            if (!t)
                return t.error();
            t->group = optimizer ? "optimizer" : "";
            return addTensor(std::move(*t));
        }
        if (fn == "torch.device") {
            std::string s;
            for (NodeId a : args.items)
                s += (s.empty() ? "" : ":") + shortText(p_.at(a), 64);
            addMetadata(name, s);
            return Ok{};
        }
        if (fn == "numpy.core.multiarray.scalar") {
            addMetadata(name, numpyScalar(args));
            return Ok{};
        }
        (void)depth;
        return Ok{};  // other allowed calls carry no values we show
    }

    // numpy.core.multiarray.scalar(dtype('f8'), raw bytes): decoded for the common types.
    std::string numpyScalar(const Node& args) const
    {
        if (args.items.size() != 2)
            return "<numpy scalar>";
        const Node& dt = p_.at(args.items[0]);
        std::string code;
        if (dt.kind == Kind::Call && calleeName(dt) == "numpy.dtype") {
            const Node& da = p_.at(dt.args);
            if (!da.items.empty() && p_.at(da.items[0]).kind == Kind::String)
                code = p_.at(da.items[0]).text;
        }
        std::string raw;
        const Node& data = p_.at(args.items[1]);
        if (data.kind == Kind::Bytes) {
            raw = data.text;
        } else if (data.kind == Kind::Call && calleeName(data) == "_codecs.encode") {
            const Node& ea = p_.at(data.args);
            if (ea.items.size() == 2 && p_.at(ea.items[0]).kind == Kind::String) {
                // The str holds one code point per byte (latin1), stored as UTF-8.
                const std::string& u = p_.at(ea.items[0]).text;
                for (size_t i = 0; i < u.size(); ++i) {
                    const auto c = static_cast<uint8_t>(u[i]);
                    if (c < 0x80) {
                        raw += char(c);
                    } else if ((c & 0xe0) == 0xc0 && i + 1 < u.size()) {
                        raw += char(((c & 0x1f) << 6) | (static_cast<uint8_t>(u[i + 1]) & 0x3f));
                        ++i;
                    } else {
                        return "<numpy scalar>";
                    }
                }
            }
        }
        auto num = [&](auto v) -> std::string {
            if (raw.size() != sizeof v)
                return "<numpy scalar>";
            std::memcpy(&v, raw.data(), sizeof v);
            Node n;
            if constexpr (std::is_floating_point_v<decltype(v)>) {
                n.kind = Kind::Float;
                n.real = double(v);
            } else {
                n.kind = Kind::Int;
                n.integer = int64_t(v);
            }
            return pickle::scalarText(n);
        };
        if (code == "f8") return num(double{});
        if (code == "f4") return num(float{});
        if (code == "i8") return num(int64_t{});
        if (code == "i4") return num(int32_t{});
        if (code == "b1") return raw.size() == 1 ? (raw[0] ? "True" : "False") : "<numpy scalar>";
        std::string s = "<numpy scalar ";
        s += code.empty() ? std::string("?") : code;
        return s + ">";
    }

    Result<Tensor> tensorFrom(NodeId id, const std::string& name, int hops)
    {
        // _rebuild_parameter / _rebuild_from_type_v2 wrap the real rebuild; a chain of
        // them longer than a few links is not something torch writes.
        if (hops > 8)
            return fail("tensor rebuild calls nest too deeply", name);
        const Node& c = p_.at(id);
        if (c.kind != Kind::Call)
            return fail("parameter data is not a tensor", name);
        const std::string& fn = calleeName(c);
        const Node& args = p_.at(c.args);
        if (fn == "torch._utils._rebuild_parameter" || fn == "torch._utils._rebuild_parameter_with_state") {
            if (args.items.empty())
                return fail(fn + " has no arguments", name);
            return tensorFrom(args.items[0], name, hops + 1);
        }
        if (fn == "torch._tensor._rebuild_from_type_v2") {
            // (func, new_type, args, state): apply func to args ourselves.
            if (args.items.size() < 3 || p_.at(args.items[0]).kind != Kind::Global || p_.at(args.items[2]).kind != Kind::Tuple)
                return fail("_rebuild_from_type_v2 arguments are not (func, type, args, state)", name);
            const std::string& inner = p_.at(args.items[0]).text;
            if (inner != "torch._utils._rebuild_tensor_v2")
                return fail("_rebuild_from_type_v2 wraps " + inner + ", which is not a tensor rebuild", name);
            return rebuildTensorV2(p_.at(args.items[2]), name);
        }
        if (fn == "torch._utils._rebuild_tensor_v2")
            return rebuildTensorV2(args, name);
        return fail(fn + " does not produce a tensor", name);
    }

    static bool intTuple(const pickle::Pickle& p, const Node& n, std::vector<int64_t>& out)
    {
        if (n.kind != Kind::Tuple && n.kind != Kind::List)
            return false;
        out.clear();
        for (NodeId i : n.items) {
            if (p.at(i).kind != Kind::Int)
                return false;
            out.push_back(p.at(i).integer);
        }
        return true;
    }

    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    Result<Tensor> rebuildTensorV2(const Node& args, const std::string& name)
    {
        if (args.items.size() < 4)
            return fail("_rebuild_tensor_v2 has fewer than 4 arguments", name);
        auto ref = storageRef(args.items[0], name);
        if (!ref)
            return ref.error();
        const Node& off = p_.at(args.items[1]);
        if (off.kind != Kind::Int || off.integer < 0)
            return fail("storage offset is not a non-negative integer", name);
        Tensor t;
        t.name = name.empty() ? std::string("tensor") : name;
        t.dtype = ref->dtype;
        std::vector<int64_t> stride;
        if (!intTuple(p_, p_.at(args.items[2]), t.shape) || !intTuple(p_, p_.at(args.items[3]), stride))
            return fail("size or stride is not a tuple of integers", name);
        if (t.shape.size() != stride.size())
            return fail("size " + shapeString(t.shape) + " and stride " + shapeString(stride) + " differ in rank", name);
        if (t.shape.size() > 64)
            return fail("tensor has more than 64 dimensions", name);
        auto numel = checkedNumel(t.shape.data(), t.shape.size());
        if (!numel)
            return fail("shape " + shapeString(t.shape) + " is negative or overflows", name);
        for (int64_t s : stride)
            if (s < 0)
                return fail("stride " + shapeString(stride) + " is negative", name);

        auto data = lookup_(*ref);
        if (!data)
            return Error{data.error().code, data.error().message, data.error().path, data.error().offset, shortName(t.name)};
        const int64_t es = dtypeInfo(ref->dtype).blockBytes;
        auto storageBytes = byteSizeFor(ref->dtype, ref->numel);
        if (!storageBytes || *storageBytes > static_cast<int64_t>(data->bytes.size()))
            return fail("storage '" + ref->key + "' holds " + std::to_string(data->bytes.size()) + " bytes, too few for " +
                            std::to_string(ref->numel) + " elements of " + std::string(dtypeName(ref->dtype)), name);
        int64_t storageNumel = ref->numel;
        std::span<const std::byte> storage = data->bytes.first(size_t(*storageBytes));
        if (ref->view) {
            const auto [vOff, vLen] = *ref->view;
            if (vOff < 0 || vLen < 0 || vOff > storageNumel || vLen > storageNumel - vOff)
                return fail("legacy storage view of '" + ref->key + "' is out of range", name);
            storage = storage.subspan(size_t(vOff * es), size_t(vLen * es));
            storageNumel = vLen;
        }
        const int64_t offset = off.integer;

        // Furthest element the view reaches, relative to its first element.
        int64_t reach = 0;
        bool contiguous = true;
        int64_t expect = 1;
        for (size_t d = t.shape.size(); d-- > 0;) {
            if (t.shape[d] == 0) {
                reach = -1;
                break;
            }
            if (t.shape[d] != 1 && stride[d] != expect)
                contiguous = false;
            if (t.shape[d] > 1) {
                if (stride[d] > (INT64_MAX - reach) / (t.shape[d] - 1))
                    return fail("strides " + shapeString(stride) + " overflow", name);
                reach += stride[d] * (t.shape[d] - 1);
            }
            expect *= t.shape[d];  // cannot overflow: numel was checked
        }
        if (*numel == 0) {
            if (offset > storageNumel)
                return fail("storage offset " + std::to_string(offset) + " is past the storage's " +
                                std::to_string(storageNumel) + " elements", name);
            t.data = storage.subspan(size_t(offset * es), 0);
            t.keepAlive = data->keepAlive;
            return t;
        }
        const int64_t span = contiguous ? *numel : reach + 1;
        if (offset > storageNumel || span > storageNumel - offset)
            return fail("view at offset " + std::to_string(offset) + " spanning " + std::to_string(span) +
                            " elements overruns its storage of " + std::to_string(storageNumel) + " elements", name);
        if (!contiguous)
            t.strides = std::move(stride);
        t.data = storage.subspan(size_t(offset * es), size_t(span * es));
        t.keepAlive = data->keepAlive;
        return t;
    }
};

pickle::Options torchOptions()
{
    pickle::Options o;
    o.allowed = kAllowed;
    return o;
}

Error withFileContext(Error e, const std::string& path, int64_t base, const std::string& what)
{
    e.path = path;
    if (e.offset >= 0 && base >= 0)
        e.offset += base;
    else if (base < 0)
        e.offset = -1;
    e.message = what + ": " + e.message;
    return e;
}

Status finishModel(Model& m, const std::string& path)
{
    if (m.tensors.empty())
        return makeError("no-tensors", "checkpoint holds no tensors", path);
    m.format = "pytorch";
    m.files = {path};
    markConv1DLayouts(m);
    return Ok{};
}

Result<Model> readZip(std::shared_ptr<const MappedFile> file)
{
    const std::string& path = file->path();
    TorchZip zip;
    if (Status s = zip.open(file); !s)
        return s.error();

    bool bigEndian = false;
    if (zip.has("byteorder")) {
        auto bo = zip.read("byteorder", 16);
        if (!bo)
            return bo.error();
        const std::string v(reinterpret_cast<const char*>(bo->bytes.data()), bo->bytes.size());
        if (v == "big")
            bigEndian = true;
        else if (v != "little")
            return makeError("bad-checkpoint", "byteorder member says '" + v.substr(0, 16) + "', not little or big", path);
    }
    auto pkl = zip.read("data.pkl", kMaxPickleBytes);
    if (!pkl)
        return pkl.error();
    auto parsed = pickle::unpickle(pkl->bytes, torchOptions());
    if (!parsed)
        return withFileContext(parsed.error(), path, pkl->fileOffset, zip.prefix() + "data.pkl");

    Model m;
    if (zip.has("version")) {
        if (auto v = zip.read("version", 64)) {
            std::string s(reinterpret_cast<const char*>(v->bytes.data()), v->bytes.size());
            while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
                s.pop_back();
            m.metadata.emplace_back("torch.archive_version", s);
        }
    }
    m.metadata.emplace_back("torch.archive_prefix", zip.prefix());

    std::unordered_map<std::string, MemberBytes> cache;
    auto lookup = [&](const StorageRef& r) -> Result<StorageData> {
        auto it = cache.find(r.key);
        if (it == cache.end()) {
            auto b = zip.read("data/" + r.key);
            if (!b && b.error().code == "missing-member")
                return Error{"missing-storage", "storage '" + r.key + "' is missing: " + b.error().message, path};
            if (!b)
                return b.error();
            it = cache.emplace(r.key, std::move(*b)).first;
        }
        return StorageData{it->second.bytes, it->second.keepAlive};
    };
    Walker w(*parsed, lookup, m, path);
    if (Status s = w.walk(parsed->root, "", 0, false); !s)
        return s.error();
    w.finish();
    for (Tensor& t : m.tensors)
        t.bigEndian = bigEndian;
    if (Status s = finishModel(m, path); !s)
        return s.error();
    return m;
}

// Legacy torch.save (before 1.6): pickles of the magic number, the protocol version and
// sys_info, then the object with storages as persistent ids, then the list of storage
// keys, then each storage as an int64 element count and its raw little-endian bytes.
Result<Model> readLegacy(std::shared_ptr<const MappedFile> file)
{
    const std::string& path = file->path();
    const auto f = file->bytes();
    const std::string resave =
        "; load it with torch and re-save it with torch.save(obj, path, _use_new_zipfile_serialization=True)";
    size_t pos = 0;
    auto next = [&](const char* what) -> Result<pickle::Pickle> {
        auto p = pickle::unpickle(f.subspan(pos), torchOptions());
        if (!p)
            return withFileContext(p.error(), path, int64_t(pos), std::string("legacy checkpoint, ") + what);
        pos += p->end;
        return p;
    };
    auto magic = next("magic number");
    if (!magic)
        return magic.error();
    static const unsigned char kMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    const Node& mg = magic->at(magic->root);
    if (mg.kind != Kind::BigInt || mg.text != std::string(reinterpret_cast<const char*>(kMagic), sizeof kMagic))
        return makeError("bad-checkpoint", "pickle file does not start with torch.save's magic number: not a PyTorch checkpoint", path, 0);
    auto proto = next("protocol version");
    if (!proto)
        return proto.error();
    if (proto->at(proto->root).kind != Kind::Int || proto->at(proto->root).integer != 1001)
        return makeError("unsupported", "legacy checkpoint protocol " +
                                 (proto->at(proto->root).kind == Kind::Int ? std::to_string(proto->at(proto->root).integer)
                                                                           : std::string("(not an integer)")) +
                                 " is not 1001" + resave, path);
    auto sys = next("sys_info");
    if (!sys)
        return sys.error();
    const Node& si = sys->at(sys->root);
    if (si.kind == Kind::Dict) {
        for (size_t i = 0; i + 1 < si.items.size(); i += 2)
            if (sys->at(si.items[i]).text == "little_endian" && sys->at(si.items[i + 1]).kind == Kind::Bool &&
                !sys->at(si.items[i + 1]).boolean)
                return makeError("unsupported", "legacy checkpoint was written on a big-endian machine" + resave, path);
    }
    const size_t mainStart = pos;
    auto main = next("object");
    if (!main)
        return main.error();
    auto keys = next("storage keys");
    if (!keys)
        return keys.error();
    const Node& kl = keys->at(keys->root);
    if (kl.kind != Kind::List)
        return makeError("bad-checkpoint", "legacy checkpoint's storage key list is not a list" + resave, path, int64_t(mainStart));

    // Element sizes come from the storage types the object refers to.
    Model m;
    std::unordered_map<std::string, DType> types;
    {
        Walker probe(*main, nullptr, m, path);
        for (const Node& n : main->nodes) {
            if (n.kind != Kind::PersistentId)
                continue;
            // Index of n in the arena: nodes are contiguous.
            const auto id = static_cast<NodeId>(&n - main->nodes.data());
            auto r = probe.storageRef(id, "");
            if (!r)
                return r.error();
            types[r->key] = r->dtype;
        }
    }
    std::unordered_map<std::string, StorageData> storages;
    for (NodeId kid : kl.items) {
        const Node& k = keys->at(kid);
        if (k.kind != Kind::String)
            return makeError("bad-checkpoint", "legacy storage key is not a string", path, int64_t(pos));
        auto t = types.find(k.text);
        if (t == types.end())
            return makeError("bad-checkpoint", "legacy storage '" + k.text + "' is never used, so its element size is unknown" + resave, path, int64_t(pos));
        if (f.size() - pos < 8)
            return makeError("truncated", "legacy storage '" + k.text + "' has no element count", path, int64_t(pos));
        const uint64_t count = le(f, pos, 8);
        const uint64_t es = uint64_t(dtypeInfo(t->second).blockBytes);
        if (count > (f.size() - pos - 8) / es)
            return makeError("truncated", "legacy storage '" + k.text + "' claims " + std::to_string(count) +
                                 " elements, more than the file holds", path, int64_t(pos));
        storages[k.text] = StorageData{f.subspan(pos + 8, size_t(count * es)), file};
        pos += 8 + size_t(count * es);
    }
    auto lookup = [&](const StorageRef& r) -> Result<StorageData> {
        auto it = storages.find(r.key);
        if (it == storages.end())
            return makeError("missing-storage", "storage '" + r.key + "' is not in the file", path);
        return it->second;
    };
    m.metadata.emplace_back("torch.archive_version", "legacy (protocol 1001)");
    Walker w(*main, lookup, m, path);
    if (Status s = w.walk(main->root, "", 0, false); !s)
        return s.error();
    w.finish();
    if (Status s = finishModel(m, path); !s)
        return s.error();
    return m;
}

}  // namespace

Result<Model> readPytorch(const std::string& path)
{
    auto file = MappedFile::open(path);
    if (!file)
        return file.error();
    const auto b = (*file)->bytes();
    if (b.size() >= 4 && std::to_integer<char>(b[0]) == 'P' && std::to_integer<char>(b[1]) == 'K')
        return readZip(*file);
    if (b.size() >= 2 && std::to_integer<uint8_t>(b[0]) == 0x80)
        return readLegacy(*file);
    return makeError("unknown-format", "neither a torch.save zip archive nor a legacy torch.save pickle", path, 0);
}

}  // namespace quantlens
