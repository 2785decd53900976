// Files that change while open: a model truncated under a reader, an export or the CLI
// ends with exit 1 and "file changed while reading", never a SIGBUS; a FIFO, a socket
// or a device given as MODEL is refused at once.
#include <QElapsedTimer>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <functional>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clirunner.h"
#include "io/exporter.h"
#include "io/onnxqdq.h"
#include "io/safetensorswriter.h"
#include "model.h"
#include "testsupport.h"

using namespace quantlens;
using quantlens::test::dataPath;

namespace {

struct ChildResult {
    bool exited = false;
    int code = -1;
    int signal = 0;
    std::string message;
};

// Runs `body` in a forked child, which reports one line through a pipe and exits with
// body's return value. A crash shows as `signal`.
ChildResult inChild(const std::function<int(std::string&)>& body)
{
    int fds[2];
    if (::pipe(fds) != 0)
        return {};
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        std::string msg;
        const int code = body(msg);
        (void)!::write(fds[1], msg.data(), msg.size());
        ::_exit(code);
    }
    ::close(fds[1]);
    ChildResult r;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
        r.message.append(buf, size_t(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    r.exited = WIFEXITED(status);
    r.code = r.exited ? WEXITSTATUS(status) : -1;
    r.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return r;
}

bool copyFile(const QString& from, const QString& to)
{
    std::error_code ec;
    return std::filesystem::copy(from.toStdString(), to.toStdString(),
                                 std::filesystem::copy_options::recursive, ec),
           !ec;
}

// Tensor data of `count` float32 [rows, cols] tensors (values i*0.001), more than a page
// each so a cut file leaves whole pages unbacked.
void writeFloatModel(const std::string& path, int count, int64_t rows, int64_t cols)
{
    std::vector<std::vector<float>> data(size_t(count), std::vector<float>(size_t(rows * cols)));
    std::vector<Tensor> ts;
    for (int k = 0; k < count; ++k) {
        for (size_t i = 0; i < data[size_t(k)].size(); ++i)
            data[size_t(k)][i] = float(int64_t(i % 2001) - 1000) * 0.001f * float(k + 1);
        ts.push_back(makeFloatTensor("layer" + std::to_string(k) + ".weight", {rows, cols}, data[size_t(k)]));
    }
    std::vector<SafetensorsItem> items;
    for (const Tensor& t : ts)
        items.push_back({t.name, DType::F32, t.shape, [t](AtomicFile& f) { return writeTensorBytes(f, t); }});
    QVERIFY(writeSafetensors(path, items, {}, {}).ok());
}

// For a child: 0 once `m` opened and `tensor` was quantized into `entries`, else the
// child's exit code (3: open, 4: quantize) with the reason in msg.
int openedAndQuantized(const Result<Model>& m, const char* tensor, std::vector<ExportEntry>& entries, std::string& msg)
{
    if (!m) {
        msg = "open failed: " + m.error().oneLine();
        return 3;
    }
    auto e = quantizeForExport(*m, tensor, QuantSpec{});
    if (!e) {
        msg = "quantize failed: " + e.error().oneLine();
        return 4;
    }
    entries.push_back(std::move(*e));
    return 0;
}

// For a child: 1 with the reason in msg when the export failed, 0 when it wrote a file.
int exportFailed(const Result<ExportReport>& rep, std::string& msg)
{
    if (rep) {
        msg = "exported a truncated model";
        return 0;
    }
    msg = rep.error().oneLine();
    return 1;
}

// The child lived, exited 1 and said why.
bool endedFileChanged(const ChildResult& r)
{
    return r.signal == 0 && r.exited && r.code == 1 && r.message.find("file changed while reading: ") != std::string::npos;
}

}  // namespace

class TestFileChange : public QObject {
    Q_OBJECT

private slots:
    void truncatedUnderReader_data();
    void truncatedUnderReader();
    void truncatedUnderExport();
    void truncatedUnderCliQuantize();
    void truncatedUnderOnnxExport_data();
    void truncatedUnderOnnxExport();
    void fifoRefusedAtOnce();
    void socketAndDeviceRefused();
    void releasingPagesKeepsTheValues();
};

void TestFileChange::truncatedUnderReader_data()
{
    QTest::addColumn<QString>("fixture");  // relative to tests/data; folders are copied whole
    QTest::addColumn<QString>("cut");      // the file inside the copy that is truncated ("" = the fixture)
    QTest::addColumn<bool>("mapped");      // false: the reader copies every tensor at open (npz inflates members)
    QTest::newRow("safetensors") << "safetensors/dtypes.safetensors" << "" << true;
    QTest::newRow("gguf") << "gguf/blocks.gguf" << "" << true;
    QTest::newRow("npy") << "npy/c_f4.npy" << "" << true;
    QTest::newRow("npz stored") << "npy/stored.npz" << "" << false;
    QTest::newRow("onnx") << "onnx/typed.onnx" << "" << true;
    QTest::newRow("onnx external data") << "onnx/external" << "weights/external.bin" << true;
    QTest::newRow("pytorch stored zip") << "pytorch/dtypes.pt" << "" << true;
    QTest::newRow("pytorch legacy") << "pytorch/legacy.pt" << "" << true;
    QTest::newRow("hdf5 views") << "hdf5/types.h5" << "" << true;
}

// Opened, then cut to nothing by "another writer", then read: every tensor that is a
// view of the file fails with the reason, the process lives and exits 1.
void TestFileChange::truncatedUnderReader()
{
    QFETCH(QString, fixture);
    QFETCH(QString, cut);
    QFETCH(bool, mapped);
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString name = QFileInfo(fixture).fileName();
    const QString copy = dir.filePath(name);
    QVERIFY(copyFile(dataPath(fixture), copy));
    const QString openPath = cut.isEmpty() ? copy : QDir(copy).filePath(QStringLiteral("external.onnx"));
    const QString cutPath = cut.isEmpty() ? copy : QDir(copy).filePath(cut);

    const ChildResult r = inChild([&](std::string& msg) {
        auto m = openModel(openPath.toStdString());
        if (!m) {
            msg = "open failed: " + m.error().oneLine();
            return 3;
        }
        if (::truncate(cutPath.toLocal8Bit().constData(), 0) != 0) {
            msg = "truncate failed";
            return 4;
        }
        int changed = 0;
        for (const Tensor& t : m->tensors) {
            if (!t.decodable())
                continue;
            auto v = t.toFloat();
            if (!v && v.error().code == "file-changed") {
                ++changed;
                msg = v.error().oneLine();
            } else if (!v) {
                msg = "other error: " + v.error().oneLine();
                return 5;
            }
        }
        return changed > 0 ? 1 : 0;
    });
    QCOMPARE(r.signal, 0);
    QVERIFY2(r.exited, r.message.c_str());
    if (!mapped) {  // nothing left to read from the file: the copies stay valid
        QVERIFY2(r.code == 0, (std::to_string(r.code) + ": " + r.message).c_str());
        return;
    }
    QVERIFY2(r.code == 1, (std::to_string(r.code) + ": " + r.message).c_str());
    QVERIFY2(r.message.find("file changed while reading: ") != std::string::npos, r.message.c_str());
    QVERIFY2(r.message.find(name.toStdString()) != std::string::npos || !cut.isEmpty(), r.message.c_str());
}

// An export that reads the model after the file shrank fails with the reason and leaves
// no output: both the quantized tensor (toFloat) and the copied-through tensors
// (fake-quant export writes the rest of the model byte for byte).
void TestFileChange::truncatedUnderExport()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string in = dir.filePath("model.safetensors").toStdString();
    writeFloatModel(in, 3, 64, 256);
    for (ExportFormat fmt : {ExportFormat::Hdf5, ExportFormat::SafetensorsFakeQuant}) {
        const std::string out = dir.filePath(fmt == ExportFormat::Hdf5 ? "q.h5" : "fq.safetensors").toStdString();
        const ChildResult r = inChild([&](std::string& msg) {
            auto m = openModel(in);
            std::vector<ExportEntry> entries;
            if (int failed = openedAndQuantized(m, "layer0.weight", entries, msg))
                return failed;
            ::truncate(in.c_str(), 0);
            if (fmt == ExportFormat::Hdf5) {
                auto e2 = quantizeForExport(*m, "layer1.weight", QuantSpec{});
                if (e2) {
                    msg = "quantized a truncated tensor";
                    return 0;
                }
                msg = e2.error().oneLine();
                return 1;
            }
            return exportFailed(exportModel(*m, entries, ExportOptions{fmt, out, {}}), msg);
        });
        QVERIFY2(endedFileChanged(r), (std::to_string(r.code) + ", signal " + std::to_string(r.signal) + ": " + r.message).c_str());
        QVERIFY(!std::filesystem::exists(out));
        writeFloatModel(in, 3, 64, 256);
    }
}

