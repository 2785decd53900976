// quantlens-cli activations and quantize --method (issue #19) end to end: exit codes, one
// JSON document, per-channel statistics equal to the torch fixture's, GPTQ's export.
#include <QFile>
#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "clirunner.h"
#include "model.h"
#include "testsupport.h"

using nlohmann::json;
using namespace quantlens;

namespace {

using Run = test::CliRun;

QString data(const char* rel) { return test::dataPath(QLatin1String(rel)); }

// The fixture's two right-padded sequences as a token file, real tokens only.
bool writeTokens(const QString& path)
{
    auto ref = openModel(data("encoder/gpt2_tiny_ref.safetensors").toStdString());
    if (!ref)
        return false;
    const Tensor* ids = ref->find("input_ids");
    const Tensor* mask = ref->find("attention_mask");
    const auto idv = *ids->toFloat();
    const auto mv = *mask->toFloat();
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly))
        return false;
    for (int64_t b = 0; b < ids->shape[0]; ++b) {
        QByteArray line;
        for (int64_t t = 0; t < ids->shape[1]; ++t)
            if (mv[size_t(b * ids->shape[1] + t)] != 0)
                line += QByteArray::number(qlonglong(idv[size_t(b * ids->shape[1] + t)])) + ' ';
        f.write(line + '\n');
    }
    return true;
}

}  // namespace

class TestCliActivations : public QObject {
    Q_OBJECT
private slots:
    void initTestCase()
    {
        QVERIFY(dir_.isValid());
        tokens_ = dir_.filePath(QStringLiteral("tokens.txt"));
        QVERIFY(writeTokens(tokens_));
    }

    void exitCodes_data()
    {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<int>("code");
        const QString model = data("encoder/gpt2_tiny.safetensors");
        const QString out = QDir::temp().filePath(QStringLiteral("ql_act_never.h5"));
        QTest::newRow("activations without tokens") << QStringList{QStringLiteral("activations"), model} << 2;
        QTest::newRow("activations, not an encoder")
            << QStringList{QStringLiteral("activations"), data("encoder/gpt2_tiny_ref.safetensors"), QStringLiteral("--calib-tokens"), data("encoder/gpt2_tiny_ref.json")} << 1;
        QTest::newRow("activations, no such layer")
            << QStringList{QStringLiteral("activations"), model, QStringLiteral("--calib-tokens"), QStringLiteral("@TOKENS"), QStringLiteral("--heads"), QStringLiteral("2"), QStringLiteral("--layer"), QStringLiteral("nope")} << 1;
        QTest::newRow("activations, tokens and text")
            << QStringList{QStringLiteral("activations"), model, QStringLiteral("--calib-tokens"), QStringLiteral("@TOKENS"), QStringLiteral("--calib-text"), QStringLiteral("@TOKENS")} << 2;
        QTest::newRow("text for a model without a tokenizer")
            << QStringList{QStringLiteral("activations"), model, QStringLiteral("--calib-text"), data("activations/calib_sentences.txt"), QStringLiteral("--heads"), QStringLiteral("2")} << 1;
        QTest::newRow("gptq without tokens")
            << QStringList{QStringLiteral("quantize"), model, QStringLiteral("--all-linear"), QStringLiteral("--method"), QStringLiteral("gptq"), QStringLiteral("--out"), out} << 2;
        QTest::newRow("unknown method")
            << QStringList{QStringLiteral("quantize"), model, QStringLiteral("--all-linear"), QStringLiteral("--method"), QStringLiteral("awq"), QStringLiteral("--out"), out} << 2;
        QTest::newRow("alpha out of range")
            << QStringList{QStringLiteral("quantize"), model, QStringLiteral("--all-linear"), QStringLiteral("--method"), QStringLiteral("smoothquant:2"), QStringLiteral("--calib-tokens"), QStringLiteral("@TOKENS"), QStringLiteral("--out"), out} << 2;
        QTest::newRow("act order without gptq")
            << QStringList{QStringLiteral("quantize"), model, QStringLiteral("--all-linear"), QStringLiteral("--act-order"), QStringLiteral("--out"), out} << 2;
        QTest::newRow("gptq on a tensor the runner does not run")
            << QStringList{QStringLiteral("quantize"), model, QStringLiteral("--tensor"), QStringLiteral("transformer.wte.weight"), QStringLiteral("--method"), QStringLiteral("gptq"), QStringLiteral("--calib-tokens"), QStringLiteral("@TOKENS"), QStringLiteral("--heads"), QStringLiteral("2"), QStringLiteral("--out"), out} << 1;
    }
    void exitCodes()
    {
        QFETCH(QStringList, args);
        QFETCH(int, code);
        args.replaceInStrings(QStringLiteral("@TOKENS"), tokens_);
        const Run r = test::runCli(args);
        QCOMPARE(r.code, code);
        QVERIFY(r.out.isEmpty());
        QVERIFY(!r.err.trimmed().isEmpty());
        QVERIFY(!QFile::exists(QDir::temp().filePath(QStringLiteral("ql_act_never.h5"))));
    }

