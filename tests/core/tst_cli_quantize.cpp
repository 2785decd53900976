// quantlens-cli quantize, run as a user runs it (the built binary, through QProcess):
// the --json document of DESIGN.md, exit codes 0/1/2, and the export files it writes.
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <algorithm>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "io/demomodel.h"
#include "clirunner.h"
#include "testsupport.h"

using namespace quantlens;
using json = nlohmann::json;

namespace {

using Run = quantlens::test::CliRun;
Run cli(const QStringList& args, const QString& cwd = {})
{
    quantlens::test::CliOptions o;
    o.cwd = cwd;
    return quantlens::test::runCli(args, o);
}

QByteArray fileBytes(const QString& path)
{
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

const char* const kFields[] = {"name", "scheme", "granularity", "bits", "scale", "zero_point", "range", "mse",
                               "sqnr_db", "cosine", "max_abs_error", "clamped_fraction", "bytes_before", "bytes_after"};

}  // namespace

class TestCliQuantize : public QObject {
    Q_OBJECT
private slots:
    void seedOnDemoJson()
    {
        QTemporaryDir tmp;
        const QString out = tmp.filePath(QStringLiteral("x.h5"));
        const Run r = cli({QStringLiteral("quantize"), QStringLiteral("demo"), QStringLiteral("--all-linear"), QStringLiteral("--scheme"),
                           QStringLiteral("seed"), QStringLiteral("--out"), out, QStringLiteral("--json")});
        QVERIFY(!r.crashed);
        QVERIFY2(r.code == 0, r.err.constData());
        // stdout is exactly one JSON document; progress went to stderr.
        const json doc = json::parse(r.out.toStdString(), nullptr, false);
        QVERIFY2(!doc.is_discarded(), r.out.left(200).constData());
        QVERIFY(!r.err.isEmpty());
        QVERIFY(QFile::exists(out));

        QVERIFY(doc["tensors"].is_array());
        QCOMPARE(doc["tensors"].size(), size_t(12));  // 2 layers x (q, k, v, out_lin, lin1, lin2)
        int64_t before = 0, after = 0;
        for (const json& t : doc["tensors"]) {
            for (const char* f : kFields)
                QVERIFY2(t.contains(f), f);
            QCOMPARE(t["scheme"].get<std::string>(), std::string("seed"));
            QCOMPARE(t["granularity"].get<std::string>(), std::string("tensor"));
            QCOMPARE(t["bits"].get<int>(), 8);
            QVERIFY(t["scale"].is_number_float());
            QVERIFY(t["zero_point"].is_number_integer());
            QCOMPARE(t["zero_point"].get<int>(), 0);
            QVERIFY(t["range"].is_array() && t["range"].size() == 2);
            QVERIFY(t["range"][0].get<double>() < t["range"][1].get<double>());
            QVERIFY(t["sqnr_db"].get<double>() > 15.0);
            QVERIFY(t["cosine"].get<double>() > 0.98);  // the demo's outliers cost the seed ~17-25 dB
            before += t["bytes_before"].get<int64_t>();
            after += t["bytes_after"].get<int64_t>();
        }
        const json& total = doc["total"];
        QCOMPARE(total["bytes_before"].get<int64_t>(), before);
        QCOMPARE(total["bytes_after"].get<int64_t>(), after);
        const double ratio = total["ratio"].get<double>();
        QVERIFY2(ratio > 3.99 && ratio < 4.0, qPrintable(QString::number(ratio)));
        QCOMPARE(ratio, double(before) / double(after));

        // The seed's scale is (max - min) / 255 computed in float32, as in the PyTorch snippet.
        const Model m = makeDemoModel();
        const std::string name = "distilbert.transformer.layer.0.attention.out_lin.weight";
        const std::vector<float> w = *m.find(name)->toFloat();
        const auto [mn, mx] = std::minmax_element(w.begin(), w.end());
        const float want = (*mx - *mn) / 255.0f;
        const auto it = std::find_if(doc["tensors"].begin(), doc["tensors"].end(), [&](const json& t) { return t["name"] == name; });
        QVERIFY(it != doc["tensors"].end());
        QCOMPARE(float((*it)["scale"].get<double>()), want);
        QCOMPARE(float((*it)["range"][0].get<double>()), *mn);
        QCOMPARE(float((*it)["range"][1].get<double>()), *mx);
        QCOMPARE((*it)["bytes_before"].get<int64_t>(), int64_t(768 * 768 * 4));
        QCOMPARE((*it)["bytes_after"].get<int64_t>(), int64_t(768 * 768 + 4 + 4));
    }

