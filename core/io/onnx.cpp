#include "io/onnx.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "io/mappedfile.h"
#include "io/protowire.h"
#include "layers.h"

namespace quantlens {

namespace {

// TensorProto.DataType (onnx/onnx.proto).
enum OnnxType : uint64_t {
    kUndefined = 0, kFloat = 1, kUint8 = 2, kInt8 = 3, kUint16 = 4, kInt16 = 5, kInt32 = 6, kInt64 = 7,
    kString = 8, kBool = 9, kFloat16 = 10, kDouble = 11, kUint32 = 12, kUint64 = 13, kComplex64 = 14,
    kComplex128 = 15, kBfloat16 = 16, kFloat8E4M3FN = 17, kFloat8E4M3FNUZ = 18, kFloat8E5M2 = 19,
    kFloat8E5M2FNUZ = 20, kUint4 = 21, kInt4 = 22,
};

struct TypeInfo {
    const char* name;
    std::optional<DType> dtype;  // nullopt: listed as Opaque
    int64_t elemBytes;           // 0 for types with no fixed size (strings, 4-bit)
};

std::optional<TypeInfo> typeInfo(uint64_t t)
{
    switch (t) {
    case kFloat: return TypeInfo{"FLOAT", DType::F32, 4};
    case kUint8: return TypeInfo{"UINT8", DType::U8, 1};
    case kInt8: return TypeInfo{"INT8", DType::I8, 1};
    case kUint16: return TypeInfo{"UINT16", DType::U16, 2};
    case kInt16: return TypeInfo{"INT16", DType::I16, 2};
    case kInt32: return TypeInfo{"INT32", DType::I32, 4};
    case kInt64: return TypeInfo{"INT64", DType::I64, 8};
    case kString: return TypeInfo{"STRING", std::nullopt, 0};
    case kBool: return TypeInfo{"BOOL", DType::BOOL, 1};
    case kFloat16: return TypeInfo{"FLOAT16", DType::F16, 2};
    case kDouble: return TypeInfo{"DOUBLE", DType::F64, 8};
    case kUint32: return TypeInfo{"UINT32", DType::U32, 4};
    case kUint64: return TypeInfo{"UINT64", DType::U64, 8};
    case kComplex64: return TypeInfo{"COMPLEX64", std::nullopt, 8};
    case kComplex128: return TypeInfo{"COMPLEX128", std::nullopt, 16};
    case kBfloat16: return TypeInfo{"BFLOAT16", DType::BF16, 2};
    case kFloat8E4M3FN: return TypeInfo{"FLOAT8E4M3FN", std::nullopt, 1};
    case kFloat8E4M3FNUZ: return TypeInfo{"FLOAT8E4M3FNUZ", std::nullopt, 1};
    case kFloat8E5M2: return TypeInfo{"FLOAT8E5M2", std::nullopt, 1};
    case kFloat8E5M2FNUZ: return TypeInfo{"FLOAT8E5M2FNUZ", std::nullopt, 1};
    case kUint4: return TypeInfo{"UINT4", std::nullopt, 0};
    case kInt4: return TypeInfo{"INT4", std::nullopt, 0};
    default: return std::nullopt;
    }
}

// Repeated numeric fields may be packed (one Len field) or not (one field per value);
// proto3 writers pack, old writers do not, and a parser must accept both.
struct Repeated {
    std::vector<uint64_t> values;

