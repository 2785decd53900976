// GGUF reader: fixtures written by tests/scripts/make_gguf_fixtures.py (ggml's reference
// quantizers and dequantizers re-done in numpy), the real stories260K.gguf, and the
// malformed corpus in tests/data/malformed/gguf.
#include <QTest>

#include "io/gguf.h"
#include "io/mappedfile.h"
#include "layers.h"
#include "model.h"
#include "readertestutil.h"

using namespace quantlens;
using quantlens::test::dataPath;
using quantlens::test::loadJson;

namespace {

// Where a tensor's bytes start inside its file: the data must be a view into the mapping.
int64_t fileOffset(const Tensor& t)
{
    auto map = std::static_pointer_cast<const MappedFile>(t.keepAlive);
    return map ? int64_t(t.data.data() - map->bytes().data()) : -1;
}

std::string typeOf(const Tensor& t) { return t.dtype == DType::Opaque ? t.opaqueType : std::string(dtypeName(t.dtype)); }

}  // namespace

class TestGguf : public QObject {
    Q_OBJECT
private slots:
    void typedFile_data();
    void typedFile();
    void metadataSummaries();
    void blockTypes_data();
    void blockTypes();
    void q8_0Reference();
    void realFile();
    void malformed_data();
    void malformed();
};

void TestGguf::typedFile_data()
{
    QTest::addColumn<QString>("file");
    QTest::newRow("v3 header, default alignment") << "types_v3.gguf";
    QTest::newRow("v2 header") << "types_v2.gguf";
    QTest::newRow("v3, general.alignment = 64") << "align64_v3.gguf";
}

void TestGguf::typedFile()
{
    QFETCH(QString, file);
    const auto all = loadJson(dataPath(QStringLiteral("gguf/types_expected.json")));
    QVERIFY(!all.is_discarded() && !all.is_null());
    const auto& exp = all.at(file.toStdString());

    auto m = openModel(dataPath(QStringLiteral("gguf/") + file).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    QCOMPARE(m->format, std::string("gguf"));
    QCOMPARE(test::metaValue(*m, "gguf.version"), std::to_string(exp.at("version").get<int>()));
    QCOMPARE(test::metaValue(*m, "gguf.alignment"), std::to_string(exp.at("alignment").get<int>()));
    // KVs plus our two gguf.* entries.
    QCOMPARE(m->metadata.size(), exp.at("kv_count").get<size_t>() + 2);
    const auto& tensors = exp.at("tensors");
    QCOMPARE(m->tensors.size(), tensors.size());
    const int64_t align = exp.at("alignment").get<int64_t>();
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& e = tensors[i];
        const Tensor& t = m->tensors[i];
        QCOMPARE(t.name, e.at("name").get<std::string>());
        QCOMPARE(t.shape, e.at("shape").get<std::vector<int64_t>>());
        QCOMPARE(typeOf(t), e.at("dtype").get<std::string>());
        QVERIFY2(fileOffset(t) >= 0 && fileOffset(t) % align == 0, t.name.c_str());
        if (e.contains("bytes")) {  // an opaque i-quant: listed, sized, not decoded
            QVERIFY(!t.decodable());
            QCOMPARE(t.note, std::string("not decoded"));
            QCOMPARE(int64_t(t.data.size()), e.at("bytes").get<int64_t>());
            QVERIFY(!t.toFloat().ok());
            continue;
        }
        auto v = t.toFloat();
        QVERIFY2(v.ok(), v.ok() ? "" : v.error().oneLine().c_str());
        const auto want = e.at("values").get<std::vector<float>>();
        QCOMPARE(v->size(), want.size());
        for (size_t k = 0; k < want.size(); ++k)
            QVERIFY2((*v)[k] == want[k], (t.name + " element " + std::to_string(k)).c_str());
    }
}

