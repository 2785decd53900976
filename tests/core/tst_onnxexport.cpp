// ONNX QDQ export: the written graph (initializers, DequantizeLinear nodes, axis,
// block_size, opset) read with libprotobuf's ModelProto, the values read back with
// Quantlens' own ONNX reader, and the failures (wrong source, opset too low for blocks,
// cancel) leaving nothing behind. Fixtures: tests/scripts/make_onnx_qdq_fixtures.py.
#include <QTemporaryDir>
#include <QTest>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <fcntl.h>
#include <unistd.h>

#include <google/protobuf/util/message_differencer.h>
#include <onnx/onnx_pb.h>

#include "clirunner.h"
#include "io/demomodel.h"
#include "io/exporter.h"
#include "io/onnx.h"
#include "io/onnxqdq.h"
#include "io/onnxskeleton.h"
#include "io/onnxsplice.h"
#include "layers.h"
#include "testsupport.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {

std::string fixture(const char* rel) { return test::dataPath(QStringLiteral("onnx/qdq/") + rel).toStdString(); }

onnx::ModelProto loadProto(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    onnx::ModelProto mp;
    if (!mp.ParseFromIstream(&in))
        qFatal("cannot parse %s", path.c_str());
    return mp;
}

std::vector<ExportEntry> quantizeAll(const Model& m, const std::vector<std::string>& names, QuantSpec spec)
{
    std::vector<ExportEntry> out;
    for (const std::string& n : names) {
        auto e = quantizeForExport(m, n, spec);
        if (!e)
            qFatal("%s", e.error().oneLine().c_str());
        out.push_back(std::move(*e));
    }
    return out;
}

const onnx::NodeProto* producer(const onnx::ModelProto& mp, const std::string& output)
{
    for (const auto& n : mp.graph().node())
        for (const auto& o : n.output())
            if (o == output)
                return &n;
    return nullptr;
}

int64_t intAttr(const onnx::NodeProto& n, const char* name, int64_t missing = -999)
{
    for (const auto& a : n.attribute())
        if (a.name() == name)
            return a.i();
    return missing;
}

int64_t defaultOpset(const onnx::ModelProto& mp)
{
    for (const auto& o : mp.opset_import())
        if (o.domain().empty() || o.domain() == "ai.onnx")
            return o.version();
    return -1;
}

template <class T>
std::vector<T> values(const Tensor& t)
{
    std::vector<T> v(size_t(t.numel()));
    std::memcpy(v.data(), t.data.data(), v.size() * sizeof(T));
    return v;
}

QuantSpec spec(Scheme s, Granularity g, int64_t group = 0)
{
    QuantSpec q;
    q.scheme = s;
    q.granularity = g;
    q.groupSize = group;
    return q;
}

const std::vector<std::string> kWeights = {"conv.weight", "mm.weight", "gemm_a.weight", "gemm_b.weight"};

std::string fileBytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The streaming threshold the tests use on the small fixtures: the four weights (108 to
// 6144 bytes) are streamed, the biases and Slice's constants stay in the parsed model.
constexpr uint64_t kTestStreamFrom = 100;

bool sameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b, std::string* diff)
{
    google::protobuf::util::MessageDifferencer d;
    d.ReportDifferencesToString(diff);
    return d.Compare(a, b);
}

}  // namespace

