// Activation-aware quantization (issue #19) against torch: make_activation_fixtures.py
// records every linear layer's input with forward pre-hooks, runs GPTQ written from the
// paper in llm-compressor's order of operations, and SmoothQuant's formula and W8A8 error.
#include <QFile>
#include <QTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "model.h"
#include "quant/gptq.h"
#include "quant/smoothquant.h"
#include "runner/activationquant.h"
#include "runner/actstats.h"
#include "runner/encoder.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

std::vector<double> f64(const Tensor& t)
{
    std::vector<double> v(size_t(t.numel()));
    if (t.dtype == DType::F64 && t.data.size() == v.size() * sizeof(double))
        std::memcpy(v.data(), t.data.data(), t.data.size());
    return v;
}

std::vector<float> f32(const Model& m, const std::string& name)
{
    const Tensor* t = m.find(name);
    if (!t)
        return {};
    auto v = t->toFloat();
    return v ? *v : std::vector<float>{};
}

nlohmann::json readJson(const QString& rel)
{
    QFile f(test::dataPath(rel));
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return nlohmann::json::parse(f.readAll().toStdString());
}

// The right-padded sequences of an encoder fixture, real tokens only.
std::vector<std::vector<int64_t>> refSequences(const Model& ref)
{
    const Tensor* ids = ref.find("input_ids");
    const Tensor* mask = ref.find("attention_mask");
    std::vector<std::vector<int64_t>> seqs;
    if (!ids || !mask)
        return seqs;
    const auto idv = *ids->toFloat();
    const auto mv = *mask->toFloat();
    for (int64_t b = 0; b < ids->shape[0]; ++b) {
        std::vector<int64_t> s;
        for (int64_t t = 0; t < ids->shape[1]; ++t)
            if (mv[size_t(b * ids->shape[1] + t)] != 0)
                s.push_back(int64_t(idv[size_t(b * ids->shape[1] + t)]));
        seqs.push_back(std::move(s));
    }
    return seqs;
}

QuantSpec gptqSpec(const nlohmann::json& c)
{
    QuantSpec s;
    s.scheme = *parseScheme(c["scheme"].get<std::string>());
    s.bits = c["bits"].get<int>();
    const int64_t g = c["group"].get<int64_t>();
    s.granularity = g > 0 ? Granularity::PerGroup : Granularity::PerChannel;
    s.groupSize = g;
    return s;
}

// Deterministic ids in [3, vocab).
std::vector<std::vector<int64_t>> randomSequences(int64_t n, int64_t len, int64_t vocab)
{
    std::vector<std::vector<int64_t>> out;
    for (int64_t i = 0; i < n; ++i) {
        const EncoderInput in = randomEncoderInput(1, len, vocab, uint64_t(100 + i));
        out.push_back(in.ids);
    }
    return out;
}

}  // namespace

class TestActivations : public QObject {
    Q_OBJECT
private slots:
    void recordedActivationsMatchTorch_data();
    void recordedActivationsMatchTorch();
    void sharedInputsAreRecordedOnce();
    void histogramCountsEveryRealValue();
    void gptqMatchesTorchReference();
    void gptqWithIdentityHessianIsRoundToNearest();
    void smoothQuantMatchesFormula();
    void normFoldTargets();
    void methodParsing();
    void gptqBeatsRtnOnRealModels_data();
    void gptqBeatsRtnOnRealModels();
};

void TestActivations::recordedActivationsMatchTorch_data()
{
    QTest::addColumn<QString>("name");
    QTest::addColumn<QString>("weights");
    QTest::newRow("gpt2_tiny") << "gpt2_tiny" << "encoder/gpt2_tiny.safetensors";
    QTest::newRow("llama_tiny") << "llama_tiny" << "encoder/llama_tiny.safetensors";
}

