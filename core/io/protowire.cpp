#include "io/protowire.h"

#include <cstring>

namespace quantlens {

const char* wireTypeName(WireType t)
{
    switch (t) {
    case WireType::Varint: return "varint";
    case WireType::Fixed64: return "64-bit";
    case WireType::Len: return "length-delimited";
    case WireType::Fixed32: return "32-bit";
    }
    return "?";
}

bool ProtoReader::readVarint(std::span<const std::byte> b, size_t& pos, uint64_t& out)
{
    uint64_t v = 0;
    // A uint64 needs at most 10 bytes, and the 10th may only carry the top bit.
    for (int i = 0; i < 10; ++i) {
        if (pos >= b.size())
            return false;
        const uint8_t c = std::to_integer<uint8_t>(b[pos++]);
        if (i == 9 && c > 1)
            return false;
        v |= uint64_t(c & 0x7f) << (7 * i);
        if ((c & 0x80) == 0) {
            out = v;
            return true;
        }
    }
    return false;
}

Error ProtoReader::error(std::string code, std::string msg, uint64_t at, std::string tensor) const
{
    return makeError(std::move(code), std::move(msg), path_, int64_t(at), std::move(tensor));
}

Result<bool> ProtoReader::next(ProtoField& f)
{
    if (pos_ >= buf_.size())
        return false;
    const uint64_t at = base_ + pos_;
    uint64_t tag = 0;
    if (!readVarint(buf_, pos_, tag))
        return error("bad-varint", "over-long or truncated varint in a field tag", at);
    const uint64_t number = tag >> 3;
    const unsigned wire = unsigned(tag & 7);
    if (number == 0 || number > 0x1fffffff)
        return error("bad-field", "invalid protobuf field number " + std::to_string(number), at);
    f = ProtoField{};
    f.number = uint32_t(number);
    f.offset = at;
    switch (wire) {
    case 0:
        f.type = WireType::Varint;
        if (!readVarint(buf_, pos_, f.varint))
            return error("bad-varint", "over-long or truncated varint in field " + std::to_string(number), at);
        return true;
    case 1:
    case 5: {
        const size_t n = wire == 1 ? 8 : 4;
        if (buf_.size() - pos_ < n)
            return error("truncated", "message ends inside field " + std::to_string(number), at);
        uint64_t v = 0;
        for (size_t i = 0; i < n; ++i)
            v |= uint64_t(std::to_integer<uint8_t>(buf_[pos_ + i])) << (8 * i);
        pos_ += n;
        f.type = wire == 1 ? WireType::Fixed64 : WireType::Fixed32;
        f.varint = v;
        return true;
    }
    case 2: {
        uint64_t len = 0;
        if (!readVarint(buf_, pos_, len))
            return error("bad-varint", "over-long or truncated length of field " + std::to_string(number), at);
        if (len > buf_.size() - pos_)
            return error("truncated",
                         "field " + std::to_string(number) + " claims " + std::to_string(len) + " bytes but only " +
                             std::to_string(buf_.size() - pos_) + " remain",
                         at);
        f.type = WireType::Len;
        f.bytes = buf_.subspan(pos_, size_t(len));
        pos_ += size_t(len);
        return true;
    }
    default:
        return error("bad-wire-type", "unsupported protobuf wire type " + std::to_string(wire) + " in field " + std::to_string(number), at);
    }
}

Result<ProtoReader> ProtoReader::nested(const ProtoField& f, const char* what) const
{
    if (f.type != WireType::Len)
        return error("bad-wire-type", std::string(what) + " has wire type " + wireTypeName(f.type) + ", expected length-delimited", f.offset);
    if (depth_ + 1 > kMaxProtoDepth)
        return error("too-deep", std::string(what) + " is nested deeper than " + std::to_string(kMaxProtoDepth) + " messages", f.offset);
    return ProtoReader(f.bytes, fileOffsetOf(f.bytes.data()), path_, depth_ + 1);
}

}  // namespace quantlens
