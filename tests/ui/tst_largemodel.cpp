// Issue #6: "a 2 GB model opens without freezing the window". A sparse 2 GiB safetensors
// file (64 linear layers of 2048x4096 float32) is opened in the real window while a 5 ms
// timer measures how long the event loop is ever kept from running: opening, showing the
// first layer and the whole-model statistics all happen off the GUI thread.
#include <QElapsedTimer>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <QTimer>

#include <fcntl.h>
#include <string>
#include <unistd.h>

#include "mainwindow.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kLayers = 64;
constexpr int64_t kRows = 2048, kCols = 4096;

// False when the filesystem cannot hold the sparse file.
bool writeSparseModel(const std::string& path)
{
    const int64_t bytes = kRows * kCols * 4;
    std::string header = "{";
    for (int l = 0; l < kLayers; ++l) {
        if (l)
            header += ",";
        header += "\"layers." + std::to_string(l) + ".weight\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(kRows) + "," +
                  std::to_string(kCols) + "],\"data_offsets\":[" + std::to_string(l * bytes) + "," +
                  std::to_string((l + 1) * bytes) + "]}";
    }
    header += "}";
    while (header.size() % 8)
        header += ' ';
    const uint64_t n = header.size();
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0)
        return false;
    // Zeros everywhere but one value per layer, so each layer has a real range to show.
    bool ok = ::pwrite(fd, &n, 8, 0) == 8 && ::pwrite(fd, header.data(), n, 8) == ssize_t(n);
    for (int l = 0; ok && l < kLayers; ++l) {
        const float v = 0.5f + float(l);
        ok = ::pwrite(fd, &v, 4, off_t(8 + n + uint64_t(l) * uint64_t(bytes))) == 4;
    }
    ok = ok && ::ftruncate(fd, off_t(8 + n + uint64_t(kLayers) * uint64_t(bytes))) == 0;
    ::close(fd);
    return ok;
}

}  // namespace

class TestLargeModel : public QObject {
    Q_OBJECT
private slots:
    void twoGigabyteModelNeverFreezesTheWindow()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString path = dir.filePath(QStringLiteral("big.safetensors"));
        if (!writeSparseModel(path.toStdString()))
            QSKIP("this filesystem cannot hold a sparse 2 GiB file");

        MainWindow w(nullptr, /*useSettings=*/false);
        w.setInteractive(false);
        w.resize(1400, 900);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));

        // The longest time between two ticks of a 5 ms timer is how long the window froze.
        QElapsedTimer clock;
        qint64 last = 0, worst = 0, worstAt = 0;
        QTimer tick;
        tick.setInterval(5);
        QObject::connect(&tick, &QTimer::timeout, [&] {
            const qint64 now = clock.elapsed();
            if (now - last > worst) {
                worst = now - last;
                worstAt = last;
            }
            last = now;
        });
        QSignalSpy loaded(&w, &MainWindow::modelLoaded);
        QSignalSpy shown(&w, &MainWindow::quantizationUpdated);
        clock.start();
        tick.start();
        w.openFile(path);
        QVERIFY(loaded.wait(60000));
        const qint64 loadedAt = clock.elapsed();
        QCOMPARE(w.model()->tensors.size(), size_t(kLayers));
        QCOMPARE(w.model()->byteCount(), int64_t(kLayers) * kRows * kCols * 4);
        // The first layer (32 MiB) decoded, quantized and drawn, while the statistics of
        // the other 2 GiB run behind it.
        QVERIFY(shown.wait(60000));
        const qint64 shownAt = clock.elapsed();
        QVERIFY(w.matrix());
        QCOMPARE(w.matrix()->rows, kRows);
        QTest::qWait(1000);  // a second of whole-model statistics
        tick.stop();
        w.cancelBackgroundWork();
        QDeadlineTimer idle(30000);
        while (!w.isIdle() && !idle.hasExpired())
            QTest::qWait(20);
        QVERIFY(w.isIdle());
        qInfo("2 GiB model: open %lld ms, first layer shown %lld ms; longest event-loop stall %lld ms (from %lld ms)",
              loadedAt, shownAt, worst, worstAt);
        // A frame at 60 Hz is 16 ms; a stall a user would notice is several frames. The
        // bound leaves room for a loaded 2-core CI machine.
        QVERIFY2(worst < 250, qPrintable(QStringLiteral("the window froze for %1 ms").arg(worst)));
    }
};

QTEST_MAIN(TestLargeModel)
#include "tst_largemodel.moc"
