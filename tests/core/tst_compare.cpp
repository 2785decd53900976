// Comparing two checkpoints (core/compare): name pairing across Hugging Face and GGUF names,
// llama.cpp's q/k row permutation undone with the GGUF head counts, [in, out] kernels, the
// per-tensor figures, unpaired and mismatched tensors with their reasons, cancel.
#include <QFile>
#include <QTest>

#include <cmath>
#include <numeric>

#include <nlohmann/json.hpp>

#include "compare/compare.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

Model open(const QString& path)
{
    auto m = openModel(path.toStdString());
    if (!m)
        qFatal("%s", m.error().oneLine().c_str());
    return std::move(*m);
}

const TensorComparison* findByB(const CompareReport& r, const std::string& b)
{
    for (const TensorComparison& c : r.matched)
        if (c.bName == b)
            return &c;
    return nullptr;
}

void setMetadata(Model& m, const std::string& key, const std::string& value)
{
    for (auto& [k, v] : m.metadata)
        if (k == key) {
            v = value;
            return;
        }
    m.metadata.emplace_back(key, value);
}

std::vector<float> iota(int64_t n)
{
    std::vector<float> v(static_cast<size_t>(n));
    for (size_t i = 0; i < v.size(); ++i)
        v[i] = float(i) * 0.25f - 3.0f;
    return v;
}

}  // namespace

class TstCompare : public QObject {
    Q_OBJECT
private slots:
    void hfNamesMapToGguf()
    {
        QCOMPARE(ggufNameForHf("model.layers.3.self_attn.q_proj.weight"), std::string("blk.3.attn_q.weight"));
        QCOMPARE(ggufNameForHf("model.layers.12.mlp.down_proj.weight"), std::string("blk.12.ffn_down.weight"));
        QCOMPARE(ggufNameForHf("model.layers.0.post_attention_layernorm.weight"), std::string("blk.0.ffn_norm.weight"));
        QCOMPARE(ggufNameForHf("model.layers.0.self_attn.k_proj.bias"), std::string("blk.0.attn_k.bias"));
        QCOMPARE(ggufNameForHf("model.embed_tokens.weight"), std::string("token_embd.weight"));
        QCOMPARE(ggufNameForHf("model.norm.weight"), std::string("output_norm.weight"));
        QCOMPARE(ggufNameForHf("lm_head.weight"), std::string("output.weight"));
        QCOMPARE(ggufNameForHf("model.layers.x.mlp.up_proj.weight"), std::string());
        QCOMPARE(ggufNameForHf("transformer.h.0.attn.c_attn.weight"), std::string());
    }

    // The Python fixture un-permutes q/k with transformers' own formula: every tensor,
    // 2-D and 1-D, pairs with its GGUF original at zero error, whichever side is A.
    void huggingFaceCopyOfGgufIsExact()
    {
        QL_REQUIRE_SHARED_MODELS();
        const Model hf = open(test::dataPath("compare/stories260K_hf.safetensors"));
        const Model gguf = open(test::sharedModel("stories260K.gguf"));
        for (bool swap : {false, true}) {
            auto r = swap ? compareModels(gguf, hf) : compareModels(hf, gguf);
            QVERIFY(r);
            QCOMPARE(r->matched.size(), gguf.tensors.size());
            QVERIFY(r->unmatchedA.empty());
            QVERIFY(r->unmatchedB.empty());
            QVERIFY(r->mismatched.empty());
            int twoD = 0;
            for (const TensorComparison& c : r->matched) {
                QVERIFY2(c.errEnergy == 0, c.aName.c_str());
                QVERIFY(std::isinf(c.metrics.sqnrDb) && c.metrics.sqnrDb > 0);
                QCOMPARE(c.relFrobenius, 0.0);
                QCOMPARE(c.aBitsPerWeight, 32.0);
                twoD += c.shape.size() == 2;
            }
            QCOMPARE(twoD, 5 * 7 + 2);
        }
        auto r = compareModels(hf, gguf);
        const TensorComparison* q = findByB(*r, "blk.2.attn_q.weight");
        QVERIFY(q);
        QCOMPARE(q->aName, std::string("model.layers.2.self_attn.q_proj.weight"));
        QVERIFY(q->how.find("8 heads") != std::string::npos);
        const TensorComparison* k = findByB(*r, "blk.2.attn_k.weight");
        QVERIFY(k && k->how.find("4 heads") != std::string::npos);
    }

