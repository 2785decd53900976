// The Run tab driven like a user, offscreen: select a linear layer of the demo model, press
// Run, wait for the background job and check the figures; a tensor outside every linear
// layer disables Run; a .npy input of the wrong shape is refused.
#include <QComboBox>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTest>

#include <qcustomplot.h>

#include <cmath>

#include "io/demomodel.h"
#include "io/npywriter.h"
#include "kernels/gemm.h"
#include "layers.h"
#include "mainwindow.h"
#include "windowtestsupport.h"
#include "runpanel.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kWaitMs = 60000;  // the machine is shared; the job itself takes well under a second
const char* kQLin = "distilbert.transformer.layer.0.attention.q_lin.weight";

bool waitIdle(MainWindow& w) { return test::waitIdle(w, kWaitMs); }

double leadingNumber(const QString& s, bool* ok)
{
    return s.section(QLatin1Char(' '), 0, 0).remove(QChar(0xD7)).toDouble(ok);
}

}  // namespace

class TestRunPanel : public QObject {
    Q_OBJECT
private:
    std::unique_ptr<MainWindow> w;

    RunPanel* panel() const { return w->runPanel(); }

    // Presses Run and waits for the result.
    void runAndWait()
    {
        QSignalSpy done(panel(), &RunPanel::finished);
        QVERIFY(panel()->runButton()->isEnabled());
        QTest::mouseClick(panel()->runButton(), Qt::LeftButton);
        QVERIFY(panel()->isRunning());
        QVERIFY(!panel()->runButton()->isEnabled());
        QTRY_VERIFY_WITH_TIMEOUT(done.count() == 1, kWaitMs);
        QVERIFY(panel()->lastResult());
        QVERIFY2(panel()->lastResult()->error.isEmpty(), qPrintable(panel()->lastResult()->error));
    }

    // The output SQNR of a run with the box's first choice, then with its second.
    std::pair<double, double> sqnrOfBothChoices(QComboBox* box)
    {
        double sqnr[2] = {0, 0};
        for (int i = 0; i < 2; ++i) {
            box->setCurrentIndex(i);
            runAndWait();
            sqnr[i] = panel()->lastResult() ? panel()->lastResult()->err.sqnrDb : 0.0;
        }
        return {sqnr[0], sqnr[1]};
    }

private slots:
    void init()
    {
        w = test::openDemoWindow(/*interactive=*/false, kWaitMs);
        QVERIFY(w);
        QVERIFY(w->selectTensor(QString::fromLatin1(kQLin)));
        const int tab = w->tabs()->indexOf(panel());
        QVERIFY(tab >= 0);
        QCOMPARE(w->tabs()->tabText(tab), QStringLiteral("Run"));
        w->tabs()->setCurrentIndex(tab);
    }
    void cleanup() { w.reset(); }

    void cancelStopsALongRun()
    {
        // 768 -> 3072 at 16384 tokens: one float32 call alone takes tens of milliseconds,
        // the whole timed run several seconds.
        w->showModel(std::make_shared<const Model>(makeDemoModel(1, 768)), QStringLiteral("big demo"));
        QVERIFY(waitIdle(*w));
        QVERIFY(w->selectTensor(QStringLiteral("distilbert.transformer.layer.0.ffn.lin1.weight")));
        QVERIFY(waitIdle(*w));
        panel()->tokensBox()->setValue(16384);
        QSignalSpy done(panel(), &RunPanel::finished);
        panel()->run();
        QVERIFY(panel()->isRunning());
        QVERIFY(panel()->cancelButton()->isEnabled());
        QElapsedTimer t;
        t.start();
        QTest::mouseClick(panel()->cancelButton(), Qt::LeftButton);
        QVERIFY(done.wait(kWaitMs));
        QVERIFY2(t.elapsed() < 10000, qPrintable(QString::number(t.elapsed())));
        QVERIFY(!panel()->isRunning());
        QVERIFY(!panel()->cancelButton()->isEnabled());
        QVERIFY(panel()->runButton()->isEnabled());
        QCOMPARE(panel()->label(QStringLiteral("status"))->text(), QStringLiteral("cancelled"));
        QVERIFY(!panel()->lastResult());  // nothing half-measured is shown
    }

