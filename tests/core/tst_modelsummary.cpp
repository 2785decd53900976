// The whole-model pass behind `inspect` and the window's tree columns (tasks/modelsummary.h):
// on any number of workers, each tensor's figures equal the direct computation (statistics
// of the stored values; the [out, in] view quantized and compared with its dequantized
// copy), kept-float tensors get statistics only, and a cancel stops it between tensors.
#include <QTest>

#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "model.h"
#include "quant/metrics.h"
#include "quant/quantize.h"
#include "tasks/modelsummary.h"

using namespace quantlens;

namespace {

Tensor randomTensor(const std::string& name, std::vector<int64_t> shape, uint32_t seed, Layout layout = Layout::Plain)
{
    int64_t n = 1;
    for (int64_t d : shape)
        n *= d;
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 0.05f);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v)
        x = dist(rng);
    if (n > 3)
        v[3] = 0.9f;  // one outlier, so calibration and clamping matter
    Tensor t = makeFloatTensor(name, std::move(shape), std::move(v));
    t.layout = layout;
    return t;
}

Model testModel()
{
    Model m;
    m.tensors.push_back(randomTensor("a.weight", {48, 80}, 1));
    m.tensors.push_back(randomTensor("conv1d.weight", {64, 24}, 2, Layout::InOut));  // [in, out]: view is 24 x 64
    m.tensors.push_back(randomTensor("a.bias", {48}, 3));
    m.tensors.push_back(randomTensor("conv.weight", {8, 3, 3, 3}, 4));
    m.tensors.push_back(randomTensor("b.weight", {17, 33}, 5));
    return m;
}

QuantSpec channelSpec()
{
    QuantSpec s;
    s.scheme = Scheme::TorchSymmetric;
    s.granularity = Granularity::PerChannel;
    return s;
}

// What the summary must give for tensor t under spec, computed the plain way.
TensorFigures direct(const Tensor& t, const std::optional<QuantSpec>& specIn)
{
    TensorFigures f;
    auto x = t.toFloat();
    if (!x) {
        f.status = x.error();
        return f;
    }
    f.stats = computeStats(*x);
    if (!specIn)
        return f;
    const MatrixView v = matrixView(t);
    std::vector<float> view(x->size());
    copyAsView(v, *x, view);
    QuantSpec spec = *specIn;
    spec.axis = 0;
    if (v.rows <= 1 && spec.granularity == Granularity::PerChannel)
        spec.granularity = Granularity::PerTensor;
    auto q = quantize(view, {v.rows, v.cols}, spec);
    if (!q) {
        f.status = q.error();
        return f;
    }
    f.metrics = computeMetrics(view, dequantize(*q), q->clampedCount);
    f.bytesAfter = q->bytesAfter();
    f.quantized = true;
    return f;
}

bool sameBits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

