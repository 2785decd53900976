// Opening a large compressed HDF5 file in the window: HDF5 has to inflate every dataset
// (the one format whose tensors cannot be views of the mapped file), so the status bar
// shows how far it got and Cancel stops the reader between datasets rather than leaving it
// to inflate the rest in the background (it also holds libhdf5's global lock).
#include <QElapsedTimer>
#include <QProgressBar>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <QThreadPool>
#include <QToolButton>

#include <hdf5.h>

#include <vector>

#include "mainwindow.h"
#include "workpool.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kDatasets = 48;
constexpr hsize_t kRows = 1024, kCols = 1024;  // 4 MiB of float32 each, 192 MiB in all

// gzip level 1 over floats with 16 random bits: the file stays within the reader's 64x
// expansion limit, and inflating it all takes about a second here.
bool writeCompressed(const QString& path)
{
    const hid_t file = H5Fcreate(QFile::encodeName(path).constData(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0)
        return false;
    const hsize_t dims[2] = {kRows, kCols}, chunk[2] = {256, kCols};
    const hid_t space = H5Screate_simple(2, dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_deflate(dcpl, 1);
    std::vector<float> v(kRows * kCols);
    uint32_t s = 12345;
    bool ok = space >= 0 && dcpl >= 0;
    for (int d = 0; d < kDatasets && ok; ++d) {
        for (float& x : v) {
            s = s * 1664525u + 1013904223u;
            x = float(s >> 16) * (1.0f / 65536.0f) - 0.5f;
        }
        const std::string name = "layer" + std::to_string(d) + "/kernel";
        const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        const hid_t ds = H5Dcreate2(file, name.c_str(), H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT);
        ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0;
        if (ds >= 0)
            H5Dclose(ds);
        H5Pclose(lcpl);
    }
    H5Pclose(dcpl);
    H5Sclose(space);
    return H5Fclose(file) >= 0 && ok;
}

// A window opening `path`, with the clock started as the open begins.
struct Opening {
    MainWindow w{nullptr, false};
    QSignalSpy loaded{&w, &MainWindow::modelLoaded};
    QElapsedTimer t;
    explicit Opening(const QString& path)
    {
        w.setInteractive(false);
        t.start();
        w.openFile(path);
    }
};

}  // namespace

class TestHdf5Open : public QObject {
    Q_OBJECT
    QTemporaryDir dir_;
    QString path_;
    qint64 fullMs_ = 0;

private slots:
    void initTestCase()
    {
        QVERIFY(dir_.isValid());
        path_ = dir_.filePath(QStringLiteral("big_gzip.h5"));
        QVERIFY(writeCompressed(path_));
    }

    void showsProgressAndOpens()
    {
        Opening o(path_);
        MainWindow& w = o.w;
        int maxSeen = -1;
        while (o.loaded.isEmpty() && o.t.elapsed() < 120000) {
            QTest::qWait(20);
            if (w.progressBar()->maximum() == 1000)
                maxSeen = std::max(maxSeen, w.progressBar()->value());
        }
        QCOMPARE(o.loaded.count(), 1);
        fullMs_ = o.t.elapsed();
        QCOMPARE(w.model()->tensors.size(), size_t(kDatasets));
        qInfo("full open: %lld ms; the bar showed up to %d per mille", fullMs_, maxSeen);
        if (fullMs_ < 400)
            QSKIP("the file opened too fast here to see progress");
        QVERIFY2(maxSeen > 0 && maxSeen <= 1000, qPrintable(QString::number(maxSeen)));
    }

    void cancelStopsTheReader()
    {
        if (fullMs_ < 400)
            QSKIP("the file opened too fast here to cancel it");
        Opening o(path_);
        QTest::qWait(int(fullMs_ / 5));
        QTest::mouseClick(o.w.cancelButton(), Qt::LeftButton);
        QVERIFY(o.w.isIdle());
        // The reader ends at its next dataset (4 MiB) instead of inflating the rest.
        QVERIFY(workPool()->waitForDone(int(fullMs_)));
        const qint64 done = o.t.elapsed();
        qInfo("cancelled after %lld ms; the reader ended at %lld ms (a full open: %lld ms)", fullMs_ / 5, done, fullMs_);
        QVERIFY2(done < fullMs_ * 3 / 5, qPrintable(QString::number(done)));
        QTest::qWait(200);
        QCOMPARE(o.loaded.count(), 0);
    }
};

QTEST_MAIN(TestHdf5Open)
#include "tst_hdf5open.moc"
