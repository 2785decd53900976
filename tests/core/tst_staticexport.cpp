// A static plan's activation ranges in the exports (issue #19, W8A8 static): compressed-tensors
// writes each quantized Linear's input_scale (and int8 input_zero_point) equal to the
// parameters the runner quantizes that layer's input with (staticActivationParams, the
// one computation both use), read back here with Quantlens' own safetensors reader; the
// plain layouts record them in their JSON; GGUF and ONNX QDQ refuse them, as a plan with
// a missing range is refused, before anything is written.
#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "halffloat.h"
#include "io/exporter.h"
#include "io/safetensors.h"
#include "io/safetensorswriter.h"
#include "layers.h"
#include "runner/encoder.h"
#include "runner/simulatedlinear.h"
#include "tasks/exportplan.h"
#include "tasks/staticranges.h"
#include "readback.h"
#include "testsupport.h"

using namespace quantlens;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kLlama = test::dataPath(QStringLiteral("encoder/llama3_tiny")).toStdString();

std::shared_ptr<const Model> open(const std::string& file)
{
    auto m = readSafetensors(file);
    if (!m)
        qFatal("%s", m.error().oneLine().c_str());
    return std::make_shared<const Model>(std::move(*m));
}

json readJson(const std::string& p) { return test::readJsonFile(p); }

template <class T>
std::vector<T> values(const Tensor& t)
{
    return test::storedValues<T>(t);
}

// The llama fixture's ranges as Quantlens calibrates them (minmax over 40 random ids).
Session calibratedStaticPlan(const std::shared_ptr<const Model>& m, bool reduceRange)
{
    Session s;
    s.activations.mode = ActivationMode::Static;
    s.activations.reduceRange = reduceRange;
    s.calibration.tokens = {randomEncoderInput(1, 40, 60, /*seed=*/3).ids};
    EncoderOptions eo;
    eo.heads = 4;
    auto ranges = calibrateActivationRanges(m, "", eo, s.plan(), StaticRangeOptions{});
    if (!ranges)
        qFatal("%s", ranges.error().oneLine().c_str());
    s.activationRanges = *ranges;
    return s;
}

Result<ExportReport> exportPlan(const Model& m, const Session& s, ExportFormat f, const std::string& out)
{
    ExportPlanOptions po;
    po.choice = ExportChoice::AllLinear;
    const ExportPlan plan = planExport(m, s, po);
    return runExportPlan(m, plan, ExportOptions{f, out, {}});
}

// compressed-tensors' fake quantization of one input (forward_helpers.py _quantize_dequantize):
// x / scale + zero point, clamped to the int8 range, rounded half to even.
float ctFakeQuant(float x, float scale, int zp)
{
    const float q = std::nearbyint(std::clamp(x / scale + float(zp), -128.0f, 127.0f));
    return (q - float(zp)) * scale;
}

}  // namespace

class TestStaticExport : public QObject {
    Q_OBJECT

private slots:
    void compressedTensorsHoldsTheRunnersParameters_data()
    {
        QTest::addColumn<bool>("reduceRange");
        QTest::newRow("reduce_range") << true;
        QTest::newRow("full range") << false;
    }