    Status add(const ProtoReader& r, const ProtoField& f, WireType scalar, const char* what)
    {
        if (f.type == scalar) {
            values.push_back(f.varint);
            return Ok{};
        }
        if (f.type != WireType::Len)
            return r.error("bad-wire-type", std::string(what) + " has wire type " + wireTypeName(f.type), f.offset);
        if (scalar == WireType::Varint) {
            size_t pos = 0;
            while (pos < f.bytes.size()) {
                uint64_t v = 0;
                if (!ProtoReader::readVarint(f.bytes, pos, v))
                    return r.error("bad-varint", std::string("over-long or truncated varint in packed ") + what, f.offset);
                values.push_back(v);
            }
            return Ok{};
        }
        const size_t n = scalar == WireType::Fixed64 ? 8 : 4;
        if (f.bytes.size() % n != 0)
            return r.error("bad-length", std::string("packed ") + what + " length " + std::to_string(f.bytes.size()) +
                                             " is not a multiple of " + std::to_string(n), f.offset);
        values.reserve(values.size() + f.bytes.size() / n);
        for (size_t i = 0; i < f.bytes.size(); i += n) {
            uint64_t v = 0;
            for (size_t k = 0; k < n; ++k)
                v |= uint64_t(std::to_integer<uint8_t>(f.bytes[i + k])) << (8 * k);
            values.push_back(v);
        }
        return Ok{};
    }
};

struct RawTensor {
    std::string name;
    std::vector<int64_t> dims;
    uint64_t dataType = kUndefined;
    bool haveType = false;
    uint64_t at = 0;
    std::optional<std::span<const std::byte>> raw;
    Repeated floatData, int32Data, int64Data, doubleData, uint64Data;
    size_t stringCount = 0;
    bool external = false;
    std::vector<std::pair<std::string, std::string>> externalData;
    bool segmented = false;
};

Status expect(const ProtoReader& r, const ProtoField& f, WireType t, const char* what)
{
    if (f.type != t)
        return r.error("bad-wire-type", std::string(what) + " has wire type " + wireTypeName(f.type) + ", expected " + wireTypeName(t), f.offset);
    return Ok{};
}

#define QL_TRY(expr)                 \
    do {                             \
        auto _s = (expr);            \
        if (!_s)                     \
            return _s.error();       \
    } while (0)

Result<std::pair<std::string, std::string>> parseStringEntry(ProtoReader r)
{
    std::pair<std::string, std::string> kv;
    Status walked = forEachField(r, [&](const ProtoField& f) -> Status {
        if (f.number == 1 || f.number == 2) {
            QL_TRY(expect(r, f, WireType::Len, "StringStringEntryProto field"));
            (f.number == 1 ? kv.first : kv.second) = std::string(f.str());
        }
        return Ok{};
    });
    if (!walked)
        return walked.error();
    return kv;
}

Result<RawTensor> parseTensor(ProtoReader r, uint64_t at)
{
    RawTensor t;
    t.at = at;
    Status walked = forEachField(r, [&](const ProtoField& f) -> Status {
        switch (f.number) {
        case 1: {  // dims
            Repeated d;
            QL_TRY(d.add(r, f, WireType::Varint, "TensorProto.dims"));
            for (uint64_t v : d.values) {
                if (t.dims.size() >= 64)
                    return r.error("bad-shape", "more than 64 dimensions", f.offset, t.name);
                // Checked in build(), where the tensor's name is known.
                t.dims.push_back(int64_t(v));
            }
            break;
        }
        case 2:
            QL_TRY(expect(r, f, WireType::Varint, "TensorProto.data_type"));
            t.dataType = f.varint;
            t.haveType = true;
            break;
        case 3: t.segmented = true; break;
        case 4: QL_TRY(t.floatData.add(r, f, WireType::Fixed32, "TensorProto.float_data")); break;
        case 5: QL_TRY(t.int32Data.add(r, f, WireType::Varint, "TensorProto.int32_data")); break;
        case 6:
            QL_TRY(expect(r, f, WireType::Len, "TensorProto.string_data"));
            ++t.stringCount;
            break;
        case 7: QL_TRY(t.int64Data.add(r, f, WireType::Varint, "TensorProto.int64_data")); break;
        case 8:
            QL_TRY(expect(r, f, WireType::Len, "TensorProto.name"));
            t.name = std::string(f.str());
            break;
        case 9:
            QL_TRY(expect(r, f, WireType::Len, "TensorProto.raw_data"));
            t.raw = f.bytes;
            break;
        case 10: QL_TRY(t.doubleData.add(r, f, WireType::Fixed64, "TensorProto.double_data")); break;
        case 11: QL_TRY(t.uint64Data.add(r, f, WireType::Varint, "TensorProto.uint64_data")); break;
        case 13: {
            auto sub = r.nested(f, "TensorProto.external_data");
            if (!sub)
                return sub.error();
            auto kv = parseStringEntry(*sub);
            if (!kv)
                return kv.error();
            t.externalData.push_back(std::move(*kv));
            break;
        }
        case 14:
            QL_TRY(expect(r, f, WireType::Varint, "TensorProto.data_location"));
            t.external = f.varint == 1;
            break;
        default: break;
        }
        return Ok{};
    });
    if (!walked)
        return walked.error();
    return t;
}

struct NodeInfo {
    std::string op;
    std::vector<std::string> inputs;
    bool transB = false;
};

struct Graph {
    std::vector<RawTensor> initializers;
    std::vector<RawTensor> subgraphInitializers;  // kept apart so the outer ones come first
    std::vector<std::string> sparseNames;
    std::vector<NodeInfo> nodes;
    std::string name;
};

Status parseGraph(ProtoReader r, Graph& g, bool top);

Status parseAttribute(ProtoReader r, NodeInfo& n, Graph& g)
{
    std::string name;
    uint64_t i = 0;
    bool haveI = false;
    Status walked = forEachField(r, [&](const ProtoField& f) -> Status {
        if (f.number == 1) {
            QL_TRY(expect(r, f, WireType::Len, "AttributeProto.name"));
            name = std::string(f.str());
        } else if (f.number == 3) {
            QL_TRY(expect(r, f, WireType::Varint, "AttributeProto.i"));
            i = f.varint;
            haveI = true;
        } else if (f.number == 6 || f.number == 11) {
            // Subgraphs (If/Loop/Scan bodies): their ops count too, their weights are listed.
            auto sub = r.nested(f, "AttributeProto graph");
            if (!sub)
                return sub.error();
            QL_TRY(parseGraph(*sub, g, false));
        }
        return Ok{};
    });
    if (!walked)
        return walked.error();
    if (name == "transB" && haveI)
        n.transB = i != 0;
    return Ok{};
}

Status parseNode(ProtoReader r, Graph& g)
{
    NodeInfo n;
    Status walked = forEachField(r, [&](const ProtoField& f) -> Status {
        if (f.number == 1) {
            QL_TRY(expect(r, f, WireType::Len, "NodeProto.input"));
            n.inputs.emplace_back(f.str());
        } else if (f.number == 4) {
            QL_TRY(expect(r, f, WireType::Len, "NodeProto.op_type"));
            n.op = std::string(f.str());
        } else if (f.number == 5) {
            auto sub = r.nested(f, "NodeProto.attribute");
            if (!sub)
                return sub.error();
            QL_TRY(parseAttribute(*sub, n, g));
        }
        return Ok{};
    });
    if (!walked)
        return walked.error();
    g.nodes.push_back(std::move(n));
    return Ok{};
}

Status parseGraph(ProtoReader r, Graph& g, bool top)
{
    Status walked = forEachField(r, [&](const ProtoField& f) -> Status {
        if (f.number == 1) {
            auto sub = r.nested(f, "GraphProto.node");
            if (!sub)
                return sub.error();
            QL_TRY(parseNode(*sub, g));
        } else if (f.number == 2 && top) {
            QL_TRY(expect(r, f, WireType::Len, "GraphProto.name"));
            g.name = std::string(f.str());
        } else if (f.number == 5) {
            auto sub = r.nested(f, "GraphProto.initializer");
            if (!sub)
                return sub.error();
            auto t = parseTensor(*sub, f.offset);
            if (!t)
                return t.error();
            (top ? g.initializers : g.subgraphInitializers).push_back(std::move(*t));
        } else if (f.number == 15) {
            // SparseTensorProto: listed by name, values not decoded.
            auto sub = r.nested(f, "GraphProto.sparse_initializer");
            if (!sub)
                return sub.error();
            std::string name = "(unnamed)";
            Status inner = forEachField(*sub, [&](const ProtoField& sf) -> Status {
                if (sf.number == 1) {
                    auto vals = sub->nested(sf, "SparseTensorProto.values");
                    if (!vals)
                        return vals.error();
                    auto t = parseTensor(*vals, sf.offset);
                    if (!t)
                        return t.error();
                    if (!t->name.empty())
                        name = t->name;
                }
                return Ok{};
            });
            if (!inner)
                return inner.error();
            g.sparseNames.push_back(name);
        }
        return Ok{};
    });
    if (!walked)
        return walked.error();
    return Ok{};
}

bool safeRelativePath(const std::string& loc)
{
    if (loc.empty() || loc.find('\0') != std::string::npos)
        return false;
    const std::filesystem::path p(loc);
    if (p.is_absolute() || p.has_root_name() || p.has_root_directory() || loc.front() == '/' || loc.front() == '\\')
        return false;
    for (const auto& part : p)
        if (part == "..")
            return false;
    // Windows-style separators would hide ".." from the check above.
    return loc.find("..\\") == std::string::npos && loc.find("\\..") == std::string::npos;
}

class Builder {
public:
    Builder(std::shared_ptr<const MappedFile> map, std::string path) : map_(std::move(map)), path_(std::move(path)) {}