class TestOnnxExport : public QObject {
    Q_OBJECT

private slots:
    void perChannelAxisFollowsEachConsumer()
    {
        auto m = readOnnx(fixture("convnet_opset21.onnx"));
        QVERIFY2(m, m ? "" : m.error().oneLine().c_str());
        const auto entries = quantizeAll(*m, kWeights, spec(Scheme::TorchSymmetric, Granularity::PerChannel));
        QTemporaryDir dir;
        const std::string out = dir.filePath("q.onnx").toStdString();
        ExportOptions eo{ExportFormat::OnnxQdq, out, {}};
        auto r = exportModel(*m, entries, eo);
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        QCOMPARE(r->files, std::vector<std::string>{out});

        const onnx::ModelProto mp = loadProto(out);
        QCOMPARE(defaultOpset(mp), int64_t(21));
        // Conv [out, in, k, k] and Gemm transB=1 [out, in]: axis 0; MatMul and Gemm transB=0 [in, out]: axis 1.
        const std::map<std::string, int64_t> wantAxis = {{"conv.weight", 0}, {"mm.weight", 1}, {"gemm_a.weight", 1}, {"gemm_b.weight", 0}};
        std::map<std::string, const onnx::TensorProto*> inits;
        for (const auto& t : mp.graph().initializer())
            inits[t.name()] = &t;
        for (const auto& [name, axis] : wantAxis) {
            QVERIFY2(!inits.count(name), name.c_str());  // the float initializer is gone
            const onnx::NodeProto* dq = producer(mp, name);
            QVERIFY2(dq, name.c_str());
            QCOMPARE(dq->op_type(), std::string("DequantizeLinear"));
            QCOMPARE(intAttr(*dq, "axis"), axis);
            QCOMPARE(intAttr(*dq, "block_size"), int64_t(-999));
            QCOMPARE(dq->input(0), name + "_quantized");
            QCOMPARE(dq->input(1), name + "_scale");
            QCOMPARE(dq->input(2), name + "_zero_point");
            QCOMPARE(inits.at(name + "_quantized")->data_type(), int(onnx::TensorProto::INT8));
            QCOMPARE(inits.at(name + "_scale")->data_type(), int(onnx::TensorProto::FLOAT));
            QCOMPARE(inits.at(name + "_zero_point")->data_type(), int(onnx::TensorProto::INT8));
        }
        // DequantizeLinear nodes come first, so the graph stays topologically sorted.
        for (int i = 0; i < 4; ++i)
            QCOMPARE(mp.graph().node(i).op_type(), std::string("DequantizeLinear"));

        // Round trip through our own reader: integers, scales and zero points as quantized.
        auto back = readOnnx(out);
        QVERIFY2(back, back ? "" : back.error().oneLine().c_str());
        for (const ExportEntry& e : entries) {
            const QuantizedTensor& qt = e.quantized;
            const Tensor* q = back->find(qt.name + "_quantized");
            const Tensor* s = back->find(qt.name + "_scale");
            const Tensor* z = back->find(qt.name + "_zero_point");
            QVERIFY(q && s && z);
            QCOMPARE(q->dtype, DType::I8);
            QCOMPARE(q->shape, qt.shape);
            QCOMPARE(values<int8_t>(*q), qt.q);
            QCOMPARE(s->shape, std::vector<int64_t>{int64_t(qt.params.scale.size())});
            QCOMPARE(values<float>(*s), qt.params.scale);
            for (int8_t v : values<int8_t>(*z))
                QCOMPARE(int(v), 0);
        }
        // Everything else is unchanged.
        for (const char* name : {"conv.bias", "gemm_a.bias", "gemm_b.bias", "s_end"}) {
            const Tensor* a = m->find(name);
            const Tensor* b = back->find(name);
            QVERIFY(a && b);
            QCOMPARE(b->shape, a->shape);
            QVERIFY(std::equal(a->data.begin(), a->data.end(), b->data.begin(), b->data.end()));
        }
    }