    // A wrong head count (so a wrong permutation) or none at all must show as error on q and k
    // only: the test above cannot pass by comparing everything as stored.
    void wrongPermutationIsCaught()
    {
        QL_REQUIRE_SHARED_MODELS();
        const Model hf = open(test::dataPath("compare/stories260K_hf.safetensors"));
        Model gguf = open(test::sharedModel("stories260K.gguf"));
        setMetadata(gguf, "llama.attention.head_count", "4");
        setMetadata(gguf, "llama.attention.head_count_kv", "2");
        setMetadata(gguf, "llama.rope.dimension_count", "16");  // consistent, so only the heads are wrong
        auto r = compareModels(hf, gguf);
        QVERIFY(r);
        QCOMPARE(r->matched.size(), gguf.tensors.size());
        for (const TensorComparison& c : r->matched) {
            const bool qk = c.bName.find("attn_q") != std::string::npos || c.bName.find("attn_k") != std::string::npos;
            QVERIFY2(qk == (c.errEnergy > 0), c.bName.c_str());
            if (qk)
                QVERIFY(c.metrics.sqnrDb < 3 && c.metrics.cosine < 0.9);
        }

        // The q/k rows in llama.cpp's order under Hugging Face names: not the same model.
        Model raw = open(test::sharedModel("stories260K.gguf"));
        Model renamed = raw;
        for (Tensor& t : renamed.tensors)
            for (const Tensor& h : hf.tensors)
                if (ggufNameForHf(h.name) == t.name)
                    t.name = h.name;
        r = compareModels(renamed, raw);
        QVERIFY(r);
        int wrong = 0;
        for (const TensorComparison& c : r->matched)
            wrong += c.errEnergy > 0;
        QCOMPARE(wrong, 10);  // q and k of 5 layers

        // Without head counts the permutation cannot be undone: q/k stay unpaired, with why.
        Model noHeads = raw;
        std::erase_if(noHeads.metadata, [](const auto& kv) { return kv.first == "llama.attention.head_count"; });
        r = compareModels(hf, noHeads);
        QVERIFY(r);
        QCOMPARE(r->unmatchedA.size(), size_t(10));
        QCOMPARE(r->unmatchedB.size(), size_t(10));
        QVERIFY(r->unmatchedA[0].reason.find("head_count") != std::string::npos);
        QCOMPARE(r->matched.size(), raw.tensors.size() - 10);

        // An architecture whose names mean something else is not paired across schemes.
        Model phi = raw;
        setMetadata(phi, "general.architecture", "phi3");
        r = compareModels(hf, phi);
        QVERIFY(r && r->matched.empty());
        QCOMPARE(r->unmatchedA.size(), hf.tensors.size());
        QVERIFY(r->unmatchedA[0].reason.find("phi3") != std::string::npos);
    }

    void differentTensorsAreListed()
    {
        const Model hf = open(test::dataPath("compare/stories260K_hf.safetensors"));
        const Model tiny = open(test::dataPath("encoder/llama_tiny.safetensors"));
        auto r = compareModels(tiny, hf);
        QVERIFY(r);
        // Same names, other sizes: mismatches with both shapes, never compared.
        QVERIFY(!r->mismatched.empty());
        for (const ShapeMismatch& m : r->mismatched) {
            QCOMPARE(m.aName, m.bName);
            QVERIFY(m.aShape != m.bShape);
        }
        const Model gpt2 = open(test::dataPath("encoder/gpt2_tiny.safetensors"));
        r = compareModels(gpt2, hf);
        QVERIFY(r && r->matched.empty() && r->mismatched.empty());
        QCOMPARE(r->unmatchedA.size(), gpt2.tensors.size());
        QCOMPARE(r->unmatchedB.size(), hf.tensors.size());
        QCOMPARE(r->unmatchedA[0].name, gpt2.tensors[0].name);
        QVERIFY(!r->unmatchedA[0].reason.empty());
        QCOMPARE(r->unmatchedB[0].name, hf.tensors[0].name);
        QVERIFY(r->unmatchedB[0].reason.find("token_embd.weight") != std::string::npos);
    }