void TestGguf::metadataSummaries()
{
    auto m = readGguf(dataPath(QStringLiteral("gguf/types_v3.gguf")).toStdString());
    QVERIFY(m.ok());
    QCOMPARE(test::metaValue(*m, "general.architecture"), std::string("llama"));
    QCOMPARE(test::metaValue(*m, "test.u8"), std::string("200"));
    QCOMPARE(test::metaValue(*m, "test.i8"), std::string("-100"));
    QCOMPARE(test::metaValue(*m, "test.u32"), std::string("4294967295"));
    QCOMPARE(test::metaValue(*m, "test.i32"), std::string("-2000000000"));
    QCOMPARE(test::metaValue(*m, "test.u64"), std::string("9223372036854775813"));
    QCOMPARE(test::metaValue(*m, "test.i64"), std::string("-4611686018427387904"));
    QCOMPARE(test::metaValue(*m, "test.f32"), std::string("0.25"));
    QCOMPARE(test::metaValue(*m, "test.f64"), std::string("-1.5e+300"));
    QCOMPARE(test::metaValue(*m, "test.bool"), std::string("true"));
    QCOMPARE(test::metaValue(*m, "test.long_string"), std::string(200, 'x') + "\xE2\x80\xA6");
    QCOMPARE(test::metaValue(*m, "tokenizer.ggml.tokens"), std::string("[5 strings: '<unk>', '<s>', '</s>', ...]"));
    QCOMPARE(test::metaValue(*m, "test.u32_array"), std::string("[4 uint32s: 1, 2, 3, ...]"));
    QCOMPARE(test::metaValue(*m, "test.nested"), std::string("[2 arrays: [2 int8s: 1, -1], [0 int8s]]"));
    QCOMPARE(test::metaValue(*m, "test.empty_array"), std::string("[0 float32s]"));
}

void TestGguf::blockTypes_data()
{
    QTest::addColumn<QString>("tensor");
    QTest::newRow("Q8_0 (roundf, fp16 scale)") << "q8_0.weight";
    QTest::newRow("Q4_0 (signed absmax / -8)") << "q4_0.weight";
    QTest::newRow("Q4_1 (scale and min)") << "q4_1.weight";
    QTest::newRow("Q5_0 (high bits in qh)") << "q5_0.weight";
    QTest::newRow("Q5_1 (qh and min)") << "q5_1.weight";
    QTest::newRow("Q2_K (4-bit scale and min per 16)") << "q2_k.weight";
    QTest::newRow("Q3_K (hmask, packed 6-bit scales)") << "q3_k.weight";
    QTest::newRow("Q4_K (6-bit scales and mins per 32)") << "q4_k.weight";
    QTest::newRow("Q5_K (as Q4_K plus qh)") << "q5_k.weight";
    QTest::newRow("Q6_K (ql, qh, int8 scales)") << "q6_k.weight";
}

