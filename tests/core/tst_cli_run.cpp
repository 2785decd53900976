// quantlens-cli run and bench, end to end: exit codes, JSON fields, and the GPT-2 Conv1D
// layer (stored [in, out]) against PyTorch (fixtures from make_runner_fixtures.py).
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <cfloat>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kernels/gemm.h"
#include "io/safetensorswriter.h"
#include "io/npy.h"
#include "clirunner.h"
#include "testsupport.h"

using nlohmann::json;

namespace {

using Run = quantlens::test::CliRun;
Run cli(const QStringList& args, const QString& isa = {})
{
    quantlens::test::CliOptions o;
    o.isa = isa;
    return quantlens::test::runCli(args, o);
}

std::vector<float> npy(const QString& path, std::vector<int64_t>* shape = nullptr)
{
    auto m = quantlens::readNpy(path.toStdString());
    if (!m)
        qFatal("%s", m.error().oneLine().c_str());
    auto v = m->tensors.front().toFloat();
    if (!v)
        qFatal("%s", v.error().oneLine().c_str());
    if (shape)
        *shape = m->tensors.front().shape;
    return v.value();
}

}  // namespace

class TestCliRun : public QObject {
    Q_OBJECT

private slots:
    void usageErrorsExitWith2_data()
    {
        QTest::addColumn<QStringList>("args");
        QTest::newRow("run-without-layer") << QStringList{QStringLiteral("run"), QStringLiteral("demo"), QStringLiteral("--input"), QStringLiteral("x.npy"), QStringLiteral("--out"), QStringLiteral("y.npy")};
        QTest::newRow("run-bad-mode") << QStringList{QStringLiteral("run"), QStringLiteral("demo"), QStringLiteral("--layer"), QStringLiteral("a"), QStringLiteral("--input"), QStringLiteral("x.npy"), QStringLiteral("--out"), QStringLiteral("y.npy"), QStringLiteral("--mode"), QStringLiteral("int4")};
        QTest::newRow("bench-zero-tokens") << QStringList{QStringLiteral("bench"), QStringLiteral("--tokens"), QStringLiteral("0")};
        QTest::newRow("bench-cpu-time-threads") << QStringList{QStringLiteral("bench"), QStringLiteral("--cpu-time"), QStringLiteral("--threads"), QStringLiteral("2")};
    }
    void usageErrorsExitWith2()
    {
        QFETCH(QStringList, args);
        QCOMPARE(cli(args).code, 2);
    }

    void failuresExitWith1AndOneLine_data()
    {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<QString>("mentions");
        const QString x = quantlens::test::dataPath(QStringLiteral("runner/small_m8_x.npy"));
        QTest::newRow("unknown-layer") << QStringList{QStringLiteral("run"), QStringLiteral("demo"), QStringLiteral("--layer"), QStringLiteral("no.such"), QStringLiteral("--input"), x, QStringLiteral("--out"), QStringLiteral("/tmp/ql_never.npy")} << QStringLiteral("no linear layer");
        QTest::newRow("layer-name-without-its-start") << QStringList{QStringLiteral("run"), QStringLiteral("demo"), QStringLiteral("--layer"), QStringLiteral("layer.0.ffn.lin1"), QStringLiteral("--input"), x, QStringLiteral("--out"), QStringLiteral("/tmp/ql_never.npy")} << QStringLiteral("(did you mean distilbert.transformer.layer.0.ffn.lin1?)");
        QTest::newRow("input-width-mismatch") << QStringList{QStringLiteral("run"), QStringLiteral("demo"), QStringLiteral("--layer"), QStringLiteral("distilbert.transformer.layer.0.ffn.lin1"), QStringLiteral("--input"), x, QStringLiteral("--out"), QStringLiteral("/tmp/ql_never.npy")} << QStringLiteral("does not fit");
        QTest::newRow("missing-input") << QStringList{QStringLiteral("run"), QStringLiteral("demo"), QStringLiteral("--layer"), QStringLiteral("distilbert.transformer.layer.0.ffn.lin1"), QStringLiteral("--input"), QStringLiteral("/nonexistent.npy"), QStringLiteral("--out"), QStringLiteral("/tmp/ql_never.npy")} << QStringLiteral("nonexistent");
    }
    void failuresExitWith1AndOneLine()
    {
        QFETCH(QStringList, args);
        QFETCH(QString, mentions);
        const Run r = cli(args);
        QCOMPARE(r.code, 1);
        QVERIFY(r.out.isEmpty());
        QCOMPARE(r.err.count('\n'), 1);
        QVERIFY2(QString::fromUtf8(r.err).contains(mentions), r.err.constData());
    }

