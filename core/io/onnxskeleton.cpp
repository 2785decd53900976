#include "io/onnxskeleton.h"

#include <optional>

#include <google/protobuf/io/coded_stream.h>

#include "io/mappedfile.h"
#include "io/protowire.h"

namespace quantlens {

namespace {

using google::protobuf::io::CodedOutputStream;

constexpr uint32_t kModelGraph = 7;
constexpr uint32_t kGraphInitializer = 5;
constexpr uint32_t kTensorRawData = 9;

void appendVarint(std::string& out, uint64_t v)
{
    uint8_t buf[10];
    const uint8_t* end = CodedOutputStream::WriteVarint64ToArray(v, buf);
    out.append(reinterpret_cast<const char*>(buf), size_t(end - buf));
}

// One length-delimited field: tag, length, payload.
void appendLenField(std::string& out, uint32_t number, const std::string& payload)
{
    appendVarint(out, (uint64_t(number) << 3) | uint64_t(WireType::Len));
    appendVarint(out, payload.size());
    out += payload;
}

class Walk {
public:
    Walk(std::span<const std::byte> file, uint64_t threshold) : file_(file), threshold_(threshold) {}

    // The bytes of the field just read by r: [f.offset, r.position()).
    void copyField(std::string& out, const ProtoField& f, const ProtoReader& r) const
    {
        out.append(reinterpret_cast<const char*>(file_.data() + f.offset), size_t(r.position() - f.offset));
    }

    Status model(ProtoReader r, OnnxSkeleton& s)
    {
        bool haveGraph = false;
        Status walked = forEachField(r, [&](const ProtoField& f) -> Status {
            if (f.number != kModelGraph || f.type != WireType::Len) {
                copyField(s.bytes, f, r);
                return Ok{};
            }
            haveGraph = true;
            auto g = r.nested(f, "ModelProto.graph");
            if (!g)
                return g.error();
            std::string graph;
            if (Status st = this->graph(*g, graph, s); !st)
                return st;
            appendLenField(s.bytes, kModelGraph, graph);
            return Ok{};
        });
        if (walked && !haveGraph)
            return r.error("bad-model", "no graph", 0);
        return walked;
    }

private:
    Status graph(ProtoReader r, std::string& out, OnnxSkeleton& s)
    {
        return forEachField(r, [&](const ProtoField& f) -> Status {
            if (f.number != kGraphInitializer || f.type != WireType::Len) {
                copyField(out, f, r);
                return Ok{};
            }
            auto t = r.nested(f, "GraphProto.initializer");
            if (!t)
                return t.error();
            auto kept = tensor(*t, s);
            if (!kept)
                return kept.error();
            if (*kept)
                appendLenField(out, kGraphInitializer, **kept);
            else
                copyField(out, f, r);
            ++index_;
            // Reading the header faulted in its neighbourhood (a whole 2 MiB folio where
            // the file system has large folios): a model of many tensors would otherwise
            // end up resident.
            releaseMappedPages(f.bytes);
            return Ok{};
        });
    }

    // The TensorProto without its raw_data, when that is large; nullopt to keep it whole.
    Result<std::optional<std::string>> tensor(const ProtoReader& r, OnnxSkeleton& s)
    {
        // A repeated singular field: the last occurrence is the value (protobuf encoding,
        // "Last One Wins"), so all are dropped and the last one's bytes are remembered.
        std::optional<std::span<const std::byte>> raw;
        ProtoReader scan = r;
        Status scanned = forEachField(scan, [&](const ProtoField& f) -> Status {
            if (f.number == kTensorRawData && f.type == WireType::Len)
                raw = f.bytes;
            return Ok{};
        });
        if (!scanned)
            return scanned.error();
        if (!raw || raw->size() < threshold_)
            return std::optional<std::string>();
        std::string rest;
        ProtoReader copy = r;
        Status copied = forEachField(copy, [&](const ProtoField& f) -> Status {
            if (f.number != kTensorRawData || f.type != WireType::Len)
                copyField(rest, f, copy);
            return Ok{};
        });
        if (!copied)
            return copied.error();
        s.stripped.push_back({index_, uint64_t(raw->data() - file_.data()), raw->size()});
        return std::optional<std::string>(std::move(rest));
    }

    std::span<const std::byte> file_;
    uint64_t threshold_;
    size_t index_ = 0;  // of the next main-graph initializer
};

}  // namespace

Result<OnnxSkeleton> buildOnnxSkeleton(std::span<const std::byte> file, const std::string& path, uint64_t threshold)
{
    OnnxSkeleton s;
    Walk w(file, threshold);
    if (Status st = w.model(ProtoReader(file, 0, path), s); !st)
        return st.error();
    return s;
}

}  // namespace quantlens