// The CLI as a user runs it: the file is cut once quantize has started on the first
// tensor (its progress line), with most of the model still to read.
void TestFileChange::truncatedUnderCliQuantize()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string in = dir.filePath("model.safetensors").toStdString();
    writeFloatModel(in, 8, 1024, 1024);
    QProcess p;
    p.start(QStringLiteral(QUANTLENS_CLI), {QStringLiteral("quantize"), QString::fromStdString(in), QStringLiteral("--all-linear"),
                                            QStringLiteral("--out"), dir.filePath("q.h5")});
    QVERIFY(p.waitForStarted(10000));
    QByteArray err;
    while (!err.contains("quantizing") && p.state() == QProcess::Running) {
        p.waitForReadyRead(50);
        err += p.readAllStandardError();
    }
    QVERIFY(::truncate(in.c_str(), 0) == 0);
    QVERIFY(p.waitForFinished(60000));
    err += p.readAllStandardError();
    QCOMPARE(p.exitStatus(), QProcess::NormalExit);
    QVERIFY2(p.exitCode() == 1, err.constData());
    QVERIFY2(err.contains("file changed while reading: "), err.constData());
    QVERIFY(!QFileInfo::exists(dir.filePath("q.h5")));
}

void TestFileChange::truncatedUnderOnnxExport_data()
{
    QTest::addColumn<QString>("when");  // the progress step at which the source is cut
    QTest::addColumn<qint64>("to");     // its new size
    // Before the export walks the file (our reader already accepted it), and while the
    // large initializers are copied from it with pread.
    QTest::newRow("before the walk") << "reading " << qint64(5000);
    QTest::newRow("while copying") << "writing gemm_a.weight" << qint64(0);
}

