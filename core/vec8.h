#pragma once
// 8-float vectors as GCC vector types, for element-wise loops that GCC's -O2 cost model
// will not vectorise itself (it refuses loops that need a remainder). Each is SSE pairs in
// the baseline build and one AVX register in a file built with -mavx2 (kernels/eltwise.h).
// Include only from .cpp files, and use them only where every caller is compiled for the
// same ISA: the helpers are always inlined, so the ABI note GCC and clang give for passing
// 32-byte vectors by value without AVX concerns no real call (clang makes it an error when
// caller and callee differ, as in a target_clones clone calling these).
#include <cstdint>
#include <cstring>

// always_inline, not just inline: at -O0 GCC would call them out of line (slow, and with
// 32-byte vectors on the stack in the baseline build).
#define QL_VEC_INLINE inline __attribute__((always_inline))

namespace quantlens::vec8 {

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

// Not std::bit_cast: at -O0 it is an out-of-line baseline function returning a 32-byte vector.
QL_VEC_INLINE v8f asF(v8i v)
{
    v8f r;
    std::memcpy(&r, &v, sizeof r);
    return r;
}
QL_VEC_INLINE v8i asI(v8f v)
{
    v8i r;
    std::memcpy(&r, &v, sizeof r);
    return r;
}
QL_VEC_INLINE v8f splat(float x) { return v8f{x, x, x, x, x, x, x, x}; }
QL_VEC_INLINE v8f load8(const float* p)
{
    v8f v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
QL_VEC_INLINE void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }
QL_VEC_INLINE v8f vmin(v8f a, v8f b) { return a < b ? a : b; }
QL_VEC_INLINE v8f vmax(v8f a, v8f b) { return a > b ? a : b; }
QL_VEC_INLINE v8f vabs(v8f a) { return asF(asI(a) & 0x7fffffff); }
QL_VEC_INLINE float hsum(v8f v) { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }

}  // namespace quantlens::vec8
