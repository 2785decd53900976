#pragma once
// Arrays on a 64-byte boundary. A large malloc'd float array starts 16 bytes past a page, so
// every 64-byte vector the int8 GEMM stores into it straddles two cache lines: at 128 tokens
// on 768->768, where the output stays in L2, that costs 3% of the whole linear (measured
// against the same buffer moved to a line boundary). PyTorch's tensors are 64-byte aligned too.
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>

namespace quantlens {

template <class T>
struct AlignedArrayDelete {
    void operator()(T* p) const { ::operator delete[](p, std::align_val_t(64)); }
};

template <class T>
using AlignedArray = std::unique_ptr<T[], AlignedArrayDelete<T>>;

// n uninitialised elements of a trivial type.
template <class T>
AlignedArray<T> makeAlignedArray(size_t n)
{
    static_assert(std::is_trivially_default_constructible_v<T> && std::is_trivially_destructible_v<T>);
    return AlignedArray<T>(static_cast<T*>(::operator new[](n * sizeof(T), std::align_val_t(64))));
}

}  // namespace quantlens