    // GPT-2 Conv1D / Keras kernels are [in, out]: against an [out, in] copy they are transposed.
    void inOutKernelsAreTransposed()
    {
        const int64_t in = 3, out = 5;
        const std::vector<float> v = iota(in * out);  // [in, out]
        std::vector<float> t(v.size());
        for (int64_t i = 0; i < in; ++i)
            for (int64_t o = 0; o < out; ++o)
                t[size_t(o * in + i)] = v[size_t(i * out + o)];
        Model a, b;
        a.tensors.push_back(makeFloatTensor("h.0.mlp.c_fc.weight", {in, out}, v));
        a.tensors.back().layout = Layout::InOut;
        b.tensors.push_back(makeFloatTensor("h.0.mlp.c_fc.weight", {out, in}, t));
        auto r = compareModels(a, b);
        QVERIFY(r && r->matched.size() == 1);
        QCOMPARE(r->matched[0].errEnergy, 0.0);
        QCOMPARE(r->matched[0].shape, (std::vector<int64_t>{out, in}));
        QVERIFY(r->matched[0].how.find("transposed") != std::string::npos);
        // Both [in, out]: compared as stored.
        b.tensors[0] = a.tensors[0];
        r = compareModels(a, b);
        QVERIFY(r && r->matched.size() == 1 && r->matched[0].errEnergy == 0);
        QCOMPARE(r->matched[0].how, std::string("same name"));
        // Not transposed: a square kernel compared as stored would be wrong.
        Model sq, sqT;
        std::vector<float> s = iota(16), st(16);
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j)
                st[size_t(j * 4 + i)] = s[size_t(i * 4 + j)];
        sq.tensors.push_back(makeFloatTensor("dense/kernel:0", {4, 4}, s));
        sq.tensors.back().layout = Layout::InOut;
        sqT.tensors.push_back(makeFloatTensor("dense/kernel:0", {4, 4}, st));
        r = compareModels(sq, sqT);
        QVERIFY(r && r->matched.size() == 1 && r->matched[0].errEnergy == 0);
    }

    void figuresAndLayers()
    {
        Model a, b;
        b.tensors.push_back(makeFloatTensor("layers.0.w", {2, 2}, {1, 2, 3, 4}));
        b.tensors.push_back(makeFloatTensor("layers.1.w", {2, 2}, {1, 2, 3, 4}));
        b.tensors.push_back(makeFloatTensor("layers.1.b", {2}, {1, 1}));
        a.tensors.push_back(makeFloatTensor("layers.0.w", {2, 2}, {1, 2, 3, 4.5f}));
        a.tensors.push_back(makeFloatTensor("layers.1.w", {2, 2}, {1, 2, 3, 4}));
        a.tensors.push_back(makeFloatTensor("layers.1.b", {2}, {1, 0}));
        auto r = compareModels(a, b);
        QVERIFY(r && r->matched.size() == 3);
        const TensorComparison& c = r->matched[0];
        QCOMPARE(c.metrics.sqnrDb, 10 * std::log10(30.0 / 0.25));
        QCOMPARE(c.relFrobenius, std::sqrt(0.25 / 30.0));
        QCOMPARE(c.metrics.maxAbsError, 0.5);
        const auto layers = compareByLayer(*r);
        QCOMPARE(layers.size(), size_t(2));
        QCOMPARE(layers[0].layer, std::string("layers.1"));  // 1/32 error energy: worse than layer 0's
        QCOMPARE(layers[0].sqnrDb, 10 * std::log10(32.0 / 1.0));
        QCOMPARE(layers[0].worst, 2);
        QCOMPARE(layers[0].tensors, 2);
        QCOMPARE(layerOf("model.layers.3.mlp.up_proj.weight"), std::string("model.layers.3"));
        QCOMPARE(layerOf("token_embd.weight"), std::string("token_embd.weight"));
        QCOMPARE(bitsPerWeight(b.tensors[0]), 32.0);
    }

    // A ggml-quantized Q8_0 tensor (ggml's own quantize_row_q8_0_ref, tests/data/gguf) against
    // its float source: decoded through the GGUF block reader, its figures are those of ggml's
    // dequantized values, and its bits per weight are Q8_0's 34 bytes per 32.
    void ggmlQ8_0AgainstItsSource()
    {
        QFile f(test::dataPath("gguf/q8_0_reference.json"));
        QVERIFY(f.open(QIODevice::ReadOnly));
        const auto j = nlohmann::json::parse(f.readAll().toStdString());
        const auto source = j["source"].get<std::vector<float>>();
        const auto dequantized = j["dequantized"].get<std::vector<float>>();
        Model ref;
        ref.tensors.push_back(makeFloatTensor("ref.weight", j["shape"].get<std::vector<int64_t>>(), source));
        const Model q8 = open(test::dataPath("gguf/q8_0_reference.gguf"));
        auto r = compareModels(q8, ref);
        QVERIFY(r && r->matched.size() == 1);
        const TensorComparison& c = r->matched[0];
        const Metrics expected = computeMetrics(source, dequantized);
        QVERIFY(expected.mse > 0);
        QCOMPARE(c.metrics.sqnrDb, expected.sqnrDb);
        QCOMPARE(c.metrics.maxAbsError, expected.maxAbsError);
        QCOMPARE(c.aBitsPerWeight, 8.5);
        QCOMPARE(c.bBitsPerWeight, 32.0);
    }

    void cancelStops()
    {
        Model a;
        for (int i = 0; i < 5; ++i)
            a.tensors.push_back(makeFloatTensor("t" + std::to_string(i), {3}, {1, 2, 3}));
        int calls = 0;
        auto r = compareModels(a, a, [&](int64_t done, int64_t total, const std::string&) {
            ++calls;
            return !(done == 2 && total == 5);
        });
        QVERIFY(!r);
        QCOMPARE(r.error().code, std::string("cancelled"));
        QCOMPARE(calls, 3);
    }
};

QTEST_GUILESS_MAIN(TstCompare)
#include "tst_compare.moc"
