#include "io/gguf.h"

#include <array>
#include <bit>
#include <cstdio>
#include <cstring>
#include <utility>
#include <limits>
#include <optional>
#include <unordered_set>

#include "io/mappedfile.h"

namespace quantlens {

namespace {

// GGUF value types (ggml docs/gguf.md, gguf_metadata_value_type).
enum ValueType : uint32_t {
    kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6,
    kBool = 7, kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// Nested arrays are legal but nothing real nests deeply; the bound keeps recursion finite.
constexpr int kMaxArrayDepth = 4;
constexpr size_t kMaxDims = 8;
// Each KV needs at least a key length (8), a type (4) and a one-byte value; each tensor
// info a name length (8), n_dims (4), a type (4) and an offset (8). Counts above
// remaining/minimum cannot be honest, so they are refused before anything is reserved.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;
constexpr size_t kShownStringChars = 200;
constexpr size_t kShownArrayItems = 3;

struct GgmlType {
    uint32_t id;
    const char* name;
    int64_t blockElems;
    int64_t blockBytes;
    std::optional<DType> dtype;  // nullopt: listed as Opaque, not decoded
};

// Sizes from gguf-py's GGML_QUANT_SIZES (QK_K = 256). Ids 4, 5 (Q4_2, Q4_3) and
// 31..33, 36..38 (repacked layouts) were removed from ggml and are refused as unknown.
constexpr std::array<GgmlType, 32> kTypes{{
    {0, "F32", 1, 4, DType::F32},
    {1, "F16", 1, 2, DType::F16},
    {2, "Q4_0", 32, 18, DType::Q4_0},
    {3, "Q4_1", 32, 20, DType::Q4_1},
    {6, "Q5_0", 32, 22, DType::Q5_0},
    {7, "Q5_1", 32, 24, DType::Q5_1},
    {8, "Q8_0", 32, 34, DType::Q8_0},
    {9, "Q8_1", 32, 36, std::nullopt},
    {10, "Q2_K", 256, 84, DType::Q2_K},
    {11, "Q3_K", 256, 110, DType::Q3_K},
    {12, "Q4_K", 256, 144, DType::Q4_K},
    {13, "Q5_K", 256, 176, DType::Q5_K},
    {14, "Q6_K", 256, 210, DType::Q6_K},
    {15, "Q8_K", 256, 292, std::nullopt},
    {16, "IQ2_XXS", 256, 66, std::nullopt},
    {17, "IQ2_XS", 256, 74, std::nullopt},
    {18, "IQ3_XXS", 256, 98, std::nullopt},
    {19, "IQ1_S", 256, 50, std::nullopt},
    {20, "IQ4_NL", 32, 18, std::nullopt},
    {21, "IQ3_S", 256, 110, std::nullopt},
    {22, "IQ2_S", 256, 82, std::nullopt},
    {23, "IQ4_XS", 256, 136, std::nullopt},
    {24, "I8", 1, 1, DType::I8},
    {25, "I16", 1, 2, DType::I16},
    {26, "I32", 1, 4, DType::I32},
    {27, "I64", 1, 8, DType::I64},
    {28, "F64", 1, 8, DType::F64},
    {29, "IQ1_M", 256, 56, std::nullopt},
    {30, "BF16", 1, 2, DType::BF16},
    {34, "TQ1_0", 256, 54, std::nullopt},
    {35, "TQ2_0", 256, 66, std::nullopt},
    {39, "MXFP4", 32, 17, std::nullopt},
}};

const GgmlType* findType(uint32_t id)
{
    for (const GgmlType& t : kTypes)
        if (t.id == id)
            return &t;
    return nullptr;
}

// Bounds-checked little-endian cursor over the mapping. Every read checks the
// remaining bytes first; failures carry the offset where the read started.
class Cursor {
public:
    Cursor(std::span<const std::byte> b, std::string path) : b_(b), path_(std::move(path)) {}

    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return b_.size() - pos_; }