    Result<Tensor> build(RawTensor& rt, Model& model)
    {
        auto fail = [&](std::string code, std::string msg) {
            return makeError(std::move(code), std::move(msg), path_, int64_t(rt.at), rt.name);
        };
        if (rt.name.empty())
            return fail("bad-name", "initializer without a name");
        if (!rt.haveType || rt.dataType == kUndefined)
            return fail("bad-dtype", "initializer has no data_type");
        auto ti = typeInfo(rt.dataType);
        if (!ti)
            return fail("bad-dtype", "unknown ONNX data_type " + std::to_string(rt.dataType));
        if (rt.segmented)
            return fail("unsupported", "segmented tensors are not supported");
        for (int64_t d : rt.dims)
            if (d < 0)
                return fail("bad-shape", "negative dimension " + std::to_string(d));
        auto numel = checkedNumel(rt.dims.data(), rt.dims.size());
        if (!numel)
            return fail("bad-shape", "shape " + shapeString(rt.dims) + " overflows");

        Tensor t;
        t.name = rt.name;
        t.shape = rt.dims;
        int64_t bytes = -1;
        if (ti->elemBytes > 0) {
            if (*numel > std::numeric_limits<int64_t>::max() / ti->elemBytes)
                return fail("bad-shape", "byte size of shape " + shapeString(rt.dims) + " overflows");
            bytes = *numel * ti->elemBytes;
        } else if (rt.dataType == kUint4 || rt.dataType == kInt4) {
            bytes = *numel / 2 + (*numel % 2);
        }
        const bool haveTyped = !rt.floatData.values.empty() || !rt.int32Data.values.empty() || !rt.int64Data.values.empty() ||
                               !rt.doubleData.values.empty() || !rt.uint64Data.values.empty() || rt.stringCount > 0;
        if (rt.external || !rt.externalData.empty()) {
            if (rt.raw || haveTyped)
                return fail("bad-data", "external tensor also holds inline data");
            auto view = externalView(rt, bytes, fail);
            if (!view)
                return view.error();
            t.data = view->first;
            t.keepAlive = view->second;
        } else if (rt.raw) {
            if (haveTyped)
                return fail("bad-data", "both raw_data and typed data fields are set");
            if (bytes < 0)
                return fail("unsupported", std::string(ti->name) + " raw data is not supported");
            if (int64_t(rt.raw->size()) != bytes)
                return fail("bad-length", "raw_data has " + std::to_string(rt.raw->size()) + " bytes, shape " +
                                              shapeString(rt.dims) + " of " + ti->name + " needs " + std::to_string(bytes));
            // ONNX raw_data is little-endian by definition: a zero-copy view.
            t.data = *rt.raw;
            t.keepAlive = map_;
        } else {
            if (rt.dataType == kString)
                return fail("skip", "");
            auto owned = decodeTyped(rt, *ti, *numel, fail);
            if (!owned)
                return owned.error();
            auto keep = std::make_shared<const std::vector<std::byte>>(std::move(*owned));
            t.data = std::span<const std::byte>(keep->data(), keep->size());
            t.keepAlive = keep;
        }
        if (ti->dtype) {
            t.dtype = *ti->dtype;
        } else {
            t.dtype = DType::Opaque;
            t.opaqueType = ti->name;
            t.note = "not decoded";
        }
        (void)model;
        return t;
    }

private:

