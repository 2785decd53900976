// computeHistogram / computeAbsHistogram: counts equal numpy.histogram's (fixtures), plus
// the edge rules the header promises.
#include <QTest>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "quant/histogram.h"
#include "quantfixtures.h"

using namespace quantlens;
using namespace quantlens::test;

namespace {
QuantFixtures g_fx;
}

class TstHistogram : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QVERIFY(g_fx.load()); }

    void matchesNumpy_data()
    {
        QTest::addColumn<int>("index");
        const auto& h = g_fx.manifest.at("histograms");
        for (size_t i = 0; i < h.size(); ++i) {
            const std::string name = h[i].at("input").get<std::string>() + (h[i].contains("abs") ? " |x|" : "") + " bins="
                                     + std::to_string(h[i].at("bins").get<int>()) + " ["
                                     + std::to_string(h[i].at("lo").get<double>()) + ", "
                                     + std::to_string(h[i].at("hi").get<double>()) + "]";
            QTest::newRow(name.c_str()) << int(i);
        }
    }
    void matchesNumpy()
    {
        QFETCH(int, index);
        const auto& r = g_fx.manifest.at("histograms").at(size_t(index));
        const auto x = g_fx.input(r.at("input"));
        const int bins = r.at("bins");
        const Histogram h = r.contains("abs") ? computeAbsHistogram(x, r.at("hi").get<double>(), bins)
                                              : computeHistogram(x, r.at("lo"), r.at("hi"), bins);
        const auto ref = r.at("counts").get<std::vector<int64_t>>();
        QCOMPARE(h.counts.size(), ref.size());
        for (size_t b = 0; b < ref.size(); ++b)
            if (h.counts[b] != ref[b])
                QFAIL(qPrintable(QStringLiteral("bin %1: %2, numpy %3").arg(b).arg(h.counts[b]).arg(ref[b])));
        QCOMPARE(h.below, r.at("below").get<int64_t>());
        QCOMPARE(h.above, r.at("above").get<int64_t>());
        QCOMPARE(h.total(), int64_t(x.size()));
    }

    void edges()
    {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        const float inf = std::numeric_limits<float>::infinity();
        const std::vector<float> x{0.0f, 1.0f, 0.5f, -0.1f, 1.1f, nan, inf, -inf, 0.25f, 0.999999f};
        const Histogram h = computeHistogram(x, 0.0, 1.0, 4);
        QCOMPARE(h.counts, (std::vector<int64_t>{1, 1, 1, 2}));  // 1.0 is in the last bin (right edge inclusive)
        QCOMPARE(h.below, int64_t(2));                          // -0.1, -inf
        QCOMPARE(h.above, int64_t(2));                          // 1.1, inf
        QCOMPARE(h.total(), int64_t(x.size() - 1));             // NaN is ignored
        QCOMPARE(h.binWidth(), 0.25);
        QCOMPARE(h.binCenter(1), 0.375);
    }

    void degenerateRanges()
    {
        const std::vector<float> x{0.3f, 0.3f, 0.2f};
        const Histogram same = computeHistogram(x, double(0.3f), double(0.3f), 8);  // lo == hi: values equal to lo go in bin 0
        QCOMPARE(same.counts[0], int64_t(2));
        QCOMPARE(same.below, int64_t(1));
        QVERIFY(computeHistogram(x, 1.0, 0.0, 8).counts.empty());  // hi < lo: nothing
        QVERIFY(computeHistogram(x, 0.0, 1.0, 0).counts.empty());  // no bins
        QVERIFY(computeHistogram({}, 0.0, 1.0, 8).total() == 0);
    }

    // More than one chunk plus a tail, with values sitting exactly on every edge.
    void exactEdgesLargeInput()
    {
        std::vector<float> x;
        for (int rep = 0; rep < 300; ++rep)
            for (int k = 0; k <= 10; ++k)
                x.push_back(float(k) * 0.1f);
        const Histogram h = computeHistogram(x, 0.0, 1.0, 10);
        // numpy: edges k*0.1 (float64); float(k*0.1) may fall either side, decided exactly
        std::vector<int64_t> ref(10, 0);
        for (const float v : x) {
            const double d = v;
            int b = 0;
            while (b < 9 && d >= double(b + 1) * 0.1)
                ++b;
            ++ref[size_t(b)];
        }
        QCOMPARE(h.counts, ref);
    }

    // A million values with NaN, infinities, lo and hi themselves, the floats just beyond
    // them and values on interior edges, over several bin counts, plain and |x|, against
    // numpy's rule done by hand in float64 (edges k * ((hi - lo) / bins) + lo, the last one
    // hi; a value goes to the last edge <= it; hi into the last bin). The SIMD slot kernels
    // leave values near lo, hi and NaN to the exact path: this is where that must agree.
    void nearTheRangeEndsLargeInput()
    {
        std::mt19937 rng(1);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> x(size_t(1) << 20);
        for (auto& v : x)
            v = nd(rng);
        const double lo = -2.0000001, hi = 2.5;
        for (size_t i = 0; i < x.size(); i += 97)
            x[i] = float(lo);
        for (size_t i = 5; i < x.size(); i += 101)
            x[i] = float(hi);
        for (size_t i = 7; i < x.size(); i += 103)
            x[i] = std::nextafter(float(hi), 10.0f);
        for (size_t i = 9; i < x.size(); i += 107)
            x[i] = std::nextafter(float(lo), -10.0f);
        for (size_t i = 11; i < x.size(); i += 109)
            x[i] = float(lo + (hi - lo) * double(i % 64) / 64.0);
        for (size_t i = 13; i < x.size(); i += 1001)
            x[i] = std::numeric_limits<float>::quiet_NaN();
        for (size_t i = 17; i < x.size(); i += 1003)
            x[i] = (i & 1) ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
        for (const int bins : {1, 7, 64, 2048})
            for (const bool absolute : {false, true}) {
                const double a = absolute ? 0.0 : lo;
                const Histogram h = absolute ? computeAbsHistogram(x, hi, bins) : computeHistogram(x, lo, hi, bins);
                std::vector<double> edges(size_t(bins) + 1);
                for (int k = 0; k < bins; ++k)
                    edges[size_t(k)] = double(k) * ((hi - a) / double(bins)) + a;
                edges[size_t(bins)] = hi;
                std::vector<int64_t> counts(size_t(bins), 0);
                int64_t below = 0, above = 0;
                for (const float f : x) {
                    const double v = absolute ? std::fabs(double(f)) : double(f);
                    if (v != v)
                        continue;
                    if (v < a)
                        ++below;
                    else if (v > hi)
                        ++above;
                    else
                        ++counts[size_t(std::min<ptrdiff_t>(
                            std::upper_bound(edges.begin(), edges.end(), v) - edges.begin() - 1, bins - 1))];
                }
                const QString at = QStringLiteral("bins %1%2").arg(bins).arg(absolute ? " abs" : "");
                QVERIFY2(h.counts == counts, qPrintable(at));
                QVERIFY2(h.below == below && h.above == above, qPrintable(at));
            }
    }
};

QTEST_GUILESS_MAIN(TstHistogram)
#include "tst_histogram.moc"
