// quantlens-cli sensitivity end to end (issue #8): exit codes, the JSON document on stdout
// only, the ranking on the fixture whose one layer carries weight outliers, GPT-2 and Llama.
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <set>

#include <nlohmann/json.hpp>

#include "clirunner.h"
#include "testsupport.h"

using nlohmann::json;

namespace {

using Run = quantlens::test::CliRun;
Run cli(const QStringList& args) { return quantlens::test::runCli(QStringList{QStringLiteral("sensitivity")} + args); }

QString fixture(const char* name) { return quantlens::test::dataPath(QStringLiteral("encoder/") + QLatin1String(name)); }

json refJson(const char* name)
{
    QFile f(fixture(name));
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return json::parse(f.readAll().toStdString());
}

}  // namespace

class TestCliSensitivity : public QObject {
    Q_OBJECT

private slots:
    void exitCodes_data()
    {
        QTemporaryDir dir;
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<int>("code");
        const QString model = fixture("bert_tiny.safetensors");
        QTest::newRow("no model") << QStringList{} << 2;
        QTest::newRow("--tokens and --random together")
            << QStringList{model, QStringLiteral("--tokens"), fixture("bert_tiny_ref.json"), QStringLiteral("--random"), QStringLiteral("8")} << 2;
        QTest::newRow("--random 0") << QStringList{model, QStringLiteral("--random"), QStringLiteral("0")} << 2;
        QTest::newRow("unknown view") << QStringList{model, QStringLiteral("--view"), QStringLiteral("half")} << 2;
        QTest::newRow("token file that is not ids") << QStringList{model, QStringLiteral("--tokens"), fixture("bert_tiny_ref.json"), QStringLiteral("--heads"), QStringLiteral("4")} << 1;
        QTest::newRow("heads 48 heads do not divide 64") << QStringList{model, QStringLiteral("--heads"), QStringLiteral("48")} << 1;
        QTest::newRow("not an encoder") << QStringList{fixture("bert_tiny_ref.safetensors")} << 1;
        QTest::newRow("missing file") << QStringList{QStringLiteral("/nonexistent/model.safetensors")} << 1;
        QTest::newRow("sequence longer than the 64 positions") << QStringList{model, QStringLiteral("--random"), QStringLiteral("65")} << 1;
    }
    void exitCodes()
    {
        QFETCH(QStringList, args);
        QFETCH(int, code);
        const Run r = cli(args);
        QCOMPARE(r.code, code);
        if (code == 1) {
            QVERIFY(r.err.startsWith("quantlens-cli: "));
            QCOMPARE(r.err.count('\n'), 1);  // one line
        }
    }

