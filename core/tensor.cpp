#include "tensor.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "halffloat.h"
#include "packedweight.h"
#include "truncationguard.h"

#include <sys/mman.h>
#include <unistd.h>

namespace quantlens {

int64_t Tensor::numel() const
{
    auto n = checkedNumel(shape.data(), shape.size());
    return n ? *n : 0;
}

namespace {

template <class T>
T loadScalar(const std::byte* p, bool swap)
{
    T v;
    if (!swap) {
        std::memcpy(&v, p, sizeof(T));
    } else {
        std::byte tmp[sizeof(T)];
        for (size_t i = 0; i < sizeof(T); ++i)
            tmp[i] = p[sizeof(T) - 1 - i];
        std::memcpy(&v, tmp, sizeof(T));
    }
    return v;
}

float scalarToFloat(DType t, const std::byte* p, bool swap)
{
    switch (t) {
    case DType::F64: {
        // Out-of-range double -> float is undefined behaviour in C++; IEEE gives +-inf.
        const double d = loadScalar<double>(p, swap);
        if (d > double(std::numeric_limits<float>::max()))
            return std::numeric_limits<float>::infinity();
        if (d < -double(std::numeric_limits<float>::max()))
            return -std::numeric_limits<float>::infinity();
        return static_cast<float>(d);
    }
    case DType::F32: return loadScalar<float>(p, swap);
    case DType::F16: return halfToFloat(loadScalar<uint16_t>(p, swap));
    case DType::BF16: return bf16ToFloat(loadScalar<uint16_t>(p, swap));
    case DType::I64: return static_cast<float>(loadScalar<int64_t>(p, swap));
    case DType::I32: return static_cast<float>(loadScalar<int32_t>(p, swap));
    case DType::I16: return static_cast<float>(loadScalar<int16_t>(p, swap));
    case DType::I8: return static_cast<float>(loadScalar<int8_t>(p, swap));
    case DType::U64: return static_cast<float>(loadScalar<uint64_t>(p, swap));
    case DType::U32: return static_cast<float>(loadScalar<uint32_t>(p, swap));
    case DType::U16: return static_cast<float>(loadScalar<uint16_t>(p, swap));
    case DType::U8: return static_cast<float>(loadScalar<uint8_t>(p, swap));
    case DType::BOOL: return std::to_integer<uint8_t>(*p) ? 1.0f : 0.0f;
    default: return 0.0f;
    }
}

uint16_t le16(const std::byte* p) { return loadScalar<uint16_t>(p, std::endian::native != std::endian::little); }
uint32_t le32(const std::byte* p) { return loadScalar<uint32_t>(p, std::endian::native != std::endian::little); }

inline uint8_t u8(const std::byte* p) { return std::to_integer<uint8_t>(*p); }

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K super-block, packed into 12 bytes:
// sub-blocks 0-3 in the low 6 bits of bytes j and j+4, sub-blocks 4-7 in the nibbles of
// byte j+4 with their top two bits in the spare bits of bytes j-4 and j.
void scaleMinK4(int j, const std::byte* q, int& sc, int& m)
{
    if (j < 4) {
        sc = u8(q + j) & 63;
        m = u8(q + j + 4) & 63;
    } else {
        sc = (u8(q + j + 4) & 0xF) | ((u8(q + j - 4) >> 6) << 4);
        m = (u8(q + j + 4) >> 4) | ((u8(q + j) >> 6) << 4);
    }
}

// ggml k-quant super-blocks (ggml-common.h block_q2_K ... block_q6_K), 256 values, decoded
// with the arithmetic of ggml's dequantize_row_q*_K in the same order, so the floats match.
void decodeKBlock(DType t, const std::byte* b, float* y)
{
    switch (t) {
    case DType::Q2_K: {  // scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin
        const std::byte* sc = b;
        const std::byte* q = b + 16;
        const float d = halfToFloat(le16(b + 80)), dmin = halfToFloat(le16(b + 82));
        int is = 0;
        for (int n = 0; n < 256; n += 128, q += 32)
            for (int shift = 0; shift < 8; shift += 2)
                for (int half = 0; half < 2; ++half) {
                    const uint8_t s = u8(sc + is++);
                    const float dl = d * float(s & 0xF), ml = dmin * float(s >> 4);
                    for (int l = 0; l < 16; ++l)
                        *y++ = dl * float((u8(q + l + 16 * half) >> shift) & 3) - ml;
                }
        break;
    }
    case DType::Q3_K: {  // hmask[32], qs[64], scales[12] (6-bit, packed), d
        const std::byte* hm = b;
        const std::byte* q = b + 32;
        const std::byte* s = b + 96;
        const float d = halfToFloat(le16(b + 108));
        int8_t scales[16];
        for (int i = 0; i < 16; ++i) {
            const int lo = i < 8 ? u8(s + i) & 0xF : u8(s + i - 8) >> 4;
            const int hi = (u8(s + 8 + (i & 3)) >> (2 * (i >> 2))) & 3;
            scales[i] = int8_t((lo | (hi << 4)) - 32);
        }
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < 256; n += 128, q += 32)
            for (int shift = 0; shift < 8; shift += 2, m = uint8_t(m << 1))
                for (int half = 0; half < 2; ++half) {
                    const float dl = d * float(scales[is++]);
                    for (int l = 16 * half; l < 16 * half + 16; ++l)
                        *y++ = dl * float(int((u8(q + l) >> shift) & 3) - ((u8(hm + l) & m) ? 0 : 4));
                }
        break;
    }
    case DType::Q4_K:    // d, dmin, scales[12], qs[128]
    case DType::Q5_K: {  // d, dmin, scales[12], qh[32], qs[128]
        const bool five = t == DType::Q5_K;
        const float d = halfToFloat(le16(b)), dmin = halfToFloat(le16(b + 2));
        const std::byte* scales = b + 4;
        const std::byte* qh = b + 16;
        const std::byte* q = b + (five ? 48 : 16);
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc, m;
            scaleMinK4(j, scales, sc, m);
            const float d1 = d * float(sc), m1 = dmin * float(m);
            scaleMinK4(j + 1, scales, sc, m);
            const float d2 = d * float(sc), m2 = dmin * float(m);
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * float((u8(q + l) & 0xF) + (five && ((u8(qh + l) >> j) & 1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * float((u8(q + l) >> 4) + (five && ((u8(qh + l) >> (j + 1)) & 1) ? 16 : 0)) - m2;
        }
        break;
    }
    case DType::Q6_K: {  // ql[128], qh[64], scales[16] (int8), d
        const std::byte* ql = b;
        const std::byte* qh = b + 128;
        const std::byte* sc = b + 192;
        const float d = halfToFloat(le16(b + 208));
        for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8, y += 128)
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const uint8_t h = u8(qh + l);
                const int q1 = int((u8(ql + l) & 0xF) | ((h & 3) << 4)) - 32;
                const int q2 = int((u8(ql + l + 32) & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                const int q3 = int((u8(ql + l) >> 4) | (((h >> 4) & 3) << 4)) - 32;
                const int q4 = int((u8(ql + l + 32) >> 4) | (((h >> 6) & 3) << 4)) - 32;
                const auto s = [&](int k) { return float(static_cast<int8_t>(u8(sc + is + k))); };
                y[l] = d * s(0) * float(q1);
                y[l + 32] = d * s(2) * float(q2);
                y[l + 64] = d * s(4) * float(q3);
                y[l + 96] = d * s(6) * float(q4);
            }
        break;
    }
    default: break;
    }
}

// ggml block decoders: the layouts of ggml-common.h (block_q8_0 etc.), per 32 values.
void decodeBlock(DType t, const std::byte* b, float* out)
{
    if (dtypeInfo(t).blockElems == 256) {
        decodeKBlock(t, b, out);
        return;
    }
    const float d = halfToFloat(le16(b));
    switch (t) {
    case DType::Q8_0:
        for (int i = 0; i < 32; ++i)
            out[i] = d * static_cast<float>(static_cast<int8_t>(std::to_integer<uint8_t>(b[2 + i])));
        break;
    case DType::Q4_0:
        for (int i = 0; i < 16; ++i) {
            const uint8_t v = std::to_integer<uint8_t>(b[2 + i]);
            out[i] = d * static_cast<float>(int(v & 0x0f) - 8);
            out[i + 16] = d * static_cast<float>(int(v >> 4) - 8);
        }
        break;
    case DType::Q4_1: {
        const float m = halfToFloat(le16(b + 2));
        for (int i = 0; i < 16; ++i) {
            const uint8_t v = std::to_integer<uint8_t>(b[4 + i]);
            out[i] = d * static_cast<float>(v & 0x0f) + m;
            out[i + 16] = d * static_cast<float>(v >> 4) + m;
        }
        break;
    }
    case DType::Q5_0: {
        const uint32_t qh = le32(b + 2);
        for (int i = 0; i < 16; ++i) {
            const uint8_t v = std::to_integer<uint8_t>(b[6 + i]);
            const int x0 = int((v & 0x0f) | (((qh >> i) & 1u) << 4)) - 16;
            const int x1 = int((v >> 4) | (((qh >> (i + 16)) & 1u) << 4)) - 16;
            out[i] = d * static_cast<float>(x0);
            out[i + 16] = d * static_cast<float>(x1);
        }
        break;
    }
    case DType::Q5_1: {
        const float m = halfToFloat(le16(b + 2));
        const uint32_t qh = le32(b + 4);
        for (int i = 0; i < 16; ++i) {
            const uint8_t v = std::to_integer<uint8_t>(b[8 + i]);
            const int x0 = int((v & 0x0f) | (((qh >> i) & 1u) << 4));
            const int x1 = int((v >> 4) | (((qh >> (i + 16)) & 1u) << 4));
            out[i] = d * static_cast<float>(x0) + m;
            out[i + 16] = d * static_cast<float>(x1) + m;
        }
        break;
    }
    default: break;
    }
}

// The per-element switch hoisted out of the loop: with T known each loop is a plain
// load-convert-store that GCC vectorises (bf16 is a shift), instead of a switch per value.
template <DType T>
void convertRun(const std::byte* p, int64_t n, int64_t es, bool swap, float* out)
{
    if (T == DType::BF16 && !swap) {
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            out[i] = std::bit_cast<float>(uint32_t(h) << 16);
        }
        return;
    }
    for (int64_t i = 0; i < n; ++i)
        out[i] = scalarToFloat(T, p + i * es, swap);
}

void convertContiguous(DType t, const std::byte* p, int64_t n, int64_t es, bool swap, float* out)
{
    switch (t) {
    case DType::BF16: return convertRun<DType::BF16>(p, n, es, swap, out);
    case DType::F16: return convertRun<DType::F16>(p, n, es, swap, out);
    case DType::F32: return convertRun<DType::F32>(p, n, es, swap, out);
    case DType::F64: return convertRun<DType::F64>(p, n, es, swap, out);
    case DType::I8: return convertRun<DType::I8>(p, n, es, swap, out);
    case DType::U8: return convertRun<DType::U8>(p, n, es, swap, out);
    default:
        for (int64_t i = 0; i < n; ++i)
            out[i] = scalarToFloat(t, p + i * es, swap);
    }
}

}  // namespace

namespace {

// The conversion proper; toFloat adds the check that the bytes it read were the file's.
Status convert(const Tensor& t, std::span<float> out)
{
    const std::string& name = t.name;
    const DType dtype = t.dtype;
    const std::vector<int64_t>& shape = t.shape;
    const std::span<const std::byte> data = t.data;
    const std::vector<int64_t>& strides = t.strides;
    const auto& opaqueType = t.opaqueType;
    const bool bigEndian = t.bigEndian;
    const DTypeInfo& in = dtypeInfo(dtype);
    auto n = checkedNumel(shape.data(), shape.size());
    if (!n)
        return makeError("bad-shape", "shape " + shapeString(shape) + " overflows", {}, -1, name);
    if (dtype == DType::Opaque)
        return makeError("not-decoded", "type " + opaqueType + " is not decoded", {}, -1, name);
    if (static_cast<int64_t>(out.size()) != *n)
        return makeError("internal", "output buffer has the wrong size", {}, -1, name);
    if (dtype == DType::Packed) {
        if (!t.packed || t.packed->out * t.packed->in != *n)
            return makeError("internal", "packed weight without its parts", {}, -1, name);
        return t.packed->decode(out, name);
    }
    const bool swap = bigEndian != (std::endian::native == std::endian::big);

    if (in.isBlock) {
        if (!strides.empty())
            return makeError("bad-layout", "strided block tensors are not supported", {}, -1, name);
        auto bytes = byteSizeFor(dtype, *n);
        if (!bytes)
            return makeError("bad-shape", "element count " + std::to_string(*n) + " is not a multiple of the block size " + std::to_string(in.blockElems), {}, -1, name);
        if (static_cast<int64_t>(data.size()) < *bytes)
            return makeError("truncated", "needs " + std::to_string(*bytes) + " bytes, has " + std::to_string(data.size()), {}, -1, name);
        const int64_t blocks = *n / in.blockElems;
        for (int64_t b = 0; b < blocks; ++b)
            decodeBlock(dtype, data.data() + b * in.blockBytes, out.data() + b * in.blockElems);
        return Ok{};
    }

    const int64_t es = in.blockBytes;
    if (strides.empty()) {
        if (static_cast<int64_t>(data.size()) / es < *n)
            return makeError("truncated", "needs " + std::to_string(*n * es) + " bytes, has " + std::to_string(data.size()), {}, -1, name);
        const std::byte* p = data.data();
        if (dtype == DType::F32 && !swap) {
            if (*n == 0)
                return Ok{};  // out.data() may be null then, and memcpy(nullptr, ...) is UB even for 0 bytes
            std::memcpy(out.data(), p, size_t(*n) * 4);
            return Ok{};
        }
        convertContiguous(dtype, p, *n, es, swap, out.data());
        return Ok{};
    }

    // Strided view: check the furthest reachable element before touching memory.
    if (strides.size() != shape.size())
        return makeError("bad-layout", "strides and shape differ in rank", {}, -1, name);
    if (*n == 0)
        return Ok{};
    int64_t maxOff = 0;
    for (size_t d = 0; d < shape.size(); ++d) {
        if (strides[d] < 0)
            return makeError("bad-layout", "negative stride", {}, -1, name);
        if (shape[d] > 1 && strides[d] > (INT64_MAX - maxOff) / (shape[d] - 1))
            return makeError("bad-layout", "strides overflow", {}, -1, name);
        maxOff += strides[d] * (shape[d] - 1);
    }
    if (maxOff >= static_cast<int64_t>(data.size()) / es)
        return makeError("truncated", "strided view reaches element " + std::to_string(maxOff) + " beyond its storage", {}, -1, name);
    std::vector<int64_t> idx(shape.size(), 0);
    for (int64_t i = 0; i < *n; ++i) {
        int64_t off = 0;
        for (size_t d = 0; d < shape.size(); ++d)
            off += idx[d] * strides[d];
        out[size_t(i)] = scalarToFloat(dtype, data.data() + off * es, swap);
        for (size_t d = shape.size(); d-- > 0;) {
            if (++idx[d] < shape[d])
                break;
            idx[d] = 0;
        }
    }
    return Ok{};
}

}  // namespace

Status Tensor::toFloat(std::span<float> out) const
{
    Status s = convert(*this, out);
    // A mapped file that shrank mid-read gave zeros instead of a SIGBUS: say so, and
    // say it even when the conversion itself failed on those zeros.
    if (Status c = truncationguard::checkRange(data.data(), data.size(), name); !c)
        return c;
    if (packed)
        for (const auto& r : packed->ranges())
            if (Status c = truncationguard::checkRange(r.data(), r.size(), name); !c)
                return c;
    return s;
}

Result<std::vector<float>> Tensor::toFloatReleasingPages() const
{
    auto n = checkedNumel(shape.data(), shape.size());
    const DTypeInfo& in = dtypeInfo(dtype);
    if (!n || dtype == DType::Opaque || in.isBlock || !strides.empty() || *n == 0
        || int64_t(data.size()) / in.blockBytes < *n || !truncationguard::insideMapping(data.data(), data.size()))
        return toFloat();  // nothing mapped to hand back, or a layout that converts in one go
    std::vector<float> v(static_cast<size_t>(*n));
    const int64_t es = in.blockBytes;
    const bool swap = bigEndian != (std::endian::native == std::endian::big);
    const auto page = uintptr_t(::sysconf(_SC_PAGESIZE));
    const uintptr_t first = (reinterpret_cast<uintptr_t>(data.data()) + page - 1) & ~(page - 1);
    uintptr_t released = first;
    constexpr int64_t kPiece = int64_t(1) << 22;  // values per piece: 16 MB of float32
    for (int64_t i = 0; i < *n; i += kPiece) {
        const int64_t len = std::min(kPiece, *n - i);
        const std::byte* p = data.data() + i * es;
        if (dtype == DType::F32 && !swap)
            std::memcpy(v.data() + i, p, size_t(len) * 4);
        else
            convertContiguous(dtype, p, len, es, swap, v.data() + i);
        // Whole pages only, and only this tensor's: a neighbour's bytes on a shared page stay.
        const uintptr_t to = (reinterpret_cast<uintptr_t>(p) + uintptr_t(len * es)) & ~(page - 1);
        if (to > released) {
            ::madvise(reinterpret_cast<void*>(released), to - released, MADV_DONTNEED);
            released = to;
        }
    }
    if (Status c = truncationguard::checkRange(data.data(), data.size(), name); !c)
        return c.error();
    return v;
}

Result<std::vector<float>> Tensor::toFloat() const
{
    auto n = checkedNumel(shape.data(), shape.size());
    if (!n)
        return makeError("bad-shape", "shape " + shapeString(shape) + " overflows", {}, -1, name);
    std::vector<float> v(static_cast<size_t>(*n));
    Status s = toFloat(std::span<float>(v));
    if (!s)
        return s.error();
    return v;
}

Tensor makeOwnedTensor(std::string name, DType dtype, std::vector<int64_t> shape,
                       std::vector<std::byte> bytes)
{
    auto owned = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
    Tensor t;
    t.name = std::move(name);
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.data = std::span<const std::byte>(owned->data(), owned->size());
    t.keepAlive = owned;
    return t;
}

Tensor makeFloatTensor(std::string name, std::vector<int64_t> shape, std::vector<float> values)
{
    auto owned = std::make_shared<const std::vector<float>>(std::move(values));
    Tensor t;
    t.name = std::move(name);
    t.dtype = DType::F32;
    t.shape = std::move(shape);
    t.data = std::as_bytes(std::span<const float>(owned->data(), owned->size()));
    t.keepAlive = owned;
    return t;
}

std::string shapeString(const std::vector<int64_t>& shape)
{
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i)
            s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

int64_t Tensor::storedBytes() const
{
    if (dtype == DType::Packed && packed)
        return packed->storedBytes();
    auto b = byteSizeFor(dtype, numel());
    return b ? *b : static_cast<int64_t>(data.size());
}

MatrixView matrixView(const Tensor& t)
{
    const int64_t numel = t.numel();
    MatrixView v;
    if (t.rank() >= 2 && t.layout == Layout::InOut && t.shape.back() > 0) {
        v.rows = t.shape.back();
        v.cols = numel / v.rows;
        v.transposed = true;
    } else if (t.rank() == 2) {
        v.rows = t.shape[0];
        v.cols = t.shape[1];
    } else if (t.rank() >= 3 && t.shape[0] > 0) {
        v.rows = t.shape[0];
        v.cols = numel / t.shape[0];
    } else {
        v.rows = 1;
        v.cols = numel;
    }
    return v;
}

void copyAsView(const MatrixView& v, std::span<const float> stored, std::span<float> out)
{
    if (!v.transposed) {
        std::copy(stored.begin(), stored.end(), out.begin());
        return;
    }
    for (int64_t i = 0; i < v.cols; ++i)
        for (int64_t o = 0; o < v.rows; ++o)
            out[size_t(o * v.cols + i)] = stored[size_t(i * v.rows + o)];
}

}  // namespace quantlens
