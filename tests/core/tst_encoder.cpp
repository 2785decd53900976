// Encoder runner (issue #8) against torch references from tests/scripts/make_encoder_fixtures.py,
// make_gpt2_fixtures.py and make_llama_fixtures.py: the float32 last hidden state of BERT /
// DistilBERT / RoBERTa-named encoders, of GPT-2 (a random one, and the trained
// ../shared/models/gpt2_capp) and of Llama (random ones with Hugging Face and GGUF names, and
// the trained ../shared/models/stories260K.gguf), and the same models after
// torch.ao.quantization.quantize_dynamic on the onednn engine.
#include <QFile>
#include <QFileInfo>
#include <QTest>

#include <cmath>
#include <nlohmann/json.hpp>

#include "io/demomodel.h"
#include "model.h"
#include "runner/encoder.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

struct Fixture {
    Model model;
    EncoderInput input;
    std::vector<float> fp32, int8;
    nlohmann::json ref;
};

std::vector<float> floats(const Model& m, const char* name)
{
    const Tensor* t = m.find(name);
    if (!t)
        return {};
    auto v = t->toFloat();
    return v ? std::move(*v) : std::vector<float>{};
}

// <name>_ref.safetensors and <name>_ref.json: the input and torch's outputs (the model is loaded apart).
bool loadRefs(const QString& name, Fixture& f)
{
    const QString base = test::dataPath(QStringLiteral("encoder/") + name);
    auto r = openModel((base + QStringLiteral("_ref.safetensors")).toStdString());
    if (!r)
        return false;
    const Tensor* ids = r->find("input_ids");
    if (!ids || ids->rank() != 2)
        return false;
    f.input.batch = ids->shape[0];
    f.input.seqLen = ids->shape[1];
    f.input.ids.clear();
    f.input.mask.clear();
    for (float v : floats(*r, "input_ids"))
        f.input.ids.push_back(int64_t(v));
    for (float v : floats(*r, "attention_mask"))
        f.input.mask.push_back(uint8_t(v != 0));
    f.fp32 = floats(*r, "hidden_fp32");
    f.int8 = floats(*r, "hidden_int8");
    QFile j(base + QStringLiteral("_ref.json"));
    if (!j.open(QIODevice::ReadOnly))
        return false;
    f.ref = nlohmann::json::parse(j.readAll().toStdString());
    return !f.fp32.empty() && f.fp32.size() == f.int8.size() && f.input.mask.size() == f.input.ids.size();
}

// Loads <name>.safetensors (or .gguf), its reference tensors and JSON; call via QVERIFY(load(...)).
bool load(const QString& name, Fixture& f)
{
    QString path = test::dataPath(QStringLiteral("encoder/") + name + QStringLiteral(".safetensors"));
    if (!QFile::exists(path))
        path = test::dataPath(QStringLiteral("encoder/") + name + QStringLiteral(".gguf"));
    auto m = openModel(path.toStdString());
    if (!m) {
        qWarning("%s", m.error().oneLine().c_str());
        return false;
    }
    f.model = std::move(*m);
    return loadRefs(name, f);
}

// The head count the fixture was made with; a GGUF file says it in its metadata, which is
// what its rows check. A config.json beside the weights (llama3_tiny/) adds what it says.
EncoderOptions optionsFor(const Fixture& f)
{
    EncoderOptions o;
    if (f.model.format != "gguf")
        o.heads = f.ref["heads"].get<int64_t>();
    if (!f.model.files.empty()) {
        const QString dir = QFileInfo(QString::fromStdString(f.model.files.front())).absolutePath();
        if (!readHfConfigHints((dir + QStringLiteral("/config.json")).toStdString(), o).ok())
            qWarning("unreadable config.json in %s", qPrintable(dir));
    }
    return o;
}

// max |y - ref| / max(1, |ref|): relative for the O(1) values of a normalised hidden state.
double maxRelativeDifference(const std::vector<float>& y, const std::vector<float>& ref)
{
    double worst = y.size() == ref.size() ? 0 : INFINITY;
    for (size_t i = 0; i < y.size() && i < ref.size(); ++i)
        worst = std::max(worst, std::fabs(y[i] - ref[i]) / std::max(1.0, double(std::fabs(ref[i]))));
    return worst;
}