void TestActivations::recordedActivationsMatchTorch()
{
    QFETCH(QString, name);
    QFETCH(QString, weights);
    auto m = openModel(test::dataPath(weights).toStdString());
    QVERIFY2(m.ok(), m ? "" : m.error().oneLine().c_str());
    auto ref = openModel(test::dataPath(QStringLiteral("encoder/") + name + QStringLiteral("_ref.safetensors")).toStdString());
    auto acts = openModel(test::dataPath(QStringLiteral("activations/") + name + QStringLiteral("_acts.safetensors")).toStdString());
    QVERIFY(ref.ok() && acts.ok());
    const auto json = readJson(QStringLiteral("encoder/") + name + QStringLiteral("_ref.json"));
    EncoderOptions eo;
    eo.heads = json["heads"].get<int64_t>();
    auto runner = EncoderRunner::create(*m, eo);
    QVERIFY2(runner.ok(), runner ? "" : runner.error().oneLine().c_str());
    // Both sequences in one forward: the shorter one is padded, and its padding must not count.
    const auto seqs = refSequences(*ref);
    QCOMPARE(seqs.size(), size_t(2));
    QVERIFY(seqs[0].size() != seqs[1].size());
    auto rec = recordActivations(*runner, seqs);
    QVERIFY2(rec.ok(), rec ? "" : rec.error().oneLine().c_str());
    QCOMPARE(rec->tokens, int64_t(seqs[0].size() + seqs[1].size()));

    int checked = 0;
    for (const std::string& layer : runner->linearNames()) {
        const LayerActivationStats* s = rec->find(layer);
        QVERIFY2(s, layer.c_str());
        const std::vector<float> mn = f32(*acts, layer + ".min"), mx = f32(*acts, layer + ".max");
        QVERIFY2(!mn.empty(), ("no reference for " + layer).c_str());
        QCOMPARE(s->tokens, int64_t(f32(*acts, layer + ".tokens")[0]));
        QCOMPARE(int64_t(mn.size()), s->inFeatures);
        // Float rounding between OpenBLAS and torch's kernels only.
        for (size_t j = 0; j < mn.size(); ++j) {
            QVERIFY2(std::fabs(s->min[j] - mn[j]) <= 1e-5f * (1 + std::fabs(mn[j])), (layer + " min").c_str());
            QVERIFY2(std::fabs(s->max[j] - mx[j]) <= 1e-5f * (1 + std::fabs(mx[j])), (layer + " max").c_str());
            QCOMPARE(s->absMax[j], std::max(std::fabs(s->min[j]), std::fabs(s->max[j])));
        }
        const std::vector<double> H = f64(*acts->find(layer + ".hessian"));
        QCOMPARE(H.size(), s->hessian.size());
        double scale = 0, worst = 0;
        for (double h : H)
            scale = std::max(scale, std::fabs(h));
        for (size_t i = 0; i < H.size(); ++i)
            worst = std::max(worst, std::fabs(H[i] - s->hessian[i]));
        QVERIFY2(worst <= 1e-5 * scale, (layer + " hessian").c_str());
        ++checked;
    }
    QCOMPARE(checked, int(runner->linearCount()));
}

void TestActivations::sharedInputsAreRecordedOnce()
{
    auto m = openModel(test::dataPath(QStringLiteral("encoder/llama_tiny.safetensors")).toStdString());
    QVERIFY(m.ok());
    EncoderOptions eo;
    eo.heads = 4;
    auto runner = EncoderRunner::create(*m, eo);
    QVERIFY(runner.ok());
    auto rec = recordActivations(*runner, randomSequences(3, 10, 60));
    QVERIFY(rec.ok());
    // q, k, v read the attention norm's output; gate and up the MLP norm's.
    std::map<std::string, std::string> shared;
    for (const LayerActivationStats& l : rec->layers)
        shared[l.name] = l.sharedWith;
    QCOMPARE(shared["model.layers.0.self_attn.k_proj"], std::string("model.layers.0.self_attn.q_proj"));
    QCOMPARE(shared["model.layers.0.self_attn.v_proj"], std::string("model.layers.0.self_attn.q_proj"));
    QCOMPARE(shared["model.layers.1.mlp.up_proj"], std::string("model.layers.1.mlp.gate_proj"));
    QCOMPARE(shared["model.layers.1.mlp.down_proj"], std::string());
    QCOMPARE(shared["model.layers.0.self_attn.o_proj"], std::string());
    QCOMPARE(rec->find("model.layers.0.self_attn.v_proj"), rec->find("model.layers.0.self_attn.q_proj"));
    QCOMPARE(rec->tokens, int64_t(30));
    // Only the chosen layers; the observer is gone afterwards.
    ActivationOptions o;
    o.layers = {"model.layers.1.mlp.down_proj"};
    auto one = recordActivations(*runner, randomSequences(1, 5, 60), o);
    QVERIFY(one.ok());
    QCOMPARE(one->layers.size(), size_t(1));
    QCOMPARE(one->layers[0].inFeatures, int64_t(88));
    o.layers = {"nope"};
    QVERIFY(!recordActivations(*runner, randomSequences(1, 5, 60), o).ok());
    o.layers = {};
    o.maxBytes = 1000;
    auto big = recordActivations(*runner, randomSequences(1, 5, 60), o);
    QVERIFY(!big.ok());
    QCOMPARE(big.error().code, std::string("too-large"));
    int calls = 0;
    auto cancelled = recordActivations(*runner, randomSequences(20, 5, 60), ActivationOptions{},
                                       [&](int64_t, int64_t) { return ++calls < 2; });
    QVERIFY(!cancelled.ok());
    QCOMPARE(cancelled.error().code, std::string("cancelled"));
}

