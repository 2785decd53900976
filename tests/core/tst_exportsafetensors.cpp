// safetensors exports, parsed back by hand exactly as the format is specified (8-byte
// little-endian header length, JSON header, contiguous little-endian data) and, when it
// can open them, with Quantlens's own safetensors reader.
#include <QTemporaryDir>
#include <QTest>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "halffloat.h"
#include "io/demomodel.h"
#include "io/exporter.h"
#include "io/safetensors.h"
#include "io/safetensorswriter.h"
#include "layers.h"
#include "testsupport.h"

using namespace quantlens;
using ojson = nlohmann::ordered_json;

namespace {

std::string slurp(const std::string& p)
{
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct Parsed {
    ojson header;
    std::string data;  // the byte buffer after the header
    bool ok = false;
    std::string why;
};

// The format's own validation order: length, header bounds, JSON, offsets contiguous
// and ending exactly at the end of the file.
Parsed parse(const std::string& file)
{
    Parsed p;
    if (file.size() < 8) {
        p.why = "shorter than 8 bytes";
        return p;
    }
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i)
        n |= uint64_t(uint8_t(file[size_t(i)])) << (8 * i);
    if (n > file.size() - 8) {
        p.why = "header length beyond the file";
        return p;
    }
    if (n % 8 != 0) {
        p.why = "header not padded to 8 bytes";
        return p;
    }
    const std::string json = file.substr(8, n);
    const size_t end = json.find_last_not_of(' ');
    if (end == std::string::npos || json[end] != '}') {
        p.why = "header padding is not spaces after the JSON";
        return p;
    }
    p.header = ojson::parse(json, nullptr, false);
    if (p.header.is_discarded() || !p.header.is_object()) {
        p.why = "header is not a JSON object";
        return p;
    }
    p.data = file.substr(8 + n);
    int64_t at = 0;
    for (const auto& [k, v] : p.header.items()) {
        if (k == "__metadata__")
            continue;
        const int64_t b = v["data_offsets"][0].get<int64_t>(), e = v["data_offsets"][1].get<int64_t>();
        if (b != at || e < b) {
            p.why = "offsets of " + k + " are not contiguous";
            return p;
        }
        at = e;
    }
    if (at != int64_t(p.data.size())) {
        p.why = "data does not end at the last offset";
        return p;
    }
    p.ok = true;
    return p;
}

std::string bytesOfTensor(const Parsed& p, const std::string& name)
{
    const auto& v = p.header[name];
    const int64_t b = v["data_offsets"][0].get<int64_t>(), e = v["data_offsets"][1].get<int64_t>();
    return p.data.substr(size_t(b), size_t(e - b));
}

template <class T>
std::string raw(const std::vector<T>& v)
{
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string raw(std::span<const std::byte> s) { return std::string(reinterpret_cast<const char*>(s.data()), s.size()); }

// The demo plus tensors whose bytes cannot be copied as they are.
Model testModel()
{
    Model m = makeDemoModel(1, 64);
    m.files = {"(test model)"};
    // F16 stays F16.
    std::vector<std::byte> h(6 * 2);
    for (int i = 0; i < 6; ++i) {
        const uint16_t v = floatToHalf(0.25f * float(i) - 0.5f);
        std::memcpy(h.data() + 2 * i, &v, 2);
    }
    m.tensors.push_back(makeOwnedTensor("extra.half", DType::F16, {2, 3}, h));
    // A transposed (strided) F32 view: written contiguous in the view's order.
    Tensor tr = makeFloatTensor("extra.transposed", {3, 2}, {1, 2, 3, 4, 5, 6});
    tr.strides = {1, 3};
    m.tensors.push_back(tr);
    // Big-endian I32: written little-endian.
    std::vector<std::byte> be(3 * 4);
    const int32_t vals[3] = {1, -2, 0x01020304};
    for (int i = 0; i < 3; ++i)
        for (int b = 0; b < 4; ++b)
            be[size_t(4 * i + b)] = std::byte((uint32_t(vals[i]) >> (8 * (3 - b))) & 0xff);
    Tensor bt = makeOwnedTensor("extra.bigendian", DType::I32, {3}, be);
    bt.bigEndian = true;
    m.tensors.push_back(bt);
    // A GGUF Q8_0 block: decoded to F32.
    std::vector<std::byte> blk(34);
    const uint16_t d = floatToHalf(0.5f);
    std::memcpy(blk.data(), &d, 2);
    for (int i = 0; i < 32; ++i)
        blk[size_t(2 + i)] = std::byte(uint8_t(int8_t(i - 16)));
    m.tensors.push_back(makeOwnedTensor("extra.q8_0", DType::Q8_0, {32}, blk));
    // Optimizer state is not part of the exported model.
    Tensor opt = makeFloatTensor("optimizer.m", {2}, {1, 2});
    opt.group = "optimizer";
    m.tensors.push_back(opt);
    return m;
}

std::vector<ExportEntry> quantizeLinear(const Model& m, const QuantSpec& spec)
{
    std::vector<ExportEntry> out;
    for (const LinearLayer& l : findLinearLayers(m)) {
        auto e = quantizeForExport(m, l.weight->name, spec);
        if (!e)
            qFatal("quantizeForExport: %s", e.error().oneLine().c_str());
        out.push_back(std::move(*e));
    }
    return out;
}

// What every non-quantized tensor must look like in the file.
void checkCopied(const Parsed& p, const Tensor& t)
{
    const std::string n = t.name;
    QVERIFY2(p.header.contains(n), n.c_str());
    const std::string got = bytesOfTensor(p, n);
    if (n == "extra.q8_0") {
        QCOMPARE(p.header[n]["dtype"].get<std::string>(), std::string("F32"));
        std::vector<float> want(32);
        for (int i = 0; i < 32; ++i)
            want[size_t(i)] = 0.5f * float(i - 16);
        QCOMPARE(got, raw(want));
    } else if (n == "extra.transposed") {
        QCOMPARE(p.header[n]["dtype"].get<std::string>(), std::string("F32"));
        QCOMPARE(got, raw(std::vector<float>{1, 4, 2, 5, 3, 6}));
    } else if (n == "extra.bigendian") {
        QCOMPARE(p.header[n]["dtype"].get<std::string>(), std::string("I32"));
        QCOMPARE(got, raw(std::vector<int32_t>{1, -2, 0x01020304}));
    } else {
        QCOMPARE(p.header[n]["dtype"].get<std::string>(), std::string(dtypeName(t.dtype)));
        QCOMPARE(got, raw(t.data));
    }
    QCOMPARE(p.header[n]["shape"].get<std::vector<int64_t>>(), t.shape);
}

}  // namespace

class TestExportSafetensors : public QObject {
    Q_OBJECT
private slots:
    void int8Layout_data()
    {
        QTest::addColumn<QString>("scheme");
        QTest::addColumn<QString>("granularity");
        QTest::addColumn<bool>("isUnsigned");
        QTest::newRow("seed, per tensor") << QStringLiteral("seed") << QStringLiteral("tensor") << false;
        QTest::newRow("torch-symmetric, per channel") << QStringLiteral("torch-symmetric") << QStringLiteral("channel") << false;
        QTest::newRow("torch-affine uint8, per channel") << QStringLiteral("torch-affine") << QStringLiteral("channel") << true;
        QTest::newRow("q8_0 blocks of 32") << QStringLiteral("q8_0") << QStringLiteral("tensor") << false;
    }
    void int8Layout()
    {
        QFETCH(QString, scheme);
        QFETCH(QString, granularity);
        QFETCH(bool, isUnsigned);
        QuantSpec spec;
        spec.scheme = *parseScheme(scheme.toStdString());
        QVERIFY(parseGranularity(granularity.toStdString(), spec).ok());
        spec.isUnsigned = isUnsigned;
        const Model m = testModel();
        const auto entries = quantizeLinear(m, spec);
        QCOMPARE(entries.size(), size_t(6));

        QTemporaryDir tmp;
        ExportOptions o;
        o.format = ExportFormat::SafetensorsInt8;
        o.outPath = tmp.filePath(QStringLiteral("int8.safetensors")).toStdString();
        auto r = exportModel(m, entries, o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        const std::string file = slurp(o.outPath);
        QCOMPARE(r->bytesWritten, int64_t(file.size()));
        const Parsed p = parse(file);
        QVERIFY2(p.ok, p.why.c_str());

        // __metadata__ holds strings only.
        const ojson& md = p.header["__metadata__"];
        for (const auto& [k, v] : md.items())
            QVERIFY2(v.is_string(), k.c_str());
        QCOMPARE(md["format"].get<std::string>(), std::string("pt"));
        QCOMPARE(md["quantlens_format"].get<std::string>(), std::string("int8"));
        QCOMPARE(md["scheme"].get<std::string>(), scheme.toStdString());
        QCOMPARE(md["source"].get<std::string>(), std::string("(test model)"));
        QCOMPARE(md["source_format"].get<std::string>(), std::string("demo"));
        const ojson perTensor = ojson::parse(md["quantlens_tensors"].get<std::string>());
        QCOMPARE(perTensor.size(), entries.size());

        // Header order: the model's order, each quantized tensor followed by its scale and zero point.
        std::vector<std::string> want;
        std::set<std::string> quantized;
        for (const ExportEntry& e : entries)
            quantized.insert(e.quantized.name);
        for (const Tensor& t : m.tensors) {
            if (!t.group.empty())
                continue;
            want.push_back(t.name);
            if (quantized.count(t.name)) {
                want.push_back(t.name + "_scale");
                want.push_back(t.name + "_zero_point");
            }
        }
        std::vector<std::string> got;
        for (const auto& [k, v] : p.header.items())
            if (k != "__metadata__")
                got.push_back(k);
        QCOMPARE(got, want);

        for (const ExportEntry& e : entries) {
            const QuantizedTensor& qt = e.quantized;
            const ojson& q = p.header[qt.name];
            QCOMPARE(q["dtype"].get<std::string>(), std::string(isUnsigned ? "U8" : "I8"));
            QCOMPARE(q["shape"].get<std::vector<int64_t>>(), qt.shape);
            QCOMPARE(bytesOfTensor(p, qt.name), raw(qt.q));
            const ojson& s = p.header[qt.name + "_scale"];
            const ojson& z = p.header[qt.name + "_zero_point"];
            QCOMPARE(s["dtype"].get<std::string>(), std::string("F32"));
            QCOMPARE(z["dtype"].get<std::string>(), std::string("I32"));
            QCOMPARE(s["shape"].get<std::vector<int64_t>>(), *scaleShape(qt));
            QCOMPARE(z["shape"].get<std::vector<int64_t>>(), *scaleShape(qt));
            QCOMPARE(bytesOfTensor(p, qt.name + "_scale"), raw(qt.params.scale));
            QCOMPARE(bytesOfTensor(p, qt.name + "_zero_point"), raw(qt.params.zeroPoint));
            QCOMPARE(perTensor[qt.name]["granularity"].get<std::string>(), storedGranularity(qt));
            QCOMPARE(perTensor[qt.name]["qmin"].get<int>(), qt.params.qmin);
        }
        for (const Tensor& t : m.tensors)
            if (t.group.empty() && !quantized.count(t.name))
                checkCopied(p, t);
        QVERIFY(!p.header.contains("optimizer.m"));

        // And through Quantlens's own reader, when it is there.
        auto back = readSafetensors(o.outPath);
        if (!back.ok()) {
            qInfo("readSafetensors cannot open the export (%s); checked by hand only", back.error().oneLine().c_str());
            return;
        }
        for (const ExportEntry& e : entries) {
            const QuantizedTensor& qt = e.quantized;
            const Tensor* q = back->find(qt.name);
            const Tensor* s = back->find(qt.name + "_scale");
            const Tensor* z = back->find(qt.name + "_zero_point");
            QVERIFY(q && s && z);
            QCOMPARE(q->dtype, isUnsigned ? DType::U8 : DType::I8);
            QCOMPARE(raw(q->data), raw(qt.q));
            QVERIFY(*s->toFloat() == qt.params.scale);
            QCOMPARE(raw(z->data), raw(qt.params.zeroPoint));
        }
    }

    void fakeQuantIsDequantizedFloat32()
    {
        const Model m = testModel();
        QuantSpec spec;
        spec.scheme = Scheme::TorchSymmetric;
        spec.granularity = Granularity::PerChannel;
        const auto entries = quantizeLinear(m, spec);
        QTemporaryDir tmp;
        ExportOptions o;
        o.format = ExportFormat::SafetensorsFakeQuant;
        o.outPath = tmp.filePath(QStringLiteral("fake.safetensors")).toStdString();
        auto r = exportModel(m, entries, o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        const Parsed p = parse(slurp(o.outPath));
        QVERIFY2(p.ok, p.why.c_str());
        QCOMPARE(p.header["__metadata__"]["quantlens_format"].get<std::string>(), std::string("fake-quant"));
        std::set<std::string> quantized;
        for (const ExportEntry& e : entries) {
            const QuantizedTensor& qt = e.quantized;
            quantized.insert(qt.name);
            QCOMPARE(p.header[qt.name]["dtype"].get<std::string>(), std::string("F32"));
            QCOMPARE(p.header[qt.name]["shape"].get<std::vector<int64_t>>(), qt.shape);
            QVERIFY(!p.header.contains(qt.name + "_scale"));
            const std::string got = bytesOfTensor(p, qt.name);
            QCOMPARE(got, raw(dequantize(qt)));
            // Dequantized values differ from the originals by at most half a step inside the range.
            std::vector<float> deq(qt.q.size());
            std::memcpy(deq.data(), got.data(), got.size());
            const std::vector<float> x = *m.find(qt.name)->toFloat();
            QVERIFY(deq != x);
            QVERIFY(e.metrics.maxAbsError > 0.0);
        }
        for (const Tensor& t : m.tensors)
            if (t.group.empty() && !quantized.count(t.name))
                checkCopied(p, t);
    }

    void nameCollisionIsAnError()
    {
        Model m;
        m.format = "safetensors";
        m.tensors.push_back(makeFloatTensor("a.weight", {2, 2}, {1, 2, 3, 4}));
        m.tensors.push_back(makeFloatTensor("a.weight_scale", {1}, {1}));
        auto e = quantizeForExport(m, "a.weight", QuantSpec{});
        QVERIFY(e.ok());
        QTemporaryDir tmp;
        ExportOptions o;
        o.format = ExportFormat::SafetensorsInt8;
        o.outPath = tmp.filePath(QStringLiteral("c.safetensors")).toStdString();
        auto r = exportModel(m, {*e}, o);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, std::string("duplicate-name"));
        QCOMPARE(QDir(tmp.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot).size(), 0);
    }

    void headerPadding_data()
    {
        QTest::addColumn<int>("nameLength");
        for (int n = 1; n <= 9; ++n)
            QTest::addRow("name of %d bytes", n) << n;
    }
    void headerPadding()
    {
        QFETCH(int, nameLength);
        SafetensorsItem it{std::string(size_t(nameLength), 'x'), DType::I8, {3}, {}};
        auto h = safetensorsHeader({it}, {});
        QVERIFY(h.ok());
        QCOMPARE(h->size() % 8, size_t(0));
        uint64_t n = 0;
        std::memcpy(&n, h->data(), 8);
        QCOMPARE(n, uint64_t(h->size() - 8));
        const std::string json(reinterpret_cast<const char*>(h->data()) + 8, n);
        QVERIFY(ojson::parse(json)[it.name]["data_offsets"] == ojson::parse("[0, 3]"));
    }
};

QTEST_GUILESS_MAIN(TestExportSafetensors)
#include "tst_exportsafetensors.moc"
