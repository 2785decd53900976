#include "io/onnxsplice.h"

#include <algorithm>
#include <optional>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>

#include "io/protowire.h"
#include "io/readat.h"

namespace quantlens {

namespace {

using google::protobuf::io::CodedOutputStream;
using google::protobuf::internal::WireFormatLite;

constexpr int kModelGraph = 7;        // ModelProto.graph (onnx/onnx.proto)
constexpr int kGraphInitializer = 5;  // GraphProto.initializer
constexpr int kTensorRawData = 9;     // TensorProto.raw_data
constexpr size_t kCopyPiece = size_t(4) << 20;  // bytes per pread of file data

uint32_t lenTag(int number) { return WireFormatLite::MakeTag(number, WireFormatLite::WIRETYPE_LENGTH_DELIMITED); }

// Bytes of a length-delimited field holding n bytes.
uint64_t lenFieldSize(int number, uint64_t n)
{
    return CodedOutputStream::VarintSize32(lenTag(number)) + CodedOutputStream::VarintSize64(n) + n;
}

// Where field `number` belongs in a message libprotobuf serialized without it: before
// the first field with a higher number (known fields come in field-number order, unknown
// fields after them).
Result<size_t> insertionPoint(const std::string& msg, uint32_t number)
{
    ProtoReader r({reinterpret_cast<const std::byte*>(msg.data()), msg.size()}, 0, "(serialized model)");
    std::optional<size_t> at;
    Status walked = forEachField(r, [&](const ProtoField& f) -> Status {
        if (!at && f.number > number)
            at = size_t(f.offset);
        return Ok{};
    });
    if (!walked)
        return walked.error();
    return at.value_or(msg.size());
}

// Calls put on the bytes in pieces of at most kCopyPiece (file data read into `buffer`).
template <class Put>
Status forEachPiece(const SplicedBytes& b, const std::string& name, std::vector<std::byte>& buffer, Put&& put)
{
    if (b.produce) {
        uint64_t done = 0;
        Status s = b.produce([&](const std::byte* p, size_t n) -> Status {
            if (n > b.size() - done)
                return makeError("internal", "more bytes made than announced", b.path, -1, name);
            for (size_t at = 0; at < n;) {
                const size_t len = std::min<size_t>(n - at, kCopyPiece);
                if (Status s = put(p + at, len); !s)
                    return s;
                at += len;
            }
            done += n;
            return Ok{};
        });
        if (!s)
            return s;
        if (done != b.size())
            return makeError("internal", "fewer bytes made than announced", b.path, -1, name);
        return Ok{};
    }
    for (uint64_t done = 0; done < b.size();) {
        const size_t len = size_t(std::min<uint64_t>(b.size() - done, kCopyPiece));
        const std::byte* p = nullptr;
        if (b.fd < 0) {
            p = b.memory.data() + done;
        } else {
            buffer.resize(std::max(buffer.size(), len));
            if (Status s = readAt(b.fd, buffer.data(), len, b.offset + done, b.path, name); !s)
                return s;
            p = buffer.data();
        }
        if (Status s = put(p, len); !s)
            return s;
        done += len;
    }
    return Ok{};
}

void pointAtDataFile(onnx::TensorProto& t, const std::string& location, uint64_t offset, uint64_t length)
{
    t.clear_raw_data();
    t.set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&](const char* k, const std::string& v) {
        auto* e = t.add_external_data();
        e->set_key(k);
        e->set_value(v);
    };
    add("location", location);
    add("offset", std::to_string(offset));
    add("length", std::to_string(length));
}

uint64_t alignedOffset(uint64_t at) { return (at + 63) / 64 * 64; }

// libprotobuf's output stream into an AtomicFile through a 1 MiB buffer.
class FileSink : public google::protobuf::io::CopyingOutputStream {
public:
    explicit FileSink(AtomicFile& f) : f_(f) {}
    bool Write(const void* buffer, int size) override
    {
        if (Status s = f_.write(buffer, size_t(size)); !s) {
            error = s.error();
            return false;
        }
        return true;
    }
    std::optional<Error> error;

private:
    AtomicFile& f_;
};

// Pads the data file to 64 bytes, as mmap-friendly writers do.
Status padDataFile(AtomicFile& data)
{
    static const char zeros[64] = {};
    return data.write(zeros, size_t(alignedOffset(uint64_t(data.bytesWritten())) - uint64_t(data.bytesWritten())));
}

}  // namespace

