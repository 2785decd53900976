// The heatmap pooling (poolMaxAbs / poolMaxAbsDiff) against a plain per-cell reference: every
// cell shows a value of the largest finite magnitude in its block, sign kept; NaN and inf
// never show; the colour range is the 99.9th percentile of the cell magnitudes as
// nth_element finds it. The fast version folds rows first and cells second, so on an exact
// magnitude tie it may keep a different (equally large) element than row-major order.
#include <QTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <memory>
#include <vector>

#include "quant/metrics.h"
#include "quant/quantize.h"
#include "tensoranalysis.h"
#include "workteam.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

// rows x cols Student-t (3 dof) values of scale 0.02, a weight matrix's shape of tails.
std::shared_ptr<MatrixData> tMatrix(int64_t rows, int64_t cols, std::mt19937& rng)
{
    std::student_t_distribution<float> t3(3.0f);
    auto m = std::make_shared<MatrixData>();
    m->rows = rows;
    m->cols = cols;
    m->values.resize(size_t(rows * cols));
    for (auto& v : m->values)
        v = 0.02f * t3(rng);
    m->dtype = DType::F32;
    return m;
}

// The clamp range a drag leaves: manual [-0.05, 0.04].
QuantSpec manualSpec(Scheme scheme)
{
    QuantSpec s;
    s.scheme = scheme;
    s.calib = CalibMethod::Manual;
    s.manualLo = -0.05f;
    s.manualHi = 0.04f;
    return s;
}

struct Ref {
    std::vector<float> mag;  // -1: nothing finite
    std::vector<std::vector<float>> candidates;  // values with that magnitude
};

Ref reference(const std::vector<float>& x, int64_t rows, int64_t cols, const HeatGrid& g)
{
    Ref r;
    r.mag.assign(size_t(g.rows * g.cols), -1.0f);
    r.candidates.resize(r.mag.size());
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
            const float v = x[size_t(i * cols + j)];
            if (!std::isfinite(v))
                continue;
            const size_t cell = size_t((i / g.poolRows) * g.cols + j / g.poolCols);
            const float m = std::fabs(v);
            if (m > r.mag[cell]) {
                r.mag[cell] = m;
                r.candidates[cell] = {v};
            } else if (m == r.mag[cell]) {
                r.candidates[cell].push_back(v);
            }
        }
    return r;
}

double referenceClip(const Ref& r)
{
    std::vector<double> mags;
    for (float m : r.mag)
        if (m >= 0)
            mags.push_back(m);
    if (mags.empty())
        return 0;
    const size_t k = std::min(mags.size() - 1, size_t(double(mags.size()) * 0.999));
    std::nth_element(mags.begin(), mags.begin() + std::ptrdiff_t(k), mags.end());
    return mags[k];
}

bool sameGrid(const HeatGrid& g, const Ref& r, QString& why)
{
    for (size_t c = 0; c < r.mag.size(); ++c) {
        const double v = g.v[c];
        if (r.mag[c] < 0) {
            if (v != 0) {
                why = QStringLiteral("cell %1 has no finite value but shows %2").arg(c).arg(v);
                return false;
            }
            continue;
        }
        if (std::find(r.candidates[c].begin(), r.candidates[c].end(), float(v)) == r.candidates[c].end()) {
            why = QStringLiteral("cell %1 shows %2, largest magnitude is %3").arg(c).arg(v).arg(r.mag[c]);
            return false;
        }
    }
    return true;
}

}  // namespace

