#pragma once
// 8-float vectors as GCC vector types, for element-wise loops that GCC's -O2 cost model
// will not vectorise itself (it refuses loops that need a remainder). Each is SSE pairs in
// the baseline build and one AVX register in a target_clones("avx2", "default") clone of
// the function that uses them (the clone is picked at load time).
// Include only from .cpp files, and use only inside such functions: the helpers are
// always inlined, so the AVX-without-AVX ABI note GCC gives for passing 32-byte vectors by
// value concerns no real call.
#include <cstdint>
#include <cstring>

#pragma GCC diagnostic ignored "-Wpsabi"
// always_inline, not just inline: at -O0 GCC would call them out of line, and a 32-byte
// vector passed between the AVX2 clone and a baseline helper has no agreed ABI (SEGV in
// a Debug build).
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
