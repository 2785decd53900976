// Range calibrators against their references (tests/scripts/make_quant_fixtures.py):
// torch 1.13's HistogramObserver and pytorch-quantization's entropy / mse / percentile
// functions (ported to numpy there), and numpy.percentile.
#include <QTest>

#include <cmath>

#include "quant/calibrate.h"
#include "quant/quantize.h"
#include "quantfixtures.h"

using namespace quantlens;
using namespace quantlens::test;

namespace {
QuantFixtures g_fx;

QString describe(float got, uint32_t refBits)
{
    return QStringLiteral("got %1 (0x%2), reference %3 (0x%4)")
        .arg(double(got), 0, 'g', 9)
        .arg(bitsOf(got), 8, 16, QLatin1Char('0'))
        .arg(double(floatFromBits(refBits)), 0, 'g', 9)
        .arg(refBits, 8, 16, QLatin1Char('0'));
}
}  // namespace

class TstCalibrate : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QVERIFY(g_fx.load()); }

    void histogramObserver_data()
    {
        QTest::addColumn<int>("index");
        const auto& h = g_fx.manifest.at("histogram_observer");
        for (size_t i = 0; i < h.size(); ++i) {
            const std::string name = h[i].at("input").get<std::string>()
                                     + (h[i].at("symmetric").get<bool>() ? " qint8 symmetric" : " quint8 affine");
            QTest::newRow(name.c_str()) << int(i);
        }
    }
    // The chosen [new_min, new_max] agrees with torch to 1e-6 relative (bit-exact in
    // practice), and the scale/zero point torch derives from it are bit-exact.
    void histogramObserver()
    {
        QFETCH(int, index);
        const auto& h = g_fx.manifest.at("histogram_observer").at(size_t(index));
        std::vector<int64_t> shape;
        const auto x = g_fx.input(h.at("input"), &shape);
        const Range r = histogramL2Range(x);
        const float refLo = floatFromBits(h.at("new_min_bits"));
        const float refHi = floatFromBits(h.at("new_max_bits"));
        const float span = std::max(std::fabs(refLo), std::fabs(refHi));
        QVERIFY2(std::fabs(r.lo - refLo) <= 1e-6f * span, qPrintable(describe(r.lo, h.at("new_min_bits"))));
        QVERIFY2(std::fabs(r.hi - refHi) <= 1e-6f * span, qPrintable(describe(r.hi, h.at("new_max_bits"))));

        QuantSpec spec;
        spec.calib = CalibMethod::HistogramL2;
        spec.isUnsigned = h.at("unsigned");
        spec.scheme = h.at("symmetric").get<bool>() ? Scheme::TorchSymmetric : Scheme::TorchAffine;
        auto qt = quantize(x, shape, spec);
        QVERIFY(qt.ok());
        QVERIFY2(bitsOf(qt->params.scale[0]) == h.at("scale_bits").get<uint32_t>(),
                 qPrintable(describe(qt->params.scale[0], h.at("scale_bits"))));
        QCOMPARE(qt->params.zeroPoint[0], h.at("zero_point").get<int32_t>());
    }

    void calibrators_data()
    {
        QTest::addColumn<int>("index");
        const auto& c = g_fx.manifest.at("calibrators");
        for (size_t i = 0; i < c.size(); ++i) {
            std::string name = c[i].at("input").get<std::string>() + " " + c[i].at("method").get<std::string>();
            if (c[i].contains("percentile"))
                name += ":" + std::to_string(c[i].at("percentile").get<double>()).substr(0, 6);
            name += c[i].at("symmetric").get<bool>() ? " |x|" : " tails";
            QTest::newRow(name.c_str()) << int(i);
        }
    }
    void calibrators()
    {
        QFETCH(int, index);
        const auto& c = g_fx.manifest.at("calibrators").at(size_t(index));
        const auto x = g_fx.input(c.at("input"));
        const std::string method = c.at("method");
        const bool symmetric = c.at("symmetric");
        QuantSpec spec;
        spec.scheme = symmetric ? Scheme::NarrowSymmetric : Scheme::TorchAffine;
        Range r;
        if (method == "entropy")
            r = entropyRange(x, spec);
        else if (method == "mse-trt")
            r = mseRange(x, spec);
        else
            r = percentileRange(x, c.at("percentile").get<double>(), symmetric);
        if (symmetric) {
            QCOMPARE(r.lo, -r.hi);
            QVERIFY2(bitsOf(r.hi) == c.at("amax_bits").get<uint32_t>(), qPrintable(describe(r.hi, c.at("amax_bits"))));
        } else {
            QVERIFY2(bitsOf(r.lo) == c.at("lo_bits").get<uint32_t>(), qPrintable(describe(r.lo, c.at("lo_bits"))));
            QVERIFY2(bitsOf(r.hi) == c.at("hi_bits").get<uint32_t>(), qPrintable(describe(r.hi, c.at("hi_bits"))));
        }
    }
};

QTEST_GUILESS_MAIN(TstCalibrate)
#include "tst_calibrate.moc"
