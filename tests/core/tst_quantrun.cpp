// The quantizer's inner loops (kernels/quantrun.h): every ISA table this machine runs
// gives the reference's integers, clamp counts, dequantized floats, metric sums (bit for
// bit) and histogram slots, on odd lengths and on data with ties, NaN, infinities and
// out-of-range values; the one-sweep round trip equals the three passes it replaces.
// (ctest also runs tst_histogram, tst_metrics and tst_quant_properties with
// QUANTLENS_ISA forced to each ISA, for the whole functions built on these tables.)
#include <QTest>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/quantrun.h"
#include "quant/quantize.h"

using namespace quantlens;
using quantrun::Kernel;
using quantrun::QuantKernels;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> hostile(size_t n, unsigned seed, bool withNonFinite)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 40.0f);
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i)
        x[i] = (i % 3 == 0) ? float(int(nd(rng))) + 0.5f : nd(rng);  // many exact ties
    if (withNonFinite)
        for (size_t i = 5; i < n; i += 97) {
            x[i] = kNaN;
            if (i + 3 < n)
                x[i + 3] = (i & 1) ? kInf : -kInf;
            if (i + 7 < n)
                x[i + 7] = (i & 2) ? 1e30f : -1e30f;
        }
    return x;
}

const std::vector<int64_t> kLengths{0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 95, 511, 512, 513, 768, 1031, 1100, 2333};

// Bit for bit, except that any NaN equals any NaN (its payload depends on operand order).
template <typename T>
bool same(T a, T b)
{
    return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0;
}

bool sameSums(const quantrun::Sums& a, const quantrun::Sums& b)
{
    return same(a.err2, b.err2) && same(a.x2, b.x2) && same(a.y2, b.y2) && same(a.xy, b.xy) && same(a.maxAbs, b.maxAbs);
}

std::string where(const QuantKernels* k, int64_t n, int kernel = -1, int zp = 0)
{
    return std::string(k->name) + " n=" + std::to_string(n) + " kernel=" + std::to_string(kernel) + " zp="
           + std::to_string(zp);
}

// zero point, qmin, qmax: signed, narrow, unsigned, 4-bit, an offset unsigned
const std::vector<std::tuple<int, int, int>> kRanges{
    {0, -128, 127}, {0, -127, 127}, {128, 0, 255}, {-3, -8, 7}, {37, 0, 127}};

}  // namespace

class TestQuantRun : public QObject {
    Q_OBJECT
private slots:
    void variantsExist()
    {
        const auto v = quantrun::availableQuant();
        QVERIFY(!v.empty());
        QCOMPARE(std::string(v.back()->name), std::string("ref"));
        std::string names;
        for (auto* k : v)
            names += std::string(names.empty() ? "" : ", ") + k->name;
        qInfo("quant variants here: %s (active: %s)", names.c_str(), quantrun::activeQuant().name);
    }

    void quantizeMatchesRef()
    {
        const std::vector<float> x = hostile(2400, 99, true);
        for (const QuantKernels* k : quantrun::availableQuant())
            for (const Kernel kern : {Kernel::DivHalfEven, Kernel::MulInvHalfEven, Kernel::MulInvHalfAway})
                for (const auto& [zp, qmin, qmax] : kRanges)
                    for (const int64_t n : kLengths)
                        for (const float s : {1.0f, 0.37f, 3.0f}) {
                            std::vector<int8_t> a(size_t(n) + 1, 0x5a), b(size_t(n) + 1, 0x5a);
                            const int64_t ca = quantrun::kQuantRef.quantize(x.data() + 1, a.data(), n, kern, s, zp, qmin, qmax);
                            const int64_t cb = k->quantize(x.data() + 1, b.data(), n, kern, s, zp, qmin, qmax);
                            QVERIFY2(a == b, where(k, n, int(kern), zp).c_str());  // incl. the guard byte
                            QVERIFY2(ca == cb, where(k, n, int(kern), zp).c_str());
                        }
    }

    void dequantizeMatchesRef()
    {
        std::mt19937 rng(5);
        std::vector<int8_t> q(2400);
        for (auto& v : q)
            v = int8_t(rng());
        for (const QuantKernels* k : quantrun::availableQuant())
            for (const bool isUnsigned : {false, true})
                for (const int64_t n : kLengths) {
                    std::vector<float> a(size_t(n) + 1, 7.0f), b(size_t(n) + 1, 7.0f);
                    quantrun::kQuantRef.dequantize(q.data() + 3, a.data(), n, isUnsigned, 0.0371f, isUnsigned ? 128 : -3);
                    k->dequantize(q.data() + 3, b.data(), n, isUnsigned, 0.0371f, isUnsigned ? 128 : -3);
                    QVERIFY2(a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0, where(k, n).c_str());
                }
    }

