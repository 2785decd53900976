// The Activations tab driven like a user, offscreen: recording a GPT-2 layer's inputs from
// typed token ids gives the same per-channel statistics as recordActivations called
// directly, the plots and the α slider show them, another selection marks the result stale,
// a model without a tokenizer refuses text with a reason, text from a file goes through the
// model's tokenizer, and Cancel ends a run cleanly.
#include <QFile>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTest>

#include <qcustomplot.h>

#include "activationspanel.h"
#include "runner/actstats.h"
#include "runner/encoder.h"
#include "testsupport.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kWaitMs = 120000;  // shared machine

std::shared_ptr<const Model> gpt2Tiny()
{
    auto m = openModel(test::dataPath(QStringLiteral("encoder/gpt2_tiny.safetensors")).toStdString());
    return m ? std::make_shared<const Model>(std::move(*m)) : nullptr;
}

int indexOf(const Model& m, const std::string& name)
{
    for (size_t i = 0; i < m.tensors.size(); ++i)
        if (m.tensors[i].name == name)
            return int(i);
    return -1;
}

}  // namespace

class TestActivationsPanel : public QObject {
    Q_OBJECT
private slots:
    void recordsTheSelectedLayer()
    {
        auto m = gpt2Tiny();
        QVERIFY(m);
        ActivationsPanel p;
        QVERIFY(!p.runButton()->isEnabled());
        p.setSelection(m, indexOf(*m, "transformer.h.0.mlp.c_fc.weight"));
        QCOMPARE(p.layerName(), QStringLiteral("transformer.h.0.mlp.c_fc"));
        QVERIFY(p.runButton()->isEnabled());
        p.headsBox()->setValue(2);
        p.setInput(ActivationsPanel::TokenIds, QStringLiteral("5 6 7 8 9\n10 11 12"));
        QSignalSpy done(&p, &ActivationsPanel::finished);
        p.run();
        QVERIFY(p.isRunning());
        QVERIFY(p.cancelButton()->isEnabled());
        QVERIFY(done.wait(kWaitMs));
        QVERIFY2(p.result(), qPrintable(p.statusText()));
        const ActivationsResult& r = *p.result();
        QCOMPARE(r.tokens, int64_t(8));

        EncoderOptions eo;
        eo.heads = 2;
        auto runner = EncoderRunner::create(*m, eo);
        QVERIFY(runner.ok());
        auto direct = recordActivations(*runner, {{5, 6, 7, 8, 9}, {10, 11, 12}});
        QVERIFY(direct.ok());
        QCOMPARE(r.stats.absMax, direct->find("transformer.h.0.mlp.c_fc")->absMax);
        QCOMPARE(p.channelPlot()->graph(0)->data()->size(), 32);
        QCOMPARE(p.channelPlot()->graph(1)->data()->size(), 32);
        QCOMPARE(r.sweep.size(), size_t(21));
        QVERIFY(p.statusText().contains(QStringLiteral("ln_2")));  // c_fc's norm takes 1/s
        p.alphaSlider()->setValue(20);
        QVERIFY(p.alphaLabel()->text().startsWith(QStringLiteral("α = 1.00")));
        QVERIFY(p.histogramPlot()->graph(0)->data()->size() > 0);

        p.setSelection(m, indexOf(*m, "transformer.h.1.attn.c_proj.weight"));
        QVERIFY(p.isStale());
        QVERIFY(p.statusText().startsWith(QStringLiteral("Stale")));
    }

    void textNeedsATokenizer()
    {
        auto m = gpt2Tiny();
        ActivationsPanel p;
        p.setSelection(m, indexOf(*m, "transformer.h.0.attn.c_attn.weight"));
        p.headsBox()->setValue(2);
        p.setInput(ActivationsPanel::Text, QStringLiteral("Once upon a time"));
        QSignalSpy done(&p, &ActivationsPanel::finished);
        p.run();
        QVERIFY(done.wait(kWaitMs));
        QVERIFY(!p.result());
        QVERIFY(p.statusText().contains(QStringLiteral("tokenizer")));
    }

    // Text from a file, through the model's own tokenizer in the quantlens-tokenize helper:
    // the same statistics as the ids python's sentencepiece makes of those lines.
    void textFileThroughTheTokenizer()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto opened = openModel(test::sharedModel(QStringLiteral("stories260K.gguf")).toStdString());
        QVERIFY(opened.ok());
        auto m = std::make_shared<const Model>(std::move(*opened));
        ActivationsPanel p;
        p.setSelection(m, indexOf(*m, "blk.0.attn_q.weight"));
        QVERIFY(p.loadInputFile(test::dataPath(QStringLiteral("activations/calib_sentences.txt"))));
        QSignalSpy done(&p, &ActivationsPanel::finished);
        p.run();
        QVERIFY(done.wait(kWaitMs));
        QVERIFY2(p.result(), qPrintable(p.statusText()));
        QVERIFY(p.result()->input.contains(QStringLiteral("GGUF llama vocabulary")));
        QCOMPARE(p.result()->tokens, int64_t(145));
        const LayerActivationStats text = p.result()->stats;

        QVERIFY(p.loadInputFile(test::dataPath(QStringLiteral("tokenizer/stories260K_calib_tokens.txt"))));
        p.setInput(ActivationsPanel::TokenIds, p.findChild<QPlainTextEdit*>()->toPlainText());
        p.run();
        QVERIFY(done.wait(kWaitMs));
        QVERIFY2(p.result(), qPrintable(p.statusText()));
        QCOMPARE(p.result()->stats.absMax, text.absMax);
        QCOMPARE(p.result()->stats.tokens, text.tokens);
    }

    void anOversizedFileIsRefused()
    {
        QTemporaryDir dir;
        QFile big(dir.filePath(QStringLiteral("big.txt")));
        QVERIFY(big.open(QIODevice::WriteOnly));
        big.write(QByteArray((1 << 20) + 1, 'a'));
        big.close();
        ActivationsPanel p;
        QVERIFY(!p.loadInputFile(big.fileName()));
        QVERIFY(p.statusText().contains(QStringLiteral("1 MiB")));
        QVERIFY(!p.loadInputFile(dir.filePath(QStringLiteral("absent.txt"))));
    }

    void cancelEndsTheRun()
    {
        auto m = gpt2Tiny();
        ActivationsPanel p;
        p.setSelection(m, indexOf(*m, "transformer.h.0.attn.c_attn.weight"));
        p.headsBox()->setValue(2);
        QString many;
        for (int i = 0; i < 400; ++i)
            many += QStringLiteral("5 6 7 8 9 10 11 12 13 14 15 16\n");
        p.setInput(ActivationsPanel::TokenIds, many);
        QSignalSpy done(&p, &ActivationsPanel::finished);
        p.run();
        p.cancel();
        QVERIFY(done.wait(kWaitMs));
        QVERIFY(!p.isRunning());
        QVERIFY(p.runButton()->isEnabled());
        // Either the cancel landed or the run was already done: never both or neither.
        QVERIFY(p.statusText() == QStringLiteral("cancelled") || p.result());
    }
};

QTEST_MAIN(TestActivationsPanel)
#include "tst_activationspanel.moc"