// The ONNX QDQ export copies the large initializers' bytes from the source as it writes:
// a source cut under it ends the export with the reason, leaving no output.
void TestFileChange::truncatedUnderOnnxExport()
{
    QFETCH(QString, when);
    QFETCH(qint64, to);
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString in = dir.filePath(QStringLiteral("model.onnx"));
    QVERIFY(copyFile(dataPath(QStringLiteral("onnx/qdq/convnet_opset21.onnx")), in));
    const std::string out = dir.filePath(QStringLiteral("q.onnx")).toStdString();
    const ChildResult r = inChild([&](std::string& msg) {
        auto m = openModel(in.toStdString());
        std::vector<ExportEntry> entries;
        if (int failed = openedAndQuantized(m, "mm.weight", entries, msg))
            return failed;
        bool cut = false;
        auto progress = [&](double, const std::string& what) {
            if (!cut && what.rfind(when.toStdString(), 0) == 0)
                cut = ::truncate(in.toLocal8Bit().constData(), off_t(to)) == 0;
            return true;
        };
        // 100 bytes: the fixture's four weights are streamed from the file.
        auto rep = onnxqdqdetail::write(*m, entries, ExportOptions{ExportFormat::OnnxQdq, out, {}}, progress, 100,
                                        onnxqdqdetail::Writing::Streamed);
        if (!cut) {
            msg = "never cut";
            return 5;
        }
        return exportFailed(rep, msg);
    });
    QVERIFY2(endedFileChanged(r), (std::to_string(r.code) + ", signal " + std::to_string(r.signal) + ": " + r.message).c_str());
    QVERIFY(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden).size() == 1);  // the source only
}

void TestFileChange::fifoRefusedAtOnce()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString fifo = dir.filePath("model.safetensors");
    QVERIFY(::mkfifo(fifo.toLocal8Bit().constData(), 0600) == 0);

    QElapsedTimer timer;
    timer.start();
    auto m = openModel(fifo.toStdString());
    QVERIFY(!m);
    QCOMPARE(m.error().code, std::string("not-a-file"));
    QVERIFY2(m.error().message.find("named pipe") != std::string::npos, m.error().message.c_str());
    QVERIFY(timer.elapsed() < 1000);

    // The CLI through a shell-like run; a hang would hit the 1 s limit below.
    QProcess p;
    timer.restart();
    p.start(QStringLiteral(QUANTLENS_CLI), {QStringLiteral("inspect"), fifo});
    QVERIFY(p.waitForStarted(10000));
    const bool finished = p.waitForFinished(5000);
    if (!finished) {
        p.kill();
        p.waitForFinished(1000);
    }
    QVERIFY2(finished, "quantlens-cli inspect on a FIFO did not return");
    QCOMPARE(p.exitCode(), 1);
    QVERIFY(p.readAllStandardError().contains("named pipe"));
    QVERIFY2(timer.elapsed() < 1000 + 500, qPrintable(QString::number(timer.elapsed())));  // + process start
}

void TestFileChange::socketAndDeviceRefused()
{
    auto dev = openModel("/dev/zero");
    QVERIFY(!dev);
    QVERIFY2(dev.error().message.find("device") != std::string::npos, dev.error().message.c_str());

    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.filePath("s.sock").toStdString();
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    QVERIFY(fd >= 0);
    sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    QVERIFY(path.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    QVERIFY(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    auto s = openModel(path);
    ::close(fd);
    QVERIFY(!s);
    QVERIFY2(s.error().message.find("socket") != std::string::npos, s.error().message.c_str());
}

// An export converts a mapped tensor piece by piece and hands the file pages back
// (Tensor::toFloatReleasingPages): the floats are toFloat's, over more than one piece and
// an odd length, and the tensor reads the same afterwards (the pages come back from the file).
void TestFileChange::releasingPagesKeepsTheValues()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string in = dir.filePath("big.safetensors").toStdString();
    writeFloatModel(in, 2, 2101, 2049);  // 4.3M values per tensor: more than one 4M piece
    auto m = openModel(in);
    QVERIFY(m);
    const Tensor* t = m->find("layer1.weight");
    QVERIFY(t);
    auto a = t->toFloat();
    auto b = t->toFloatReleasingPages();
    QVERIFY(a && b);
    QCOMPARE(b->size(), a->size());
    QVERIFY(std::memcmp(a->data(), b->data(), a->size() * sizeof(float)) == 0);
    auto c = t->toFloat();
    QVERIFY(c && std::memcmp(a->data(), c->data(), a->size() * sizeof(float)) == 0);
    auto d = m->find("layer0.weight")->toFloat();  // its neighbour, sharing a page, intact
    QVERIFY(d && d->size() == a->size());
}

QTEST_GUILESS_MAIN(TestFileChange)
#include "tst_filechange.moc"
