#pragma once
// Arrays and vectors on a 64-byte boundary. A large malloc'd float array starts 16 bytes past a page, so
// every 64-byte vector the int8 GEMM stores into it straddles two cache lines: at 128 tokens
// on 768->768, where the output stays in L2, that costs 3% of the whole linear (measured
// against the same buffer moved to a line boundary). PyTorch's tensors are 64-byte aligned too.
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

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

// std::vector on a 64-byte boundary, for output buffers that are also passed around as vectors.
template <class T>
struct AlignedAllocator {
    using value_type = T;
    AlignedAllocator() = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) noexcept
    {
    }
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
    void deallocate(T* p, size_t) noexcept { ::operator delete(p, std::align_val_t(64)); }
    template <class U>
    bool operator==(const AlignedAllocator<U>&) const noexcept
    {
        return true;
    }
};

template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

}  // namespace quantlens