class TstModelSummary : public QObject {
    Q_OBJECT
private slots:
    void matchesDirectComputation_data()
    {
        QTest::addColumn<int>("workers");
        QTest::newRow("1 worker") << 1;
        QTest::newRow("2 workers") << 2;
        QTest::newRow("4 workers") << 4;
    }
    void matchesDirectComputation()
    {
        QFETCH(int, workers);
        const Model m = testModel();
        QuantSpec tuned = channelSpec();
        tuned.granularity = Granularity::PerTensor;
        tuned.calib = CalibMethod::Manual;
        tuned.manualLo = -0.1f;
        tuned.manualHi = 0.1f;
        auto specFor = [&](size_t i) -> std::optional<QuantSpec> {
            if (i == 2)
                return std::nullopt;  // the plan keeps the bias float
            if (i == 4)
                return tuned;  // the user's own range on this one
            return channelSpec();
        };
        std::map<size_t, TensorFigures> got;
        std::atomic<int> inside{0};
        bool overlapped = false;
        ModelSummaryJob job;
        job.order = {4, 0, 1, 2, 3};
        job.specFor = specFor;
        job.workers = size_t(workers);
        job.done = [&](size_t i, TensorFigures&& f) {
            overlapped |= inside.fetch_add(1) != 0;
            QVERIFY(got.emplace(i, std::move(f)).second);
            inside.fetch_sub(1);
        };
        summarizeModel(m, job);
        QVERIFY2(!overlapped, "done() was called from two threads at once");
        QCOMPARE(got.size(), m.tensors.size());
        for (size_t i = 0; i < m.tensors.size(); ++i) {
            const TensorFigures want = direct(m.tensors[i], specFor(i));
            const TensorFigures& f = got.at(i);
            QVERIFY2(f.status.ok(), m.tensors[i].name.c_str());
            QCOMPARE(f.quantized, want.quantized);
            QVERIFY(sameBits(f.stats.min, want.stats.min) && sameBits(f.stats.max, want.stats.max));
            QVERIFY(sameBits(f.stats.mean, want.stats.mean) && sameBits(f.stats.std, want.stats.std));
            QVERIFY2(sameBits(f.metrics.sqnrDb, want.metrics.sqnrDb), m.tensors[i].name.c_str());
            QVERIFY(sameBits(f.metrics.clampedFraction, want.metrics.clampedFraction));
            QCOMPARE(f.bytesAfter, want.bytesAfter);
        }
        // The figures are not trivially equal: the tuned range clamps the outlier, channels differ.
        QVERIFY(got.at(4).metrics.clampedFraction > 0);
        QVERIFY(got.at(0).metrics.sqnrDb > 10 && std::isfinite(got.at(0).metrics.sqnrDb));
        QVERIFY(!got.at(2).quantized);
    }

    // The transposed view matters: per channel along the stored rows gives other figures.
    void inOutIsQuantizedAsItsView()
    {
        Model m;
        m.tensors.push_back(randomTensor("c.weight", {64, 24}, 7, Layout::InOut));
        const auto figures = [&](Layout l) {
            m.tensors[0].layout = l;
            TensorFigures out;
            summarizeModel(m, {.specFor = [](size_t) -> std::optional<QuantSpec> { return channelSpec(); },
                               .done = [&](size_t, TensorFigures&& f) { out = std::move(f); }});
            return out;
        };
        const TensorFigures asView = figures(Layout::InOut), asStored = figures(Layout::Plain);
        QVERIFY(asView.quantized && asStored.quantized);
        QVERIFY(asView.metrics.sqnrDb != asStored.metrics.sqnrDb);
        Tensor t = m.tensors[0];
        t.layout = Layout::InOut;
        QVERIFY(sameBits(asView.metrics.sqnrDb, direct(t, channelSpec()).metrics.sqnrDb));
    }

    void statisticsOnlyForInspect()
    {
        const Model m = testModel();
        const std::vector<TensorFigures> all = modelStatistics(m);
        QCOMPARE(all.size(), m.tensors.size());
        for (size_t i = 0; i < all.size(); ++i) {
            QVERIFY(all[i].status.ok() && !all[i].quantized);
            QVERIFY(sameBits(all[i].stats.std, computeStats(*m.tensors[i].toFloat()).std));
        }
    }

    void undecodableTensorReportsWhy()
    {
        Model m = testModel();
        m.tensors[1].dtype = DType::Opaque;
        m.tensors[1].opaqueType = "Q4_K";
        const std::vector<TensorFigures> all = modelStatistics(m);
        QVERIFY(!all[1].status.ok());
        QCOMPARE(all[1].status.error().message, std::string("not decoded"));
        QVERIFY(all[0].status.ok() && all[2].status.ok());
    }

    void cancelStopsBetweenTensors()
    {
        const Model m = testModel();
        int calls = 0;
        ModelSummaryJob job;
        job.workers = 1;
        job.done = [&](size_t, TensorFigures&&) { ++calls; };
        job.cancelled = [&] { return calls >= 2; };
        summarizeModel(m, job);
        QCOMPARE(calls, 2);
    }
};

QTEST_GUILESS_MAIN(TstModelSummary)
#include "tst_modelsummary.moc"
