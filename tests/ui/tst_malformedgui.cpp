// Issue #7: the GUI survives every file of the malformed corpus. Each one is opened as a
// user would (File > Open path): it is refused with an error dialog naming the file, the
// open model stays, and the window keeps working afterwards.
#include <QDeadlineTimer>
#include <QDirIterator>
#include <QMessageBox>
#include <QSignalSpy>
#include <QTest>

#include "io/demomodel.h"
#include "mainwindow.h"
#include "testsupport.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kWaitMs = 20000;

bool waitIdle(MainWindow& w)
{
    QSignalSpy idle(&w, &MainWindow::becameIdle);
    QDeadlineTimer deadline(kWaitMs);
    while (!w.isIdle() && !deadline.hasExpired())
        idle.wait(200);
    return w.isIdle();
}

}  // namespace

class TestMalformedGui : public QObject {
    Q_OBJECT
private slots:
    void everyMalformedFileIsRefusedAndTheWindowSurvives()
    {
        // Model files only: the corpus folders also hold expected.json/README notes, and
        // libhdf5_bugs/ holds inputs that crash libhdf5 itself (see its README).
        QStringList files;
        QDirIterator it(quantlens::test::dataPath(QStringLiteral("malformed")), QDir::Files, QDirIterator::Subdirectories);
        while (it.hasNext()) {
            const QString f = it.next();
            if (f.contains(QStringLiteral("/libhdf5_bugs/")) || f.endsWith(QStringLiteral(".json")) ||
                f.endsWith(QStringLiteral(".md")) || f.endsWith(QStringLiteral(".txt")))
                continue;
            files << f;
        }
        files.sort();
        QVERIFY2(files.size() > 100, qPrintable(QString::number(files.size())));

        MainWindow w(nullptr, /*useSettings=*/false);
        w.setInteractive(true);
        w.resize(1200, 800);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.showModel(std::make_shared<const Model>(makeDemoModel(1, 64)), QStringLiteral("test demo"));
        QVERIFY(waitIdle(w));
        const auto demo = w.model();

        int refused = 0, opened = 0;
        QStringList openedNames;
        for (const QString& f : files) {
            QSignalSpy failed(&w, &MainWindow::loadFailed);
            QSignalSpy loaded(&w, &MainWindow::modelLoaded);
            w.openFile(f);
            QDeadlineTimer deadline(kWaitMs);
            while (failed.isEmpty() && loaded.isEmpty() && !deadline.hasExpired())
                QTest::qWait(5);
            QVERIFY2(!failed.isEmpty() || !loaded.isEmpty(), qPrintable(QStringLiteral("no answer for ") + f));
            if (!failed.isEmpty()) {
                ++refused;
                auto* box = w.findChild<QMessageBox*>(QStringLiteral("errorBox"));
                QVERIFY2(box && box->isVisible(), qPrintable(f));
                QVERIFY2(box->text().contains(QFileInfo(f).fileName()), qPrintable(box->text()));
                box->close();
                QCOMPARE(w.model(), demo);
            } else {
                // A few corpus files are valid companions (e.g. a shard another file points to).
                ++opened;
                openedNames << QFileInfo(f).fileName();
                QVERIFY(waitIdle(w));
                w.showModel(demo, QStringLiteral("test demo"));
                QVERIFY(waitIdle(w));
            }
        }
        qInfo("%d malformed files refused with a dialog, %d opened (%s)", refused, opened,
              qPrintable(openedNames.join(QStringLiteral(", "))));
        QVERIFY(refused >= files.size() * 9 / 10);

        // Still usable: selecting a layer decodes and quantizes it.
        QSignalSpy shown(&w, &MainWindow::tensorShown);
        QVERIFY(w.selectTensor(QStringLiteral("distilbert.transformer.layer.0.ffn.lin1.weight")));
        QVERIFY(waitIdle(w));
        QCOMPARE(shown.count(), 1);
        QCOMPARE(w.matrix()->rows, 256);
    }
};

QTEST_MAIN(TestMalformedGui)
#include "tst_malformedgui.moc"
