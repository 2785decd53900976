#pragma once
// 256-bit GEMM body shared by gemm_avx2.cpp and gemm_avxvnni.cpp. It is included inside an
// anonymous namespace in each of those files, so every function has internal linkage and
// code compiled with -mavxvnni can never be merged into the plain AVX2 build (an ODR trap
// of inline templates compiled with different -m flags).
//
// Dot must provide:  using Prep = ...;  static Prep prep(__m256i a4);
//                    static __m256i dot(__m256i acc, const Prep& a, __m256i b);

inline int32_t ymmLoadDword(const uint8_t* p)
{
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// One block: MR rows x 16 columns (2 ymm) of a panel whose k-group stride is `stride` bytes,
// written to out[r][0..16). Local accumulators that never escape stay in registers.
template <class Dot, int MR>
inline void ymmAccumulate(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, int64_t stride,
                          int32_t (*out)[16])
{
    __m256i acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
        acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t g = 0; g < groups; ++g) {
        const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + g * stride));
        const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + g * stride + 32));
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const typename Dot::Prep av = Dot::prep(_mm256_set1_epi32(ymmLoadDword(a + r * lda + g * 4)));
            acc[r][0] = Dot::dot(acc[r][0], av, b0);
            acc[r][1] = Dot::dot(acc[r][1], av, b1);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(out[r]), acc[r][0]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(out[r] + 8), acc[r][1]);
    }
}

template <class Dot, int MR>
void ymmBlockS32(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, int64_t stride, int32_t* c,
                 int64_t ldc, int64_t cols)
{
    alignas(32) int32_t acc[MR][16];
    ymmAccumulate<Dot, MR>(groups, a, lda, b, stride, acc);
    for (int r = 0; r < MR; ++r)
        std::copy_n(acc[r], std::min<int64_t>(cols, 16), c + r * ldc);
}

template <class Dot, int MR>
void ymmBlockF32(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, int64_t stride,
                 const int32_t* colSum, const Requant& rq, int64_t row0, int64_t col0, float* y, int64_t ldy,
                 int64_t cols)
{
    alignas(32) int32_t acc[MR][16];
    ymmAccumulate<Dot, MR>(groups, a, lda, b, stride, acc);
    if (cols >= 16) {
        __m256i cs[2];
        __m256 ws[2], bias[2];
        for (int h = 0; h < 2; ++h) {
            cs[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(colSum + col0 + h * 8));
            ws[h] = rq.wScaleStride ? _mm256_loadu_ps(rq.wScale + col0 + h * 8) : _mm256_set1_ps(rq.wScale[0]);
            bias[h] = rq.bias ? _mm256_loadu_ps(rq.bias + col0 + h * 8) : _mm256_setzero_ps();
        }
        for (int r = 0; r < MR; ++r) {
            const __m256i za = _mm256_set1_epi32(rq.aZero[(row0 + r) * rq.aZeroStride]);
            const __m256 sa = _mm256_set1_ps(rq.aScale[(row0 + r) * rq.aScaleStride]);
            for (int h = 0; h < 2; ++h) {
                const __m256i av = _mm256_load_si256(reinterpret_cast<const __m256i*>(acc[r] + h * 8));
                const __m256i raw = _mm256_sub_epi32(av, _mm256_mullo_epi32(za, cs[h]));
                __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(raw), _mm256_mul_ps(sa, ws[h]));
                if (rq.bias)
                    v = _mm256_add_ps(v, bias[h]);
                _mm256_storeu_ps(y + (row0 + r) * ldy + col0 + h * 8, v);
            }
        }
        return;
    }
    // Ragged last block: same arithmetic, one column at a time.
    for (int r = 0; r < MR; ++r) {
        const int32_t za = rq.aZero[(row0 + r) * rq.aZeroStride];
        const float sa = rq.aScale[(row0 + r) * rq.aScaleStride];
        for (int64_t c = 0; c < cols; ++c) {
            const int64_t j = col0 + c;
            const int32_t raw = acc[r][c] - za * colSum[j];
            const float scaled = float(raw) * (sa * rq.wScale[j * rq.wScaleStride]);
            y[(row0 + r) * ldy + j] = rq.bias ? scaled + rq.bias[j] : scaled;
        }
    }
}

