#pragma once
// Writes an ONNX ModelProto whose large initializers hold no data in the message: each
// one's bytes come from a range of a file (read with pread, a few MiB at a time) or from
// memory, and are spliced into libprotobuf's own serialization of the rest exactly where
// libprotobuf would have written them. Known fields are serialized in field-number order,
// so the file is byte for byte what serializing the whole model would give, while the
// process holds only the model without those bytes plus one copy buffer.
// Optionally the data goes to an external data file instead (ONNX external data:
// data_location = EXTERNAL and the location / offset / length entries, 64-byte aligned, in
// initializer order), as onnx.save_model(save_as_external_data=True) lays it out.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <onnx/onnx_pb.h>

#include "io/atomicfile.h"
#include "result.h"

namespace quantlens {

// Hands the bytes of an initializer to `put` (in pieces or whole); the writer checks that
// exactly `length` bytes came.
using SplicedPut = std::function<Status(const std::byte*, size_t)>;
using SplicedProducer = std::function<Status(const SplicedPut& put)>;

// The data of one initializer: in memory, `length` bytes at `offset` of an open file, or
// `length` bytes made only when the initializer is written (`produce`: a quantized weight
// computed then and let go right after).
struct SplicedBytes {
    std::span<const std::byte> memory;  // when fd < 0 and no producer
    int fd = -1;
    std::string path;  // of that file, for errors
    uint64_t offset = 0;
    uint64_t length = 0;
    SplicedProducer produce;
    uint64_t size() const { return fd < 0 && !produce ? memory.size() : length; }
};

// By name, for initializers of the main graph that hold no raw_data themselves.
using SplicedData = std::unordered_map<std::string, SplicedBytes>;

class SplicedModel {
public:
    // The layout of `mp` (which must outlive this and stay unchanged; it is only lent
    // out while the plan is made) with `data` spliced in. An empty dataLocation writes all data inline; otherwise every initializer whose
    // data has minExternal bytes or more goes to the data file named dataLocation.
    static Result<SplicedModel> plan(onnx::ModelProto& mp, const SplicedData& data, const std::string& dataLocation,
                                     uint64_t minExternal);

    uint64_t modelBytes() const { return modelSize_; }
    uint64_t dataBytes() const { return dataSize_; }

    // `before(name)` runs before each initializer is written; an error from it (a cancel)
    // stops the write. `data` may be null when dataBytes() is 0.
    Status write(AtomicFile& model, AtomicFile* data, const std::function<Status(const std::string&)>& before) const;

private:
    struct Piece {
        const onnx::TensorProto* whole = nullptr;  // written as it is
        std::string head;     // else the tensor without raw_data (and with external entries)
        size_t split = 0;     // where raw_data belongs in head, when written inline
        bool inlineData = false;
        SplicedBytes bytes;   // the data, inline or to the data file
        uint64_t dataOffset = 0;
        uint64_t size = 0;    // of the serialized TensorProto
        std::string name;
    };
    std::string modelHead_;  // the ModelProto without its graph
    size_t graphSplit_ = 0;  // where the graph belongs in modelHead_
    std::string graphHead_;  // the main graph without its initializers
    size_t initSplit_ = 0;   // where the initializers belong in graphHead_
    std::vector<Piece> pieces_;
    uint64_t graphSize_ = 0, modelSize_ = 0, dataSize_ = 0;
};

// The reference: every spliced initializer's data read into its raw_data, the data of
// minExternal bytes or more moved to `data` (when not null), and the whole model
// serialized by libprotobuf, as the writer did before it streamed. The tests check that
// SplicedModel::write gives the same bytes.
Status writeWholeModel(onnx::ModelProto& mp, const SplicedData& spliced, AtomicFile& model, AtomicFile* data,
                       const std::string& dataLocation, uint64_t minExternal);

}  // namespace quantlens