// A trained model from ../shared/models against its torch references (<refs>_ref.*): the
// config, float32 to 1e-4 relative, then every layer int8. Fills `config` and `int8` for the
// caller's own int8 criteria; QVERIFYs inside, so check QTest::currentTestFailed() after.
void runSharedModel(const QString& refs, const QString& file, const EncoderOptions& opt, Fixture& f,
                    EncoderConfig& config, std::vector<float>& int8)
{
    QVERIFY(loadRefs(refs, f));
    auto m = openModel(test::sharedModel(file).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    auto r = EncoderRunner::create(*m, opt);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
    config = r->config();
    QCOMPARE(config.layers, f.ref["layers"].get<int64_t>());
    QCOMPARE(config.intermediate, f.ref["intermediate"].get<int64_t>());
    QCOMPARE(config.maxPositions, f.ref["max_positions"].get<int64_t>());
    QCOMPARE(config.heads, f.ref["heads"].get<int64_t>());
    auto y = r->forward(f.input);
    QVERIFY(y.ok());
    const double worst = maxRelativeDifference(*y, f.fp32);
    qDebug("%s fp32: max relative difference to torch %.3g", qPrintable(refs), worst);
    QVERIFY(worst <= 1e-4);
    QVERIFY(r->setAllQuantized(true).ok());
    auto q = r->forward(f.input);
    QVERIFY(q.ok());
    int8 = std::move(*q);
}

void fixtureRows()
{
    QTest::addColumn<QString>("fixture");
    QTest::addColumn<QString>("family");
    QTest::newRow("bert-named hidden 64, 4 heads") << QStringLiteral("bert_tiny") << QStringLiteral("bert");
    QTest::newRow("distilbert-named hidden 48, 4 heads") << QStringLiteral("distilbert_tiny") << QStringLiteral("distilbert");
    QTest::newRow("roberta-named, positions from 2, eps 1e-5") << QStringLiteral("roberta_tiny") << QStringLiteral("roberta");
    QTest::newRow("distilbert with an outlier layer") << QStringLiteral("distilbert_outlier") << QStringLiteral("distilbert");
    QTest::newRow("gpt2-named hidden 32, 2 heads, Conv1D [in, out]") << QStringLiteral("gpt2_tiny") << QStringLiteral("gpt2");
    QTest::newRow("llama, HF names, 4 heads over 2 kv heads") << QStringLiteral("llama_tiny") << QStringLiteral("llama");
    QTest::newRow("llama, GGUF names and metadata, theta 5e5") << QStringLiteral("llama_gguf_tiny") << QStringLiteral("llama");
    QTest::newRow("llama, HF names, llama3 rope_scaling in config.json") << QStringLiteral("llama3_tiny/model") << QStringLiteral("llama");
    QTest::newRow("llama, GGUF names, llama3 scaling as rope_freqs") << QStringLiteral("llama3_gguf_tiny") << QStringLiteral("llama");
    QTest::newRow("mistral: sliding window 6") << QStringLiteral("mistral_tiny/model") << QStringLiteral("llama");
    QTest::newRow("qwen2: q/k/v biases, its window switched off") << QStringLiteral("qwen2_tiny/model") << QStringLiteral("llama");
    QTest::newRow("qwen2 gguf: biases, rotary halves, qwen2.* metadata") << QStringLiteral("qwen2_gguf_tiny") << QStringLiteral("llama");
}

}  // namespace

class TestEncoder : public QObject {
    Q_OBJECT

private slots:
    void infersConfigFromShapes_data() { fixtureRows(); }
    void infersConfigFromShapes()
    {
        QFETCH(QString, fixture);
        QFETCH(QString, family);
        Fixture f;
        QVERIFY(load(fixture, f));
        auto c = inferEncoderConfig(f.model, optionsFor(f));
        QVERIFY2(c.ok(), c.ok() ? "" : c.error().oneLine().c_str());
        QCOMPARE(QString::fromStdString(encoderFamilyName(c->family)), family);
        QCOMPARE(c->hidden, f.ref["hidden"].get<int64_t>());
        QCOMPARE(c->layers, f.ref["layers"].get<int64_t>());
        QCOMPARE(c->intermediate, f.ref["intermediate"].get<int64_t>());
        QCOMPARE(c->vocab, f.ref["vocab"].get<int64_t>());
        QCOMPARE(c->maxPositions, f.ref["max_positions"].get<int64_t>());
        QCOMPARE(c->layerNormEps, f.ref["layer_norm_eps"].get<double>());
        QCOMPARE(c->heads, f.ref["heads"].get<int64_t>());
        if (family == QStringLiteral("llama")) {
            QCOMPARE(c->kvHeads, f.ref["kv_heads"].get<int64_t>());
            QCOMPARE(c->ropeTheta, f.ref["rope_theta"].get<double>());
            const bool qwen2 = fixture.startsWith(QStringLiteral("qwen2"));
            QCOMPARE(c->ropeAdjacentPairs, f.model.format == "gguf" && !qwen2);
            QCOMPARE(c->ggufNames, f.model.format == "gguf");
            QCOMPARE(QString::fromStdString(c->headsFrom),
                     f.model.format == "gguf" ? QStringLiteral("gguf metadata") : QString());
            const bool scaled = f.ref.contains("rope_scaling");
            QCOMPARE(QString::fromStdString(c->ropeScaling),
                     !scaled ? QString() : f.model.format == "gguf" ? QStringLiteral("gguf rope_freqs") : QStringLiteral("llama3"));
            QCOMPARE(c->ropeFreqDivisors.size(), scaled ? size_t(c->headDim / 2) : size_t(0));
            QCOMPARE(c->slidingWindow, f.ref.value("sliding_window", int64_t(0)));
        }
    }