    template <class T>
    Result<T> read(const char* what)
    {
        if (remaining() < sizeof(T))
            return truncated(what);
        T v;
        std::memcpy(&v, b_.data() + pos_, sizeof(T));
        if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
            std::byte tmp[sizeof(T)];
            std::memcpy(tmp, &v, sizeof(T));
            for (size_t i = 0; i < sizeof(T) / 2; ++i)
                std::swap(tmp[i], tmp[sizeof(T) - 1 - i]);
            std::memcpy(&v, tmp, sizeof(T));
        }
        pos_ += sizeof(T);
        return v;
    }

    // Returns a view of the string bytes; callers copy only what they keep.
    Result<std::string_view> readString(const char* what)
    {
        const uint64_t at = pos_;
        auto len = read<uint64_t>(what);
        if (!len)
            return len.error();
        if (*len > remaining()) {
            pos_ = at;
            return makeError("truncated",
                             std::string(what) + " claims " + std::to_string(*len) + " bytes but only " +
                                 std::to_string(remaining() - 8) + " remain",
                             path_, int64_t(at));
        }
        std::string_view s(reinterpret_cast<const char*>(b_.data() + pos_), size_t(*len));
        pos_ += *len;
        return s;
    }

    Status skip(uint64_t n, const char* what)
    {
        if (n > remaining())
            return truncated(what);
        pos_ += n;
        return Ok{};
    }

    Error truncated(const char* what) const
    {
        return makeError("truncated", std::string("file ends inside ") + what, path_, int64_t(pos_));
    }
    Error error(std::string code, std::string msg, uint64_t at, std::string tensor = {}) const
    {
        return makeError(std::move(code), std::move(msg), path_, int64_t(at), std::move(tensor));
    }

private:
    std::span<const std::byte> b_;
    std::string path_;
    uint64_t pos_ = 0;
};

int64_t scalarSize(uint32_t type)
{
    switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
    }
}

const char* typeName(uint32_t type)
{
    switch (type) {
    case kU8: return "uint8";
    case kI8: return "int8";
    case kU16: return "uint16";
    case kI16: return "int16";
    case kU32: return "uint32";
    case kI32: return "int32";
    case kF32: return "float32";
    case kBool: return "bool";
    case kString: return "string";
    case kArray: return "array";
    case kU64: return "uint64";
    case kI64: return "int64";
    case kF64: return "float64";
    default: return "?";
    }
}

std::string shortString(std::string_view s)
{
    // Cut on a UTF-8 boundary so the UI never shows half a character.
    if (s.size() <= kShownStringChars)
        return std::string(s);
    size_t cut = kShownStringChars;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
        --cut;
    return std::string(s.substr(0, cut)) + "\xE2\x80\xA6";
}

std::string formatDouble(double v)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

struct Value {
    std::string text;
    std::optional<uint64_t> asUInt;  // integer scalars, for general.alignment
};

Result<Value> readValue(Cursor& c, uint32_t type, int depth, bool show);

Result<Value> readScalar(Cursor& c, uint32_t type)
{
    Value v;
    auto fail = [](const Error& e) { return Result<Value>(e); };
    switch (type) {
    case kU8: { auto x = c.read<uint8_t>("a uint8 value"); if (!x) return fail(x.error()); v.text = std::to_string(*x); v.asUInt = *x; break; }
    case kI8: { auto x = c.read<int8_t>("an int8 value"); if (!x) return fail(x.error()); v.text = std::to_string(*x); break; }
    case kU16: { auto x = c.read<uint16_t>("a uint16 value"); if (!x) return fail(x.error()); v.text = std::to_string(*x); v.asUInt = *x; break; }
    case kI16: { auto x = c.read<int16_t>("an int16 value"); if (!x) return fail(x.error()); v.text = std::to_string(*x); break; }
    case kU32: { auto x = c.read<uint32_t>("a uint32 value"); if (!x) return fail(x.error()); v.text = std::to_string(*x); v.asUInt = *x; break; }
    case kI32: { auto x = c.read<int32_t>("an int32 value"); if (!x) return fail(x.error()); v.text = std::to_string(*x); break; }
    case kU64: { auto x = c.read<uint64_t>("a uint64 value"); if (!x) return fail(x.error()); v.text = std::to_string(*x); v.asUInt = *x; break; }
    case kI64: { auto x = c.read<int64_t>("an int64 value"); if (!x) return fail(x.error()); v.text = std::to_string(*x); break; }
    case kF32: {
        auto x = c.read<uint32_t>("a float32 value");
        if (!x) return fail(x.error());
        v.text = formatDouble(std::bit_cast<float>(*x));
        break;
    }
    case kF64: {
        auto x = c.read<uint64_t>("a float64 value");
        if (!x) return fail(x.error());
        v.text = formatDouble(std::bit_cast<double>(*x));
        break;
    }
    case kBool: {
        const uint64_t at = c.pos();
        auto x = c.read<uint8_t>("a bool value");
        if (!x) return fail(x.error());
        if (*x > 1)
            return c.error("bad-value", "bool value " + std::to_string(*x) + " is neither 0 nor 1", at);
        v.text = *x ? "true" : "false";
        break;
    }
    default: break;
    }
    return v;
}

