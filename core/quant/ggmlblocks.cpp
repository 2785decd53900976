#include "quant/ggmlblocks.h"

#include <algorithm>
#include <cfloat>
#include <cstring>

#include "tensor.h"

namespace quantlens {

namespace {

uint8_t u8(const std::byte* p, int64_t i) { return uint8_t(p[i]); }

uint32_t u32le(const std::byte* p)
{
    return uint32_t(u8(p, 0)) | uint32_t(u8(p, 1)) << 8 | uint32_t(u8(p, 2)) << 16 | uint32_t(u8(p, 3)) << 24;
}

// Legacy 32-value blocks: nibbles at qs (element j low, j+16 high), optional 5th bits in qh.
void legacyCodes(const std::byte* b, int64_t qsAt, int64_t qhAt, int offset, int8_t* q)
{
    const uint32_t qh = qhAt >= 0 ? u32le(b + qhAt) : 0;
    for (int j = 0; j < 16; ++j) {
        const uint8_t v = u8(b, qsAt + j);
        const int lo = (v & 0xF) | int((qh >> j) & 1u) << 4;
        const int hi = (v >> 4) | int((qh >> (j + 16)) & 1u) << 4;
        q[j] = int8_t(lo - offset);
        q[j + 16] = int8_t(hi - offset);
    }
}

}  // namespace

void ggmlCodes(GgmlType t, const std::byte* blocks, int64_t n, int8_t* q)
{
    const GgmlTypeInfo* info = ggmlTypeInfo(t);
    if (!info || info->blockElems == 1) {
        std::fill(q, q + n, int8_t(0));
        return;
    }
    const int64_t nb = n / info->blockElems;
    for (int64_t i = 0; i < nb; ++i) {
        const std::byte* b = blocks + i * info->blockBytes;
        int8_t* o = q + i * info->blockElems;
        switch (t) {
        case GgmlType::Q4_0: legacyCodes(b, 2, -1, 8, o); break;
        case GgmlType::Q4_1: legacyCodes(b, 4, -1, 0, o); break;
        case GgmlType::Q5_0: legacyCodes(b, 6, 2, 16, o); break;
        case GgmlType::Q5_1: legacyCodes(b, 8, 4, 0, o); break;
        case GgmlType::Q8_0:
            std::memcpy(o, b + 2, 32);
            break;
        case GgmlType::Q4_K:
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l) {
                    const uint8_t v = u8(b, 16 + 32 * c + l);
                    o[64 * c + l] = int8_t(v & 0xF);
                    o[64 * c + 32 + l] = int8_t(v >> 4);
                }
            break;
        case GgmlType::Q5_K:
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l) {
                    const uint8_t v = u8(b, 48 + 32 * c + l), h = u8(b, 16 + l);
                    o[64 * c + l] = int8_t((v & 0xF) + ((h >> (2 * c)) & 1) * 16);
                    o[64 * c + 32 + l] = int8_t((v >> 4) + ((h >> (2 * c + 1)) & 1) * 16);
                }
            break;
        case GgmlType::Q6_K:
            for (int h = 0; h < 2; ++h)
                for (int l = 0; l < 32; ++l) {
                    const uint8_t a = u8(b, 64 * h + l), c = u8(b, 64 * h + l + 32), hb = u8(b, 128 + 32 * h + l);
                    o[128 * h + l] = int8_t(((a & 0xF) | ((hb & 3) << 4)) - 32);
                    o[128 * h + l + 32] = int8_t(((c & 0xF) | (((hb >> 2) & 3) << 4)) - 32);
                    o[128 * h + l + 64] = int8_t(((a >> 4) | (((hb >> 4) & 3) << 4)) - 32);
                    o[128 * h + l + 96] = int8_t(((c >> 4) | (((hb >> 6) & 3) << 4)) - 32);
                }
            break;
        default: break;
        }
    }
}

