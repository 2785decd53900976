// HDF5 / Keras reader: fixtures from tests/scripts/make_hdf5_fixtures.py (h5py), the real
// hls4ml Keras files, and the malformed corpus in tests/data/malformed/hdf5.
#include <QFile>
#include <QFileInfo>
#include <QTemporaryDir>
#include <QTest>

#include <hdf5.h>

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "io/hdf5reader.h"
#include "layers.h"
#include "model.h"
#include "readertestutil.h"

using namespace quantlens;
using quantlens::test::dataPath;
using quantlens::test::loadJson;

class TestHdf5Reader : public QObject {
    Q_OBJECT
private slots:
    void fixtures_data();
    void fixtures();
    void kerasLinearLayers();
    void contiguousDataInPlace();
    void progressAndCancel();
    void largeCompressedDatasetInSlabs();
    void cancelInsideOneRead();
    void libhdf5CrashStaysInTheChild();
    void realFiles_data();
    void realFiles();
    void realKerasLayers();
    void malformed_data();
    void malformed();
};

void TestHdf5Reader::fixtures_data()
{
    QTest::addColumn<QString>("file");
    QTest::newRow("keras layout: model_weights, optimizer_weights, root attrs") << "keras_like.h5";
    QTest::newRow("plain: every numeric type, gzip, big-endian, strings, compound") << "types.h5";
}