    void blockedGroupsRunAlongTheInputAxis()
    {
        auto m = readOnnx(fixture("convnet_opset21.onnx"));
        QVERIFY(m);
        const auto entries = quantizeAll(*m, {"mm.weight", "gemm_b.weight"}, spec(Scheme::NarrowSymmetric, Granularity::PerGroup, 8));
        QTemporaryDir dir;
        const std::string out = dir.filePath("g.onnx").toStdString();
        auto r = exportModel(*m, entries, ExportOptions{ExportFormat::OnnxQdq, out, {}});
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        const onnx::ModelProto mp = loadProto(out);
        auto back = readOnnx(out);
        QVERIFY(back);

        // mm.weight [48 in, 32 out]: channels are columns, groups of 8 run down axis 0.
        const onnx::NodeProto* dq = producer(mp, "mm.weight");
        QVERIFY(dq);
        QCOMPARE(intAttr(*dq, "axis"), int64_t(0));
        QCOMPARE(intAttr(*dq, "block_size"), int64_t(8));
        const Tensor* s = back->find("mm.weight_scale");
        QVERIFY(s);
        QCOMPARE(s->shape, (std::vector<int64_t>{6, 32}));
        const auto sv = values<float>(*s);
        const auto& P = entries[0].quantized.params;  // [channels = 32, groups = 6]
        for (int c = 0; c < 32; ++c)
            for (int g = 0; g < 6; ++g)
                QCOMPARE(sv[size_t(g * 32 + c)], P.scale[size_t(c * 6 + g)]);

        // gemm_b.weight [4 out, 16 in]: groups along axis 1, scales [4, 2] as stored.
        dq = producer(mp, "gemm_b.weight");
        QVERIFY(dq);
        QCOMPARE(intAttr(*dq, "axis"), int64_t(1));
        QCOMPARE(intAttr(*dq, "block_size"), int64_t(8));
        s = back->find("gemm_b.weight_scale");
        QVERIFY(s);
        QCOMPARE(s->shape, (std::vector<int64_t>{4, 2}));
        QCOMPARE(values<float>(*s), entries[1].quantized.params.scale);
    }

    void oldOpsetIsConvertedTo13()
    {
        auto m = readOnnx(fixture("convnet_opset11.onnx"));
        QVERIFY(m);
        const auto entries = quantizeAll(*m, kWeights, spec(Scheme::TorchSymmetric, Granularity::PerChannel));
        QTemporaryDir dir;
        const std::string out = dir.filePath("c.onnx").toStdString();
        auto r = exportModel(*m, entries, ExportOptions{ExportFormat::OnnxQdq, out, {}});
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        QVERIFY(!r->warnings.empty());
        QVERIFY(r->warnings[0].find("opset 11 to 13") != std::string::npos);
        const onnx::ModelProto mp = loadProto(out);
        QCOMPARE(defaultOpset(mp), int64_t(13));
        QVERIFY(mp.ir_version() >= 7);
        // The fixture lists its initializers as graph inputs; the quantized ones are not any more.
        for (const auto& in : mp.graph().input())
            for (const std::string& w : kWeights)
                QVERIFY2(in.name() != w, w.c_str());
        QCOMPARE(intAttr(*producer(mp, "mm.weight"), "axis"), int64_t(1));
    }