    void compressedTensorsHoldsTheRunnersParameters()
    {
        QFETCH(bool, reduceRange);
        const auto m = open(kLlama + "/model.safetensors");
        const Session s = calibratedStaticPlan(m, reduceRange);
        QCOMPARE(s.activationRanges.size(), size_t(14));
        QTemporaryDir dir;
        const std::string out = dir.filePath("static").toStdString();
        auto r = exportPlan(*m, s, ExportFormat::CompressedTensors, out);
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        QVERIFY(r->warnings.empty());  // float32 checkpoint: the scales are stored as computed

        const json qc = readJson(out + "/config.json")["quantization_config"];
        QCOMPARE(qc["config_groups"].size(), size_t(1));
        const json& in = qc["config_groups"]["group_0"]["input_activations"];
        QVERIFY(in["dynamic"] == json(false));
        QVERIFY(in["strategy"] == json("tensor"));
        QVERIFY(in["num_bits"] == json(8));
        QVERIFY(in["type"] == json("int"));
        const bool symmetric = in["symmetric"].get<bool>();
        QVERIFY(in["zp_dtype"] == (symmetric ? json(nullptr) : json("torch.int8")));

        auto back = readSafetensors(out + "/model.safetensors");
        QVERIFY(back);
        int asymmetric = 0;
        for (const auto& [name, range] : s.activationRanges) {
            const std::string mod = name.substr(0, name.size() - 7);
            const Tensor* sc = back->find(mod + ".input_scale");
            const Tensor* zp = back->find(mod + ".input_zero_point");
            QVERIFY2(sc, mod.c_str());
            QCOMPARE(sc->dtype, DType::F32);  // the weight's dtype
            QCOMPARE(sc->shape, std::vector<int64_t>{1});
            QCOMPARE(bool(zp), !symmetric);
            // What the runner quantizes this layer's input with.
            const ActivationSpec a = s.activationsFor(name);
            QCOMPARE(a.staticLo, range.lo);
            const ActParams p = staticActivationParams(a);
            const float scale = values<float>(*sc)[0];
            QCOMPARE(scale, p.scale);
            int zpI8 = 0;
            if (zp) {
                QCOMPARE(zp->dtype, DType::I8);
                QCOMPARE(zp->shape, std::vector<int64_t>{1});
                zpI8 = values<int8_t>(*zp)[0];
            }
            QCOMPARE(zpI8, p.zeroPoint - 128);  // q_u8 = q_i8 + 128
            asymmetric += zpI8 != 0;

            // The runner's static quantization of inputs across and beyond the range equals
            // compressed-tensors' with the file's parameters (up to exact rounding ties, where
            // x * (1/s) and x / s may fall on either side).
            std::vector<float> x(997);
            for (size_t i = 0; i < x.size(); ++i)
                x[i] = range.lo - 0.7f * (range.hi - range.lo) + 2.4f * (range.hi - range.lo) * float(i) / 996.0f;
            std::vector<float> ql = x;
            fakeQuantizeActivations(ql.data(), 1, int64_t(ql.size()), a);
            int clampedLow = 0, clampedHigh = 0;
            for (size_t i = 0; i < x.size(); ++i) {
                const float t = x[i] / scale + float(zpI8);
                clampedLow += t < -128.5f;
                clampedHigh += t > 127.5f;
                if (ql[i] != ctFakeQuant(x[i], scale, zpI8))
                    QVERIFY2(std::abs(std::abs(t - std::trunc(t)) - 0.5f) < 1e-3f,
                             (mod + ": the runner and the file quantize " + std::to_string(x[i]) + " differently").c_str());
            }
            QVERIFY(clampedLow > 0);
            QVERIFY(clampedHigh > 0 || reduceRange);  // reduce_range leaves 128 levels of headroom above hi
        }
        QVERIFY(asymmetric > 0);  // calibrated ranges are not centred on 0
    }

    void quantlensReadsItsStaticExport()
    {
        // Opening the folder decodes the layers; the input scale and zero point are shown in
        // the layer's note, not listed as tensors.
        const auto m = open(kLlama + "/model.safetensors");
        const Session s = calibratedStaticPlan(m, true);
        QTemporaryDir dir;
        const std::string out = dir.filePath("static").toStdString();
        auto r = exportPlan(*m, s, ExportFormat::CompressedTensors, out);
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        auto back = openModel(out);
        QVERIFY2(back, back ? "" : back.error().oneLine().c_str());
        QCOMPARE(back->tensors.size(), m->tensors.size());
        const Tensor* q = back->find("model.layers.0.mlp.down_proj.weight");
        QVERIFY(q);
        const ActParams p = staticActivationParams(s.activationsFor(q->name));
        char want[96];
        std::snprintf(want, sizeof want, "static input scale %.6g, zero point %d (int8)", double(p.scale), p.zeroPoint - 128);
        QVERIFY2(q->note.find(want) != std::string::npos, (q->note + " lacks " + want).c_str());
    }

