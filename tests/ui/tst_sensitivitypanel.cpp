// The Sensitivity tab driven like a user, offscreen, on the demo DistilBERT encoder: the
// ranking and the chart match computeSensitivity called directly on the same input,
// clicking a bar names its layer, Cancel stops a long run and keeps the previous result,
// models that are not encoders disable Run with a reason, keeping a layer in float32
// moves the end-to-end figures the right way, and tuned ranges reach the analysis.
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QElapsedTimer>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QPlainTextEdit>
#include <QTest>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

#include "io/demomodel.h"
#include "layers.h"
#include "runner/encoder.h"
#include "runner/sensitivity.h"
#include "sensitivitypanel.h"
#include "tasks/modelrun.h"
#include "testsupport.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kWaitMs = 120000;  // the machine is shared; a run takes about a second

// The demo at DistilBERT width (768, 12 heads), built once: 12 linear layers.
std::shared_ptr<const Model> demo()
{
    static const auto m = std::make_shared<const Model>(makeDemoModel(2, 768));
    return m;
}

const LayerSensitivity* findLayer(const SensitivityReport& r, const std::string& name)
{
    for (const LayerSensitivity& l : r.layers)
        if (l.name == name)
            return &l;
    return nullptr;
}

}  // namespace

class TestSensitivityPanel : public QObject {
    Q_OBJECT
private:
    std::unique_ptr<SensitivityPanel> p;

    void runAndWait()
    {
        QSignalSpy done(p.get(), &SensitivityPanel::finished);
        QVERIFY(p->runButton()->isEnabled());
        QTest::mouseClick(p->runButton(), Qt::LeftButton);
        QVERIFY(p->isRunning());
        QVERIFY(!p->runButton()->isEnabled());
        QVERIFY(p->cancelButton()->isEnabled());
        QTRY_VERIFY_WITH_TIMEOUT(done.count() == 1, kWaitMs);
        QVERIFY(!p->isRunning());
        QVERIFY2(p->lastReport(), qPrintable(p->statusText()));
        QVERIFY2(p->statusText().startsWith(QStringLiteral("Done")), qPrintable(p->statusText()));
        QVERIFY(p->runButton()->isEnabled());
        QVERIFY(!p->cancelButton()->isEnabled());
    }

    // Waits until the kept-set comparison for the current kept set is shown.
    void waitKept()
    {
        QTRY_VERIFY_WITH_TIMEOUT(!p->isComparingKept() && p->keptResult(), kWaitMs);
        QVERIFY2(p->keptResult()->error.isEmpty(), qPrintable(p->keptResult()->error));
        QCOMPARE(p->keptResult()->kept, p->keptFloatLayers());
    }

    void setKeep(int row, bool on)
    {
        QTableWidgetItem* it = p->table()->item(row, SensitivityPanel::kKeepColumn);
        QVERIFY(it);
        QVERIFY(it->flags() & Qt::ItemIsUserCheckable);
        it->setCheckState(on ? Qt::Checked : Qt::Unchecked);
    }

private slots:
    void init()
    {
        p = std::make_unique<SensitivityPanel>();
        p->resize(1400, 900);
        p->show();
        QVERIFY(QTest::qWaitForWindowExposed(p.get()));
        QVERIFY(!p->runButton()->isEnabled());  // no model yet
        p->setModel(demo());
        QVERIFY2(p->canRun(), qPrintable(p->configText()));
        QVERIFY(p->configText().contains(QStringLiteral("distilbert")));
        QVERIFY(p->configText().contains(QStringLiteral("12 heads")));
        QCOMPARE(p->lengthBox()->value(), int(kDefaultEvalTokens));  // the default
        QCOMPARE(p->headsBox()->value(), 0);     // infer
    }
    void cleanup() { p.reset(); }

