// Issue #19 through the plan (#17): GPTQ and SmoothQuant named in a plan are run once
// (tasks/methodprep) and then the model run, the single-layer run and the exports all use
// their result: GPTQ's integers, SmoothQuant's smoothed weights and divided norms. The
// methods themselves are checked against torch references in tst_activations.
#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QTest>

#include <nlohmann/json.hpp>

#include <cmath>

#include "clirunner.h"
#include "io/exporter.h"
#include "plan/session.h"
#include "quant/metrics.h"
#include "runner/activationquant.h"
#include "runner/actstats.h"
#include "tasks/exportplan.h"
#include "tasks/layerrun.h"
#include "tasks/methodprep.h"
#include "tasks/modelrun.h"
#include "tasks/staticranges.h"
#include "testsupport.h"

using namespace quantlens;
using json = nlohmann::json;

namespace {

std::shared_ptr<const Model> open(const char* rel)
{
    auto m = openModel(test::dataPath(QLatin1String(rel)).toStdString());
    return m ? std::make_shared<const Model>(std::move(*m)) : nullptr;
}

EncoderOptions llamaOptions()
{
    EncoderOptions o;
    o.heads = 4;
    return o;
}

// 4-bit symmetric groups of 16, weight-only: where GPTQ matters most.
QuantPlan gptqPlan()
{
    QuantPlan p;
    p.defaultSpec.scheme = Scheme::TorchSymmetric;
    p.defaultSpec.bits = 4;
    Q_ASSERT(parseGranularity("group:16", p.defaultSpec).ok());
    p.activations.mode = ActivationMode::None;
    p.defaultMethod.method = WeightMethod::Gptq;
    p.calibration.randomTokens = 48;
    return p;
}

EncoderInput evalInput(int64_t vocab) { return randomEncoderInput(1, 32, vocab, /*seed=*/7); }

}  // namespace

class TestPlanMethods : public QObject {
    Q_OBJECT
private slots:
    void sessionKeepsMethodsAndCalibration()
    {
        QTemporaryDir dir;
        Session s;
        s.defaultMethod = *parseMethod("gptq:actorder");
        s.defaultMethod.gptq.dampening = 0.05;
        s.methods["model.layers.0.mlp.down_proj.weight"] = *parseMethod("smoothquant:0.75");
        s.calibration.tokens = {{1, 2, 3}, {4, 5}};
        s.calibration.tokensFile = "calib.txt";  // relative: resolved against the plan's folder
        const QString path = dir.filePath(QStringLiteral("plan.json"));
        QVERIFY(saveSession(path.toStdString(), s).ok());
        auto back = loadSession(path.toStdString());
        QVERIFY2(back.ok(), back ? "" : back.error().oneLine().c_str());
        QCOMPARE(back->defaultMethod, s.defaultMethod);
        QCOMPARE(back->methods, s.methods);
        QCOMPARE(back->calibration.tokens, s.calibration.tokens);
        QCOMPARE(QString::fromStdString(back->calibration.tokensFile), dir.filePath(QStringLiteral("calib.txt")));
        QVERIFY(back->usesMethods());
        // A version 2 plan has none of it and still reads.
        auto v2 = sessionFromJson(R"({"quantlens_session": 2, "activations": {"mode": "none"}})");
        QVERIFY(v2.ok() && !v2->usesMethods() && v2->calibration.empty());
        for (const char* bad : {R"({"quantlens_session": 3, "method": {"method": "awq"}})",
                                R"({"quantlens_session": 3, "methods": {"x": {"method": "gptq", "dampening": -1}}})",
                                R"({"quantlens_session": 3, "calibration": {"tokens": [[1, -2]]}})"})
            QVERIFY2(!sessionFromJson(bad).ok(), bad);
    }