    void symmetricRangesWriteNoZeroPoint()
    {
        const auto m = open(kLlama + "/model.safetensors");
        Session s;
        s.activations.mode = ActivationMode::Static;
        s.activations.reduceRange = false;
        for (const LinearLayer& l : findLinearLayers(*m))
            s.activationRanges[l.weight->name] = {-4.0f, 4.0f};  // ChooseQuantizationParams: zero point 128
        QTemporaryDir dir;
        const std::string out = dir.filePath("sym").toStdString();
        auto r = exportPlan(*m, s, ExportFormat::CompressedTensors, out);
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        const json in = readJson(out + "/config.json")["quantization_config"]["config_groups"]["group_0"]["input_activations"];
        QVERIFY(in["symmetric"] == json(true));
        auto back = readSafetensors(out + "/model.safetensors");
        QVERIFY(back);
        const ActParams p = staticActivationParams(s.activationsFor("model.layers.0.mlp.up_proj.weight"));
        QCOMPARE(p.zeroPoint, 128);
        for (const Tensor& t : back->tensors) {
            QVERIFY2(!t.name.ends_with(".input_zero_point"), t.name.c_str());  // vLLM loads none for symmetric
            if (t.name.ends_with(".input_scale"))
                QCOMPARE(values<float>(t)[0], p.scale);
        }
    }

    void missingRangeIsRefusedBeforeWriting()
    {
        const auto m = open(kLlama + "/model.safetensors");
        Session s = calibratedStaticPlan(m, true);
        s.activationRanges.erase("model.layers.1.mlp.down_proj.weight");
        QTemporaryDir dir;
        const std::string out = dir.filePath("missing").toStdString();
        auto r = exportPlan(*m, s, ExportFormat::CompressedTensors, out);
        QVERIFY(!r);
        QVERIFY2(r.error().message.find("no input range for 'model.layers.1.mlp.down_proj.weight'") != std::string::npos,
                 r.error().oneLine().c_str());
        QVERIFY(!fs::exists(out));

        // The writer itself refuses entries of which only some carry an input (the CLI path).
        ExportPlanOptions po;
        const ExportPlan plan = planExport(*m, s, po);
        std::vector<ExportEntry> entries;
        for (const ExportPlanItem& it : plan.items) {
            auto e = quantizeForExport(*m, it.tensor, it.spec);
            QVERIFY(e);
            attachStaticInput(plan, it, *e);
            QCOMPARE(bool(e->staticInput), it.tensor != "model.layers.1.mlp.down_proj.weight");
            entries.push_back(std::move(*e));
        }
        auto w = exportModel(*m, entries, ExportOptions{ExportFormat::CompressedTensors, out, {}});
        QVERIFY(!w);
        QVERIFY2(w.error().tensor == "model.layers.1.mlp.down_proj.weight", w.error().oneLine().c_str());
        QVERIFY(!fs::exists(out));
    }

    void fourBitWeightsWithStaticInputsAreRefused()
    {
        const auto m = open(kLlama + "/model.safetensors");
        Session s = calibratedStaticPlan(m, true);
        s.defaultSpec.bits = 4;
        s.defaultSpec.granularity = Granularity::PerGroup;
        s.defaultSpec.groupSize = 8;
        QTemporaryDir dir;
        const std::string out = dir.filePath("w4").toStdString();
        auto r = exportPlan(*m, s, ExportFormat::CompressedTensors, out);
        QVERIFY(!r);
        QVERIFY2(r.error().message.find("static activations go with 8-bit weights") != std::string::npos,
                 r.error().oneLine().c_str());
        QVERIFY(!fs::exists(out));
    }

    void dynamicPlansWriteNoInputScales_data()
    {
        QTest::addColumn<int>("mode");  // ActivationMode
        QTest::addColumn<QString>("format");
        QTest::addColumn<QString>("input");  // the input strategy, "" = null (weight-only)
        QTest::newRow("per-token") << int(ActivationMode::DynamicPerToken) << "int-quantized" << "token";
        QTest::newRow("per-tensor") << int(ActivationMode::DynamicPerTensor) << "int-quantized" << "tensor";
        QTest::newRow("none") << int(ActivationMode::None) << "pack-quantized" << "";
    }

