#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace quantlens {

// Storage types. Block types (ggml) pack blockElems values into blockBytes bytes.
enum class DType : uint8_t {
    F64, F32, F16, BF16,
    I64, I32, I16, I8,
    U64, U32, U16, U8,
    BOOL,
    Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
    Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,  // ggml k-quants: super-blocks of 256
    Opaque,  // a type we list but cannot decode (e.g. GGUF IQ2_XXS); see Tensor::opaqueType
    Packed,  // integer codes + scales in several file tensors (GPTQ, compressed-tensors); see Tensor::packed
};

struct DTypeInfo {
    std::string_view name;  // safetensors spelling where one exists ("F32", "I8", ...)
    int64_t blockElems;     // 1 for scalar types
    int64_t blockBytes;     // bytes per block (element size for scalar types); 0 for Opaque
    bool isFloat;
    bool isBlock;
};

const DTypeInfo& dtypeInfo(DType t);
inline std::string_view dtypeName(DType t) { return dtypeInfo(t).name; }
// Parses the safetensors names (F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL) and our block names.
std::optional<DType> dtypeFromName(std::string_view name);

// Bytes needed for n elements, or nullopt on overflow / n not a whole number of blocks.
std::optional<int64_t> byteSizeFor(DType t, int64_t numel);

// Product of dims with overflow and negativity checks; nullopt when it does not fit int64.
std::optional<int64_t> checkedNumel(const int64_t* dims, size_t rank);

}  // namespace quantlens
