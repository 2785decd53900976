// Properties every scheme x granularity x bit width must have (fixed seeds), the
// degenerate inputs, the argument checks, and q8_0 against the GGUF helper's ggml
// reference (tests/data/gguf/q8_0_reference.json).
#include <QTest>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>

#include "halffloat.h"
#include "quant/calibrate.h"
#include "quant/metrics.h"
#include "quant/quantize.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

std::vector<float> heavyTailed(int64_t n, uint32_t seed)
{
    std::mt19937 rng(seed);
    std::student_t_distribution<float> t3(3.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x)
        v = t3(rng) * 0.023f;
    x[size_t(n / 3)] = 0.74f;
    x[size_t(n / 2)] = -0.61f;
    x[size_t(n / 5)] = 0.0f;
    return x;
}

QuantSpec makeSpec(const char* scheme, const char* gran, int bits, bool isUnsigned, const char* calib)
{
    QuantSpec s;
    s.scheme = *parseScheme(scheme);
    (void)parseGranularity(gran, s);
    (void)parseCalib(calib, s);
    s.bits = bits;
    s.isUnsigned = isUnsigned;
    return s;
}

}  // namespace

class TstQuantProperties : public QObject {
    Q_OBJECT
private slots:
    void roundTrip_data()
    {
        QTest::addColumn<QString>("scheme");
        QTest::addColumn<QString>("gran");
        QTest::addColumn<int>("bits");
        QTest::addColumn<bool>("isUnsigned");
        QTest::addColumn<QString>("calib");
        QTest::addColumn<int>("axis");
        for (const char* scheme : {"seed", "torch-symmetric", "torch-affine", "narrow-symmetric", "q8_0"})
            for (const char* gran : {"tensor", "channel", "group:64", "group:48"})
                for (int bits : {8, 4, 2}) {
                    if (QByteArray(scheme) == "q8_0" && (QByteArray(gran) != "tensor" || bits != 8))
                        continue;  // q8_0's blocks are fixed
                    for (const char* calib : {"minmax", "percentile:99.9", "mse", "entropy", "hist-l2", "manual:-0.2,0.3"}) {
                        if (bits != 8 && QByteArray(calib) != "minmax")
                            continue;
                        if (QByteArray(scheme) == "q8_0"
                            && (QByteArray(calib) == "mse" || QByteArray(calib) == "entropy" || QByteArray(calib) == "hist-l2"))
                            continue;  // refused, see rejectsBadArguments
                        const QByteArray name = QByteArray(scheme) + " " + gran + " bits=" + QByteArray::number(bits) + " " + calib;
                        QTest::newRow(name.constData()) << scheme << gran << bits << false << calib << 0;
                    }
                }
        QTest::newRow("torch-affine uint8 channel") << "torch-affine" << "channel" << 8 << true << "minmax" << 0;
        QTest::newRow("torch-symmetric uint8 tensor") << "torch-symmetric" << "tensor" << 8 << true << "minmax" << 0;
        QTest::newRow("narrow-symmetric uint8 tensor") << "narrow-symmetric" << "tensor" << 8 << true << "minmax" << 0;
        QTest::newRow("torch-symmetric channel axis=1") << "torch-symmetric" << "channel" << 8 << false << "minmax" << 1;
        QTest::newRow("torch-affine group:40 axis=1") << "torch-affine" << "group:40" << 8 << false << "minmax" << 1;
        QTest::newRow("q8_0 axis=1") << "q8_0" << "tensor" << 8 << false << "minmax" << 1;
    }
    // |dequant(quant(x)) - x| <= scale/2 inside the clamp range, with a slack of
    // |x| * 2^-22 for the float rounding of x * (1/scale) (or x / scale) and of the
    // dequantize product; q8_0 adds |q| * |d_fp16 - d| because it quantizes with the float
    // d and dequantizes with the stored fp16 d. Zero comes back exactly; requantizing the
    // dequantized tensor with the same parameters gives the same integers; quantizing twice
    // gives the same result.
    void roundTrip()
    {
        QFETCH(QString, scheme);
        QFETCH(QString, gran);
        QFETCH(int, bits);
        QFETCH(bool, isUnsigned);
        QFETCH(QString, calib);
        QFETCH(int, axis);
        const int64_t rows = 24, cols = 160;
        const auto x = heavyTailed(rows * cols, 7u + uint32_t(bits));
        QuantSpec spec = makeSpec(qPrintable(scheme), qPrintable(gran), bits, isUnsigned, qPrintable(calib));
        spec.axis = axis;
        const std::vector<int64_t> shape{rows, cols};
        auto qt = quantize(x, shape, spec);
        QVERIFY2(qt.ok(), qt.ok() ? "" : qt.error().oneLine().c_str());
        const auto xhat = dequantize(*qt);
        QCOMPARE(xhat.size(), x.size());

        // per element: which slice's scale applies
        const QuantParams& P = qt->params;
        const int64_t nScales = int64_t(P.scale.size());
        QVERIFY(nScales >= 1);
        for (const float s : P.scale)
            QVERIFY(std::isfinite(s) && s > 0);
        auto sliceOf = [&](int64_t r, int64_t c) -> int64_t {
            const int64_t ch = axis == 0 ? r : c;
            const int64_t pos = axis == 0 ? c : r;  // position along the channel's row
            if (nScales == 1)
                return 0;
            if (P.groupSize == 0)
                return ch;
            const int64_t per = (axis == 0 ? cols : rows);
            const int64_t groups = (per + P.groupSize - 1) / P.groupSize;
            return ch * groups + pos / P.groupSize;
        };
        int64_t inside = 0;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) {
                const int64_t i = r * cols + c;
                const int64_t s = sliceOf(r, c);
                QVERIFY(s < nScales);
                const float scale = P.scale[size_t(s)];
                const int32_t zp = P.zeroPoint[size_t(s)];
                const int32_t q = qt->qAt(i);
                QVERIFY(q >= P.qmin && q <= P.qmax);
                if (x[size_t(i)] == 0.0f)
                    QCOMPARE(xhat[size_t(i)], 0.0f);
                if (q == P.qmin || q == P.qmax)
                    continue;  // possibly clamped
                ++inside;
                double bound = 0.5 * double(scale) + std::fabs(double(x[size_t(i)])) * std::ldexp(1.0, -22);
                if (spec.scheme == Scheme::Q8_0) {
                    const float d = scale;  // stored fp16 value; the float d differs by <= 2^-11 relative
                    bound += std::fabs(double(q - zp)) * double(d) * std::ldexp(1.0, -11) + 0.5 * double(d) * std::ldexp(1.0, -11);
                }
                const double err = std::fabs(double(xhat[size_t(i)]) - double(x[size_t(i)]));
                if (!(err <= bound))
                    QFAIL(qPrintable(QStringLiteral("(%1,%2): x=%3 q=%4 xhat=%5 err=%6 > %7 (scale %8 zp %9)")
                                         .arg(r).arg(c).arg(double(x[size_t(i)]), 0, 'g', 9).arg(q)
                                         .arg(double(xhat[size_t(i)]), 0, 'g', 9).arg(err).arg(bound)
                                         .arg(double(scale), 0, 'g', 9).arg(zp)));
            }
        QVERIFY(inside > 0);