    // The model run computes with GPTQ's integers: bit for bit the float model holding their
    // dequantized values (weight-only, so every layer is simulated through sgemm).
    void modelRunUsesGptqIntegers()
    {
        auto m = open("encoder/llama_tiny.safetensors");
        QVERIFY(m);
        const QuantPlan plan = gptqPlan();
        auto prep = preparePlan(m, "", llamaOptions(), plan);
        QVERIFY2(prep.ok(), prep ? "" : prep.error().oneLine().c_str());
        QCOMPARE(prep->entries.size(), size_t(14));  // 2 blocks x (q, k, v, o, gate, up, down)
        QCOMPARE(prep->runnerWeights.size(), size_t(14));
        QCOMPARE(prep->model.get(), m.get());  // GPTQ alone leaves the float model as it is
        QCOMPARE(prep->tokens, int64_t(48));

        auto r = EncoderRunner::create(*m, llamaOptions());
        QVERIFY(r.ok());
        SensitivityOptions so;
        auto layers = applyPlan(*r, *m, plan, so, &*prep);
        QVERIFY(layers.ok());
        for (const RunnerLayerPlan& l : *layers)
            QCOMPARE(l.method, std::string("gptq"));
        for (int64_t i = 0; i < r->linearCount(); ++i)
            QVERIFY(r->setQuantized(i, true, &so.specs[size_t(i)].second).ok());
        const EncoderInput in = evalInput(r->config().vocab);
        auto got = r->forward(in);
        QVERIFY(got.ok());

        Model deq = *m;
        bool differsFromRtn = false;
        for (Tensor& t : deq.tensors)
            if (auto e = prep->entries.find(t.name); e != prep->entries.end()) {
                const QuantizedTensor& qt = e->second.quantized;
                auto rtn = quantize(*t.toFloat(), t.shape, qt.spec);
                QVERIFY(rtn.ok());
                QCOMPARE(rtn->params.scale, qt.params.scale);  // same observer, other integers
                differsFromRtn = differsFromRtn || rtn->q != qt.q;
                t = makeFloatTensor(t.name, t.shape, dequantize(qt));
            }
        QVERIFY(differsFromRtn);
        auto f = EncoderRunner::create(deq, llamaOptions());
        QVERIFY(f.ok());
        auto want = f->forward(in);
        QVERIFY(want.ok());
        QVERIFY(std::equal(got->begin(), got->end(), want->begin(), want->end()));

        // And end to end, on the tokens it calibrated on, GPTQ moves the output less than
        // round to nearest with the same scales.
        QuantPlan rtn = plan;
        rtn.defaultMethod = {};
        EncoderInput calib;
        calib.batch = 1;
        calib.seqLen = 48;
        calib.ids = randomEncoderInput(1, 48, r->config().vocab).ids;
        calib.mask.assign(48, 1);
        auto withGptq = runModelUnderPlan(*r, *m, plan, calib, {}, &*prep);
        auto withRtn = runModelUnderPlan(*r, *m, rtn, calib);
        QVERIFY(withGptq.ok() && withRtn.ok());
        qInfo("llama_tiny, 4-bit group 16, weight-only: hidden SQNR %.2f dB with GPTQ, %.2f dB round to nearest",
              withGptq->sensitivity.plan.hidden.sqnrDb, withRtn->sensitivity.plan.hidden.sqnrDb);
        QVERIFY(withGptq->sensitivity.plan.hidden.sqnrDb > withRtn->sensitivity.plan.hidden.sqnrDb);
    }

    // GPTQ calibrates block after block, as llm-compressor's sequential pipeline: block 0 on
    // the float model's inputs, block 1 on the inputs block 0 gives with its GPTQ weights.
    // Rebuilt here from the recording and the per-layer GPTQ, the integers are the same, and
    // block 1's differ from a one-pass (float inputs) calibration.
    void gptqIsSequentialOverBlocks()
    {
        auto m = open("encoder/llama_tiny.safetensors");
        QVERIFY(m);
        const QuantPlan plan = gptqPlan();
        auto prep = preparePlan(m, "", llamaOptions(), plan);
        QVERIFY2(prep.ok(), prep ? "" : prep.error().oneLine().c_str());
        auto r = EncoderRunner::create(*m, llamaOptions());
        QVERIFY(r.ok());
        const std::vector<std::vector<int64_t>> calib{randomEncoderInput(1, 48, r->config().vocab).ids};
        ActivationSpec weightOnly;
        weightOnly.mode = ActivationMode::None;
        QVERIFY(r->setActivations(weightOnly).ok());
        auto gptqOf = [&](const std::string& layer) -> std::optional<QuantizedTensor> {
            ActivationOptions ao;
            ao.layers = {layer};
            auto rec = recordActivations(*r, calib, ao);
            if (!rec)
                return std::nullopt;
            const std::string tensor = layer + ".weight";
            auto q = quantizeWithActivations(*m, r->config(), tensor, plan.decide(*m->find(tensor)).spec,
                                             plan.methodFor(tensor), *rec);
            return q ? std::optional<QuantizedTensor>(q->outIn) : std::nullopt;
        };
        const std::string first = "model.layers.0.self_attn.q_proj", later = "model.layers.1.mlp.down_proj";
        auto firstFloat = gptqOf(first), laterFloat = gptqOf(later);
        QVERIFY(firstFloat && laterFloat);
        QCOMPARE(firstFloat->q, prep->runnerWeights.at(first + ".weight").q);
        QVERIFY(laterFloat->q != prep->runnerWeights.at(later + ".weight").q);
        for (int64_t i = 0; i < r->linearCount(); ++i)
            if (r->blockOf(i) == 0) {
                const std::string t = r->weightName(i);
                QVERIFY(r->setGivenWeights(i, prep->runnerWeights.at(t)).ok());
                const QuantSpec spec = plan.decide(*m->find(t)).spec;
                QVERIFY(r->setQuantized(i, true, &spec).ok());
            }
        auto laterSequential = gptqOf(later);
        QVERIFY(laterSequential);
        QCOMPARE(laterSequential->q, prep->runnerWeights.at(later + ".weight").q);
        QCOMPARE(laterSequential->params.scale, prep->runnerWeights.at(later + ".weight").params.scale);
    }