    void linearLayerRuns_data()
    {
        QTest::addColumn<int>("activationMode");
        QTest::addColumn<int>("tokens");
        QTest::newRow("per-tensor activations, 128 tokens") << 0 << 128;
        QTest::newRow("per-row activations, 16 tokens") << 1 << 16;
    }
    void linearLayerRuns()
    {
        QFETCH(int, activationMode);
        QFETCH(int, tokens);
        QVERIFY(panel()->hasLayer());
        QVERIFY(panel()->label(QStringLiteral("layer"))->text().contains(QStringLiteral("q_lin")));
        QCOMPARE(panel()->tokensBox()->value(), 128);  // the default
        panel()->tokensBox()->setValue(tokens);
        panel()->activationBox()->setCurrentIndex(activationMode);
        // Until the first result the plot says what will appear in it.
        QCOMPARE(panel()->plot()->itemCount(), 1);
        QVERIFY(panel()->plot()->item(0)->visible());
        runAndWait();
        QVERIFY(!panel()->plot()->item(0)->visible());
        const RunResult& r = *panel()->lastResult();
        QCOMPARE(r.tokens, int64_t(tokens));
        QCOMPARE(r.in, int64_t(64));
        QCOMPARE(r.out, int64_t(64));

        bool ok = false;
        const double sqnr = leadingNumber(panel()->label(QStringLiteral("sqnr"))->text(), &ok);
        QVERIFY2(ok && std::isfinite(sqnr), qPrintable(panel()->label(QStringLiteral("sqnr"))->text()));
        QVERIFY2(sqnr > 20.0, qPrintable(panel()->label(QStringLiteral("sqnr"))->text()));
        QVERIFY(std::abs(sqnr - r.err.sqnrDb) < 0.01);
        const double speedup = leadingNumber(panel()->label(QStringLiteral("speedup"))->text(), &ok);
        QVERIFY2(ok && speedup > 0, qPrintable(panel()->label(QStringLiteral("speedup"))->text()));
        QVERIFY(r.fp32Seconds > 0 && r.int8Seconds > 0);
        QCOMPARE(panel()->label(QStringLiteral("isa"))->text(), QString::fromLatin1(kernels::activeIsa()));
        QVERIFY(!panel()->label(QStringLiteral("isa"))->text().isEmpty());
        const double maxAbs = panel()->label(QStringLiteral("maxabs"))->text().toDouble(&ok);
        QVERIFY(ok && maxAbs > 0 && std::abs(maxAbs - r.err.maxAbsError) <= 1e-4 * r.err.maxAbsError);
        // Every output element is in the histogram, none outside its symmetric range.
        QCOMPARE(r.hist.total(), int64_t(tokens) * 64);
        QCOMPARE(r.hist.below + r.hist.above, int64_t(0));
        QCOMPARE(panel()->plot()->plottableCount(), 1);
        QVERIFY(!panel()->plot()->xAxis->label().isEmpty());
        QVERIFY(!panel()->plot()->yAxis->label().isEmpty());
        QVERIFY(panel()->runButton()->isEnabled());
        if (activationMode == 0)
            QVERIFY(panel()->grab().save(QStringLiteral("/tmp/runpanel.png")));
    }

    void perRowIsMoreAccurate()
    {
        const auto [perTensor, perRow] = sqnrOfBothChoices(panel()->activationBox());
        QVERIFY2(perRow >= perTensor - 0.5, qPrintable(QStringLiteral("%1 vs %2").arg(perRow).arg(perTensor)));
    }

    void perChannelWeightsAreUsed()
    {
        const auto [perTensor, perChannel] = sqnrOfBothChoices(panel()->weightsBox());
        qInfo("output SQNR: per-tensor weights %.3f dB, per-channel %.3f dB", perTensor, perChannel);
        // Same input, same activations: only the weight scales changed, and one per row can
        // only fit each row's range better.
        QVERIFY2(perChannel != perTensor && perChannel >= perTensor - 0.1,
                 qPrintable(QStringLiteral("%1 vs %2").arg(perChannel).arg(perTensor)));
    }

    void nonLinearTensorDisablesRun()
    {
        const Model& m = *w->model();
        const std::vector<LinearLayer> layers = findLinearLayers(m);
        int other = -1;
        for (size_t i = 0; i < m.tensors.size() && other < 0; ++i) {
            bool linear = false;
            for (const LinearLayer& l : layers)
                linear = linear || l.weight == &m.tensors[i] || l.bias == &m.tensors[i];
            if (!linear)
                other = int(i);
        }
        QVERIFY2(other >= 0, "the demo model has no tensor outside a linear layer");
        QVERIFY(w->selectTensor(other));
        QVERIFY(!panel()->hasLayer());
        QVERIFY(!panel()->runButton()->isEnabled());
        QVERIFY(panel()->label(QStringLiteral("layer"))->text().contains(QStringLiteral("not part of a linear layer")));
        QVERIFY(w->selectTensor(QString::fromLatin1(kQLin)));
        QVERIFY(panel()->runButton()->isEnabled());
    }

    void npyInput()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const int64_t rows = 7;
        std::vector<float> x(size_t(rows * 64));
        for (size_t i = 0; i < x.size(); ++i)
            x[i] = std::sin(0.37f * float(i));
        const QString good = dir.filePath(QStringLiteral("x.npy"));
        QVERIFY(writeNpyFile(good.toStdString(), DType::F32, {rows, 64}, std::as_bytes(std::span<const float>(x)), {}));
        const QString wrong = dir.filePath(QStringLiteral("wrong.npy"));
        QVERIFY(writeNpyFile(wrong.toStdString(), DType::F32, {rows * 2, 32}, std::as_bytes(std::span<const float>(x)), {}));

        QVERIFY(!panel()->loadInput(wrong));
        QVERIFY(panel()->label(QStringLiteral("status"))->text().contains(QStringLiteral("expected [M, 64]")));
        QVERIFY(panel()->loadInput(good));
        QCOMPARE(panel()->tokensBox()->value(), int(rows));
        QVERIFY(!panel()->tokensBox()->isEnabled());
        runAndWait();
        QCOMPARE(panel()->lastResult()->tokens, rows);
        QVERIFY(panel()->lastResult()->err.sqnrDb > 20.0);
    }
};

QTEST_MAIN(TestRunPanel)
#include "tst_runpanel.moc"