void TestHdf5Reader::fixtures()
{
    QFETCH(QString, file);
    const auto all = loadJson(dataPath(QStringLiteral("hdf5/expected.json")));
    QVERIFY(all.is_object());
    const auto& exp = all.at(file.toStdString());
    auto m = openModel(dataPath(QStringLiteral("hdf5/") + file).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    QCOMPARE(m->format, exp.at("format").get<std::string>());
    for (const auto& [k, v] : exp.at("metadata").items())
        QCOMPARE(test::metaValue(*m, k), v.get<std::string>());
    const auto& tensors = exp.at("tensors");
    QCOMPARE(m->tensors.size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& e = tensors[i];
        const Tensor& t = m->tensors[i];
        QCOMPARE(t.name, e.at("name").get<std::string>());
        QCOMPARE(t.shape, e.at("shape").get<std::vector<int64_t>>());
        QCOMPARE(std::string(dtypeName(t.dtype)), e.at("dtype").get<std::string>());
        QVERIFY2((t.layout == Layout::InOut) == (e.at("layout") == "inout"), t.name.c_str());
        QCOMPARE(t.group, e.at("group").get<std::string>());
        auto v = t.toFloat();
        QVERIFY2(v.ok(), v.ok() ? "" : v.error().oneLine().c_str());
        const auto want = e.at("values").get<std::vector<float>>();
        QCOMPARE(v->size(), want.size());
        for (size_t k = 0; k < want.size(); ++k)
            QVERIFY2((*v)[k] == want[k], (t.name + " element " + std::to_string(k)).c_str());
    }
}

void TestHdf5Reader::kerasLinearLayers()
{
    auto m = readHdf5(dataPath(QStringLiteral("hdf5/keras_like.h5")).toStdString());
    QVERIFY(m.ok());
    const auto layers = findLinearLayers(*m);
    const LinearLayer* d = findLinearLayer(layers, "model_weights/dense_1/dense_1");
    QVERIFY(d);
    QVERIFY(d->transposed());
    QCOMPARE(d->inFeatures, int64_t(4));
    QCOMPARE(d->outFeatures, int64_t(3));
    QVERIFY(d->bias);
    // Optimizer state has the weights' shapes but is not a layer.
    for (const LinearLayer& l : layers)
        QVERIFY(l.weight->group.empty());
}

namespace {

// Whether p lies in a mapping of `file` (per /proc/self/maps): a tensor used in place rather
// than copied out by HDF5.
bool mapsFile(const void* p, const QString& file)
{
    QFile maps(QStringLiteral("/proc/self/maps"));
    if (!maps.open(QIODevice::ReadOnly))
        return false;
    const QString target = QFileInfo(file).canonicalFilePath();
    const auto addr = reinterpret_cast<quintptr>(p);
    for (const QByteArray& line : maps.readAll().split('\n')) {
        const QList<QByteArray> f = line.simplified().split(' ');
        if (f.size() < 6 || QString::fromUtf8(f[5]) != target)
            continue;
        const QList<QByteArray> range = f[0].split('-');
        if (range.size() == 2 && addr >= range[0].toULongLong(nullptr, 16) && addr < range[1].toULongLong(nullptr, 16))
            return true;
    }
    return false;
}

}  // namespace

// Contiguous datasets stored in the memory type are views of the mapped file (a 200 MB Keras
// file opened in ~20 ms instead of ~1 s); compressed, big-endian and empty ones are read by
// HDF5 into buffers of their own. The values are checked by fixtures().
void TestHdf5Reader::contiguousDataInPlace()
{
    const QString keras = dataPath(QStringLiteral("hdf5/keras_like.h5"));
    auto m = openModel(keras.toStdString());
    QVERIFY(m.ok());
    for (const Tensor& t : m->tensors)
        QVERIFY2(mapsFile(t.data.data(), keras), t.name.c_str());

    const QString types = dataPath(QStringLiteral("hdf5/types.h5"));
    auto ty = openModel(types.toStdString());
    QVERIFY(ty.ok());
    // A big-endian contiguous dataset is a view too, marked big-endian (fixtures() checks
    // its values).
    const std::set<std::string> copied = {"compressed", "empty"};
    for (const Tensor& t : ty->tensors) {
        QVERIFY2(mapsFile(t.data.data(), types) == !copied.count(t.name), t.name.c_str());
        QCOMPARE(t.bigEndian, t.name == "big_endian");
    }
}

// The reader's own progress points (readHdf5InProcess), and what readHdf5 passes on from
// its child process.
void TestHdf5Reader::progressAndCancel()
{
    const std::string path = dataPath(QStringLiteral("hdf5/types.h5")).toStdString();
    std::vector<double> seen;
    const auto record = [&](double f) {
        seen.push_back(f);
        return true;
    };
    auto m = readHdf5InProcess(path, record);
    QVERIFY(m.ok());
    QCOMPARE(seen.size(), m->tensors.size());  // once before each dataset it takes
    QVERIFY(std::is_sorted(seen.begin(), seen.end()));
    QCOMPARE(seen.front(), 0.0);
    QVERIFY(seen.back() > 0.0 && seen.back() < 1.0);

    // Through the child: the same points, and the last one repeated whenever the child is
    // quiet for 100 ms (so that a Cancel is seen).
    const std::vector<double> own = seen;
    seen.clear();
    QVERIFY(openModel(path, record).ok());
    QVERIFY(std::is_sorted(seen.begin(), seen.end()));
    QVERIFY(std::includes(seen.begin(), seen.end(), own.begin(), own.end()));

    for (bool isolated : {false, true}) {
        int calls = 0;
        const auto refuseThird = [&](double) { return ++calls < 3; };
        auto c = isolated ? openModel(path, refuseThird) : readHdf5InProcess(path, refuseThird);
        QVERIFY(!c.ok());
        QCOMPARE(calls, 3);  // nothing read after the refusal
        QCOMPARE(c.error().code, std::string("cancelled"));
        const std::string line = c.error().oneLine();
        QVERIFY2(line.find(path) == 0 && line.find("cancelled") != std::string::npos, line.c_str());
    }
}

namespace {

// One float32 dataset "embedding" of rows x cols, gzip level 1 in chunks of chunkRows rows,
// holding 16 random bits per value (compresses ~2x, within the reader's 64x limit).
std::vector<float> writeGzipEmbedding(const std::string& path, hsize_t rows, hsize_t cols, hsize_t chunkRows)
{
    std::vector<float> want(rows * cols);
    uint32_t s = 7;
    for (float& x : want) {
        s = s * 1664525u + 1013904223u;
        x = float(s >> 16) - 32768.0f;
    }
    const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims[2] = {rows, cols}, chunk[2] = {chunkRows, cols};
    const hid_t space = H5Screate_simple(2, dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_deflate(dcpl, 1);
    const hid_t ds = H5Dcreate2(file, "embedding", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    const bool ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, want.data()) >= 0;
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (H5Fclose(file) < 0 || !ok)
        return {};
    return want;
}

}  // namespace

// A compressed dataset over 32 MiB is read in slabs of whole chunk rows, with progress and
// the cancel check between them: one 48 MiB gzip tensor here, 256-row chunks. Through the
// child, its values arrive in the shared memory file intact.
void TestHdf5Reader::largeCompressedDatasetInSlabs()
{
    constexpr hsize_t kRows = 6144, kCols = 2048;
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.filePath(QStringLiteral("slabs.h5")).toStdString();
    const std::vector<float> want = writeGzipEmbedding(path, kRows, kCols, 256);
    QVERIFY(!want.empty());

    std::vector<double> seen;
    const auto record = [&](double f) {
        seen.push_back(f);
        return true;
    };
    for (bool isolated : {true, false}) {
        seen.clear();
        auto m = isolated ? openModel(path, record) : readHdf5InProcess(path, record);
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
        QCOMPARE(m->tensors.size(), size_t(1));
        const Tensor& t = m->tensors[0];
        QCOMPARE(t.shape, (std::vector<int64_t>{int64_t(kRows), int64_t(kCols)}));
        auto got = t.toFloat();
        QVERIFY(got.ok());
        QVERIFY2(*got == want, isolated ? "the child's data arrived wrong" : "the slabs landed in the wrong rows");
        QVERIFY(std::is_sorted(seen.begin(), seen.end()));
        QVERIFY(seen.back() > 0.9 && seen.back() <= 1.0);
    }
    // Once before the dataset, then after each of its slabs (16 MiB = 2048 rows, 8 chunks).
    QCOMPARE(seen.size(), size_t(1 + 3));
    QVERIFY(seen[1] > 0.2 && seen[1] < 0.45);

    int calls = 0;
    auto c = readHdf5InProcess(path, [&](double) { return ++calls < 3; });  // refuses after the 2nd of 3 slabs
    QVERIFY(!c.ok());
    QCOMPARE(c.error().code, std::string("cancelled"));
    QCOMPARE(calls, 3);
}

// One H5Dread (a 32 MiB gzip dataset is not split into slabs) cannot be interrupted in
// this process; readHdf5 asks again every 100 ms while its child is quiet and ends the
// child on a refusal, so a Cancel lands in the middle of the read.
void TestHdf5Reader::cancelInsideOneRead()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.filePath(QStringLiteral("one_read.h5")).toStdString();
    QVERIFY(!writeGzipEmbedding(path, 4096, 2048, 64).empty());  // 32 MiB in 64-row chunks

    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    QVERIFY(openModel(path).ok());
    const double fullMs = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (fullMs < 200)
        QSKIP(qPrintable(QStringLiteral("inflating 32 MiB took only %1 ms here: too quick to cancel in the middle").arg(fullMs)));

    std::vector<double> seen;
    Clock::time_point refused;
    const auto t1 = Clock::now();
    auto c = openModel(path, [&](double f) {
        seen.push_back(f);
        if (seen.size() < 2)
            return true;  // the child's own call, before the dataset
        refused = Clock::now();
        return false;  // the first call while libhdf5 inflates
    });
    const auto t2 = Clock::now();
    QVERIFY(!c.ok());
    QCOMPARE(c.error().code, std::string("cancelled"));
    QCOMPARE(seen.size(), size_t(2));
    QCOMPARE(seen[1], 0.0);  // no dataset finished yet: the refusal came mid-read
    const double afterRefusalMs = std::chrono::duration<double, std::milli>(t2 - refused).count();
    const double totalMs = std::chrono::duration<double, std::milli>(t2 - t1).count();
    qInfo("full open %.0f ms; cancelled open %.0f ms, %.1f ms after the refusal", fullMs, totalMs, afterRefusalMs);
    QVERIFY2(afterRefusalMs < 100, qPrintable(QString::number(afterRefusalMs)));
}

// libhdf5 frees an uninitialised pointer on this file (libhdf5_bugs/README). With freed
// memory filled with a pattern (M_PERTURB, as MALLOC_PERTURB_ does) the plain build's read
// crashed with SIGSEGV in this process; now the child dies and the caller gets an error.
void TestHdf5Reader::libhdf5CrashStaysInTheChild()
{
    const std::string path = dataPath(QStringLiteral("malformed/hdf5/libhdf5_bugs/invalid_free_in_link_table.h5")).toStdString();
    QVERIFY(QFileInfo::exists(QString::fromStdString(path)));
    mallopt(M_PERTURB, 0x11);
    auto m = openModel(path);
    mallopt(M_PERTURB, 0);
    QVERIFY(!m.ok());
    QCOMPARE(m.error().code, std::string("bad-hdf5"));
    const std::string line = m.error().oneLine();
    qInfo("%s", line.c_str());
    QVERIFY2(line.find(path) == 0, line.c_str());
}

void TestHdf5Reader::realFiles_data()
{
    QTest::addColumn<QString>("file");
    QTest::newRow("Keras 2.3 weights-only MLP, empty Dropout groups") << "hls4ml_mnist_mlp_weights.h5";
    QTest::newRow("Keras 2.1 full LSTM model with Adam state") << "hls4ml_lstm_model.h5";
}

void TestHdf5Reader::realFiles()
{
    QL_REQUIRE_SHARED_MODELS();
    QFETCH(QString, file);
    const auto all = loadJson(dataPath(QStringLiteral("hdf5/real_expected.json")));
    QVERIFY(all.is_object());
    const auto& e = all.at(file.toStdString());
    auto m = openModel(test::sharedModel(file).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    QCOMPARE(m->format, e.at("format").get<std::string>());
    for (const auto& [k, v] : e.at("metadata").items())
        QCOMPARE(test::metaValue(*m, k), v.get<std::string>());
    const auto& tensors = e.at("tensors");
    QCOMPARE(m->tensors.size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& te = tensors[i];
        const Tensor& t = m->tensors[i];
        QCOMPARE(t.name, te.at("name").get<std::string>());
        QCOMPARE(t.shape, te.at("shape").get<std::vector<int64_t>>());
        QCOMPARE(std::string(dtypeName(t.dtype)), te.at("dtype").get<std::string>());
        QVERIFY2((t.layout == Layout::InOut) == (te.at("layout") == "inout"), t.name.c_str());
        QCOMPARE(t.group, te.at("group").get<std::string>());
        auto v = t.toFloat();
        QVERIFY(v.ok());
        const auto s = test::statsOf(*v);
        QCOMPARE(s.min, te.at("min").get<double>());
        QCOMPARE(s.max, te.at("max").get<double>());
        QVERIFY2(test::closeRel(s.mean, te.at("mean").get<double>()), t.name.c_str());
        QVERIFY2(test::closeRel(s.std, te.at("std").get<double>()), t.name.c_str());
    }
}

void TestHdf5Reader::realKerasLayers()
{
    QL_REQUIRE_SHARED_MODELS();
    auto m = openModel(test::sharedModel(QStringLiteral("hls4ml_mnist_mlp_weights.h5")).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    const auto layers = findLinearLayers(*m);
    QCOMPARE(layers.size(), size_t(3));
    const int64_t in[] = {784, 256, 256}, out[] = {256, 256, 10};
    for (int i = 0; i < 3; ++i) {
        const std::string prefix = "dense_" + std::to_string(i + 1) + "/dense_" + std::to_string(i + 1);
        const LinearLayer* l = findLinearLayer(layers, prefix);
        QVERIFY2(l, prefix.c_str());
        QVERIFY(l->transposed());
        QCOMPARE(l->inFeatures, in[i]);
        QCOMPARE(l->outFeatures, out[i]);
        QVERIFY(l->bias);
        QCOMPARE(l->bias->name, prefix + "/bias:0");
    }
    QCOMPARE(m->parameterCount(), int64_t(269322));

    auto lstm = openModel(test::sharedModel(QStringLiteral("hls4ml_lstm_model.h5")).toStdString());
    QVERIFY(lstm.ok());
    const auto ll = findLinearLayers(*lstm);
    const LinearLayer* dense = findLinearLayer(ll, "model_weights/rnn_densef/rnn_densef");
    QVERIFY(dense);
    QCOMPARE(dense->inFeatures, int64_t(320));
    QCOMPARE(dense->outFeatures, int64_t(5));
    const Tensor* it = lstm->find("optimizer_weights/Adam/iterations:0");
    QVERIFY(it);
    QCOMPARE(it->rank(), int64_t(0));
    QCOMPARE(it->group, std::string("optimizer"));
    QCOMPARE(it->toFloat()->at(0), 7500.0f);
}

void TestHdf5Reader::malformed_data() { test::addMalformedRows(QStringLiteral("hdf5"), 10); }

void TestHdf5Reader::malformed() { test::checkMalformedRow(QStringLiteral("hdf5")); }

QTEST_GUILESS_MAIN(TestHdf5Reader)
#include "tst_hdf5reader.moc"
