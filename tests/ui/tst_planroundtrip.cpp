// Issue #17's end-to-end check: a range dragged in the window reaches the Sensitivity tab's
// plan figure, the saved session replays headless with `quantlens-cli sensitivity --plan`
// to exactly the same figure, a plan that keeps every layer float gives cosine 1, and
// changing one layer's range changes the figure.
#include <QJsonDocument>
#include <QJsonObject>
#include <QSignalSpy>
#include <QComboBox>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTest>

#include <cmath>

#include "clirunner.h"
#include "activationspanel.h"
#include "histogramplot.h"
#include "layers.h"
#include "mainwindow.h"
#include "plan/session.h"
#include "sensitivitypanel.h"
#include "testsupport.h"
#include "windowtestsupport.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kWaitMs = 60000;
const char* kLayer = "transformer.h.0.mlp.c_fc.weight";

// Two sequences of gpt2_tiny token ids (vocabulary 50) and its head count.
void setGpt2TinyInput(ActivationsPanel& ap)
{
    ap.headsBox()->setValue(2);
    ap.setInput(ActivationsPanel::TokenIds, QStringLiteral("1 5 9 13 17 21 25 29 33 37 41 45\n2 6 10 14 18 22 26 30"));
}

// `sensitivity --plan` on the saved plan; `input` as the window had it (default: the
// model's own ids with 4 heads). Empty object, with the reason printed, on failure.
QJsonObject cliPlanFigure(const QString& model, const QString& plan,
                          const QStringList& input = {QStringLiteral("--heads"), QStringLiteral("4")})
{
    const auto r = test::runCli(QStringList{QStringLiteral("sensitivity"), model, QStringLiteral("--plan"), plan}
                                + input + QStringList{QStringLiteral("--json")});
    if (r.code != 0)
        qWarning("quantlens-cli: %s", r.err.constData());
    return QJsonDocument::fromJson(r.out).object().value(QStringLiteral("plan")).toObject();
}

// gpt2_tiny's Sensitivity figure on 24 random ids with 2 heads, in the window (`gui`) and
// replayed headless from the plan the window saves (returned); the two must agree.
const QStringList kRandom24 = {QStringLiteral("--heads"), QStringLiteral("2"), QStringLiteral("--random"),
                               QStringLiteral("24")};

void guiAndCliFigure(MainWindow& w, const QString& model, PlanFigure& gui, QJsonObject& cli)
{
    SensitivityPanel* sp = w.sensitivityPanel();
    sp->headsBox()->setValue(2);
    sp->useRandomInput(24);
    QSignalSpy finished(sp, &SensitivityPanel::finished);
    sp->run();
    QVERIFY(finished.wait(kWaitMs));
    QVERIFY2(sp->lastReport(), qPrintable(sp->statusText()));
    gui = sp->lastReport()->plan;
    QTemporaryDir dir;
    const QString file = dir.filePath(QStringLiteral("plan.json"));
    QVERIFY2(w.saveSessionTo(file), qPrintable(w.lastError()));
    cli = cliPlanFigure(model, file, kRandom24);
    QVERIFY(!cli.isEmpty());
}

}  // namespace