    // transformers' float32 forward, reproduced by the torch modules of the fixture script.
    void fp32MatchesTorch_data() { fixtureRows(); }
    void fp32MatchesTorch()
    {
        QFETCH(QString, fixture);
        Fixture f;
        QVERIFY(load(fixture, f));
        auto r = EncoderRunner::create(f.model, optionsFor(f));
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        auto y = r->forward(f.input);
        QVERIFY2(y.ok(), y.ok() ? "" : y.error().oneLine().c_str());
        QCOMPARE(y->size(), f.fp32.size());
        // 1e-4 relative to the magnitude of the value (LayerNorm outputs are O(1));
        // padding rows are compared too, since transformers computes them the same way.
        double worst = 0;
        for (size_t i = 0; i < y->size(); ++i) {
            const double rel = std::fabs((*y)[i] - f.fp32[i]) / std::max(1.0, double(std::fabs(f.fp32[i])));
            worst = std::max(worst, rel);
            if (rel > 1e-4)
                QFAIL(qPrintable(QStringLiteral("element %1: ours %2, torch %3").arg(i).arg((*y)[i]).arg(f.fp32[i])));
        }
        qDebug("max relative difference to torch fp32: %.3g", worst);
    }

    // All linear layers int8 vs torch quantize_dynamic (onednn engine). DynamicLinear follows
    // the x86 FBGEMM rules; on these fixtures onednn produces the same integers, so the only
    // difference left is float rounding in the epilogue and the rest of the network: the
    // outputs must agree to 1e-4 absolute (observed ~1e-6), and the end-to-end cosine to
    // fp32 to +-0.001 (observed ~1e-7).
    void int8MatchesQuantizeDynamic_data() { fixtureRows(); }
    void int8MatchesQuantizeDynamic()
    {
        QFETCH(QString, fixture);
        Fixture f;
        QVERIFY(load(fixture, f));
        auto r = EncoderRunner::create(f.model, optionsFor(f));
        QVERIFY(r.ok());
        auto s = r->setAllQuantized(true);
        QVERIFY2(s.ok(), s.ok() ? "" : s.error().oneLine().c_str());
        auto y = r->forward(f.input);
        QVERIFY(y.ok());

        EncoderInput all = f.input;  // compare padding rows too
        std::fill(all.mask.begin(), all.mask.end(), uint8_t(1));
        const HiddenComparison ours = compareHidden(f.fp32, *y, all, r->config().hidden);
        const HiddenComparison torch = compareHidden(f.fp32, f.int8, all, r->config().hidden);
        const HiddenComparison between = compareHidden(f.int8, *y, all, r->config().hidden);
        qDebug("cosine to fp32: ours %.6f torch %.6f; sqnr ours %.2f dB torch %.2f dB; ours vs torch int8: max %.3g, sqnr %.2f dB",
               ours.cosine, torch.cosine, ours.sqnrDb, torch.sqnrDb, between.maxAbsError, between.sqnrDb);
        QVERIFY(std::fabs(ours.cosine - torch.cosine) <= 1e-3);
        QVERIFY(std::fabs(ours.cosine - f.ref["int8_vs_fp32"]["cosine"].get<double>()) <= 1e-3);
        QVERIFY(ours.cosine < 1.0);  // it really ran int8
        QVERIFY(between.maxAbsError <= 1e-4);
        QVERIFY(torch.maxAbsError > 100 * between.maxAbsError);  // the check can tell int8 from fp32
    }

    void switchingBackToFp32IsExact()
    {
        Fixture f;
        QVERIFY(load(QStringLiteral("bert_tiny"), f));
        auto r = EncoderRunner::create(f.model, optionsFor(f));
        QVERIFY(r.ok());
        auto before = r->forward(f.input);
        QVERIFY(r->setQuantized(r->linearNames()[2], true).ok());
        QVERIFY(r->isQuantized(2));
        auto mid = r->forward(f.input);
        QVERIFY(r->setQuantized(2, false).ok());
        auto after = r->forward(f.input);
        QVERIFY(before.ok() && mid.ok() && after.ok());
        QVERIFY(*before == *after);
        QVERIFY(*before != *mid);
    }

    void linearNamesInExecutionOrder()
    {
        Fixture f;
        QVERIFY(load(QStringLiteral("distilbert_tiny"), f));
        auto r = EncoderRunner::create(f.model, optionsFor(f));
        QVERIFY(r.ok());
        const auto n = r->linearNames();
        QCOMPARE(n.size(), size_t(12));
        QCOMPARE(QString::fromStdString(n[0]), QStringLiteral("distilbert.transformer.layer.0.attention.q_lin"));
        QCOMPARE(QString::fromStdString(n[5]), QStringLiteral("distilbert.transformer.layer.0.ffn.lin2"));
        QCOMPARE(QString::fromStdString(n[11]), QStringLiteral("distilbert.transformer.layer.1.ffn.lin2"));
        QVERIFY(!r->setQuantized(std::string("distilbert.embeddings.word_embeddings"), true).ok());
        QVERIFY(!r->setQuantized(12, true).ok());
    }

