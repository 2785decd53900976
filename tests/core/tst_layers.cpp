// Which weights are layers a user would quantize, and along which axis their output
// channels run: linear, convolution and recurrent weights in PyTorch, Keras and ONNX
// layouts; vectors and embeddings are not layers.
#include <QtTest>

#include <cmath>

#include "layers.h"
#include "model.h"
#include "quant/quantize.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

Tensor ramp(std::string name, std::vector<int64_t> shape, Layout layout = Layout::Plain)
{
    int64_t n = 1;
    for (int64_t d : shape)
        n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        v[size_t(i)] = float((i * 37) % 101) / 50.0f - 1.0f;
    Tensor t = makeFloatTensor(std::move(name), std::move(shape), std::move(v));
    t.layout = layout;
    return t;
}

const QuantLayer* layerOf(const std::vector<QuantLayer>& ls, const std::string& weight)
{
    for (const QuantLayer& l : ls)
        if (l.weight->name == weight)
            return &l;
    return nullptr;
}

}  // namespace

class TestLayers : public QObject {
    Q_OBJECT
private slots:
    void pytorchConvAndRecurrentWeightsAreLayers();
    void kerasKernelsHaveTheirOutputChannelsLast();
    void vectorsAndEmbeddingsAreNotLayers();
    void perChannelAlongTheOutputAxisOfAKerasConv();
    void sileroVadHasConvAndLstmLayers();
    void onnxConvWeightsAreLayers();
    void kerasLstmKernelsAreRecurrentLayers();
    void vectorsAreLeftInFloatByDefault();
};

void TestLayers::pytorchConvAndRecurrentWeightsAreLayers()
{
    Model m;
    m.tensors.push_back(ramp("conv1.weight", {8, 3, 5}));      // Conv1d [out, in, k]
    m.tensors.push_back(ramp("conv1.bias", {8}));
    m.tensors.push_back(ramp("conv2.weight", {16, 8, 3, 3}));  // Conv2d
    m.tensors.push_back(ramp("rnn.weight_ih_l0", {40, 6}));    // LSTM: 4*hidden x in
    m.tensors.push_back(ramp("rnn.weight_hh_l0", {40, 10}));
    m.tensors.push_back(ramp("rnn.bias_ih_l0", {40}));
    m.tensors.push_back(ramp("rnn.weight_hh_l0_reverse", {30, 10}));  // GRU, bidirectional
    m.tensors.push_back(ramp("fc.weight", {4, 16}));
    const auto ls = findQuantLayers(m);
    QCOMPARE(ls.size(), size_t(6));

    const QuantLayer* c1 = layerOf(ls, "conv1.weight");
    QVERIFY(c1);
    QCOMPARE(c1->kind, LayerKind::Conv);
    QCOMPARE(c1->outAxis, 0);
    QCOMPARE(c1->outChannels, int64_t(8));
    QVERIFY(c1->bias && c1->bias->name == "conv1.bias");
    QCOMPARE(layerOf(ls, "conv2.weight")->outChannels, int64_t(16));

    const QuantLayer* ih = layerOf(ls, "rnn.weight_ih_l0");
    QVERIFY(ih);
    QCOMPARE(ih->kind, LayerKind::Recurrent);
    QCOMPARE(ih->outAxis, 0);
    QCOMPARE(ih->outChannels, int64_t(40));
    QVERIFY(ih->bias && ih->bias->name == "rnn.bias_ih_l0");  // its own gate bias, not bias_hh
    QCOMPARE(layerOf(ls, "rnn.weight_hh_l0")->bias, nullptr);  // no bias_hh_l0 in this model
    QCOMPARE(layerOf(ls, "rnn.weight_hh_l0_reverse")->kind, LayerKind::Recurrent);
    QCOMPARE(layerOf(ls, "fc.weight")->kind, LayerKind::Linear);
    QCOMPARE(layerKindName(LayerKind::Conv), std::string("conv"));
}

