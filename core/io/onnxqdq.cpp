#include "io/onnxqdq.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#include <onnx/version_converter/convert.h>

#include "io/atomicfile.h"
#include "io/mappedfile.h"
#include "io/onnxskeleton.h"
#include "io/onnxsplice.h"
#include "io/readat.h"
#include "truncationguard.h"

namespace quantlens {

namespace fs = std::filesystem;

namespace {

constexpr int kPerChannelOpset = 13;  // DequantizeLinear's `axis`
constexpr int kBlockedOpset = 21;     // DequantizeLinear's `block_size`
constexpr size_t kExternalThreshold = 1024;  // smaller tensors stay inline, as onnx.save does
constexpr int64_t kMaxProtoBytes = INT_MAX;  // protobuf's limit on one serialized message

bool isFloatType(int t)
{
    return t == onnx::TensorProto::FLOAT || t == onnx::TensorProto::FLOAT16 || t == onnx::TensorProto::DOUBLE ||
           t == onnx::TensorProto::BFLOAT16;
}

// The files the export reads from, open once each: the source model and its external
// data files. Read with pread (io/readat.h), so a file that shrinks fails cleanly.
class SourceFiles {
public:
    struct File {
        Fd fd;
        uint64_t size = 0;
    };

    Result<const File*> open(const std::string& path)
    {
        if (auto it = files_.find(path); it != files_.end())
            return &it->second;
        // O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
        Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
        if (fd.fd < 0)
            return makeError("open", std::string("cannot open: ") + std::strerror(errno), path);
        struct stat st {};
        if (::fstat(fd.fd, &st) != 0)
            return makeError("open", std::string("cannot stat: ") + std::strerror(errno), path);
        if (!S_ISREG(st.st_mode))
            return makeError("not-a-file", describeNonRegular(st.st_mode), path);
        File& f = files_[path];
        f.fd = std::move(fd);
        f.size = uint64_t(st.st_size);
        return &f;
    }

private:
    std::map<std::string, File> files_;
};

// Resolves every external tensor of the model: the main graph's initializers of
// `streamFrom` bytes or more are left to be copied from their file while the output is
// written (io/onnxsplice.h), every other one is read into raw_data. readOnnx already
// checked every location, offset and length; they are checked again here because this is
// a second parse of the same bytes.
class Internalizer {
public:
    // Initializers of the main graph named in `skip` are left external (the caller
    // replaces them).
    Internalizer(fs::path dir, const std::set<std::string>* skip, uint64_t streamFrom, SourceFiles& files, SplicedData& spliced)
        : dir_(std::move(dir)), skip_(skip), streamFrom_(streamFrom), files_(files), spliced_(spliced)
    {
    }

