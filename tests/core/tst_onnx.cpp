// ONNX reader: fixtures from tests/scripts/make_onnx_fixtures.py (built with the onnx
// package and checked by onnx.checker, plus hand-encoded protobuf for what onnx never
// writes), the real burn_mnist.onnx, and the malformed corpus in tests/data/malformed/onnx.
#include <QTest>

#include "io/mappedfile.h"
#include "io/onnx.h"
#include "io/protowire.h"
#include "layers.h"
#include "model.h"
#include "readertestutil.h"

using namespace quantlens;
using quantlens::test::dataPath;
using quantlens::test::loadJson;

class TestOnnx : public QObject {
    Q_OBJECT
private slots:
    void fixtures_data();
    void fixtures();
    void typedMetadataAndLayouts();
    void externalDataIsAViewIntoItsFile();
    void varints_data();
    void varints();
    void realFile();
    void malformed_data();
    void malformed();
};

void TestOnnx::fixtures_data()
{
    QTest::addColumn<QString>("file");
    QTest::newRow("raw and typed initializers, subgraph, sparse, strings") << "typed.onnx";
    QTest::newRow("external data in weights/external.bin") << "external/external.onnx";
    QTest::newRow("unpacked dims, float_data and int32_data") << "unpacked.onnx";
}

void TestOnnx::fixtures()
{
    QFETCH(QString, file);
    const auto all = loadJson(dataPath(QStringLiteral("onnx/expected.json")));
    QVERIFY(all.is_object());
    const auto& exp = all.at(file.toStdString());
    auto m = openModel(dataPath(QStringLiteral("onnx/") + file).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    QCOMPARE(m->format, std::string("onnx"));
    const auto& tensors = exp.at("tensors");
    QCOMPARE(m->tensors.size(), tensors.size());
    const void* mapping = nullptr;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& e = tensors[i];
        const Tensor& t = m->tensors[i];
        QCOMPARE(t.name, e.at("name").get<std::string>());
        QCOMPARE(t.shape, e.at("shape").get<std::vector<int64_t>>());
        QCOMPARE(std::string(dtypeName(t.dtype)), e.at("dtype").get<std::string>());
        if (e.contains("layout"))
            QVERIFY2((t.layout == Layout::InOut) == (e.at("layout") == "inout"), t.name.c_str());
        // raw_data stays in the one mapping of the file (no copy); typed fields own a buffer each.
        if (e.contains("raw")) {
            if (!mapping && e.at("raw").get<bool>())
                mapping = t.keepAlive.get();
            QVERIFY2((t.keepAlive.get() == mapping) == e.at("raw").get<bool>(), t.name.c_str());
        }
        auto v = t.toFloat();
        QVERIFY2(v.ok(), v.ok() ? "" : v.error().oneLine().c_str());
        const auto want = e.at("values").get<std::vector<float>>();
        QCOMPARE(v->size(), want.size());
        for (size_t k = 0; k < want.size(); ++k)
            QVERIFY2((*v)[k] == want[k], (t.name + " element " + std::to_string(k)).c_str());
    }
}

