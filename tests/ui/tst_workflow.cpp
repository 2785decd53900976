// The inspector's workflow features, driven like a user, offscreen: a range tuned on one
// layer stays with that layer; sessions save and re-apply (and warn on another model); the
// export dialog writes the tuned ranges and cancels cleanly; desktop conventions (drop a
// file, recent files, plots saved as PNG/PDF) and Cancel for an open in progress.
#include <QCheckBox>
#include <QComboBox>
#include <QCoreApplication>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFile>
#include <QImage>
#include <QLabel>
#include <QMenu>
#include <QMessageBox>
#include <QMimeData>
#include <QPushButton>
#include <QRadioButton>
#include <QTabWidget>
#include <QSettings>
#include <QSignalSpy>
#include <QSortFilterProxyModel>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <QToolButton>
#include <QTreeView>
#include <QUrl>

#include <cmath>
#include <filesystem>

#include "exportdialog.h"
#include "io/demomodel.h"
#include "io/exporter.h"
#include "io/safetensors.h"
#include "mainwindow.h"
#include "quantcontrols.h"
#include "sensitivitypanel.h"
#include "tensortreemodel.h"
#include "testsupport.h"

using namespace quantlens;
using namespace quantlens::ui;
using quantlens::test::dataPath;

namespace {

constexpr int kWaitMs = 30000;
const char* kQLin = "distilbert.transformer.layer.0.attention.q_lin.weight";
const char* kKLin = "distilbert.transformer.layer.0.attention.k_lin.weight";

bool waitIdle(MainWindow& w)
{
    QDeadlineTimer deadline(kWaitMs);
    while (!w.isIdle() && !deadline.hasExpired())
        QTest::qWait(20);
    return w.isIdle();
}

std::unique_ptr<MainWindow> newWindow(bool settings = false)
{
    auto w = std::make_unique<MainWindow>(nullptr, settings);
    w->setInteractive(true);
    w->resize(1400, 900);
    w->show();
    return w;
}

float storedScale(const std::string& file, const std::string& tensor)
{
    auto m = readSafetensors(file);
    if (!m)
        return NAN;
    const Tensor* t = m->find(tensor + "_scale");
    if (!t)
        return NAN;
    auto v = t->toFloat();
    return v && !v->empty() ? (*v)[0] : NAN;
}

}  // namespace

class TestWorkflow : public QObject {
    Q_OBJECT
private:
    std::unique_ptr<MainWindow> w;
    QTemporaryDir tmp;

    void openDemo(MainWindow& win, int hidden = 64)
    {
        win.showModel(std::make_shared<const Model>(makeDemoModel(1, hidden)), QStringLiteral("test demo"));
        QVERIFY(waitIdle(win));
    }

    // A manual range on q_lin, as dragging or typing it would set.
    void tuneQLin(float lo, float hi)
    {
        QVERIFY(w->selectTensor(QString::fromLatin1(kQLin)));
        QVERIFY(waitIdle(*w));
        w->controls()->setManualRange(lo, hi);
        QVERIFY(waitIdle(*w));
    }

private slots:
    void initTestCase()
    {
        QVERIFY(tmp.isValid());
        // Recent files and settings go to a throwaway place, never the user's.
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName(QStringLiteral("QuantlensTest"));
        QCoreApplication::setApplicationName(QStringLiteral("tst_workflow"));
        QSettings().clear();
    }
    void init()
    {
        w = newWindow();
        openDemo(*w);
    }
    void cleanup() { w.reset(); }