    void gpt2NamesAndLayout()
    {
        Fixture f;
        QVERIFY(load(QStringLiteral("gpt2_tiny"), f));
        // The reader marks GPT-2's Conv1D weights [in, out]; the runner transposes them.
        QCOMPARE(f.model.find("transformer.h.0.attn.c_attn.weight")->layout, Layout::InOut);
        auto r = EncoderRunner::create(f.model, optionsFor(f));
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        const auto n = r->linearNames();
        QCOMPARE(n.size(), size_t(8));  // c_attn (fused q|k|v), c_proj, c_fc, mlp.c_proj per block
        QCOMPARE(QString::fromStdString(n[0]), QStringLiteral("transformer.h.0.attn.c_attn"));
        QCOMPARE(QString::fromStdString(n[1]), QStringLiteral("transformer.h.0.attn.c_proj"));
        QCOMPARE(QString::fromStdString(n[2]), QStringLiteral("transformer.h.0.mlp.c_fc"));
        QCOMPARE(QString::fromStdString(n[7]), QStringLiteral("transformer.h.1.mlp.c_proj"));
        QCOMPARE(r->config().prefix, std::string("transformer."));
    }

    // Causality: a token's state cannot depend on later tokens, so appending tokens leaves
    // the earlier rows as they were (bit for bit: the same operations run on them).
    void decoderIsCausal_data()
    {
        QTest::addColumn<QString>("fixture");
        QTest::newRow("gpt2") << QStringLiteral("gpt2_tiny");
        QTest::newRow("llama") << QStringLiteral("llama_tiny");
        QTest::newRow("llama gguf") << QStringLiteral("llama_gguf_tiny");
    }
    void decoderIsCausal()
    {
        QFETCH(QString, fixture);
        Fixture f;
        QVERIFY(load(fixture, f));
        auto r = EncoderRunner::create(f.model, optionsFor(f));
        QVERIFY(r.ok());
        const EncoderInput longer = randomEncoderInput(1, 10, r->config().vocab, 3);
        EncoderInput shorter = longer;
        shorter.seqLen = 6;
        shorter.ids.resize(6);
        shorter.mask.resize(6);
        auto a = r->forward(longer);
        auto b = r->forward(shorter);
        QVERIFY(a.ok() && b.ok());
        const int64_t h = r->config().hidden;
        double worst = 0;
        for (int64_t i = 0; i < 6 * h; ++i)
            worst = std::max(worst, double(std::fabs((*a)[size_t(i)] - (*b)[size_t(i)])));
        QVERIFY2(worst < 1e-5, qPrintable(QStringLiteral("earlier rows moved by %1").arg(worst)));
        // ...while a later token does change (the check can fail).
        EncoderInput changed = longer;
        changed.ids[2] = (changed.ids[2] + 1) % r->config().vocab;
        auto c = r->forward(changed);
        QVERIFY(c.ok());
        QVERIFY(std::fabs((*c)[size_t(9 * h)] - (*a)[size_t(9 * h)]) > 1e-6);
    }

    void gpt2RejectsBadModels_data()
    {
        QTest::addColumn<QString>("drop");
        QTest::addColumn<QString>("code");
        QTest::newRow("no ln_f") << QStringLiteral("transformer.ln_f.bias") << QStringLiteral("missing-tensor");
        QTest::newRow("no position table") << QStringLiteral("transformer.wpe.weight") << QStringLiteral("missing-tensor");
        QTest::newRow("no MLP projection") << QStringLiteral("transformer.h.1.mlp.c_proj.weight") << QStringLiteral("missing-tensor");
        QTest::newRow("no c_fc: MLP size unknown") << QStringLiteral("transformer.h.0.mlp.c_fc.weight") << QStringLiteral("bad-shape");
    }
    void gpt2RejectsBadModels()
    {
        QFETCH(QString, drop);
        QFETCH(QString, code);
        Fixture f;
        QVERIFY(load(QStringLiteral("gpt2_tiny"), f));
        Model m = f.model;
        std::erase_if(m.tensors, [&](const Tensor& t) { return QString::fromStdString(t.name) == drop; });
        auto r = EncoderRunner::create(m, optionsFor(f));
        QVERIFY(!r.ok());
        QCOMPARE(QString::fromStdString(r.error().code), code);
        QVERIFY(!r.error().message.empty());
    }

    // The trained GPT-2 from ../shared/models (n_embd 64, 4 layers, 4 heads), against the
    // same forward in torch: float32 to 1e-4 relative, all-int8 to quantize_dynamic.
    void gpt2CappMatchesTorch()
    {
        QL_REQUIRE_SHARED_MODELS();
        Fixture f;
        EncoderConfig c;
        std::vector<float> q;
        EncoderOptions o;
        o.heads = 4;  // its config.json's n_head
        runSharedModel(QStringLiteral("gpt2_capp"), QStringLiteral("gpt2_capp.safetensors"), o, f, c, q);
        if (QTest::currentTestFailed())
            return;
        QCOMPARE(c.family, EncoderFamily::Gpt2);
        const HiddenComparison ours = compareHidden(f.fp32, q, f.input, c.hidden);
        const HiddenComparison between = compareHidden(f.int8, q, f.input, c.hidden);
        qDebug("gpt2_capp int8: cosine to fp32 ours %.6f torch %.6f; ours vs torch int8 max %.3g",
               ours.cosine, f.ref["int8_vs_fp32"]["cosine"].get<double>(), between.maxAbsError);
        QVERIFY(std::fabs(ours.cosine - f.ref["int8_vs_fp32"]["cosine"].get<double>()) <= 1e-3);
        QVERIFY(between.maxAbsError <= 1e-4);
        QVERIFY(ours.cosine < 1.0);
    }

