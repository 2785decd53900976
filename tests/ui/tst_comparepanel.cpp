// Comparing with a reference in the GUI (issue #20), offscreen: the comparison runs in the
// background, the tree gains its "vs ref" columns, the Tensor tab's maps become reference /
// this file / difference with the real other file's values, and a click on a bar of the
// per-layer chart selects that layer's worst tensor.
#include <QHeaderView>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTest>
#include <QTreeView>

#include <qcustomplot.h>

#include <cmath>

#include "comparepanel.h"
#include "heatmapplot.h"
#include "heatmapview.h"
#include "mainwindow.h"
#include "tensortreemodel.h"
#include "testsupport.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

bool waitIdle(MainWindow& w)
{
    QDeadlineTimer deadline(30000);
    while (!w.isIdle() && !deadline.hasExpired())
        QTest::qWait(50);
    return w.isIdle();
}

std::shared_ptr<const Model> open(const QString& path)
{
    auto m = openModel(path.toStdString());
    if (!m)
        qFatal("%s", m.error().oneLine().c_str());
    return std::make_shared<const Model>(std::move(*m));
}

}  // namespace

class TestComparePanel : public QObject {
    Q_OBJECT
private slots:
    void hfCopyAgainstGguf()
    {
        QL_REQUIRE_SHARED_MODELS();
        MainWindow w(nullptr, false);
        w.setInteractive(false);
        w.resize(1400, 900);
        w.show();
        w.showModel(open(test::dataPath("compare/stories260K_hf.safetensors")), QStringLiteral("hf copy"));
        QVERIFY(waitIdle(w));
        QVERIFY(w.tree()->isColumnHidden(TensorTreeModel::RefSqnrColumn));
        QSignalSpy done(w.comparePanel(), &ComparePanel::finished);
        w.compareWith(test::sharedModel("stories260K.gguf"));
        QVERIFY(w.comparePanel()->busy());
        QVERIFY(!w.isIdle());
        QVERIFY(done.wait(30000));
        QVERIFY(waitIdle(w));
        const auto report = w.comparePanel()->report();
        QVERIFY(report);
        QCOMPARE(report->matched.size(), size_t(48));
        QVERIFY(!w.tree()->isColumnHidden(TensorTreeModel::RefSqnrColumn));
        const int q = int(w.model()->find("model.layers.1.self_attn.q_proj.weight") - w.model()->tensors.data());
        const QModelIndex cell = w.treeModel()->indexForTensor(q).siblingAtColumn(TensorTreeModel::RefSqnrColumn);
        QVERIFY(std::isinf(cell.data(TensorTreeModel::SortRole).toDouble()));

        // The Tensor tab: reference / this file / difference, and the difference is zero.
        QVERIFY(w.selectTensor(q));
        QVERIFY(waitIdle(w));
        HeatmapView* h = w.heatmaps();
        QVERIFY(h->error()->hasGrid());
        double maxDiff = 0;
        for (int64_t r = 0; r < 64; r += 7)
            for (int64_t c = 0; c < 64; c += 5)
                maxDiff = std::max(maxDiff, std::abs(h->error()->cellValue(r, c)));
        QCOMPARE(maxDiff, 0.0);
        QVERIFY(h->after()->cellValue(3, 4) != 0);
        QCOMPARE(h->before()->cellValue(3, 4), h->after()->cellValue(3, 4));
    }

    void fakeQuantDifferenceAndChartClick()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir dir;
        // The reference is the original; the model on screen a copy with one tensor scaled by 1.5.
        const QString gguf = test::sharedModel("stories260K.gguf");
        auto model = open(gguf);
        Model copy = *model;
        std::vector<float> scaled;
        for (Tensor& t : copy.tensors)
            if (t.name == "blk.2.ffn_up.weight") {
                auto v = t.toFloat();
                QVERIFY(v);
                scaled = *v;
                for (float& x : scaled)
                    x *= 1.5f;
                t = makeFloatTensor(t.name, t.shape, scaled);
            }
        MainWindow w(nullptr, false);
        w.setInteractive(false);
        w.resize(1400, 900);
        w.show();
        w.showModel(std::make_shared<const Model>(std::move(copy)), QStringLiteral("scaled copy"));
        QVERIFY(waitIdle(w));
        w.compareWith(gguf);
        QVERIFY(waitIdle(w));
        const auto report = w.comparePanel()->report();
        QVERIFY(report);
        int nonzero = 0;
        for (const TensorComparison& c : report->matched)
            if (c.errEnergy > 0) {
                ++nonzero;
                QCOMPARE(c.aName, std::string("blk.2.ffn_up.weight"));
                QVERIFY(std::abs(c.metrics.sqnrDb - 20 * std::log10(1 / 0.5)) < 1e-6);  // |x| / |0.5 x|
                QVERIFY(std::abs(c.relFrobenius - 0.5) < 1e-6);
            }
        QCOMPARE(nonzero, 1);

        // The worst layer is the top bar: clicking it selects blk.2.ffn_up.weight.
        QCustomPlot* chart = w.comparePanel()->chart();
        w.tabs()->setCurrentWidget(w.comparePanel());
        QTest::qWait(50);
        chart->replot();
        const QPoint bar(int(chart->xAxis->coordToPixel(chart->xAxis->range().center())),
                         int(chart->yAxis->coordToPixel(0)));
        QTest::mouseClick(chart, Qt::LeftButton, {}, bar);
        QVERIFY(waitIdle(w));
        QCOMPARE(w.model()->tensors[size_t(w.currentTensor())].name, std::string("blk.2.ffn_up.weight"));
        QCOMPARE(w.tabs()->currentIndex(), 0);
        // Its difference map holds the real other file's values: 0.5 x reference.
        HeatmapView* h = w.heatmaps();
        QVERIFY(h->error()->hasGrid());
        const double ref = h->before()->cellValue(10, 10), diff = h->error()->cellValue(10, 10);
        QVERIFY(ref != 0);
        QVERIFY(std::abs(diff - 0.5 * ref) < 1e-6 * std::abs(ref) + 1e-7);

        // A new model on screen drops the comparison.
        w.showModel(open(gguf), QStringLiteral("again"));
        QVERIFY(waitIdle(w));
        QVERIFY(!w.comparePanel()->report());
        QVERIFY(w.tree()->isColumnHidden(TensorTreeModel::RefSqnrColumn));
    }

    void unreadableReference()
    {
        MainWindow w(nullptr, false);
        w.setInteractive(false);
        w.showModel(open(test::dataPath("compare/stories260K_hf.safetensors")), QStringLiteral("hf copy"));
        QVERIFY(waitIdle(w));
        w.compareWith(QStringLiteral("/nonexistent/reference.gguf"));
        QVERIFY(waitIdle(w));
        QVERIFY(!w.comparePanel()->report());
        QVERIFY(w.comparePanel()->lastError().contains(QStringLiteral("reference.gguf")));
    }
};

QTEST_MAIN(TestComparePanel)
#include "tst_comparepanel.moc"
