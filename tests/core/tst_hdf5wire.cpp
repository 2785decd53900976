// The messages of the HDF5 reading child (io/hdf5wire.h): a Model survives the trip, and
// nothing a corrupted child could send makes the parent accept a tensor outside the data.
#include <QFile>
#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "io/hdf5wire.h"
#include "io/mappedfile.h"
#include "testsupport.h"

using namespace quantlens;
using namespace quantlens::hdf5wire;

namespace {

const std::string kPath = "/models/x.h5";

// The payload of a whole 'R' frame.
std::string payloadOf(const std::string& frame)
{
    return frame.substr(5);
}

// Both sides of a child's result: a memfd stand-in, a real mapped file and the Model whose
// tensors point into them.
struct Fixture {
    QTemporaryDir dir;
    std::vector<std::byte> shared;
    std::shared_ptr<const MappedFile> file;
    Model model;
    std::vector<Region> regions;

    bool init()
    {
        const std::string path = dir.filePath(QStringLiteral("data.bin")).toStdString();
        {
            std::ofstream f(path, std::ios::binary);
            for (int i = 0; i < 4096; ++i)
                f.put(char(i * 7));
        }
        auto m = MappedFile::open(path);
        if (!m)
            return false;
        file = *m;
        shared.resize(8192);
        for (size_t i = 0; i < shared.size(); ++i)
            shared[i] = std::byte(i * 13);
        // The child maps regions at page offsets of the memfd; this one at offset 4096.
        regions.push_back({shared.data() + 4096, 4096, 4096});

        model.format = "keras-h5";
        model.metadata = {{"keras_version", "2.3.1"}, {"backend", "tensorflow"}};
        Tensor inFile;
        inFile.name = "dense/kernel:0";
        inFile.dtype = DType::F32;
        inFile.shape = {16, 8};
        inFile.layout = Layout::InOut;
        inFile.bigEndian = true;
        inFile.data = file->bytes().subspan(512, 16 * 8 * 4);
        inFile.keepAlive = file;
        Tensor inShared;
        inShared.name = "dense/bias:0";
        inShared.dtype = DType::I16;
        inShared.shape = {100};
        inShared.group = "optimizer";
        inShared.note = "converted";
        inShared.data = std::span<const std::byte>(shared.data() + 4096 + 64, 200);
        Tensor empty;
        empty.name = "empty";
        empty.dtype = DType::F64;
        empty.shape = {0, 3};
        model.tensors = {inFile, inShared, empty};
        return true;
    }

    // The parent's view of the same memory: the memfd's bytes start at shared[0].
    BackingSource fileSource() const
    {
        return [this]() -> Result<Backing> { return Backing{file->bytes(), file}; };
    }
    BackingSource sharedSource() const
    {
        return [this]() -> Result<Backing> { return Backing{std::span<const std::byte>(shared), nullptr}; };
    }
};

}  // namespace

class TestHdf5Wire : public QObject {
    Q_OBJECT
private slots:
    void modelRoundTrip();
    void errorRoundTrip();
    void framesInPieces();
    void malformedFrames();
    void everyTruncationRejected();
    void corruptionStaysInsideTheData();
    void fuzzSeedsStillDecode();
};

