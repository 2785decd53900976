#pragma once
// A small bounds-checked reader of the protobuf wire format (developers.google.com/
// protocol-buffers/docs/encoding), enough to walk ONNX files without libprotobuf.
// It never copies: length-delimited fields are views into the caller's buffer.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "result.h"

namespace quantlens {

enum class WireType : uint8_t { Varint = 0, Fixed64 = 1, Len = 2, Fixed32 = 5 };

const char* wireTypeName(WireType t);

struct ProtoField {
    uint32_t number = 0;
    WireType type = WireType::Varint;
    uint64_t varint = 0;                 // Varint, Fixed64 and Fixed32 payloads
    std::span<const std::byte> bytes;    // Len payload
    uint64_t offset = 0;                 // of the field's tag, relative to the file

    std::string_view str() const { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }
};

// Protobuf nests messages by length; a crafted file can nest thousands deep.
constexpr int kMaxProtoDepth = 64;

class ProtoReader {
public:
    // `fileOffset` is where `buf` starts in the file, so errors can say where.
    ProtoReader(std::span<const std::byte> buf, uint64_t fileOffset, std::string path, int depth = 0)
        : buf_(buf), base_(fileOffset), path_(std::move(path)), depth_(depth) {}

    // Reads the next field into f. Returns false at the end of the message; errors for
    // over-long varints, lengths past the end, group or unknown wire types, field 0.
    Result<bool> next(ProtoField& f);

    // A reader for a nested message held in a Len field, one level deeper; errors past kMaxProtoDepth.
    Result<ProtoReader> nested(const ProtoField& f, const char* what) const;

    // Decodes one varint from a packed repeated field; advances `pos`.
    static bool readVarint(std::span<const std::byte> b, size_t& pos, uint64_t& out);

    uint64_t fileOffsetOf(const std::byte* p) const { return base_ + uint64_t(p - buf_.data()); }
    // File offset of the next field, so after next(f) a field spans [f.offset, position()).
    uint64_t position() const { return base_ + pos_; }
    int depth() const { return depth_; }
    const std::string& path() const { return path_; }
    Error error(std::string code, std::string msg, uint64_t at, std::string tensor = {}) const;

private:
    std::span<const std::byte> buf_;
    uint64_t base_;
    std::string path_;
    int depth_;
    size_t pos_ = 0;
};

// Calls fn(field) for each field of r's message in turn; the first error, from the wire or
// from fn (a Status), ends the walk.
template <class Fn>
Status forEachField(ProtoReader& r, Fn&& fn)
{
    ProtoField f;
    for (;;) {
        auto more = r.next(f);
        if (!more)
            return more.error();
        if (!*more)
            return Ok{};
        if (Status s = fn(f); !s)
            return s;
    }
}

}  // namespace quantlens