    // Execution order q, k, v, o, gate, up, down per layer, under each naming; grouped-query
    // attention gives k and v fewer outputs than q.
    void llamaNamesAndShapes_data()
    {
        QTest::addColumn<QString>("fixture");
        QTest::addColumn<QString>("first");
        QTest::addColumn<QString>("last");
        QTest::newRow("hf") << QStringLiteral("llama_tiny") << QStringLiteral("model.layers.0.self_attn.q_proj")
                            << QStringLiteral("model.layers.1.mlp.down_proj");
        QTest::newRow("gguf") << QStringLiteral("llama_gguf_tiny") << QStringLiteral("blk.0.attn_q")
                              << QStringLiteral("blk.1.ffn_down");
    }
    void llamaNamesAndShapes()
    {
        QFETCH(QString, fixture);
        QFETCH(QString, first);
        QFETCH(QString, last);
        Fixture f;
        QVERIFY(load(fixture, f));
        auto r = EncoderRunner::create(f.model, optionsFor(f));
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        const auto n = r->linearNames();
        QCOMPARE(n.size(), size_t(14));
        QCOMPARE(QString::fromStdString(n[0]), first);
        QCOMPARE(QString::fromStdString(n[13]), last);
        QVERIFY(QString::fromStdString(n[5]).contains(QStringLiteral("up")));
        QCOMPARE(r->config().headDim, int64_t(8));
        QCOMPARE(r->config().kvHeads, int64_t(2));
        // The rotary layout goes with the names (fp32MatchesTorch checks each against torch).
        QCOMPARE(r->config().ropeAdjacentPairs, fixture.contains(QStringLiteral("gguf")));
    }

    // Without its rope_scaling the llama3 fixture is a different model: the check above can
    // fail. Linear scaling divides every frequency by the factor.
    void llamaRopeScaling()
    {
        Fixture f;
        QVERIFY(load(QStringLiteral("llama3_tiny/model"), f));
        EncoderOptions o = optionsFor(f);
        QCOMPARE(QString::fromStdString(o.ropeScaling.type), QStringLiteral("llama3"));
        QCOMPARE(o.ropeScaling.originalMaxPositions, 64.0);
        auto c = inferEncoderConfig(f.model, o);
        QVERIFY(c.ok());
        // d = 8, theta 1e4: wavelengths 6.3 (kept), 63 (blended), 628 and 6283 (divided by 8).
        QCOMPARE(c->ropeFreqDivisors[0], 1.0);
        QVERIFY(c->ropeFreqDivisors[1] > 1.0 && c->ropeFreqDivisors[1] < 8.0);
        QCOMPARE(c->ropeFreqDivisors[2], 8.0);
        QCOMPARE(c->ropeFreqDivisors[3], 8.0);
        QCOMPARE(c->maxPositions, int64_t(256));  // max_position_embeddings
        o.ropeScaling = RopeScaling{};
        auto r = EncoderRunner::create(f.model, o);
        QVERIFY(r.ok());
        auto y = r->forward(f.input);
        QVERIFY(y.ok());
        QVERIFY2(maxRelativeDifference(*y, f.fp32) > 1e-3, "rope_scaling made no difference");

        o.ropeScaling.type = "linear";
        o.ropeScaling.factor = 4;
        auto lin = inferEncoderConfig(f.model, o);
        QVERIFY(lin.ok());
        QCOMPARE(lin->ropeFreqDivisors, std::vector<double>(4, 4.0));
    }

    // Mistral's window changes what rows past it see (the fixture can fail without it);
    // Qwen2's use_sliding_window = true windows some layers only and is refused.
    void llamaSlidingWindow()
    {
        Fixture f;
        QVERIFY(load(QStringLiteral("mistral_tiny/model"), f));
        EncoderOptions o = optionsFor(f);
        QCOMPARE(o.slidingWindow, int64_t(6));
        o.slidingWindow = 0;
        auto r = EncoderRunner::create(f.model, o);
        QVERIFY(r.ok());
        auto y = r->forward(f.input);
        QVERIFY(y.ok());
        QVERIFY2(maxRelativeDifference(*y, f.fp32) > 1e-3, "the window made no difference");
        // The first 6 rows of the 12-token sequence see the same keys either way.
        std::vector<float> head(y->begin(), y->begin() + 6 * r->config().hidden);
        QVERIFY(maxRelativeDifference(head, {f.fp32.begin(), f.fp32.begin() + 6 * r->config().hidden}) < 1e-4);

        Fixture q;
        QVERIFY(load(QStringLiteral("qwen2_tiny/model"), q));
        EncoderOptions qo = optionsFor(q);
        QCOMPARE(qo.slidingWindow, int64_t(0));  // use_sliding_window: false
        qo.slidingWindow = -1;                    // what use_sliding_window: true reads as
        auto refused = inferEncoderConfig(q.model, qo);
        QVERIFY(!refused.ok());
        QCOMPARE(QString::fromStdString(refused.error().code), QStringLiteral("unsupported-model"));
    }