class TestPlanRoundTrip : public QObject {
    Q_OBJECT
private slots:
    void dragRunSaveReplay()
    {
        QL_REQUIRE_SHARED_MODELS();
        const QString model = test::sharedModel(QStringLiteral("gpt2_capp.safetensors"));
        auto window = test::openFileWindow(model, kWaitMs);
        QVERIFY(window);
        MainWindow& w = *window;
        QVERIFY(w.selectTensor(QString::fromLatin1(kLayer)));
        QVERIFY(test::waitIdle(w, kWaitMs));

        // Drag the upper clamp line well inside the weights: the layer gets its own range.
        HistogramPlot* h = w.histogram();
        h->replot();
        const int x0 = h->linePixel(1), y = h->axisRect()->center().y();
        QTest::mousePress(h, Qt::LeftButton, {}, QPoint(x0, y));
        QVERIFY(h->isDragging());
        for (int step = 1; step <= 4; ++step)
            QTest::mouseMove(h, QPoint(x0 - 30 * step, y));
        QTest::mouseRelease(h, Qt::LeftButton, {}, QPoint(x0 - 120, y));
        QVERIFY(test::waitIdle(w, kWaitMs));
        QVERIFY(w.session().isTuned(kLayer));
        const QuantSpec tuned = w.session().overrides.at(kLayer);
        QCOMPARE(int(tuned.calib), int(CalibMethod::Manual));

        // The Sensitivity tab evaluates that plan.
        SensitivityPanel* sp = w.sensitivityPanel();
        sp->headsBox()->setValue(4);
        QVERIFY(sp->canRun());
        QSignalSpy finished(sp, &SensitivityPanel::finished);
        sp->run();
        QVERIFY(finished.wait(kWaitMs));
        QVERIFY(sp->lastReport());
        QVERIFY(!sp->isStale());
        const PlanFigure gui = sp->lastReport()->plan;
        QVERIFY(gui.next.valid);  // GPT-2 has its tied output head
        QVERIFY(gui.hidden.cosine < 1.0);

        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString file = dir.filePath(QStringLiteral("plan.json"));
        QVERIFY2(w.saveSessionTo(file), qPrintable(w.lastError()));

        // Headless replay: the same figure, bit for bit (JSON doubles round-trip exactly).
        const QJsonObject cli = cliPlanFigure(model, file);
        QCOMPARE(cli.value(QStringLiteral("cosine")).toDouble(), gui.hidden.cosine);
        QCOMPARE(cli.value(QStringLiteral("sqnr_db")).toDouble(), gui.hidden.sqnrDb);
        QCOMPARE(cli.value(QStringLiteral("kld_mean")).toDouble(), gui.next.meanKld);
        QCOMPARE(cli.value(QStringLiteral("top1_agreement")).toDouble(), gui.next.top1Agreement);

        // Every layer kept in float32: the plan is the float model.
        auto s = loadSession(file.toStdString());
        QVERIFY(s.ok());
        Session allFloat = *s;
        for (const Tensor& t : w.model()->tensors)
            if (t.rank() == 2)
                allFloat.keepFloat.insert(t.name);
        const QString floatFile = dir.filePath(QStringLiteral("float.json"));
        QVERIFY(saveSession(floatFile.toStdString(), allFloat).ok());
        const QJsonObject f = cliPlanFigure(model, floatFile);
        QCOMPARE(f.value(QStringLiteral("cosine")).toDouble(), 1.0);
        QVERIFY(f.value(QStringLiteral("sqnr_db")).isNull());  // infinite: identical
        QCOMPARE(f.value(QStringLiteral("quantized_layers")).toInt(), 0);

        // Another range on that one layer: another figure.
        Session other = *s;
        other.overrides[kLayer].manualHi *= 0.5f;
        other.overrides[kLayer].manualLo *= 0.5f;
        const QString otherFile = dir.filePath(QStringLiteral("other.json"));
        QVERIFY(saveSession(otherFile.toStdString(), other).ok());
        const QJsonObject o = cliPlanFigure(model, otherFile);
        QVERIFY(o.contains(QStringLiteral("cosine")));
        QVERIFY(o.value(QStringLiteral("cosine")).toDouble() != gui.hidden.cosine);

        // And the window marks its figure stale when the plan moves on.
        QVERIFY(w.undoStack() != nullptr);
        w.undoStack()->undo();  // the drag
        QVERIFY(test::waitIdle(w, kWaitMs));
        QVERIFY(sp->isStale());
    }