Result<SplicedModel> SplicedModel::plan(onnx::ModelProto& mp, const SplicedData& data, const std::string& dataLocation,
                                        uint64_t minExternal)
{
    SplicedModel s;
    {
        // Serialized without the graph, and the graph without its initializers, by
        // lending them out for the moment (no copy of the data).
        onnx::GraphProto* graph = mp.release_graph();
        s.modelHead_ = mp.SerializeAsString();
        google::protobuf::RepeatedPtrField<onnx::TensorProto> inits;
        graph->mutable_initializer()->Swap(&inits);
        s.graphHead_ = graph->SerializeAsString();
        graph->mutable_initializer()->Swap(&inits);
        mp.set_allocated_graph(graph);
    }
    auto gs = insertionPoint(s.modelHead_, kModelGraph);
    auto is = insertionPoint(s.graphHead_, kGraphInitializer);
    if (!gs)
        return gs.error();
    if (!is)
        return is.error();
    s.graphSplit_ = *gs;
    s.initSplit_ = *is;

    const bool external = !dataLocation.empty();
    uint64_t dataAt = 0;
    s.graphSize_ = s.graphHead_.size();
    for (const onnx::TensorProto& t : mp.graph().initializer()) {
        Piece p;
        p.name = t.name();
        auto it = data.find(t.name());
        const bool spliced = it != data.end();
        if (spliced)
            p.bytes = it->second;
        else
            p.bytes.memory = {reinterpret_cast<const std::byte*>(t.raw_data().data()), t.raw_data().size()};
        if (external && p.bytes.size() >= minExternal) {
            onnx::TensorProto h = t;  // at most the small raw_data of a tensor kept in the message
            dataAt = alignedOffset(dataAt);
            p.dataOffset = dataAt;
            dataAt += p.bytes.size();
            pointAtDataFile(h, dataLocation, p.dataOffset, p.bytes.size());
            p.head = h.SerializeAsString();
            p.size = p.head.size();
        } else if (spliced) {
            p.head = t.SerializeAsString();
            auto split = insertionPoint(p.head, kTensorRawData);
            if (!split)
                return split.error();
            p.split = *split;
            p.inlineData = true;
            p.size = p.head.size() + lenFieldSize(kTensorRawData, p.bytes.size());
        } else {
            p.whole = &t;
            p.bytes = {};
            p.size = t.ByteSizeLong();
        }
        s.graphSize_ += lenFieldSize(kGraphInitializer, p.size);
        s.pieces_.push_back(std::move(p));
    }
    s.modelSize_ = s.modelHead_.size() + lenFieldSize(kModelGraph, s.graphSize_);
    s.dataSize_ = dataAt;
    return s;
}

