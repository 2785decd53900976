// Metrics of a round trip against numpy (float64) on torch's own dequantized tensors.
#include <QTest>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>
#include <limits>

#include "quant/metrics.h"
#include "quantfixtures.h"

using namespace quantlens;
using namespace quantlens::test;

namespace {
QuantFixtures g_fx;

// Float lanes flushed into double every 512 values: relative error well under 1e-5.
void near(double got, double ref, double rel, const char* what)
{
    if (!(std::fabs(got - ref) <= rel * std::fabs(ref) + 1e-15))
        QFAIL(qPrintable(QStringLiteral("%1: got %2, numpy %3").arg(QLatin1String(what)).arg(got, 0, 'g', 12).arg(ref, 0, 'g', 12)));
}
}  // namespace

class TstMetrics : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QVERIFY(g_fx.load()); }

    void matchesNumpy_data()
    {
        QTest::addColumn<int>("index");
        const auto& m = g_fx.manifest.at("metrics");
        for (size_t i = 0; i < m.size(); ++i)
            QTest::newRow(m[i].at("input").get<std::string>().c_str()) << int(i);
    }
    void matchesNumpy()
    {
        QFETCH(int, index);
        const auto& r = g_fx.manifest.at("metrics").at(size_t(index));
        std::vector<int64_t> shape;
        const auto x = g_fx.input(r.at("input"), &shape);
        const auto xhat = g_fx.array<float>(r.at("xhat"));
        QCOMPARE(xhat.size(), x.size());
        const Metrics m = computeMetrics(x, xhat, 3);
        const auto& a = r.at("all");
        near(m.mse, a.at("mse"), 1e-5, "mse");
        near(m.sqnrDb, a.at("sqnr_db"), 1e-6, "sqnr");
        near(m.cosine, a.at("cosine"), 1e-7, "cosine");
        QCOMPARE(m.maxAbsError, a.at("max_abs_error").get<double>());  // exact: one float difference
        QCOMPARE(m.count, int64_t(x.size()));
        QCOMPARE(m.clampedFraction, 3.0 / double(x.size()));

        const auto rows = computeRowMetrics(x, xhat, shape[0], shape[1]);
        QCOMPARE(int64_t(rows.size()), shape[0]);
        for (size_t i = 0; i < rows.size(); ++i) {
            const auto& rr = r.at("rows").at(i);
            near(rows[i].mse, rr.at("mse"), 1e-5, "row mse");
            near(rows[i].sqnrDb, rr.at("sqnr_db"), 1e-6, "row sqnr");
            QCOMPARE(rows[i].maxAbsError, rr.at("max_abs_error").get<double>());
        }

        const TensorStats st = computeStats(x);
        const auto& s = r.at("stats");
        QCOMPARE(st.min, s.at("min").get<double>());
        QCOMPARE(st.max, s.at("max").get<double>());
        near(st.mean, s.at("mean"), 1e-6, "mean");
        near(st.std, s.at("std"), 1e-6, "std");
        QCOMPARE(st.count, int64_t(x.size()));
        QCOMPARE(st.nonFinite, int64_t(0));
    }

    void exactAndZero()
    {
        const std::vector<float> x{1.0f, -2.0f, 0.5f};
        const Metrics same = computeMetrics(x, x);
        QCOMPARE(same.mse, 0.0);
        QVERIFY(std::isinf(same.sqnrDb) && same.sqnrDb > 0);
        QCOMPARE(same.cosine, 1.0);
        const std::vector<float> z(3, 0.0f);
        const Metrics zz = computeMetrics(z, z);
        QCOMPARE(zz.cosine, 1.0);  // both zero
        const Metrics xz = computeMetrics(x, z);
        QCOMPARE(xz.cosine, 0.0);
        QCOMPARE(xz.maxAbsError, 2.0);
        near(xz.sqnrDb, 0.0, 0.0, "sqnr of an all-zero reconstruction");
    }

    void statsSkipNonFinite()
    {
        std::vector<float> x(1000, 2.0f);
        x[3] = std::numeric_limits<float>::quiet_NaN();
        x[999] = std::numeric_limits<float>::infinity();
        x[500] = 4.0f;
        const TensorStats st = computeStats(x);
        QCOMPARE(st.nonFinite, int64_t(2));
        QCOMPARE(st.count, int64_t(998));
        QCOMPARE(st.max, 4.0);
        QCOMPARE(st.min, 2.0);
        near(st.mean, 2.0 + 2.0 / 998.0, 1e-12, "mean");
        const double var = (2.0 / 998.0) * (2.0 / 998.0) * 997.0 / 998.0 + (2.0 - 2.0 / 998.0) * (2.0 - 2.0 / 998.0) / 998.0;
        near(st.std, std::sqrt(var), 1e-6, "std");  // float lanes: ~1e-7 relative
        // constant data far from zero: the two-pass variance does not cancel into noise
        const std::vector<float> c(5000, 1000.25f);
        QCOMPARE(computeStats(c).std, 0.0);
    }

    void rowMetricsRejectsBadShapes()
    {
        const std::vector<float> x(6, 1.0f);
        QVERIFY(computeRowMetrics(x, x, 3, 3).empty());  // 9 > 6: refuse, do not read past the end
        QVERIFY(computeRowMetrics(x, x, 0, 3).empty());
        QCOMPARE(computeRowMetrics(x, x, 2, 3).size(), size_t(2));
    }

    // The GGUF export's check feeds a tensor in pieces: pieces of multiples of kPiece (the
    // last one shorter) give computeMetrics' bits over the whole run; other cuts need not.
    void metricsRunInPiecesIsOnePass()
    {
        const size_t n = 10 * 512 + 77;
        std::vector<float> x(n), y(n);
        for (size_t i = 0; i < n; ++i) {
            x[i] = std::sin(float(i) * 0.37f) * (1.0f + float(i % 13));
            y[i] = x[i] + std::cos(float(i) * 1.7f) * 1e-3f * float(i % 7);
        }
        const Metrics whole = computeMetrics(x, y);
        for (size_t piece : {size_t(512), size_t(1024), size_t(3 * 512), n}) {
            MetricsRun run;
            for (size_t at = 0; at < n; at += piece) {
                const size_t len = std::min(piece, n - at);
                run.add(std::span<const float>(x).subspan(at, len), std::span<const float>(y).subspan(at, len));
            }
            const Metrics m = run.finish();
            QCOMPARE(m.count, whole.count);
            // == and not QCOMPARE, which forgives doubles 1e-12 apart: bit for bit.
            QVERIFY(m.mse == whole.mse);
            QVERIFY(m.sqnrDb == whole.sqnrDb);
            QVERIFY(m.cosine == whole.cosine);
            QVERIFY(m.maxAbsError == whole.maxAbsError);
        }
    }
};

QTEST_GUILESS_MAIN(TstMetrics)
#include "tst_metrics.moc"