void TestOnnx::typedMetadataAndLayouts()
{
    const auto all = loadJson(dataPath(QStringLiteral("onnx/expected.json")));
    auto m = readOnnx(dataPath(QStringLiteral("onnx/typed.onnx")).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    for (const auto& [k, v] : all.at("typed.onnx").at("metadata").items())
        QCOMPARE(test::metaValue(*m, k), v.get<std::string>());
    // MatMul and Gemm(transB=0) weights are [in, out]; Gemm(transB=1) is [out, in].
    const auto layers = findLinearLayers(*m);
    const LinearLayer* proj = findLinearLayer(layers, "proj");
    QVERIFY(proj);
    QVERIFY(proj->transposed());
    QCOMPARE(proj->inFeatures, int64_t(4));
    QCOMPARE(proj->outFeatures, int64_t(6));
    const LinearLayer* g0 = findLinearLayer(layers, "gemm0");
    QVERIFY(g0 && g0->transposed());
    QCOMPARE(g0->inFeatures, int64_t(6));
    const LinearLayer* g1 = findLinearLayer(layers, "gemm1");
    QVERIFY(g1 && !g1->transposed());
    QCOMPARE(g1->inFeatures, int64_t(6));
    QCOMPARE(g1->outFeatures, int64_t(5));
    const LinearLayer* fc = findLinearLayer(layers, "fc");
    QVERIFY(fc && fc->bias);
}

void TestOnnx::externalDataIsAViewIntoItsFile()
{
    const std::string path = dataPath(QStringLiteral("onnx/external/external.onnx")).toStdString();
    auto m = openModel(path);
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    QCOMPARE(m->files.size(), size_t(2));
    QVERIFY(m->files[1].find("weights/external.bin") != std::string::npos);
    for (const Tensor& t : m->tensors) {
        auto map = std::static_pointer_cast<const MappedFile>(t.keepAlive);
        QVERIFY(map);
        QVERIFY(map->path().find("external.bin") != std::string::npos);
        QVERIFY(t.data.data() >= map->bytes().data() && t.data.data() + t.data.size() <= map->bytes().data() + map->size());
    }
}

void TestOnnx::varints_data()
{
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<bool>("ok");
    QTest::addColumn<quint64>("value");
    QTest::newRow("zero") << QByteArray("\x00", 1) << true << quint64(0);
    QTest::newRow("300") << QByteArray("\xac\x02", 2) << true << quint64(300);
    QTest::newRow("max uint64 in 10 bytes") << QByteArray("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10) << true << ~quint64(0);
    QTest::newRow("10th byte carries more than 1 bit") << QByteArray("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10) << false << quint64(0);
    QTest::newRow("11 bytes") << QByteArray("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00", 11) << false << quint64(0);
    QTest::newRow("truncated") << QByteArray("\x80", 1) << false << quint64(0);
    QTest::newRow("empty") << QByteArray() << false << quint64(0);
}

void TestOnnx::varints()
{
    QFETCH(QByteArray, bytes);
    QFETCH(bool, ok);
    QFETCH(quint64, value);
    size_t pos = 0;
    uint64_t v = 0;
    const auto span = std::as_bytes(std::span<const char>(bytes.constData(), size_t(bytes.size())));
    QCOMPARE(ProtoReader::readVarint(span, pos, v), ok);
    if (ok) {
        QCOMPARE(quint64(v), value);
        QCOMPARE(pos, size_t(bytes.size()));
    }
}

void TestOnnx::realFile()
{
    QL_REQUIRE_SHARED_MODELS();
    const auto e = loadJson(dataPath(QStringLiteral("onnx/real_expected.json")));
    QVERIFY(e.is_object());
    auto m = openModel(test::sharedModel(QStringLiteral("burn_mnist.onnx")).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    QCOMPARE(m->format, std::string("onnx"));
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
        auto v = t.toFloat();
        QVERIFY(v.ok());
        const auto s = test::statsOf(*v);
        QCOMPARE(s.min, te.at("min").get<double>());
        QCOMPARE(s.max, te.at("max").get<double>());
        QVERIFY2(test::closeRel(s.mean, te.at("mean").get<double>()), t.name.c_str());
        QVERIFY2(test::closeRel(s.std, te.at("std").get<double>()), t.name.c_str());
    }
    // Gemm with transB=1: fc1.weight is [out, in] = [32, 11616], as in PyTorch.
    const auto layers = findLinearLayers(*m);
    const LinearLayer* fc1 = findLinearLayer(layers, "fc1");
    QVERIFY(fc1);
    QVERIFY(!fc1->transposed());
    QCOMPARE(fc1->inFeatures, int64_t(11616));
    QCOMPARE(fc1->outFeatures, int64_t(32));
    QVERIFY(fc1->bias);
}

void TestOnnx::malformed_data() { test::addMalformedRows(QStringLiteral("onnx"), 20); }

void TestOnnx::malformed() { test::checkMalformedRow(QStringLiteral("onnx")); }

QTEST_GUILESS_MAIN(TestOnnx)
#include "tst_onnx.moc"
