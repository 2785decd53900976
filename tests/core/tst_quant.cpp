// quantize() against what torch 1.13, onnxruntime's numpy formula and ggml's reference
// made of the same inputs (tests/scripts/make_quant_fixtures.py): every integer and
// every scale bit must agree.
#include <QTest>

#include <cmath>

#include "quant/quantize.h"
#include "quantfixtures.h"

using namespace quantlens;
using namespace quantlens::test;

namespace {
QuantFixtures g_fx;
}

class TstQuant : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QVERIFY2(g_fx.load(), "tests/data/quant/fixtures.* missing: run tests/scripts/make_quant_fixtures.py"); }

    void matchesReference_data()
    {
        QTest::addColumn<int>("index");
        const auto& results = g_fx.manifest.at("results");
        for (size_t i = 0; i < results.size(); ++i) {
            const auto& r = results[i];
            std::string name = r.at("input").get<std::string>() + " " + r.at("scheme").get<std::string>() + " "
                               + r.at("granularity").get<std::string>();
            if (r.at("unsigned").get<bool>())
                name += " uint";
            if (r.at("reduce_range").get<bool>())
                name += " reduce_range";
            if (r.at("bits").get<int>() != 8)
                name += " bits=" + std::to_string(r.at("bits").get<int>());
            if (r.at("axis").get<int>() != 0)
                name += " axis=" + std::to_string(r.at("axis").get<int>());
            QTest::newRow(name.c_str()) << int(i);
        }
    }

    void matchesReference()
    {
        QFETCH(int, index);
        const auto& r = g_fx.manifest.at("results").at(size_t(index));
        std::vector<int64_t> shape;
        const auto x = g_fx.input(r.at("input"), &shape);
        QuantSpec spec;
        spec.scheme = *parseScheme(r.at("scheme"));
        QVERIFY(parseGranularity(r.at("granularity"), spec).ok());
        QVERIFY(parseCalib(r.at("calib"), spec).ok());
        spec.axis = r.at("axis");
        spec.bits = r.at("bits");
        spec.isUnsigned = r.at("unsigned");
        spec.reduceRange = r.at("reduce_range");

        auto qt = quantize(x, shape, spec);
        QVERIFY2(qt.ok(), qt.ok() ? "" : qt.error().oneLine().c_str());

        const auto scaleBits = r.at("scale_bits").get<std::vector<uint32_t>>();
        const auto zps = r.at("zero_point").get<std::vector<int64_t>>();
        QCOMPARE(qt->params.scale.size(), scaleBits.size());
        QCOMPARE(qt->params.zeroPoint.size(), zps.size());
        for (size_t i = 0; i < scaleBits.size(); ++i) {
            if (bitsOf(qt->params.scale[i]) != scaleBits[i])
                QFAIL(qPrintable(QStringLiteral("scale %1: got %2 (0x%3), torch/ref %4 (0x%5)")
                                     .arg(i)
                                     .arg(double(qt->params.scale[i]), 0, 'g', 9)
                                     .arg(bitsOf(qt->params.scale[i]), 8, 16, QLatin1Char('0'))
                                     .arg(double(floatFromBits(scaleBits[i])), 0, 'g', 9)
                                     .arg(scaleBits[i], 8, 16, QLatin1Char('0'))));
            QCOMPARE(int64_t(qt->params.zeroPoint[i]), zps[i]);
        }
        std::vector<int32_t> ref;
        if (spec.isUnsigned) {
            for (uint8_t v : g_fx.array<uint8_t>(r.at("q")))
                ref.push_back(v);
        } else {
            for (int8_t v : g_fx.array<int8_t>(r.at("q")))
                ref.push_back(v);
        }
        QCOMPARE(int64_t(ref.size()), int64_t(x.size()));
        int64_t bad = 0, first = -1;
        for (size_t i = 0; i < ref.size(); ++i)
            if (qt->qAt(int64_t(i)) != ref[i]) {
                if (first < 0)
                    first = int64_t(i);
                ++bad;
            }
        if (bad)
            QFAIL(qPrintable(QStringLiteral("%1 of %2 integers differ; first at %3: x=%4 got %5 ref %6")
                                 .arg(bad)
                                 .arg(ref.size())
                                 .arg(first)
                                 .arg(double(x[size_t(first)]), 0, 'g', 9)
                                 .arg(qt->qAt(first))
                                 .arg(ref[size_t(first)])));
    }
};

QTEST_GUILESS_MAIN(TstQuant)
#include "tst_quant.moc"