    void llamaRejectsBadModels_data()
    {
        QTest::addColumn<QString>("fixture");
        QTest::addColumn<QString>("drop");      // tensor removed
        QTest::addColumn<QString>("metaKey");   // metadata entry changed
        QTest::addColumn<QString>("metaValue");
        QTest::addColumn<int>("heads");
        QTest::addColumn<QString>("code");
        QTest::newRow("no final norm") << QStringLiteral("llama_tiny") << QStringLiteral("model.norm.weight") << QString()
                                       << QString() << 4 << QStringLiteral("missing-tensor");
        QTest::newRow("no up_proj") << QStringLiteral("llama_tiny") << QStringLiteral("model.layers.1.mlp.up_proj.weight")
                                    << QString() << QString() << 4 << QStringLiteral("missing-tensor");
        QTest::newRow("no gate: MLP size unknown") << QStringLiteral("llama_tiny")
                                                   << QStringLiteral("model.layers.0.mlp.gate_proj.weight") << QString()
                                                   << QString() << 4 << QStringLiteral("missing-tensor");
        QTest::newRow("3 heads do not split 32") << QStringLiteral("llama_tiny") << QString() << QString() << QString()
                                                 << 3 << QStringLiteral("bad-heads");
        QTest::newRow("8 heads of 4: k's 16 outputs are 4 kv heads, ok") << QStringLiteral("llama_tiny") << QString()
                                                                        << QString() << QString() << 8 << QString();
        QTest::newRow("hidden 32 is no multiple of 64: heads unknown") << QStringLiteral("llama_tiny") << QString()
                                                                       << QString() << QString() << 0
                                                                       << QStringLiteral("heads-unknown");
        QTest::newRow("gguf phi3: another model") << QStringLiteral("llama_gguf_tiny") << QString()
                                                  << QStringLiteral("general.architecture")
                                                  << QStringLiteral("phi3") << 0
                                                  << QStringLiteral("unsupported-model");
        QTest::newRow("gguf relabelled qwen2: no qwen2.* head count") << QStringLiteral("llama_gguf_tiny") << QString()
                                                                      << QStringLiteral("general.architecture")
                                                                      << QStringLiteral("qwen2") << 0
                                                                      << QStringLiteral("heads-unknown");
        QTest::newRow("gguf kv heads disagree with k") << QStringLiteral("llama_gguf_tiny") << QString()
                                                       << QStringLiteral("llama.attention.head_count_kv")
                                                       << QStringLiteral("1") << 0 << QStringLiteral("bad-heads");
        QTest::newRow("gguf partial rotary") << QStringLiteral("llama_gguf_tiny") << QString()
                                             << QStringLiteral("llama.rope.dimension_count") << QStringLiteral("4") << 0
                                             << QStringLiteral("unsupported-model");
        QTest::newRow("gguf no head count: hidden/64 unknown") << QStringLiteral("llama_gguf_tiny") << QString()
                                                               << QStringLiteral("llama.attention.head_count")
                                                               << QStringLiteral("[2 int32s: 4, 4]") << 0
                                                               << QStringLiteral("heads-unknown");
        QTest::newRow("gguf head count 1e30: not a count") << QStringLiteral("llama_gguf_tiny") << QString()
                                                           << QStringLiteral("llama.attention.head_count")
                                                           << QStringLiteral("1e30") << 0
                                                           << QStringLiteral("heads-unknown");
        QTest::newRow("config.json rope_scaling yarn") << QStringLiteral("llama_tiny") << QString()
                                                       << QStringLiteral("config.json rope_scaling")
                                                       << QStringLiteral("yarn") << 4
                                                       << QStringLiteral("unsupported-model");
        QTest::newRow("gguf rope scaling yarn") << QStringLiteral("llama3_gguf_tiny") << QString()
                                                << QStringLiteral("llama.rope.scaling.type") << QStringLiteral("yarn")
                                                << 0 << QStringLiteral("unsupported-model");
        QTest::newRow("gguf linear scaling without a factor") << QStringLiteral("llama3_gguf_tiny") << QString()
                                                              << QStringLiteral("llama.rope.scaling.type")
                                                              << QStringLiteral("linear") << 0
                                                              << QStringLiteral("bad-value");
        QTest::newRow("gguf context 1e30: the default 2048") << QStringLiteral("llama_gguf_tiny") << QString()
                                                             << QStringLiteral("llama.context_length")
                                                             << QStringLiteral("1e30") << 0 << QString();
    }
    void llamaRejectsBadModels()
    {
        QFETCH(QString, fixture);
        QFETCH(QString, drop);
        QFETCH(QString, metaKey);
        QFETCH(QString, metaValue);
        QFETCH(int, heads);
        QFETCH(QString, code);
        Fixture f;
        QVERIFY(load(fixture, f));
        Model m = f.model;
        std::erase_if(m.tensors, [&](const Tensor& t) { return QString::fromStdString(t.name) == drop; });
        bool changed = metaKey.isEmpty();
        for (auto& [k, v] : m.metadata)
            if (QString::fromStdString(k) == metaKey) {
                v = metaValue.toStdString();
                changed = true;
            }
        if (!changed)
            m.metadata.emplace_back(metaKey.toStdString(), metaValue.toStdString());
        EncoderOptions o;
        o.heads = heads;
        if (metaKey == QStringLiteral("config.json rope_scaling"))
            o.ropeScaling.type = metaValue.toStdString();
        auto r = EncoderRunner::create(m, o);
        if (code.isEmpty()) {
            QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
            QVERIFY(r->forward(f.input).ok());
            return;
        }
        QVERIFY(!r.ok());
        QCOMPARE(QString::fromStdString(r.error().code), code);
        QVERIFY(!r.error().message.empty());
    }

