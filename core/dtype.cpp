#include "dtype.h"

#include <array>
#include <limits>

namespace quantlens {

namespace {
constexpr std::array<DTypeInfo, 25> kInfo{{
    {"F64", 1, 8, true, false},   {"F32", 1, 4, true, false},  {"F16", 1, 2, true, false},
    {"BF16", 1, 2, true, false},  {"I64", 1, 8, false, false}, {"I32", 1, 4, false, false},
    {"I16", 1, 2, false, false},  {"I8", 1, 1, false, false},  {"U64", 1, 8, false, false},
    {"U32", 1, 4, false, false},  {"U16", 1, 2, false, false}, {"U8", 1, 1, false, false},
    {"BOOL", 1, 1, false, false},
    // ggml blocks: fp16 scale (+ fp16 min for _1) + packed quants (+ 32 high bits for Q5).
    {"Q8_0", 32, 34, false, true}, {"Q4_0", 32, 18, false, true}, {"Q4_1", 32, 20, false, true},
    {"Q5_0", 32, 22, false, true}, {"Q5_1", 32, 24, false, true},
    // ggml k-quants (ggml-common.h block_q2_K ... block_q6_K): 256 values per super-block.
    {"Q2_K", 256, 84, false, true}, {"Q3_K", 256, 110, false, true}, {"Q4_K", 256, 144, false, true},
    {"Q5_K", 256, 176, false, true}, {"Q6_K", 256, 210, false, true},
    {"OPAQUE", 1, 0, false, true},
    {"PACKED", 1, 0, false, true},  // no fixed size: Tensor::storedBytes asks the PackedWeight
}};
}  // namespace

const DTypeInfo& dtypeInfo(DType t) { return kInfo[static_cast<size_t>(t)]; }

std::optional<DType> dtypeFromName(std::string_view name)
{
    for (size_t i = 0; i < size_t(DType::Opaque); ++i)  // Opaque and Packed are never a file's spelling
        if (kInfo[i].name == name)
            return static_cast<DType>(i);
    return std::nullopt;
}

std::optional<int64_t> byteSizeFor(DType t, int64_t numel)
{
    const DTypeInfo& in = dtypeInfo(t);
    if (numel < 0 || in.blockBytes == 0 || numel % in.blockElems != 0)
        return std::nullopt;
    const int64_t blocks = numel / in.blockElems;
    if (blocks > std::numeric_limits<int64_t>::max() / in.blockBytes)
        return std::nullopt;
    return blocks * in.blockBytes;
}

std::optional<int64_t> checkedNumel(const int64_t* dims, size_t rank)
{
    int64_t n = 1;
    for (size_t i = 0; i < rank; ++i) {
        if (dims[i] < 0)
            return std::nullopt;
        if (dims[i] != 0 && n > std::numeric_limits<int64_t>::max() / dims[i])
            return std::nullopt;
        n *= dims[i];
    }
    return n;
}

}  // namespace quantlens