    void perChannelListsScales()
    {
        QTemporaryDir tmp;
        const Run r = cli({QStringLiteral("quantize"), QStringLiteral("demo"), QStringLiteral("--tensor"),
                           QStringLiteral("distilbert.transformer.layer.0.attention.q_lin"),  // a layer prefix works too
                           QStringLiteral("--scheme"), QStringLiteral("torch-symmetric"), QStringLiteral("--granularity"),
                           QStringLiteral("channel"), QStringLiteral("--out"), tmp.filePath(QStringLiteral("q.safetensors")),
                           QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const json doc = json::parse(r.out.toStdString());
        QCOMPARE(doc["tensors"].size(), size_t(1));
        const json& t = doc["tensors"][0];
        QCOMPARE(t["name"].get<std::string>(), std::string("distilbert.transformer.layer.0.attention.q_lin.weight"));
        QCOMPARE(t["granularity"].get<std::string>(), std::string("channel"));
        QVERIFY(t["scale"].is_array());
        QCOMPARE(t["scale"].size(), size_t(768));
        QCOMPARE(t["zero_point"].size(), size_t(768));
        for (const json& z : t["zero_point"])
            QCOMPARE(z.get<int>(), 0);
        QCOMPARE(t["bytes_after"].get<int64_t>(), int64_t(768 * 768 + 768 * 8));
        QVERIFY(QFile::exists(tmp.filePath(QStringLiteral("q.safetensors"))));
    }

    void exitCodes_data()
    {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<int>("code");
        QTest::addColumn<QString>("stderrHas");
        const QString q = QStringLiteral("quantize"), demo = QStringLiteral("demo"), all = QStringLiteral("--all-linear");
        const QString out = QStringLiteral("--out"), h5 = QStringLiteral("x.h5");
        const QString lnw = QStringLiteral("distilbert.embeddings.LayerNorm.weight");
        QTest::newRow("tensor that does not exist") << QStringList{q, demo, QStringLiteral("--tensor"), QStringLiteral("no.such.weight"), out, h5} << 1 << QStringLiteral("no.such.weight");
        QTest::newRow("model file that does not exist") << QStringList{q, QStringLiteral("/nonexistent/m.safetensors"), all, out, h5} << 1 << QStringLiteral("/nonexistent/m.safetensors");
        QTest::newRow("per-channel on a vector") << QStringList{q, demo, QStringLiteral("--tensor"), lnw, QStringLiteral("--granularity"), QStringLiteral("channel"), out, h5} << 1 << QStringLiteral("rank");
        QTest::newRow("unknown flag") << QStringList{q, demo, all, QStringLiteral("--bogus"), out, h5} << 2 << QStringLiteral("--bogus");
        QTest::newRow("unknown scheme") << QStringList{q, demo, all, QStringLiteral("--scheme"), QStringLiteral("int4-magic"), out, h5} << 2 << QStringLiteral("int4-magic");
        QTest::newRow("bad granularity") << QStringList{q, demo, all, QStringLiteral("--granularity"), QStringLiteral("group:x"), out, h5} << 2 << QStringLiteral("granularity");
        QTest::newRow("bad calibration") << QStringList{q, demo, all, QStringLiteral("--calib"), QStringLiteral("guess"), out, h5} << 2 << QStringLiteral("calib");
        QTest::newRow("bits out of range") << QStringList{q, demo, all, QStringLiteral("--bits"), QStringLiteral("9"), out, h5} << 2 << QStringLiteral("bits");
        QTest::newRow("bad dtype") << QStringList{q, demo, all, QStringLiteral("--dtype"), QStringLiteral("int16"), out, h5} << 2 << QStringLiteral("dtype");
        QTest::newRow("unsigned q8_0") << QStringList{q, demo, all, QStringLiteral("--scheme"), QStringLiteral("q8_0"), QStringLiteral("--dtype"), QStringLiteral("uint8"), out, h5} << 2 << QStringLiteral("q8_0");
        QTest::newRow("neither --tensor nor --all-linear") << QStringList{q, demo, out, h5} << 2 << QStringLiteral("--all-linear");
        QTest::newRow("both --tensor and --all-linear") << QStringList{q, demo, all, QStringLiteral("--tensor"), lnw, out, h5} << 2 << QStringLiteral("exclude");
        QTest::newRow("no output") << QStringList{q, demo, all} << 2 << QStringLiteral("--out");
        QTest::newRow("unknown output type") << QStringList{q, demo, all, out, QStringLiteral("x.xyz")} << 2 << QStringLiteral(".xyz");
        QTest::newRow("onnx from a non-ONNX model") << QStringList{q, demo, all, out, QStringLiteral("x.onnx")} << 2 << QStringLiteral("npy folder");
        QTest::newRow("compressed-tensors from the demo") << QStringList{q, demo, all, out, QStringLiteral("ct"), QStringLiteral("--format"), QStringLiteral("compressed-tensors")} << 2 << QStringLiteral("safetensors checkpoint");
        QTest::newRow("unknown --format") << QStringList{q, demo, all, out, QStringLiteral("ct"), QStringLiteral("--format"), QStringLiteral("tflite")} << 2 << QStringLiteral("tflite");
        QTest::newRow("fake-quant not safetensors") << QStringList{q, demo, all, QStringLiteral("--fake-quant"), QStringLiteral("f.h5")} << 2 << QStringLiteral("fake-quant");
        QTest::newRow("fake-quant onto --out") << QStringList{q, demo, all, out, QStringLiteral("a.safetensors"), QStringLiteral("--fake-quant"), QStringLiteral("./a.safetensors")} << 2 << QStringLiteral("different file");
        QTest::newRow("no model") << QStringList{q, all, out, h5} << 2 << QStringLiteral("MODEL");
        // GGUF: only from a GGUF model, only ggml schemes; ggml block schemes only to GGUF.
        QTest::newRow("gguf from a non-GGUF model") << QStringList{q, demo, all, QStringLiteral("--scheme"), QStringLiteral("q8_0"), out, QStringLiteral("x.gguf")} << 2 << QStringLiteral(".safetensors");
        QTest::newRow("int8 scheme to gguf") << QStringList{q, demo, all, QStringLiteral("--scheme"), QStringLiteral("torch-symmetric"), out, QStringLiteral("x.gguf")} << 2 << QStringLiteral("q4_k");
        QTest::newRow("q4_k to h5") << QStringList{q, demo, all, QStringLiteral("--scheme"), QStringLiteral("q4_k"), out, h5} << 2 << QStringLiteral("GGUF");
        // A llama-quantize mix: GGUF only, from a GGUF model, choosing the tensors itself.
        const QString mix = QStringLiteral("q4_k_m");
        QTest::newRow("mix to h5") << QStringList{q, demo, QStringLiteral("--scheme"), mix, out, h5} << 2 << QStringLiteral("only as GGUF");
        QTest::newRow("mix with --all-linear") << QStringList{q, demo, all, QStringLiteral("--scheme"), mix, out, QStringLiteral("x.gguf")} << 2 << QStringLiteral("llama-quantize");
        QTest::newRow("mix from a non-GGUF model") << QStringList{q, demo, QStringLiteral("--scheme"), mix, out, QStringLiteral("x.gguf")} << 2 << QStringLiteral(".safetensors");
        QTest::newRow("q3_k_m is not offered") << QStringList{q, demo, QStringLiteral("--scheme"), QStringLiteral("q3_k_m"), out, QStringLiteral("x.gguf")} << 2 << QStringLiteral("q4_k_m");
    }

    // stories260K with --scheme q4_k_m: llama.cpp's types (tst_ggufmix has each tensor's),
    // file_type 15, a rule per tensor in the JSON and a per-type line in the table.
    void ggufMixExport()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir tmp;
        const QString model = quantlens::test::sharedModel(QStringLiteral("stories260K.gguf"));
        const QString outPath = tmp.filePath(QStringLiteral("m.gguf"));
        const Run r = cli({QStringLiteral("quantize"), model, QStringLiteral("--scheme"), QStringLiteral("q4_k_m"),
                           QStringLiteral("--out"), outPath, QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const auto doc = nlohmann::json::parse(r.out.toStdString());
        QCOMPARE(doc["file_type"].get<int>(), 15);
        std::map<std::string, int> types;
        for (const auto& t : doc["tensors"]) {
            types[t["type"].get<std::string>()] += 1;
            if (!t["requested"].is_null())
                QVERIFY(!t["why"].get<std::string>().empty());
        }
        QCOMPARE(types, (std::map<std::string, int>{{"f16", 5}, {"f32", 11}, {"q5_0", 29}, {"q8_0", 3}}));
        const Run table = cli({QStringLiteral("quantize"), model, QStringLiteral("--scheme"), QStringLiteral("q4_k_m"),
                               QStringLiteral("--out"), outPath});
        QVERIFY2(table.code == 0, table.err.constData());
        QVERIFY(table.out.contains("types: f16 5"));
        QVERIFY(table.out.contains("use_more_bits"));
        QVERIFY(table.out.contains("general.file_type 15"));
    }

    // stories260K to GGUF with q4_k: the JSON names each tensor's type (rows of 64 fall back
    // to q5_0, rows of 172 to f16) and bytes; the file opens with those types.
    void ggufExport()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir tmp;
        const QString outPath = tmp.filePath(QStringLiteral("s.gguf"));
        const Run r = cli({QStringLiteral("quantize"), quantlens::test::sharedModel(QStringLiteral("stories260K.gguf")),
                           QStringLiteral("--all-linear"), QStringLiteral("--scheme"), QStringLiteral("q4_k"),
                           QStringLiteral("--out"), outPath, QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const auto doc = nlohmann::json::parse(r.out.toStdString());
        int q50 = 0, f16 = 0, kept = 0;
        for (const auto& t : doc["tensors"]) {
            const std::string type = t["type"];
            if (t["requested"].is_null()) {
                QCOMPARE(type, t["source_type"].get<std::string>());
                QCOMPARE(t["bytes_after"].get<int64_t>(), t["bytes_before"].get<int64_t>());
                ++kept;
                continue;
            }
            QCOMPARE(t["requested"].get<std::string>(), std::string("q4_K"));
            const int64_t row = t["shape"].back();
            QCOMPARE(type, std::string(row == 64 ? "q5_0" : "f16"));
            (row == 64 ? q50 : f16) += 1;
        }
        QCOMPARE(q50, 31);
        QCOMPARE(f16, 5);
        QCOMPARE(kept, 12);
        QCOMPARE(doc["file_type"].get<int>(), 8);  // mostly Q5_0
        QVERIFY(QFile::exists(outPath));
    }
    // GGUF and ONNX QDQ cannot hold a static plan's activation ranges: refused (exit 1) with
    // the reason, nothing written, instead of dropping the ranges.
    void staticPlanRefusedForGgufAndOnnx()
    {
        QTemporaryDir tmp;
        const QString plan = tmp.filePath(QStringLiteral("static.json"));
        {
            QFile f(plan);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(R"({"quantlens_session": 3, "activations": {"mode": "static", "ranges": {}}})");
        }
        const QString onnxOut = tmp.filePath(QStringLiteral("m.onnx"));
        const Run o = cli({QStringLiteral("quantize"), quantlens::test::dataPath(QStringLiteral("onnx/qdq/convnet_opset11.onnx")),
                           QStringLiteral("--plan"), plan, QStringLiteral("--out"), onnxOut});
        QCOMPARE(o.code, 1);
        QVERIFY2(o.err.contains("ONNX QDQ export puts DequantizeLinear on the weights only"), o.err.constData());
        QVERIFY(!QFile::exists(onnxOut));

        QL_REQUIRE_SHARED_MODELS();
        const QString ggufOut = tmp.filePath(QStringLiteral("s.gguf"));
        const Run g = cli({QStringLiteral("quantize"), quantlens::test::sharedModel(QStringLiteral("stories260K.gguf")),
                           QStringLiteral("--plan"), plan, QStringLiteral("--out"), ggufOut});
        QCOMPARE(g.code, 1);
        QVERIFY2(g.err.contains("cannot be written as GGUF"), g.err.constData());
        QVERIFY(!QFile::exists(ggufOut));
    }

    void exitCodes()
    {
        QFETCH(QStringList, args);
        QFETCH(int, code);
        QFETCH(QString, stderrHas);
        QTemporaryDir tmp;
        const Run r = cli(args, tmp.path());
        QVERIFY(!r.crashed);
        QVERIFY2(r.code == code, r.err.constData());
        QVERIFY2(QString::fromUtf8(r.err).contains(stderrHas, Qt::CaseInsensitive), r.err.constData());
        if (code == 1) {
            // The reason is the last line (progress lines may come before it); nothing on stdout.
            QVERIFY(r.err.trimmed().split('\n').last().startsWith("quantlens-cli: "));
            QVERIFY(r.out.isEmpty());
        }
        // Nothing written on any failure.
        const QStringList left = QDir(tmp.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot);
        QVERIFY2(left.isEmpty(), qPrintable(left.join(u',')));
    }

    void tableAndAllFormats()
    {
        QTemporaryDir tmp;
        const Run r = cli({QStringLiteral("quantize"), QStringLiteral("demo"), QStringLiteral("--tensor"),
                           QStringLiteral("distilbert.transformer.layer.1.ffn.lin2.weight"), QStringLiteral("--scheme"),
                           QStringLiteral("q8_0"), QStringLiteral("--out"), QStringLiteral("npyout"), QStringLiteral("--fake-quant"),
                           QStringLiteral("fake.safetensors")},
                          tmp.path());
        QVERIFY2(r.code == 0, r.err.constData());
        QVERIFY(r.out.contains("distilbert.transformer.layer.1.ffn.lin2.weight"));
        QVERIFY(r.out.contains("group:32"));
        QVERIFY(r.out.contains("total:"));
        QVERIFY(QFile::exists(tmp.filePath(QStringLiteral("npyout/manifest.json"))));
        QVERIFY(QFile::exists(tmp.filePath(QStringLiteral("fake.safetensors"))));
        const json manifest = json::parse(fileBytes(tmp.filePath(QStringLiteral("npyout/manifest.json"))).toStdString());
        QVERIFY(manifest["tensors"][0]["scale_shape"] == json::parse("[768, 96]"));  // 3072 inputs / 32 per block
    }

    void refusesToWriteOverItsInput()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir tmp;
        const QString input = tmp.filePath(QStringLiteral("gpt2.safetensors"));
        QVERIFY(QFile::copy(quantlens::test::sharedModel(QStringLiteral("gpt2_capp.safetensors")), input));
        QFile::setPermissions(input, QFileDevice::ReadOwner | QFileDevice::WriteOwner);
        const QByteArray original = fileBytes(input);
        for (const QString& opt : {QStringLiteral("--out"), QStringLiteral("--fake-quant")}) {
            const Run r = cli({QStringLiteral("quantize"), input, QStringLiteral("--all-linear"), opt, input});
            QVERIFY(!r.crashed);
            QVERIFY2(r.code == 1, r.err.constData());
            QVERIFY2(r.err.contains("refusing"), r.err.constData());
        }
        QCOMPARE(fileBytes(input), original);
        QCOMPARE(QDir(tmp.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot), QStringList{QStringLiteral("gpt2.safetensors")});
    }

    void gpt2ConvOneDPerChannel()
    {
        // GPT-2's Conv1D weights are [in, out]: one scale per output column.
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir tmp;
        const Run r = cli({QStringLiteral("quantize"), quantlens::test::sharedModel(QStringLiteral("gpt2_capp.safetensors")),
                           QStringLiteral("--all-linear"), QStringLiteral("--scheme"), QStringLiteral("torch-symmetric"),
                           QStringLiteral("--granularity"), QStringLiteral("channel"), QStringLiteral("--out"),
                           tmp.filePath(QStringLiteral("g.h5")), QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const json doc = json::parse(r.out.toStdString());
        QCOMPARE(doc["tensors"].size(), size_t(16));  // 4 blocks x (c_attn, attn.c_proj, c_fc, mlp.c_proj)
        for (const json& t : doc["tensors"]) {
            const std::string n = t["name"];
            const size_t want = n.find("c_attn") != std::string::npos ? 192 : n.find("c_fc") != std::string::npos ? 256 : 64;
            QCOMPARE(t["scale"].size(), want);
            QVERIFY(t["sqnr_db"].get<double>() > 30.0);
        }
    }
};

QTEST_GUILESS_MAIN(TestCliQuantize)
#include "tst_cli_quantize.moc"