    // The single-layer run (Run tab, `run`) takes the same integers.
    void layerRunUsesGptqIntegers()
    {
        auto m = open("encoder/llama_tiny.safetensors");
        QVERIFY(m);
        const QuantPlan plan = gptqPlan();
        auto prep = preparePlan(m, "", llamaOptions(), plan);
        QVERIFY(prep.ok());
        const std::string name = "model.layers.1.mlp.down_proj.weight";
        const std::vector<LinearLayer> layers = findLinearLayers(*m);
        const LinearLayer* l = findLinearLayer(layers, "model.layers.1.mlp.down_proj");
        QVERIFY(l);
        LayerRunRequest req;
        req.tokens = 8;
        req.timed = false;
        req.given = &prep->runnerWeights.at(name);
        auto withGiven = runLayerUnderPlan(*l, plan.decide(*m->find(name)), plan.activations, req);
        req.given = nullptr;
        auto rounded = runLayerUnderPlan(*l, plan.decide(*m->find(name)), plan.activations, req);
        QVERIFY(withGiven.ok() && rounded.ok());
        QVERIFY(withGiven->y != rounded->y);
        QCOMPARE(withGiven->yRef, rounded->yRef);
    }

    // SmoothQuant changes the float model, not its function: every layer reading a norm gets
    // W·s and the norm is divided by s; layers without a norm before them say why not.
    void smoothQuantChangesWeightsAndNorms()
    {
        auto m = open("encoder/llama_tiny.safetensors");
        QVERIFY(m);
        QuantPlan plan;
        plan.activations.mode = ActivationMode::DynamicPerToken;
        plan.defaultMethod = *parseMethod("smoothquant:0.5");
        plan.calibration.randomTokens = 48;
        auto prep = preparePlan(m, "", llamaOptions(), plan);
        QVERIFY2(prep.ok(), prep ? "" : prep.error().oneLine().c_str());
        QVERIFY(prep->smoothed());
        QVERIFY(prep->model != m);
        // q, k, v and gate, up of both blocks, and both RMSNorms of each block.
        QCOMPARE(prep->replaced.size(), size_t(2 * (5 + 2)));
        int notApplied = 0;
        for (const MethodLayerOutcome& o : prep->layers)
            if (!o.why.empty()) {
                ++notApplied;
                QVERIFY(o.layer.ends_with("o_proj") || o.layer.ends_with("down_proj"));
            }
        QCOMPARE(notApplied, 4);
        auto a = EncoderRunner::create(*m, llamaOptions());
        auto b = EncoderRunner::create(*prep->model, llamaOptions());
        QVERIFY(a.ok() && b.ok());
        const EncoderInput in = evalInput(a->config().vocab);
        auto ya = a->forward(in);
        auto yb = b->forward(in);
        QVERIFY(ya.ok() && yb.ok());
        const Metrics d = computeMetrics(*ya, *yb);
        QVERIFY2(d.sqnrDb > 100, qPrintable(QString::number(d.sqnrDb)));  // the same function, up to rounding
        QVERIFY(*ya != *yb);  // but other weights

        // Exports write the smoothed weights and norms, or refuse where they cannot.
        QTemporaryDir dir;
        Session s;
        s.plan() = plan;
        ExportPlanOptions po;
        const ExportPlan ep = planExport(*m, s, po);
        ExportOptions eo;
        eo.format = ExportFormat::SafetensorsInt8;
        eo.outPath = dir.filePath(QStringLiteral("sq.safetensors")).toStdString();
        auto rep = runExportPlan(*m, ep, eo, {}, &*prep);
        QVERIFY2(rep.ok(), rep ? "" : rep.error().oneLine().c_str());
        auto back = openModel(eo.outPath);
        QVERIFY(back.ok());
        const std::string norm = "model.layers.0.input_layernorm.weight";
        QCOMPARE(*back->find(norm)->toFloat(), *prep->model->find(norm)->toFloat());
        QVERIFY(*back->find(norm)->toFloat() != *m->find(norm)->toFloat());
        eo.format = ExportFormat::Hdf5;
        eo.outPath = dir.filePath(QStringLiteral("sq.h5")).toStdString();
        auto refused = runExportPlan(*m, ep, eo, {}, &*prep);
        QVERIFY(!refused.ok() && refused.error().message.find("SmoothQuant") != std::string::npos);
        QVERIFY(!QFile::exists(QString::fromStdString(eo.outPath)));
        QVERIFY(!planMethodsExportProblem(plan, ExportFormat::Gguf).empty());
    }

