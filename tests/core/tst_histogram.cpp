// computeHistogram / computeAbsHistogram: counts equal numpy.histogram's (fixtures), plus
// the edge rules the header promises.
#include <QTest>

#include <cmath>
#include <limits>

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
};

QTEST_GUILESS_MAIN(TstHistogram)
#include "tst_histogram.moc"