void TestLayers::kerasKernelsHaveTheirOutputChannelsLast()
{
    Model m;
    m.tensors.push_back(ramp("model_weights/conv2d/conv2d/kernel:0", {3, 3, 4, 12}, Layout::InOut));
    m.tensors.push_back(ramp("model_weights/conv2d/conv2d/bias:0", {12}));
    m.tensors.push_back(ramp("model_weights/lstm/lstm/lstm_cell/kernel:0", {6, 20}, Layout::InOut));
    m.tensors.push_back(ramp("model_weights/lstm/lstm/lstm_cell/recurrent_kernel:0", {5, 20}, Layout::InOut));
    m.tensors.push_back(ramp("model_weights/dense/dense/kernel:0", {5, 2}, Layout::InOut));
    const auto ls = findQuantLayers(m);
    QCOMPARE(ls.size(), size_t(4));
    const QuantLayer* conv = layerOf(ls, "model_weights/conv2d/conv2d/kernel:0");
    QCOMPARE(conv->kind, LayerKind::Conv);
    QCOMPARE(conv->outAxis, 3);
    QCOMPARE(conv->outChannels, int64_t(12));
    QVERIFY(conv->bias);
    const QuantLayer* k = layerOf(ls, "model_weights/lstm/lstm/lstm_cell/kernel:0");
    QCOMPARE(k->kind, LayerKind::Recurrent);
    QCOMPARE(k->outAxis, 1);
    QCOMPARE(k->outChannels, int64_t(20));
    const QuantLayer* rk = layerOf(ls, "model_weights/lstm/lstm/lstm_cell/recurrent_kernel:0");
    QCOMPARE(rk->kind, LayerKind::Recurrent);
    QCOMPARE(rk->outAxis, 1);
    QCOMPARE(layerOf(ls, "model_weights/dense/dense/kernel:0")->kind, LayerKind::Linear);
    QCOMPARE(outputChannelAxis(m.tensors[0]), 3);
    QCOMPARE(outputChannelAxis(m.tensors[1]), 0);
}

void TestLayers::vectorsAndEmbeddingsAreNotLayers()
{
    Model m;
    m.tensors.push_back(ramp("transformer.wte.weight", {50, 8}));
    m.tensors.push_back(ramp("transformer.h.0.ln_1.weight", {8}));
    m.tensors.push_back(ramp("transformer.h.0.ln_1.bias", {8}));
    m.tensors.push_back(ramp("norm.running_mean", {8}));
    m.tensors.push_back(ramp("cls_token", {1, 1, 8}));  // no weight/kernel leaf: not a layer
    QVERIFY(findQuantLayers(m).empty());
}

void TestLayers::perChannelAlongTheOutputAxisOfAKerasConv()
{
    // One output channel (the last axis) holds a large value: per-channel along that
    // axis gives it its own scale and leaves the others fine.
    const std::vector<int64_t> shape{2, 2, 3, 4};  // [kh, kw, in, out]
    std::vector<float> w(48);
    for (size_t i = 0; i < w.size(); ++i)
        w[i] = (i % 4 == 2) ? 10.0f * float(i + 1) / 48.0f : 0.01f * float(int(i % 7) - 3);
    Tensor t = makeFloatTensor("k", shape, w);
    t.layout = Layout::InOut;
    QuantSpec s;
    s.scheme = Scheme::TorchSymmetric;
    s.granularity = Granularity::PerChannel;
    s.axis = outputChannelAxis(t);
    auto q = quantize(w, shape, s);
    QVERIFY2(q, q ? "" : q.error().message.c_str());
    QCOMPARE(q->params.scale.size(), size_t(4));
    for (int o = 0; o < 4; ++o) {
        float absmax = 0;
        for (size_t i = size_t(o); i < w.size(); i += 4)
            absmax = std::max(absmax, std::fabs(w[i]));
        QCOMPARE(q->params.scale[size_t(o)], absmax / 127.5f);  // torch: absmax / ((127 - -128) / 2)
    }
}