    void statisticsEqualTorchs()
    {
        const Run r = test::runCli({QStringLiteral("activations"), data("encoder/gpt2_tiny.safetensors"), QStringLiteral("--calib-tokens"), tokens_,
                                    QStringLiteral("--heads"), QStringLiteral("2"), QStringLiteral("--outlier-threshold"), QStringLiteral("2.5"),
                                    QStringLiteral("--smoothquant"), QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const json doc = json::parse(r.out.toStdString());  // exactly one document
        QCOMPARE(doc["tokens"].get<int64_t>(), int64_t(19));
        QCOMPARE(doc["layers"].size(), size_t(8));
        auto acts = openModel(data("activations/gpt2_tiny_acts.safetensors").toStdString());
        QVERIFY(acts.ok());
        for (const json& l : doc["layers"]) {
            const std::string name = l["name"];
            const auto mn = *acts->find(name + ".min")->toFloat();
            const auto mx = *acts->find(name + ".max")->toFloat();
            QCOMPARE(l["absmax"].size(), mn.size());
            std::vector<int64_t> outliers;
            for (size_t j = 0; j < mn.size(); ++j) {
                const double want = std::max(std::fabs(mn[j]), std::fabs(mx[j]));
                QVERIFY(std::fabs(l["absmax"][j].get<double>() - want) <= 1e-5 * (1 + want));
                if (l["absmax"][j].get<double>() > 2.5)
                    outliers.push_back(int64_t(j));
            }
            QCOMPARE(l["outlier_channels"].get<std::vector<int64_t>>(), outliers);
            QCOMPARE(l["weight_column_absmax"].size(), mn.size());
            int64_t total = 0;
            for (const json& c : l["histogram"]["counts"])
                total += c.get<int64_t>();
            QCOMPARE(total, int64_t(19) * int64_t(mn.size()));
            QCOMPARE(l["smoothquant"]["sweep"].size(), size_t(5));
        }
        // The layer list on a terminal-free run goes to stdout only in the text form.
        const Run text = test::runCli({QStringLiteral("activations"), data("encoder/gpt2_tiny.safetensors"), QStringLiteral("--calib-tokens"), tokens_,
                                       QStringLiteral("--heads"), QStringLiteral("2"), QStringLiteral("--layer"), QStringLiteral("transformer.h.1.mlp")});
        QCOMPARE(text.code, 0);
        QVERIFY(text.out.contains("transformer.h.1.mlp.c_fc"));
        QVERIFY(!text.out.contains("transformer.h.0."));
    }

    void gptqExportBeatsRoundToNearest()
    {
        const QString gptqOut = dir_.filePath(QStringLiteral("gptq.safetensors"));
        const QString rtnOut = dir_.filePath(QStringLiteral("rtn.safetensors"));
        const QStringList common{QStringLiteral("quantize"), data("encoder/gpt2_tiny.safetensors"), QStringLiteral("--all-linear"),
                                 QStringLiteral("--scheme"), QStringLiteral("torch-symmetric"), QStringLiteral("--bits"), QStringLiteral("4"),
                                 QStringLiteral("--granularity"), QStringLiteral("group:16"), QStringLiteral("--json")};
        const Run g = test::runCli(common + QStringList{QStringLiteral("--method"), QStringLiteral("gptq"), QStringLiteral("--calib-tokens"), tokens_,
                                                        QStringLiteral("--heads"), QStringLiteral("2"), QStringLiteral("--out"), gptqOut});
        QVERIFY2(g.code == 0, g.err.constData());
        const Run r = test::runCli(common + QStringList{QStringLiteral("--out"), rtnOut});
        QCOMPARE(r.code, 0);
        const json gd = json::parse(g.out.toStdString()), rd = json::parse(r.out.toStdString());
        QCOMPARE(gd["tensors"].size(), size_t(8));
        for (size_t i = 0; i < 8; ++i) {
            const json& t = gd["tensors"][i];
            QCOMPARE(t["method"]["method"].get<std::string>(), std::string("gptq"));
            QVERIFY(t["method"]["output_sqnr_db"].get<double>() > t["method"]["rtn_output_sqnr_db"].get<double>());
            QVERIFY(t["scale"] == rd["tensors"][i]["scale"]);  // same observer
        }
        auto gm = openModel(gptqOut.toStdString());
        auto rm = openModel(rtnOut.toStdString());
        QVERIFY(gm.ok() && rm.ok());
        const std::string w = "transformer.h.0.mlp.c_proj.weight";
        QVERIFY(gm->find(w) && rm->find(w));
        QCOMPARE(gm->find(w)->shape, rm->find(w)->shape);  // stored [in, out] as the checkpoint
        QVERIFY(*gm->find(w)->toFloat() != *rm->find(w)->toFloat());
    }

    void textCalibrationOnStories()
    {
        QL_REQUIRE_SHARED_MODELS();
        const QString out = dir_.filePath(QStringLiteral("stories_gptq.safetensors"));
        const Run r = test::runCli({QStringLiteral("quantize"), test::sharedModel(QStringLiteral("stories260K.gguf")),
                                    QStringLiteral("--tensor"), QStringLiteral("blk.0.ffn_down"), QStringLiteral("--tensor"), QStringLiteral("blk.0.attn_q"),
                                    QStringLiteral("--scheme"), QStringLiteral("torch-symmetric"), QStringLiteral("--bits"), QStringLiteral("4"),
                                    QStringLiteral("--granularity"), QStringLiteral("group:32"), QStringLiteral("--method"), QStringLiteral("gptq"),
                                    QStringLiteral("--act-order"), QStringLiteral("--calib-text"), data("activations/calib_sentences.txt"),
                                    QStringLiteral("--out"), out, QStringLiteral("--json")});
        // quantlens-cli holds ONNX's protobuf 3.21; SentencePiece runs in quantlens-tokenize.
        QVERIFY2(r.code == 0, r.err.constData());
        QVERIFY(r.err.contains("GGUF llama vocabulary"));
        const json doc = json::parse(r.out.toStdString());
        QCOMPARE(doc["tensors"].size(), size_t(2));
        for (const json& t : doc["tensors"]) {
            QCOMPARE(t["method"]["method"].get<std::string>(), std::string("gptq:actorder"));
            QVERIFY(t["method"]["output_sqnr_db"].get<double>() > t["method"]["rtn_output_sqnr_db"].get<double>());
        }
        QVERIFY(QFile::exists(out));
    }

    // --calib-text gives the statistics of --calib-tokens with the ids python's sentencepiece
    // makes of the same lines (BOS first; tests/scripts/make_tokenizer_fixtures.py).
    void textEqualsItsTokenIds()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto run = [](const char* option, const QString& file) {
            return test::runCli({QStringLiteral("activations"), test::sharedModel(QStringLiteral("stories260K.gguf")), QLatin1String(option), file,
                                 QStringLiteral("--layer"), QStringLiteral("blk.0.attn_q"), QStringLiteral("--json")});
        };
        const Run text = run("--calib-text", data("activations/calib_sentences.txt"));
        const Run ids = run("--calib-tokens", data("tokenizer/stories260K_calib_tokens.txt"));
        QVERIFY2(text.code == 0, text.err.constData());
        QVERIFY2(ids.code == 0, ids.err.constData());
        QVERIFY(text.err.contains("GGUF llama vocabulary (512 pieces"));
        json a = json::parse(text.out.toStdString());
        json b = json::parse(ids.out.toStdString());
        QCOMPARE(a["sequences"].get<int64_t>(), int64_t(7));
        QCOMPARE(a["tokens"].get<int64_t>(), int64_t(145));
        a.erase("seconds");
        b.erase("seconds");
        QCOMPARE(a["layers"].size(), size_t(1));
        QVERIFY(a == b);
    }

    // Without the helper beside it, the text path fails with one line saying what is missing.
    void missingHelperIsOneLine()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir bin;
        const QString cli = bin.filePath(QStringLiteral("quantlens-cli"));
        std::error_code ec;  // a hard link where the file system allows (the binary is large), else a copy
        std::filesystem::create_hard_link(QUANTLENS_CLI, cli.toStdString(), ec);
        QVERIFY(!ec || QFile::copy(QStringLiteral(QUANTLENS_CLI), cli));
        const Run r = test::runCli({QStringLiteral("activations"), test::sharedModel(QStringLiteral("stories260K.gguf")), QStringLiteral("--calib-text"),
                                    data("activations/calib_sentences.txt"), QStringLiteral("--json")},
                                   {.program = cli});
        QCOMPARE(r.code, 1);
        QVERIFY(r.out.isEmpty());
        QCOMPARE(r.err.trimmed().count('\n'), 0);
        QVERIFY2(r.err.contains("quantlens-tokenize") && r.err.contains("--calib-tokens"), r.err.constData());
    }

private:
    QTemporaryDir dir_;
    QString tokens_;
};

QTEST_GUILESS_MAIN(TestCliActivations)
#include "tst_cli_activations.moc"