Status SplicedModel::write(AtomicFile& model, AtomicFile* data, const std::function<Status(const std::string&)>& before) const
{
    FileSink sink(model);
    google::protobuf::io::CopyingOutputStreamAdaptor adaptor(&sink, 1 << 20);
    Status written = Ok{};
    {
        CodedOutputStream out(&adaptor);
        auto raw = [&](const void* p, size_t n) {
            // WriteRaw takes an int: large data goes in pieces.
            for (size_t done = 0; done < n;) {
                const int len = int(std::min<size_t>(n - done, size_t(1) << 30));
                out.WriteRaw(static_cast<const char*>(p) + done, len);
                done += size_t(len);
            }
        };
        auto put = [&](const std::byte* b, size_t n) {
            raw(b, n);
            return Status(Ok{});
        };
        auto putData = [&](const std::byte* b, size_t n) { return data->write(b, n); };
        std::vector<std::byte> buffer;
        auto run = [&]() -> Status {
            raw(modelHead_.data(), graphSplit_);
            out.WriteVarint32(lenTag(kModelGraph));
            out.WriteVarint64(graphSize_);
            raw(graphHead_.data(), initSplit_);
            for (const Piece& p : pieces_) {
                if (Status s = before(p.name); !s)
                    return s;
                out.WriteVarint32(lenTag(kGraphInitializer));
                out.WriteVarint64(p.size);
                if (p.whole) {
                    if (!p.whole->SerializeToCodedStream(&out))
                        return makeError("write", "libprotobuf could not serialize initializer " + p.name, model.finalPath());
                    continue;
                }
                raw(p.head.data(), p.split);
                if (p.inlineData) {
                    out.WriteVarint32(lenTag(kTensorRawData));
                    out.WriteVarint64(p.bytes.size());
                    if (Status s = forEachPiece(p.bytes, p.name, buffer, put); !s)
                        return s;
                } else if (p.bytes.size() > 0) {
                    if (!data)
                        return makeError("internal", "external data without a data file", model.finalPath(), -1, p.name);
                    if (Status s = padDataFile(*data); !s)
                        return s;
                    if (Status s = forEachPiece(p.bytes, p.name, buffer, putData); !s)
                        return s;
                }
                raw(p.head.data() + p.split, p.head.size() - p.split);
            }
            raw(graphHead_.data() + initSplit_, graphHead_.size() - initSplit_);
            raw(modelHead_.data() + graphSplit_, modelHead_.size() - graphSplit_);
            return Ok{};
        };
        written = run();
    }  // the coded stream hands its last bytes back to the adaptor here
    const bool flushed = adaptor.Flush();
    if (sink.error)
        return *sink.error;
    if (!written)
        return written;
    if (!flushed)
        return makeError("write", "libprotobuf could not write the model", model.finalPath());
    if (uint64_t(model.bytesWritten()) != modelSize_)
        return makeError("internal", "wrote " + std::to_string(model.bytesWritten()) + " bytes of a " +
                                         std::to_string(modelSize_) + "-byte model", model.finalPath());
    return Ok{};
}

Status writeWholeModel(onnx::ModelProto& mp, const SplicedData& spliced, AtomicFile& model, AtomicFile* data,
                       const std::string& dataLocation, uint64_t minExternal)
{
    std::vector<std::byte> buffer;
    for (onnx::TensorProto& t : *mp.mutable_graph()->mutable_initializer()) {
        auto it = spliced.find(t.name());
        if (it == spliced.end())
            continue;
        std::string bytes;
        bytes.reserve(size_t(it->second.size()));
        auto put = [&](const std::byte* b, size_t n) {
            bytes.append(reinterpret_cast<const char*>(b), n);
            return Status(Ok{});
        };
        if (Status s = forEachPiece(it->second, t.name(), buffer, put); !s)
            return s;
        t.set_raw_data(std::move(bytes));
    }
    if (data) {
        for (onnx::TensorProto& t : *mp.mutable_graph()->mutable_initializer()) {
            if (t.raw_data().size() < minExternal)
                continue;
            if (Status s = padDataFile(*data); !s)
                return s;
            const uint64_t offset = uint64_t(data->bytesWritten());
            if (Status s = data->write(t.raw_data().data(), t.raw_data().size()); !s)
                return s;
            pointAtDataFile(t, dataLocation, offset, t.raw_data().size());
        }
    }
    FileSink sink(model);
    google::protobuf::io::CopyingOutputStreamAdaptor out(&sink, 1 << 20);
    const bool ok = mp.SerializeToZeroCopyStream(&out) && out.Flush();
    if (sink.error)
        return *sink.error;
    if (!ok)
        return makeError("write", "libprotobuf could not serialize the model", model.finalPath());
    return Ok{};
}

}  // namespace quantlens