void TestHdf5Wire::modelRoundTrip()
{
    Fixture fx;
    QVERIFY(fx.init());
    auto got = decodeResult(payloadOf(resultFrame(fx.model, fx.regions)), kPath, fx.fileSource(), fx.sharedSource());
    QVERIFY2(got.ok(), got.ok() ? "" : got.error().oneLine().c_str());
    QCOMPARE(got->format, fx.model.format);
    QCOMPARE(got->files, std::vector<std::string>{kPath});
    QVERIFY(got->metadata == fx.model.metadata);
    QCOMPARE(got->tensors.size(), fx.model.tensors.size());
    for (size_t i = 0; i < got->tensors.size(); ++i) {
        const Tensor& a = fx.model.tensors[i];
        const Tensor& b = got->tensors[i];
        QCOMPARE(b.name, a.name);
        QVERIFY(b.dtype == a.dtype);
        QCOMPARE(b.shape, a.shape);
        QVERIFY(b.layout == a.layout);
        QCOMPARE(b.bigEndian, a.bigEndian);
        QCOMPARE(b.group, a.group);
        QCOMPARE(b.note, a.note);
        QCOMPARE(b.data.size(), a.data.size());
        QVERIFY(a.data.empty() || std::memcmp(b.data.data(), a.data.data(), a.data.size()) == 0);
    }
    // The file tensor is a view of the same mapping; the memfd one of the parent's copy.
    QCOMPARE(got->tensors[0].data.data(), fx.model.tensors[0].data.data());
    QCOMPARE(got->tensors[1].data.data(), fx.shared.data() + 4096 + 64);
    QVERIFY(got->tensors[0].keepAlive == fx.file);
}

void TestHdf5Wire::errorRoundTrip()
{
    const Error e = makeError("truncated", "raw data runs past the end", "/child/path.h5", 77, "w:0");
    auto got = decodeResult(payloadOf(resultFrame(Result<Model>(e), {})), kPath, {}, {});
    QVERIFY(!got.ok());
    QCOMPARE(got.error().code, e.code);
    QCOMPARE(got.error().message, e.message);
    QCOMPARE(got.error().offset, int64_t(77));
    QCOMPARE(got.error().tensor, e.tensor);
    QCOMPARE(got.error().path, kPath);  // the parent's name for the file
}

void TestHdf5Wire::framesInPieces()
{
    Fixture fx;
    QVERIFY(fx.init());
    const std::string stream = progressFrame(0.0) + progressFrame(0.25) + progressFrame(std::nan("")) +
                               progressFrame(7.0) + resultFrame(fx.model, fx.regions);
    std::vector<double> seen;
    std::string result;
    const FrameReader::Events on{[&](double f) {
                                     seen.push_back(f);
                                     return true;
                                 },
                                 [&](std::string r) { result = std::move(r); }};
    FrameReader reader;
    for (char c : stream)  // one byte at a time: every frame arrives split
        QVERIFY(reader.feed(&c, 1, on));
    QCOMPARE(seen, (std::vector<double>{0.0, 0.25, 0.0, 1.0}));  // NaN -> 0, clamped to 1
    QCOMPARE(result, payloadOf(resultFrame(fx.model, fx.regions)));

    FrameReader refusing;
    const std::string two = progressFrame(0.1) + progressFrame(0.2);
    int calls = 0;
    QVERIFY(!refusing.feed(two.data(), two.size(), {[&](double) { return ++calls < 1; }, {}}));
    QVERIFY(refusing.cancelled());
    QCOMPARE(calls, 1);
}

void TestHdf5Wire::malformedFrames()
{
    const auto rejects = [](std::string bytes) {
        FrameReader r;
        return !r.feed(bytes.data(), bytes.size(), {[](double) { return true; }, [](std::string) {}}) && !r.cancelled() &&
               !r.error().empty();
    };
    std::string badKind = progressFrame(0.5);
    badKind[0] = 'X';
    QVERIFY(rejects(badKind));
    std::string shortProgress = progressFrame(0.5);
    shortProgress[1] = 4;  // a 'P' frame must carry exactly one double
    QVERIFY(rejects(shortProgress));
    std::string huge("R\xff\xff\xff\xff", 5);  // 4 GiB announced
    QVERIFY(rejects(huge));
}

void TestHdf5Wire::everyTruncationRejected()
{
    Fixture fx;
    QVERIFY(fx.init());
    for (const auto& payload : {payloadOf(resultFrame(fx.model, fx.regions)),
                                payloadOf(resultFrame(Result<Model>(makeError("x", "y")), {}))}) {
        for (size_t n = 0; n < payload.size(); ++n) {
            auto got = decodeResult(payload.substr(0, n), kPath, fx.fileSource(), fx.sharedSource());
            QVERIFY2(!got.ok() || n == payload.size(), qPrintable(QString::number(n)));
            if (!got.ok() && got.error().code != "x")
                QCOMPARE(got.error().code, std::string("bad-hdf5"));
        }
    }
}

