// Issue 21: an export holds one tensor's integers at a time. runExportPlan drops each
// entry's integers after the first pass and every writer makes them again only while it
// writes that tensor (counted by exportdetail::payloadCount); the files are byte for byte
// those written from entries that kept their integers (the old way).
#include <QTemporaryDir>
#include <QTest>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "io/demomodel.h"
#include "io/exporter.h"
#include "tasks/exportplan.h"
#include "testsupport.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {

// Every file under `path` (or the file itself) by its path relative to it.
std::map<std::string, std::string> contents(const fs::path& path)
{
    std::map<std::string, std::string> out;
    auto read = [](const fs::path& f) {
        std::ifstream in(f, std::ios::binary);
        std::ostringstream s;
        s << in.rdbuf();
        return s.str();
    };
    if (fs::is_directory(path)) {
        for (const auto& e : fs::recursive_directory_iterator(path))
            if (e.is_regular_file())
                out[fs::relative(e.path(), path).string()] = read(e.path());
    } else {
        out[""] = read(path);
    }
    return out;
}

// HDF5 stamps every object header with the second it was written (object time tracking,
// on by default and left on so files stay as they were): blank 32-bit little-endian
// values within [t0, t1] at the same offset of both files, then compare.
bool sameBarHdf5Times(std::string a, std::string b, uint32_t t0, uint32_t t1)
{
    if (a.size() != b.size())
        return false;
    auto at = [](const std::string& s, size_t i) {
        return uint32_t(uint8_t(s[i])) | uint32_t(uint8_t(s[i + 1])) << 8 | uint32_t(uint8_t(s[i + 2])) << 16 |
               uint32_t(uint8_t(s[i + 3])) << 24;
    };
    for (size_t i = 0; i + 4 <= a.size(); ++i) {
        const uint32_t x = at(a, i), y = at(b, i);
        if (x != y && x >= t0 && x <= t1 && y >= t0 && y <= t1) {
            a.replace(i, 4, 4, '\0');
            b.replace(i, 4, 4, '\0');
        }
    }
    return a == b;
}

}  // namespace

class TestExportStream : public QObject {
    Q_OBJECT
private slots:
    void oneTensorAtATime_data()
    {
        QTest::addColumn<QString>("model");  // "" = the demo model
        QTest::addColumn<int>("format");
        QTest::addColumn<QString>("out");
        QTest::addColumn<int>("bits");
        QTest::addColumn<int>("group");  // 0 = per channel
        const QString llama = test::dataPath("encoder/llama3_tiny");
        const QString onnx = test::dataPath("onnx/qdq/convnet_opset21.onnx");
        QTest::newRow("hdf5") << QString() << int(ExportFormat::Hdf5) << "q.h5" << 8 << 0;
        QTest::newRow("hdf5 4-bit group") << QString() << int(ExportFormat::Hdf5) << "q.h5" << 4 << 8;
        QTest::newRow("safetensors-int8") << QString() << int(ExportFormat::SafetensorsInt8) << "q.safetensors" << 8 << 0;
        QTest::newRow("fake-quant") << QString() << int(ExportFormat::SafetensorsFakeQuant) << "f.safetensors" << 8 << 0;
        QTest::newRow("npy-folder") << QString() << int(ExportFormat::NpyFolder) << "npy" << 4 << 8;
        QTest::newRow("compressed-tensors w8") << llama << int(ExportFormat::CompressedTensors) << "ct" << 8 << 0;
        QTest::newRow("compressed-tensors w4 group") << llama << int(ExportFormat::CompressedTensors) << "ct" << 4 << 8;
        QTest::newRow("onnx-qdq") << onnx << int(ExportFormat::OnnxQdq) << "q.onnx" << 8 << 0;
        QTest::newRow("onnx-qdq 4-bit group") << onnx << int(ExportFormat::OnnxQdq) << "q.onnx" << 4 << 8;
    }
    void oneTensorAtATime()
    {
        QFETCH(QString, model);
        QFETCH(int, format);
        QFETCH(QString, out);
        QFETCH(int, bits);
        QFETCH(int, group);
        Model m;
        if (model.isEmpty()) {
            m = makeDemoModel();
        } else {
            auto opened = openModel(model.toStdString());
            QVERIFY2(opened, opened ? "" : opened.error().oneLine().c_str());
            m = std::move(*opened);
        }
        Session s;
        s.defaultSpec.scheme = Scheme::TorchSymmetric;
        s.defaultSpec.bits = bits;
        s.defaultSpec.granularity = group > 0 ? Granularity::PerGroup : Granularity::PerChannel;
        s.defaultSpec.groupSize = group;
        const ExportPlan plan = planExport(m, s, {});
        QVERIFY2(plan.items.size() >= 2, "the test needs several tensors");

        const uint32_t t0 = uint32_t(std::time(nullptr));
        QTemporaryDir dir;
        ExportOptions o;
        o.format = ExportFormat(format);
        o.outPath = (fs::path(dir.path().toStdString()) / "streamed" / out.toStdString()).string();
        fs::create_directories(fs::path(o.outPath).parent_path());
        exportdetail::payloadCount(true);
        auto r = runExportPlan(m, plan, o, {});
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        const exportdetail::PayloadCount c = exportdetail::payloadCount(true);
        QCOMPARE(c.live, 0);
        QCOMPARE(c.peak, 1);  // never two tensors' integers at once
        QCOMPARE(c.made, int(plan.items.size()));  // each written once

        // The same export from entries that keep their integers: the same bytes.
        std::vector<ExportEntry> held;
        for (const ExportPlanItem& it : plan.items) {
            auto e = quantizeForExport(m, it.tensor, it.spec);
            QVERIFY(e);
            held.push_back(std::move(*e));
        }
        ExportOptions ho = o;
        ho.outPath = (fs::path(dir.path().toStdString()) / "held" / out.toStdString()).string();
        fs::create_directories(fs::path(ho.outPath).parent_path());
        ho.activations = exportActivationsFor(plan.activations.mode);
        auto hr = exportModel(m, held, ho, {});
        QVERIFY2(hr, hr ? "" : hr.error().oneLine().c_str());
        QCOMPARE(exportdetail::payloadCount(true).made, 0);
        const uint32_t t1 = uint32_t(std::time(nullptr));
        const auto a = contents(o.outPath), b = contents(ho.outPath);
        QCOMPARE(a.size(), b.size());
        for (const auto& [name, bytes] : a) {
            QVERIFY2(b.count(name), name.c_str());
            const bool same = o.format == ExportFormat::Hdf5 ? sameBarHdf5Times(bytes, b.at(name), t0, t1) : bytes == b.at(name);
            QVERIFY2(same, ("differs: " + name).c_str());
        }
    }
};

QTEST_GUILESS_MAIN(TestExportStream)
#include "tst_exportstream.moc"