        QuantizedTensor again = *qt;
        QVERIFY(requantize(xhat, again).ok());
        QCOMPARE(again.q, qt->q);
        QCOMPARE(again.clampedCount, int64_t(0));
        auto twice = quantize(x, shape, spec);
        QVERIFY(twice.ok());
        QCOMPARE(twice->q, qt->q);
        QCOMPARE(twice->params.scale, qt->params.scale);
    }

    void degenerate_data()
    {
        QTest::addColumn<QString>("scheme");
        QTest::addColumn<QString>("calib");
        for (const char* scheme : {"seed", "torch-symmetric", "torch-affine", "narrow-symmetric", "q8_0"})
            for (const char* calib : {"minmax", "percentile:99", "mse", "entropy", "hist-l2"}) {
                if (QByteArray(scheme) == "q8_0" && QByteArray(calib) != "minmax" && QByteArray(calib) != "percentile:99")
                    continue;  // refused for q8_0, see rejectsBadArguments
                QTest::newRow((QByteArray(scheme) + " " + calib).constData()) << scheme << calib;
            }
    }
    // All-zero and NaN-only tensors: no crash, a finite scale (seed's is 0, as torch's
    // (max-min)/255 is), and zeros back.
    void degenerate()
    {
        QFETCH(QString, scheme);
        QFETCH(QString, calib);
        const QuantSpec spec = makeSpec(qPrintable(scheme), "tensor", 8, false, qPrintable(calib));
        for (const float fill : {0.0f, std::numeric_limits<float>::quiet_NaN()}) {
            const std::vector<float> x(64, fill);
            auto qt = quantize(x, {2, 32}, spec);
            QVERIFY(qt.ok());
            for (const float s : qt->params.scale)
                QVERIFY(std::isfinite(s));
            for (const float v : dequantize(*qt))
                QCOMPARE(v, 0.0f);
        }
    }

    // Seed on a constant tensor: scale 0, and torch gives 127 for positive, -128 for
    // negative values (w/0 = +-inf, clamped) and 0 for zero (0/0 = NaN -> 0).
    void seedZeroScale()
    {
        QuantSpec spec;
        const std::vector<float> x{0.3f, 0.3f, 0.3f};
        auto qt = quantize(x, {3}, spec);
        QVERIFY(qt.ok());
        QCOMPARE(qt->params.scale[0], 0.0f);
        QCOMPARE(qt->q, (std::vector<int8_t>{127, 127, 127}));
        const std::vector<float> y{-0.25f, -0.25f};
        QCOMPARE(quantize(y, {2}, spec)->q, (std::vector<int8_t>{-128, -128}));
    }

    void nanAndInfInside()
    {
        auto x = heavyTailed(256, 3);
        x[10] = std::numeric_limits<float>::quiet_NaN();
        x[11] = std::numeric_limits<float>::infinity();
        x[12] = -std::numeric_limits<float>::infinity();
        QuantSpec spec;
        spec.scheme = Scheme::TorchSymmetric;
        auto qt = quantize(x, {256}, spec);
        QVERIFY(qt.ok());
        QVERIFY(std::isfinite(qt->params.scale[0]));  // the range ignores non-finite values
        QCOMPARE(qt->qAt(10), 0);                      // NaN -> zero point
        QCOMPARE(qt->qAt(11), 127);
        QCOMPARE(qt->qAt(12), -128);
        QCOMPARE(qt->clampedCount, int64_t(2));
    }

    void rejectsBadArguments()
    {
        const std::vector<float> x(12, 0.5f);
        QuantSpec spec;
        QVERIFY(!quantize(x, {5, 2}, spec).ok());  // 10 != 12
        QVERIFY(!quantize(x, {-3, -4}, spec).ok());
        spec.bits = 9;
        QVERIFY(!quantize(x, {3, 4}, spec).ok());
        spec.bits = 1;
        QVERIFY(!quantize(x, {3, 4}, spec).ok());
        spec.bits = 8;
        spec.granularity = Granularity::PerChannel;
        spec.axis = 2;
        QVERIFY(!quantize(x, {3, 4}, spec).ok());
        spec = QuantSpec{};
        spec.scheme = Scheme::Q8_0;
        spec.isUnsigned = true;
        QVERIFY(!quantize(x, {3, 4}, spec).ok());
        for (const char* c : {"entropy", "mse", "hist-l2"}) {
            spec = QuantSpec{};
            spec.scheme = Scheme::Q8_0;
            (void)parseCalib(c, spec);
            QVERIFY(!quantize(x, {3, 4}, spec).ok());  // 32-value blocks: histogram calibrators refused
        }
        spec = QuantSpec{};
        spec.calib = CalibMethod::Manual;
        spec.manualLo = 1.0f;
        spec.manualHi = -1.0f;
        QVERIFY(!quantize(x, {3, 4}, spec).ok());
        spec = QuantSpec{};
        spec.granularity = Granularity::PerGroup;
        spec.groupSize = 0;
        QVERIFY(!quantize(x, {3, 4}, spec).ok());
        QuantizedTensor qt = *quantize(x, {3, 4}, QuantSpec{});
        qt.params.scale.push_back(1.0f);  // parameters that no longer fit
        QVERIFY(!requantize(x, qt).ok());
    }

    // Per channel along axis 1 of [in, out] equals per channel along axis 0 of the transpose.
    void axisOneIsTransposedAxisZero()
    {
        const int64_t in = 48, out = 20;
        const auto w = heavyTailed(in * out, 11);
        std::vector<float> wt(w.size());
        for (int64_t i = 0; i < in; ++i)
            for (int64_t o = 0; o < out; ++o)
                wt[size_t(o * in + i)] = w[size_t(i * out + o)];
        for (const char* gran : {"channel", "group:16", "group:20"}) {
            QuantSpec a = makeSpec("torch-affine", gran, 8, false, "minmax");
            a.axis = 1;
            QuantSpec b = a;
            b.axis = 0;
            auto qa = quantize(w, {in, out}, a);
            auto qb = quantize(wt, {out, in}, b);
            QVERIFY(qa.ok() && qb.ok());
            QCOMPARE(qa->params.scale, qb->params.scale);
            QCOMPARE(qa->params.zeroPoint, qb->params.zeroPoint);
            for (int64_t i = 0; i < in; ++i)
                for (int64_t o = 0; o < out; ++o)
                    QCOMPARE(qa->qAt(i * out + o), qb->qAt(o * in + i));
        }
    }

    // group:64 on rows of 100: two groups per row, the second has 36 values.
    void shortLastGroup()
    {
        const auto x = heavyTailed(5 * 100, 5);
        const QuantSpec spec = makeSpec("narrow-symmetric", "group:64", 8, false, "minmax");
        auto qt = quantize(x, {5, 100}, spec);
        QVERIFY(qt.ok());
        QCOMPARE(qt->params.scale.size(), size_t(10));
        QCOMPARE(qt->params.groupSize, int64_t(64));
        float amax = 0;
        for (int c = 64; c < 100; ++c)
            amax = std::max(amax, std::fabs(x[size_t(100 + c)]));
        QCOMPARE(qt->params.scale[3], float(double(amax) * 2.0 / 254.0));  // row 1, group 1
    }

    // The GUI's manual clamp path: same result as calib=manual, and no reallocation.
    void manualIntoReusesBuffers()
    {
        const auto x = heavyTailed(64 * 64, 9);
        QuantSpec spec = makeSpec("torch-symmetric", "tensor", 8, false, "minmax");
        QuantizedTensor out;
        QVERIFY(quantizeManualInto(x, {64, 64}, spec, -0.1f, 0.25f, out).ok());
        const int8_t* data = out.q.data();
        QVERIFY(quantizeManualInto(x, {64, 64}, spec, -0.2f, 0.05f, out).ok());
        QCOMPARE(out.q.data(), data);
        QuantSpec m = spec;
        (void)parseCalib("manual:-0.2,0.05", m);
        auto ref = quantize(x, {64, 64}, m);
        QCOMPARE(out.q, ref->q);
        QCOMPARE(out.params.scale[0], float(0.2f / 127.5f));
        QVERIFY(out.clampedCount > 0);
        QCOMPARE(out.params.rangeLo, -0.2f);
    }

    // A clip range chosen for low error beats min/max on heavy-tailed weights.
    void mseBeatsMinMaxOnHeavyTails()
    {
        const auto x = heavyTailed(96 * 160, 21);
        for (const char* scheme : {"torch-symmetric", "torch-affine", "narrow-symmetric"}) {
            auto mm = quantize(x, {96, 160}, makeSpec(scheme, "tensor", 8, false, "minmax"));
            auto ms = quantize(x, {96, 160}, makeSpec(scheme, "tensor", 8, false, "mse"));
            const double eMm = computeMetrics(x, dequantize(*mm)).mse;
            const double eMs = computeMetrics(x, dequantize(*ms)).mse;
            QVERIFY2(eMs < eMm, qPrintable(QStringLiteral("%1: mse %2 vs minmax %3").arg(QLatin1String(scheme)).arg(eMs).arg(eMm)));
        }
    }

    void suggestions()
    {
        const auto x = heavyTailed(4096, 4);
        QuantSpec spec = makeSpec("torch-symmetric", "tensor", 8, false, "manual:-0.1,0.1");
        spec.percentile = 99.0;
        const auto s = suggestRanges(x, spec);
        QCOMPARE(s.size(), size_t(6));
        QStringList labels;
        for (const auto& c : s) {
            labels << QString::fromStdString(c.label);
            QVERIFY(c.lo <= c.hi);
        }
        QCOMPARE(labels, (QStringList{QStringLiteral("minmax"), QStringLiteral("percentile:99"), QStringLiteral("mse"),
                                      QStringLiteral("entropy"), QStringLiteral("hist-l2"), QStringLiteral("manual:-0.1,0.1")}));
        const Range mm = minMaxRange(x);
        QCOMPARE(s[0].hi, mm.hi);
        QCOMPARE(s[0].lo, mm.lo);
        QVERIFY(s[1].hi < mm.hi);  // percentile clips the outliers
    }

    void bytesAfter()
    {
        const std::vector<float> x(768 * 768, 0.25f);
        auto t = quantize(x, {768, 768}, QuantSpec{});
        QCOMPARE(t->bytesAfter(), int64_t(768 * 768 + 8));
        auto q = quantize(x, {768, 768}, makeSpec("q8_0", "tensor", 8, false, "minmax"));
        QCOMPARE(q->bytesAfter(), int64_t(768 * 768 / 32 * 34));
        auto g4 = quantize(x, {768, 768}, makeSpec("torch-symmetric", "channel", 4, false, "minmax"));
        QCOMPARE(g4->bytesAfter(), int64_t(768 * 768 / 2 + 768 * 8));
    }

    // ggml's quantize_row_q8_0_ref as the GGUF helper recorded it.
    void q8_0MatchesGgufReference()
    {
        std::ifstream f(quantlens::test::dataPath(QStringLiteral("gguf/q8_0_reference.json")).toStdString());
        if (!f)
            QSKIP("tests/data/gguf/q8_0_reference.json not present");
        const auto j = nlohmann::json::parse(f);
        const auto src = j.at("source").get<std::vector<float>>();
        const auto shape = j.at("shape").get<std::vector<int64_t>>();
        const auto i8 = j.at("int8").get<std::vector<int>>();
        const auto dBits = j.at("scale_fp16_bits").get<std::vector<uint16_t>>();
        const auto deq = j.at("dequantized").get<std::vector<float>>();
        QuantSpec spec;
        spec.scheme = Scheme::Q8_0;
        auto qt = quantize(src, shape, spec);
        QVERIFY(qt.ok());
        QCOMPARE(qt->params.scale.size(), dBits.size());
        for (size_t b = 0; b < dBits.size(); ++b)
            QCOMPARE(floatToHalf(qt->params.scale[b]), dBits[b]);
        for (size_t i = 0; i < i8.size(); ++i)
            QCOMPARE(int(qt->q[i]), i8[i]);
        const auto mine = dequantize(*qt);
        for (size_t i = 0; i < deq.size(); ++i)
            QCOMPARE(mine[i], deq[i]);
    }
};

QTEST_GUILESS_MAIN(TstQuantProperties)
#include "tst_quant_properties.moc"