    // Issue #19 in the plan: GPTQ chosen in the Activations tab is what the Sensitivity tab
    // evaluates, and the saved plan replays headless to the same figure.
    void gptqFromActivationsTab()
    {
        const QString model = test::dataPath(QStringLiteral("encoder/gpt2_tiny.safetensors"));
        auto window = test::openFileWindow(model, kWaitMs);
        QVERIFY(window);
        MainWindow& w = *window;
        Session plan = w.session();
        plan.defaultSpec.bits = 4;
        QVERIFY(parseGranularity("group:16", plan.defaultSpec).ok());
        plan.activations.mode = ActivationMode::None;
        w.restoreSession(plan);
        QVERIFY(w.selectTensor(QStringLiteral("transformer.h.1.mlp.c_proj.weight")));
        QVERIFY(test::waitIdle(w, kWaitMs));

        ActivationsPanel* ap = w.activationsPanel();
        setGpt2TinyInput(*ap);
        QSignalSpy recorded(ap, &ActivationsPanel::finished);
        ap->run();
        QVERIFY(recorded.wait(kWaitMs));
        QVERIFY(ap->result() && ap->result()->gptq);
        QVERIFY(ap->result()->gptqOutputSqnrDb > ap->result()->rtnOutputSqnrDb);
        QVERIFY(!ap->applyAllButton()->isEnabled() || ap->methodBox()->currentIndex() == 0);
        ap->methodBox()->setCurrentIndex(1);  // GPTQ
        QVERIFY(ap->applyAllButton()->isEnabled());
        ap->applyAllButton()->click();
        QCOMPARE(w.session().defaultMethod.method, WeightMethod::Gptq);
        QCOMPARE(w.session().calibration.tokens.size(), size_t(2));
        QVERIFY(ap->planLabel()->text().contains(QStringLiteral("gptq")));

        PlanFigure gui;
        QJsonObject cli;
        guiAndCliFigure(w, model, gui, cli);
        if (QTest::currentTestFailed())
            return;
        SensitivityPanel* sp = w.sensitivityPanel();
        QVERIFY2(sp->summaryLabel()->text().contains(QStringLiteral("GPTQ on 8 layers")), qPrintable(sp->summaryLabel()->text()));
        QCOMPARE(cli.value(QStringLiteral("cosine")).toDouble(), gui.hidden.cosine);
        QCOMPARE(cli.value(QStringLiteral("kld_mean")).toDouble(), gui.next.meanKld);

        // Round to nearest under the same plan; the GPTQ figure turns stale.
        w.undoStack()->undo();
        QCOMPARE(w.session().defaultMethod.method, WeightMethod::Rtn);
        QVERIFY(sp->isStale());
    }

    // Static activations from the Activations tab: a dragged range lands in the plan for that
    // layer, "Calibrate every layer" fills the rest and switches the plan to static, and the
    // Sensitivity tab's figure replays headless bit for bit.
    void staticRangesFromActivationsTab()
    {
        const QString model = test::dataPath(QStringLiteral("encoder/gpt2_tiny.safetensors"));
        auto window = test::openFileWindow(model, kWaitMs);
        QVERIFY(window);
        MainWindow& w = *window;
        const std::string layer = "transformer.h.0.mlp.c_proj.weight";
        QVERIFY(w.selectTensor(QString::fromStdString(layer)));
        QVERIFY(test::waitIdle(w, kWaitMs));
        ActivationsPanel* ap = w.activationsPanel();
        setGpt2TinyInput(*ap);
        w.tabs()->setCurrentWidget(ap);
        QSignalSpy finished(ap, &ActivationsPanel::finished);
        ap->run();
        QVERIFY(finished.wait(kWaitMs));
        QVERIFY(ap->calibrateAllButton()->isEnabled());

        ap->calibrateAll();
        QVERIFY(finished.wait(kWaitMs));
        QCOMPARE(w.session().activations.mode, ActivationMode::Static);
        QCOMPARE(w.session().activationRanges.size(), size_t(8));
        const ActivationRange minmax = w.session().activationRanges.at(layer);
        QCOMPARE(double(minmax.hi), ap->result()->inputStats.max);

        // Then drag the upper line of this layer's range inwards: its own range in the plan.
        HistogramPlot* h = ap->rangePlot();
        h->replot();
        const int x0 = h->linePixel(1), y = h->axisRect()->center().y();
        QTest::mousePress(h, Qt::LeftButton, {}, QPoint(x0, y));
        QVERIFY(h->isDragging());
        QTest::mouseMove(h, QPoint(x0 - 40, y));
        QTest::mouseRelease(h, Qt::LeftButton, {}, QPoint(x0 - 40, y));
        const ActivationRange dragged = w.session().activationRanges.at(layer);
        QVERIFY(dragged.hi < minmax.hi);
        QCOMPARE(w.session().activationRanges.size(), size_t(8));
        QVERIFY(ap->planLabel()->text().contains(QStringLiteral("static range")));

        PlanFigure gui;
        QJsonObject cli;
        guiAndCliFigure(w, model, gui, cli);
        if (QTest::currentTestFailed())
            return;
        QCOMPARE(cli.value(QStringLiteral("activations")).toString(), QStringLiteral("static"));
        QCOMPARE(cli.value(QStringLiteral("cosine")).toDouble(), gui.hidden.cosine);
    }
};

QTEST_MAIN(TestPlanRoundTrip)
#include "tst_planroundtrip.moc"
