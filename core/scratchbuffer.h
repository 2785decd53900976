#pragma once
// A buffer reused across tensors by whole-model passes (inspect, the window's tree
// statistics, GGUF export): it grows to the largest request and is never zero-filled,
// 2 MiB aligned and advised into transparent huge pages (THP "madvise" mode). A fresh
// std::vector per tensor faults in and zeroes every 4 KB page; on a 1 GB bf16 file those
// faults cost more CPU than the conversion and the statistics together.
#include <sys/mman.h>

#include <cstdlib>
#include <memory>
#include <new>
#include <span>
#include <type_traits>

namespace quantlens {

template <class T>
class ScratchBuffer {
    static_assert(std::is_trivially_default_constructible_v<T> && std::is_trivially_destructible_v<T>);

public:
    // n elements, uninitialised; earlier spans from this buffer are invalid afterwards.
    std::span<T> get(size_t n)
    {
        if (n > capacity_) {
            constexpr size_t kHuge = size_t(2) << 20;
            const size_t bytes = (n * sizeof(T) + kHuge - 1) / kHuge * kHuge;
            data_.reset();
            data_.reset(static_cast<T*>(std::aligned_alloc(kHuge, bytes)));
            capacity_ = data_ ? bytes / sizeof(T) : 0;
            if (!data_)
                throw std::bad_alloc();
            (void)::madvise(data_.get(), bytes, MADV_HUGEPAGE);  // advice only: 4 KB pages otherwise
        }
        return {data_.get(), n};
    }

private:
    struct Free {
        void operator()(T* p) const { std::free(p); }
    };
    std::unique_ptr<T, Free> data_;
    size_t capacity_ = 0;
};

}  // namespace quantlens