void TestActivations::histogramCountsEveryRealValue()
{
    auto m = openModel(test::dataPath(QStringLiteral("encoder/gpt2_tiny.safetensors")).toStdString());
    QVERIFY(m.ok());
    EncoderOptions eo;
    eo.heads = 2;
    auto runner = EncoderRunner::create(*m, eo);
    QVERIFY(runner.ok());
    ActivationOptions o;
    o.keepRows = 1000;
    auto rec = recordActivations(*runner, {{5, 6, 7, 8, 9, 10, 11}, {12, 13, 14}, {20, 21, 22, 23, 24}}, o);
    QVERIFY(rec.ok());
    for (const LayerActivationStats& l : rec->layers) {
        const LayerActivationStats& s = *rec->find(l.name);
        QCOMPARE(s.tokens, int64_t(15));
        QCOMPARE(s.keptRows, int64_t(15));
        QCOMPARE(s.histogram.total(), s.tokens * s.inFeatures);
        // Range: a power of two above every value; each kept value lies in the bin counted.
        QVERIFY(s.histogram.hi >= std::max(std::fabs(s.overallMin()), std::fabs(s.overallMax())));
        QVERIFY(s.histogram.hi / 2 <= std::max(std::fabs(s.overallMin()), std::fabs(s.overallMax())) * 2);
        std::vector<int64_t> counts(s.histogram.counts.size(), 0);
        const double w = s.histogram.binWidth();
        for (float v : s.rows)
            ++counts[size_t(std::min<int64_t>(int64_t((double(v) - s.histogram.lo) / w), int64_t(counts.size()) - 1))];
        QCOMPARE(counts, s.histogram.counts);
    }
}

void TestActivations::gptqMatchesTorchReference()
{
    auto ref = openModel(test::dataPath(QStringLiteral("activations/gptq_ref.safetensors")).toStdString());
    QVERIFY(ref.ok());
    const auto json = readJson(QStringLiteral("activations/gptq_ref.json"));
    QVERIFY(json.contains("cases"));
    for (const auto& c : json["cases"]) {
        const std::string name = c["name"], layer = c["layer"];
        const Tensor* wt = ref->find(layer + ".weight");
        QVERIFY(wt);
        const int64_t out = wt->shape[0], in = wt->shape[1];
        const std::vector<float> W = f32(*ref, layer + ".weight");
        const std::vector<double> H = f64(*ref->find(layer + ".hessian"));
        GptqOptions o;
        o.actOrder = c["actorder"].get<bool>();
        auto g = gptqQuantize(W, out, in, H, gptqSpec(c), o);
        QVERIFY2(g.ok(), g ? "" : g.error().oneLine().c_str());
        QVERIFY(!g->fellBackToRtn);
        const std::vector<float> q = f32(*ref, name + ".q"), scale = f32(*ref, name + ".scale"),
                                 zp = f32(*ref, name + ".zero_point");
        QCOMPARE(g->quantized.params.scale, scale);
        for (size_t i = 0; i < zp.size(); ++i)
            QCOMPARE(g->quantized.params.zeroPoint[i], int32_t(zp[i]));
        int64_t same = 0;
        for (size_t i = 0; i < q.size(); ++i)
            same += g->quantized.qAt(int64_t(i)) == int32_t(q[i]);
        const double fraction = double(same) / double(q.size());
        qInfo("%s: %lld of %zu integers equal torch's (%.4f%%)", name.c_str(), (long long)same, q.size(), 100 * fraction);
        QCOMPARE(same, int64_t(q.size()));
        // The Hessian form of the output error equals torch's X-based one.
        const std::vector<float> deq = dequantize(g->quantized);
        const double sqnr = layerOutputSqnrDb(W, deq, out, in, H);
        QVERIFY2(std::fabs(sqnr - c["gptq_output_sqnr_db"].get<double>()) < 1e-3, name.c_str());
        auto rtn = quantize(W, {out, in}, gptqSpec(c));
        QVERIFY(rtn.ok());
        const double rtnSqnr = layerOutputSqnrDb(W, dequantize(*rtn), out, in, H);
        QVERIFY2(std::fabs(rtnSqnr - c["rtn_output_sqnr_db"].get<double>()) < 1e-3, name.c_str());
        QVERIFY(sqnr > rtnSqnr);
    }
}