    void rankingMatchesCore_data()
    {
        QTest::addColumn<int>("view");
        QTest::addColumn<int>("rankBy");
        QTest::newRow("only this layer int8, by 1 - cosine") << 0 << 0;
        QTest::newRow("all but this layer int8, by SQNR") << 1 << 1;
    }
    void rankingMatchesCore()
    {
        QFETCH(int, view);
        QFETCH(int, rankBy);
        p->viewBox()->setCurrentIndex(view);
        p->rankByBox()->setCurrentIndex(rankBy);
        runAndWait();
        const SensitivityReport& got = *p->lastReport();

        auto runner = EncoderRunner::create(*demo());
        QVERIFY2(runner.ok(), runner.ok() ? "" : runner.error().oneLine().c_str());
        const EncoderInput in = randomEncoderInput(1, kDefaultEvalTokens, runner->config().vocab);
        SensitivityOptions o;
        o.view = view == 1 ? SensitivityView::AllButOne : SensitivityView::OneQuantized;
        o.rankBy = rankBy == 1 ? SensitivityMetric::Sqnr : SensitivityMetric::Cosine;
        auto want = computeSensitivity(*runner, in, o);
        QVERIFY2(want.ok(), want.ok() ? "" : want.error().oneLine().c_str());

        QCOMPARE(got.layers.size(), size_t(12));
        QCOMPARE(got.layers.size(), want->layers.size());
        QCOMPARE(got.tokens, kDefaultEvalTokens);
        QVERIFY(got.view == o.view);
        QVERIFY(std::abs(got.allQuantized.cosine - want->allQuantized.cosine) < 1e-9);
        for (size_t i = 0; i < got.layers.size(); ++i) {
            QCOMPARE(QString::fromStdString(got.layers[i].name), QString::fromStdString(want->layers[i].name));
            QVERIFY(std::abs(got.layers[i].cosine - want->layers[i].cosine) < 1e-9);
        }

        // One bar per layer, in ranking order, top first, each labelled with its layer.
        const QStringList bars = p->barLayers();
        QCOMPARE(int(bars.size()), 12);
        QCOMPARE(p->plot()->plottableCount(), 1);
        auto* b = qobject_cast<QCPBars*>(p->plot()->plottable(0));
        QVERIFY(b);
        QCOMPARE(b->data()->size(), 12);
        QVERIFY(p->plot()->yAxis->rangeReversed());  // key 0 (rank 1) drawn at the top
        auto ticker = qSharedPointerDynamicCast<QCPAxisTickerText>(p->plot()->yAxis->ticker());
        QVERIFY(ticker);
        double previous = INFINITY;
        for (int i = 0; i < 12; ++i) {
            const std::string& name = want->layers[size_t(i)].name;
            QCOMPARE(bars[i], QString::fromStdString(name + ".weight"));
            QCOMPARE((b->data()->constBegin() + i)->key, double(i));
            const QString label = ticker->ticks().value(double(i));
            QVERIFY2(label.size() >= 8 && QString::fromStdString(name).endsWith(label), qPrintable(label));
            QVERIFY(label.startsWith(QStringLiteral("layer.")));  // the shared "distilbert.transformer." goes
            // Both views here draw the most sensitive layer's bar longest.
            const double value = (b->data()->constBegin() + i)->value;
            QVERIFY2(value <= previous, qPrintable(QStringLiteral("bar %1: %2 after %3").arg(i).arg(value).arg(previous)));
            previous = value;
        }
        QVERIFY(p->plot()->xAxis->label().contains(rankBy == 1 ? QStringLiteral("SQNR (dB)") : QStringLiteral("cosine")));
        QVERIFY(p->summaryLabel()->text().contains(QString::number(got.allQuantized.cosine, 'f', 6)));

        // The table lists the same ranking.
        QCOMPARE(p->table()->rowCount(), 12);
        for (int i = 0; i < 12; ++i) {
            QCOMPARE(p->table()->item(i, 0)->text(), QString::number(i + 1));
            QCOMPARE(p->table()->item(i, 1)->text(), QString::fromStdString(want->layers[size_t(i)].name));
        }

        // Clicking a bar at its pixel position names its weight tensor.
        QTest::qWait(50);
        p->plot()->replot();
        for (int row : {0, 11}) {
            QSignalSpy activated(p.get(), &SensitivityPanel::layerActivated);
            const double value = (b->data()->constBegin() + row)->value;
            // The middle of the visible bar (the SQNR axis does not start at 0).
            const double mid = (std::max(p->plot()->xAxis->range().lower, 0.0) + value) / 2;
            QVERIFY(mid > p->plot()->xAxis->range().lower);
            const QPoint at(int(p->plot()->xAxis->coordToPixel(mid)), int(p->plot()->yAxis->coordToPixel(row)));
            QTest::mouseClick(p->plot(), Qt::LeftButton, {}, at);
            QCOMPARE(activated.count(), 1);
            QCOMPARE(activated.at(0).at(0).toString(), bars[row]);
            QCOMPARE(p->table()->currentRow(), row);
        }
        {
            // The tick label names the same layer.
            QSignalSpy activated(p.get(), &SensitivityPanel::layerActivated);
            const QPoint at(p->plot()->axisRect()->left() - 20, int(p->plot()->yAxis->coordToPixel(5)));
            QTest::mouseClick(p->plot(), Qt::LeftButton, {}, at);
            QCOMPARE(activated.count(), 1);
            QCOMPARE(activated.at(0).at(0).toString(), bars[5]);
        }
        QVERIFY(p->grab().save(QDir::temp().filePath(QStringLiteral("quantlens_sensitivitypanel_view%1.png").arg(view))));
    }