// A child whose memory libhdf5 corrupted could send anything. 20000 payloads with one to
// four random bytes changed: whatever is accepted must have the size its shape says and lie
// entirely inside the file or the shared data.
void TestHdf5Wire::corruptionStaysInsideTheData()
{
    Fixture fx;
    QVERIFY(fx.init());
    const std::string good = payloadOf(resultFrame(fx.model, fx.regions));
    std::mt19937 rng(20261127);
    int accepted = 0, rejected = 0;
    const auto inside = [](std::span<const std::byte> part, std::span<const std::byte> all) {
        return part.data() >= all.data() && part.data() + part.size() <= all.data() + all.size();
    };
    for (int i = 0; i < 20000; ++i) {
        std::string p = good;
        for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k)
            p[rng() % p.size()] = char(rng());
        auto got = decodeResult(p, kPath, fx.fileSource(), fx.sharedSource());
        if (!got.ok()) {
            ++rejected;
            continue;
        }
        ++accepted;
        for (const Tensor& t : got->tensors) {
            const auto numel = checkedNumel(t.shape.data(), t.shape.size());
            QVERIFY(numel.has_value());
            QCOMPARE(int64_t(t.data.size()), byteSizeFor(t.dtype, *numel).value_or(-1));
            QVERIFY2(t.data.empty() || inside(t.data, fx.file->bytes()) || inside(t.data, std::span<const std::byte>(fx.shared)),
                     t.name.c_str());
        }
    }
    qInfo("accepted %d, rejected %d of 20000 corrupted results", accepted, rejected);
    QVERIFY(rejected > 1000);  // most byte changes hit a length, count, type or range
}

// The fuzzer's seeds are written by hand (see tests/fuzz/fuzz_hdf5wire.cpp): if the format
// changes without them, the fuzzer would start from garbage.
void TestHdf5Wire::fuzzSeedsStillDecode()
{
    const auto read = [](const char* name) {
        QFile f(quantlens::test::dataPath(QStringLiteral("../fuzz/seeds/hdf5wire/") + QLatin1String(name)));
        return f.open(QIODevice::ReadOnly) ? f.readAll().toStdString() : std::string();
    };
    std::vector<std::byte> file(4096), shared(8192);
    const BackingSource fileSrc = [&]() -> Result<Backing> { return Backing{file, nullptr}; };
    const BackingSource sharedSrc = [&]() -> Result<Backing> { return Backing{shared, nullptr}; };
    for (const char* name : {"progress_and_model.bin", "error.bin"}) {
        const std::string bytes = read(name);
        QVERIFY2(bytes.size() > 1, name);
        std::vector<double> seen;
        std::string result;
        FrameReader reader;
        QVERIFY(reader.feed(bytes.data() + 1, bytes.size() - 1,  // byte 0 is the fuzzer's read size
                            {[&](double f) {
                                 seen.push_back(f);
                                 return true;
                             },
                             [&](std::string r) { result = std::move(r); }}));
        auto m = decodeResult(result, kPath, fileSrc, sharedSrc);
        if (std::string(name) == "error.bin") {
            QVERIFY(!m.ok());
            QCOMPARE(m.error().code, std::string("truncated"));
            continue;
        }
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
        QCOMPARE(seen, std::vector<double>{0.25});
        QCOMPARE(m->tensors.size(), size_t(3));
        QVERIFY(m->tensors[1].bigEndian && m->tensors[1].dtype == DType::I16);
        QCOMPARE(m->tensors[1].data.data(), shared.data() + 128);
    }
}

QTEST_GUILESS_MAIN(TestHdf5Wire)
#include "tst_hdf5wire.moc"