Result<Value> readArray(Cursor& c, int depth, bool show)
{
    const uint64_t at = c.pos();
    if (depth >= kMaxArrayDepth)
        return c.error("too-deep", "arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " levels", at);
    auto et = c.read<uint32_t>("an array element type");
    if (!et)
        return et.error();
    auto n = c.read<uint64_t>("an array length");
    if (!n)
        return n.error();
    // The smallest encoding of one element bounds how many can be there at all.
    int64_t minElem = scalarSize(*et);
    if (*et == kString)
        minElem = 8;
    else if (*et == kArray)
        minElem = 12;
    else if (minElem == 0)
        return c.error("bad-type", "unknown array element type " + std::to_string(*et), at);
    if (*n > c.remaining() / uint64_t(minElem))
        return c.error("truncated",
                       "array of " + std::to_string(*n) + " " + typeName(*et) + " values does not fit in the " +
                           std::to_string(c.remaining()) + " bytes left",
                       at);
    Value v;
    std::string items;
    if (*et != kString && *et != kArray) {
        // Fixed-size elements: decode only the shown ones, skip the rest in one step.
        const uint64_t shown = std::min<uint64_t>(*n, show ? kShownArrayItems : 0);
        for (uint64_t i = 0; i < shown; ++i) {
            auto x = readScalar(c, *et);
            if (!x)
                return x.error();
            items += (i ? ", " : "") + x->text;
        }
        if (auto s = c.skip((*n - shown) * uint64_t(minElem), "an array"); !s)
            return s.error();
    } else {
        for (uint64_t i = 0; i < *n; ++i) {
            const bool showThis = show && i < kShownArrayItems;
            auto x = (*et == kString) ? [&]() -> Result<Value> {
                auto s = c.readString("an array string");
                if (!s)
                    return s.error();
                return Value{showThis ? "'" + shortString(*s) + "'" : std::string(), std::nullopt};
            }()
                                      : readArray(c, depth + 1, showThis);
            if (!x)
                return x.error();
            if (showThis)
                items += (i ? ", " : "") + x->text;
        }
    }
    if (show) {
        v.text = "[" + std::to_string(*n) + " " + typeName(*et) + (*n == 1 ? "" : "s");
        if (*n > 0)
            v.text += ": " + items + (*n > kShownArrayItems ? ", ...]" : "]");
        else
            v.text += "]";
    }
    return v;
}

Result<Value> readValue(Cursor& c, uint32_t type, int depth, bool show)
{
    if (type == kString) {
        auto s = c.readString("a string value");
        if (!s)
            return s.error();
        return Value{shortString(*s), std::nullopt};
    }
    if (type == kArray)
        return readArray(c, depth, show);
    if (scalarSize(type) == 0)
        return c.error("bad-type", "unknown value type " + std::to_string(type), c.pos() - 4);
    return readScalar(c, type);
}

bool validUtf8Name(std::string_view s)
{
    for (char ch : s)
        if (ch == '\0')
            return false;
    return true;
}

}  // namespace