    void blockedBelowOpset21IsRefusedAndNothingIsWritten()
    {
        auto m = readOnnx(fixture("convnet_opset11.onnx"));
        QVERIFY(m);
        const auto entries = quantizeAll(*m, {"mm.weight"}, spec(Scheme::NarrowSymmetric, Granularity::PerGroup, 8));
        QTemporaryDir dir;
        const std::string out = dir.filePath("g.onnx").toStdString();
        { std::ofstream(out) << "keep me"; }
        auto r = exportModel(*m, entries, ExportOptions{ExportFormat::OnnxQdq, out, {}});
        QVERIFY(!r);
        QVERIFY2(r.error().message.find("opset 21") != std::string::npos, r.error().message.c_str());
        std::ifstream in(out);
        std::string s((std::istreambuf_iterator<char>(in)), {});
        QCOMPARE(s, std::string("keep me"));
        QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden).size(), 1);
    }

    void externalDataIsCopiedBesideTheOutput()
    {
        auto m = readOnnx(fixture("external/convnet_ext.onnx"));
        QVERIFY(m);
        QVERIFY(m->files.size() == 2);  // the model and convnet_ext.bin
        const auto entries = quantizeAll(*m, {"mm.weight"}, spec(Scheme::TorchSymmetric, Granularity::PerChannel));
        QTemporaryDir dir;
        const std::string out = dir.filePath("sub/e.onnx").toStdString();
        fs::create_directories(dir.filePath("sub").toStdString());
        auto r = exportModel(*m, entries, ExportOptions{ExportFormat::OnnxQdq, out, {}});
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        QCOMPARE(r->files, (std::vector<std::string>{out, out + ".data"}));
        auto back = readOnnx(out);
        QVERIFY2(back, back ? "" : back.error().oneLine().c_str());
        QCOMPARE(back->files, (std::vector<std::string>{out, out + ".data"}));  // nothing points at the source's files
        for (const char* name : {"conv.weight", "gemm_a.weight", "gemm_b.weight"}) {
            const Tensor* a = m->find(name);
            const Tensor* b = back->find(name);
            QVERIFY(a && b);
            QVERIFY(std::equal(a->data.begin(), a->data.end(), b->data.begin(), b->data.end()));
        }
        QCOMPARE(values<int8_t>(*back->find("mm.weight_quantized")), entries[0].quantized.q);
    }

    void cancelLeavesNothing()
    {
        auto m = readOnnx(fixture("convnet_opset21.onnx"));
        QVERIFY(m);
        const auto entries = quantizeAll(*m, kWeights, spec(Scheme::Seed, Granularity::PerTensor));
        QTemporaryDir dir;
        const std::string out = dir.filePath("x.onnx").toStdString();
        auto r = exportModel(*m, entries, ExportOptions{ExportFormat::OnnxQdq, out, {}},
                             [](double f, const std::string&) { return f < 0.5; });
        QVERIFY(!r);
        QCOMPARE(r.error().code, std::string("cancelled"));
        QVERIFY(QDir(dir.path()).isEmpty(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot));
    }

    void otherSourcesAreAUsageError()
    {
        const Model demo = makeDemoModel(1, 64);
        QTemporaryDir dir;
        const std::string out = dir.filePath("x.onnx").toStdString();
        auto r = exportModel(demo, {}, ExportOptions{ExportFormat::OnnxQdq, out, {}});
        QVERIFY(!r);
        QCOMPARE(r.error().code, std::string("bad-pair"));

        const test::CliRun run = test::runCli({"quantize", "demo", "--all-linear", "--out", dir.filePath("y.onnx")});
        QCOMPARE(run.code, 2);
        QVERIFY2(run.err.contains("ONNX QDQ") && run.err.contains(".h5, .safetensors or an npy folder"), run.err.constData());
        QVERIFY(QDir(dir.path()).isEmpty(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot));
    }

    void unnamedMatMulWeightIsALinearLayer()
    {
        auto m = readOnnx(fixture("unnamed_matmul.onnx"));
        QVERIFY(m);
        const auto layers = findLinearLayers(*m);
        QCOMPARE(layers.size(), size_t(1));
        QCOMPARE(layers[0].prefix, std::string("onnx::MatMul_7"));
        QVERIFY(layers[0].transposed());
        QCOMPARE(layers[0].inFeatures, int64_t(5));
        QCOMPARE(layers[0].outFeatures, int64_t(3));
        QTemporaryDir dir;
        const QString out = dir.filePath("u.onnx");
        const test::CliRun run = test::runCli({"quantize", QString::fromStdString(fixture("unnamed_matmul.onnx")), "--all-linear",
                                               "--scheme", "torch-symmetric", "--granularity", "channel", "--out", out});
        QVERIFY2(run.code == 0, run.err.constData());
        const onnx::ModelProto mp = loadProto(out.toStdString());
        QCOMPARE(intAttr(*producer(mp, "onnx::MatMul_7"), "axis"), int64_t(1));
    }

    void cliWritesBurnMnist()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir dir;
        const QString out = dir.filePath("mnist.onnx");
        const test::CliRun run = test::runCli({"quantize", test::sharedModel("burn_mnist.onnx"), "--all-linear", "--tensor",
                                               "conv2.weight", "--scheme", "torch-symmetric", "--granularity", "channel",
                                               "--out", out, "--json"});
        // --all-linear and --tensor exclude each other: a usage error.
        QCOMPARE(run.code, 2);
        const test::CliRun ok = test::runCli({"quantize", test::sharedModel("burn_mnist.onnx"), "--tensor", "fc1.weight", "--tensor",
                                              "conv2.weight", "--scheme", "torch-symmetric", "--granularity", "channel",
                                              "--out", out, "--json"});
        QVERIFY2(ok.code == 0, ok.err.constData());
        const onnx::ModelProto mp = loadProto(out.toStdString());
        QCOMPARE(defaultOpset(mp), int64_t(16));  // already >= 13: unchanged
        QCOMPARE(intAttr(*producer(mp, "fc1.weight"), "axis"), int64_t(0));    // Gemm transB=1
        QCOMPARE(intAttr(*producer(mp, "conv2.weight"), "axis"), int64_t(0));  // Conv
        auto back = readOnnx(out.toStdString());
        QVERIFY(back);
        QCOMPARE(back->find("fc1.weight_quantized")->shape, (std::vector<int64_t>{32, 11616}));
        QCOMPARE(back->find("fc1.weight_scale")->shape, (std::vector<int64_t>{32}));
    }

    // The skeleton is the file without the large initializers' raw_data, and nothing else
    // changed; the stripped ranges are where those bytes lie in the file.
    void skeletonDropsOnlyLargeRawData()
    {
        const std::string path = fixture("convnet_opset11.onnx");
        const std::string file = fileBytes(path);
        auto sk = buildOnnxSkeleton({reinterpret_cast<const std::byte*>(file.data()), file.size()}, path, kTestStreamFrom);
        QVERIFY2(sk, sk ? "" : sk.error().oneLine().c_str());
        onnx::ModelProto whole, skeleton;
        QVERIFY(whole.ParseFromString(file));
        QVERIFY(skeleton.ParseFromString(sk->bytes));
        QCOMPARE(sk->stripped.size(), size_t(4));
        for (const OnnxStrippedData& d : sk->stripped) {
            onnx::TensorProto& t = *whole.mutable_graph()->mutable_initializer(int(d.initializer));
            QVERIFY2(t.raw_data().size() >= kTestStreamFrom, t.name().c_str());
            QCOMPARE(file.substr(d.offset, d.length), t.raw_data());
            t.clear_raw_data();
        }
        std::string diff;
        QVERIFY2(sameMessage(whole, skeleton, &diff), diff.c_str());
        // Nothing to strip: the skeleton is the file.
        auto all = buildOnnxSkeleton({reinterpret_cast<const std::byte*>(file.data()), file.size()}, path, UINT64_MAX);
        QVERIFY(all);
        QCOMPARE(all->bytes, file);
        QVERIFY(all->stripped.empty());
    }

    // The streamed writer gives the bytes the whole-model writer (the previous code path:
    // the file parsed whole by libprotobuf, the model serialized whole) gives, for large
    // initializers quantized and copied, small ones kept, an opset 11 source that the
    // version converter raises, blocked scales, and a source with external data.
    void streamedEqualsWholeModel_data()
    {
        QTest::addColumn<QString>("source");
        QTest::addColumn<QStringList>("quantized");
        QTest::addColumn<int>("granularity");
        QTest::addColumn<bool>("external");  // the export has a data file
        const int channel = int(Granularity::PerChannel), group = int(Granularity::PerGroup);
        QTest::newRow("opset 21, two of four per channel") << "convnet_opset21.onnx" << QStringList{"conv.weight", "mm.weight"} << channel << false;
        QTest::newRow("opset 21, blocked") << "convnet_opset21.onnx" << QStringList{"mm.weight", "gemm_b.weight"} << group << false;
        QTest::newRow("opset 11 converted") << "convnet_opset11.onnx" << QStringList{"mm.weight", "gemm_a.weight"} << channel << false;
        QTest::newRow("external data source") << "external/convnet_ext.onnx" << QStringList{"mm.weight", "conv.weight"} << channel << true;
        QTest::newRow("nothing quantized") << "convnet_opset21.onnx" << QStringList{} << channel << false;
    }

    void streamedEqualsWholeModel()
    {
        QFETCH(QString, source);
        QFETCH(QStringList, quantized);
        QFETCH(int, granularity);
        QFETCH(bool, external);
        auto m = readOnnx(fixture(source.toUtf8().constData()));
        QVERIFY(m);
        std::vector<std::string> names;
        for (const QString& q : quantized)
            names.push_back(q.toStdString());
        const auto entries = quantizeAll(*m, names, spec(Scheme::TorchSymmetric, Granularity(granularity), 8));
        QTemporaryDir dir;
        // Each in its own folder under one name, since the data file's name is in the model.
        auto write = [&](const char* folder, uint64_t streamFrom, onnxqdqdetail::Writing how) {
            fs::create_directories(dir.filePath(folder).toStdString());
            const std::string out = dir.filePath(QString(folder) + "/x.onnx").toStdString();
            auto r = onnxqdqdetail::write(*m, entries, ExportOptions{ExportFormat::OnnxQdq, out, {}}, {}, streamFrom, how);
            if (!r)
                qFatal("%s", r.error().oneLine().c_str());
            return out;
        };
        const std::string before = write("before", UINT64_MAX, onnxqdqdetail::Writing::WholeModel);
        const std::string streamed = write("streamed", kTestStreamFrom, onnxqdqdetail::Writing::Streamed);
        const std::string whole = write("whole", kTestStreamFrom, onnxqdqdetail::Writing::WholeModel);

        std::string diff;
        QVERIFY2(sameMessage(loadProto(before), loadProto(streamed), &diff), diff.c_str());
        QVERIFY(fileBytes(streamed) == fileBytes(before));  // libprotobuf's own field order, byte for byte
        QVERIFY(fileBytes(whole) == fileBytes(before));
        QCOMPARE(fs::exists(streamed + ".data"), external);
        if (external) {
            QVERIFY(fileBytes(streamed + ".data") == fileBytes(before + ".data"));
            QVERIFY(fileBytes(whole + ".data") == fileBytes(before + ".data"));
        }
    }

    // The splicing writer on its own, against libprotobuf serializing the same model
    // whole: data inline, and data moved to an external file (the path a model over
    // 2 GiB takes), from memory and from a file range.
    void splicedModelEqualsWholeSerialization()
    {
        const std::string path = fixture("convnet_opset21.onnx");
        onnx::ModelProto mp = loadProto(path);
        const std::string file = fileBytes(path);
        auto sk = buildOnnxSkeleton({reinterpret_cast<const std::byte*>(file.data()), file.size()}, path, kTestStreamFrom);
        QVERIFY(sk);
        onnx::ModelProto skeleton;
        QVERIFY(skeleton.ParseFromString(sk->bytes));
        // A field numbered after raw_data, so the data must go in the middle of the tensor.
        for (onnx::ModelProto* p : {&mp, &skeleton})
            p->mutable_graph()->mutable_initializer(3)->set_doc_string("gemm_a's weight");
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        QVERIFY(fd >= 0);
        SplicedData spliced;
        for (const OnnxStrippedData& d : sk->stripped)
            spliced[skeleton.graph().initializer(int(d.initializer)).name()] = SplicedBytes{{}, fd, path, d.offset, d.length};
        // One more from memory: the mm.weight bytes, held by the test.
        const std::string mm = mp.graph().initializer(2).raw_data();
        QCOMPARE(mp.graph().initializer(2).name(), std::string("mm.weight"));
        spliced["mm.weight"] = SplicedBytes{std::as_bytes(std::span(mm.data(), mm.size())), -1, {}, 0, 0};
        QTemporaryDir dir;
        for (const std::string& location : {std::string(), std::string("x.onnx.data")}) {
            auto layout = SplicedModel::plan(skeleton, spliced, location, 1024);
            QVERIFY(layout);
            QCOMPARE(layout->dataBytes() > 0, !location.empty());
            auto a = AtomicFile::create(dir.filePath("a.onnx").toStdString(), {});
            auto ad = AtomicFile::create(dir.filePath("a.onnx.data").toStdString(), {});
            QVERIFY(a && ad);
            QVERIFY(layout->write(*a, &*ad, [](const std::string&) { return Status(Ok{}); }));
            QCOMPARE(uint64_t(a->bytesWritten()), layout->modelBytes());
            QCOMPARE(uint64_t(ad->bytesWritten()), layout->dataBytes());
            QVERIFY(a->commit() && ad->commit());

            onnx::ModelProto copy = skeleton;
            auto b = AtomicFile::create(dir.filePath("b.onnx").toStdString(), {});
            auto bd = AtomicFile::create(dir.filePath("b.onnx.data").toStdString(), {});
            QVERIFY(b && bd);
            QVERIFY(writeWholeModel(copy, spliced, *b, location.empty() ? nullptr : &*bd, location, 1024));
            QVERIFY(b->commit() && bd->commit());
            QVERIFY(fileBytes(dir.filePath("a.onnx").toStdString()) == fileBytes(dir.filePath("b.onnx").toStdString()));
            QVERIFY(fileBytes(dir.filePath("a.onnx.data").toStdString()) == fileBytes(dir.filePath("b.onnx.data").toStdString()));
            if (location.empty()) {  // inline: the model itself, byte for byte
                QVERIFY(fileBytes(dir.filePath("a.onnx").toStdString()) == mp.SerializeAsString());
            } else {  // mm.weight (6144 bytes) and gemm_a.weight (2048) went out, 64-byte aligned
                const onnx::ModelProto back = loadProto(dir.filePath("a.onnx").toStdString());
                QCOMPARE(back.graph().initializer(2).data_location(), int(onnx::TensorProto::EXTERNAL));
                QCOMPARE(back.graph().initializer(3).external_data(1).value(), std::string("6144"));
                QCOMPARE(layout->dataBytes(), uint64_t(6144 + 2048));
            }
        }
        ::close(fd);
    }

    // A cancel while the streamed initializers are written leaves nothing behind.
    void cancelWhileStreamingLeavesNothing()
    {
        auto m = readOnnx(fixture("external/convnet_ext.onnx"));
        QVERIFY(m);
        const auto entries = quantizeAll(*m, {"mm.weight"}, spec(Scheme::TorchSymmetric, Granularity::PerChannel));
        QTemporaryDir dir;
        const std::string out = dir.filePath("x.onnx").toStdString();
        bool sawWriting = false;
        auto r = onnxqdqdetail::write(*m, entries, ExportOptions{ExportFormat::OnnxQdq, out, {}},
                                      [&](double, const std::string& what) {
                                          sawWriting = sawWriting || what == "writing gemm_a.weight";
                                          return !sawWriting;
                                      },
                                      kTestStreamFrom, onnxqdqdetail::Writing::Streamed);
        QVERIFY(sawWriting);
        QVERIFY(!r);
        QCOMPARE(r.error().code, std::string("cancelled"));
        QVERIFY(QDir(dir.path()).isEmpty(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot));
    }
};

QTEST_GUILESS_MAIN(TestOnnxExport)
#include "tst_onnxexport.moc"