    void cancelStopsPromptly()
    {
        // A short run first: the cancelled one must leave its result in place.
        p->useRandomInput(8);
        runAndWait();
        const SensitivityReport* before = p->lastReport();
        QCOMPARE(before->tokens, int64_t(8));
        const std::string top = before->layers.front().name;

        p->useRandomInput(512);  // 15 forward passes of 512 tokens: seconds, not milliseconds
        QSignalSpy done(p.get(), &SensitivityPanel::finished);
        QTest::mouseClick(p->runButton(), Qt::LeftButton);
        QVERIFY(p->isRunning());
        QTRY_VERIFY_WITH_TIMEOUT(p->progressBar()->maximum() > 0 && p->progressBar()->value() >= 2, kWaitMs);
        QVERIFY(done.isEmpty());
        const int atPass = p->progressBar()->value(), passes = p->progressBar()->maximum();
        QElapsedTimer t;
        t.start();
        QTest::mouseClick(p->cancelButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(done.count() == 1, 15000);
        qDebug("run ended %lld ms after Cancel, pressed at pass %d of %d", (long long)t.elapsed(), atPass, passes);
        QCOMPARE(p->statusText(), QStringLiteral("cancelled"));
        QCOMPARE(p->lastReport(), before);
        QCOMPARE(p->lastReport()->tokens, int64_t(8));
        QCOMPARE(p->barLayers().front(), QString::fromStdString(top + ".weight"));
        QVERIFY(p->runButton()->isEnabled());
        QVERIFY(!p->cancelButton()->isEnabled());
        // And the panel still runs afterwards.
        p->useRandomInput(16);
        runAndWait();
        QCOMPARE(p->lastReport()->tokens, int64_t(16));
    }

    void modelChangeDuringRun()
    {
        p->useRandomInput(512);
        QSignalSpy done(p.get(), &SensitivityPanel::finished);
        QTest::mouseClick(p->runButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(p->progressBar()->maximum() > 0 && p->progressBar()->value() >= 1, kWaitMs);
        // The run belongs to the old model: it is stopped and its result dropped.
        p->setModel(std::make_shared<const Model>(makeDemoModel(1, 64)));
        QVERIFY(!p->runButton()->isEnabled());  // until the old job has ended
        QTRY_VERIFY_WITH_TIMEOUT(done.count() == 1, 15000);
        QVERIFY(!p->lastReport());
        QVERIFY(p->barLayers().isEmpty());
        QVERIFY(p->runButton()->isEnabled());
        p->useRandomInput(16);
        runAndWait();
        QCOMPARE(p->lastReport()->layers.size(), size_t(6));
    }

    void destroyWhileRunning()
    {
        p->useRandomInput(512);
        QTest::mouseClick(p->runButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(p->progressBar()->maximum() > 0 && p->progressBar()->value() >= 1, kWaitMs);
        QElapsedTimer t;
        t.start();
        p.reset();  // cancels and waits for the job: no crash, no long wait
        QVERIFY2(t.elapsed() < 15000, qPrintable(QString::number(t.elapsed())));
        QTest::qWait(50);  // progress calls still queued for the dead panel are dropped
    }

    void typedTokens()
    {
        // Two sequences of different length: padded to 5, 8 real tokens.
        p->setTokenText(QStringLiteral("101 7 8 9 102\n\n101 42 102\n"));
        QVERIFY(p->tokenInputButton()->isChecked());
        runAndWait();
        QCOMPARE(p->lastReport()->tokens, int64_t(8));
        p->setTokenText(QStringLiteral("101 x 102"));
        QTest::mouseClick(p->runButton(), Qt::LeftButton);
        QVERIFY(!p->isRunning());
        QVERIFY2(p->statusText().contains(QStringLiteral("not an integer")), qPrintable(p->statusText()));
        QCOMPARE(p->lastReport()->tokens, int64_t(8));
        // An id outside the 512-word vocabulary fails in the job, with the reason.
        p->setTokenText(QStringLiteral("101 100000 102"));
        QSignalSpy done(p.get(), &SensitivityPanel::finished);
        QTest::mouseClick(p->runButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(done.count() == 1, kWaitMs);
        QVERIFY2(p->statusText().contains(QStringLiteral("100000")), qPrintable(p->statusText()));
        QCOMPARE(p->lastReport()->tokens, int64_t(8));
    }

    void notAnEncoderDisablesRun_data()
    {
        QTest::addColumn<QString>("kind");
        QTest::addColumn<QString>("reason");
        QTest::newRow("no model") << QStringLiteral("none") << QStringLiteral("No model");
        QTest::newRow("one 2-D tensor") << QStringLiteral("matrix") << QStringLiteral("Not a supported transformer");
        QTest::newRow("burn_mnist.onnx (a CNN)") << QStringLiteral("burn_mnist.onnx") << QStringLiteral("Not a supported transformer");
    }
    void notAnEncoderDisablesRun()
    {
        QFETCH(QString, kind);
        QFETCH(QString, reason);
        std::shared_ptr<const Model> m;
        if (kind == QLatin1String("matrix")) {
            Model one;
            one.format = "demo";
            one.tensors.push_back(makeFloatTensor("fc.weight", {4, 8}, std::vector<float>(32, 0.5f)));
            m = std::make_shared<const Model>(std::move(one));
        } else if (kind != QLatin1String("none")) {
            QL_REQUIRE_SHARED_MODELS();
            auto opened = openModel(test::sharedModel(kind).toStdString());
            QVERIFY2(opened.ok(), opened.ok() ? "" : opened.error().oneLine().c_str());
            m = std::make_shared<const Model>(std::move(*opened));
        }
        p->setModel(m);
        QVERIFY(!p->canRun());
        QVERIFY(!p->runButton()->isEnabled());
        QVERIFY2(p->configText().startsWith(reason), qPrintable(p->configText()));
        QVERIFY(!p->configText().contains(QLatin1Char('\n')));
        p->run();  // ignored
        QVERIFY(!p->isRunning());
        // Back to an encoder: Run comes back.
        p->setModel(demo());
        QVERIFY(p->runButton()->isEnabled());
    }

    void headsWhenTheyCannotBeInferred()
    {
        // Hidden 48 is no multiple of 64: the heads must be given.
        p->setModel(std::make_shared<const Model>(makeDemoModel(1, 48)));
        QVERIFY(!p->runButton()->isEnabled());
        QVERIFY2(p->configText().contains(QStringLiteral("set Heads")), qPrintable(p->configText()));
        p->headsBox()->setValue(5);  // does not divide 48
        QVERIFY(!p->runButton()->isEnabled());
        QVERIFY2(p->configText().contains(QStringLiteral("do not divide")), qPrintable(p->configText()));
        p->headsBox()->setValue(4);
        QVERIFY2(p->runButton()->isEnabled(), qPrintable(p->configText()));
        QVERIFY(p->configText().contains(QStringLiteral("4 heads (set here)")));
        runAndWait();
        QCOMPARE(p->lastReport()->layers.size(), size_t(6));
    }

    // The trained GPT-2 from ../shared/models: recognised as a causal GPT-2, ranked by its
    // Conv1D layer names (the tree's names), and a click on a bar names a real tensor.
    void gpt2Capp()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto opened = openModel(test::sharedModel(QStringLiteral("gpt2_capp.safetensors")).toStdString());
        QVERIFY(opened.ok());
        auto m = std::make_shared<const Model>(std::move(*opened));
        p->setModel(m);
        QVERIFY2(p->configText().contains(QStringLiteral("GPT-2 (causal)")), qPrintable(p->configText()));
        QVERIFY2(p->configText().contains(QStringLiteral("1 head (hidden / 64, a guess: set Heads")), qPrintable(p->configText()));
        p->headsBox()->setValue(4);  // its config.json says n_head 4; hidden/64 would be 1
        QVERIFY(p->configText().contains(QStringLiteral("4 heads (set here)")));
        // The example ids in the empty token box are ones this 53-word vocabulary has.
        const auto* tokens = p->findChild<QPlainTextEdit*>(QStringLiteral("sensitivityTokens"));
        QVERIFY(tokens);
        auto example = parseTokenText(tokens->placeholderText().toStdString());
        QVERIFY(example.ok());
        for (const auto& seq : *example)
            for (int64_t id : seq)
                QVERIFY(id < 53);
        p->useRandomInput(24);
        runAndWait();
        QCOMPARE(p->lastReport()->layers.size(), size_t(16));
        for (const auto& l : p->lastReport()->layers) {
            QVERIFY2(m->find(l.name + ".weight"), l.name.c_str());
            QVERIFY(l.cosine < 1.0);
        }
    }

    // The trained Llama from ../shared/models (GGUF): the head counts come from its metadata,
    // and the ranking uses the file's own tensor names.
    void storiesGguf()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto opened = openModel(test::sharedModel(QStringLiteral("stories260K.gguf")).toStdString());
        QVERIFY(opened.ok());
        auto m = std::make_shared<const Model>(std::move(*opened));
        p->setModel(m);
        QVERIFY2(p->configText().contains(QStringLiteral("Llama family (causal, grouped-query: 4 key/value heads)")),
                 qPrintable(p->configText()));
        QVERIFY2(p->configText().contains(QStringLiteral("8 heads (from the GGUF metadata)")), qPrintable(p->configText()));
        p->useRandomInput(24);
        runAndWait();
        QCOMPARE(p->lastReport()->layers.size(), size_t(35));  // 5 blocks x q, k, v, o, gate, up, down
        for (const auto& l : p->lastReport()->layers) {
            QVERIFY2(m->find(l.name + ".weight"), l.name.c_str());
            QVERIFY(l.cosine < 1.0);
        }
        QVERIFY(p->grab().save(QDir::temp().filePath(QStringLiteral("quantlens_sensitivitypanel_stories.png"))));
    }

    void keepFloat32()
    {
        runAndWait();
        const SensitivityReport& r = *p->lastReport();
        waitKept();
        // Nothing kept: the same forward pass as the report's all-int8 figure.
        const KeptComparison none = *p->keptResult();
        QVERIFY(none.kept.isEmpty());
        QVERIFY(std::abs(none.cmp.cosine - r.allQuantized.cosine) < 1e-12);
        int64_t values = 0;
        for (const LinearLayer& l : findLinearLayers(*demo()))
            values += l.weight->numel();
        QCOMPARE(none.bytesBefore, 4 * values);
        QCOMPARE(none.bytesAfter, values + 4 * 12);  // int8 values + one float32 scale per tensor
        QVERIFY(p->keptLabel()->text().contains(QStringLiteral("except 0 kept layers")));

        QSignalSpy changed(p.get(), &SensitivityPanel::keptFloatChanged);
        setKeep(0, true);
        QCOMPARE(changed.count(), 1);
        const QString top = p->barLayers().front();
        QCOMPARE(p->keptFloatLayers(), QStringList{top});
        auto ticker = qSharedPointerDynamicCast<QCPAxisTickerText>(p->plot()->yAxis->ticker());
        QVERIFY(ticker && ticker->ticks().value(0).endsWith(QStringLiteral("[float32]")));
        QVERIFY(!ticker->ticks().value(1).contains(QStringLiteral("float32")));
        waitKept();
        const KeptComparison one = *p->keptResult();
        qDebug("all int8: cosine %.6f, %lld bytes; keeping %s: cosine %.6f, %lld bytes", none.cmp.cosine,
               (long long)none.bytesAfter, qPrintable(top), one.cmp.cosine, (long long)one.bytesAfter);
        QVERIFY(one.cmp.cosine >= none.cmp.cosine);
        QVERIFY(one.cmp.sqnrDb > none.cmp.sqnrDb);
        QCOMPARE(one.bytesBefore, none.bytesBefore);
        const Tensor* w = demo()->find(top.toStdString());
        QVERIFY(w);
        QCOMPARE(one.bytesAfter, none.bytesAfter + 3 * w->numel() - 4);  // float32 instead of int8 + scale
        QVERIFY(double(one.bytesBefore) / double(one.bytesAfter) < double(none.bytesBefore) / double(none.bytesAfter));
        QVERIFY(p->keptLabel()->text().contains(QStringLiteral("except 1 kept layer")));

        // Rapid changes: only the last set's result is shown; the signal reports each change.
        setKeep(1, true);
        setKeep(2, true);
        setKeep(0, false);
        QCOMPARE(changed.count(), 4);
        waitKept();
        QCOMPARE(int(p->keptResult()->kept.size()), 2);
        const QStringList bars = p->barLayers();
        QVERIFY(p->keptFloatLayers().contains(bars[1]) && p->keptFloatLayers().contains(bars[2]));
        QVERIFY(p->keptLabel()->text().contains(QStringLiteral("except 2 kept layers")));

        // A new run keeps the kept set and recomputes it against its own reference.
        p->setKeptFloatLayers({top});
        waitKept();
        p->useRandomInput(24);
        runAndWait();
        QCOMPARE(p->keptFloatLayers(), QStringList{top});
        waitKept();
        QVERIFY(p->keptResult()->cmp.cosine >= p->lastReport()->allQuantized.cosine);
        QVERIFY(p->grab().save(QDir::temp().filePath(QStringLiteral("quantlens_sensitivitypanel.png"))));
    }

    // #17: the panel evaluates the window's plan, each layer exactly as the plan quantizes it;
    // a result made under an older plan is marked stale, never shown as current.
    void planDrivesTheRun()
    {
        runAndWait();
        QVERIFY(!p->isStale());
        const std::string layer = p->lastReport()->layers.back().name;  // the least sensitive
        const double plain = 1 - findLayer(*p->lastReport(), layer)->cosine;

        // As the inspector records a drag: the seed scheme with a manual range far inside the
        // weights (std ~0.04). No int8 kernel runs seed: the layer is simulated.
        QuantSpec spec;
        spec.scheme = Scheme::Seed;
        spec.calib = CalibMethod::Manual;
        spec.manualLo = -0.01f;
        spec.manualHi = 0.01f;
        QuantPlan plan = QuantPlan::quantizeDynamicPreset();
        plan.overrides[layer + ".weight"] = spec;
        p->setPlan(plan);
        QVERIFY(p->isStale());
        QVERIFY2(p->summaryLabel()->text().contains(QStringLiteral("Stale")), qPrintable(p->summaryLabel()->text()));
        runAndWait();
        QVERIFY(!p->isStale());
        const SensitivityReport& tuned = *p->lastReport();
        const double clipped = 1 - findLayer(tuned, layer)->cosine;
        qDebug("1 - cosine of %s: %.3e default, %.3e seed clipped to +-0.01 (rank %lld)", layer.c_str(), plain, clipped,
               (long long)findLayer(tuned, layer)->rank);
        QVERIFY(clipped > 10 * plain);
        QVERIFY(findLayer(tuned, layer)->rank < 12);
        QVERIFY2(p->summaryLabel()->text().contains(QStringLiteral("tuned on 1 layer")), qPrintable(p->summaryLabel()->text()));
        QVERIFY2(p->summaryLabel()->text().contains(QStringLiteral("1 layer simulated")), qPrintable(p->summaryLabel()->text()));
        QCOMPARE(tuned.plan.simulatedLayers, int64_t(1));
        // The kept-set comparison runs the same specs as the report: with nothing kept it is the plan.
        waitKept();
        QVERIFY(std::abs(p->keptResult()->cmp.cosine - tuned.plan.hidden.cosine) < 1e-12);

        p->setPlan(QuantPlan::quantizeDynamicPreset());
        QVERIFY(p->isStale());
        runAndWait();
        QCOMPARE(1 - findLayer(*p->lastReport(), layer)->cosine, plain);
        // Other settings make a result stale too.
        p->useRandomInput(p->lengthBox()->value() + 1);
        QVERIFY(p->isStale());
    }

    void modelChangeDropsResult()
    {
        runAndWait();
        setKeep(0, true);
        waitKept();
        QSignalSpy changed(p.get(), &SensitivityPanel::keptFloatChanged);
        p->setModel(std::make_shared<const Model>(makeDemoModel(1, 64)));
        QVERIFY(!p->lastReport());
        QCOMPARE(p->table()->rowCount(), 0);
        QVERIFY(p->barLayers().isEmpty());
        QVERIFY(p->keptFloatLayers().isEmpty());
        QCOMPARE(changed.count(), 1);
        runAndWait();
        QCOMPARE(p->lastReport()->layers.size(), size_t(6));
    }
};

QTEST_MAIN(TestSensitivityPanel)
#include "tst_sensitivitypanel.moc"