void TestActivations::gptqWithIdentityHessianIsRoundToNearest()
{
    // No correlation between inputs: nothing to compensate, every column rounds as RTN does.
    const int64_t out = 7, in = 40;
    std::vector<float> W(size_t(out * in));
    for (size_t i = 0; i < W.size(); ++i)
        W[i] = float(std::sin(double(i) * 0.37) * 0.1);
    std::vector<double> H(size_t(in * in), 0.0);
    for (int64_t i = 0; i < in; ++i)
        H[size_t(i * in + i)] = 3.0;
    QuantSpec s;
    s.scheme = Scheme::TorchSymmetric;
    s.bits = 4;
    s.granularity = Granularity::PerGroup;
    s.groupSize = 16;  // a short last group
    auto g = gptqQuantize(W, out, in, H, s);
    auto r = quantize(W, {out, in}, s);
    QVERIFY(g.ok() && r.ok());
    QCOMPARE(g->quantized.q, r->q);
    QCOMPARE(g->quantized.clampedCount, r->clampedCount);
    // A dead column is zeroed (quantized to the zero point), as llm-compressor does.
    H[5 * in + 5] = 0;
    auto d = gptqQuantize(W, out, in, H, s);
    QVERIFY(d.ok());
    QCOMPARE(d->deadColumns, int64_t(1));
    for (int64_t r2 = 0; r2 < out; ++r2)
        QCOMPARE(d->quantized.qAt(r2 * in + 5), 0);
    QVERIFY(!gptqQuantize(W, out, in + 1, H, s).ok());
}

void TestActivations::smoothQuantMatchesFormula()
{
    auto ref = openModel(test::dataPath(QStringLiteral("activations/smoothquant_ref.safetensors")).toStdString());
    QVERIFY(ref.ok());
    const auto json = readJson(QStringLiteral("activations/smoothquant_ref.json"));
    const Tensor* xt = ref->find("x");
    const Tensor* wt = ref->find("weight");
    QVERIFY(xt && wt);
    const int64_t n = xt->shape[0], in = xt->shape[1], out = wt->shape[0];
    const std::vector<float> X = f32(*ref, "x"), W = f32(*ref, "weight");
    std::vector<float> act(size_t(in), 0.0f);
    for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < in; ++j)
            act[size_t(j)] = std::max(act[size_t(j)], std::fabs(X[size_t(r * in + j)]));
    const std::vector<float> s = smoothQuantScales(act, weightColumnAbsMax({W}, in), 0.5);
    const std::vector<float> sRef = f32(*ref, "scales_alpha_0.5");
    QCOMPARE(s.size(), sRef.size());
    for (size_t j = 0; j < s.size(); ++j)  // float powf vs torch's pow: an ulp or two
        QVERIFY(std::fabs(s[j] - sRef[j]) <= 4e-7f * sRef[j]);
    std::vector<float> ws = W;
    scaleWeightColumns(ws, out, in, s);
    const std::vector<float> wsRef = f32(*ref, "weight_smoothed_alpha_0.5");
    for (size_t i = 0; i < ws.size(); ++i)
        QVERIFY(std::fabs(ws[i] - wsRef[i]) <= 1e-6f * (std::fabs(wsRef[i]) + 1e-6f));

    std::vector<double> alphas;
    for (const auto& p : json["sweep"])
        alphas.push_back(p["alpha"].get<double>());
    auto sweep = smoothQuantSweep(X, n, W, out, in, act, alphas);
    QVERIFY(sweep.ok());
    for (size_t i = 0; i < alphas.size(); ++i) {
        const double want = json["sweep"][i]["sqnr_db"].get<double>();
        qInfo("alpha %.2f: W8A8 output SQNR %.3f dB (torch %.3f dB)", alphas[i], (*sweep)[i].sqnrDb, want);
        QVERIFY(std::fabs((*sweep)[i].sqnrDb - want) < 0.02);
    }
    auto none = w8a8OutputSqnrDb(X, n, W, out, in, {});
    QVERIFY(none.ok());
    QVERIFY(std::fabs(*none - json["no_smoothing_sqnr_db"].get<double>()) < 0.02);
    // The planted outliers: alpha 0.5 gains over alpha 0 (all difficulty left in the activations).
    QVERIFY((*sweep)[2].sqnrDb - (*sweep)[0].sqnrDb > 8.0);
}

