#include "quant/gptq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernels/quantrun.h"
#include "quant/rounding.h"

// LAPACK as OpenBLAS exports it (Debian's libopenblas carries LAPACK; its headers do not
// declare it, and liblapacke would be a second copy of the same routines).
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
}

namespace quantlens {

namespace {

using quantrun::Kernel;

// H ← upper Cholesky factor U of (H + damp I)⁻¹, Hinv = Uᵀ U, row-major. LAPACK is
// column-major: its lower factor L of a symmetric matrix read row-major is Lᵀ = U.
bool inverseCholeskyUpper(std::vector<double>& h, int n)
{
    int info = 0;
    dpotrf_("L", &n, h.data(), &n, &info);
    if (info != 0)
        return false;
    dpotri_("L", &n, h.data(), &n, &info);
    if (info != 0)
        return false;
    dpotrf_("L", &n, h.data(), &n, &info);
    if (info != 0)
        return false;
    for (int r = 0; r < n; ++r)  // row-major lower triangle: LAPACK's untouched upper half
        for (int c = 0; c < r; ++c)
            h[size_t(r) * size_t(n) + size_t(c)] = 0.0;
    return true;
}

}  // namespace

Result<GptqResult> gptqQuantize(std::span<const float> weight, int64_t out, int64_t in, std::span<const double> hessian,
                                QuantSpec spec, const GptqOptions& opt)
{
    if (out <= 0 || in <= 0 || int64_t(weight.size()) != out * in)
        return makeError("bad-shape", "GPTQ needs a [out, in] weight; got " + std::to_string(weight.size()) +
                                          " values for [" + std::to_string(out) + ", " + std::to_string(in) + "]");
    if (int64_t(hessian.size()) != in * in)
        return makeError("bad-shape", "the Hessian must be [" + std::to_string(in) + ", " + std::to_string(in) + "]");
    if (in > std::numeric_limits<int>::max() / 2)
        return makeError("too-large", "GPTQ input width " + std::to_string(in) + " is beyond LAPACK's int");
    if (opt.blockSize < 1 || !(opt.dampening >= 0))
        return makeError("bad-options", "GPTQ needs a block size >= 1 and a dampening >= 0");
    if (isGgmlScheme(spec.scheme) && spec.scheme != Scheme::Q8_0)
        return makeError("unsupported-spec", "GPTQ here rounds to one scale per group; ggml's " + schemeName(spec.scheme) +
                                                 " blocks have their own scale search: use rtn");
    spec.axis = 0;

    GptqResult res;
    // The observer: scales and zero points from the float weights, as round-to-nearest.
    if (auto st = quantizeInto(weight, {out, in}, spec, res.quantized); !st)
        return st.error();
    QuantizedTensor& qt = res.quantized;
    const QuantParams& P = qt.params;
    const bool perTensor = P.scale.size() == 1 && spec.granularity == Granularity::PerTensor && spec.scheme != Scheme::Q8_0;
    const int64_t group = P.groupSize > 0 ? P.groupSize : in;
    const int64_t groupsPerRow = perTensor ? 1 : (in + group - 1) / group;
    const Kernel kernel = roundingKernel(spec.scheme);

    // Column order: activation order permutes W's columns and H's rows and columns.
    const int n = int(in);
    std::vector<int64_t> perm(static_cast<size_t>(in));
    std::iota(perm.begin(), perm.end(), 0);
    if (opt.actOrder)
        std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
            return hessian[size_t(a * in + a)] > hessian[size_t(b * in + b)];
        });
    std::vector<double> W(size_t(out * in));
    for (int64_t r = 0; r < out; ++r)
        for (int64_t k = 0; k < in; ++k)
            W[size_t(r * in + k)] = double(weight[size_t(r * in + perm[size_t(k)])]);
    std::vector<double> H(size_t(in * in));
    for (int64_t a = 0; a < in; ++a)
        for (int64_t b = 0; b < in; ++b)
            H[size_t(a * in + b)] = hessian[size_t(perm[size_t(a)] * in + perm[size_t(b)])];

    for (int64_t k = 0; k < in; ++k)
        if (H[size_t(k * in + k)] == 0.0) {
            H[size_t(k * in + k)] = 1.0;
            for (int64_t r = 0; r < out; ++r)
                W[size_t(r * in + k)] = 0.0;
            ++res.deadColumns;
        }
    double meanDiag = 0;
    for (int64_t k = 0; k < in; ++k)
        meanDiag += H[size_t(k * in + k)];
    meanDiag /= double(in);
    for (int64_t k = 0; k < in; ++k)
        H[size_t(k * in + k)] += opt.dampening * meanDiag;
    if (!inverseCholeskyUpper(H, n)) {
        res.fellBackToRtn = true;  // qt already holds round-to-nearest
        return res;
    }
    const double* Hinv = H.data();

    // Column-by-column: quantize, spread the error over the block's later columns, then
    // the whole block's error over the columns after it (one GEMM).
    const int64_t B = opt.blockSize;
    std::vector<double> err(size_t(out * B));
    std::vector<int32_t> Q(size_t(out * in));
    qt.clampedCount = 0;  // counted again on the updated weights
    for (int64_t i1 = 0; i1 < in; i1 += B) {
        const int64_t i2 = std::min(i1 + B, in), count = i2 - i1;
        for (int64_t i = 0; i < count; ++i) {
            const int64_t col = i1 + i;
            const int64_t g = perTensor ? 0 : perm[size_t(col)] / group;
            const double d = Hinv[size_t(col * in + col)];
            const double* hrow = Hinv + col * in;
            for (int64_t r = 0; r < out; ++r) {
                double* wr = W.data() + r * in;
                const size_t slot = perTensor ? 0 : size_t(r * groupsPerRow + g);
                const float scale = P.scale[slot];
                const int32_t zp = P.zeroPoint[slot];
                const float wf = float(wr[col]);
                int8_t q8 = 0;
                qt.clampedCount += quantrun::kQuantRef.quantize(&wf, &q8, 1, kernel, roundingMultiplier(kernel, scale), zp, P.qmin, P.qmax);
                const int32_t qi = spec.isUnsigned ? int32_t(uint8_t(q8)) : int32_t(q8);
                Q[size_t(r * in + col)] = qi;
                const double qf = double((float(qi) - float(zp)) * scale);  // dequantize()'s float arithmetic
                const double e = (wr[col] - qf) / d;
                res.loss += e * e / 2.0;
                for (int64_t j = col + 1; j < i2; ++j)
                    wr[j] -= e * hrow[j];
                err[size_t(r * count + i)] = e;
            }
        }
        if (i2 < in)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(out), blasint(in - i2), blasint(count), -1.0,
                        err.data(), blasint(count), Hinv + i1 * in + i2, blasint(in), 1.0, W.data() + i2, blasint(in));
    }

    // Back to the stored column order.
    for (int64_t r = 0; r < out; ++r)
        for (int64_t k = 0; k < in; ++k)
            qt.q[size_t(r * in + perm[size_t(k)])] = int8_t(Q[size_t(r * in + k)]);
    return res;
}

double layerOutputSqnrDb(std::span<const float> weight, std::span<const float> approx, int64_t out, int64_t in,
                         std::span<const double> hessian)
{
    if (int64_t(weight.size()) != out * in || int64_t(approx.size()) != out * in || int64_t(hessian.size()) != in * in)
        return std::numeric_limits<double>::quiet_NaN();
    std::vector<double> W(weight.begin(), weight.end());
    std::vector<double> D(size_t(out * in));
    for (size_t i = 0; i < D.size(); ++i)
        D[i] = double(weight[i]) - double(approx[i]);
    auto quadratic = [&](const std::vector<double>& A) {
        std::vector<double> AH(size_t(out * in));
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(out), blasint(in), blasint(in), 1.0, A.data(),
                    blasint(in), hessian.data(), blasint(in), 0.0, AH.data(), blasint(in));
        double t = 0;
        for (size_t i = 0; i < AH.size(); ++i)
            t += AH[i] * A[i];
        return t;
    };
    const double signal = quadratic(W), noise = quadratic(D);
    if (noise <= 0)
        return std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(signal / noise);
}

}  // namespace quantlens