    void tunedRangeStaysWithItsLayer()
    {
        tuneQLin(-0.05f, 0.06f);
        QCOMPARE(int(w->controls()->spec().calib), int(CalibMethod::Manual));
        QCOMPARE(w->session().overrides.count(kQLin), size_t(1));
        const QModelIndex src = w->treeModel()->indexForTensor(w->currentTensor());
        QVERIFY(src.data(TensorTreeModel::TunedRole).toBool());
        QVERIFY(src.data(Qt::FontRole).value<QFont>().italic());

        // Another layer shows the model-wide choice...
        QVERIFY(w->selectTensor(QString::fromLatin1(kKLin)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(w->controls()->spec().calib), int(CalibMethod::MinMax));
        QCOMPARE(int(w->outcome()->spec.calib), int(CalibMethod::MinMax));
        // ...a model-wide change there does not touch q_lin's tuning (made under the
        // default, torch-symmetric)...
        w->controls()->schemeBox()->setCurrentIndex(w->controls()->schemeBox()->findData(int(Scheme::Seed)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(w->session().defaultSpec.scheme), int(Scheme::Seed));
        QCOMPARE(int(w->session().overrides.at(kQLin).scheme), int(Scheme::TorchSymmetric));
        // ...and coming back restores the tuned range exactly.
        QVERIFY(w->selectTensor(QString::fromLatin1(kQLin)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(w->outcome()->spec.calib), int(CalibMethod::Manual));
        QCOMPARE(w->outcome()->spec.manualLo, -0.05f);
        QCOMPARE(w->outcome()->spec.manualHi, 0.06f);
        QCOMPARE(int(w->outcome()->spec.scheme), int(Scheme::TorchSymmetric));

        // Scope "all layers": back to the model-wide spec, the mark goes.
        QComboBox* scope = w->controls()->scopeBox();
        scope->setCurrentIndex(scope->findData(int(QuantControls::Scope::AllLayers)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(int(w->outcome()->spec.scheme), int(Scheme::Seed));
        QCOMPARE(w->session().overrides.count(kQLin), size_t(0));
        QVERIFY(!w->treeModel()->indexForTensor(w->currentTensor()).data(TensorTreeModel::TunedRole).toBool());
    }

    void treeColumnsFollowTheTuning()
    {
        auto sqnrCell = [this](const char* name) {
            const int t = int(w->model()->find(name) - w->model()->tensors.data());
            return w->treeModel()->indexForTensor(t).siblingAtColumn(TensorTreeModel::SqnrColumn).data(TensorTreeModel::SortRole).toDouble();
        };
        const double plain = sqnrCell(kQLin);
        QVERIFY(plain > 0);
        tuneQLin(-0.02f, 0.02f);  // clips hard: much worse than min/max
        const double tuned = w->outcome()->metrics.sqnrDb;
        QCOMPARE(sqnrCell(kQLin), tuned);
        QVERIFY(tuned < plain - 1.0);
        // A model-wide change recomputes every row; q_lin keeps its tuning's figure.
        QVERIFY(w->selectTensor(QString::fromLatin1(kKLin)));
        QVERIFY(waitIdle(*w));
        w->controls()->schemeBox()->setCurrentIndex(w->controls()->schemeBox()->findData(int(Scheme::NarrowSymmetric)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(sqnrCell(kQLin), tuned);
        QVERIFY(sqnrCell(kKLin) != 0);
        // Forgetting the tuning (scope "all layers") brings back the model-wide figure.
        QVERIFY(w->selectTensor(QString::fromLatin1(kQLin)));
        QVERIFY(waitIdle(*w));
        QComboBox* scope = w->controls()->scopeBox();
        scope->setCurrentIndex(scope->findData(int(QuantControls::Scope::AllLayers)));
        QVERIFY(waitIdle(*w));
        QCOMPARE(sqnrCell(kQLin), w->outcome()->metrics.sqnrDb);
        QVERIFY(sqnrCell(kQLin) > tuned + 1.0);
    }

    void treeCheckboxesAreTheExportSelection()
    {
        TensorTreeModel* tm = w->treeModel();
        const QModelIndex q = tm->indexForTensor(int(w->model()->find(kQLin) - w->model()->tensors.data()));
        QVERIFY(tm->flags(q) & Qt::ItemIsUserCheckable);
        QVERIFY(w->proxy()->setData(w->proxy()->mapFromSource(q), Qt::Checked, Qt::CheckStateRole));
        QCOMPARE(w->session().exportSelection, std::set<std::string>{kQLin});
        tm->checkAllLinear();
        QCOMPARE(w->session().exportSelection.size(), size_t(6));  // one block: q, k, v, out, lin1, lin2
        tm->clearChecks();
        QVERIFY(w->session().exportSelection.empty());
    }

    void sessionSavesAndReapplies()
    {
        tuneQLin(-0.04f, 0.03f);
        w->treeModel()->setCheckedNames({kQLin, kKLin});
        const QString path = tmp.filePath(QStringLiteral("session.json"));
        QVERIFY2(w->saveSessionTo(path), qPrintable(w->lastError()));

        // The same model, later, in a fresh window.
        auto w2 = newWindow();
        openDemo(*w2);
        QVERIFY(w2->session().overrides.empty());
        QVERIFY2(w2->loadSessionFrom(path), qPrintable(w2->lastError()));
        QCOMPARE(w2->session().overrides.size(), size_t(1));
        QCOMPARE(w2->session().overrides.at(kQLin).manualLo, -0.04f);
        QCOMPARE(w2->treeModel()->checkedNames(), (std::set<std::string>{kQLin, kKLin}));
        QVERIFY(!w2->findChild<QMessageBox*>(QStringLiteral("sessionWarning")));
        QVERIFY(w2->selectTensor(QString::fromLatin1(kQLin)));
        QVERIFY(waitIdle(*w2));
        QCOMPARE(int(w2->outcome()->spec.calib), int(CalibMethod::Manual));
        QCOMPARE(w2->outcome()->spec.manualHi, 0.03f);

        // Another model (other shapes): applied where names match, and the user is told.
        auto w3 = newWindow();
        openDemo(*w3, 32);
        QVERIFY(w3->loadSessionFrom(path));
        auto* box = w3->findChild<QMessageBox*>(QStringLiteral("sessionWarning"));
        QVERIFY(box);
        QVERIFY(box->text().contains(QStringLiteral("different tensors")));
        box->close();

        // A broken file: an error naming it, nothing changes.
        const QString bad = tmp.filePath(QStringLiteral("bad.json"));
        QFile f(bad);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("{\"quantlens_session\": 1, \"layers\": {\"x\": {\"scheme\": \"nope\"}}}");
        f.close();
        QVERIFY(!w2->loadSessionFrom(bad));
        QVERIFY(w2->lastError().contains(QStringLiteral("bad.json")));
        QCOMPARE(w2->session().overrides.size(), size_t(1));
    }

    void exportDialogCarriesTheTuning()
    {
        tuneQLin(-0.02f, 0.02f);
        ExportDialog* d = w->openExportDialog();
        QVERIFY(d);
        QVERIFY(d->allLinearButton()->isChecked());
        QVERIFY(d->tuningBox()->isChecked());
        d->formatBox()->setCurrentIndex(d->formatBox()->findData(int(ExportFormat::SafetensorsInt8)));
        d->schemeBox()->setCurrentIndex(d->schemeBox()->findData(int(Scheme::TorchSymmetric)));
        const QString out = tmp.filePath(QStringLiteral("tuned.safetensors"));
        d->setOutputPath(out);
        QVERIFY2(d->summaryLabel()->text().contains(QStringLiteral("6 tensors")), qPrintable(d->summaryLabel()->text()));
        QVERIFY(d->summaryLabel()->text().contains(QStringLiteral("1 with their own tuning")));
        const ExportSizes sz = d->sizes();
        // float32 -> int8 with, under the default per-channel granularity, a float32 scale
        // and an int32 zero point per output row (64 rows in q/k/v/out/lin2, 256 in lin1):
        // 196608 bytes -> 49152 + 576 * 8 at most.
        QCOMPARE(sz.quantizedBefore, int64_t(196608));
        QVERIFY2(sz.quantizedAfter > 49152 && sz.quantizedAfter <= 49152 + 576 * 8, qPrintable(QString::number(sz.quantizedAfter)));
        QVERIFY(sz.ratio() >= 196608.0 / (49152 + 576 * 8));

        QSignalSpy done(d, &ExportDialog::exportFinished);
        QTest::mouseClick(d->exportButton(), Qt::LeftButton);
        QVERIFY(done.wait(kWaitMs));
        QVERIFY2(done.front().front().toBool(), qPrintable(d->statusLabel()->text()));
        QVERIFY(d->statusLabel()->text().contains(QStringLiteral("Wrote")));

        // q_lin carries its tuned range (the default torch-symmetric per channel, [-0.02,
        // 0.02]); k_lin the dialog's scheme.
        QuantSpec tuned = w->session().overrides.at(kQLin);
        auto qe = quantizeForExport(*w->model(), kQLin, tuned);
        QVERIFY(qe);
        QCOMPARE(storedScale(out.toStdString(), kQLin), qe->quantized.params.scale[0]);
        QuantSpec plain;
        plain.scheme = Scheme::TorchSymmetric;
        plain.granularity = Granularity::PerChannel;  // the dialog starts from the default, per channel
        auto ke = quantizeForExport(*w->model(), kKLin, plain);
        QVERIFY(ke);
        QCOMPARE(storedScale(out.toStdString(), kKLin), ke->quantized.params.scale[0]);

        // Without the tuning, q_lin gets the dialog's scheme too.
        d->tuningBox()->setChecked(false);
        const QString out2 = tmp.filePath(QStringLiteral("plain.safetensors"));
        d->setOutputPath(out2);
        done.clear();
        d->startExport();
        QVERIFY(done.wait(kWaitMs));
        auto pe = quantizeForExport(*w->model(), kQLin, plain);
        QCOMPARE(storedScale(out2.toStdString(), kQLin), pe->quantized.params.scale[0]);
        d->close();
    }

    void exportCancelLeavesNothing()
    {
        auto big = newWindow();
        big->showModel(std::make_shared<const Model>(makeDemoModel(2, 768)), QStringLiteral("big demo"));
        QVERIFY(waitIdle(*big));
        ExportDialog* d = big->openExportDialog();
        QVERIFY(d);
        d->formatBox()->setCurrentIndex(d->formatBox()->findData(int(ExportFormat::Hdf5)));
        const QString out = tmp.filePath(QStringLiteral("cancelled.h5"));
        d->setOutputPath(out);
        QSignalSpy done(d, &ExportDialog::exportFinished);
        d->startExport();
        QVERIFY(d->isExporting());
        QVERIFY(d->cancelButton()->isEnabled());
        QElapsedTimer t;
        t.start();
        QTest::mouseClick(d->cancelButton(), Qt::LeftButton);
        QVERIFY(done.wait(kWaitMs));
        QVERIFY(!done.front().front().toBool());
        QVERIFY(d->lastOutcome()->cancelled);
        QVERIFY2(t.elapsed() < 5000, qPrintable(QString::number(t.elapsed())));
        QVERIFY(!QFile::exists(out));
        QVERIFY(d->statusLabel()->text().contains(QStringLiteral("Cancelled")));
        d->close();
    }

    void sensitivityTabDrivesSelectionAndExport()
    {
        SensitivityPanel* p = w->sensitivityPanel();
        QVERIFY(p);
        QSignalSpy done(p, &SensitivityPanel::finished);
        p->useRandomInput(16);
        p->run();
        QVERIFY(done.wait(kWaitMs));
        const QStringList bars = p->barLayers();
        QCOMPARE(bars.size(), 6);
        // A bar clicked selects its layer in the tree and shows the tensor tab.
        emit p->layerActivated(bars.front());
        QVERIFY(waitIdle(*w));
        QCOMPARE(QString::fromStdString(w->model()->tensors[size_t(w->currentTensor())].name), bars.front());
        QCOMPARE(w->tabs()->currentIndex(), 0);
        // Keeping it in float32 reaches the session and the export plan.
        p->setKeptFloatLayers({bars.front()});
        QCOMPARE(w->session().keepFloat, std::set<std::string>{bars.front().toStdString()});
        ExportDialog* d = w->openExportDialog();
        QVERIFY(d->keepFloatBox()->isEnabled() && d->keepFloatBox()->isChecked());
        const ExportPlan plan = d->plan();
        QCOMPARE(plan.items.size(), size_t(5));
        QCOMPARE(plan.keptFloat, std::vector<std::string>{bars.front().toStdString()});
        d->close();
        // ...and survives a session round trip.
        const QString path = tmp.filePath(QStringLiteral("kept.json"));
        QVERIFY(w->saveSessionTo(path));
        auto w2 = newWindow();
        openDemo(*w2);
        QVERIFY(w2->loadSessionFrom(path));
        QCOMPARE(w2->session().keepFloat, std::set<std::string>{bars.front().toStdString()});
        QSignalSpy done2(w2->sensitivityPanel(), &SensitivityPanel::finished);
        w2->sensitivityPanel()->useRandomInput(16);
        w2->sensitivityPanel()->run();
        QVERIFY(done2.wait(kWaitMs));
        QCOMPARE(w2->sensitivityPanel()->keptFloatLayers(), QStringList{bars.front()});
    }

    void droppedFileOpens()
    {
        const QString file = dataPath(QStringLiteral("safetensors/dtypes.safetensors"));
        QMimeData mime;
        mime.setUrls({QUrl::fromLocalFile(file)});
        QDragEnterEvent enter(QPoint(200, 200), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QCoreApplication::sendEvent(w.get(), &enter);
        QVERIFY(enter.isAccepted());
        QSignalSpy loaded(w.get(), &MainWindow::modelLoaded);
        QDropEvent drop(QPointF(200, 200), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QCoreApplication::sendEvent(w.get(), &drop);
        QVERIFY(loaded.wait(kWaitMs));
        QCOMPARE(w->sourceLabel(), file);

        // Text or a remote URL is not offered to the window.
        QMimeData text;
        text.setText(QStringLiteral("hello"));
        QDragEnterEvent enterText(QPoint(200, 200), Qt::CopyAction, &text, Qt::LeftButton, Qt::NoModifier);
        enterText.setAccepted(false);
        QCoreApplication::sendEvent(w.get(), &enterText);
        QVERIFY(!enterText.isAccepted());
    }

    void recentFilesAreRemembered()
    {
        QSettings().clear();
        const QString file = dataPath(QStringLiteral("safetensors/dtypes.safetensors"));
        {
            auto s = newWindow(/*settings=*/true);
            QVERIFY(!s->recentMenu()->isEnabled());
            QSignalSpy loaded(s.get(), &MainWindow::modelLoaded);
            s->openFile(file);
            QVERIFY(loaded.wait(kWaitMs));
            QCOMPARE(s->recentMenu()->actions().size(), 1);
            s->close();  // writes the settings
        }
        auto again = newWindow(/*settings=*/true);
        QVERIFY(again->recentMenu()->isEnabled());
        QCOMPARE(again->recentMenu()->actions().size(), 1);
        QAction* a = again->recentMenu()->actions().front();
        QCOMPARE(a->text(), QStringLiteral("dtypes.safetensors"));
        QSignalSpy loaded(again.get(), &MainWindow::modelLoaded);
        a->trigger();
        QVERIFY(loaded.wait(kWaitMs));
        QCOMPARE(again->sourceLabel(), QFileInfo(file).absoluteFilePath());
        QSettings().clear();
    }

    void plotsSaveAsPngAndPdf()
    {
        QVERIFY(w->selectTensor(QString::fromLatin1(kQLin)));
        QVERIFY(waitIdle(*w));
        for (const QString& kind : {QStringLiteral("histogram"), QStringLiteral("heatmaps")}) {
            const QString png = tmp.filePath(kind + QStringLiteral(".png"));
            const QString pdf = tmp.filePath(kind + QStringLiteral(".pdf"));
            const bool okPng = kind == QStringLiteral("histogram") ? w->saveHistogramTo(png) : w->saveHeatmapsTo(png);
            const bool okPdf = kind == QStringLiteral("histogram") ? w->saveHistogramTo(pdf) : w->saveHeatmapsTo(pdf);
            QVERIFY(okPng && okPdf);
            QImage img(png);
            QVERIFY2(!img.isNull() && img.width() > 200 && img.height() > 100, qPrintable(png));
            // Not a blank image: the plot draws something other than the background.
            const QRgb corner = img.pixel(0, 0);
            int different = 0;
            for (int y = 0; y < img.height(); y += 7)
                for (int x = 0; x < img.width(); x += 7)
                    different += img.pixel(x, y) != corner ? 1 : 0;
            QVERIFY(different > 50);
            QFile f(pdf);
            QVERIFY(f.open(QIODevice::ReadOnly));
            QVERIFY(f.read(5) == "%PDF-");
            QVERIFY(f.size() > 1000);
        }
        // An unwritable path is an error, not a crash.
        QVERIFY(!w->saveHistogramTo(QStringLiteral("/nonexistent-dir/x.png")));
    }

    void cancelAbandonsAnOpen()
    {
        const auto before = w->model();
        QSignalSpy loaded(w.get(), &MainWindow::modelLoaded);
        w->openFile(dataPath(QStringLiteral("safetensors/dtypes.safetensors")));
        QVERIFY(!w->isIdle());
        QVERIFY(w->cancelButton()->isVisibleTo(w.get()));
        QTest::mouseClick(w->cancelButton(), Qt::LeftButton);
        QVERIFY(w->isIdle());  // at once, whatever the reader is doing
        QVERIFY(!w->cancelButton()->isVisibleTo(w.get()));
        QTest::qWait(500);     // the reader's result, when it comes, is dropped
        QCOMPARE(loaded.count(), 0);
        QCOMPARE(w->model(), before);
    }

    void cancelStopsModelStatistics()
    {
        w->showModel(std::make_shared<const Model>(makeDemoModel(2, 768)), QStringLiteral("big demo"));
        // The whole-model statistics of 768-wide layers take a while on this machine.
        QTest::qWait(50);
        if (w->isIdle())
            QSKIP("statistics finished before they could be cancelled");
        QElapsedTimer t;
        t.start();
        w->cancelBackgroundWork();
        QVERIFY(waitIdle(*w));
        QVERIFY2(t.elapsed() < 5000, qPrintable(QString::number(t.elapsed())));
    }
};

QTEST_MAIN(TestWorkflow)
#include "tst_workflow.moc"
