// `quantlens --screenshot OUT.png [MODEL]`: the README's run command and the docs
// screenshot depend on it. Runs the real executable, offscreen.
#include <QFileInfo>
#include <QImage>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include "testsupport.h"

class TestScreenshot : public QObject {
    Q_OBJECT
private:
    static QProcessEnvironment offscreenEnv()
    {
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("offscreen"));
        return env;
    }

private slots:
    void demoScreenshotIsAPicture()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString out = dir.filePath(QStringLiteral("shot.png"));
        QProcess p;
        p.setProcessEnvironment(offscreenEnv());
        p.start(QStringLiteral(QUANTLENS_GUI), {QStringLiteral("--screenshot"), out});
        QVERIFY(p.waitForFinished(60000));
        QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
        const QImage img(out);
        QVERIFY(!img.isNull());
        QCOMPARE(img.size(), QSize(1400, 900));
        // Not a blank window: count distinct colours in a coarse sample.
        QSet<QRgb> colours;
        for (int y = 0; y < img.height(); y += 7)
            for (int x = 0; x < img.width(); x += 7)
                colours.insert(img.pixel(x, y));
        QVERIFY2(colours.size() > 50, qPrintable(QString::number(colours.size())));
    }

    // "demo" names the built-in demo as it does for quantlens-cli, not a file called demo;
    // --tensor shows that tensor, and a vector the plan leaves in float still gets its shot.
    void demoArgumentAndTensorOption()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString out = dir.filePath(QStringLiteral("demo.png"));
        QProcess p;
        p.setProcessEnvironment(offscreenEnv());
        p.start(QStringLiteral(QUANTLENS_GUI),
                {QStringLiteral("--screenshot"), out, QStringLiteral("--tensor"),
                 QStringLiteral("distilbert.embeddings.LayerNorm.weight"), QStringLiteral("demo")});
        QVERIFY(p.waitForFinished(60000));
        QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
        QCOMPARE(QImage(out).size(), QSize(1400, 900));

        QProcess bad;
        bad.setProcessEnvironment(offscreenEnv());
        bad.start(QStringLiteral(QUANTLENS_GUI), {QStringLiteral("--screenshot"), dir.filePath(QStringLiteral("x.png")),
                                                  QStringLiteral("--tensor"), QStringLiteral("no.such.tensor"),
                                                  QStringLiteral("demo")});
        QVERIFY(bad.waitForFinished(60000));
        QCOMPARE(bad.exitCode(), 2);
        QVERIFY(bad.readAllStandardError().contains("no tensor 'no.such.tensor'"));
    }

    void tabOptionPicksTheTab()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const auto shoot = [&](const QStringList& extra, const QString& name) {
            QProcess p;
            p.setProcessEnvironment(offscreenEnv());
            p.start(QStringLiteral(QUANTLENS_GUI), extra + QStringList{QStringLiteral("--screenshot"), dir.filePath(name)});
            p.waitForFinished(60000);
            return std::make_pair(p.exitCode(), p.readAllStandardError());
        };
        QCOMPARE(shoot({}, QStringLiteral("tensor.png")).first, 0);
        QCOMPARE(shoot({QStringLiteral("--tab"), QStringLiteral("overview")}, QStringLiteral("overview.png")).first, 0);
        // The right-hand side differs (the tab bar and the tree on the left do not).
        const QImage a(dir.filePath(QStringLiteral("tensor.png"))), b(dir.filePath(QStringLiteral("overview.png")));
        QCOMPARE(a.size(), b.size());
        int differ = 0;
        for (int y = 100; y < a.height(); y += 9)
            for (int x = a.width() / 2; x < a.width(); x += 9)
                differ += a.pixel(x, y) != b.pixel(x, y);
        QVERIFY2(differ > 500, qPrintable(QString::number(differ)));

        const auto [code, err] = shoot({QStringLiteral("--tab"), QStringLiteral("histogramz")}, QStringLiteral("no.png"));
        QCOMPARE(code, 2);
        QVERIFY2(err.contains("no tab 'histogramz'") && err.contains("Sensitivity"), err.constData());
        QVERIFY(!QFileInfo::exists(dir.filePath(QStringLiteral("no.png"))));
    }

    void unreadableModelExitsWithOneLineReason()
    {
        QTemporaryDir dir;
        const QString bad = dir.filePath(QStringLiteral("bad.safetensors"));
        QFile f(bad);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QByteArray(64, 'x'));
        f.close();
        QProcess p;
        p.setProcessEnvironment(offscreenEnv());
        p.start(QStringLiteral(QUANTLENS_GUI), {QStringLiteral("--screenshot"), dir.filePath(QStringLiteral("s.png")), bad});
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 1);
        // Qt may print its own warnings (XDG_RUNTIME_DIR, ...); ours is one line of its own.
        const QByteArray err = p.readAllStandardError();
        QByteArrayList ours;
        for (const QByteArray& line : err.split('\n'))
            if (line.startsWith("quantlens: "))
                ours << line;
        QCOMPARE(ours.size(), 1);
        QVERIFY2(ours.front().contains("bad.safetensors"), err.constData());
        QVERIFY(!QFileInfo::exists(dir.filePath(QStringLiteral("s.png"))));
    }

    void noDisplayFallsBackToScreenshot()
    {
        QTemporaryDir dir;
        QProcess p;
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.remove(QStringLiteral("DISPLAY"));
        env.remove(QStringLiteral("WAYLAND_DISPLAY"));
        env.remove(QStringLiteral("QT_QPA_PLATFORM"));
        p.setProcessEnvironment(env);
        p.setWorkingDirectory(dir.path());
        p.start(QStringLiteral(QUANTLENS_GUI), {});
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 0);
        QVERIFY(p.readAllStandardError().contains("no display"));
        QVERIFY(QFileInfo(dir.filePath(QStringLiteral("quantlens-screenshot.png"))).size() > 0);
    }

    void sharedModelScreenshot()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir dir;
        const QString out = dir.filePath(QStringLiteral("gpt2.png"));
        QProcess p;
        p.setProcessEnvironment(offscreenEnv());
        p.start(QStringLiteral(QUANTLENS_GUI),
                {QStringLiteral("--screenshot"), out, quantlens::test::sharedModel(QStringLiteral("gpt2_capp.safetensors"))});
        QVERIFY(p.waitForFinished(120000));
        QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
        QVERIFY(QFileInfo(out).size() > 0);
    }
};

QTEST_MAIN(TestScreenshot)
#include "tst_screenshot.moc"
