#include "runner/npyio.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "dtype.h"

namespace quantlens::npyio {

namespace {

int64_t itemSize(const std::string& d)
{
    if (d == "<f4" || d == "<i4")
        return 4;
    if (d == "<f8")
        return 8;
    if (d == "|u1" || d == "|i1" || d == "<u1" || d == "<i1")
        return 1;
    return 0;
}

// Value of `key` in the header dict: the text after "'key':" up to the next top-level comma.
bool dictValue(const std::string& h, const std::string& key, std::string& out)
{
    const std::string k = "'" + key + "':";
    const size_t p = h.find(k);
    if (p == std::string::npos)
        return false;
    size_t i = p + k.size();
    while (i < h.size() && h[i] == ' ')
        ++i;
    if (i < h.size() && h[i] == '(') {
        const size_t e = h.find(')', i);
        if (e == std::string::npos)
            return false;
        out = h.substr(i, e - i + 1);
        return true;
    }
    size_t e = i;
    while (e < h.size() && h[e] != ',' && h[e] != '}')
        ++e;
    out = h.substr(i, e - i);
    while (!out.empty() && out.back() == ' ')
        out.pop_back();
    return true;
}

}  // namespace

int64_t Array::numel() const
{
    auto n = checkedNumel(shape.data(), shape.size());
    return n ? *n : -1;
}

Result<Array> read(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    if (!f)
        return makeError("open-failed", "cannot open the file", path);
    f.seekg(0, std::ios::end);
    const int64_t size = int64_t(f.tellg());
    f.seekg(0);
    unsigned char pre[10];
    if (size < 10 || !f.read(reinterpret_cast<char*>(pre), 10))
        return makeError("truncated", "shorter than an .npy preamble", path, 0);
    if (std::memcmp(pre, "\x93NUMPY", 6) != 0)
        return makeError("bad-magic", "not an .npy file (magic bytes missing)", path, 0);
    int64_t headerLen = 0, dataStart = 0;
    if (pre[6] == 1) {
        headerLen = pre[8] | (pre[9] << 8);
        dataStart = 10 + headerLen;
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char extra[2];
        if (!f.read(reinterpret_cast<char*>(extra), 2))
            return makeError("truncated", "truncated header length", path, 10);
        headerLen = int64_t(pre[8]) | (int64_t(pre[9]) << 8) | (int64_t(extra[0]) << 16) | (int64_t(extra[1]) << 24);
        dataStart = 12 + headerLen;
    } else {
        return makeError("bad-version", "unsupported .npy version " + std::to_string(pre[6]), path, 6);
    }
    if (dataStart > size)
        return makeError("truncated", "header of " + std::to_string(headerLen) + " bytes runs past the end of the file", path, 8);
    std::string h(size_t(headerLen), '\0');
    if (!f.read(h.data(), headerLen))
        return makeError("truncated", "cannot read the header", path, dataStart - headerLen);

    Array a;
    std::string descr, order, shape;
    if (!dictValue(h, "descr", descr) || !dictValue(h, "fortran_order", order) || !dictValue(h, "shape", shape))
        return makeError("bad-header", "header lacks descr, fortran_order or shape", path, dataStart - headerLen);
    if (descr.size() < 2 || descr.front() != '\'' || descr.back() != '\'')
        return makeError("bad-header", "descr is not a quoted string", path);
    a.descr = descr.substr(1, descr.size() - 2);
    const int64_t item = itemSize(a.descr);
    if (item == 0)
        return makeError("unsupported", "dtype '" + a.descr + "' is not supported here (float32/64, int8, uint8, int32)", path);
    if (order != "False")
        return makeError("unsupported", "Fortran-ordered arrays are not supported here", path);
    if (shape.size() < 2 || shape.front() != '(')
        return makeError("bad-header", "shape is not a tuple", path);
    for (size_t i = 1; i + 1 < shape.size();) {
        while (i + 1 < shape.size() && (shape[i] == ' ' || shape[i] == ','))
            ++i;
        if (i + 1 >= shape.size())
            break;
        int64_t v = 0;
        bool any = false;
        while (i + 1 < shape.size() && shape[i] >= '0' && shape[i] <= '9') {
            if (v > (std::numeric_limits<int64_t>::max() - 9) / 10)
                return makeError("bad-header", "shape dimension overflows", path);
            v = v * 10 + (shape[i] - '0');
            ++i;
            any = true;
        }
        if (!any)
            return makeError("bad-header", "shape holds a non-integer: " + shape, path);
        a.shape.push_back(v);
    }
    const auto n = checkedNumel(a.shape.data(), a.shape.size());
    if (!n || *n > std::numeric_limits<int64_t>::max() / item)
        return makeError("bad-header", "shape " + shape + " overflows", path);
    const int64_t bytes = *n * item;
    if (size - dataStart != bytes)
        return makeError(size - dataStart < bytes ? "truncated" : "trailing-bytes",
                         "payload is " + std::to_string(size - dataStart) + " bytes, the header promises " +
                             std::to_string(bytes),
                         path, dataStart);
    a.data.resize(size_t(bytes));
    if (bytes > 0 && !f.read(reinterpret_cast<char*>(a.data.data()), bytes))
        return makeError("truncated", "cannot read the payload", path, dataStart);
    return a;
}

Result<std::vector<float>> readFloat32(const std::string& path, std::vector<int64_t>& shape)
{
    auto a = read(path);
    if (!a)
        return a.error();
    const int64_t n = a->numel();
    std::vector<float> v(static_cast<size_t>(n));
    if (a->descr == "<f4") {
        std::memcpy(v.data(), a->data.data(), size_t(n) * 4);
    } else if (a->descr == "<f8") {
        for (int64_t i = 0; i < n; ++i) {
            double d;
            std::memcpy(&d, a->data.data() + i * 8, 8);
            v[size_t(i)] = float(d);
        }
    } else {
        return makeError("bad-dtype", "expected float32 or float64 values, the file holds '" + a->descr + "'", path);
    }
    shape = a->shape;
    return v;
}

Status writeFloat32(const std::string& path, const std::vector<int64_t>& shape, std::span<const float> values)
{
    const auto n = checkedNumel(shape.data(), shape.size());
    if (!n || *n != int64_t(values.size()))
        return makeError("internal", "shape does not match the number of values", path);
    std::string dims;
    for (size_t i = 0; i < shape.size(); ++i)
        dims += std::to_string(shape[i]) + (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
    std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    // Pad with spaces so magic + length + header + '\n' is a multiple of 64, as numpy does.
    while ((10 + h.size() + 1) % 64 != 0)
        h += ' ';
    h += '\n';
    const std::string tmp = path + ".part";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f)
            return makeError("write-failed", "cannot create the file", tmp);
        const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(h.size() & 0xFF),
                                       static_cast<unsigned char>(h.size() >> 8)};
        f.write(reinterpret_cast<const char*>(pre), 10);
        f.write(h.data(), std::streamsize(h.size()));
        f.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
        f.flush();
        if (!f) {
            f.close();
            std::remove(tmp.c_str());
            return makeError("write-failed", "writing failed (disk full?)", tmp);
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        return makeError("write-failed", "cannot rename the finished file into place", path);
    }
    return Ok{};
}

}  // namespace quantlens::npyio
