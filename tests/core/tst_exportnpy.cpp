// The npy writer against files numpy itself wrote (tests/scripts/make_export_fixtures.py),
// and the npy-folder export: manifest, one file per array, nothing half-written.
#include <QTemporaryDir>
#include <QTest>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/demomodel.h"
#include "io/exporter.h"
#include "io/npy.h"
#include "io/npyfolderexport.h"
#include "io/npywriter.h"
#include "layers.h"
#include "testsupport.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& p)
{
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

template <class T>
std::span<const std::byte> bytesOf(const std::vector<T>& v)
{
    return std::as_bytes(std::span<const T>(v.data(), v.size()));
}

template <class T>
std::string raw(const std::vector<T>& v)
{
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// The data part of an .npy we wrote: after the header whose length the prefix states.
std::string npyData(const std::string& file)
{
    if (file.size() < 10 || file[6] != 1)
        return "<bad npy>";
    const size_t hlen = size_t(uint8_t(file[8])) | (size_t(uint8_t(file[9])) << 8);
    return file.substr(10 + hlen);
}

}  // namespace

class TestExportNpy : public QObject {
    Q_OBJECT
private slots:
    void sameBytesAsNumpy_data()
    {
        QTest::addColumn<QString>("fixture");
        QTest::newRow("float32 2x3") << QStringLiteral("f32_2x3");
        QTest::newRow("int8 vector") << QStringLiteral("i8_4");
        QTest::newRow("uint8 scalar") << QStringLiteral("u8_scalar");
        QTest::newRow("int32 1x2x1") << QStringLiteral("i32_1x2x1");
        QTest::newRow("float32 empty 0x3") << QStringLiteral("f32_0x3");
    }
    void sameBytesAsNumpy()
    {
        QFETCH(QString, fixture);
        // The same arrays as the fixture script, recomputed here.
        DType t = DType::F32;
        std::vector<int64_t> shape;
        std::vector<std::byte> data;
        auto put = [&](const auto& v) {
            auto b = bytesOf(v);
            data.assign(b.begin(), b.end());
        };
        if (fixture == u"f32_2x3") {
            std::vector<float> v;
            for (int i = 0; i < 6; ++i)
                v.push_back(float(i) * 0.5f - 1.0f);
            put(v);
            shape = {2, 3};
        } else if (fixture == u"i8_4") {
            t = DType::I8;
            put(std::vector<int8_t>{-128, -1, 0, 127});
            shape = {4};
        } else if (fixture == u"u8_scalar") {
            t = DType::U8;
            put(std::vector<uint8_t>{200});
        } else if (fixture == u"i32_1x2x1") {
            t = DType::I32;
            put(std::vector<int32_t>{-7, 123456});
            shape = {1, 2, 1};
        } else {
            shape = {0, 3};
        }
        QTemporaryDir tmp;
        const std::string out = tmp.filePath(fixture + QStringLiteral(".npy")).toStdString();
        Status s = writeNpyFile(out, t, shape, data);
        QVERIFY2(s.ok(), s.ok() ? "" : s.error().oneLine().c_str());
        const std::string want = slurp(quantlens::test::dataPath(QStringLiteral("export/") + fixture + QStringLiteral(".npy")).toStdString());
        QVERIFY(!want.empty());
        const std::string got = slurp(out);
        QCOMPARE(QByteArray::fromStdString(got), QByteArray::fromStdString(want));
    }

    void rejectsWrongSizesAndBlockTypes()
    {
        QTemporaryDir tmp;
        const std::vector<std::byte> three(3);
        Status s = writeNpyFile(tmp.filePath(QStringLiteral("a.npy")).toStdString(), DType::F32, {1}, three);
        QVERIFY(!s.ok());
        s = writeNpyFile(tmp.filePath(QStringLiteral("b.npy")).toStdString(), DType::Q8_0, {32}, std::vector<std::byte>(34));
        QVERIFY(!s.ok());
        QCOMPARE(s.error().code, std::string("unsupported-dtype"));
        QCOMPARE(QDir(tmp.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot).size(), 0);
    }

    void fileStems_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("stem");
        QTest::newRow("dotted torch name") << QStringLiteral("h.0.attn.c_attn.weight") << QStringLiteral("h.0.attn.c_attn.weight");
        QTest::newRow("keras name") << QStringLiteral("dense_1/kernel:0") << QStringLiteral("dense_1%2Fkernel%3A0");
        QTest::newRow("percent") << QStringLiteral("a%b") << QStringLiteral("a%25b");
        QTest::newRow("leading dot") << QStringLiteral(".hidden") << QStringLiteral("%2Ehidden");
        QTest::newRow("space") << QStringLiteral("a b") << QStringLiteral("a%20b");
    }
    void fileStems()
    {
        QFETCH(QString, name);
        QFETCH(QString, stem);
        QCOMPARE(QString::fromStdString(npyFileStem(name.toStdString())), stem);
    }

    void folderExport()
    {
        const Model m = makeDemoModel(1, 32);
        QuantSpec spec;
        spec.scheme = Scheme::TorchAffine;
        spec.granularity = Granularity::PerChannel;
        spec.isUnsigned = true;
        std::vector<ExportEntry> entries;
        for (const LinearLayer& l : findLinearLayers(m)) {
            auto e = quantizeForExport(m, l.weight->name, spec);
            QVERIFY(e.ok());
            entries.push_back(std::move(*e));
        }
        auto ln = quantizeForExport(m, "distilbert.embeddings.LayerNorm.bias", QuantSpec{});
        QVERIFY(ln.ok());
        entries.push_back(std::move(*ln));

        QTemporaryDir tmp;
        const std::string dir = tmp.filePath(QStringLiteral("out")).toStdString();
        fs::create_directory(dir);
        // A stale file under an export name is replaced; an unrelated file is left alone.
        const std::string stale = dir + "/" + npyFileStem(entries[0].quantized.name) + ".q.npy";
        std::ofstream(stale) << "stale";
        std::ofstream(dir + "/README") << "mine";

        ExportOptions o;
        o.format = ExportFormat::NpyFolder;
        o.outPath = dir;
        auto r = exportModel(m, entries, o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        QCOMPARE(r->files.size(), size_t(6 * 4 + 3 + 1));  // 6 layers with bias, LayerNorm.bias without, manifest
        QCOMPARE(slurp(dir + "/README"), std::string("mine"));
        for (const auto& e : fs::directory_iterator(dir))
            QVERIFY2(e.path().filename().string().find("quantlens-tmp") == std::string::npos, e.path().c_str());

        const auto manifest = nlohmann::json::parse(slurp(dir + "/manifest.json"));
        QCOMPARE(manifest["format"].get<std::string>(), std::string("quantlens-int8-npy"));
        QCOMPARE(manifest["format_version"].get<int>(), 1);
        QCOMPARE(manifest["source_format"].get<std::string>(), std::string("demo"));
        QCOMPARE(manifest["tensors"].size(), entries.size());
        for (size_t i = 0; i < entries.size(); ++i) {
            const QuantizedTensor& qt = entries[i].quantized;
            const auto& j = manifest["tensors"][i];
            QCOMPARE(j["name"].get<std::string>(), qt.name);
            QCOMPARE(j["shape"].get<std::vector<int64_t>>(), qt.shape);
            QCOMPARE(j["dtype"].get<std::string>(), std::string(qt.spec.isUnsigned ? "uint8" : "int8"));
            QCOMPARE(j["scheme"].get<std::string>(), schemeName(qt.spec.scheme));
            QCOMPARE(j["granularity"].get<std::string>(), storedGranularity(qt));
            QCOMPARE(j["axis"].get<int>(), storedAxis(qt));
            QCOMPARE(j["qmin"].get<int>(), qt.params.qmin);
            QCOMPARE(j["qmax"].get<int>(), qt.params.qmax);
            QCOMPARE(j["scale_shape"].get<std::vector<int64_t>>(), *scaleShape(qt));
            const std::string q = slurp(dir + "/" + j["q"].get<std::string>());
            QCOMPARE(npyData(q), raw(qt.q));
            QVERIFY(q.find(qt.spec.isUnsigned ? "'descr': '|u1'" : "'descr': '|i1'") != std::string::npos);
            QCOMPARE(npyData(slurp(dir + "/" + j["scale"].get<std::string>())), raw(qt.params.scale));
            QCOMPARE(npyData(slurp(dir + "/" + j["zero_point"].get<std::string>())), raw(qt.params.zeroPoint));
            if (entries[i].biasName.empty()) {
                QVERIFY(j["bias"].is_null());
            } else {
                const auto bias = *m.find(entries[i].biasName)->toFloat();
                QCOMPARE(npyData(slurp(dir + "/" + j["bias"].get<std::string>())), raw(bias));
            }

            // Through Quantlens's own npy reader, when it is there.
            auto back = readNpy(dir + "/" + j["q"].get<std::string>());
            if (!back.ok()) {
                qInfo("readNpy cannot open the export (%s); checked by hand only", back.error().oneLine().c_str());
                continue;
            }
            QCOMPARE(back->tensors.size(), size_t(1));
            QCOMPARE(back->tensors[0].dtype, qt.spec.isUnsigned ? DType::U8 : DType::I8);
            QCOMPARE(back->tensors[0].shape, qt.shape);
            QCOMPARE(std::string(reinterpret_cast<const char*>(back->tensors[0].data.data()), back->tensors[0].data.size()), raw(qt.q));
        }
    }
};

QTEST_GUILESS_MAIN(TestExportNpy)
#include "tst_exportnpy.moc"
