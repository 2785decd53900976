// smoothedOperands (the Activations view's SmoothQuant histograms): the histograms equal
// computeHistogram over X / s and W · diag(s) materialised directly, the maxima and typical
// int8 ranges equal the direct ones, and at the ends of α the formula's promise shows
// (α = 0: every weight column's max becomes 1; α = 1: every activation channel's does).
#include <QTest>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "quant/smoothedoperands.h"
#include "quant/smoothquant.h"

using namespace quantlens;

namespace {

struct Layer {
    int64_t n = 37, out = 6000, in = 23;  // W spans several of the blocks the histogram is built in
    std::vector<float> x, w, actAbsMax, wAbsMax;
};

// Random X with two planted outlier channels (what SmoothQuant is for) and random W.
Layer makeLayer()
{
    Layer l;
    std::mt19937 rng(7);
    std::normal_distribution<float> g(0.0f, 1.0f);
    l.x.resize(size_t(l.n * l.in));
    for (int64_t r = 0; r < l.n; ++r)
        for (int64_t j = 0; j < l.in; ++j)
            l.x[size_t(r * l.in + j)] = g(rng) * (j == 3 ? 40.0f : j == 17 ? 25.0f : 1.0f);
    l.w.resize(size_t(l.out * l.in));
    for (float& v : l.w)
        v = 0.05f * g(rng);
    l.actAbsMax.assign(size_t(l.in), 0.0f);
    for (int64_t r = 0; r < l.n; ++r)
        for (int64_t j = 0; j < l.in; ++j)
            l.actAbsMax[size_t(j)] = std::max(l.actAbsMax[size_t(j)], std::fabs(l.x[size_t(r * l.in + j)]));
    l.wAbsMax = weightColumnAbsMax({l.w}, l.in);
    return l;
}

double directMedianRowMax(const std::vector<float>& m, int64_t rows, int64_t in)
{
    std::vector<float> mx(size_t(rows), 0.0f);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < in; ++j)
            mx[size_t(r)] = std::max(mx[size_t(r)], std::fabs(m[size_t(r * in + j)]));
    std::sort(mx.begin(), mx.end());
    return double(mx[mx.size() / 2]);
}

float absMaxOf(const std::vector<float>& v)
{
    float m = 0;
    for (float x : v)
        m = std::max(m, std::fabs(x));
    return m;
}

}  // namespace

class TstSmoothedOperands : public QObject {
    Q_OBJECT
private slots:
    void equalsDirectComputation_data()
    {
        QTest::addColumn<double>("alpha");
        QTest::addColumn<int>("bins");
        for (double a : {0.0, 0.25, 0.5, 0.85, 1.0})
            for (int bins : {1, 64, 201})
                QTest::addRow("alpha %.2f bins %d", a, bins) << a << bins;
    }

    void equalsDirectComputation()
    {
        QFETCH(double, alpha);
        QFETCH(int, bins);
        const Layer l = makeLayer();
        const std::vector<float> s = smoothQuantScales(l.actAbsMax, l.wAbsMax, alpha);
        auto r = smoothedOperands(l.x, l.n, l.w, l.out, l.in, l.actAbsMax, l.wAbsMax, s, bins);
        QVERIFY(r.ok());

        std::vector<float> xs = l.x, ws = l.w;
        for (int64_t row = 0; row < l.n; ++row)
            divideByScales(std::span<float>(xs.data() + row * l.in, size_t(l.in)), s);
        scaleWeightColumns(ws, l.out, l.in, s);
        // Every recorded row is given, so the largest magnitudes are those of the whole operands.
        QCOMPARE(float(r->actRange), absMaxOf(xs));
        QCOMPARE(float(r->weightRange), absMaxOf(ws));
        const Histogram hx = computeHistogram(xs, -absMaxOf(xs), absMaxOf(xs), bins);
        const Histogram hw = computeHistogram(ws, -absMaxOf(ws), absMaxOf(ws), bins);
        QCOMPARE(r->activations.counts, hx.counts);
        QCOMPARE(r->weights.counts, hw.counts);
        QCOMPARE(r->activations.below + r->activations.above, int64_t(0));
        QCOMPARE(r->weights.below + r->weights.above, int64_t(0));
        QCOMPARE(r->activations.total(), l.n * l.in);
        QCOMPARE(r->weights.total(), l.out * l.in);
        QCOMPARE(r->medianTokenRange, directMedianRowMax(xs, l.n, l.in));
        QCOMPARE(r->medianRowRange, directMedianRowMax(ws, l.out, l.in));
        const std::vector<float> wsMax = weightColumnAbsMax({ws}, l.in);
        for (int64_t j = 0; j < l.in; ++j) {
            QCOMPARE(r->weightAbsMax[size_t(j)], wsMax[size_t(j)]);
            QCOMPARE(r->actAbsMax[size_t(j)], l.actAbsMax[size_t(j)] / s[size_t(j)]);
        }
    }

    // The formula's ends: α = 0 gives s_j = 1 / max|W_j|, so every smoothed weight column
    // peaks at 1; α = 1 gives s_j = max|X_j|, so every activation channel does.
    void alphaEndsNormaliseOneOperand()
    {
        const Layer l = makeLayer();
        auto a0 = smoothedOperands(l.x, l.n, l.w, l.out, l.in, l.actAbsMax, l.wAbsMax,
                                   smoothQuantScales(l.actAbsMax, l.wAbsMax, 0.0), 64);
        auto a1 = smoothedOperands(l.x, l.n, l.w, l.out, l.in, l.actAbsMax, l.wAbsMax,
                                   smoothQuantScales(l.actAbsMax, l.wAbsMax, 1.0), 64);
        QVERIFY(a0.ok() && a1.ok());
        for (int64_t j = 0; j < l.in; ++j) {
            QVERIFY(std::fabs(a0->weightAbsMax[size_t(j)] - 1.0f) < 1e-6f);
            QVERIFY(std::fabs(a1->actAbsMax[size_t(j)] - 1.0f) < 1e-6f);
        }
        // The planted outliers set every token's range before smoothing; after α = 1 none is
        // above 1.
        auto none = smoothedOperands(l.x, l.n, l.w, l.out, l.in, l.actAbsMax, l.wAbsMax,
                                     std::vector<float>(size_t(l.in), 1.0f), 64);
        QVERIFY(none.ok());
        QVERIFY(none->medianTokenRange > 10.0);
        QVERIFY(a1->medianTokenRange <= 1.0);
    }

    void refusesBadInput()
    {
        const Layer l = makeLayer();
        const std::vector<float> s(size_t(l.in), 1.0f);
        QVERIFY(!smoothedOperands(l.x, l.n + 1, l.w, l.out, l.in, l.actAbsMax, l.wAbsMax, s, 8).ok());
        QVERIFY(!smoothedOperands(l.x, l.n, l.w, l.out, l.in, l.actAbsMax, l.wAbsMax, std::span(s).first(3), 8).ok());
        QVERIFY(!smoothedOperands(l.x, l.n, l.w, l.out, l.in, l.actAbsMax, l.wAbsMax, s, 0).ok());
        std::vector<float> zero = s;
        zero[2] = 0.0f;
        QVERIFY(!smoothedOperands(l.x, l.n, l.w, l.out, l.in, l.actAbsMax, l.wAbsMax, zero, 8).ok());
    }
};

QTEST_MAIN(TstSmoothedOperands)
#include "tst_smoothedoperands.moc"