    // Static activations: with one layer quantized and the evaluation input equal to the
    // calibration tokens, that layer's input in the run is exactly what was calibrated, so
    // a minmax static range gives bit for bit what dynamic per-tensor gives.
    void staticRangesEqualDynamicOnTheirOwnInput()
    {
        auto m = open("encoder/llama_tiny.safetensors");
        QVERIFY(m);
        const std::string layer = "model.layers.1.mlp.down_proj.weight";
        QuantPlan plan;
        plan.defaultSpec.bits = 6;  // not the int8 GEMM: both plans simulate, so both use sgemm
        for (const Tensor& t : m->tensors)
            if (t.rank() == 2 && t.name != layer)
                plan.keepFloat.insert(t.name);
        const std::vector<int64_t> ids = randomEncoderInput(1, 40, 60, /*seed=*/3).ids;
        plan.calibration.tokens = {ids};
        StaticRangeOptions so;
        auto ranges = calibrateActivationRanges(m, "", llamaOptions(), plan, so);
        QVERIFY2(ranges.ok(), ranges ? "" : ranges.error().oneLine().c_str());
        QCOMPARE(ranges->size(), size_t(14));  // every layer: the ranking quantizes each
        QVERIFY(ranges->at(layer).lo < ranges->at(layer).hi);

        EncoderInput in;
        in.batch = 1;
        in.seqLen = int64_t(ids.size());
        in.ids = ids;
        in.mask.assign(ids.size(), 1);
        auto r = EncoderRunner::create(*m, llamaOptions());
        QVERIFY(r.ok());
        QuantPlan dynamic = plan;
        dynamic.activations.mode = ActivationMode::DynamicPerTensor;
        QuantPlan fixed = plan;
        fixed.activations.mode = ActivationMode::Static;
        fixed.activationRanges = *ranges;
        QuantPlan missing = fixed;
        missing.activationRanges.erase(layer);
        auto a = runModelUnderPlan(*r, *m, dynamic, in);
        auto b = runModelUnderPlan(*r, *m, fixed, in);
        QVERIFY2(a.ok(), a ? "" : a.error().oneLine().c_str());
        QVERIFY2(b.ok(), b ? "" : b.error().oneLine().c_str());
        QCOMPARE(b->sensitivity.plan.hidden.cosine, a->sensitivity.plan.hidden.cosine);
        QCOMPARE(b->sensitivity.plan.hidden.sqnrDb, a->sensitivity.plan.hidden.sqnrDb);
        QVERIFY(a->sensitivity.plan.hidden.cosine < 1.0);
        // A narrower range clips: another figure.
        fixed.activationRanges[layer].hi *= 0.25f;
        auto c = runModelUnderPlan(*r, *m, fixed, in);
        QVERIFY(c.ok() && c->sensitivity.plan.hidden.sqnrDb != a->sensitivity.plan.hidden.sqnrDb);
        // Without a range the run says which layer lacks one.
        auto d = runModelUnderPlan(*r, *m, missing, in);
        QVERIFY(!d.ok() && d.error().tensor == layer);

        // And the ranges survive the session file exactly.
        Session sess;
        sess.plan() = fixed;
        auto back = sessionFromJson(sessionToJson(sess));
        QVERIFY(back.ok());
        QCOMPARE(back->activationRanges, fixed.activationRanges);
        QCOMPARE(back->activations.mode, ActivationMode::Static);
    }

