// quantlens-cli inspect as a user runs it: the JSON contract of DESIGN.md on every real
// model format, statistics against what numpy computed (SOURCES.md), and the exit codes.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTest>

#include "clirunner.h"
#include "testsupport.h"

namespace {

using Run = quantlens::test::CliRun;
Run cli(const QStringList& args) { return quantlens::test::runCli(args); }

QJsonObject tensorByName(const QJsonObject& doc, const QString& name)
{
    for (const auto& v : doc[QStringLiteral("tensors")].toArray())
        if (v.toObject()[QStringLiteral("name")].toString() == name)
            return v.toObject();
    return {};
}

}  // namespace

class TestCliInspect : public QObject {
    Q_OBJECT
private slots:
    void realModels_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("format");
        QTest::addColumn<int>("tensors");
        QTest::addColumn<QString>("tensor");
        QTest::addColumn<double>("min");
        QTest::addColumn<double>("max");
        QTest::addColumn<double>("mean");
        QTest::addColumn<double>("std");
        // Figures from ../shared/models/SOURCES.md (numpy, float64, ddof=0).
        QTest::addRow("gpt2 safetensors") << "gpt2_capp.safetensors" << "safetensors" << 52
                                          << "transformer.wpe.weight" << -0.0836792 << 0.086245 << -7.73309e-05 << 0.0197752;
        QTest::addRow("silero safetensors") << "silero_vad_16k.safetensors" << "safetensors" << 15
                                            << "lstm_cell.weight_ih" << -2.21821 << 2.62035 << 0.0102263 << 0.268028;
        QTest::addRow("ggml torch zip") << "ggml_mnist_mlp.pt" << "pytorch" << 4 << "fc1.weight" << -0.946781
                                        << 0.675159 << -0.00592038 << 0.113085;
        QTest::addRow("keras weights h5") << "hls4ml_mnist_mlp_weights.h5" << "keras-h5" << 6
                                          << "dense_1/dense_1/kernel:0" << -0.691893 << 0.513544 << 0.00393671 << 0.0866795;
        QTest::addRow("keras full model h5") << "hls4ml_lstm_model.h5" << "keras-h5" << 21
                                             << "model_weights/rnn_densef/rnn_densef/kernel:0" << -0.356806 << 0.228029
                                             << -0.00256728 << 0.0755974;
        QTest::addRow("mlx npz") << "mlx_cvae_mnist.npz" << "npz" << 39 << "encoder.proj_log_var.weight" << -0.370544
                                 << 0.623936 << 0.0100647 << 0.0952518;
        QTest::addRow("llama gguf") << "stories260K.gguf" << "gguf" << 48 << "token_embd.weight" << -1.2033 << 1.32723
                                    << -0.0229604 << 0.307938;
        QTest::addRow("burn onnx") << "burn_mnist.onnx" << "onnx" << 18 << "fc1.weight" << -0.158718 << 0.155853
                                   << -0.00114395 << 0.0232647;
    }

    void realModels()
    {
        QL_REQUIRE_SHARED_MODELS();
        QFETCH(QString, file);
        QFETCH(QString, format);
        QFETCH(int, tensors);
        QFETCH(QString, tensor);
        QFETCH(double, min);
        QFETCH(double, max);
        QFETCH(double, mean);
        QFETCH(double, std);
        const Run r = cli({QStringLiteral("inspect"), quantlens::test::sharedModel(file), QStringLiteral("--json")});
        QVERIFY2(r.code == 0, r.err.constData());
        QJsonParseError pe;
        const QJsonDocument doc = QJsonDocument::fromJson(r.out, &pe);
        QVERIFY2(pe.error == QJsonParseError::NoError, "stdout must be exactly one JSON document");
        const QJsonObject o = doc.object();
        QCOMPARE(o[QStringLiteral("format")].toString(), format);
        QCOMPARE(o[QStringLiteral("files")].toArray().size(), 1);
        QCOMPARE(o[QStringLiteral("tensors")].toArray().size(), tensors);
        const QJsonObject t = tensorByName(o, tensor);
        QVERIFY2(!t.isEmpty(), qPrintable(tensor));
        for (const char* k : {"name", "dtype", "shape", "numel", "min", "max", "mean", "std"})
            QVERIFY2(t.contains(QLatin1String(k)), k);
        // SOURCES.md prints 5-6 significant digits: 5e-5 relative covers its rounding.
        auto near = [](double got, double want) { return std::abs(got - want) <= 5e-5 * std::abs(want) + 1e-9; };
        QVERIFY2(near(t[QStringLiteral("min")].toDouble(), min), qPrintable(QString::number(t[QStringLiteral("min")].toDouble(), 'g', 9)));
        QVERIFY2(near(t[QStringLiteral("max")].toDouble(), max), qPrintable(QString::number(t[QStringLiteral("max")].toDouble(), 'g', 9)));
        QVERIFY2(near(t[QStringLiteral("mean")].toDouble(), mean), qPrintable(QString::number(t[QStringLiteral("mean")].toDouble(), 'g', 9)));
        QVERIFY2(near(t[QStringLiteral("std")].toDouble(), std), qPrintable(QString::number(t[QStringLiteral("std")].toDouble(), 'g', 9)));
    }

    void exitCodes()
    {
        QCOMPARE(cli({QStringLiteral("inspect")}).code, 2);                              // usage
        QCOMPARE(cli({QStringLiteral("inspect"), QStringLiteral("--bogus"), QStringLiteral("x")}).code, 2);
        const Run missing = cli({QStringLiteral("inspect"), QStringLiteral("/nonexistent/model.safetensors")});
        QCOMPARE(missing.code, 1);
        QVERIFY(missing.err.contains("/nonexistent/model.safetensors"));
        QCOMPARE(missing.err.count('\n'), 1);  // one line
    }

    void demoIsLabelledSynthetic()
    {
        const Run r = cli({QStringLiteral("inspect"), QStringLiteral("demo"), QStringLiteral("--json")});
        QCOMPARE(r.code, 0);
        const QJsonObject o = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(o[QStringLiteral("format")].toString(), QStringLiteral("demo"));
        QVERIFY(o[QStringLiteral("synthetic")].toBool());
    }
};

QTEST_GUILESS_MAIN(TestCliInspect)
#include "tst_cli_inspect.moc"