    void jsonRanksTheOutlierLayerFirst()
    {
        QTemporaryDir dir;
        const QString tokens = dir.filePath(QStringLiteral("ids.txt"));
        QFile t(tokens);
        QVERIFY(t.open(QIODevice::WriteOnly));
        t.write("5 17 42 8 99 3 61 12\n7 7 23 54\n");
        t.close();
        const Run r = cli({fixture("distilbert_outlier.safetensors"), QStringLiteral("--tokens"), tokens,
                           QStringLiteral("--heads"), QStringLiteral("2"), QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const json doc = json::parse(r.out.toStdString());  // stdout holds exactly one document
        QCOMPARE(doc["family"].get<std::string>(), std::string("distilbert"));
        QCOMPARE(doc["config"]["heads_from"].get<std::string>(), std::string("--heads"));
        QCOMPARE(doc["tokens"].get<int>(), 12);
        QCOMPARE(doc["sequences"].get<int>(), 2);
        const auto& layers = doc["layers"];
        QCOMPARE(layers.size(), size_t(12));
        QCOMPARE(layers[0]["name"].get<std::string>(), refJson("distilbert_outlier_ref.json")["outlier_layer"].get<std::string>());
        for (size_t i = 0; i < layers.size(); ++i) {
            QCOMPARE(layers[i]["rank"].get<size_t>(), i + 1);
            for (const char* k : {"name", "cosine", "sqnr_db", "max_abs_error"})
                QVERIFY2(layers[i].contains(k), k);
            if (i > 0)
                QVERIFY(layers[i]["cosine"].get<double>() >= layers[i - 1]["cosine"].get<double>());
        }
    }

    void demoModelAllButOne()
    {
        const Run r = cli({QStringLiteral("demo"), QStringLiteral("--random"), QStringLiteral("16"), QStringLiteral("--view"),
                           QStringLiteral("all-but-one"), QStringLiteral("--rank-by"), QStringLiteral("sqnr"), QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const json doc = json::parse(r.out.toStdString());
        QCOMPARE(doc["config"]["heads"].get<int>(), 12);  // hidden 768 / 64
        QCOMPARE(doc["config"]["heads_from"].get<std::string>(), std::string("hidden/64"));
        const auto& layers = doc["layers"];
        QCOMPARE(layers.size(), size_t(12));
        // Keeping the most sensitive layer in float32 gives the best SQNR.
        for (size_t i = 1; i < layers.size(); ++i)
            QVERIFY(layers[i]["sqnr_db"].get<double>() <= layers[i - 1]["sqnr_db"].get<double>());
        QVERIFY(layers[0]["sqnr_db"].get<double>() > doc["all_quantized"]["sqnr_db"].get<double>());
    }

    void configJsonBesideTheModelGivesHeads()
    {
        QTemporaryDir dir;
        QVERIFY(QFile::copy(fixture("distilbert_tiny.safetensors"), dir.filePath(QStringLiteral("model.safetensors"))));
        const Run without = cli({dir.path(), QStringLiteral("--random"), QStringLiteral("8"), QStringLiteral("--json")});
        QCOMPARE(without.code, 1);  // hidden 48: heads cannot be inferred
        QFile c(dir.filePath(QStringLiteral("config.json")));
        QVERIFY(c.open(QIODevice::WriteOnly));
        c.write(R"({"model_type": "distilbert", "n_heads": 4, "dim": 48})");
        c.close();
        const Run with = cli({dir.path(), QStringLiteral("--random"), QStringLiteral("8"), QStringLiteral("--json")});
        QVERIFY2(with.code == 0, with.err.constData());
        QCOMPARE(json::parse(with.out.toStdString())["config"]["heads"].get<int>(), 4);
        QCOMPARE(json::parse(with.out.toStdString())["config"]["heads_from"].get<std::string>(), std::string("config.json"));
    }

    // GPT-2 (issue #8's optional naming) on the trained ../shared/models/gpt2_capp: a config.json
    // beside it in GPT-2's own keys (n_head, layer_norm_epsilon) gives the heads, and the
    // ranking covers the 16 Conv1D layers by their checkpoint names.
    void gpt2WithItsConfigJson()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir dir;
        QVERIFY(QFile::copy(quantlens::test::sharedModel(QStringLiteral("gpt2_capp.safetensors")),
                            dir.filePath(QStringLiteral("model.safetensors"))));
        QFile c(dir.filePath(QStringLiteral("config.json")));
        QVERIFY(c.open(QIODevice::WriteOnly));
        c.write(R"({"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 4, "layer_norm_epsilon": 1e-05})");
        c.close();
        const Run r = cli({dir.path(), QStringLiteral("--random"), QStringLiteral("24"), QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const json doc = json::parse(r.out.toStdString());
        QCOMPARE(doc["family"].get<std::string>(), std::string("gpt2"));
        QCOMPARE(doc["config"]["heads"].get<int>(), 4);
        const auto& layers = doc["layers"];
        QCOMPARE(layers.size(), size_t(16));
        std::set<std::string> names;
        for (const auto& l : layers) {
            names.insert(l["name"].get<std::string>());
            QVERIFY(l["cosine"].get<double>() < 1.0);  // every layer really ran int8
        }
        for (const char* n : {"transformer.h.0.attn.c_attn", "transformer.h.3.mlp.c_proj"})
            QVERIFY2(names.count(n), n);
        QVERIFY(doc["all_quantized"]["cosine"].get<double>() > 0.99);
    }

    // Llama with Hugging Face names and a config.json (the llama3_tiny fixture folder): heads,
    // rope_theta and Llama 3.1's rope_scaling come from it, and the 14 layers are ranked.
    void llamaFolderWithConfigJson()
    {
        const Run r = cli({fixture("llama3_tiny"), QStringLiteral("--random"), QStringLiteral("16"), QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const json doc = json::parse(r.out.toStdString());
        QCOMPARE(doc["family"].get<std::string>(), std::string("llama"));
        QCOMPARE(doc["config"]["heads_from"].get<std::string>(), std::string("config.json"));
        QCOMPARE(doc["config"]["kv_heads"].get<int>(), 2);
        QCOMPARE(doc["config"]["rope_scaling"].get<std::string>(), std::string("llama3"));
        QCOMPARE(doc["layers"].size(), size_t(14));
        QCOMPARE(doc["tokens"].get<int>(), 16);
    }

    // --save-plan keeps the static ranges calibrated here; quantize --plan then exports them
    // (compressed-tensors W8A8 static) and reports each layer's input quantization.
    void savedStaticPlanExports()
    {
        QTemporaryDir tmp;
        const QString calib = tmp.filePath(QStringLiteral("calib.txt"));
        {
            QFile f(calib);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write("1 5 9 13 17 21 25 29 33 37 41 45\n2 4 8 16 32 59 3 7 11\n");
        }
        const QString plan = tmp.filePath(QStringLiteral("static.json"));
        const Run r = cli({fixture("llama3_tiny"), QStringLiteral("--preset"), QStringLiteral("default"), QStringLiteral("--act"),
                           QStringLiteral("static"), QStringLiteral("--calib-tokens"), calib, QStringLiteral("--random"),
                           QStringLiteral("8"), QStringLiteral("--save-plan"), plan, QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        QVERIFY(json::accept(r.out.toStdString()));  // stdout stays one JSON document
        QVERIFY2(r.err.contains("14 static ranges"), r.err.constData());
        QFile pf(plan);
        QVERIFY(pf.open(QIODevice::ReadOnly));
        const json saved = json::parse(pf.readAll().toStdString());
        QCOMPARE(saved["activations"]["mode"].get<std::string>(), std::string("static"));
        QCOMPARE(saved["activations"]["ranges"].size(), size_t(14));
        QVERIFY(saved["calibration"]["tokens_file"].get<std::string>().starts_with("/"));

        // The saved plan replays to the same figure.
        const json first = json::parse(r.out.toStdString());
        const Run again = cli({fixture("llama3_tiny"), QStringLiteral("--plan"), plan, QStringLiteral("--random"),
                               QStringLiteral("8"), QStringLiteral("--json")});
        QVERIFY2(again.code == 0, again.err.constData());
        QCOMPARE(json::parse(again.out.toStdString())["plan"]["cosine"].get<double>(), first["plan"]["cosine"].get<double>());

        const QString out = tmp.filePath(QStringLiteral("ct"));
        const Run q = quantlens::test::runCli({QStringLiteral("quantize"), fixture("llama3_tiny"), QStringLiteral("--plan"), plan,
                                               QStringLiteral("--format"), QStringLiteral("compressed-tensors"),
                                               QStringLiteral("--out"), out, QStringLiteral("--json")});
        QVERIFY2(q.code == 0, q.err.constData());
        const json doc = json::parse(q.out.toStdString());
        QCOMPARE(doc["tensors"].size(), size_t(14));
        for (const json& t : doc["tensors"]) {
            const json& in = t["input_activation"];
            const std::string name = t["name"].get<std::string>();
            QVERIFY2(in["mode"] == json("static"), name.c_str());
            QCOMPARE(in["range"][0].get<float>(), saved["activations"]["ranges"][name][0].get<float>());
            QVERIFY(in["zero_point"].get<int>() >= 0 && in["zero_point"].get<int>() <= 255);
        }
        QVERIFY(QFile::exists(out + QStringLiteral("/model.safetensors")));

        // A plan cannot be saved over the model it was made on.
        const Run over = cli({fixture("llama3_tiny"), QStringLiteral("--act"), QStringLiteral("per-token"),
                              QStringLiteral("--random"), QStringLiteral("8"), QStringLiteral("--save-plan"),
                              fixture("llama3_tiny") + QStringLiteral("/model.safetensors")});
        QCOMPARE(over.code, 1);
    }

    // The trained GGUF Llama: the text names the head counts and where they came from.
    void storiesGgufText()
    {
        QL_REQUIRE_SHARED_MODELS();
        const Run r = cli({quantlens::test::sharedModel(QStringLiteral("stories260K.gguf")), QStringLiteral("--random"),
                           QStringLiteral("24")});
        QVERIFY2(r.code == 0, r.err.constData());
        QVERIFY2(r.out.contains("llama, 5 layers, hidden 64, 8 heads over 4 key/value heads (gguf metadata)"),
                 r.out.constData());
        QVERIFY2(r.out.contains("blk.4.ffn_down"), r.out.constData());
    }
};

QTEST_GUILESS_MAIN(TestCliSensitivity)
#include "tst_cli_sensitivity.moc"
