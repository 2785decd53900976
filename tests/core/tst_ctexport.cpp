// compressed-tensors export: the folder's safetensors read back with Quantlens' own
// reader (names, dtypes, shapes, the int32 nibble packing unpacked here independently),
// config.json's quantization_config, the scale dtype of a float16 checkpoint, and the
// refusals (ONNX source, GPT-2 Conv1D, no config.json, cancel) that leave nothing behind.
#include <QTemporaryDir>
#include <QTest>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "clirunner.h"
#include "halffloat.h"
#include "io/exporter.h"
#include "io/onnx.h"
#include "io/safetensors.h"
#include "io/safetensorswriter.h"
#include "model.h"
#include "quant/quantize.h"
#include "readback.h"
#include "testsupport.h"

using namespace quantlens;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kLlama = test::dataPath(QStringLiteral("encoder/llama3_tiny")).toStdString();

Model open(const std::string& folder)
{
    auto m = readSafetensors(folder + "/model.safetensors");
    if (!m)
        qFatal("%s", m.error().oneLine().c_str());
    return std::move(*m);
}

std::vector<ExportEntry> quantizeAll(const Model& m, QuantSpec spec)
{
    std::vector<ExportEntry> out;
    for (const Tensor& t : m.tensors) {
        if (t.rank() != 2 || t.name.find("embed") != std::string::npos)
            continue;
        auto e = quantizeForExport(m, t.name, spec);
        if (!e)
            qFatal("%s", e.error().oneLine().c_str());
        out.push_back(std::move(*e));
    }
    return out;
}

json readJson(const std::string& p) { return test::readJsonFile(p); }

template <class T>
std::vector<T> values(const Tensor& t)
{
    return test::storedValues<T>(t);
}

QuantSpec spec(Scheme s, Granularity g, int bits = 8, int64_t group = 0)
{
    QuantSpec q;
    q.scheme = s;
    q.granularity = g;
    q.bits = bits;
    q.groupSize = group;
    return q;
}

bool emptyDir(const QString& p) { return QDir(p).isEmpty(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot); }

}  // namespace

class TestCtExport : public QObject {
    Q_OBJECT

private slots:
    void w8a8IntQuantized()
    {
        const Model m = open(kLlama);
        const auto entries = quantizeAll(m, spec(Scheme::TorchSymmetric, Granularity::PerChannel));
        QCOMPARE(entries.size(), size_t(14));
        QTemporaryDir dir;
        const std::string out = dir.filePath("w8a8").toStdString();
        auto r = exportModel(m, entries, ExportOptions{ExportFormat::CompressedTensors, out, {}});
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());

        const Model back = open(out);
        for (const ExportEntry& e : entries) {
            const QuantizedTensor& qt = e.quantized;
            const std::string mod = qt.name.substr(0, qt.name.size() - 7);
            const Tensor* w = back.find(mod + ".weight");
            const Tensor* s = back.find(mod + ".weight_scale");
            QVERIFY2(w && s, mod.c_str());
            QCOMPARE(w->dtype, DType::I8);
            QCOMPARE(w->shape, qt.shape);
            QCOMPARE(values<int8_t>(*w), qt.q);
            QCOMPARE(s->dtype, DType::F32);  // the weight's dtype
            QCOMPARE(s->shape, (std::vector<int64_t>{qt.shape[0], 1}));
            QCOMPARE(values<float>(*s), qt.params.scale);
            QVERIFY(!back.find(mod + ".weight_zero_point"));  // symmetric: none, as llm-compressor
        }
        // Unquantized tensors are copied unchanged.
        for (const char* n : {"model.embed_tokens.weight", "model.norm.weight"}) {
            const Tensor* a = m.find(n);
            const Tensor* b = back.find(n);
            QVERIFY(a && b);
            QVERIFY(std::equal(a->data.begin(), a->data.end(), b->data.begin(), b->data.end()));
        }