void TestGguf::blockTypes()
{
    QFETCH(QString, tensor);
    const auto all = loadJson(dataPath(QStringLiteral("gguf/blocks_expected.json")));
    QVERIFY(!all.is_discarded() && !all.is_null());
    const auto& e = all.at(tensor.toStdString());
    auto m = openModel(dataPath(QStringLiteral("gguf/blocks.gguf")).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    const Tensor* t = m->find(tensor.toStdString());
    QVERIFY(t);
    QCOMPARE(std::string(dtypeName(t->dtype)), e.at("dtype").get<std::string>());
    QCOMPARE(t->shape, e.at("shape").get<std::vector<int64_t>>());
    QCOMPARE(int64_t(t->data.size()), e.at("bytes").get<int64_t>());
    QCOMPARE(t->note, "already quantized (" + e.at("dtype").get<std::string>() + ")");
    auto v = t->toFloat();
    QVERIFY(v.ok());
    const auto want = e.at("values").get<std::vector<float>>();
    QCOMPARE(v->size(), want.size());
    for (size_t k = 0; k < want.size(); ++k)
        if ((*v)[k] != want[k])
            QFAIL(qPrintable(QStringLiteral("element %1: got %2, ggml gives %3").arg(k).arg((*v)[k], 0, 'g', 9).arg(want[k], 0, 'g', 9)));
}

void TestGguf::q8_0Reference()
{
    const auto e = loadJson(dataPath(QStringLiteral("gguf/q8_0_reference.json")));
    QVERIFY(!e.is_discarded() && !e.is_null());
    auto m = openModel(dataPath(QStringLiteral("gguf/q8_0_reference.gguf")).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    const Tensor* t = m->find(e.at("tensor").get<std::string>());
    QVERIFY(t);
    QCOMPARE(t->dtype, DType::Q8_0);
    QCOMPARE(t->shape, e.at("shape").get<std::vector<int64_t>>());
    // The stored blocks are exactly what the JSON says: fp16 scale bits, then 32 int8.
    const auto q = e.at("int8").get<std::vector<int>>();
    const auto d = e.at("scale_fp16_bits").get<std::vector<int>>();
    QCOMPARE(int64_t(t->data.size()), int64_t(d.size()) * 34);
    for (size_t b = 0; b < d.size(); ++b) {
        const auto* p = reinterpret_cast<const unsigned char*>(t->data.data()) + b * 34;
        QCOMPARE(int(p[0] | (p[1] << 8)), d[b]);
        for (int i = 0; i < 32; ++i)
            QCOMPARE(int(static_cast<signed char>(p[2 + i])), q[b * 32 + size_t(i)]);
    }
    auto v = t->toFloat();
    QVERIFY(v.ok());
    QCOMPARE(*v, e.at("dequantized").get<std::vector<float>>());
}

void TestGguf::realFile()
{
    QL_REQUIRE_SHARED_MODELS();
    const auto e = loadJson(dataPath(QStringLiteral("gguf/real_expected.json")));
    QVERIFY(!e.is_discarded() && !e.is_null());
    auto m = openModel(test::sharedModel(QStringLiteral("stories260K.gguf")).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    QCOMPARE(m->format, std::string("gguf"));
    QCOMPARE(test::metaValue(*m, "gguf.version"), std::to_string(e.at("version").get<int>()));
    QCOMPARE(m->metadata.size(), e.at("kv_count").get<size_t>() + 2);
    for (const auto& [k, v] : e.at("metadata").items())
        QCOMPARE(test::metaValue(*m, k), v.get<std::string>());
    const auto head = e.at("tokens_head").get<std::vector<std::string>>();
    QCOMPARE(test::metaValue(*m, "tokenizer.ggml.tokens"),
             "[" + std::to_string(e.at("token_count").get<int>()) + " strings: '" + head[0] + "', '" + head[1] + "', '" + head[2] + "', ...]");
    const auto& tensors = e.at("tensors");
    QCOMPARE(m->tensors.size(), tensors.size());
    QCOMPARE(m->tensors.size(), e.at("tensor_count").get<size_t>());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& te = tensors[i];
        const Tensor& t = m->tensors[i];
        QCOMPARE(t.name, te.at("name").get<std::string>());
        QCOMPARE(t.shape, te.at("shape").get<std::vector<int64_t>>());
        QCOMPARE(std::string(dtypeName(t.dtype)), te.at("dtype").get<std::string>());
        QVERIFY(fileOffset(t) >= e.at("data_start").get<int64_t>());
        auto v = t.toFloat();
        QVERIFY(v.ok());
        const auto s = test::statsOf(*v);
        QCOMPARE(s.min, te.at("min").get<double>());
        QCOMPARE(s.max, te.at("max").get<double>());
        QVERIFY2(test::closeRel(s.mean, te.at("mean").get<double>()), t.name.c_str());
        QVERIFY2(test::closeRel(s.std, te.at("std").get<double>()), t.name.c_str());
    }
    QCOMPARE(m->find("token_embd.weight")->shape, (std::vector<int64_t>{512, 64}));
    // GGUF weights are [out, in] like PyTorch; the embedding is not a linear layer.
    const auto layers = findLinearLayers(*m);
    const LinearLayer* down = findLinearLayer(layers, "blk.0.ffn_down");
    QVERIFY(down);
    QCOMPARE(down->inFeatures, int64_t(172));
    QCOMPARE(down->outFeatures, int64_t(64));
    QVERIFY(!down->transposed());
    QVERIFY(!findLinearLayer(layers, "token_embd"));
}

void TestGguf::malformed_data() { test::addMalformedRows(QStringLiteral("gguf"), 20); }

void TestGguf::malformed() { test::checkMalformedRow(QStringLiteral("gguf")); }

QTEST_GUILESS_MAIN(TestGguf)
#include "tst_gguf.moc"
