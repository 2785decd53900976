// Editing the quantization plan in the window as a user does: the default for weights,
// vectors left in float, a dragged clamp line that stays where it is dropped, the scope
// of a change, undo/redo, and what the histogram shows while a calibrator runs.
#include <QComboBox>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QScrollBar>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <QTreeView>
#include <QUndoStack>

#include <qcustomplot.h>

#include <cmath>

#include "heatmapview.h"
#include "histogramplot.h"
#include "io/demomodel.h"
#include "mainwindow.h"
#include "windowtestsupport.h"
#include "modeloverview.h"
#include "numberspanel.h"
#include "quantcontrols.h"
#include "tensortreemodel.h"
#include "testsupport.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kWaitMs = 20000;
const char* kQLin = "distilbert.transformer.layer.0.attention.q_lin.weight";
const char* kKLin = "distilbert.transformer.layer.0.attention.k_lin.weight";
const char* kNorm = "distilbert.embeddings.LayerNorm.weight";

bool waitIdle(MainWindow& w) { return test::waitIdle(w, kWaitMs); }

int tensorIndex(const MainWindow& w, const char* name) { return int(w.model()->find(name) - w.model()->tensors.data()); }

}  // namespace

class TestPlanEditing : public QObject {
    Q_OBJECT
private:
    std::unique_ptr<MainWindow> w;

    // Drags clamp line `which` (0 lo, 1 hi) by dx pixels in steps; returns the lines
    // seen during the drag after each step.
    std::vector<std::pair<double, double>> drag(int which, int dx)
    {
        HistogramPlot* h = w->histogram();
        h->replot();
        const int x0 = h->linePixel(which);
        const int y = h->axisRect()->center().y();
        std::vector<std::pair<double, double>> seen;
        QTest::mousePress(h, Qt::LeftButton, {}, QPoint(x0, y));
        if (!h->isDragging())
            return seen;
        for (int step = 1; step <= 4; ++step) {
            QTest::mouseMove(h, QPoint(x0 + dx * step / 4, y));
            seen.emplace_back(h->clampLo(), h->clampHi());
        }
        QTest::mouseRelease(h, Qt::LeftButton, {}, QPoint(x0 + dx, y));
        return seen;
    }

private slots:
    void init()
    {
        w = test::openDemoWindow(/*interactive=*/false, kWaitMs);
        QVERIFY(w);
    }
    void cleanup() { w.reset(); }

    void weightsDefaultToSymmetricPerChannel()
    {
        QCOMPARE(int(w->session().defaultSpec.scheme), int(Scheme::TorchSymmetric));
        QCOMPARE(int(w->session().defaultSpec.granularity), int(Granularity::PerChannel));
        QCOMPARE(w->matrix()->name, std::string(kQLin));
        QCOMPARE(w->outcome()->qt.params.scale.size(), size_t(w->matrix()->rows));  // one scale per output row
        QCOMPARE(w->numbers()->value(QStringLiteral("scheme")), QStringLiteral("torch-symmetric"));
        // The seed scheme is still there, with what it does in its tooltip.
        QComboBox* sb = w->controls()->schemeBox();
        const int seed = sb->findData(int(Scheme::Seed));
        QVERIFY(seed >= 0);
        QVERIFY(sb->itemData(seed, Qt::ToolTipRole).toString().contains(
            QString::fromUtf8("(max−min)/255, zero point 0: clips asymmetric tensors")));
        QVERIFY(w->undoStack()->count() == 0);  // opening a model is not an edit
    }