    void refusesWhatItCannotCalibrate()
    {
        auto m = open("encoder/llama_tiny.safetensors");
        QVERIFY(m);
        QuantPlan plan = gptqPlan();
        plan.calibration = {};
        auto none = preparePlan(m, "", llamaOptions(), plan);
        QVERIFY(!none.ok() && none.error().code == "no-calibration");
        plan.calibration.tokens = {{1, 2, 999}};
        auto outside = preparePlan(m, "", llamaOptions(), plan);
        QVERIFY(!outside.ok() && outside.error().message.find("999") != std::string::npos);
        plan.calibration.tokens = {{1, 2, 3}};
        plan.defaultMethod = {};
        plan.methods["model.embed_tokens.weight"] = *parseMethod("gptq");
        plan.overrides["model.embed_tokens.weight"] = plan.defaultSpec;
        auto notLinear = preparePlan(m, "", llamaOptions(), plan);
        QVERIFY(!notLinear.ok() && notLinear.error().tensor == "model.embed_tokens.weight");
    }

    // The command line reads the same plan: sensitivity evaluates GPTQ's integers and the
    // export writes them (GPT-2's Conv1D layout included).
    void cliRunsAndWritesThePlan()
    {
        QTemporaryDir dir;
        const QString model = test::dataPath(QStringLiteral("encoder/gpt2_tiny.safetensors"));
        QFile tokens(dir.filePath(QStringLiteral("calib.txt")));
        QVERIFY(tokens.open(QIODevice::WriteOnly));
        tokens.write("1 5 9 13 17 21 25 29 33 37 41 45 49 2 6 10\n3 7 11 15 19 23 27 31 35 39 43 47\n");
        tokens.close();
        const QString plan = dir.filePath(QStringLiteral("plan.json"));
        QFile pf(plan);
        QVERIFY(pf.open(QIODevice::WriteOnly));
        pf.write(R"({"quantlens_session": 3,
                     "default": {"scheme": "torch-symmetric", "granularity": "group:16", "calib": "minmax", "bits": 4},
                     "activations": {"mode": "none"}, "method": {"method": "gptq"},
                     "calibration": {"tokens_file": "calib.txt"}})");
        pf.close();
        const auto sens = test::runCli({QStringLiteral("sensitivity"), model, QStringLiteral("--heads"), QStringLiteral("2"),
                                        QStringLiteral("--plan"), plan, QStringLiteral("--random"), QStringLiteral("24"),
                                        QStringLiteral("--json")});
        QVERIFY2(sens.code == 0, sens.err.constData());
        const json sd = json::parse(sens.out.toStdString());
        QCOMPARE(sd["layers"].size(), size_t(8));
        for (const json& l : sd["layers"])
            QCOMPARE(l["method"].get<std::string>(), std::string("gptq"));
        QCOMPARE(sd["plan"]["methods"].size(), size_t(8));
        QVERIFY(sd["plan"]["calibration"].get<std::string>().find("calib.txt") != std::string::npos);

        const QString out = dir.filePath(QStringLiteral("gptq.safetensors"));
        const auto q = test::runCli({QStringLiteral("quantize"), model, QStringLiteral("--heads"), QStringLiteral("2"),
                                     QStringLiteral("--plan"), plan, QStringLiteral("--out"), out, QStringLiteral("--json")});
        QVERIFY2(q.code == 0, q.err.constData());
        const json qd = json::parse(q.out.toStdString());
        for (const json& t : qd["tensors"])
            QCOMPARE(t["method"]["method"].get<std::string>(), std::string("gptq"));

        // The integers written are the ones preparePlan finds for the same plan.
        auto m = open("encoder/gpt2_tiny.safetensors");
        auto loaded = loadSession(plan.toStdString());
        QVERIFY(m && loaded.ok());
        EncoderOptions eo;
        eo.heads = 2;
        auto prep = preparePlan(m, model.toStdString(), eo, loaded->plan());
        QVERIFY(prep.ok());
        auto back = openModel(out.toStdString());
        QVERIFY(back.ok());
        const std::string w = "transformer.h.1.mlp.c_proj.weight";
        const QuantizedTensor& qt = prep->entries.at(w).quantized;
        auto written = back->find(w)->toFloat();
        QVERIFY(written.ok());
        QCOMPARE(written->size(), qt.q.size());
        for (size_t i = 0; i < qt.q.size(); ++i)
            QCOMPARE((*written)[i], float(qt.q[i]));

        // HDF5 holds GPTQ's integers (no norm changes); GGUF, written by ggml's own
        // quantizers, refuses the plan up front (tested on the core side above).
        const auto h = test::runCli({QStringLiteral("quantize"), model, QStringLiteral("--plan"), plan, QStringLiteral("--out"),
                                     dir.filePath(QStringLiteral("x.h5")), QStringLiteral("--heads"), QStringLiteral("2")});
        QVERIFY2(h.code == 0, h.err.constData());
    }
};

QTEST_GUILESS_MAIN(TestPlanMethods)
#include "tst_planmethods.moc"