    void dynamicPlansWriteNoInputScales()
    {
        // The plan's activation mode, not the format's habit, picks the scheme (the window's
        // export runs this path).
        QFETCH(int, mode);
        QFETCH(QString, format);
        QFETCH(QString, input);
        const auto m = open(kLlama + "/model.safetensors");
        Session s = calibratedStaticPlan(m, true);
        s.activations.mode = ActivationMode(mode);  // the ranges stay in the plan, unused
        QTemporaryDir dir;
        const std::string out = dir.filePath("dyn").toStdString();
        auto r = exportPlan(*m, s, ExportFormat::CompressedTensors, out);
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        const json g = readJson(out + "/config.json")["quantization_config"]["config_groups"]["group_0"];
        QCOMPARE(g["format"].get<std::string>(), format.toStdString());
        const json& in = g["input_activations"];
        if (input.isEmpty()) {
            QVERIFY(in.is_null());
        } else {
            QVERIFY(in["dynamic"] == json(true));
            QCOMPARE(in["strategy"].get<std::string>(), input.toStdString());
        }
        auto back = readSafetensors(out + "/model.safetensors");
        QVERIFY(back);
        for (const Tensor& t : back->tensors)
            QVERIFY2(!t.name.ends_with(".input_scale") && !t.name.ends_with(".input_zero_point"), t.name.c_str());
    }

    void float16InputScalesAreRoundedAndSaid()
    {
        // A float16 checkpoint: input_scale is F16 as llm-compressor stores it, and the
        // export says the runtime then quantizes with the rounded scale.
        QTemporaryDir src;
        std::vector<uint16_t> w(16 * 24);
        for (size_t i = 0; i < w.size(); ++i)
            w[i] = floatToHalf(float(std::sin(double(i) * 0.37)) * 0.3f);
        std::vector<SafetensorsItem> items{
            {"layer.proj.weight", DType::F16, {16, 24}, [&w](AtomicFile& f) { return f.write(w.data(), w.size() * 2); }}};
        QVERIFY(writeSafetensors(src.filePath("model.safetensors").toStdString(), items, {}, {}));
        { std::ofstream(src.filePath("config.json").toStdString()) << R"({"model_type": "toy"})"; }
        const auto m = open(src.filePath("model.safetensors").toStdString());
        Session s;
        s.activations.mode = ActivationMode::Static;
        s.activationRanges["layer.proj.weight"] = {-1.3f, 2.9f};
        QTemporaryDir dir;
        const std::string out = dir.filePath("f16").toStdString();
        ExportPlanOptions po;
        po.choice = ExportChoice::Named;
        po.tensors = {"layer.proj.weight"};
        auto r = runExportPlan(*m, planExport(*m, s, po), ExportOptions{ExportFormat::CompressedTensors, out, {}});
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        const ActParams p = staticActivationParams(s.activationsFor("layer.proj.weight"));
        QVERIFY(halfToFloat(floatToHalf(p.scale)) != p.scale);  // the case this test is about
        QCOMPARE(r->warnings.size(), size_t(1));
        QVERIFY2(r->warnings[0].find("input_scale(s) rounded to F16") != std::string::npos, r->warnings[0].c_str());
        auto back = readSafetensors(out + "/model.safetensors");
        QVERIFY(back);
        const Tensor* sc = back->find("layer.proj.input_scale");
        const Tensor* zp = back->find("layer.proj.input_zero_point");
        QVERIFY(sc && zp);
        QCOMPARE(sc->dtype, DType::F16);
        QCOMPARE(halfToFloat(values<uint16_t>(*sc)[0]), halfToFloat(floatToHalf(p.scale)));
        QCOMPARE(int(values<int8_t>(*zp)[0]), p.zeroPoint - 128);
    }

