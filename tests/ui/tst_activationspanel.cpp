// The Activations tab driven like a user, offscreen: recording a GPT-2 layer's inputs from
// typed token ids gives the same per-channel statistics as recordActivations called
// directly, the plots and the α slider show them, another selection marks the result stale,
// a model without a tokenizer refuses text with a reason, text from a file goes through the
// model's tokenizer, Cancel ends a run cleanly, and the SmoothQuant page's histograms and
// smoothed channel maxima follow the α slider, equal to X / s and W · diag(s) computed here.
#include <QCheckBox>
#include <QComboBox>
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
#include "histogramplot.h"
#include "quant/smoothquant.h"
#include "smoothquantview.h"
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
        QVERIFY(p.rangePlot()->keptBars() > 0);
        QVERIFY(p.rangePlot()->markerCount() >= 4);  // the calibrators' static ranges

        p.setSelection(m, indexOf(*m, "transformer.h.1.attn.c_proj.weight"));
        QVERIFY(p.isStale());
        QVERIFY(p.statusText().startsWith(QStringLiteral("Stale")));
    }

    // The SmoothQuant page at α = 0 and α = 1: the bars are the histogram of X / s and
    // W · diag(s) made here from the recorded rows and the weight with the formula's s, the
    // range lines sit at their largest magnitudes, and the smoothed channel maxima show the
    // formula's ends (α = 0: every weight column peaks at 1; α = 1: every activation channel).
    void smoothQuantFollowsTheSlider()
    {
        auto m = gpt2Tiny();
        QVERIFY(m);
        ActivationsPanel p;
        p.setSelection(m, indexOf(*m, "transformer.h.0.mlp.c_fc.weight"));
        p.headsBox()->setValue(2);
        p.setInput(ActivationsPanel::TokenIds, QStringLiteral("5 6 7 8 9\n10 11 12"));
        QSignalSpy done(&p, &ActivationsPanel::finished);
        p.run();
        QVERIFY(done.wait(kWaitMs));
        QVERIFY2(p.result(), qPrintable(p.statusText()));
        const ActivationsResult& r = *p.result();
        QCOMPARE(r.smooth.steps.size(), size_t(21));
        QCOMPARE(r.smooth.rows, int64_t(8));
        auto lw = readLinearWeight(*m, "transformer.h.0.mlp.c_fc");
        QVERIFY(lw.ok());
        const std::vector<float> wmax = weightColumnAbsMax({lw->w}, lw->in);
        SmoothQuantView* v = p.smoothQuantView();
        QVERIFY(p.smoothedChannelsBox()->isChecked());

        std::vector<int64_t> before;
        for (int step : {0, 20}) {
            const double alpha = step / 20.0;
            p.alphaSlider()->setValue(step);
            QVERIFY(p.alphaLabel()->text().startsWith(QStringLiteral("α = %1").arg(alpha, 0, 'f', 2)));
            QVERIFY(p.methodBox()->itemText(3).endsWith(QStringLiteral("α = %1").arg(alpha, 0, 'f', 2)));
            const std::vector<float> s = smoothQuantScales(r.stats.absMax, wmax, alpha);
            std::vector<float> xs = r.stats.rows, ws = lw->w;
            for (int64_t row = 0; row < r.stats.keptRows; ++row)
                divideByScales(std::span<float>(xs.data() + row * lw->in, size_t(lw->in)), s);
            scaleWeightColumns(ws, lw->out, lw->in, s);
            for (auto [plot, vals] : {std::pair{v->activationPlot(), &xs}, std::pair{v->weightPlot(), &ws}}) {
                float top = 0;
                for (float x : *vals)
                    top = std::max(top, std::fabs(x));
                const Histogram direct = computeHistogram(*vals, -top, top, 201);
                auto* bars = qobject_cast<QCPBars*>(plot->plottable(0));
                QVERIFY(bars);
                std::vector<int64_t> shown, want;
                for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it)
                    shown.push_back(int64_t(it->value));
                for (int64_t c : direct.counts)
                    if (c > 0)
                        want.push_back(c);
                QCOMPARE(shown, want);
                QCOMPARE(float(v->rangeLine(plot, 0)), top);  // the widest token's / row's range
                QVERIFY(v->rangeLine(plot, 1) <= top);        // the median one
                if (plot == v->weightPlot() && step == 0)
                    before = shown;
                if (plot == v->weightPlot() && step == 20)
                    QVERIFY(shown != before);  // the slider changed what is drawn
            }
            // Graph 3: activation absmax / s; graph 4: weight column absmax · s.
            const int ends = step == 0 ? 4 : 3;
            QCOMPARE(p.channelPlot()->graph(ends)->data()->size(), int(lw->in));
            for (auto it = p.channelPlot()->graph(ends)->data()->constBegin();
                 it != p.channelPlot()->graph(ends)->data()->constEnd(); ++it)
                QVERIFY2(std::abs(it->value - 1.0) < 1e-6, qPrintable(QString::number(it->value)));
        }

        p.smoothedChannelsBox()->setChecked(false);
        QVERIFY(!p.channelPlot()->graph(3)->visible());
        QCOMPARE(p.channelPlot()->yAxis->scaleType(), QCPAxis::stLinear);
        QCOMPARE(p.channelPlot()->graph(0)->data()->size(), int(lw->in));

        p.setSelection(m, indexOf(*m, "transformer.h.1.attn.c_proj.weight"));
        QVERIFY(p.alphaLabel()->text().contains(QStringLiteral("stale")));
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