    void forcedIsaIsReportedOrRefused()
    {
        const Run ok = cli({QStringLiteral("bench"), QStringLiteral("--tokens"), QStringLiteral("1"), QStringLiteral("--json")}, QStringLiteral("ref"));
        QCOMPARE(ok.code, 0);
        const json doc = json::parse(ok.out.toStdString());
        QCOMPARE(doc["isa"].get<std::string>(), std::string("ref"));
        QCOMPARE(doc["threads"].get<int>(), 1);
        QCOMPARE(doc["rows"].size(), size_t(3));  // DistilBERT's three shapes at one token count
        for (const json& r : doc["rows"]) {
            for (const char* k : {"in_features", "out_features", "tokens", "fp32_seconds", "int8_seconds", "speedup", "int8_gops"})
                QVERIFY2(r.contains(k), k);
            QVERIFY(r["int8_seconds"].get<double>() > 0);
#ifdef QUANTLENS_HAVE_ONEDNN
            QVERIFY(r.contains("onednn_int8_seconds"));
#endif
        }
        QCOMPARE(doc["clock"].get<std::string>(), std::string("wall"));
        const Run cpu = cli({QStringLiteral("bench"), QStringLiteral("--tokens"), QStringLiteral("1"), QStringLiteral("--cpu-time"), QStringLiteral("--json")}, QStringLiteral("ref"));
        QCOMPARE(cpu.code, 0);
        QCOMPARE(json::parse(cpu.out.toStdString())["clock"].get<std::string>(), std::string("thread-cpu"));
        const Run bad = cli({QStringLiteral("bench"), QStringLiteral("--tokens"), QStringLiteral("1")}, QStringLiteral("avx1024"));
        QCOMPARE(bad.code, 1);
        QVERIFY2(bad.err.contains("QUANTLENS_ISA=avx1024") && bad.err.contains("ref"), bad.err.constData());
    }

    void gemmBlockingIsReportedOrRefused()
    {
        // The tests run with QUANTLENS_GEMM_TUNE=0 (tests/CMakeLists.txt): the table's choice.
        const Run table = cli({QStringLiteral("bench"), QStringLiteral("--tokens"), QStringLiteral("1"), QStringLiteral("--json")}, QStringLiteral("ref"));
        QCOMPARE(table.code, 0);
        const json t = json::parse(table.out.toStdString());
        QCOMPARE(t["gemm_blocking"].get<std::string>(), std::string("panel"));  // ref has one
        QVERIFY(!t["cpu"].get<std::string>().empty());
        QVERIFY2(table.err.contains("GEMM blocking: panel"), table.err.constData());
        qputenv("QUANTLENS_GEMM_BLOCKING", "panel");
        const Run forced = cli({QStringLiteral("bench"), QStringLiteral("--tokens"), QStringLiteral("1"), QStringLiteral("--json")}, QStringLiteral("ref"));
        qputenv("QUANTLENS_GEMM_BLOCKING", "no-such-blocking");
        const Run bad = cli({QStringLiteral("bench"), QStringLiteral("--tokens"), QStringLiteral("1")}, QStringLiteral("ref"));
        qunsetenv("QUANTLENS_GEMM_BLOCKING");
        QCOMPARE(forced.code, 0);
        QCOMPARE(json::parse(forced.out.toStdString())["gemm_blocking_source"].get<std::string>(), std::string("forced"));
        QCOMPARE(bad.code, 1);
        QVERIFY2(bad.err.contains("QUANTLENS_GEMM_BLOCKING=no-such-blocking") && bad.err.contains("panel"), bad.err.constData());
    }