        const json cfg = readJson(out + "/config.json");
        QVERIFY(cfg["model_type"] == json("llama"));  // the source's keys are kept
        const json& qc = cfg["quantization_config"];
        QVERIFY(qc["quant_method"] == json("compressed-tensors"));
        QVERIFY(qc["format"] == json("int-quantized"));
        QVERIFY(qc["quantization_status"] == json("compressed"));
        QVERIFY(qc["ignore"] == json::array({"lm_head"}));  // tied: no tensor, still an nn.Linear
        const json& g = qc["config_groups"]["group_0"];
        QVERIFY(g["targets"] == json::array({"Linear"}));
        QVERIFY(g["weights"]["num_bits"] == json(8));
        QVERIFY(g["weights"]["strategy"] == json("channel"));
        QVERIFY(g["weights"]["symmetric"] == json(true));
        QVERIFY(g["weights"]["type"] == json("int"));
        QVERIFY(g["input_activations"]["strategy"] == json("token"));
        QVERIFY(g["input_activations"]["dynamic"] == json(true));
        QVERIFY(fs::exists(out + "/model_ref.json"));  // side files travel along
        QVERIFY(!fs::exists(out + "/model_ref.safetensors"));
    }

    void w4a16PackQuantized()
    {
        const Model m = open(kLlama);
        const auto entries = quantizeAll(m, spec(Scheme::TorchSymmetric, Granularity::PerGroup, 4, 8));
        QTemporaryDir dir;
        const std::string out = dir.filePath("w4a16").toStdString();
        auto r = exportModel(m, entries, ExportOptions{ExportFormat::CompressedTensors, out, {}});
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        const Model back = open(out);
        for (const ExportEntry& e : entries) {
            const QuantizedTensor& qt = e.quantized;
            const std::string mod = qt.name.substr(0, qt.name.size() - 7);
            const int64_t rows = qt.shape[0], cols = qt.shape[1];
            QVERIFY(!back.find(mod + ".weight"));
            const Tensor* p = back.find(mod + ".weight_packed");
            const Tensor* sh = back.find(mod + ".weight_shape");
            const Tensor* s = back.find(mod + ".weight_scale");
            QVERIFY2(p && sh && s, mod.c_str());
            QCOMPARE(p->dtype, DType::I32);
            QCOMPARE(p->shape, (std::vector<int64_t>{rows, (cols + 7) / 8}));
            QCOMPARE(sh->dtype, DType::I64);
            QCOMPARE(values<int64_t>(*sh), (std::vector<int64_t>{rows, cols}));
            QCOMPARE(s->shape, (std::vector<int64_t>{rows, cols / 8}));
            QCOMPARE(values<float>(*s), qt.params.scale);
            // Value i of word w is bits [4i, 4i+4) holding q + 8 (pack_to_int32).
            const auto words = values<int32_t>(*p);
            for (int64_t r2 = 0; r2 < rows; ++r2)
                for (int64_t c = 0; c < cols; ++c) {
                    const uint32_t word = uint32_t(words[size_t(r2 * p->shape[1] + c / 8)]);
                    const int v = int((word >> (4 * (c % 8))) & 0xF) - 8;
                    QCOMPARE(v, int(qt.q[size_t(r2 * cols + c)]));
                }
        }
        const json qc = readJson(out + "/config.json")["quantization_config"];
        QVERIFY(qc["format"] == json("pack-quantized"));
        QVERIFY(qc["config_groups"]["group_0"]["weights"]["strategy"] == json("group"));
        QVERIFY(qc["config_groups"]["group_0"]["weights"]["group_size"] == json(8));
        QVERIFY(qc["config_groups"]["group_0"]["input_activations"].is_null());
    }

    void planActivationsChooseTheScheme_data()
    {
        QTest::addColumn<int>("activations");  // ExportActivations
        QTest::addColumn<int>("bits");
        QTest::addColumn<int>("granularity");  // Granularity
        QTest::addColumn<QString>("format");
        QTest::addColumn<QString>("input");     // "" = null, else the input strategy (dynamic)
        QTest::addColumn<QString>("warning");   // a phrase of the expected warning, "" = none
        const int ch = int(Granularity::PerChannel), te = int(Granularity::PerTensor), gr = int(Granularity::PerGroup);
        QTest::newRow("none 8-bit channel: W8A16") << int(ExportActivations::None) << 8 << ch << "pack-quantized" << "" << "";
        QTest::newRow("none 8-bit tensor: W8A16, warned") << int(ExportActivations::None) << 8 << te << "pack-quantized" << ""
                                                            << "per-channel or group scales only";
        QTest::newRow("none 4-bit group: W4A16") << int(ExportActivations::None) << 4 << gr << "pack-quantized" << "" << "";
        QTest::newRow("per-token: W8A8 dynamic token") << int(ExportActivations::DynamicPerToken) << 8 << ch << "int-quantized"
                                                       << "token" << "";
        QTest::newRow("per-tensor: W8A8 dynamic tensor, warned") << int(ExportActivations::DynamicPerTensor) << 8 << ch
                                                                 << "int-quantized" << "tensor" << "vLLM will refuse";
        QTest::newRow("per-token 4-bit: W4A16, warned") << int(ExportActivations::DynamicPerToken) << 4 << gr << "pack-quantized"
                                                        << "" << "activations are not written for 4-bit";
        QTest::newRow("unplanned 8-bit: W8A8 dynamic token") << int(ExportActivations::Unplanned) << 8 << te << "int-quantized"
                                                             << "token" << "";
    }

    void planActivationsChooseTheScheme()
    {
        QFETCH(int, activations);
        QFETCH(int, bits);
        QFETCH(int, granularity);
        QFETCH(QString, format);
        QFETCH(QString, input);
        QFETCH(QString, warning);
        const Model m = open(kLlama);
        const Granularity gran = Granularity(granularity);
        const auto entries = quantizeAll(m, spec(Scheme::TorchSymmetric, gran, bits, gran == Granularity::PerGroup ? 8 : 0));
        QTemporaryDir dir;
        const std::string out = dir.filePath("ct").toStdString();
        ExportOptions o{ExportFormat::CompressedTensors, out, {}};
        o.activations = ExportActivations(activations);
        auto r = exportModel(m, entries, o);
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        bool warned = false;
        for (const std::string& w : r->warnings)
            warned = warned || (!warning.isEmpty() && w.find(warning.toStdString()) != std::string::npos);
        QVERIFY2(warning.isEmpty() ? r->warnings.empty() : warned,
                 (r->warnings.empty() ? std::string("no warning") : r->warnings[0]).c_str());

        const json qc = readJson(out + "/config.json")["quantization_config"];
        QCOMPARE(qc["format"].get<std::string>(), format.toStdString());
        QCOMPARE(qc["config_groups"].size(), size_t(1));
        const json& g = qc["config_groups"]["group_0"];
        QCOMPARE(g["format"].get<std::string>(), format.toStdString());
        QCOMPARE(g["weights"]["num_bits"].get<int>(), bits);
        QVERIFY(g["weights"]["dynamic"] == json(false));
        const json& in = g["input_activations"];
        if (input.isEmpty()) {
            QVERIFY(in.is_null());  // weight-only, as W8A16 / W4A16 (quant_scheme.py)
        } else {
            QCOMPARE(in["strategy"].get<std::string>(), input.toStdString());
            QVERIFY(in["dynamic"] == json(true));
            QVERIFY(in["observer"].is_null());  // QuantizationArgs drops observers of dynamic args
            QCOMPARE(in["num_bits"].get<int>(), 8);
            // Per token as INT8_W8A8 (symmetric); per tensor as the plan's quantize_dynamic
            // (uint8 affine = asymmetric int8 with its zero point dtype).
            QVERIFY(in["symmetric"] == json(input == "token"));
            if (input == "tensor")
                QVERIFY(in["zp_dtype"] == json("torch.int8"));
        }

        // The stored integers, unpacked here independently: value i of a word is bits
        // [b*i, b*i + b) holding q + 2^(b-1), 32/b values per word (pack_to_int32).
        const Model raw = open(out);
        for (const ExportEntry& e : entries) {
            const QuantizedTensor& qt = e.quantized;
            const std::string mod = qt.name.substr(0, qt.name.size() - 7);
            const int64_t rows = qt.shape[0], cols = qt.shape[1];
            QVERIFY(!raw.find(mod + ".input_scale"));  // dynamic or none: nothing calibrated
            if (format == "int-quantized") {
                QCOMPARE(values<int8_t>(*raw.find(mod + ".weight")), qt.q);
                continue;
            }
            const int per = 32 / bits;
            QVERIFY(!raw.find(mod + ".weight"));
            const Tensor* p = raw.find(mod + ".weight_packed");
            QVERIFY2(p && raw.find(mod + ".weight_shape"), mod.c_str());
            QCOMPARE(p->shape, (std::vector<int64_t>{rows, (cols + per - 1) / per}));
            const auto words = values<int32_t>(*p);
            const uint32_t mask = (1u << bits) - 1;
            for (int64_t r2 = 0; r2 < rows; ++r2)
                for (int64_t c = 0; c < cols; ++c) {
                    const uint32_t word = uint32_t(words[size_t(r2 * p->shape[1] + c / per)]);
                    const int v = int((word >> (bits * (c % per))) & mask) - (1 << (bits - 1));
                    QCOMPARE(v, int(qt.q[size_t(r2 * cols + c)]));
                }
        }

        // Quantlens' own reader decodes every layout to exactly the values Quantlens dequantizes.
        auto back = openModel(out);
        QVERIFY2(back, back ? "" : back.error().oneLine().c_str());
        for (const ExportEntry& e : entries) {
            const Tensor* t = back->find(e.quantized.name);
            QVERIFY2(t && t->dtype == DType::Packed, e.quantized.name.c_str());
            auto x = t->toFloat();
            QVERIFY2(x, x ? "" : x.error().oneLine().c_str());
            const std::vector<float> want = dequantize(e.quantized);
            QCOMPARE(x->size(), want.size());
            QVERIFY2(std::memcmp(x->data(), want.data(), want.size() * 4) == 0, e.quantized.name.c_str());
        }
    }

    void float16ScalesAreStoredInTheWeightDtype()
    {
        // A float16 checkpoint: scales are written as F16 (llm-compressor's scale dtype),
        // and the integers are those of the rounded scales.
        QTemporaryDir src;
        std::vector<uint16_t> w(16 * 24);
        for (size_t i = 0; i < w.size(); ++i)
            w[i] = floatToHalf(float(std::sin(double(i) * 0.37)) * 0.3f);
        std::vector<SafetensorsItem> items{{"layer.proj.weight", DType::F16, {16, 24}, [&w](AtomicFile& f) { return f.write(w.data(), w.size() * 2); }}};
        QVERIFY(writeSafetensors(src.filePath("model.safetensors").toStdString(), items, {}, {}));
        { std::ofstream(src.filePath("config.json").toStdString()) << R"({"model_type": "toy"})"; }
        const Model m = open(src.path().toStdString());
        const auto entries = quantizeAll(m, spec(Scheme::NarrowSymmetric, Granularity::PerChannel));
        QTemporaryDir dir;
        const std::string out = dir.filePath("f16").toStdString();
        auto r = exportModel(m, entries, ExportOptions{ExportFormat::CompressedTensors, out, {}});
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        const Model back = open(out);
        const Tensor* s = back.find("layer.proj.weight_scale");
        const Tensor* q = back.find("layer.proj.weight");
        QVERIFY(s && q);
        QCOMPARE(s->dtype, DType::F16);
        auto x = m.find("layer.proj.weight")->toFloat();
        QVERIFY(x);
        const auto sv = values<uint16_t>(*s);
        const auto qv = values<int8_t>(*q);
        for (int64_t r2 = 0; r2 < 16; ++r2) {
            const float scale = halfToFloat(sv[size_t(r2)]);
            QCOMPARE(scale, halfToFloat(floatToHalf(entries[0].quantized.params.scale[size_t(r2)])));
            for (int64_t c = 0; c < 24; ++c) {
                // narrow-symmetric: round half to even of x / scale, clamped to [-127, 127].
                const float v = std::nearbyint((*x)[size_t(r2 * 24 + c)] / scale);
                QCOMPARE(int(qv[size_t(r2 * 24 + c)]), int(std::clamp(v, -127.0f, 127.0f)));
            }
        }
    }

    void lmHeadStaysFloat()
    {
        QTemporaryDir src;
        std::vector<float> a(8 * 16), b(12 * 8);
        for (size_t i = 0; i < a.size(); ++i)
            a[i] = float(std::cos(double(i)));
        for (size_t i = 0; i < b.size(); ++i)
            b[i] = float(std::sin(double(i)));
        std::vector<SafetensorsItem> items{
            {"model.proj.weight", DType::F32, {8, 16}, [&a](AtomicFile& f) { return f.write(a.data(), a.size() * 4); }},
            {"lm_head.weight", DType::F32, {12, 8}, [&b](AtomicFile& f) { return f.write(b.data(), b.size() * 4); }}};
        QVERIFY(writeSafetensors(src.filePath("model.safetensors").toStdString(), items, {}, {}));
        { std::ofstream(src.filePath("config.json").toStdString()) << R"({"model_type": "toy"})"; }
        const Model m = open(src.path().toStdString());
        const auto entries = quantizeAll(m, spec(Scheme::TorchSymmetric, Granularity::PerChannel));
        QCOMPARE(entries.size(), size_t(2));
        QTemporaryDir dir;
        const std::string out = dir.filePath("o").toStdString();
        auto r = exportModel(m, entries, ExportOptions{ExportFormat::CompressedTensors, out, {}});
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        QVERIFY(!r->warnings.empty() && r->warnings[0].find("lm_head") != std::string::npos);
        const Model back = open(out);
        QCOMPARE(back.find("lm_head.weight")->dtype, DType::F32);
        QVERIFY(!back.find("lm_head.weight_scale"));
        QCOMPARE(back.find("model.proj.weight")->dtype, DType::I8);
        QVERIFY(readJson(out + "/config.json")["quantization_config"]["ignore"] == json::array({"lm_head"}));
    }

    void refusalsLeaveNothing()
    {
        QTemporaryDir dir;
        const QString out = dir.filePath("out");
        // An ONNX source: a usage error naming what is possible.
        auto onnx = readOnnx(test::dataPath(QStringLiteral("onnx/qdq/convnet_opset21.onnx")).toStdString());
        QVERIFY(onnx);
        auto r = exportModel(*onnx, {}, ExportOptions{ExportFormat::CompressedTensors, out.toStdString(), {}});
        QVERIFY(!r);
        QCOMPARE(r.error().code, std::string("bad-pair"));
        test::CliRun run = test::runCli({"quantize", test::dataPath(QStringLiteral("onnx/qdq/convnet_opset21.onnx")), "--all-linear",
                                         "--format", "compressed-tensors", "--out", out});
        QCOMPARE(run.code, 2);
        QVERIFY2(run.err.contains("compressed-tensors") && run.err.contains(".onnx (ONNX QDQ)"), run.err.constData());
        // A spec the format cannot hold: usage error before anything is read.
        run = test::runCli({"quantize", QString::fromStdString(kLlama), "--all-linear", "--scheme", "torch-affine", "--format",
                            "compressed-tensors", "--out", out});
        QCOMPARE(run.code, 2);
        QVERIFY2(run.err.contains("symmetric"), run.err.constData());
        run = test::runCli({"quantize", QString::fromStdString(kLlama), "--all-linear", "--bits", "4", "--format",
                            "compressed-tensors", "--out", out});
        QCOMPARE(run.code, 2);  // 4-bit per tensor is neither W8A8 nor W4A16
        // No config.json beside the weights.
        QTemporaryDir bare;
        fs::copy_file(kLlama + "/model.safetensors", bare.filePath("model.safetensors").toStdString());
        const Model m = open(bare.path().toStdString());
        r = exportModel(m, quantizeAll(m, spec(Scheme::TorchSymmetric, Granularity::PerChannel)),
                        ExportOptions{ExportFormat::CompressedTensors, out.toStdString(), {}});
        QVERIFY(!r);
        QVERIFY2(r.error().message.find("config.json") != std::string::npos, r.error().message.c_str());
        // Static activations planned, but no layer carries its input range.
        const Model llama = open(kLlama);
        ExportOptions staticOpts{ExportFormat::CompressedTensors, out.toStdString(), {}};
        staticOpts.activations = ExportActivations::Static;
        r = exportModel(llama, quantizeAll(llama, spec(Scheme::TorchSymmetric, Granularity::PerChannel)), staticOpts);
        QVERIFY(!r);
        QVERIFY2(r.error().message.find("no input range") != std::string::npos, r.error().message.c_str());
        QVERIFY(!QFileInfo::exists(out));
        // Cancel half-way.
        r = exportModel(llama, quantizeAll(llama, spec(Scheme::TorchSymmetric, Granularity::PerChannel)),
                        ExportOptions{ExportFormat::CompressedTensors, out.toStdString(), {}},
                        [](double f, const std::string&) { return f < 0.5; });
        QVERIFY(!r);
        QCOMPARE(r.error().code, std::string("cancelled"));
        QVERIFY(!QFileInfo::exists(out));  // the folder it created is gone again
        QVERIFY(emptyDir(dir.path()));
    }

    void gpt2Conv1DIsRefused()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir src;
        fs::create_symlink(test::sharedModel("gpt2_capp.safetensors").toStdString(), src.filePath("model.safetensors").toStdString());
        { std::ofstream(src.filePath("config.json").toStdString()) << R"({"model_type": "gpt2"})"; }
        QTemporaryDir dir;
        const QString out = dir.filePath("g");
        const test::CliRun run = test::runCli({"quantize", src.path(), "--all-linear", "--scheme", "torch-symmetric", "--granularity",
                                               "channel", "--format", "compressed-tensors", "--out", out});
        QCOMPARE(run.code, 1);
        QVERIFY2(run.err.contains("Conv1D") && run.err.contains("nn.Linear"), run.err.constData());
        QVERIFY(!QFileInfo::exists(out));
    }
};

QTEST_GUILESS_MAIN(TestCtExport)
#include "tst_ctexport.moc"