    void ggufAndOnnxRefuseStaticRanges()
    {
        ExportPlan plan;
        plan.activations.mode = ActivationMode::Static;
        plan.items.push_back({"blk.0.attn_q.weight", QuantSpec{}, false, {}, ActivationRange{-1.0f, 2.0f}});
        const std::string gguf = staticRangesExportProblem(plan, ExportFormat::Gguf);
        QVERIFY2(gguf.find("cannot be written as GGUF") != std::string::npos, gguf.c_str());
        const std::string onnx = staticRangesExportProblem(plan, ExportFormat::OnnxQdq);
        QVERIFY2(onnx.find("ONNX QDQ") != std::string::npos, onnx.c_str());
        for (ExportFormat f : {ExportFormat::Hdf5, ExportFormat::NpyFolder, ExportFormat::SafetensorsInt8,
                               ExportFormat::SafetensorsFakeQuant, ExportFormat::CompressedTensors})
            QCOMPARE(staticRangesExportProblem(plan, f), std::string());
        plan.activations.mode = ActivationMode::DynamicPerTensor;  // not static: nothing to lose
        QCOMPARE(staticRangesExportProblem(plan, ExportFormat::Gguf), std::string());
    }

    void ggufExportOfAStaticPlanIsRefused()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto m = openModel(test::sharedModel(QStringLiteral("stories260K.gguf")).toStdString());
        QVERIFY(m);
        Session s;
        s.activations.mode = ActivationMode::Static;
        for (const LinearLayer& l : findLinearLayers(*m))
            s.activationRanges[l.weight->name] = {-1.0f, 1.0f};
        QTemporaryDir dir;
        const std::string out = dir.filePath("s.gguf").toStdString();
        auto r = exportPlan(*m, s, ExportFormat::Gguf, out);
        QVERIFY(!r);
        QCOMPARE(r.error().code, std::string("unsupported-pair"));
        QVERIFY(!fs::exists(out));
    }

    void plainLayoutsRecordTheRanges()
    {
        // gpt2_capp: GPT-2 Conv1D layers, which compressed-tensors leaves alone; the int8
        // safetensors header and the npy manifest carry each layer's input parameters.
        QL_REQUIRE_SHARED_MODELS();
        const auto m = open(test::sharedModel(QStringLiteral("gpt2_capp.safetensors")).toStdString());
        Session s;
        s.activations.mode = ActivationMode::Static;
        const std::vector<LinearLayer> layers = findLinearLayers(*m);
        QVERIFY(layers.size() >= 4);
        float lo = -3.0f;
        for (const LinearLayer& l : layers) {
            s.activationRanges[l.weight->name] = {lo, 5.5f + lo};
            lo += 0.37f;
        }
        QTemporaryDir dir;
        const std::string st = dir.filePath("g.safetensors").toStdString();
        const std::string npy = dir.filePath("g_npy").toStdString();
        auto a = exportPlan(*m, s, ExportFormat::SafetensorsInt8, st);
        QVERIFY2(a, a ? "" : a.error().oneLine().c_str());
        auto b = exportPlan(*m, s, ExportFormat::NpyFolder, npy);
        QVERIFY2(b, b ? "" : b.error().oneLine().c_str());
        auto back = readSafetensors(st);
        QVERIFY(back);
        std::string header;
        for (const auto& [k, v] : back->metadata)
            if (k == "quantlens_tensors")
                header = v;
        const json perTensor = json::parse(header);
        const json manifest = readJson(npy + "/manifest.json");
        QVERIFY(manifest.contains("tensors"));
        int seen = 0;
        for (const LinearLayer& l : layers) {
            const std::string& name = l.weight->name;
            const ActParams p = staticActivationParams(s.activationsFor(name));
            const json& j = perTensor.at(name).at("input_activation");
            QVERIFY(j["mode"] == json("static"));
            QCOMPARE(j["scale"].get<float>(), p.scale);
            QCOMPARE(j["zero_point"].get<int>(), p.zeroPoint);
            QCOMPARE(j["range_lo"].get<float>(), s.activationRanges.at(name).lo);
            QVERIFY(j["reduce_range"] == json(true));
            for (const json& t : manifest["tensors"])
                if (t["name"] == json(name)) {
                    QVERIFY(t["input_activation"] == j);
                    ++seen;
                }
        }
        QCOMPARE(seen, int(layers.size()));
    }
};

QTEST_GUILESS_MAIN(TestStaticExport)
#include "tst_staticexport.moc"