    template <class Fail>
    Result<std::pair<std::span<const std::byte>, std::shared_ptr<const void>>> externalView(const RawTensor& rt, int64_t bytes, Fail& fail)
    {
        std::string location;
        uint64_t offset = 0;
        std::optional<uint64_t> length;
        for (const auto& [k, v] : rt.externalData) {
            if (k == "location") {
                location = v;
            } else if (k == "offset" || k == "length") {
                uint64_t n = 0;
                if (v.empty() || v.size() > 19 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
                    return fail("bad-external", "external data " + k + " '" + v.substr(0, 32) + "' is not a number");
                for (char c : v)
                    n = n * 10 + uint64_t(c - '0');
                (k == "offset" ? offset : length.emplace()) = n;
            }
        }
        if (location.empty())
            return fail("bad-external", "external data has no location");
        if (!safeRelativePath(location))
            return fail("bad-external", "external data location '" + location.substr(0, 200) +
                                            "' is absolute or leaves the model's folder");
        if (bytes < 0)
            return fail("unsupported", "external data of this type is not supported");
        const std::filesystem::path full = std::filesystem::path(path_).parent_path() / location;
        std::error_code ec;
        if (!std::filesystem::is_regular_file(full, ec))
            return fail("bad-external", "external data file '" + location + "' does not exist or is not a regular file");
        auto it = external_.find(full.string());
        if (it == external_.end()) {
            auto mf = MappedFile::open(full.string());
            if (!mf)
                return fail("bad-external", "cannot open external data file '" + location + "': " + mf.error().message);
            it = external_.emplace(full.string(), *mf).first;
            files_.push_back(full.string());
        }
        const auto& ext = it->second;
        const uint64_t size = ext->size();
        if (length && *length != uint64_t(bytes))
            return fail("bad-external", "external data length " + std::to_string(*length) + " does not match the " +
                                            std::to_string(bytes) + " bytes of shape " + shapeString(rt.dims));
        if (offset > size || uint64_t(bytes) > size - offset)
            return fail("bad-external", "external data [" + std::to_string(offset) + ", +" + std::to_string(bytes) +
                                            ") runs past the end of '" + location + "' (" + std::to_string(size) + " bytes)");
        return std::pair{ext->bytes().subspan(size_t(offset), size_t(bytes)), std::shared_ptr<const void>(ext)};
    }

    template <class Fail>
    Result<std::vector<std::byte>> decodeTyped(const RawTensor& rt, const TypeInfo& ti, int64_t numel, Fail& fail)
    {
        const Repeated* src = nullptr;
        switch (rt.dataType) {
        case kFloat: case kComplex64: src = &rt.floatData; break;
        case kDouble: case kComplex128: src = &rt.doubleData; break;
        case kInt64: src = &rt.int64Data; break;
        case kUint32: case kUint64: src = &rt.uint64Data; break;
        default: src = &rt.int32Data; break;  // INT32/16/8, UINT16/8, BOOL, FLOAT16, BFLOAT16, FLOAT8
        }
        if (!ti.dtype)
            return fail("unsupported", std::string(ti.name) + " values in typed fields are not decoded");
        // Every value took at least one byte of the file, so numel is bounded by what is there.
        if (int64_t(src->values.size()) != numel)
            return fail("bad-length", "has " + std::to_string(src->values.size()) + " values for shape " +
                                          shapeString(rt.dims) + " (" + std::to_string(numel) + " elements)");
        std::vector<std::byte> out(size_t(numel) * size_t(ti.elemBytes));
        const int64_t es = ti.elemBytes;
        for (int64_t i = 0; i < numel; ++i) {
            const uint64_t v = src->values[size_t(i)];
            std::byte* p = out.data() + i * es;
            // int32_data carries narrower types sign- or zero-extended; out-of-range
            // values mean the writer and the data_type disagree.
            int64_t lo = 0, hi = 0;
            switch (rt.dataType) {
            case kInt8: lo = -128; hi = 127; break;
            case kInt16: lo = -32768; hi = 32767; break;
            case kUint8: case kBool: lo = 0; hi = rt.dataType == kBool ? 1 : 255; break;
            case kUint16: case kFloat16: case kBfloat16: lo = 0; hi = 65535; break;
            case kInt32: lo = std::numeric_limits<int32_t>::min(); hi = std::numeric_limits<int32_t>::max(); break;
            case kUint32: lo = 0; hi = std::numeric_limits<uint32_t>::max(); break;
            default: break;
            }
            if (hi != 0) {
                // Varints of int32 fields are sign-extended to 64 bits.
                const int64_t sv = int64_t(v);
                if (sv < lo || sv > hi)
                    return fail("bad-value", "value " + std::to_string(sv) + " at index " + std::to_string(i) +
                                                 " is out of range for " + ti.name);
            }
            // Little-endian host (checked at the top of readOnnx): the low bytes are the value.
            std::memcpy(p, &v, size_t(es));
        }
        return out;
    }

public:
    std::vector<std::string> files_;

private:
    std::shared_ptr<const MappedFile> map_;
    std::string path_;
    std::unordered_map<std::string, std::shared_ptr<const MappedFile>> external_;
};

}  // namespace

Result<Model> readOnnx(const std::string& path)
{
    if constexpr (std::endian::native != std::endian::little)
        return makeError("unsupported", "the ONNX reader needs a little-endian host", path);
    auto mf = MappedFile::open(path);
    if (!mf)
        return mf.error();
    std::shared_ptr<const MappedFile> map = *mf;
    if (map->size() == 0)
        return makeError("empty", "file is empty", path, 0);
    ProtoReader r(map->bytes(), 0, path);

    Model model;
    model.format = "onnx";
    model.files.push_back(path);
    std::string irVersion, producer, producerVersion;
    std::vector<std::string> opsets;
    std::vector<std::pair<std::string, std::string>> props;
    Graph g;
    bool haveGraph = false;
    Status walked = forEachField(r, [&](const ProtoField& f) -> Status {
        switch (f.number) {
        case 1:
            QL_TRY(expect(r, f, WireType::Varint, "ModelProto.ir_version"));
            irVersion = std::to_string(int64_t(f.varint));
            break;
        case 2:
            QL_TRY(expect(r, f, WireType::Len, "ModelProto.producer_name"));
            producer = std::string(f.str().substr(0, 200));
            break;
        case 3:
            QL_TRY(expect(r, f, WireType::Len, "ModelProto.producer_version"));
            producerVersion = std::string(f.str().substr(0, 200));
            break;
        case 7: {
            if (haveGraph)
                return r.error("bad-model", "more than one graph", f.offset);
            auto sub = r.nested(f, "ModelProto.graph");
            if (!sub)
                return sub.error();
            QL_TRY(parseGraph(*sub, g, true));
            haveGraph = true;
            break;
        }
        case 8: {
            auto sub = r.nested(f, "ModelProto.opset_import");
            if (!sub)
                return sub.error();
            std::string domain;
            int64_t version = 0;
            Status inner = forEachField(*sub, [&](const ProtoField& of) -> Status {
                if (of.number == 1) {
                    QL_TRY(expect(*sub, of, WireType::Len, "OperatorSetIdProto.domain"));
                    domain = std::string(of.str().substr(0, 200));
                } else if (of.number == 2) {
                    QL_TRY(expect(*sub, of, WireType::Varint, "OperatorSetIdProto.version"));
                    version = int64_t(of.varint);
                }
                return Ok{};
            });
            if (!inner)
                return inner.error();
            opsets.push_back((domain.empty() ? std::string("ai.onnx") : domain) + " " + std::to_string(version));
            break;
        }
        case 14: {
            auto sub = r.nested(f, "ModelProto.metadata_props");
            if (!sub)
                return sub.error();
            auto kv = parseStringEntry(*sub);
            if (!kv)
                return kv.error();
            props.push_back(std::move(*kv));
            break;
        }
        default: break;
        }
        return Ok{};
    });
    if (!walked)
        return walked.error();
    // Protobuf has no magic, so random bytes can parse as an empty message: a model
    // without an IR version and a graph is not an ONNX model.
    if (irVersion.empty() || !haveGraph)
        return makeError("bad-model", "not an ONNX model (no ir_version or no graph)", path, 0);

    model.metadata.emplace_back("ir_version", irVersion);
    if (!producer.empty())
        model.metadata.emplace_back("producer", producer + (producerVersion.empty() ? "" : " " + producerVersion));
    if (!opsets.empty()) {
        std::string s;
        for (const auto& o : opsets)
            s += (s.empty() ? "" : ", ") + o;
        model.metadata.emplace_back("opset", s);
    }
    if (!g.name.empty())
        model.metadata.emplace_back("graph", g.name.substr(0, 200));
    for (auto& [k, v] : props)
        model.metadata.emplace_back(k.substr(0, 200), v.substr(0, 200));

    // "Conv×3, Gemm×2": most frequent first, ties by name.
    std::map<std::string, int64_t> hist;
    for (const NodeInfo& n : g.nodes)
        ++hist[n.op];
    std::vector<std::pair<std::string, int64_t>> ops(hist.begin(), hist.end());
    std::stable_sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    if (!ops.empty()) {
        std::string s;
        for (const auto& [op, n] : ops)
            s += (s.empty() ? "" : ", ") + op.substr(0, 64) + "\xC3\x97" + std::to_string(n);
        model.metadata.emplace_back("ops", s);
    }

    // Gemm with transB=0 and MatMul multiply by B as [in, out]: mark those weights so
    // the layer view runs them transposed like a Keras kernel.
    std::unordered_set<std::string> inOut, linear;
    // The graph says which initializers are layer weights whatever they are named
    // ("onnx::Conv_12"): Conv weights are [out, in/groups, k...], output channels first.
    std::unordered_map<std::string, WeightRole> roles;
    for (const NodeInfo& n : g.nodes) {
        if (n.inputs.size() >= 2 && ((n.op == "Gemm" && !n.transB) || n.op == "MatMul"))
            inOut.insert(n.inputs[1]);
        if (n.inputs.size() >= 2 && (n.op == "Gemm" || n.op == "MatMul")) {
            roles.emplace(n.inputs[1], WeightRole::Linear);
            linear.insert(n.inputs[1]);
        } else if (n.inputs.size() >= 2 && n.op == "Conv")
            roles.emplace(n.inputs[1], WeightRole::Conv);
    }

    Builder b(map, path);
    std::unordered_set<std::string> names;
    std::string skipped;
    for (RawTensor& rt : g.subgraphInitializers)
        g.initializers.push_back(std::move(rt));
    for (RawTensor& rt : g.initializers) {
        auto t = b.build(rt, model);
        if (!t) {
            if (t.error().code == "skip") {
                skipped += (skipped.empty() ? "" : ", ") + rt.name.substr(0, 100);
                continue;
            }
            return t.error();
        }
        // Subgraph initializers may reuse a name; the first (outer) one wins.
        if (!names.insert(t->name).second)
            continue;
        if (t->rank() == 2 && inOut.count(t->name))
            t->layout = Layout::InOut;
        if (auto r = roles.find(t->name); r != roles.end() && t->rank() >= 2)
            t->role = r->second;
        if (t->rank() == 2 && t->note.empty() && linear.count(t->name))
            t->note = kOnnxLinearNote;
        model.tensors.push_back(std::move(*t));
    }
    for (auto& f2 : b.files_)
        model.files.push_back(f2);
    if (!skipped.empty())
        model.metadata.emplace_back("skipped (string initializers)", skipped.substr(0, 400));
    if (!g.sparseNames.empty()) {
        std::string s;
        for (const auto& n : g.sparseNames)
            s += (s.empty() ? "" : ", ") + n.substr(0, 100);
        model.metadata.emplace_back("sparse initializers (not decoded)", s.substr(0, 400));
    }
    // Reading each tensor's header faulted in its neighbourhood (a whole 2 MiB folio on
    // file systems with large folios): hand those clean pages back, the tensors read them
    // again when they are used.
    releaseMappedPages(map->bytes());
    return model;
}

}  // namespace quantlens