void TestLayers::sileroVadHasConvAndLstmLayers()
{
    QL_REQUIRE_SHARED_MODELS();
    auto m = openModel(test::sharedModel(QStringLiteral("silero_vad_16k.safetensors")).toStdString());
    QVERIFY2(m, m ? "" : m.error().message.c_str());
    QVERIFY(findLinearLayers(*m).empty());  // why its overview used to be empty
    const auto ls = findQuantLayers(*m);
    // stft_conv, conv1..4, final_conv and the LSTM cell's two gate matrices.
    QCOMPARE(ls.size(), size_t(8));
    QCOMPARE(layerOf(ls, "conv1.weight")->kind, LayerKind::Conv);
    QCOMPARE(layerOf(ls, "conv1.weight")->outChannels, int64_t(128));
    QCOMPARE(layerOf(ls, "lstm_cell.weight_ih")->kind, LayerKind::Recurrent);
    QCOMPARE(layerOf(ls, "lstm_cell.weight_ih")->bias->name, std::string("lstm_cell.bias_ih"));
    QCOMPARE(layerOf(ls, "lstm_cell.weight_hh")->bias->name, std::string("lstm_cell.bias_hh"));
    QCOMPARE(layerOf(ls, "final_conv.weight")->outChannels, int64_t(1));
}

void TestLayers::onnxConvWeightsAreLayers()
{
    QL_REQUIRE_SHARED_MODELS();
    auto m = openModel(test::sharedModel(QStringLiteral("burn_mnist.onnx")).toStdString());
    QVERIFY2(m, m ? "" : m.error().message.c_str());
    QCOMPARE(m->find("conv2.weight")->role, WeightRole::Conv);
    QCOMPARE(m->find("fc1.weight")->role, WeightRole::Linear);
    QCOMPARE(m->find("norm1.weight")->role, WeightRole::Unknown);  // BatchNormalization scale: a vector
    const auto ls = findQuantLayers(*m);
    QCOMPARE(ls.size(), size_t(5));  // conv1..3, fc1, fc2
    QCOMPARE(layerOf(ls, "conv3.weight")->kind, LayerKind::Conv);
    QCOMPARE(layerOf(ls, "conv3.weight")->outChannels, int64_t(24));
    QCOMPARE(layerOf(ls, "fc1.weight")->outChannels, int64_t(32));
}

void TestLayers::kerasLstmKernelsAreRecurrentLayers()
{
    QL_REQUIRE_SHARED_MODELS();
    auto m = openModel(test::sharedModel(QStringLiteral("hls4ml_lstm_model.h5")).toStdString());
    QVERIFY2(m, m ? "" : m.error().message.c_str());
    int recurrent = 0;
    for (const QuantLayer& l : findQuantLayers(*m)) {
        if (l.kind != LayerKind::Recurrent)
            continue;
        ++recurrent;
        QCOMPARE(l.weight->layout, Layout::InOut);
        QCOMPARE(l.outAxis, 1);
        QVERIFY2(l.outChannels % 4 == 0, (l.weight->name + " " + shapeString(l.weight->shape)).c_str());  // four gates side by side
    }
    QCOMPARE(recurrent, 2);  // kernel and recurrent_kernel
}

void TestLayers::vectorsAreLeftInFloatByDefault()
{
    QVERIFY(quantizedByDefault(ramp("fc.weight", {4, 3})));
    QVERIFY(quantizedByDefault(ramp("conv.weight", {4, 3, 3})));
    QCOMPARE(notQuantizedReason(ramp("fc.weight", {4, 3})), std::string());
    QCOMPARE(notQuantizedReason(ramp("transformer.h.0.ln_1.weight", {8})), std::string("a 1-D vector (norm gain)"));
    QCOMPARE(notQuantizedReason(ramp("transformer.h.0.ln_1.bias", {8})), std::string("a 1-D vector (bias)"));
    QCOMPARE(notQuantizedReason(ramp("lstm_cell.bias_ih", {8})), std::string("a 1-D vector (bias)"));
    QCOMPARE(notQuantizedReason(ramp("model_weights/bn/bn/gamma:0", {8})), std::string("a 1-D vector (norm gain)"));
    QCOMPARE(notQuantizedReason(ramp("norm.running_var", {8})), std::string("a 1-D vector (running statistic)"));
    QCOMPARE(notQuantizedReason(ramp("freqs", {8})), std::string("a 1-D vector"));
    QCOMPARE(notQuantizedReason(makeFloatTensor("step", {}, {1.0f})), std::string("a scalar"));
}

QTEST_APPLESS_MAIN(TestLayers)
#include "tst_layers.moc"