Result<Model> readGguf(const std::string& path)
{
    auto mf = MappedFile::open(path);
    if (!mf)
        return mf.error();
    std::shared_ptr<const MappedFile> map = *mf;
    const std::span<const std::byte> bytes = map->bytes();
    Cursor c(bytes, path);

    auto magic = c.read<uint32_t>("the header");
    if (!magic)
        return magic.error();
    if (std::memcmp(bytes.data(), "GGUF", 4) != 0)
        return c.error("bad-magic", "not a GGUF file (magic is not 'GGUF')", 0);
    auto version = c.read<uint32_t>("the header");
    if (!version)
        return version.error();
    if (*version == 1)
        return c.error("unsupported", "GGUF version 1 (32-bit counts) is not supported", 4);
    if (*version != 2 && *version != 3) {
        if (__builtin_bswap32(*version) == 2 || __builtin_bswap32(*version) == 3)
            return c.error("unsupported", "big-endian GGUF is not supported", 4);
        return c.error("unsupported", "unknown GGUF version " + std::to_string(*version), 4);
    }
    auto tensorCount = c.read<uint64_t>("the header");
    if (!tensorCount)
        return tensorCount.error();
    auto kvCount = c.read<uint64_t>("the header");
    if (!kvCount)
        return kvCount.error();
    if (*kvCount > c.remaining() / kMinKvBytes)
        return c.error("bad-count", "KV count " + std::to_string(*kvCount) + " is impossible for " +
                                        std::to_string(c.remaining()) + " remaining bytes", 16);
    if (*tensorCount > c.remaining() / kMinTensorInfoBytes ||
        *kvCount * kMinKvBytes > c.remaining() - *tensorCount * kMinTensorInfoBytes)
        return c.error("bad-count", "tensor count " + std::to_string(*tensorCount) + " is impossible for " +
                                        std::to_string(c.remaining()) + " remaining bytes", 8);

    Model model;
    model.format = "gguf";
    model.files.push_back(path);
    model.metadata.emplace_back("gguf.version", std::to_string(*version));
    uint64_t alignment = 32;
    std::unordered_set<std::string> keys;
    for (uint64_t i = 0; i < *kvCount; ++i) {
        const uint64_t at = c.pos();
        auto key = c.readString("a KV key");
        if (!key)
            return key.error();
        if (!keys.insert(std::string(*key)).second)
            return c.error("duplicate", "duplicate KV key '" + shortString(*key) + "'", at);
        auto type = c.read<uint32_t>("a KV type");
        if (!type)
            return type.error();
        auto v = readValue(c, *type, 0, true);
        if (!v)
            return v.error();
        if (*key == "general.alignment") {
            // The spec says uint32; a different integer type is tolerated, a non-power of two is not.
            if (!v->asUInt || *v->asUInt == 0 || !std::has_single_bit(*v->asUInt) || *v->asUInt > (1u << 30))
                return c.error("bad-alignment", "general.alignment " + v->text + " is not a power of two", at);
            alignment = *v->asUInt;
        }
        model.metadata.emplace_back(std::string(*key), std::move(v->text));
    }

    struct Info {
        std::string name;
        std::vector<int64_t> shape;
        const GgmlType* type;
        uint64_t offset;
        uint64_t bytes;
        uint64_t at;
    };
    std::vector<Info> infos;
    infos.reserve(size_t(*tensorCount));
    std::unordered_set<std::string> names;
    for (uint64_t i = 0; i < *tensorCount; ++i) {
        Info info;
        info.at = c.pos();
        auto name = c.readString("a tensor name");
        if (!name)
            return name.error();
        info.name = std::string(*name);
        if (info.name.empty() || !validUtf8Name(info.name))
            return c.error("bad-name", "tensor " + std::to_string(i) + " has an empty or NUL-containing name", info.at);
        if (!names.insert(info.name).second)
            return c.error("duplicate", "duplicate tensor name", info.at, info.name);
        auto nDims = c.read<uint32_t>("a tensor's n_dims");
        if (!nDims)
            return nDims.error();
        if (*nDims > kMaxDims)
            return c.error("bad-shape", "n_dims " + std::to_string(*nDims) + " exceeds " + std::to_string(kMaxDims),
                           c.pos() - 4, info.name);
        std::vector<int64_t> ne(*nDims);
        for (uint32_t d = 0; d < *nDims; ++d) {
            auto x = c.read<uint64_t>("a tensor dimension");
            if (!x)
                return x.error();
            if (*x > uint64_t(std::numeric_limits<int64_t>::max()))
                return c.error("bad-shape", "dimension " + std::to_string(*x) + " is too large", c.pos() - 8, info.name);
            ne[d] = int64_t(*x);
        }
        // ggml lists dims innermost first; numpy/PyTorch order is the reverse.
        info.shape.assign(ne.rbegin(), ne.rend());
        auto numel = checkedNumel(info.shape.data(), info.shape.size());
        if (!numel)
            return c.error("bad-shape", "shape " + shapeString(info.shape) + " overflows", info.at, info.name);
        auto typeId = c.read<uint32_t>("a tensor type");
        if (!typeId)
            return typeId.error();
        info.type = findType(*typeId);
        if (!info.type)
            return c.error("bad-dtype", "unknown ggml type " + std::to_string(*typeId), c.pos() - 4, info.name);
        if (info.type->blockElems > 1) {
            // Blocks never span rows: ggml requires ne[0] to be a multiple of the block size.
            const int64_t row = ne.empty() ? 1 : ne[0];
            if (row % info.type->blockElems != 0)
                return c.error("bad-shape",
                               std::string(info.type->name) + " row length " + std::to_string(row) +
                                   " is not a multiple of its block size " + std::to_string(info.type->blockElems),
                               info.at, info.name);
        }
        const int64_t blocks = *numel / info.type->blockElems;
        if (blocks > std::numeric_limits<int64_t>::max() / info.type->blockBytes)
            return c.error("bad-shape", "byte size of shape " + shapeString(info.shape) + " overflows", info.at, info.name);
        info.bytes = uint64_t(blocks * info.type->blockBytes);
        auto off = c.read<uint64_t>("a tensor offset");
        if (!off)
            return off.error();
        info.offset = *off;
        infos.push_back(std::move(info));
    }

    // The data section starts at the next multiple of the alignment after the tensor infos.
    const uint64_t headerEnd = c.pos();
    const uint64_t dataStart = (headerEnd + alignment - 1) / alignment * alignment;
    const uint64_t fileSize = bytes.size();
    if (!infos.empty() && dataStart > fileSize)
        return c.error("truncated", "file ends before the tensor data section", int64_t(headerEnd));

    model.metadata.emplace_back("gguf.alignment", std::to_string(alignment));
    model.tensors.reserve(infos.size());
    for (Info& info : infos) {
        if (info.offset % alignment != 0)
            return c.error("misaligned", "data offset " + std::to_string(info.offset) + " is not a multiple of the alignment " +
                                             std::to_string(alignment), info.at, info.name);
        const uint64_t avail = fileSize - dataStart;
        if (info.offset > avail || info.bytes > avail - info.offset)
            return c.error("out-of-bounds",
                           "data [" + std::to_string(info.offset) + ", +" + std::to_string(info.bytes) +
                               ") runs past the end of the file (" + std::to_string(avail) + " data bytes)",
                           info.at, info.name);
        Tensor t;
        t.name = std::move(info.name);
        t.shape = std::move(info.shape);
        t.data = bytes.subspan(size_t(dataStart + info.offset), size_t(info.bytes));
        t.keepAlive = map;
        if (info.type->dtype) {
            t.dtype = *info.type->dtype;
            if (dtypeInfo(t.dtype).isBlock)
                t.note = std::string("already quantized (") + info.type->name + ")";
        } else {
            t.dtype = DType::Opaque;
            t.opaqueType = info.type->name;
            t.note = "not decoded";
        }
        model.tensors.push_back(std::move(t));
    }
    return model;
}

}  // namespace quantlens
