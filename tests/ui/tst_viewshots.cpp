// A PNG of every main view (each tab, after its work has run, and the export dialog) on
// the demo model and on ../shared/models/gpt2_capp.safetensors, for people to look at:
// written to $QUANTLENS_SHOT_DIR, or to ./viewshots (build/tests/viewshots under ctest).
// The test checks each one is a picture, not a blank widget.
#include <QApplication>
#include <QDir>
#include <QPalette>
#include <QStyleFactory>
#include <QImage>
#include <QSet>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTest>

#include "exportdialog.h"
#include "histogramplot.h"
#include "io/demomodel.h"
#include "io/safetensors.h"
#include "mainwindow.h"
#include "runpanel.h"
#include "sensitivitypanel.h"
#include "darkpalette.h"
#include "testsupport.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kWaitMs = 120000;

bool waitIdle(MainWindow& w)
{
    QDeadlineTimer deadline(kWaitMs);
    while (!w.isIdle() && !deadline.hasExpired())
        QTest::qWait(20);
    return w.isIdle();
}

QString shotDir()
{
    QString d = qEnvironmentVariable("QUANTLENS_SHOT_DIR");
    if (d.isEmpty())
        d = QDir::current().filePath(QStringLiteral("viewshots"));
    QDir().mkpath(d);
    return d;
}

int distinctColours(const QImage& img)
{
    QSet<QRgb> colours;
    for (int y = 0; y < img.height(); y += 5)
        for (int x = 0; x < img.width(); x += 5)
            colours.insert(img.pixel(x, y));
    return int(colours.size());
}

}  // namespace

class TestViewShots : public QObject {
    Q_OBJECT
private:
    void shootAll(const std::shared_ptr<const Model>& model, const QString& label, const QString& prefix,
                  const QString& tensor, bool encoder, int heads = 0)
    {
        MainWindow w(nullptr, /*useSettings=*/false);
        w.setInteractive(false);
        w.resize(1400, 900);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.showModel(model, label);
        QVERIFY(waitIdle(w));
        QVERIFY(w.selectTensor(tensor));
        QVERIFY(waitIdle(w));

        // The Run and Sensitivity tabs show results only after their jobs.
        w.tabs()->setCurrentWidget(w.runPanel());
        QSignalSpy ran(w.runPanel(), &RunPanel::finished);
        w.runPanel()->run();
        QVERIFY(ran.wait(kWaitMs));
        if (encoder) {
            if (heads > 0)
                w.sensitivityPanel()->headsBox()->setValue(heads);
            QSignalSpy ranked(w.sensitivityPanel(), &SensitivityPanel::finished);
            w.sensitivityPanel()->useRandomInput(32);
            w.sensitivityPanel()->run();
            QVERIFY(ranked.wait(kWaitMs));
        }

        const QString dir = shotDir();
        for (int i = 0; i < w.tabs()->count(); ++i) {
            w.tabs()->setCurrentIndex(i);
            QTest::qWait(100);  // queued replots
            const QString name = w.tabs()->tabText(i).toLower().replace(QLatin1Char(' '), QLatin1Char('-'));
            const QString path = QDir(dir).filePath(prefix + QStringLiteral("-") + name + QStringLiteral(".png"));
            const QImage img = w.grab().toImage();
            QVERIFY(img.save(path));
            QVERIFY2(distinctColours(img) > 30, qPrintable(path));
        }
        ExportDialog* d = w.openExportDialog();
        QVERIFY(d);
        QTest::qWait(100);
        const QString path = QDir(dir).filePath(prefix + QStringLiteral("-export-dialog.png"));
        const QImage img = d->grab().toImage();
        QVERIFY(img.save(path));
        QVERIFY2(distinctColours(img) > 10, qPrintable(path));
        d->close();
        qInfo("view screenshots in %s", qPrintable(dir));
    }

private slots:
    void demoViews()
    {
        shootAll(std::make_shared<const Model>(makeDemoModel()), QStringLiteral("demo"), QStringLiteral("demo"),
                 QStringLiteral("distilbert.transformer.layer.0.ffn.lin1.weight"), true);
    }

    // The same window under a dark palette (as a dark desktop theme gives it): the plots
    // follow the palette instead of staying white.
    void darkPaletteViews()
    {
        const QPalette before = QApplication::palette();
        QStyle* fusion = QStyleFactory::create(QStringLiteral("Fusion"));
        QVERIFY(fusion);
        QApplication::setStyle(fusion);
        const QPalette dark = quantlens::test::darkPalette();
        QApplication::setPalette(dark);
        MainWindow w(nullptr, /*useSettings=*/false);
        w.setInteractive(false);
        w.resize(1400, 900);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.showModel(std::make_shared<const Model>(makeDemoModel()), QStringLiteral("demo"));
        QVERIFY(waitIdle(w));
        QVERIFY(w.selectTensor(QStringLiteral("distilbert.transformer.layer.0.ffn.lin1.weight")));
        QVERIFY(waitIdle(w));
        QTest::qWait(100);
        const QImage img = w.grab().toImage();
        const QString path = QDir(shotDir()).filePath(QStringLiteral("dark-tensor.png"));
        QVERIFY(img.save(path));
        // The histogram's background is the dark base colour, not a white box.
        const QPoint inPlot = w.histogram()->mapTo(&w, w.histogram()->rect().topLeft() + QPoint(4, 4));
        QVERIFY2(qGray(img.pixel(inPlot)) < 100, qPrintable(path));
        QApplication::setPalette(before);
    }

    void gpt2Views()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto m = readSafetensors(quantlens::test::sharedModel(QStringLiteral("gpt2_capp.safetensors")).toStdString());
        QVERIFY2(m, m ? "" : m.error().oneLine().c_str());
        shootAll(std::make_shared<const Model>(std::move(*m)),
                 quantlens::test::sharedModel(QStringLiteral("gpt2_capp.safetensors")), QStringLiteral("gpt2"),
                 QStringLiteral("transformer.h.0.mlp.c_fc.weight"), true, /*heads=*/4);
    }
};

QTEST_MAIN(TestViewShots)
#include "tst_viewshots.moc"