    void gpt2Conv1DLayerMatchesTorch_data()
    {
        QTest::addColumn<QString>("mode");
        QTest::newRow("fp32") << QStringLiteral("fp32");
        QTest::newRow("int8") << QStringLiteral("int8");
    }
    void gpt2Conv1DLayerMatchesTorch()
    {
        QL_REQUIRE_SHARED_MODELS();
        QFETCH(QString, mode);
        QTemporaryDir tmp;
        const QString out = tmp.filePath(QStringLiteral("y.npy"));
        const Run r = cli({QStringLiteral("run"), quantlens::test::sharedModel(QStringLiteral("gpt2_capp.safetensors")),
                           QStringLiteral("--layer"), QStringLiteral("transformer.h.0.mlp.c_fc"), QStringLiteral("--input"),
                           quantlens::test::dataPath(QStringLiteral("runner/gpt2_c_fc_x.npy")), QStringLiteral("--mode"), mode,
                           QStringLiteral("--out"), out, QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        const json doc = json::parse(r.out.toStdString());
        QCOMPARE(doc["layer"].get<std::string>(), std::string("transformer.h.0.mlp.c_fc"));
        QCOMPARE(doc["tokens"].get<int>(), 5);
        QCOMPARE(doc["in_features"].get<int>(), 64);
        QCOMPARE(doc["out_features"].get<int>(), 256);
        QVERIFY(doc["seconds"].get<double>() > 0);
        std::vector<int64_t> shape;
        const std::vector<float> y = npy(out, &shape);
        QCOMPARE(shape, (std::vector<int64_t>{5, 256}));
        const std::vector<float> yf = npy(quantlens::test::dataPath(QStringLiteral("runner/gpt2_c_fc_y_fp32.npy")));
        if (mode == QLatin1String("fp32")) {
            // x @ W + b in float32: only the summation order may differ (64 terms).
            for (size_t i = 0; i < y.size(); ++i)
                QVERIFY2(std::abs(y[i] - yf[i]) <= 64 * FLT_EPSILON * (std::abs(yf[i]) + 1.0f), qPrintable(QString::number(i)));
            QCOMPARE(doc["max_abs_error_vs_fp32"].get<double>(), 0.0);
            QVERIFY(doc["sqnr_db_vs_fp32"].is_null());  // exact: infinite SQNR
        } else {
            // torch quantize_dynamic on the transposed weight. tst_dynamiclinear derives the
            // tight bound; here the weights are small, so a few float ulps of |y| are enough
            // once tie-rounded activation bytes are allowed one step each (2 steps total).
            const std::vector<float> yt = npy(quantlens::test::dataPath(QStringLiteral("runner/gpt2_c_fc_y_int8_torch.npy")));
            double maxDiff = 0;
            for (size_t i = 0; i < y.size(); ++i)
                maxDiff = std::max(maxDiff, double(std::abs(y[i] - yt[i])));
            QVERIFY2(maxDiff <= 1e-5, qPrintable(QString::number(maxDiff)));
            QVERIFY(doc["sqnr_db_vs_fp32"].get<double>() > 30.0);
            QCOMPARE(doc["isa"].get<std::string>(), std::string(quantlens::kernels::activeIsa()));
        }
    }

    // --weights per-channel is quantize_dynamic with per_channel_dynamic_qconfig: the
    // fixtures' 64 -> 96 layer, written as a safetensors file, on its 33-token input.
    void perChannelWeightsMatchTorch()
    {
        const std::vector<float> w = npy(quantlens::test::dataPath(QStringLiteral("runner/small_w.npy")));
        const std::vector<float> b = npy(quantlens::test::dataPath(QStringLiteral("runner/small_b.npy")));
        QCOMPARE(w.size(), size_t(96 * 64));
        QTemporaryDir tmp;
        const QString model = tmp.filePath(QStringLiteral("small.safetensors"));
        const auto item = [](const char* name, std::vector<int64_t> shape, const std::vector<float>& v) {
            return quantlens::SafetensorsItem{name, quantlens::DType::F32, std::move(shape),
                                              [&v](quantlens::AtomicFile& f) { return f.write(v.data(), v.size() * sizeof(float)); }};
        };
        QVERIFY(quantlens::writeSafetensors(model.toStdString(), {item("lin.weight", {96, 64}, w), item("lin.bias", {96}, b)}, {}, {})
                    .ok());
        const QString out = tmp.filePath(QStringLiteral("y.npy"));
        const Run r = cli({QStringLiteral("run"), model, QStringLiteral("--layer"), QStringLiteral("lin"), QStringLiteral("--input"),
                           quantlens::test::dataPath(QStringLiteral("runner/small_m33_x.npy")), QStringLiteral("--weights"),
                           QStringLiteral("per-channel"), QStringLiteral("--out"), out, QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        QCOMPARE(json::parse(r.out.toStdString())["weight_quantization"].get<std::string>(), std::string("per-channel"));
        const std::vector<float> y = npy(out);
        const std::vector<float> yt = npy(quantlens::test::dataPath(QStringLiteral("runner/small_m33_y_int8_torch_per_channel.npy")));
        const std::vector<float> yPerTensor = npy(quantlens::test::dataPath(QStringLiteral("runner/small_m33_y_int8_torch.npy")));
        QCOMPARE(y.size(), yt.size());
        // tst_dynamiclinear checks the tight per-output bound; a few ulps here, while the
        // per-tensor output is visibly different, so the option did change the weights.
        double maxDiff = 0, fromPerTensor = 0;
        for (size_t i = 0; i < y.size(); ++i) {
            maxDiff = std::max(maxDiff, double(std::abs(y[i] - yt[i])));
            fromPerTensor = std::max(fromPerTensor, double(std::abs(y[i] - yPerTensor[i])));
        }
        QVERIFY2(maxDiff <= 1e-5, qPrintable(QString::number(maxDiff)));
        QVERIFY2(fromPerTensor > 1e-3, qPrintable(QString::number(fromPerTensor)));
    }
};

QTEST_GUILESS_MAIN(TestCliRun)
#include "tst_cli_run.moc"
