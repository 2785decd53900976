// llama-quantize's type mixes: each tensor's ggml type for q4_k_s / q4_k_m / q5_k_s / q5_k_m
// equals what llama.cpp's own llama_model_quantize chose (tests/data/gguf/mix_expected.json,
// made by tests/scripts/make_gguf_mix_fixtures.py) on stories260K (fallbacks), a 2-layer
// Llama with rows of 256 and a 12-layer one with tied embeddings (use_more_bits, token_embd
// as output); and a mix export of stories260K through the export plan writes those types
// with general.file_type set to the mix's ftype.
#include <QFile>
#include <QTemporaryDir>
#include <QTest>

#include <nlohmann/json.hpp>

#include "io/exporter.h"
#include "io/ggufmix.h"
#include "model.h"
#include "tasks/exportplan.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

nlohmann::json fixture()
{
    QFile f(test::dataPath("gguf/mix_expected.json"));
    if (!f.open(QIODevice::ReadOnly))
        throw std::runtime_error("no gguf/mix_expected.json");
    return nlohmann::json::parse(f.readAll().toStdString());
}

// The fixture's model as names, shapes and metadata: all the rules read.
Model modelOf(const nlohmann::json& j)
{
    Model m;
    m.format = "gguf";
    for (const auto& [k, v] : j["metadata"].items())
        m.metadata.emplace_back(k, v.get<std::string>());
    for (const auto& t : j["tensors"]) {
        Tensor x;
        x.name = t[0].get<std::string>();
        x.shape = t[1].get<std::vector<int64_t>>();
        m.tensors.push_back(std::move(x));
    }
    return m;
}

}  // namespace

class TestGgufMix : public QObject {
    Q_OBJECT
private slots:
    void namesAndFileTypes()
    {
        QCOMPARE(ggufMixFileType(GgufMix::Q4_K_S), 14u);
        QCOMPARE(ggufMixFileType(GgufMix::Q4_K_M), 15u);
        QCOMPARE(ggufMixFileType(GgufMix::Q5_K_S), 16u);
        QCOMPARE(ggufMixFileType(GgufMix::Q5_K_M), 17u);
        for (GgufMix m : allGgufMixes())
            QCOMPARE(int(*parseGgufMix(ggufMixName(m))), int(m));
        QCOMPARE(int(*parseGgufMix("Q4_K_M")), int(GgufMix::Q4_K_M));
        QVERIFY(!parseGgufMix("q3_k_m"));  // needs Q3_K, which Quantlens does not write
        QVERIFY(!parseGgufMix("q4_k"));
    }

    void typesEqualLlamaCpp_data()
    {
        QTest::addColumn<QString>("model");
        QTest::addColumn<QString>("mix");
        for (const char* model : {"stories260K", "llama256", "llama256x12tied"})
            for (GgufMix m : allGgufMixes())
                QTest::newRow((std::string(model) + " " + ggufMixName(m)).c_str())
                    << QString(model) << QString::fromStdString(ggufMixName(m));
    }

    void typesEqualLlamaCpp()
    {
        QFETCH(QString, model);
        QFETCH(QString, mix);
        const nlohmann::json j = fixture()["models"][model.toStdString()];
        const Model m = modelOf(j);
        const nlohmann::json& want = j["types"][mix.toStdString()];
        const std::vector<GgufMixChoice> got = ggufMixTypes(*parseGgufMix(mix.toStdString()), m);
        QCOMPARE(got.size(), m.tensors.size());
        int quantized = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            const std::string name = m.tensors[i].name;
            // Tensors the mix leaves are F32 in these sources, as llama.cpp leaves them.
            const std::string type = got[i].quantize ? ggmlTypeInfo(got[i].type)->name : "f32";
            QVERIFY2(type == want[name].get<std::string>(),
                     (name + ": ours " + type + ", llama.cpp " + want[name].get<std::string>() + " (" + got[i].why + ")").c_str());
            quantized += got[i].quantize ? 1 : 0;
        }
        QVERIFY(quantized > 0);
    }

    // The whole path: plan (the mix picks tensors and types) -> writer -> a file whose
    // tensors have llama.cpp's types and whose general.file_type is MOSTLY_Q4_K_M.
    void exportStoriesAsQ4KM()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto src = openModel(test::sharedModel("stories260K.gguf").toStdString());
        QVERIFY(src.ok());
        ExportPlanOptions po;
        po.mix = GgufMix::Q4_K_M;
        const ExportPlan plan = planExport(*src, Session{}, po);
        QVERIFY(plan.mix.has_value());
        QVERIFY(!plan.items.empty());
        QTemporaryDir tmp;
        ExportOptions eo;
        eo.format = ExportFormat::Gguf;
        eo.outPath = tmp.filePath("s.gguf").toStdString();
        auto r = runExportPlan(*src, plan, eo);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        auto out = openModel(eo.outPath);
        QVERIFY(out.ok());
        std::string fileType;
        for (const auto& [k, v] : out->metadata)
            if (k == "general.file_type")
                fileType = v;
        QCOMPARE(fileType, std::string("15"));
        const nlohmann::json want = fixture()["models"]["stories260K"]["types"]["q4_k_m"];
        for (const Tensor& t : out->tensors) {
            std::string type = t.dtype == DType::Opaque ? t.opaqueType : std::string(dtypeName(t.dtype));
            for (char& c : type)
                c = char(std::tolower(static_cast<unsigned char>(c)));
            std::string w = want[t.name].get<std::string>();
            for (char& c : w)
                c = char(std::tolower(static_cast<unsigned char>(c)));
            QVERIFY2(type == w, (t.name + ": " + type + " vs " + w).c_str());
        }
    }
};

QTEST_GUILESS_MAIN(TestGgufMix)
#include "tst_ggufmix.moc"