    // The trained stories260K (llama2.c's TinyStories model, GGUF: 5 layers, 8 heads over 4
    // kv heads, hidden 64), against the same forward in torch, whose greedy continuation of
    // "Once upon a time" reads as a story (make_llama_fixtures.py prints it).
    void storiesMatchesTorch()
    {
        QL_REQUIRE_SHARED_MODELS();
        Fixture f;
        EncoderConfig c;
        std::vector<float> q;
        runSharedModel(QStringLiteral("stories260K"), QStringLiteral("stories260K.gguf"), {}, f, c, q);
        if (QTest::currentTestFailed())
            return;
        QCOMPARE(c.family, EncoderFamily::Llama);
        QCOMPARE(c.kvHeads, int64_t(4));
        QCOMPARE(c.layerNormEps, f.ref["layer_norm_eps"].get<double>());
        const HiddenComparison ours = compareHidden(f.fp32, q, f.input, c.hidden);
        const HiddenComparison between = compareHidden(f.int8, q, f.input, c.hidden);
        // Unlike gpt2_capp, this model's int8 output cannot match torch's to 1e-4: the float32
        // parts of the two forwards differ by ulps (5e-6 here), and wherever that moves an
        // activation across a rounding boundary its int8 byte changes by one step, which the
        // attention then spreads over later tokens. Torch against itself shows the same: with
        // every attn_norm weight scaled by (1 + 2^-23) (float32 output moved by 1e-5), its
        // int8 output moves by max 0.316 and the two agree to 32.0 dB (measured with the
        // fixture script's model). Every layer alone on torch's own inputs agrees to < 2e-6
        // (`quantlens-cli run`). So: the same int8 quality as torch, and agreement at that level.
        const HiddenComparison torch = compareHidden(f.fp32, f.int8, f.input, c.hidden);
        qDebug("stories260K int8 vs fp32: cosine ours %.6f torch %.6f, SQNR ours %.2f dB torch %.2f dB; "
               "ours vs torch int8: SQNR %.2f dB, max %.3g",
               ours.cosine, torch.cosine, ours.sqnrDb, torch.sqnrDb, between.sqnrDb, between.maxAbsError);
        QVERIFY(std::fabs(ours.cosine - torch.cosine) <= 1e-3);
        QVERIFY(std::fabs(ours.sqnrDb - torch.sqnrDb) <= 0.3);
        QVERIFY(between.sqnrDb >= 28);
        QVERIFY(ours.cosine < 1.0);
    }

    void demoModelRuns()
    {
        const Model demo = makeDemoModel(2, 128);
        auto r = EncoderRunner::create(demo);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        QCOMPARE(r->config().heads, int64_t(2));  // hidden/64
        QCOMPARE(r->config().family, EncoderFamily::DistilBert);
        auto y = r->forward(randomEncoderInput(2, 16, r->config().vocab));
        QVERIFY(y.ok());
        for (float v : *y)
            QVERIFY(std::isfinite(v));
    }

    void rejectsBadModels_data()
    {
        QTest::addColumn<QString>("drop");     // tensor removed from the fixture
        QTest::addColumn<QString>("reshape");  // tensor given a wrong shape
        QTest::addColumn<int>("heads");
        QTest::addColumn<QString>("code");
        QTest::newRow("missing value weight") << QStringLiteral("bert.encoder.layer.1.attention.self.value.weight") << QString() << 4 << QStringLiteral("missing-tensor");
        QTest::newRow("missing LayerNorm bias") << QStringLiteral("bert.encoder.layer.0.output.LayerNorm.bias") << QString() << 4 << QStringLiteral("missing-tensor");
        QTest::newRow("no word embeddings") << QStringLiteral("bert.embeddings.word_embeddings.weight") << QString() << 4 << QStringLiteral("not-an-encoder");
        QTest::newRow("transposed output dense") << QString() << QStringLiteral("bert.encoder.layer.0.output.dense.weight") << 4 << QStringLiteral("bad-shape");
        QTest::newRow("heads do not divide 64") << QString() << QString() << 5 << QStringLiteral("bad-heads");
        QTest::newRow("hidden 64 would be 1 head: ok") << QString() << QString() << 0 << QString();
    }
    void rejectsBadModels()
    {
        QFETCH(QString, drop);
        QFETCH(QString, reshape);
        QFETCH(int, heads);
        QFETCH(QString, code);
        Fixture f;
        QVERIFY(load(QStringLiteral("bert_tiny"), f));
        Model m = f.model;
        std::erase_if(m.tensors, [&](const Tensor& t) { return QString::fromStdString(t.name) == drop; });
        for (Tensor& t : m.tensors)
            if (QString::fromStdString(t.name) == reshape)
                std::swap(t.shape[0], t.shape[1]);
        EncoderOptions o;
        o.heads = heads;
        auto r = EncoderRunner::create(m, o);
        if (code.isEmpty()) {
            QVERIFY(r.ok());
            return;
        }
        QVERIFY(!r.ok());
        QCOMPARE(QString::fromStdString(r.error().code), code);
    }