class TestHeatGrid : public QObject {
    Q_OBJECT
private slots:
    // A Keras Conv2D kernel [kh, kw, in, out] keeps its output channels last: the view
    // has one row per output channel, holding that channel's kh*kw*in values in order.
    void kerasConvKernelIsViewedOutputChannelsFirst()
    {
        const std::vector<int64_t> shape{2, 2, 3, 4};
        std::vector<float> v(48);
        for (size_t i = 0; i < v.size(); ++i)
            v[i] = float(i);
        Tensor t = makeFloatTensor("conv2d/kernel:0", shape, v);
        t.layout = Layout::InOut;
        auto m = quantlens::ui::loadMatrix(t);
        QVERIFY(m);
        QCOMPARE((*m)->rows, int64_t(4));
        QCOMPARE((*m)->cols, int64_t(12));
        QVERIFY((*m)->transposed);
        for (int64_t o = 0; o < 4; ++o)
            for (int64_t k = 0; k < 12; ++k)
                QCOMPARE((*m)->values[size_t(o * 12 + k)], v[size_t(k * 4 + o)]);
        // PyTorch's [out, in, k] needs no transposition: rows are axis 0.
        Tensor p = makeFloatTensor("conv.weight", {4, 3, 4}, v);
        auto pm = quantlens::ui::loadMatrix(p);
        QVERIFY(pm);
        QCOMPARE((*pm)->rows, int64_t(4));
        QVERIFY(!(*pm)->transposed);
        QCOMPARE((*pm)->values, v);
    }
    void matchesReference()
    {
        std::mt19937 rng(7);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
        for (int64_t rows : {1, 2, 7, 9, 16, 33, 64})
            for (int64_t cols : {1, 3, 8, 15, 17, 40, 100})
                for (int64_t maxCells : {1, 2, 3, 5, 8, 384}) {
                    std::vector<float> x(size_t(rows * cols)), y(x.size());
                    for (size_t i = 0; i < x.size(); ++i) {
                        // Quantized-looking values give exact magnitude ties, with both signs.
                        x[i] = (i % 4 == 0) ? std::round(nd(rng) * 4) / 4 : nd(rng);
                        y[i] = x[i] + 0.01f * nd(rng);
                    }
                    x[size_t(rng() % x.size())] = nan;
                    x[size_t(rng() % x.size())] = inf;
                    x[size_t(rng() % x.size())] = -inf;
                    const HeatGrid g = poolMaxAbs(x.data(), rows, cols, maxCells);
                    QVERIFY(g.rows <= maxCells && g.cols <= maxCells);
                    QCOMPARE(g.v.size(), size_t(g.rows * g.cols));
                    const Ref r = reference(x, rows, cols, g);
                    QString why;
                    QVERIFY2(sameGrid(g, r, why), qPrintable(QStringLiteral("%1x%2 into %3: ").arg(rows).arg(cols).arg(maxCells) + why));
                    const double clip = referenceClip(r);
                    QCOMPARE(g.clipAbs, clip > 0 ? clip : (g.absMax > 0 ? g.absMax : 1.0));
                    QCOMPARE(g.absMax, std::max(0.0, double(*std::max_element(r.mag.begin(), r.mag.end()))));

                    std::vector<float> d(x.size());
                    for (size_t i = 0; i < d.size(); ++i)
                        d[i] = x[i] - y[i];
                    const HeatGrid gd = poolMaxAbsDiff(x.data(), y.data(), rows, cols, maxCells);
                    const Ref rd = reference(d, rows, cols, gd);
                    QVERIFY2(sameGrid(gd, rd, why), qPrintable(QStringLiteral("diff %1x%2: ").arg(rows).arg(cols) + why));
                }
    }

    void allNonFiniteCells()
    {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::vector<float> x(4 * 4, nan);
        x[0] = -3.0f;
        const HeatGrid g = poolMaxAbs(x.data(), 4, 4, 2);  // 2x2 cells of 2x2
        QCOMPARE(g.v[0], -3.0);
        QCOMPARE(g.v[1], 0.0);
        QCOMPARE(g.v[3], 0.0);
        QCOMPARE(g.absMax, 3.0);
        QCOMPARE(g.clipAbs, 3.0);
    }