    void vectorsAreNotQuantizedByDefault()
    {
        QVERIFY(w->selectTensor(QString::fromLatin1(kNorm)));
        QVERIFY(waitIdle(*w));
        const int t = tensorIndex(*w, kNorm);
        QVERIFY(!w->isQuantized(t));
        QVERIFY(!w->outcome());
        const QString why = QStringLiteral("not quantized by default: a 1-D vector (norm gain)");
        QVERIFY2(w->histogram()->pendingText().contains(why), qPrintable(w->histogram()->pendingText()));
        QVERIFY(!w->histogram()->linesVisible());
        QVERIFY(w->histogram()->keptBars() > 0);  // its values are still drawn
        QVERIFY(w->controls()->notQuantizedLabel()->isVisible());
        QVERIFY(w->controls()->notQuantizedLabel()->text().contains(QStringLiteral("a 1-D vector (norm gain)")));
        QVERIFY(!w->controls()->schemeBox()->isEnabled());
        // A vector is a strip of values, not a 1-pixel-high heatmap.
        QVERIFY(w->heatmaps()->showsStrip());
        QCOMPARE(w->heatmaps()->strip()->graph(0)->dataCount(), int(w->matrix()->cols));
        QCOMPARE(w->heatmaps()->strip()->graph(1)->dataCount(), 0);
        // The tree says "float" where a weight has its SQNR.
        const QModelIndex sq = w->treeModel()->indexForTensor(t).siblingAtColumn(TensorTreeModel::SqnrColumn);
        QCOMPARE(sq.data().toString(), QStringLiteral("float"));

        // Quantize it anyway: its own choice, per tensor, undoable.
        QTest::mouseClick(w->controls()->quantizeAnywayButton(), Qt::LeftButton);
        QVERIFY(waitIdle(*w));
        QVERIFY(w->isQuantized(t));
        QVERIFY(w->outcome());
        QCOMPARE(int(w->outcome()->spec.granularity), int(Granularity::PerTensor));
        QVERIFY(w->histogram()->linesVisible());
        QVERIFY(w->histogram()->pendingText().isEmpty());
        QCOMPARE(w->heatmaps()->strip()->graph(1)->dataCount(), int(w->matrix()->cols));
        QCOMPARE(int(w->controls()->scope()), int(QuantControls::Scope::ThisLayer));
        const QModelIndex name = w->treeModel()->indexForTensor(t);
        QVERIFY(name.data(TensorTreeModel::TunedRole).toBool());
        QVERIFY(name.data(Qt::ToolTipRole).toString().contains(QStringLiteral("stays float by default")));
        // Under the seed scheme (zero point 0, range around 0) LayerNorm gains near 1.0 are all clamped.
        QComboBox* sb = w->controls()->schemeBox();
        sb->setCurrentIndex(sb->findData(int(Scheme::Seed)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(w->outcome()->qt.clampedCount, w->matrix()->cols);
        QCOMPARE(int(w->session().defaultSpec.scheme), int(Scheme::TorchSymmetric));  // this layer only

        QVERIFY(w->undoStack()->canUndo());
        w->undoStack()->undo();  // the scheme
        w->undoStack()->undo();  // quantize anyway
        QVERIFY(waitIdle(*w));
        QVERIFY(!w->isQuantized(t));
        QVERIFY(!w->outcome());
        QVERIFY(w->histogram()->pendingText().contains(why));
    }

    void symmetricDragMirrorsAndStaysWhereDropped()
    {
        HistogramPlot* h = w->histogram();
        QCOMPARE(int(h->dragRule()), int(HistogramPlot::DragRule::Mirror));
        const int undoBefore = w->undoStack()->count();
        const auto seen = drag(1, -60);
        QCOMPARE(seen.size(), size_t(4));
        for (const auto& [lo, hi] : seen)
            QCOMPARE(lo, -hi);  // the other line follows while dragging
        const double droppedHi = h->clampHi();
        QVERIFY(waitIdle(*w));
        // Dropped: the lines stay there and the spec says the same.
        QCOMPARE(h->clampHi(), droppedHi);
        QCOMPARE(h->clampLo(), -droppedHi);
        QCOMPARE(double(w->outcome()->spec.manualHi), double(float(droppedHi)));
        QCOMPARE(w->outcome()->spec.manualLo, -w->outcome()->spec.manualHi);
        QCOMPARE(w->undoStack()->count(), undoBefore + 1);  // one drag, one step
        // For looking at it: QUANTLENS_UI_GRABS=/some/dir
        if (const QString dir = qEnvironmentVariable("QUANTLENS_UI_GRABS"); !dir.isEmpty()) {
            h->replot();
            w->grab().save(dir + QStringLiteral("/symmetric-drag.png"));
        }

        // The lo line cannot be dragged across 0: the scheme clamps at +-absmax.
        drag(0, 2000);
        QVERIFY(waitIdle(*w));
        QVERIFY(h->clampLo() < 0);
        QVERIFY(h->clampHi() > 0);
        QCOMPARE(h->clampLo(), -h->clampHi());
    }

    void affineDragKeepsZeroInside()
    {
        QComboBox* sb = w->controls()->schemeBox();
        sb->setCurrentIndex(sb->findData(int(Scheme::TorchAffine)));
        QVERIFY(waitIdle(*w));
        HistogramPlot* h = w->histogram();
        QCOMPARE(int(h->dragRule()), int(HistogramPlot::DragRule::IncludeZero));
        const double hiBefore = h->clampHi();
        drag(0, 4000);  // far right, past 0
        QVERIFY(waitIdle(*w));
        QVERIFY(h->clampLo() <= 0.0);
        QCOMPARE(float(h->clampHi()), float(hiBefore));  // the other line stays (as float32, like the spec)
        QVERIFY(w->outcome()->spec.manualLo <= 0.0f);
    }

    void scopeSaysWhereAChangeGoes()
    {
        QuantControls* c = w->controls();
        QCOMPARE(int(c->scope()), int(QuantControls::Scope::AllLayers));
        c->scopeBox()->setCurrentIndex(c->scopeBox()->findData(int(QuantControls::Scope::ThisLayer)));
        c->granularityBox()->setCurrentIndex(c->granularityBox()->findData(0));  // per tensor, this layer only
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(w->session().defaultSpec.granularity), int(Granularity::PerChannel));
        QCOMPARE(int(w->session().overrides.at(kQLin).granularity), int(Granularity::PerTensor));
        const QModelIndex q = w->treeModel()->indexForTensor(tensorIndex(*w, kQLin));
        QVERIFY(q.data(TensorTreeModel::TunedRole).toBool());  // a deviation without any range
        QVERIFY(q.data(Qt::DisplayRole).toString().endsWith(QStringLiteral("\u270E")));
        QVERIFY(q.data(Qt::BackgroundRole).isValid());
        QVERIFY2(q.data(Qt::ToolTipRole).toString().contains(QStringLiteral("per tensor (default per channel)")),
                 qPrintable(q.data(Qt::ToolTipRole).toString()));

        // Another layer follows the default, and a change there with "all layers" changes it.
        QVERIFY(w->selectTensor(QString::fromLatin1(kKLin)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(c->scope()), int(QuantControls::Scope::AllLayers));
        QCOMPARE(int(w->outcome()->spec.granularity), int(Granularity::PerChannel));
        c->schemeBox()->setCurrentIndex(c->schemeBox()->findData(int(Scheme::NarrowSymmetric)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(w->session().defaultSpec.scheme), int(Scheme::NarrowSymmetric));
        QCOMPARE(int(w->session().overrides.at(kQLin).scheme), int(Scheme::TorchSymmetric));
        QVERIFY(q.data(Qt::ToolTipRole).toString().contains(QStringLiteral("scheme torch-symmetric (default narrow-symmetric)")));

        // Back on q_lin, "all layers" drops its own settings.
        QVERIFY(w->selectTensor(QString::fromLatin1(kQLin)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(c->scope()), int(QuantControls::Scope::ThisLayer));
        c->scopeBox()->setCurrentIndex(c->scopeBox()->findData(int(QuantControls::Scope::AllLayers)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(w->session().overrides.count(kQLin), size_t(0));
        QCOMPARE(int(w->outcome()->spec.scheme), int(Scheme::NarrowSymmetric));
        QVERIFY(!q.data(TensorTreeModel::TunedRole).toBool());
    }

    void undoAndRedoEveryPlanEdit()
    {
        const auto outcomeBefore = w->outcome();
        drag(1, -50);
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(w->session().overrides.at(kQLin).calib), int(CalibMethod::Manual));
        const float tunedHi = w->session().overrides.at(kQLin).manualHi;

        QTest::keyClick(w.get(), Qt::Key_Z, Qt::ControlModifier);
        QVERIFY(waitIdle(*w));
        QCOMPARE(w->session().overrides.count(kQLin), size_t(0));
        QCOMPARE(int(w->outcome()->spec.calib), int(CalibMethod::MinMax));
        QCOMPARE(w->outcome()->metrics.sqnrDb, outcomeBefore->metrics.sqnrDb);
        QCOMPARE(int(w->controls()->scope()), int(QuantControls::Scope::AllLayers));

        QTest::keyClick(w.get(), Qt::Key_Z, Qt::ControlModifier | Qt::ShiftModifier);
        QVERIFY(waitIdle(*w));
        QCOMPARE(w->session().overrides.at(kQLin).manualHi, tunedHi);
        QCOMPARE(w->outcome()->spec.manualHi, tunedHi);
        QCOMPARE(w->histogram()->clampHi(), double(tunedHi));

        // The model-wide default and the export ticks are edits too.
        w->controls()->calibBox()->setCurrentIndex(w->controls()->calibBox()->findData(int(CalibMethod::MinMax)));
        QVERIFY(waitIdle(*w));
        QVERIFY(w->selectTensor(QString::fromLatin1(kKLin)));
        QVERIFY(waitIdle(*w));
        QComboBox* sb = w->controls()->schemeBox();
        sb->setCurrentIndex(sb->findData(int(Scheme::Seed)));
        QVERIFY(waitIdle(*w));
        w->treeModel()->setCheckedNames({kKLin});
        QCOMPARE(w->session().exportSelection, std::set<std::string>{kKLin});
        w->undoStack()->undo();
        QVERIFY(w->session().exportSelection.empty());
        QVERIFY(w->treeModel()->checkedNames().empty());
        w->undoStack()->undo();
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(w->session().defaultSpec.scheme), int(Scheme::TorchSymmetric));
        QCOMPARE(int(sb->currentData().toInt()), int(Scheme::TorchSymmetric));
        QCOMPARE(int(w->outcome()->spec.scheme), int(Scheme::TorchSymmetric));
    }

    void loadingASessionOverUnsavedTuningAsksFirst()
    {
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const QString path = tmp.filePath(QStringLiteral("s.json"));
        w->controls()->setManualRange(-0.05, 0.05);
        QVERIFY(waitIdle(*w));
        QVERIFY(w->saveSessionTo(path));
        QVERIFY(!w->hasUnsavedTuning());
        w->controls()->setManualRange(-0.02, 0.02);
        QVERIFY(waitIdle(*w));
        QVERIFY(w->hasUnsavedTuning());

        w->setDiscardUnsavedAnswer(false);  // the user says Cancel
        QVERIFY(!w->loadSessionFrom(path));
        QCOMPARE(w->session().overrides.at(kQLin).manualHi, 0.02f);
        QVERIFY(w->lastError().contains(QStringLiteral("cancelled")));

        w->setDiscardUnsavedAnswer(true);  // the user says Discard
        QVERIFY(w->loadSessionFrom(path));
        QVERIFY(waitIdle(*w));
        QCOMPARE(w->session().overrides.at(kQLin).manualHi, 0.05f);
        QVERIFY(!w->hasUnsavedTuning());
        // ...and could still get the discarded tuning back.
        w->undoStack()->undo();
        QVERIFY(waitIdle(*w));
        QCOMPARE(w->session().overrides.at(kQLin).manualHi, 0.02f);
    }

    void histogramSaysACalibratorIsComputing()
    {
        HistogramPlot* h = w->histogram();
        QVERIFY(h->linesVisible());
        QComboBox* cb = w->controls()->calibBox();
        cb->setCurrentIndex(cb->findData(int(CalibMethod::Entropy)));
        // At once, before the search has finished: no stale lines, a note instead.
        QVERIFY2(h->pendingText().contains(QStringLiteral("computing the entropy range")), qPrintable(h->pendingText()));
        QVERIFY(!h->linesVisible());
        QVERIFY(waitIdle(*w));
        QVERIFY(h->linesVisible());
        QVERIFY(h->pendingText().isEmpty());

        // A newly shown tensor never shows the previous one's lines.
        QSignalSpy shown(w.get(), &MainWindow::tensorShown);
        QVERIFY(w->selectTensor(QString::fromLatin1(kKLin)));
        QVERIFY(shown.wait(kWaitMs));
        QVERIFY(!h->linesVisible());
        QVERIFY(!h->pendingText().isEmpty());
        QVERIFY(waitIdle(*w));
        QVERIFY(h->linesVisible());
    }

    void doubleClickResetsAPannedHistogram()
    {
        HistogramPlot* h = w->histogram();
        h->replot();
        const QCPRange home = h->xAxis->range();
        h->xAxis->setRange(home.upper + 1.0, home.upper + 2.0);  // panned off the data
        h->replot();
        QTest::mouseDClick(h, Qt::LeftButton, {}, h->axisRect()->center());
        QCOMPARE(h->xAxis->range().lower, home.lower);
        QCOMPARE(h->xAxis->range().upper, home.upper);
    }

    void treeColumnsFitWithoutScrolling()
    {
        QTreeView* tree = w->tree();
        const QAbstractItemView* view = tree;  // sizeHintForColumn is public here
        tree->expandAll();
        QTest::qWait(50);
        QCOMPARE(tree->horizontalScrollBar()->maximum(), 0);
        // Numbers are never cut: each number column is as wide as its widest text.
        for (int c = TensorTreeModel::ShapeColumn; c < TensorTreeModel::ColumnCount; ++c)
            QVERIFY2(tree->isColumnHidden(c) || tree->header()->sectionSize(c) >= view->sizeHintForColumn(c),
                     qPrintable(QStringLiteral("column %1: %2 < %3").arg(c).arg(tree->header()->sectionSize(c)).arg(view->sizeHintForColumn(c))));
        QVERIFY(!tree->isColumnHidden(TensorTreeModel::SqnrColumn));
        QVERIFY(tree->header()->sectionSize(TensorTreeModel::NameColumn) >= 150);
    }

    void sileroOverviewShowsItsConvAndLstmLayers()
    {
        QL_REQUIRE_SHARED_MODELS();
        QSignalSpy loaded(w.get(), &MainWindow::modelLoaded);
        w->openFile(test::sharedModel(QStringLiteral("silero_vad_16k.safetensors")));
        QVERIFY(loaded.wait(kWaitMs));
        QSignalSpy done(w.get(), &MainWindow::summariesFinished);
        QVERIFY(done.wait(kWaitMs) || waitIdle(*w));
        QVERIFY(waitIdle(*w));
        QCOMPARE(w->treeModel()->linearTensors().size(), size_t(8));
        QCOMPARE(w->overview()->barCount(), 8);
        QVERIFY2(w->overview()->sizeText().contains(QStringLiteral("8 of 8")), qPrintable(w->overview()->sizeText()));
        // It starts on its first layer (stft_conv), quantized per output channel of a conv.
        QCOMPARE(w->matrix()->name, std::string("stft_conv.weight"));
        QCOMPARE(w->outcome()->qt.params.scale.size(), size_t(258));
    }
};

QTEST_MAIN(TestPlanEditing)
#include "tst_planediting.moc"