Result<std::optional<Range>> ggmlClipRange(std::span<const float> x, const QuantSpec& spec)
{
    switch (spec.calib) {
    case CalibMethod::MinMax: return std::optional<Range>{};
    case CalibMethod::Manual: return std::optional<Range>{Range{spec.manualLo, spec.manualHi}};
    case CalibMethod::Percentile: {
        auto r = calibrateRange(x, spec);
        if (!r)
            return r.error();
        return std::optional<Range>{*r};
    }
    default:
        return makeError("bad-spec", schemeName(spec.scheme) + " picks a scale per block; the '" + calibName(spec)
                                         + "' calibrator has no meaning there (use minmax, percentile or manual)");
    }
}

int64_t clipValues(std::span<const float> x, Range r, float* dst)
{
    int64_t changed = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        const float v = x[i];
        const float c = v < r.lo ? r.lo : (v > r.hi ? r.hi : v);
        changed += c != v ? 1 : 0;  // NaN compares unequal to itself but stays NaN: not counted
        dst[i] = v != v ? v : c;
    }
    return changed;
}

Status quantizeGgmlInto(std::span<const float> x, const std::vector<int64_t>& shape, const QuantSpec& spec,
                        QuantizedTensor& out)
{
    const auto type = ggmlTypeForScheme(spec.scheme);
    if (!type)
        return makeError("bad-spec", schemeName(spec.scheme) + " is not a ggml scheme");
    const auto numel = checkedNumel(shape.data(), shape.size());
    if (!numel)
        return makeError("bad-shape", "shape has a negative or overflowing size");
    if (*numel != int64_t(x.size()))
        return makeError("bad-shape", "shape holds " + std::to_string(*numel) + " values but " + std::to_string(x.size())
                                          + " were given");
    const int64_t rowLen = shape.empty() ? 1 : shape.back();
    auto rowBytes = ggmlRowBytes(*type, rowLen);
    if (!rowBytes)
        return makeError("bad-row", rowBytes.error().message + " (shape " + shapeString(shape) + ")");
    auto clip = ggmlClipRange(x, spec);
    if (!clip)
        return clip.error();

    out.shape = shape;
    out.spec = spec;
    out.clampedCount = 0;
    std::vector<float> clipped;
    std::span<const float> src = x;
    if (*clip) {
        clipped.resize(x.size());
        out.clampedCount = clipValues(x, **clip, clipped.data());
        src = clipped;
    }
    const int64_t rows = rowLen == 0 ? 0 : *numel / rowLen;
    out.blocks.resize(size_t(rows * *rowBytes));
    if (Status s = ggmlQuantize(*type, src, rowLen, out.blocks); !s)
        return s.error();
    out.q.resize(size_t(*numel));
    ggmlCodes(*type, out.blocks.data(), *numel, out.q.data());

    QuantParams& P = out.params;
    P.scale.clear();
    P.zeroPoint.clear();
    integerRange(spec, P.qmin, P.qmax);
    P.axis = shape.empty() ? -1 : int(shape.size()) - 1;
    P.groupSize = ggmlTypeInfo(*type)->blockElems;
    const Range mm = minMaxRange(src);
    P.rangeLo = mm.lo;
    P.rangeHi = mm.hi;
    return Ok{};
}

void dequantizeGgml(const QuantizedTensor& qt, std::span<float> out)
{
    const auto type = ggmlTypeForScheme(qt.spec.scheme);
    const auto numel = checkedNumel(qt.shape.data(), qt.shape.size());
    if (!type || !numel || int64_t(out.size()) < *numel)
        return;
    const GgmlTypeInfo* info = ggmlTypeInfo(*type);
    if (*numel % info->blockElems != 0 || int64_t(qt.blocks.size()) != *numel / info->blockElems * info->blockBytes)
        return;  // not one of ours: quantize() always makes these agree
    Tensor t;
    t.dtype = info->dtype;
    t.shape = qt.shape;
    t.data = qt.blocks;
    (void)t.toFloat(out.first(size_t(*numel)));
}

}  // namespace quantlens