    void headsCannotBeInferredForHidden48()
    {
        Fixture f;
        QVERIFY(load(QStringLiteral("distilbert_tiny"), f));
        auto r = inferEncoderConfig(f.model);
        QVERIFY(!r.ok());
        QCOMPARE(QString::fromStdString(r.error().code), QStringLiteral("heads-unknown"));
    }

    void rejectsBadInputs_data()
    {
        QTest::addColumn<qint64>("id");
        QTest::addColumn<qint64>("length");
        QTest::addColumn<QString>("code");
        QTest::newRow("id = vocab") << qint64(100) << qint64(8) << QStringLiteral("bad-token");
        QTest::newRow("negative id") << qint64(-1) << qint64(8) << QStringLiteral("bad-token");
        QTest::newRow("65 tokens, 64 positions") << qint64(5) << qint64(65) << QStringLiteral("too-long");
        QTest::newRow("64 tokens fit") << qint64(5) << qint64(64) << QString();
    }
    void rejectsBadInputs()
    {
        QFETCH(qint64, id);
        QFETCH(qint64, length);
        QFETCH(QString, code);
        Fixture f;
        QVERIFY(load(QStringLiteral("bert_tiny"), f));
        auto r = EncoderRunner::create(f.model, optionsFor(f));
        QVERIFY(r.ok());
        EncoderInput in = randomEncoderInput(1, length, 100);
        in.ids[size_t(length / 2)] = id;
        auto y = r->forward(in);
        if (code.isEmpty()) {
            QVERIFY(y.ok());
            return;
        }
        QVERIFY(!y.ok());
        QCOMPARE(QString::fromStdString(y.error().code), code);
    }

    void robertaLengthLimitCountsTheOffset()
    {
        Fixture f;
        QVERIFY(load(QStringLiteral("roberta_tiny"), f));
        auto r = EncoderRunner::create(f.model, optionsFor(f));
        QVERIFY(r.ok());
        QVERIFY(r->forward(randomEncoderInput(1, 64, 100)).ok());    // positions 2..65 of 66
        QVERIFY(!r->forward(randomEncoderInput(1, 65, 100)).ok());
    }

    void tokenText_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<int>("sequences");
        QTest::addColumn<bool>("ok");
        QTest::newRow("two lines, blank skipped") << QStringLiteral("101 7 8 102\n\n101 9 102\n") << 2 << true;
        QTest::newRow("tabs and CRLF") << QStringLiteral("1\t2 3\r\n4") << 2 << true;
        QTest::newRow("not a number") << QStringLiteral("1 2 x\n") << 0 << false;
        QTest::newRow("empty") << QStringLiteral("  \n") << 0 << false;
    }
    void tokenText()
    {
        QFETCH(QString, text);
        QFETCH(int, sequences);
        QFETCH(bool, ok);
        auto r = parseTokenText(text.toStdString());
        QCOMPARE(r.ok(), ok);
        if (ok)
            QCOMPARE(int(r->size()), sequences);
    }

    void paddingMatchesMask()
    {
        auto in = makeEncoderInput({{5, 6, 7}, {8}}, 1);
        QVERIFY(in.ok());
        QCOMPARE(in->seqLen, int64_t(3));
        QCOMPARE(in->ids, (std::vector<int64_t>{5, 6, 7, 8, 1, 1}));
        QCOMPARE(in->mask, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0}));
    }

    void hfConfigHints()
    {
        const QString path = QDir::temp().filePath(QStringLiteral("ql_enc_config.json"));
        QFile fj(path);
        QVERIFY(fj.open(QIODevice::WriteOnly));
        fj.write(R"({"model_type":"distilbert","n_heads":4,"dim":48})");
        fj.close();
        EncoderOptions o;
        auto r = readHfConfigHints(path.toStdString(), o);
        QVERIFY(r.ok() && *r);
        QCOMPARE(o.heads, int64_t(4));
        EncoderOptions given;
        given.heads = 2;  // the user's value wins
        QVERIFY(readHfConfigHints(path.toStdString(), given).ok());
        QCOMPARE(given.heads, int64_t(2));
        QVERIFY(fj.open(QIODevice::WriteOnly | QIODevice::Truncate));
        fj.write("{not json");
        fj.close();
        QVERIFY(!readHfConfigHints(path.toStdString(), o).ok());
        QFile::remove(path);
        auto missing = readHfConfigHints(path.toStdString(), o);
        QVERIFY(missing.ok() && !*missing);
    }
};

QTEST_GUILESS_MAIN(TestEncoder)
#include "tst_encoder.moc"