    Status tensor(onnx::TensorProto& t, bool mainInitializer)
    {
        if (t.data_location() != onnx::TensorProto::EXTERNAL)
            return Ok{};
        std::string location;
        uint64_t offset = 0;
        std::optional<uint64_t> length;
        for (const auto& kv : t.external_data()) {
            if (kv.key() == "location") {
                location = kv.value();
            } else if (kv.key() == "offset" || kv.key() == "length") {
                const std::string& v = kv.value();
                if (v.empty() || v.size() > 18 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
                    return fail(t, "external data " + kv.key() + " is not a number");
                (kv.key() == "offset" ? offset : length.emplace()) = std::stoull(v);
            }
        }
        const fs::path rel(location);
        if (location.empty() || rel.is_absolute() || std::any_of(rel.begin(), rel.end(), [](const fs::path& p) { return p == ".."; }))
            return fail(t, "external data location '" + location + "' is empty, absolute or leaves the model's folder");
        const std::string full = (dir_ / rel).string();
        auto file = files_.open(full);
        if (!file)
            return file.error();
        const uint64_t size = (*file)->size;
        // Without a length the data runs to the end of the file (the ONNX external-data spec).
        const uint64_t n = length ? *length : (offset <= size ? size - offset : 0);
        if (offset > size || n > size - offset)
            return fail(t, "external data runs past the end of '" + location + "'");
        if (mainInitializer && n >= streamFrom_) {
            spliced_[t.name()] = SplicedBytes{{}, (*file)->fd.fd, full, offset, n};
        } else {
            std::string bytes(size_t(n), '\0');
            if (Status s = readAt((*file)->fd.fd, bytes.data(), bytes.size(), offset, full, t.name()); !s)
                return s;
            t.set_raw_data(std::move(bytes));
        }
        t.clear_external_data();
        t.clear_data_location();
        any = true;
        return Ok{};
    }

    // Every tensor of a graph and its subgraphs: initializers, sparse initializers and
    // Constant / attribute tensors.
    Status graph(onnx::GraphProto& g, bool main = true)
    {
        for (auto& t : *g.mutable_initializer()) {
            if (main && skip_ && skip_->count(t.name())) {
                any = any || t.data_location() == onnx::TensorProto::EXTERNAL;  // the export stays external
                continue;
            }
            if (Status s = tensor(t, main); !s)
                return s;
        }
        for (auto& st : *g.mutable_sparse_initializer()) {
            if (Status s = tensor(*st.mutable_values(), false); !s)
                return s;
            if (Status s = tensor(*st.mutable_indices(), false); !s)
                return s;
        }
        for (auto& n : *g.mutable_node())
            for (auto& a : *n.mutable_attribute()) {
                if (a.has_t())
                    if (Status s = tensor(*a.mutable_t(), false); !s)
                        return s;
                for (auto& t : *a.mutable_tensors())
                    if (Status s = tensor(t, false); !s)
                        return s;
                if (a.has_g())
                    if (Status s = graph(*a.mutable_g(), false); !s)
                        return s;
                for (auto& sg : *a.mutable_graphs())
                    if (Status s = graph(sg, false); !s)
                        return s;
            }
        return Ok{};
    }

    bool any = false;

private:
    static Error fail(const onnx::TensorProto& t, const std::string& why)
    {
        return makeError("bad-external", why, {}, -1, t.name());
    }
    fs::path dir_;
    const std::set<std::string>* skip_ = nullptr;
    uint64_t streamFrom_;
    SourceFiles& files_;
    SplicedData& spliced_;
};

void collectNames(const onnx::GraphProto& g, std::set<std::string>& names)
{
    for (const auto& v : g.input())
        names.insert(v.name());
    for (const auto& v : g.output())
        names.insert(v.name());
    for (const auto& v : g.value_info())
        names.insert(v.name());
    for (const auto& t : g.initializer())
        names.insert(t.name());
    for (const auto& n : g.node()) {
        names.insert(n.name());
        for (const auto& o : n.output())
            names.insert(o);
        for (const auto& a : n.attribute()) {
            if (a.has_g())
                collectNames(a.g(), names);
            for (const auto& sg : a.graphs())
                collectNames(sg, names);
        }
    }
}

std::string uniqueName(std::set<std::string>& names, const std::string& want)
{
    std::string n = want;
    for (int i = 1; names.count(n); ++i)
        n = want + "_" + std::to_string(i);
    names.insert(n);
    return n;
}

onnx::OperatorSetIdProto* defaultOpset(onnx::ModelProto& mp)
{
    for (auto& o : *mp.mutable_opset_import())
        if (o.domain().empty() || o.domain() == "ai.onnx")
            return &o;
    return nullptr;
}

void addIntAttribute(onnx::NodeProto& n, const char* name, int64_t v)
{
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
}

template <class T>
std::string rawBytes(const std::vector<T>& v)
{
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// The scale / zero-point layout of one quantized tensor in DequantizeLinear's terms.
struct QdqLayout {
    std::vector<int64_t> dims;     // of x_scale and x_zero_point
    int64_t axis = -1;             // -1: no axis attribute (per tensor)
    int64_t blockSize = 0;         // > 0: blocked (opset 21)
    std::vector<float> scale;      // in the order of dims
    std::vector<int32_t> zeroPoint;
};

Result<QdqLayout> qdqLayout(const QuantizedTensor& qt)
{
    QdqLayout L;
    const QuantParams& P = qt.params;
    auto err = [&](const std::string& why) { return makeError("unsupported", why, {}, -1, qt.name); };
    if (P.groupSize <= 0 && qt.spec.granularity != Granularity::PerChannel) {
        L.scale = P.scale;
        L.zeroPoint = P.zeroPoint;
        return L;  // scalar scale: dims stay empty
    }
    const int ax = storedAxis(qt);
    if (P.groupSize <= 0) {
        L.axis = ax;
        L.dims = {int64_t(P.scale.size())};
        L.scale = P.scale;
        L.zeroPoint = P.zeroPoint;
        return L;
    }
    // Blocked: our groups run along the flattened rest of each channel, which for a
    // matrix is the other axis; higher ranks have no single blocking axis.
    if (qt.rank() == 1) {
        L.axis = 0;
        L.blockSize = P.groupSize;
        L.dims = {int64_t(P.scale.size())};
        L.scale = P.scale;
        L.zeroPoint = P.zeroPoint;
        return L;
    }
    if (qt.rank() != 2)
        return err("per-group scales of a rank-" + std::to_string(qt.rank()) +
                   " tensor have no ONNX blocked layout (blocks run along one axis); use --granularity channel");
    const int64_t C = qt.shape[size_t(ax)];
    const int64_t G = int64_t(P.scale.size()) / std::max<int64_t>(C, 1);
    L.axis = 1 - ax;
    L.blockSize = P.groupSize;
    if (ax == 0) {
        L.dims = {C, G};
        L.scale = P.scale;
        L.zeroPoint = P.zeroPoint;
    } else {
        // [in, out] weight: channels are columns, so the [channels, groups] list is transposed.
        L.dims = {G, C};
        L.scale.resize(P.scale.size());
        L.zeroPoint.resize(P.zeroPoint.size());
        for (int64_t c = 0; c < C; ++c)
            for (int64_t g = 0; g < G; ++g) {
                L.scale[size_t(g * C + c)] = P.scale[size_t(c * G + g)];
                L.zeroPoint[size_t(g * C + c)] = P.zeroPoint[size_t(c * G + g)];
            }
    }
    return L;
}

}  // namespace

namespace onnxqdqdetail {

Result<ExportReport> write(const Model& m, const std::vector<ExportEntry>& entries, const ExportOptions& opts,
                           const ExportProgress& progress, uint64_t streamFrom, Writing writing)
{
    auto fail = [&](std::string code, std::string why, std::string tensor = {}) {
        return makeError(std::move(code), std::move(why), opts.outPath, -1, std::move(tensor));
    };
    if (m.files.empty())
        return fail("bad-pair", "the ONNX QDQ export needs the source .onnx file");
    const std::string src = m.files[0];
    if (!exportdetail::report(progress, 0.0, "reading " + src))
        return exportdetail::cancelled(opts.outPath);

    // libprotobuf parses the model without the raw_data of its large initializers (their
    // bytes are copied from the file when the output is written), so the parsed model is
    // about the size of the graph, not of the weights.
    onnx::ModelProto mp;
    SplicedData spliced;
    SourceFiles files;
    {
        auto map = MappedFile::open(src);
        if (!map)
            return map.error();
        auto skeleton = buildOnnxSkeleton((*map)->bytes(), src, streamFrom);
        // Our reader walked these same fields without an error, so one now means the file
        // changed since it was read.
        if ((*map)->changed() || !skeleton) {
            Error e = truncationguard::fileChangedError(src);
            if (!skeleton)
                e.message += " (" + skeleton.error().message + ")";
            return e;
        }
        map->reset();
        if (skeleton->bytes.size() > size_t(kMaxProtoBytes))
            return makeError("too-large", "the model without its large initializers' data is still over 2 GiB, which protobuf cannot parse", src);
        if (!mp.ParseFromString(skeleton->bytes))
            return makeError("bad-model", "libprotobuf could not parse the model that our reader accepted", src);
        auto file = files.open(src);
        if (!file)
            return file.error();
        for (const OnnxStrippedData& d : skeleton->stripped) {
            if (d.initializer >= size_t(mp.graph().initializer_size()))
                return makeError("bad-model", "libprotobuf and Quantlens' reader count the initializers differently", src);
            spliced[mp.graph().initializer(int(d.initializer)).name()] = SplicedBytes{{}, (*file)->fd.fd, src, d.offset, d.length};
        }
    }
    // External weights about to be replaced by their quantized form are not read in (one
    // float copy fewer per weight), unless the opset converter, which sees every tensor,
    // runs first; large ones are never read in, either way.
    std::set<std::string> notRead;
    if (const onnx::OperatorSetIdProto* o = defaultOpset(mp); o && o->version() >= kPerChannelOpset)
        for (const ExportEntry& e : entries)
            notRead.insert(e.quantized.name);
    Internalizer ext(fs::path(src).parent_path(), &notRead, streamFrom, files, spliced);
    if (Status s = ext.graph(*mp.mutable_graph()); !s)
        return s.error();
    // The data left in files is found by name when the output is written.
    {
        std::map<std::string, int> count;
        for (const auto& t : mp.graph().initializer())
            ++count[t.name()];
        for (const auto& [name, bytes] : spliced)
            if (count[name] != 1)
                return fail("bad-model", "the main graph has " + std::to_string(count[name]) + " initializers of this name", name);
    }

    // Everything about the entries is checked before the model changes.
    std::map<std::string, int> initIndex;
    for (int i = 0; i < mp.graph().initializer_size(); ++i)
        initIndex.emplace(mp.graph().initializer(i).name(), i);
    std::vector<QdqLayout> layouts;
    std::set<std::string> seen;
    bool blocked = false;
    for (const ExportEntry& e : entries) {
        const QuantizedTensor& qt = e.quantized;
        if (!seen.insert(qt.name).second)
            return fail("duplicate-name", "quantized twice", qt.name);
        auto it = initIndex.find(qt.name);
        if (it == initIndex.end())
            return fail("unsupported", "not an initializer of the main graph (subgraph and sparse "
                                       "initializers are not quantized)", qt.name);
        const onnx::TensorProto& t = mp.graph().initializer(it->second);
        if (!isFloatType(t.data_type()))
            return fail("unsupported", "not a float initializer; DequantizeLinear only makes floats", qt.name);
        if (qt.spec.bits > 8)
            return fail("unsupported", "more than 8 bits has no int8 container", qt.name);
        auto L = qdqLayout(qt);
        if (!L) {
            Error err = L.error();
            err.path = opts.outPath;
            return err;
        }
        blocked = blocked || L->blockSize > 0;
        layouts.push_back(std::move(*L));
    }

    ExportReport report;
    onnx::OperatorSetIdProto* opset = defaultOpset(mp);
    const int64_t version = opset ? opset->version() : 0;
    if (blocked && version < kBlockedOpset)
        return fail("unsupported", "per-group (blocked) DequantizeLinear needs opset 21 and this model imports opset " +
                                       std::to_string(version) + "; use --granularity tensor or channel, or convert the model to opset 21 first");
    if (!opset) {
        opset = mp.add_opset_import();
        opset->set_domain("");
        opset->set_version(kPerChannelOpset);
    } else if (version < kPerChannelOpset) {
        // Adapters such as Softmax 12->13 need shapes: infer them first, and drop the
        // inferred value_info again afterwards so only the conversion changes the graph.
        std::set<std::string> hadInfo;
        for (const auto& v : mp.graph().value_info())
            hadInfo.insert(v.name());
        try {
            onnx::shape_inference::InferShapes(mp);
            mp = onnx::version_conversion::ConvertVersion(mp, kPerChannelOpset);
            auto* vi = mp.mutable_graph()->mutable_value_info();
            vi->erase(std::remove_if(vi->begin(), vi->end(), [&](const onnx::ValueInfoProto& v) { return !hadInfo.count(v.name()); }),
                      vi->end());
        } catch (const std::exception& ex) {
            return fail("opset", "raising the model from opset " + std::to_string(version) + " to 13 (ONNX's version converter) failed: " +
                                     std::string(ex.what()).substr(0, 300));
        }
        report.warnings.push_back("the model was converted from opset " + std::to_string(version) +
                                  " to 13 with ONNX's version converter (DequantizeLinear's axis needs 13)");
    }
    if (mp.ir_version() < 7)
        mp.set_ir_version(7);  // opset 13 needs IR 7

    onnx::GraphProto& g = *mp.mutable_graph();
    std::set<std::string> names;
    collectNames(g, names);
    initIndex.clear();
    for (int i = 0; i < g.initializer_size(); ++i)
        initIndex.emplace(g.initializer(i).name(), i);

    google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
    std::set<std::string> replaced;
    for (size_t k = 0; k < entries.size(); ++k) {
        const QuantizedTensor& qt = entries[k].quantized;
        if (!exportdetail::report(progress, 0.1 + 0.6 * double(k) / double(entries.size()), "rewriting " + qt.name))
            return exportdetail::cancelled(opts.outPath);
        auto it = initIndex.find(qt.name);
        if (it == initIndex.end())
            return fail("internal", "the initializer disappeared in the opset conversion", qt.name);
        const int srcType = g.initializer(it->second).data_type();
        const QdqLayout& L = layouts[k];
        const int qType = qt.spec.isUnsigned ? onnx::TensorProto::UINT8 : onnx::TensorProto::INT8;

        onnx::TensorProto q;
        q.set_name(uniqueName(names, qt.name + "_quantized"));
        q.set_data_type(qType);
        for (int64_t d : qt.shape)
            q.add_dims(d);
        // The values are written from the entry itself, not copied into the message.
        spliced.erase(qt.name);
        const ExportEntry& e = entries[k];
        const uint64_t qBytes = uint64_t(checkedNumel(qt.shape.data(), qt.shape.size()).value_or(0));
        spliced[q.name()] = SplicedBytes{{}, -1, opts.outPath, 0, qBytes, [&m, &e](const SplicedPut& put) -> Status {
                                             auto payload = EntryPayload::of(m, e);
                                             if (!payload)
                                                 return payload.error();
                                             return put(reinterpret_cast<const std::byte*>((**payload).q.data()), (**payload).q.size());
                                         }};

        onnx::TensorProto s;
        s.set_name(uniqueName(names, qt.name + "_scale"));
        s.set_data_type(onnx::TensorProto::FLOAT);
        for (int64_t d : L.dims)
            s.add_dims(d);
        s.set_raw_data(rawBytes(L.scale));

        onnx::TensorProto z;
        z.set_name(uniqueName(names, qt.name + "_zero_point"));
        z.set_data_type(qType);
        for (int64_t d : L.dims)
            z.add_dims(d);
        std::vector<int8_t> zp(L.zeroPoint.size());
        for (size_t i = 0; i < zp.size(); ++i) {
            const int32_t v = L.zeroPoint[i];
            if (qt.spec.isUnsigned ? (v < 0 || v > 255) : (v < -128 || v > 127))
                return fail("bad-params", "zero point " + std::to_string(v) + " does not fit the 8-bit type", qt.name);
            zp[i] = int8_t(uint8_t(v & 0xff));
        }
        z.set_raw_data(rawBytes(zp));

        // DequantizeLinear makes float32 from a float32 scale; other float weights get a Cast back.
        const bool cast = srcType != onnx::TensorProto::FLOAT;
        onnx::NodeProto& dq = *nodes.Add();
        dq.set_op_type("DequantizeLinear");
        dq.set_name(uniqueName(names, qt.name + "_DequantizeLinear"));
        dq.add_input(q.name());
        dq.add_input(s.name());
        dq.add_input(z.name());
        dq.add_output(cast ? uniqueName(names, qt.name + "_dequantized") : qt.name);
        if (L.axis >= 0)
            addIntAttribute(dq, "axis", L.axis);
        if (L.blockSize > 0)
            addIntAttribute(dq, "block_size", L.blockSize);
        if (cast) {
            onnx::NodeProto& c = *nodes.Add();
            c.set_op_type("Cast");
            c.set_name(uniqueName(names, qt.name + "_Cast"));
            c.add_input(dq.output(0));
            c.add_output(qt.name);
            addIntAttribute(c, "to", srcType);
        }
        *g.mutable_initializer(it->second) = std::move(q);
        *g.add_initializer() = std::move(s);
        *g.add_initializer() = std::move(z);
        replaced.insert(qt.name);
    }
    // Old exporters also list initializers as graph inputs; a DequantizeLinear output
    // cannot be one.
    auto* inputs = g.mutable_input();
    inputs->erase(std::remove_if(inputs->begin(), inputs->end(), [&](const onnx::ValueInfoProto& v) { return replaced.count(v.name()) > 0; }),
                  inputs->end());
    // The new nodes only read initializers, so they go first: the graph stays sorted.
    for (auto& n : *g.mutable_node())
        *nodes.Add() = std::move(n);
    g.mutable_node()->Swap(&nodes);

    auto setProp = [&](const std::string& k, const std::string& v) {
        for (auto& p : *mp.mutable_metadata_props())
            if (p.key() == k) {
                p.set_value(v);
                return;
            }
        auto* p = mp.add_metadata_props();
        p->set_key(k);
        p->set_value(v);
    };
    setProp("quantlens_format", "onnx-qdq");
    setProp("quantlens_source", exportdetail::sourceOf(m, opts));
    setProp("quantlens_quantized", std::to_string(entries.size()));

    // Data that was external stays external, now in one file beside the output; a model
    // that would not fit one protobuf message goes external too.
    const std::string dataName = fs::path(opts.outPath).filename().string() + ".data";
    const std::string dataPath = (fs::path(opts.outPath).parent_path() / dataName).string();
    auto layout = SplicedModel::plan(mp, spliced, {}, 0);
    if (!layout)
        return layout.error();
    const bool external = ext.any || layout->modelBytes() > uint64_t(kMaxProtoBytes);
    if (external) {
        layout = SplicedModel::plan(mp, spliced, dataName, kExternalThreshold);
        if (!layout)
            return layout.error();
    }
    if (layout->modelBytes() > uint64_t(kMaxProtoBytes))
        return fail("too-large", "the model's graph is over 2 GiB even without its initializers");
    if (!exportdetail::report(progress, 0.75, "writing " + opts.outPath))
        return exportdetail::cancelled(opts.outPath);

    // Nothing large enough to move out: no data file.
    std::optional<AtomicFile> dataFile;
    if (layout->dataBytes() > 0) {
        auto df = AtomicFile::create(dataPath, m.files);
        if (!df)
            return df.error();
        dataFile.emplace(std::move(*df));
    }
    auto model = AtomicFile::create(opts.outPath, m.files);
    if (!model)
        return model.error();
    AtomicFile* data = dataFile ? &*dataFile : nullptr;
    if (writing == Writing::WholeModel) {
        if (Status st = writeWholeModel(mp, spliced, *model, data, dataName, kExternalThreshold); !st)
            return st.error();
    } else {
        size_t done = 0;
        const double n = double(std::max(1, mp.graph().initializer_size()));
        auto before = [&](const std::string& name) -> Status {
            if (!exportdetail::report(progress, 0.75 + 0.2 * double(done++) / n, "writing " + name))
                return exportdetail::cancelled(opts.outPath);
            return Ok{};
        };
        if (Status st = layout->write(*model, data, before); !st)
            return st.error();
    }
    if (!exportdetail::report(progress, 0.95, "committing " + opts.outPath))
        return exportdetail::cancelled(opts.outPath);
    if (dataFile) {
        if (Status st = dataFile->commit(); !st)
            return st.error();
    }
    if (Status st = model->commit(); !st) {
        if (dataFile) {
            std::error_code ec;
            fs::remove(dataPath, ec);  // a data file without its model is half an export
        }
        return st.error();
    }
    report.bytesWritten = model->bytesWritten() + (dataFile ? dataFile->bytesWritten() : 0);
    report.files.push_back(opts.outPath);
    if (dataFile)
        report.files.push_back(dataPath);
    exportdetail::report(progress, 1.0, "done");
    return report;
}

}  // namespace onnxqdqdetail

Result<ExportReport> writeOnnxQdqExport(const Model& m, const std::vector<ExportEntry>& entries,
                                        const ExportOptions& opts, const ExportProgress& progress)
{
    return onnxqdqdetail::write(m, entries, opts, progress, onnxqdqdetail::kStreamFrom, onnxqdqdetail::Writing::Streamed);
}

}  // namespace quantlens
