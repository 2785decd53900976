// The runners' element-wise loops (kernels/eltwise.h): every ISA variant this machine runs
// gives bit for bit the baseline variant's result, for every length from 0 to 41 (whole
// vectors and every remainder) and inputs far beyond the exp clamps; and the baseline is
// close to the functions it stands for (libm's erf, exp, tanh, sqrt in double).
#include <QTest>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/eltwise.h"

using namespace quantlens::kernels;

namespace {

std::vector<float> data(size_t n, unsigned seed, float spread)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, spread);
    std::vector<float> v(n);
    for (float& x : v)
        x = d(rng);
    if (n > 2) {
        v[0] = 120.0f;  // beyond vexp's clamps on both sides
        v[1] = -120.0f;
    }
    return v;
}

// Length 0 compares nothing: memcmp must not see an empty vector's null data().
bool sameBits(const std::vector<float>& a, const std::vector<float>& b)
{
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Runs `op` on a copy of the inputs with each variant and checks the outputs are identical.
template <class Op>
void sameInEveryVariant(const char* what, Op op)
{
    const auto variants = availableEltwise();
    QVERIFY(!variants.empty() && std::strcmp(variants.back()->name, "ref") == 0);
    for (size_t n = 0; n <= 41; ++n) {
        const std::vector<float> want = op(*variants.back(), n);
        for (const EltwiseKernels* k : variants) {
            const std::vector<float> got = op(*k, n);
            QVERIFY2(sameBits(got, want), (std::string(what) + ": " + k->name + " differs from ref at n = " + std::to_string(n)).c_str());
        }
    }
}

}  // namespace

class TestEltwise : public QObject {
    Q_OBJECT

private slots:
    void activeIsOneOfTheAvailable()
    {
        bool found = false;
        for (const EltwiseKernels* k : availableEltwise())
            found = found || k == &activeEltwise();
        QVERIFY(found);
    }

    void variantsAreBitIdentical()
    {
        sameInEveryVariant("gelu", [](const EltwiseKernels& k, size_t n) {
            auto x = data(n, 1, 3.0f);
            k.gelu(x.data(), int64_t(n));
            return x;
        });
        sameInEveryVariant("geluTanh", [](const EltwiseKernels& k, size_t n) {
            auto x = data(n, 2, 3.0f);
            k.geluTanh(x.data(), int64_t(n));
            return x;
        });
        sameInEveryVariant("siluMul", [](const EltwiseKernels& k, size_t n) {
            auto g = data(n, 3, 4.0f);
            const auto u = data(n, 4, 1.0f);
            k.siluMul(g.data(), u.data(), int64_t(n));
            return g;
        });
        sameInEveryVariant("addInPlace", [](const EltwiseKernels& k, size_t n) {
            auto x = data(n, 5, 1.0f);
            const auto y = data(n, 6, 1.0f);
            k.addInPlace(x.data(), y.data(), int64_t(n));
            return x;
        });
        sameInEveryVariant("maskedSoftmax", [](const EltwiseKernels& k, size_t n) {
            auto s = data(n, 7, 5.0f);
            std::vector<float> keep(n, 1.0f);
            for (size_t j = 1; j < n; j += 3)
                keep[j] = 0.0f;
            if (n > 0)
                k.maskedSoftmax(s.data(), int64_t(n), keep.data());
            return s;
        });
        sameInEveryVariant("layerNormRow", [](const EltwiseKernels& k, size_t n) {
            auto v = data(n, 8, 2.0f);
            const auto g = data(n, 9, 1.0f), b = data(n, 10, 0.5f);
            if (n > 0)
                k.layerNormRow(v.data(), int64_t(n), g.data(), b.data(), 1e-5f);
            return v;
        });
        sameInEveryVariant("rmsNormRow", [](const EltwiseKernels& k, size_t n) {
            const auto x = data(n, 11, 2.0f), g = data(n, 12, 1.0f);
            std::vector<float> y(n);
            if (n > 0)
                k.rmsNormRow(x.data(), y.data(), int64_t(n), g.data(), 1e-6f);
            return y;
        });
    }

    void closeToTheFunctions()
    {
        const EltwiseKernels& k = kEltwiseRef;
        const size_t n = 37;
        const auto x = data(n, 13, 3.0f);
        auto gelu = x, tanhGelu = x, silu = x;
        k.gelu(gelu.data(), int64_t(n));
        k.geluTanh(tanhGelu.data(), int64_t(n));
        const std::vector<float> ones(n, 1.0f);
        k.siluMul(silu.data(), ones.data(), int64_t(n));
        for (size_t i = 0; i < n; ++i) {
            const double v = x[i];
            const double wantGelu = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
            const double wantTanh = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
            const double wantSilu = v / (1.0 + std::exp(-v));
            QVERIFY2(std::abs(gelu[i] - wantGelu) <= 1e-5 * (1.0 + std::abs(wantGelu)), std::to_string(v).c_str());
            QVERIFY2(std::abs(tanhGelu[i] - wantTanh) <= 1e-5 * (1.0 + std::abs(wantTanh)), std::to_string(v).c_str());
            QVERIFY2(std::abs(silu[i] - wantSilu) <= 1e-5 * (1.0 + std::abs(wantSilu)), std::to_string(v).c_str());
        }
        auto s = data(n, 14, 5.0f);
        std::vector<float> keep(n, 1.0f);
        keep[3] = 0.0f;
        const auto scores = s;
        k.maskedSoftmax(s.data(), int64_t(n), keep.data());
        double mx = -1e300, sum = 0.0;
        for (size_t j = 0; j < n; ++j)
            if (keep[j] != 0.0f)
                mx = std::max(mx, double(scores[j]));
        for (size_t j = 0; j < n; ++j)
            sum += keep[j] != 0.0f ? std::exp(double(scores[j]) - mx) : 0.0;
        for (size_t j = 0; j < n; ++j) {
            const double want = keep[j] != 0.0f ? std::exp(double(scores[j]) - mx) / sum : 0.0;
            QVERIFY2(std::abs(s[j] - want) <= 1e-6, std::to_string(j).c_str());
        }
        QCOMPARE(s[3], 0.0f);
    }
};

QTEST_GUILESS_MAIN(TestEltwise)
#include "tst_eltwise.moc"