    void sumsMatchRefBitForBit()
    {
        for (const bool nonFinite : {false, true}) {
            const std::vector<float> x = hostile(2400, 7, nonFinite);
            std::vector<float> y(x.size());
            for (size_t i = 0; i < y.size(); ++i)
                y[i] = std::isfinite(x[i]) ? x[i] * 0.99f + 0.01f : 0.0f;
            for (const QuantKernels* k : quantrun::availableQuant())
                for (const int64_t n : kLengths) {
                    quantrun::Sums a, b, c;
                    quantrun::kQuantRef.sums(x.data() + 1, y.data() + 1, n, &a);
                    k->sums(x.data() + 1, y.data() + 1, n, &b);
                    QVERIFY2(sameSums(a, b), (where(k, n) + (nonFinite ? " non-finite" : "")).c_str());
                    // split at a block boundary, continued through the accumulator
                    const int64_t cut = std::min<int64_t>(n, quantrun::kSumBlock);
                    k->sums(x.data() + 1, y.data() + 1, cut, &c);
                    k->sums(x.data() + 1 + cut, y.data() + 1 + cut, n - cut, &c);
                    QVERIFY2(sameSums(a, c), (where(k, n) + " split").c_str());
                }
        }
    }

    // The one sweep equals quantize, dequantize, sums run one after the other (the reference's).
    void roundTripMatchesThreePasses()
    {
        for (const bool nonFinite : {false, true})  // NaN sums would hide a wrong order
        for (const QuantKernels* k : quantrun::availableQuant())
            for (const Kernel kern : {Kernel::DivHalfEven, Kernel::MulInvHalfEven, Kernel::MulInvHalfAway})
                for (const auto& [zp, qmin, qmax] : kRanges)
                    for (const int64_t n : kLengths) {
                        const std::vector<float> x = hostile(2400, 11, nonFinite);
                        const bool isUnsigned = qmin >= 0;
                        const float scale = 0.37f;
                        const float s = kern == Kernel::DivHalfEven ? scale : 1.0f / scale;
                        std::vector<int8_t> qa(static_cast<size_t>(n)), qb(static_cast<size_t>(n));
                        std::vector<float> ya(static_cast<size_t>(n)), yb(static_cast<size_t>(n));
                        const QuantKernels& r = quantrun::kQuantRef;
                        const int64_t ca = r.quantize(x.data(), qa.data(), n, kern, s, zp, qmin, qmax);
                        r.dequantize(qa.data(), ya.data(), n, isUnsigned, scale, zp);
                        quantrun::Sums sa;
                        r.sums(x.data(), ya.data(), n, &sa);
                        quantrun::Sums sb;
                        const int64_t cb = k->roundTrip(x.data(), qb.data(), yb.data(), n, kern, s, scale, zp, qmin, qmax,
                                                        isUnsigned, &sb);
                        const std::string w = where(k, n, int(kern), zp);
                        QVERIFY2(qa == qb, w.c_str());
                        QVERIFY2(ca == cb, w.c_str());
                        // Bitwise (NaN included); memcmp is not called on the empty n = 0 vectors.
                        QVERIFY2(ya.empty() || std::memcmp(ya.data(), yb.data(), ya.size() * sizeof(float)) == 0, w.c_str());
                        QVERIFY2(sameSums(sa, sb), w.c_str());
                    }
    }

    // Each slot is the reference's, or -2 (decided exactly later, so the counts agree; a
    // variant may flag below / above / NaN values too); the listed positions are exactly
    // the -2 slots, in order. Below / above are flagged only within tol of lo / hi.
    void histogramSlotsAgreeWithRef()
    {
        std::vector<float> x = hostile(1100, 3, true);
        for (size_t i = 0; i < x.size(); i += 13)
            x[i] = float(i % 64) * 0.25f - 8.0f;  // on bin edges
        x[2] = -0.0f;
        const int bins = 64;
        const float lo = -8.0f, hi = 8.0f;
        const quantrun::SlotParams p{lo, hi, float(bins) / (hi - lo), 1e-4f, float(bins - 1), float(bins), bins};
        for (const QuantKernels* k : quantrun::availableQuant())
            for (const bool absolute : {false, true})
                for (const int64_t n64 : kLengths) {
                    const int n = int(std::min<int64_t>(n64, int64_t(x.size())));
                    std::vector<int32_t> a(size_t(n) + 1), b(size_t(n) + 1), na(size_t(n) + 1), nb(size_t(n) + 1);
                    const int ca = quantrun::kQuantRef.histogramSlots(x.data(), a.data(), n, p, absolute, na.data());
                    const int cb = k->histogramSlots(x.data(), b.data(), n, p, absolute, nb.data());
                    int listed = 0;
                    for (int i = 0; i < n; ++i) {
                        const std::string w = where(k, n) + " i=" + std::to_string(i) + (absolute ? " abs" : "");
                        QVERIFY2(b[size_t(i)] == a[size_t(i)] || b[size_t(i)] == -2
                                     || (a[size_t(i)] == -2 && b[size_t(i)] >= 1 && b[size_t(i)] <= bins),
                                 w.c_str());
                        if (b[size_t(i)] == -2 && (a[size_t(i)] == 0 || a[size_t(i)] == bins + 1)) {
                            // below / above flagged by the variant alone: only within tol of lo or hi
                            const float v = absolute ? std::fabs(x[size_t(i)]) : x[size_t(i)];
                            const float f = (v - lo) * p.scale;
                            QVERIFY2(std::fabs(f - (a[size_t(i)] == 0 ? 0.0f : float(bins))) < 2 * p.tol, w.c_str());
                        }
                        if (b[size_t(i)] == -2) {
                            QVERIFY2(listed < cb && nb[size_t(listed)] == i, w.c_str());
                            ++listed;
                        }
                    }
                    QCOMPARE(listed, cb);
                    QVERIFY(ca >= 0);
                }
    }