    // The window's per-drag job (one round-trip sweep, then both maps and the row metrics in
    // one more) gives what the separate functions give, also when it reuses the buffers of
    // an outcome it dropped, and after switching to a matrix of another size.
    void quantizeMatrixEqualsSeparatePasses()
    {
        std::mt19937 rng(11);
        std::vector<QuantSpec> specs(5);
        specs[0] = manualSpec(Scheme::TorchSymmetric);
        specs[1].scheme = Scheme::TorchAffine;
        specs[1].granularity = Granularity::PerChannel;
        specs[2].granularity = Granularity::PerGroup;
        specs[2].groupSize = 64;
        specs[2].bits = 4;
        specs[3].scheme = Scheme::Q8_0;
        specs[4].scheme = Scheme::Q4_K;
        for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{96, 256}, {1, 512}, {40, 768}, {96, 256}}) {
            const std::shared_ptr<const MatrixData> m = tMatrix(rows, cols, rng);
            std::shared_ptr<const QuantOutcome> keep;
            for (int round = 0; round < 3; ++round)
                for (const QuantSpec& spec : specs) {
                    auto r = quantizeMatrix(m, spec, 32, false, false, nullptr);
                    QVERIFY2(r, qPrintable(QString::fromStdString(r ? "" : r.error().oneLine())));
                    const QuantOutcome& o = **r;
                    QuantSpec s = spec;
                    s.axis = 0;
                    auto q = quantize(m->values, {rows, cols}, s);
                    QVERIFY(q);
                    const std::vector<float> dq = dequantize(*q);
                    QCOMPARE(o.qt.q, q->q);
                    QCOMPARE(o.dequantized, dq);
                    const Metrics mt = computeMetrics(m->values, dq, q->clampedCount);
                    QCOMPARE(o.metrics.sqnrDb, mt.sqnrDb);
                    QCOMPARE(o.metrics.mse, mt.mse);
                    QCOMPARE(o.metrics.maxAbsError, mt.maxAbsError);
                    QCOMPARE(o.metrics.clampedFraction, mt.clampedFraction);
                    const HeatGrid a = poolMaxAbs(dq.data(), rows, cols, 32);
                    const HeatGrid e = poolMaxAbsDiff(dq.data(), m->values.data(), rows, cols, 32);
                    QCOMPARE(o.after.v, a.v);
                    QCOMPARE(o.after.clipAbs, a.clipAbs);
                    QCOMPARE(o.error.v, e.v);
                    QCOMPARE(o.error.absMax, e.absMax);
                    if (rows > 1) {
                        const auto rm = computeRowMetrics(m->values, dq, rows, cols);
                        QCOMPARE(o.rowMetrics.size(), rm.size());
                        for (size_t i = 0; i < rm.size(); ++i)
                            QCOMPARE(o.rowMetrics[i].sqnrDb, rm[i].sqnrDb);
                    } else {
                        QVERIFY(o.rowMetrics.empty());
                    }
                    if (round == 1)
                        keep = *r;  // one stays alive while later ones recycle buffers
                }
            QCOMPARE(keep->spec.scheme, specs.back().scheme);
        }
    }

    // The drag step's job split over the work team (bands, rows, chunks, slices) gives the
    // same bits as on one thread: sizes that do not divide, one long row, pooled and
    // unpooled maps, per tensor and per channel.
    void quantizeMatrixSameOnAnyThreadCount()
    {
        std::mt19937 rng(5);
        std::vector<QuantSpec> specs(2);
        specs[0] = manualSpec(Scheme::TorchAffine);
        specs[1].granularity = Granularity::PerChannel;
        auto same = [](const Metrics& a, const Metrics& b) {
            return std::memcmp(&a.mse, &b.mse, 8) == 0 && std::memcmp(&a.sqnrDb, &b.sqnrDb, 8) == 0
                   && std::memcmp(&a.cosine, &b.cosine, 8) == 0 && a.maxAbsError == b.maxAbsError;
        };
        for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{1, 300001}, {257, 1031}, {1000, 333}}) {
            const std::shared_ptr<MatrixData> mm = tMatrix(rows, cols, rng);
            mm->values[7] = std::numeric_limits<float>::quiet_NaN();
            const std::shared_ptr<const MatrixData> m = mm;
            for (const int64_t cells : {int64_t(384), int64_t(4096)})
                for (const QuantSpec& spec : specs) {
                    std::vector<std::shared_ptr<const QuantOutcome>> out;
                    for (const int threads : {1, 2, 3}) {
                        setTeamThreads(threads);
                        auto r = quantizeMatrix(m, spec, cells, false, false, nullptr);
                        QVERIFY(r);
                        out.push_back(*r);
                    }
                    setTeamThreads(0);
                    for (size_t k = 1; k < out.size(); ++k) {
                        const QuantOutcome &a = *out[0], &b = *out[k];
                        QVERIFY(a.qt.q == b.qt.q && a.qt.params.scale == b.qt.params.scale);
                        QVERIFY(std::memcmp(a.dequantized.data(), b.dequantized.data(), a.dequantized.size() * 4) == 0);
                        QVERIFY(same(a.metrics, b.metrics));
                        QVERIFY(a.after.v == b.after.v && a.error.v == b.error.v);
                        QCOMPARE(a.after.clipAbs, b.after.clipAbs);
                        QCOMPARE(a.error.absMax, b.error.absMax);
                        QCOMPARE(a.rowMetrics.size(), b.rowMetrics.size());
                        for (size_t i = 0; i < a.rowMetrics.size(); ++i)
                            QVERIFY2(same(a.rowMetrics[i], b.rowMetrics[i]), qPrintable(QString::number(i)));
                    }
                }
        }
    }

    void emptyInput()
    {
        const HeatGrid g = poolMaxAbs(nullptr, 0, 5, 8);
        QCOMPARE(g.rows, int64_t(0));
        QVERIFY(g.v.empty());
    }
};

QTEST_GUILESS_MAIN(TestHeatGrid)
#include "tst_heatgrid.moc"
