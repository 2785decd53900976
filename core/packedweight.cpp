#include "packedweight.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "halffloat.h"

namespace quantlens {

namespace {

uint32_t le32(const std::byte* p)
{
    uint32_t v;
    std::memcpy(&v, p, 4);
    if constexpr (std::endian::native == std::endian::big)
        v = ((v & 0xffu) << 24) | ((v & 0xff00u) << 8) | ((v >> 8) & 0xff00u) | (v >> 24);
    return v;
}

bool isInt(DType d)
{
    switch (d) {
    case DType::I8: case DType::I16: case DType::I32: case DType::I64:
    case DType::U8: case DType::U16: case DType::U32: return true;
    default: return false;
    }
}

bool isFloat(DType d) { return d == DType::F16 || d == DType::BF16 || d == DType::F32 || d == DType::F64; }

std::string num(int64_t v) { return std::to_string(v); }

// Ok when `t` is a plain contiguous array of `want` elements whose bytes are all there.
Status checkPart(const Tensor& t, const char* what, int64_t want, const std::string& name)
{
    auto fail = [&](const std::string& why) { return makeError("bad-packed", std::string(what) + " '" + t.name + "' " + why, {}, -1, name); };
    if (!t.strides.empty())
        return fail("is not contiguous");
    const auto n = checkedNumel(t.shape.data(), t.shape.size());
    if (!n)
        return fail("has an overflowing shape " + shapeString(t.shape));
    if (*n != want)
        return fail("has shape " + shapeString(t.shape) + " (" + num(*n) + " values); " + num(want) + " expected");
    const auto bytes = byteSizeFor(t.dtype, *n);
    if (!bytes || int64_t(t.data.size()) < *bytes)
        return fail("is truncated: " + num(int64_t(t.data.size())) + " bytes for " + num(*n) + " " + std::string(dtypeName(t.dtype)) + " values");
    return Ok{};
}

int64_t wordsFor(int64_t values, int perWord) { return (values + perWord - 1) / perWord; }

// bfloat16 rounding as torch does it (round to nearest even; NaN stays NaN).
float roundBf16(float f)
{
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return f;
    u += 0x7fffu + ((u >> 16) & 1u);
    return std::bit_cast<float>(u & 0xffff0000u);
}

// float16 rounding (nearest even) kept in a float: in float16's normal range it is
// rounding the 23-bit mantissa to 10 bits in place; the rest takes the exact conversion.
float roundF16(float f)
{
    uint32_t u = std::bit_cast<uint32_t>(f);
    const uint32_t a = u & 0x7fffffffu;
    if (a >= 0x38800000u && a < 0x477ff000u) {  // [2^-14, 65520): stays a normal float16
        u += 0xfffu + ((u >> 13) & 1u);
        return std::bit_cast<float>(u & 0xffffe000u);
    }
    return halfToFloat(floatToHalf(f));
}

}  // namespace

Status PackedWeight::check(const std::string& name) const
{
    auto fail = [&](const std::string& why) { return makeError("bad-packed", why, {}, -1, name); };
    if (out <= 0 || in <= 0)
        return fail("logical shape [" + num(out) + ", " + num(in) + "] is empty or negative");
    if (!checkedNumel(std::vector<int64_t>{out, in}.data(), 2))
        return fail("logical shape [" + num(out) + ", " + num(in) + "] overflows");
    if (bits < 1 || bits > 8)
        return fail(num(bits) + "-bit codes are not supported (1 to 8)");
    const int pf = 32 / bits;
    switch (codes) {
    case Codes::Plain:
        if (!isInt(q.dtype))
            return fail("weight '" + q.name + "' is " + std::string(dtypeName(q.dtype)) + ", not an integer type");
        if (q.shape != std::vector<int64_t>{out, in})
            return fail("weight '" + q.name + "' has shape " + shapeString(q.shape) + ", not [" + num(out) + ", " + num(in) + "]");
        if (Status s = checkPart(q, "weight", out * in, name); !s)
            return s;
        break;
    case Codes::PackedRows:
        if (q.dtype != DType::I32)
            return fail("packed weight '" + q.name + "' is " + std::string(dtypeName(q.dtype)) + ", not I32");
        if (q.shape != std::vector<int64_t>{out, wordsFor(in, pf)})
            return fail("packed weight '" + q.name + "' has shape " + shapeString(q.shape) + "; " + num(in) + " " + num(bits) +
                        "-bit values per row need [" + num(out) + ", " + num(wordsFor(in, pf)) + "]");
        if (Status s = checkPart(q, "packed weight", out * wordsFor(in, pf), name); !s)
            return s;
        break;
    case Codes::PackedCols:
        if (32 % bits != 0)
            return fail(num(bits) + "-bit GPTQ packing spans words and is not supported (2, 4 or 8 bits)");
        if (q.dtype != DType::I32)
            return fail("qweight '" + q.name + "' is " + std::string(dtypeName(q.dtype)) + ", not I32");
        if (in % pf != 0)
            return fail(num(in) + " inputs are not a whole number of " + num(pf) + "-value words");
        if (q.shape != std::vector<int64_t>{in / pf, out})
            return fail("qweight '" + q.name + "' has shape " + shapeString(q.shape) + ", not [" + num(in / pf) + ", " + num(out) + "]");
        if (Status s = checkPart(q, "qweight", out * in / pf, name); !s)
            return s;
        break;
    }

    if (!isFloat(scale.dtype))
        return fail("scale '" + scale.name + "' is " + std::string(dtypeName(scale.dtype)) + ", not a float type");
    if (scaleRows <= 0 || groups <= 0 || out % scaleRows != 0)
        return fail("scale '" + scale.name + "' has " + num(scaleRows) + " rows, which do not divide " + num(out) + " outputs");
    if (scaleGroupsMajor && scaleRows != out)
        return fail("internal: a [groups, out] scale has one row per output");
    if (groups > in)
        return fail("scale '" + scale.name + "' has " + num(groups) + " groups for " + num(in) + " inputs");
    if (gIdx.name.empty() && in % groups != 0)
        return fail("scale '" + scale.name + "' has " + num(groups) + " groups, which do not divide " + num(in) + " inputs");
    if (Status s = checkPart(scale, "scale", scaleRows * groups, name); !s)
        return s;

    switch (zeros) {
    case Zeros::None: break;
    case Zeros::Plain:
        if (!isInt(zero.dtype) && !isFloat(zero.dtype))
            return fail("zero point '" + zero.name + "' is " + std::string(dtypeName(zero.dtype)) + ", not a number type");
        if (Status s = checkPart(zero, "zero point", scaleRows * groups, name); !s)
            return s;
        break;
    case Zeros::CtPacked:
        if (zero.dtype != DType::I32)
            return fail("packed zero point '" + zero.name + "' is " + std::string(dtypeName(zero.dtype)) + ", not I32");
        if (zero.shape != std::vector<int64_t>{wordsFor(scaleRows, pf), groups})
            return fail("packed zero point '" + zero.name + "' has shape " + shapeString(zero.shape) + ", not [" +
                        num(wordsFor(scaleRows, pf)) + ", " + num(groups) + "]");
        if (Status s = checkPart(zero, "packed zero point", wordsFor(scaleRows, pf) * groups, name); !s)
            return s;
        break;
    case Zeros::GptqPacked:
        if (zero.dtype != DType::I32)
            return fail("qzeros '" + zero.name + "' is " + std::string(dtypeName(zero.dtype)) + ", not I32");
        if (out % pf != 0)
            return fail(num(out) + " outputs are not a whole number of " + num(pf) + "-value qzeros words");
        if (zero.shape != std::vector<int64_t>{groups, out / pf})
            return fail("qzeros '" + zero.name + "' has shape " + shapeString(zero.shape) + ", not [" + num(groups) + ", " + num(out / pf) + "]");
        if (Status s = checkPart(zero, "qzeros", groups * (out / pf), name); !s)
            return s;
        break;
    }

    if (!gIdx.name.empty()) {
        if (gIdx.dtype != DType::I32 && gIdx.dtype != DType::I64)
            return fail("g_idx '" + gIdx.name + "' is " + std::string(dtypeName(gIdx.dtype)) + ", not I32 or I64");
        if (Status s = checkPart(gIdx, "g_idx", in, name); !s)
            return s;
        auto g = gIdx.toFloat();
        if (!g)
            return g.error();
        bool unused = false;
        for (size_t i = 0; i < g->size(); ++i) {
            const float v = (*g)[i];
            if (v == -1.0f && gIdxColumnOrder) {
                unused = true;
                continue;
            }
            if (!(v >= 0.0f && v < float(groups)))
                return fail("g_idx '" + gIdx.name + "' puts input " + num(int64_t(i)) + " in group " +
                            (std::fabs(v) < 1e15f ? num(int64_t(v)) : std::string("beyond 10^15")) + ", outside the " + num(groups) +
                            " groups of its scale");
        }
        if (unused && in % groups != 0)
            return fail("scale '" + scale.name + "' has " + num(groups) + " groups, which do not divide " + num(in) + " inputs");
    }
    if (roundTo != DType::F32 && roundTo != DType::F16 && roundTo != DType::BF16)
        return fail("internal: results round to F32, F16 or BF16");
    return Ok{};
}

int64_t PackedWeight::storedBytes() const
{
    int64_t n = 0;
    for (const auto& r : ranges())
        n += int64_t(r.size());
    return n;
}

std::vector<std::span<const std::byte>> PackedWeight::ranges() const
{
    std::vector<std::span<const std::byte>> r{q.data, scale.data};
    if (zeros != Zeros::None)
        r.push_back(zero.data);
    if (!gIdx.name.empty())
        r.push_back(gIdx.data);
    for (const Tensor& t : others)
        r.push_back(t.data);
    return r;
}

Status PackedWeight::decode(std::span<float> y, const std::string& name) const
{
    if (Status s = check(name); !s)
        return s;
    if (int64_t(y.size()) != out * in)
        return makeError("internal", "output buffer has the wrong size", {}, -1, name);
    const int pf = 32 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    const int offset = 1 << (bits - 1);

    // The input -> group map: g_idx (activation order) or consecutive groups.
    std::vector<int32_t> grp(size_t(in), 0);
    bool useGIdx = !gIdx.name.empty();
    std::vector<float> gv;
    if (useGIdx) {
        auto g = gIdx.toFloat();
        if (!g)
            return g.error();
        gv = std::move(*g);
        for (float v : gv)
            useGIdx = useGIdx && !(v == -1.0f && gIdxColumnOrder);
    }
    const int64_t perGroup = in / groups;
    for (int64_t i = 0; i < in; ++i)
        grp[size_t(i)] = useGIdx ? int32_t(gv[size_t(i)]) : int32_t(i / perGroup);

    // Scales and zero points are small (outputs x groups): decoded whole, in one layout.
    auto s = scale.toFloat();
    if (!s)
        return s.error();
    std::vector<float> z;
    switch (zeros) {
    case Zeros::None: break;
    case Zeros::Plain: {
        auto zz = zero.toFloat();
        if (!zz)
            return zz.error();
        z = std::move(*zz);
        break;
    }
    case Zeros::CtPacked:  // unpack_from_int32(packed_dim=0): rows r of column c in word [r / pf][c]
        z.resize(size_t(scaleRows * groups));
        for (int64_t r = 0; r < scaleRows; ++r)
            for (int64_t c = 0; c < groups; ++c) {
                const uint32_t w = le32(zero.data.data() + ((r / pf) * groups + c) * 4);
                z[size_t(r * groups + c)] = float(int((w >> (bits * (r % pf))) & mask) - offset);
            }
        break;
    case Zeros::GptqPacked:  // [groups, out / pf]: output o of group g in word [g][o / pf]
        z.resize(size_t(groups * out));
        for (int64_t g = 0; g < groups; ++g)
            for (int64_t o = 0; o < out; ++o) {
                const uint32_t w = le32(zero.data.data() + (g * (out / pf) + o / pf) * 4);
                z[size_t(g * out + o)] = float((((w >> (bits * (o % pf))) & mask) + uint32_t(zeroOffset)) & mask);
            }
        break;
    }

    // The codes, as exact integers in the output.
    switch (codes) {
    case Codes::Plain:
        if (Status st = q.toFloat(y); !st)
            return st;
        break;
    case Codes::PackedRows: {
        const int64_t words = wordsFor(in, pf);
        for (int64_t o = 0; o < out; ++o) {
            const std::byte* src = q.data.data() + o * words * 4;
            float* row = y.data() + o * in;
            for (int64_t wi = 0; wi < words; ++wi) {
                const uint32_t w = le32(src + wi * 4);
                const int64_t n = std::min<int64_t>(pf, in - wi * pf);
                for (int64_t k = 0; k < n; ++k)
                    row[wi * pf + k] = float(int((w >> (bits * k)) & mask) - offset);
            }
        }
        break;
    }
    case Codes::PackedCols:
        for (int64_t wr = 0; wr < in / pf; ++wr)
            for (int64_t o = 0; o < out; ++o) {
                const uint32_t w = le32(q.data.data() + (wr * out + o) * 4);
                for (int k = 0; k < pf; ++k)
                    y[size_t(o * in + wr * pf + k)] = float((w >> (bits * k)) & mask);
            }
        break;
    }

    // (q - z) * s in float: q - z is an exact small integer and a float product is the
    // correctly rounded exact product (what torch computes in float32); for F16/BF16 scales
    // that product is exact in float too, so one more rounding gives the reference's value.
    const int64_t rowBlock = out / scaleRows;
    std::vector<float> rowScale(static_cast<size_t>(groups)), rowZero(static_cast<size_t>(groups), 0.0f);
    auto scaleRow = [&](auto round) {
        for (int64_t o = 0; o < out; ++o) {
            for (int64_t g = 0; g < groups; ++g) {
                const size_t at = size_t(scaleGroupsMajor ? g * out + o : (o / rowBlock) * groups + g);
                rowScale[size_t(g)] = (*s)[at];
                if (!z.empty())
                    rowZero[size_t(g)] = z[at];
            }
            float* row = y.data() + o * in;
            for (int64_t i = 0; i < in; ++i) {
                const int32_t g = grp[size_t(i)];
                row[i] = round((row[i] - rowZero[size_t(g)]) * rowScale[size_t(g)]);
            }
        }
    };
    if (roundTo == DType::F16)
        scaleRow([](float f) { return roundF16(f); });
    else if (roundTo == DType::BF16)
        scaleRow([](float f) { return roundBf16(f); });
    else
        scaleRow([](float f) { return f; });
    return Ok{};
}

}  // namespace quantlens
