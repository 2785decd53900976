#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "io/mappedfile.h"
#include "layers.h"

namespace quantlens {

namespace {

using Json = nlohmann::ordered_json;  // ordered: ties between empty tensors keep header order

// The Rust reference implementation caps the header at 100 MB (MAX_HEADER_SIZE);
// a larger claim is an attack or a corrupt length, never a real model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// No valid header nests deeper than tensor -> field -> shape array; refusing deep
// nesting before parsing keeps a hostile header from building a pathological DOM.
constexpr int kMaxJsonDepth = 16;

// Element width in bits for every dtype the safetensors spec names. The ones we do
// not decode (float8/6/4, complex) are still listed so the model opens and shows them.
struct StDType {
    std::string_view name;
    int bits;
    std::optional<DType> decoded;  // nullopt: listed as DType::Opaque
};
constexpr StDType kStDTypes[] = {
    {"F64", 64, DType::F64},   {"F32", 32, DType::F32},   {"F16", 16, DType::F16},
    {"BF16", 16, DType::BF16}, {"I64", 64, DType::I64},   {"I32", 32, DType::I32},
    {"I16", 16, DType::I16},   {"I8", 8, DType::I8},      {"U64", 64, DType::U64},
    {"U32", 32, DType::U32},   {"U16", 16, DType::U16},   {"U8", 8, DType::U8},
    {"BOOL", 8, DType::BOOL},  {"F8_E4M3", 8, {}},        {"F8_E5M2", 8, {}},
    {"F8_E8M0", 8, {}},        {"F6_E2M3", 6, {}},        {"F6_E3M2", 6, {}},
    {"F4", 4, {}},             {"C64", 64, {}},
};

const StDType* findStDType(std::string_view name)
{
    for (const StDType& d : kStDTypes)
        if (d.name == name)
            return &d;
    return nullptr;
}

// Bytes for numel elements of `bits` each; nullopt on overflow or a partial byte.
std::optional<int64_t> bytesFor(int64_t numel, int bits)
{
    if (numel > std::numeric_limits<int64_t>::max() / bits)
        return std::nullopt;
    const int64_t totalBits = numel * bits;
    if (totalBits % 8 != 0)
        return std::nullopt;
    return totalBits / 8;
}

std::string jsonExcerpt(const Json& j)
{
    std::string s = j.dump();
    if (s.size() > 60)
        s = s.substr(0, 57) + "...";
    return s;
}

// Cheap pre-scan of bracket depth outside strings.
bool depthWithin(std::string_view text, int limit)
{
    int depth = 0;
    bool inString = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (inString) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                inString = false;
        } else if (c == '"') {
            inString = true;
        } else if (c == '{' || c == '[') {
            if (++depth > limit)
                return false;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return true;
}

struct Entry {
    Tensor tensor;
    uint64_t begin = 0;
    uint64_t end = 0;
    size_t headerIndex = 0;
};

Result<uint64_t> offsetValue(const Json& v, const std::string& path, const std::string& name)
{
    if (!v.is_number_unsigned())
        return makeError("bad-header", "data_offsets entry " + jsonExcerpt(v) + " is not a non-negative integer",
                         path, -1, name);
    return v.get<uint64_t>();
}

Result<Entry> parseEntry(const std::string& name, const Json& info, size_t index, const std::string& path)
{
    if (!info.is_object())
        return makeError("bad-header", "entry is " + jsonExcerpt(info) + ", not an object with dtype, shape and data_offsets",
                         path, -1, name);
    const auto dt = info.find("dtype");
    const auto sh = info.find("shape");
    const auto off = info.find("data_offsets");
    if (dt == info.end() || sh == info.end() || off == info.end())
        return makeError("bad-header", "entry lacks dtype, shape or data_offsets", path, -1, name);
    if (!dt->is_string())
        return makeError("bad-dtype", "dtype " + jsonExcerpt(*dt) + " is not a string", path, -1, name);
    const std::string dtName = dt->get<std::string>();
    const StDType* st = findStDType(dtName);
    if (!st)
        return makeError("bad-dtype", "unknown dtype '" + dtName + "'", path, -1, name);

    if (!sh->is_array())
        return makeError("bad-shape", "shape " + jsonExcerpt(*sh) + " is not an array", path, -1, name);
    Entry e;
    e.headerIndex = index;
    Tensor& t = e.tensor;
    t.name = name;
    for (const Json& d : *sh) {
        if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
            return makeError("bad-shape", "shape " + jsonExcerpt(*sh) + " holds " + jsonExcerpt(d) +
                                              ", not a non-negative integer", path, -1, name);
        t.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    }
    const auto numel = checkedNumel(t.shape.data(), t.shape.size());
    std::optional<int64_t> need = numel ? bytesFor(*numel, st->bits) : std::nullopt;
    if (!need)
        return makeError("bad-shape", "shape " + shapeString(t.shape) + " " + dtName +
                                          " overflows a 64-bit byte count or is not a whole number of bytes",
                         path, -1, name);

    if (!off->is_array() || off->size() != 2)
        return makeError("bad-offsets", "data_offsets " + jsonExcerpt(*off) + " is not a [begin, end] pair", path, -1, name);
    auto b = offsetValue((*off)[0], path, name);
    if (!b)
        return b.error();
    auto en = offsetValue((*off)[1], path, name);
    if (!en)
        return en.error();
    e.begin = *b;
    e.end = *en;
    const std::string offs = "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.end < e.begin)
        return makeError("bad-offsets", offs + " end before begin", path, -1, name);
    if (e.end - e.begin != static_cast<uint64_t>(*need))
        return makeError("size-mismatch", offs + " (" + std::to_string(e.end - e.begin) + " bytes) but shape " +
                                              shapeString(t.shape) + " " + dtName + " needs " + std::to_string(*need) +
                                              " bytes",
                         path, -1, name);

    if (st->decoded) {
        t.dtype = *st->decoded;
    } else {
        t.dtype = DType::Opaque;
        t.opaqueType = dtName;
        t.note = dtName + " is listed but not decoded";
    }
    return e;
}

}  // namespace

Result<Model> readSafetensors(const std::string& path)
{
    auto mapped = MappedFile::open(path);
    if (!mapped)
        return mapped.error();
    const std::shared_ptr<const MappedFile> file = *mapped;
    const std::span<const std::byte> bytes = file->bytes();
    const uint64_t size = bytes.size();

    // 1. The u64 header length must be there.
    if (size < 8)
        return makeError("truncated", "file is " + std::to_string(size) +
                                          " bytes; a safetensors file needs at least 8 (the header length)",
                         path, 0);
    uint64_t headerLen = 0;
    for (int i = 7; i >= 0; --i)  // little-endian on every host
        headerLen = (headerLen << 8) | std::to_integer<uint64_t>(bytes[size_t(i)]);

    // 2. Cap, then 3. the header end (cannot overflow after the cap) must lie inside the file.
    if (headerLen > kMaxHeaderBytes)
        return makeError("header-too-large", "header length " + std::to_string(headerLen) + " exceeds the " +
                                                 std::to_string(kMaxHeaderBytes) + "-byte limit",
                         path, 0);
    const uint64_t headerEnd = 8 + headerLen;
    if (headerEnd > size)
        return makeError("truncated", "header length " + std::to_string(headerLen) + " runs past the end of the file (" +
                                          std::to_string(size) + " bytes)",
                         path, 0);

    // 4. The header is a JSON object.
    const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), size_t(headerLen));
    if (!depthWithin(text, kMaxJsonDepth))
        return makeError("bad-json", "header nests deeper than " + std::to_string(kMaxJsonDepth) + " levels", path, 8);
    Json header;
    try {
        header = Json::parse(text);
    } catch (const Json::exception& ex) {
        // ex.what() carries nlohmann's byte position within the header.
        return makeError("bad-json", std::string("header is not valid JSON: ") + ex.what(), path, 8);
    }
    if (!header.is_object())
        return makeError("bad-header", std::string("header is a JSON ") + header.type_name() + ", not an object", path, 8);

    Model model;
    model.format = "safetensors";
    model.files.push_back(path);
    std::vector<Entry> entries;
    size_t index = 0;
    for (auto it = header.begin(); it != header.end(); ++it, ++index) {
        if (it.key() == "__metadata__") {
            if (!it.value().is_object())
                return makeError("bad-metadata", "__metadata__ is not an object of strings", path, 8);
            for (auto m = it.value().begin(); m != it.value().end(); ++m) {
                if (!m.value().is_string())
                    return makeError("bad-metadata", "__metadata__ value for '" + m.key() + "' is " +
                                                         jsonExcerpt(m.value()) + ", not a string",
                                     path, 8);
                model.metadata.emplace_back(m.key(), m.value().get<std::string>());
            }
            continue;
        }
        auto e = parseEntry(it.key(), it.value(), index, path);
        if (!e)
            return e.error();
        entries.push_back(std::move(*e));
    }

    // 5. Offsets tile the data area exactly: sorted by begin, no hole, no overlap,
    //    ending at the end of the file.
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const uint64_t dataSize = size - headerEnd;
    uint64_t cursor = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
        const Entry& e = entries[i];
        const std::string offs = "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
        if (e.end > dataSize)
            return makeError("out-of-bounds", offs + " run past the end of the data area (" + std::to_string(dataSize) +
                                                  " bytes)",
                             path, int64_t(headerEnd), e.tensor.name);
        if (e.begin < cursor)
            return makeError("overlap", offs + " overlap tensor '" + entries[i - 1].tensor.name + "', which ends at " +
                                            std::to_string(cursor),
                             path, int64_t(headerEnd + e.begin), e.tensor.name);
        if (e.begin > cursor)
            return makeError("hole", offs + " leave a hole: the previous tensor ends at " + std::to_string(cursor),
                             path, int64_t(headerEnd + cursor), e.tensor.name);
        cursor = e.end;
    }
    if (cursor != dataSize)
        return makeError("trailing-bytes", "tensors cover " + std::to_string(cursor) + " of " + std::to_string(dataSize) +
                                               " data bytes; the file has " + std::to_string(dataSize - cursor) +
                                               " trailing bytes",
                         path, int64_t(headerEnd + cursor));

    // Views into the mapping; the data is not touched until someone converts it.
    model.tensors.reserve(entries.size());
    for (Entry& e : entries) {
        Tensor& t = e.tensor;
        t.data = bytes.subspan(size_t(headerEnd + e.begin), size_t(e.end - e.begin));
        t.keepAlive = file;
        model.tensors.push_back(std::move(t));
    }
    markConv1DLayouts(model);
    return model;
}

}  // namespace quantlens