void TestActivations::normFoldTargets()
{
    EncoderConfig c;
    c.family = EncoderFamily::Gpt2;
    auto f = precedingNorm(c, "transformer.h.3.attn.c_attn");
    QVERIFY(f.ok());
    QCOMPARE(f->gamma, std::string("transformer.h.3.ln_1.weight"));
    QCOMPARE(f->beta, std::string("transformer.h.3.ln_1.bias"));
    QVERIFY(!precedingNorm(c, "transformer.h.3.mlp.c_proj").ok());
    c.family = EncoderFamily::Llama;
    c.ggufNames = true;
    f = precedingNorm(c, "blk.2.ffn_up");
    QVERIFY(f.ok());
    QCOMPARE(f->gamma, std::string("blk.2.ffn_norm.weight"));
    QVERIFY(f->beta.empty());
    QCOMPARE(f->siblings, (std::vector<std::string>{"blk.2.ffn_gate", "blk.2.ffn_up"}));
    c.ggufNames = false;
    f = precedingNorm(c, "model.layers.0.self_attn.k_proj");
    QVERIFY(f.ok());
    QCOMPARE(f->siblings.size(), size_t(3));
    c.family = EncoderFamily::Bert;
    QVERIFY(!precedingNorm(c, "bert.encoder.layer.0.attention.self.query").ok());
}

void TestActivations::methodParsing()
{
    QCOMPARE(parseMethod("rtn")->method, WeightMethod::Rtn);
    QCOMPARE(parseMethod("gptq")->method, WeightMethod::Gptq);
    auto sq = parseMethod("smoothquant:0.75");
    QVERIFY(sq.ok());
    QCOMPARE(sq->alpha, 0.75);
    QVERIFY(!parseMethod("smoothquant:1.5").ok());
    QVERIFY(!parseMethod("smoothquant:").ok());
    QVERIFY(!parseMethod("awq").ok());
}

void TestActivations::gptqBeatsRtnOnRealModels_data()
{
    QTest::addColumn<QString>("file");
    QTest::addColumn<int>("heads");
    QTest::newRow("stories260K") << "stories260K.gguf" << 0;
    QTest::newRow("gpt2_capp") << "gpt2_capp.safetensors" << 4;
}

void TestActivations::gptqBeatsRtnOnRealModels()
{
    QL_REQUIRE_SHARED_MODELS();
    QFETCH(QString, file);
    QFETCH(int, heads);
    auto m = openModel(test::sharedModel(file).toStdString());
    QVERIFY2(m.ok(), m ? "" : m.error().oneLine().c_str());
    EncoderOptions eo;
    eo.heads = heads;
    auto runner = EncoderRunner::create(*m, eo);
    QVERIFY2(runner.ok(), runner ? "" : runner.error().oneLine().c_str());
    auto rec = recordActivations(*runner, randomSequences(8, 64, runner->config().vocab));
    QVERIFY(rec.ok());
    QuantSpec spec;
    spec.scheme = Scheme::TorchSymmetric;
    spec.bits = 4;
    spec.granularity = Granularity::PerGroup;
    spec.groupSize = 128;
    MethodSpec gptq;
    gptq.method = WeightMethod::Gptq;
    double sumRtn = 0, sumGptq = 0;
    for (const std::string& layer : runner->linearNames()) {
        auto r = quantizeWithActivations(*m, runner->config(), layer, spec, gptq, *rec);
        QVERIFY2(r.ok(), r ? "" : r.error().oneLine().c_str());
        qInfo("%-32s output SQNR RTN %6.2f dB  GPTQ %6.2f dB", layer.c_str(), r->rtnOutputSqnrDb, r->outputSqnrDb);
        QVERIFY2(r->outputSqnrDb > r->rtnOutputSqnrDb, layer.c_str());
        sumRtn += r->rtnOutputSqnrDb;
        sumGptq += r->outputSqnrDb;
    }
    const double n = double(runner->linearCount());
    qInfo("%s: mean layer output SQNR at 4 bits group 128, RTN %.2f dB, GPTQ %.2f dB", qPrintable(file), sumRtn / n,
          sumGptq / n);
}

QTEST_GUILESS_MAIN(TestActivations)
#include "tst_activations.moc"