    // quantizeRoundTrip (the GUI's drag update) against quantizeInto + dequantize +
    // computeMetrics, per tensor (the one sweep) and per channel / q8_0 (three passes).
    void publicRoundTripMatchesSeparateCalls()
    {
        const std::vector<int64_t> shape{37, 29};
        for (const bool nonFinite : {false, true})
        for (const char* scheme : {"seed", "torch-symmetric", "torch-affine", "narrow-symmetric", "q8_0"})
            for (const bool perChannel : {false, true})
                for (const bool isUnsigned : {false, true}) {
                    const std::vector<float> x = hostile(37 * 29, 21, nonFinite);
                    QuantSpec spec;
                    spec.scheme = *parseScheme(scheme);
                    if (isUnsigned && spec.scheme == Scheme::Q8_0)
                        continue;
                    spec.isUnsigned = isUnsigned;
                    spec.granularity = perChannel ? Granularity::PerChannel : Granularity::PerTensor;
                    QuantizedTensor a, b;
                    QVERIFY(quantizeManualInto(x, shape, spec, -30.0f, 50.0f, a));
                    std::vector<float> ya(x.size()), yb(x.size());
                    dequantize(a, ya);
                    const Metrics ma = computeMetrics(x, ya, a.clampedCount);
                    auto mb = quantizeManualRoundTrip(x, shape, spec, -30.0f, 50.0f, b, yb);
                    QVERIFY(mb);
                    QVERIFY(a.q == b.q);
                    QCOMPARE(b.params.scale, a.params.scale);
                    QCOMPARE(b.params.zeroPoint, a.params.zeroPoint);
                    QCOMPARE(b.clampedCount, a.clampedCount);
                    QVERIFY(ya.empty() || std::memcmp(ya.data(), yb.data(), ya.size() * sizeof(float)) == 0);
                    QVERIFY(same(ma.mse, mb->mse));
                    QVERIFY(same(ma.sqnrDb, mb->sqnrDb));
                    QVERIFY(same(ma.cosine, mb->cosine));
                    QVERIFY(same(ma.maxAbsError, mb->maxAbsError));
                    const Metrics mc = quantizationMetrics(x, a);  // chunked, no float copy
                    QVERIFY(same(ma.mse, mc.mse) && same(ma.sqnrDb, mc.sqnrDb) && same(ma.cosine, mc.cosine));
                    QVERIFY(same(ma.maxAbsError, mc.maxAbsError));
                    QCOMPARE(mc.clampedFraction, ma.clampedFraction);
                    QCOMPARE(mb->clampedFraction, ma.clampedFraction);
                }
        // Chunked metrics over several chunks, per group along [in, out] (axis 1): runs end
        // at channel, group and chunk boundaries.
        {
            const std::vector<float> big = hostile(300 * 700, 4, false);
            for (const char* g : {"tensor", "channel", "group"}) {
                QuantSpec spec;
                spec.scheme = Scheme::TorchAffine;
                QVERIFY(parseGranularity(std::string(g) == "group" ? "group:96" : g, spec));
                for (const int axis : {0, 1}) {
                    spec.axis = axis;
                    auto q = quantize(big, {300, 700}, spec);
                    QVERIFY(q);
                    const Metrics ma = computeMetrics(big, dequantize(*q), q->clampedCount);
                    const Metrics mc = quantizationMetrics(big, *q);
                    QVERIFY2(same(ma.mse, mc.mse) && same(ma.cosine, mc.cosine) && same(ma.maxAbsError, mc.maxAbsError), g);
                }
            }
        }
        QuantizedTensor t;
        const std::vector<float> x(37 * 29, 1.0f);
        std::vector<float> small(3);
        QVERIFY(!quantizeRoundTrip(x, shape, QuantSpec{}, t, small));  // too small an output is refused
    }
};

QTEST_GUILESS_MAIN(TestQuantRun)
#include "tst_quantrun.moc"