// Rows in ceil(m/MR) blocks of nearly equal height (m = 8, MR = 6: 4+4, not 6+1+1): every
// block streams its 16 columns of the panel for all of K, so a short tail block costs nearly
// as much as a full one. run(YmmRows<rows>{}, firstRow) does one block.
template <int R>
struct YmmRows {
    static constexpr int value = R;
};
template <int MR, class Run>
inline void ymmRowBlocks(int64_t m, const Run& run)
{
    static_assert(MR >= 1 && MR <= 6);
    const int64_t blocks = (m + MR - 1) / MR;
    const int64_t base = m / blocks, extra = m % blocks;  // base + 1 <= MR whenever extra > 0
    int64_t i = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t rows = base + (blk < extra ? 1 : 0);
        switch (rows) {
        case 6: if constexpr (MR >= 6) run(YmmRows<6>{}, i); break;
        case 5: if constexpr (MR >= 5) run(YmmRows<5>{}, i); break;
        case 4: if constexpr (MR >= 4) run(YmmRows<4>{}, i); break;
        case 3: if constexpr (MR >= 3) run(YmmRows<3>{}, i); break;
        case 2: if constexpr (MR >= 2) run(YmmRows<2>{}, i); break;
        default: run(YmmRows<1>{}, i); break;
        }
        i += rows;
    }
}

// Row blocks (ymmRowBlocks) x 16-column blocks of every panel.
template <class Dot, int MR>
void ymmGemmS32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
                int32_t* c, int64_t ldc)
{
    const int64_t groups = w.k4 / 4;
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t width = w.panelWidth(p), stride = width * 4;
        for (int64_t s = 0; s < width / 16; ++s) {
            const int64_t col0 = p * PackedWeights::kPanel + s * 16;
            const int64_t cols = std::min<int64_t>(w.n - col0, 16);
            if (cols <= 0)
                break;
            const int8_t* b = w.panel(p) + s * 64;
            ymmRowBlocks<MR>(m, [&](auto rows, int64_t i) {
                ymmBlockS32<Dot, decltype(rows)::value>(groups, a + i * lda, lda, b, stride, c + i * ldc + col0, ldc, cols);
            });
        }
    }
}

template <class Dot, int MR>
void ymmGemmF32(int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w, int64_t p0, int64_t p1,
                const Requant& rq, float* y, int64_t ldy)
{
    const int64_t groups = w.k4 / 4;
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t width = w.panelWidth(p), stride = width * 4;
        for (int64_t s = 0; s < width / 16; ++s) {
            const int64_t col0 = p * PackedWeights::kPanel + s * 16;
            const int64_t cols = std::min<int64_t>(w.n - col0, 16);
            if (cols <= 0)
                break;
            const int8_t* b = w.panel(p) + s * 64;
            ymmRowBlocks<MR>(m, [&](auto rows, int64_t i) {
                ymmBlockF32<Dot, decltype(rows)::value>(groups, a + i * lda, lda, b, stride, w.colSum.data(), rq, i, col0,
                                                        y, ldy, cols);
            });
        }
    }
}

inline bool ymmMinMax(const float* x, int64_t n, float* mn, float* mx)
{
    __m256 lo = _mm256_set1_ps(x[0]), hi = lo;
    __m256 nanAcc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        nanAcc = _mm256_or_ps(nanAcc, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        lo = _mm256_min_ps(lo, v);
        hi = _mm256_max_ps(hi, v);
    }
    alignas(32) float l[8], h[8];
    _mm256_store_ps(l, lo);
    _mm256_store_ps(h, hi);
    bool nan = _mm256_movemask_ps(nanAcc) != 0 || std::isnan(x[0]);
    float rl = l[0], rh = h[0];
    for (int t = 1; t < 8; ++t) {
        rl = std::min(rl, l[t]);
        rh = std::max(rh, h[t]);
    }
    for (; i < n; ++i) {
        nan |= std::isnan(x[i]);
        rl = std::min(rl, x[i]);
        rh = std::max(rh, x[i]);
    }
    *mn = rl;
    *mx = rh;
    return !nan;
}

inline void ymmQuantizeU8(const float* x, int64_t n, float invScale, int32_t zeroPoint, uint8_t* q)
{
    const __m256 inv = _mm256_set1_ps(invScale), z = _mm256_set1_ps(float(zeroPoint));
    const __m256 top = _mm256_set1_ps(2147483520.0f);
    const __m256i zero = _mm256_setzero_si256(), maxv = _mm256_set1_epi32(255);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i r[4];
        for (int t = 0; t < 4; ++t) {
            const __m256 v = _mm256_loadu_ps(x + i + t * 8);
            r[t] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_min_ps(_mm256_fmadd_ps(v, inv, z), top)), zero), maxv);
        }
        // Values are already in 0..255, so the saturating packs are exact; permute undoes lane interleave.
        const __m256i p16a = _mm256_packs_epi32(r[0], r[1]), p16b = _mm256_packs_epi32(r[2], r[3]);
        const __m256i p8 = _mm256_packus_epi16(p16a, p16b);
        const __m256i ordered = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), ordered);
    }
    for (; i < n; ++i) {
        const float t = std::min(std::fma(x[i], invScale, float(zeroPoint)), 2147483520.0f);
        q[i] = uint8_t(std::clamp<long>(std::lrint(t), 0, 255));
    }
}
