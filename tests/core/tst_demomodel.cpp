// The built-in demo must look like DistilBERT to the quantizer: its extremes are the
// planted outliers, so the seed scheme's scale is ~0.0053 and positives get clipped.
#include <QTest>

#include "io/demomodel.h"
#include "layers.h"
#include "quant/metrics.h"
#include "quant/quantize.h"

using namespace quantlens;

class TestDemoModel : public QObject {
    Q_OBJECT
private slots:
    void shapesAreDistilBertLike()
    {
        const Model m = makeDemoModel();
        QVERIFY(m.synthetic);
        const Tensor* q = m.find("distilbert.transformer.layer.0.attention.q_lin.weight");
        QVERIFY(q);
        QCOMPARE(q->shape, (std::vector<int64_t>{768, 768}));
        const Tensor* l1 = m.find("distilbert.transformer.layer.1.ffn.lin1.weight");
        QVERIFY(l1);
        QCOMPARE(l1->shape, (std::vector<int64_t>{3072, 768}));
        QVERIFY(m.find("distilbert.transformer.layer.1.ffn.lin2.bias"));
        QVERIFY(m.find("distilbert.transformer.layer.0.sa_layer_norm.weight"));
        // 2 layers x 6 linear layers; embeddings are not linear layers.
        QCOMPARE(findLinearLayers(m).size(), size_t(12));
    }

    void deterministic()
    {
        const Model a = makeDemoModel(1, 64), b = makeDemoModel(1, 64);
        QCOMPARE(a.tensors.size(), b.tensors.size());
        for (size_t i = 0; i < a.tensors.size(); ++i)
            QVERIFY(std::equal(a.tensors[i].data.begin(), a.tensors[i].data.end(), b.tensors[i].data.begin(),
                               b.tensors[i].data.end()));
    }

    void outliersSetTheSeedRange()
    {
        const Model m = makeDemoModel();
        const auto w = m.find("distilbert.transformer.layer.0.attention.out_lin.weight")->toFloat();
        QVERIFY(w.ok());
        const TensorStats st = computeStats(*w);
        QCOMPARE(float(st.max), 0.7412f);
        QCOMPARE(float(st.min), -0.6104f);
        QVERIFY2(st.std > 0.03 && st.std < 0.05, qPrintable(QString::number(st.std)));
        QuantSpec spec;  // seed, per tensor, min/max
        auto q = quantize(*w, {768, 768}, spec);
        QVERIFY(q.ok());
        QVERIFY(std::abs(q->params.scale[0] - 0.0053f) < 0.0001f);
        QVERIFY(q->clampedCount >= 1);  // +0.74 lies beyond 127 * scale
    }
};

QTEST_GUILESS_MAIN(TestDemoModel)
#include "tst_demomodel.moc"
