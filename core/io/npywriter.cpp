#include "io/npywriter.h"

#include <cstring>

#include "tensor.h"

namespace quantlens {

std::string npyDescr(DType t)
{
    switch (t) {
    case DType::F64: return "<f8";
    case DType::F32: return "<f4";
    case DType::F16: return "<f2";
    case DType::I64: return "<i8";
    case DType::I32: return "<i4";
    case DType::I16: return "<i2";
    case DType::I8: return "|i1";
    case DType::U64: return "<u8";
    case DType::U32: return "<u4";
    case DType::U16: return "<u2";
    case DType::U8: return "|u1";
    case DType::BOOL: return "|b1";
    default: return {};  // BF16 has no numpy dtype; block types are not arrays of scalars
    }
}

std::vector<std::byte> npyHeader(const std::string& descr, const std::vector<int64_t>& shape)
{
    std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (";
    for (size_t i = 0; i < shape.size(); ++i) {
        dict += std::to_string(shape[i]);
        if (i + 1 < shape.size() || shape.size() == 1)
            dict += ",";  // a 1-tuple needs its comma: (3,)
        if (i + 1 < shape.size())
            dict += " ";
    }
    dict += "), }";

    // Version 1.0 stores the header length in 2 bytes, 2.0 in 4.
    const bool v2 = dict.size() + 1 + 10 > 65535;
    const size_t prefix = v2 ? 12 : 10;
    size_t total = prefix + dict.size() + 1;
    total = (total + 63) / 64 * 64;
    dict.append(total - prefix - dict.size() - 1, ' ');
    dict += '\n';
    const size_t hlen = dict.size();

    std::vector<std::byte> out(prefix + hlen);
    const unsigned char magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    std::memcpy(out.data(), magic, 6);
    out[6] = std::byte(v2 ? 2 : 1);
    out[7] = std::byte(0);
    if (v2) {
        for (int i = 0; i < 4; ++i)
            out[8 + i] = std::byte((hlen >> (8 * i)) & 0xff);
    } else {
        out[8] = std::byte(hlen & 0xff);
        out[9] = std::byte((hlen >> 8) & 0xff);
    }
    std::memcpy(out.data() + prefix, dict.data(), hlen);
    return out;
}

Status writeNpy(AtomicFile& out, DType t, const std::vector<int64_t>& shape, std::span<const std::byte> data)
{
    const std::string descr = npyDescr(t);
    if (descr.empty())
        return makeError("unsupported-dtype", "type " + std::string(dtypeName(t)) + " has no .npy equivalent", out.finalPath());
    auto n = checkedNumel(shape.data(), shape.size());
    auto bytes = n ? byteSizeFor(t, *n) : std::nullopt;
    if (!bytes || *bytes != static_cast<int64_t>(data.size()))
        return makeError("internal", "array data does not match shape " + shapeString(shape), out.finalPath());
    const auto header = npyHeader(descr, shape);
    if (Status s = out.write(header); !s)
        return s;
    return out.write(data);
}

Status writeNpyFile(const std::string& path, DType t, const std::vector<int64_t>& shape,
                    std::span<const std::byte> data, const std::vector<std::string>& inputs)
{
    auto f = AtomicFile::create(path, inputs);
    if (!f)
        return f.error();
    if (Status s = writeNpy(*f, t, shape, data); !s)
        return s;
    return f->commit();
}

}  // namespace quantlens
