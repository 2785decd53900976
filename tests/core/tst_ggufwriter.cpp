// The GGUF writer: round trips on stories260K (metadata preserved, untouched tensors
// byte-identical, quantized tensors equal to ggml's bytes and decoding from the fixtures),
// llama-quantize's fallbacks, tuned clips, bad input, and nothing left behind on failure
// or cancel.
#include <QFile>
#include <QTemporaryDir>
#include <QTest>

#include <algorithm>
#include <cstring>
#include <functional>
#include <filesystem>

#include "io/ggufspecmap.h"
#include "io/ggufwriter.h"
#include "quant/calibrate.h"
#include "model.h"
#include "quant/ggmlquant.h"
#include "testsupport.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {

std::string stories() { return test::sharedModel("stories260K.gguf").toStdString(); }

QuantSpec scheme(Scheme s)
{
    QuantSpec q;
    q.scheme = s;
    return q;
}

// The ggml bytes and decoding of the fixture's first type `type` (see tst_ggmlquant).
struct FixtureEntry {
    std::vector<float> x;
    QByteArray bytes;
    std::vector<float> decoded;
};

FixtureEntry fixture(const QString& name, uint32_t type)
{
    QFile f(test::dataPath("ggml/" + name + ".bin"));
    if (!f.open(QIODevice::ReadOnly))
        throw std::runtime_error("no fixture");
    const QByteArray b = f.readAll();
    qsizetype pos = 8;
    auto take = [&](void* p, qsizetype n) {
        if (pos + n > b.size())
            throw std::runtime_error("fixture truncated");
        std::memcpy(p, b.constData() + pos, size_t(n));
        pos += n;
    };
    uint64_t rows, rowLen;
    take(&rows, 8);
    take(&rowLen, 8);
    FixtureEntry e;
    e.x.resize(size_t(rows * rowLen));
    take(e.x.data(), qsizetype(e.x.size() * 4));
    uint32_t n;
    take(&n, 4);
    for (uint32_t i = 0; i < n; ++i) {
        uint32_t t;
        uint64_t nb, m;
        take(&t, 4);
        take(&nb, 8);
        QByteArray bytes = b.mid(pos, qsizetype(nb));
        pos += qsizetype(nb);
        take(&m, 8);
        std::vector<float> dec(m);
        take(dec.data(), qsizetype(m * 4));
        if (t == type) {
            e.bytes = bytes;
            e.decoded = std::move(dec);
            return e;
        }
    }
    throw std::runtime_error("type not in fixture");
}

const Tensor& tensorOf(const Model& m, const std::string& name)
{
    const Tensor* t = m.find(name);
    if (!t)
        throw std::runtime_error("no tensor " + name);
    return *t;
}

std::string metaOf(const Model& m, const std::string& key)
{
    for (const auto& [k, v] : m.metadata)
        if (k == key)
            return v;
    return "<absent>";
}

bool onlyFile(const QTemporaryDir& dir, const std::string& name)
{
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir.path().toStdString())) {
        ++n;
        if (e.path().filename() != name)
            return false;
    }
    return n == 1;
}

bool emptyDir(const QTemporaryDir& dir) { return fs::is_empty(dir.path().toStdString()); }

}  // namespace

class TestGgufWriter : public QObject {
    Q_OBJECT
private slots:
    void roundTripStories()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir tmp;
        const std::string out = tmp.filePath("s.gguf").toStdString();
        std::vector<GgufDecision> d{{"blk.0.attn_q.weight", scheme(Scheme::Q4_0)},
                                    {"blk.0.ffn_up.weight", scheme(Scheme::Q8_0)},
                                    {"blk.1.attn_k.weight", scheme(Scheme::BF16)}};
        GgufWriteOptions o;
        o.outPath = out;
        auto r = writeGgufExport(stories(), d, o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        QVERIFY(onlyFile(tmp, "s.gguf"));
        QCOMPARE(r->bytesWritten, int64_t(fs::file_size(out)));

        auto src = openModel(stories());
        auto dst = openModel(out);
        QVERIFY(src.ok() && dst.ok());
        // Every key/value as it was (the tokenizer's included), file_type now Q4_0's.
        QCOMPARE(dst->metadata.size(), src->metadata.size() + (metaOf(*src, "general.file_type") == "<absent>" ? 1 : 0)
                                           + (metaOf(*src, "general.quantization_version") == "<absent>" ? 1 : 0));
        for (const auto& [k, v] : src->metadata)
            if (k != "general.file_type" && k != "general.quantization_version")
                QCOMPARE(metaOf(*dst, k), v);
        // ffn_up's 11008 values outnumber attn_q's 4096: "mostly Q8_0" (llama_ftype 7).
        QCOMPARE(metaOf(*dst, "general.file_type"), std::string("7"));
        QCOMPARE(metaOf(*dst, "general.quantization_version"), std::string("2"));
        QCOMPARE(metaOf(*dst, "gguf.alignment"), metaOf(*src, "gguf.alignment"));

        QCOMPARE(dst->tensors.size(), src->tensors.size());
        for (size_t i = 0; i < src->tensors.size(); ++i) {
            const Tensor& a = src->tensors[i];
            const Tensor& b = dst->tensors[i];
            QCOMPARE(b.name, a.name);
            QCOMPARE(b.shape, a.shape);
            if (a.name == "blk.0.attn_q.weight" || a.name == "blk.0.ffn_up.weight" || a.name == "blk.1.attn_k.weight")
                continue;
            QCOMPARE(int(b.dtype), int(a.dtype));
            QVERIFY2(b.data.size() == a.data.size() && std::memcmp(b.data.data(), a.data.data(), a.data.size()) == 0,
                     a.name.c_str());
        }
        // The quantized tensor holds ggml's bytes and decodes to ggml's values (the fixture
        // covers its first 32 rows).
        const Tensor& q = tensorOf(*dst, "blk.0.attn_q.weight");
        QCOMPARE(int(q.dtype), int(DType::Q4_0));
        const FixtureEntry fx = fixture("stories_attn_q", uint32_t(GgmlType::Q4_0));
        QVERIFY(q.data.size() >= size_t(fx.bytes.size()));
        QVERIFY(std::memcmp(q.data.data(), fx.bytes.constData(), size_t(fx.bytes.size())) == 0);
        auto deq = q.toFloat();
        QVERIFY(deq.ok());
        for (size_t i = 0; i < fx.decoded.size(); ++i)
            QVERIFY2(std::memcmp(&(*deq)[i], &fx.decoded[i], 4) == 0, qPrintable(QString("value %1").arg(i)));
        QCOMPARE(int(tensorOf(*dst, "blk.1.attn_k.weight").dtype), int(DType::BF16));

        // The report names each tensor's type and bytes.
        QCOMPARE(r->tensors.size(), src->tensors.size());
        for (const GgufTensorResult& t : r->tensors) {
            QCOMPARE(t.bytesAfter, int64_t(tensorOf(*dst, t.name).data.size()));
            if (t.name == "blk.0.attn_q.weight") {
                QCOMPARE(t.requested, std::string("q4_0"));
                QCOMPARE(t.written, std::string("q4_0"));
                QCOMPARE(t.bytesAfter, int64_t(64 * 64 / 32 * 18));
            }
        }
    }

    // llama-quantize's fallbacks: rows of 64 take Q4_K -> Q5_0, rows of 172 -> F16; 1-D stays.
    void fallbacksLikeLlamaQuantize()
    {
        QCOMPARE(int(ggmlFallbackType(GgmlType::Q4_K, 64)), int(GgmlType::Q5_0));
        QCOMPARE(int(ggmlFallbackType(GgmlType::Q5_K, 64)), int(GgmlType::Q5_1));
        QCOMPARE(int(ggmlFallbackType(GgmlType::Q6_K, 64)), int(GgmlType::Q8_0));
        QCOMPARE(int(ggmlFallbackType(GgmlType::Q4_K, 172)), int(GgmlType::F16));
        QCOMPARE(int(ggmlFallbackType(GgmlType::Q8_0, 172)), int(GgmlType::F16));
        QCOMPARE(int(ggmlFallbackType(GgmlType::Q4_K, 512)), int(GgmlType::Q4_K));
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir tmp;
        GgufWriteOptions o;
        o.outPath = tmp.filePath("k.gguf").toStdString();
        auto r = writeGgufExport(stories(), {{"blk.0.attn_q.weight", scheme(Scheme::Q4_K)},
                                             {"blk.0.ffn_down.weight", scheme(Scheme::Q6_K)},
                                             {"blk.0.attn_norm.weight", scheme(Scheme::Q8_0)}}, o);
        QVERIFY(r.ok());
        for (const GgufTensorResult& t : r->tensors) {
            if (t.name == "blk.0.attn_q.weight") {
                QCOMPARE(t.written, std::string("q5_0"));
                QVERIFY(t.note.find("falls back") != std::string::npos);
            } else if (t.name == "blk.0.ffn_down.weight") {
                QCOMPARE(t.written, std::string("f16"));
            } else if (t.name == "blk.0.attn_norm.weight") {
                QCOMPARE(t.written, std::string("f32"));
                QVERIFY(t.note.find("1-D") != std::string::npos);
            }
        }
        auto m = openModel(o.outPath);
        QVERIFY(m.ok());
        QCOMPARE(int(tensorOf(*m, "blk.0.attn_q.weight").dtype), int(DType::Q5_0));
        QCOMPARE(int(tensorOf(*m, "blk.0.ffn_down.weight").dtype), int(DType::F16));
    }

    // A tuned range clips before the blocks, and the report says so.
    void manualRangeClips()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir tmp;
        QuantSpec s = scheme(Scheme::Q8_0);
        s.calib = CalibMethod::Manual;
        s.manualLo = -0.05f;
        s.manualHi = 0.05f;
        GgufWriteOptions o;
        o.outPath = tmp.filePath("c.gguf").toStdString();
        auto r = writeGgufExport(stories(), {{"blk.0.attn_q.weight", s}}, o);
        QVERIFY(r.ok());
        auto src = openModel(stories());
        auto dst = openModel(o.outPath);
        std::vector<float> x = *tensorOf(*src, "blk.0.attn_q.weight").toFloat();
        int64_t outside = 0;
        for (float& v : x) {
            outside += (v < -0.05f || v > 0.05f) ? 1 : 0;
            v = std::clamp(v, -0.05f, 0.05f);
        }
        QVERIFY(outside > 0);
        std::vector<std::byte> want(size_t(x.size() / 32 * 34));
        QVERIFY(ggmlQuantize(GgmlType::Q8_0, x, 64, want).ok());
        const Tensor& q = tensorOf(*dst, "blk.0.attn_q.weight");
        QVERIFY(q.data.size() == want.size() && std::memcmp(q.data.data(), want.data(), want.size()) == 0);
        for (const GgufTensorResult& t : r->tensors)
            if (t.name == "blk.0.attn_q.weight") {
                QVERIFY(t.clipped);
                QCOMPARE(t.clippedValues, outside);
            }
    }

    // Specs that are not ggml types map to the nearest one; clips as the spec's calibrator
    // says (symmetric at +-max|range|, per row for per-channel) before ggml's blocks.
    void mapsSpecsThatAreNotGgml()
    {
        auto typeOf = [](Scheme s, int bits, Granularity g, int64_t group = 0) {
            QuantSpec q = scheme(s);
            q.bits = bits;
            q.granularity = g;
            q.groupSize = group;
            auto m = ggmlTypeForSpec(q);
            return m ? std::string(ggmlTypeInfo(m->type)->name) : "refused: " + m.error().message;
        };
        QCOMPARE(typeOf(Scheme::TorchSymmetric, 8, Granularity::PerChannel), std::string("q8_0"));
        QCOMPARE(typeOf(Scheme::TorchAffine, 8, Granularity::PerTensor), std::string("q8_0"));
        QCOMPARE(typeOf(Scheme::NarrowSymmetric, 7, Granularity::PerChannel), std::string("q8_0"));
        QCOMPARE(typeOf(Scheme::TorchSymmetric, 6, Granularity::PerChannel), std::string("q6_K"));
        QCOMPARE(typeOf(Scheme::TorchSymmetric, 5, Granularity::PerGroup, 32), std::string("q5_0"));
        QCOMPARE(typeOf(Scheme::TorchAffine, 5, Granularity::PerGroup, 32), std::string("q5_1"));
        QCOMPARE(typeOf(Scheme::TorchAffine, 5, Granularity::PerGroup, 256), std::string("q5_K"));
        QCOMPARE(typeOf(Scheme::TorchSymmetric, 4, Granularity::PerGroup, 32), std::string("q4_0"));
        QCOMPARE(typeOf(Scheme::TorchAffine, 4, Granularity::PerGroup, 32), std::string("q4_1"));
        QCOMPARE(typeOf(Scheme::TorchAffine, 4, Granularity::PerGroup, 256), std::string("q4_K"));
        QCOMPARE(typeOf(Scheme::TorchSymmetric, 4, Granularity::PerGroup, 256), std::string("q4_0"));
        QVERIFY(typeOf(Scheme::TorchSymmetric, 2, Granularity::PerChannel).rfind("refused", 0) == 0);
        QVERIFY(!ggmlTypeForSpec(scheme(Scheme::Q4_K))->mapped);

        QL_REQUIRE_SHARED_MODELS();
        QuantSpec int8 = scheme(Scheme::TorchSymmetric);  // a tuned int8 per-channel range
        int8.granularity = Granularity::PerChannel;
        int8.calib = CalibMethod::Manual;
        int8.manualLo = -0.05f;
        int8.manualHi = 0.03f;
        QuantSpec affine4 = scheme(Scheme::TorchAffine);
        affine4.bits = 4;
        affine4.granularity = Granularity::PerGroup;
        affine4.groupSize = 32;
        QuantSpec pct = affine4;  // a percentile per output channel: each row clipped on its own
        pct.granularity = Granularity::PerChannel;
        pct.calib = CalibMethod::Percentile;
        pct.percentile = 99.0;
        QTemporaryDir tmp;
        GgufWriteOptions o;
        o.outPath = tmp.filePath("m.gguf").toStdString();
        auto r = writeGgufExport(stories(), {{"blk.0.attn_q.weight", int8}, {"blk.0.attn_k.weight", affine4},
                                             {"blk.0.attn_output.weight", pct}}, o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        auto src = openModel(stories());
        auto dst = openModel(o.outPath);
        QVERIFY(src.ok() && dst.ok());
        auto expect = [&](const std::string& name, GgmlType type, const std::function<void(std::vector<float>&)>& clip) {
            std::vector<float> x = *tensorOf(*src, name).toFloat();
            clip(x);
            std::vector<std::byte> want(size_t(x.size() / 32 * ggmlTypeInfo(type)->blockBytes));
            QVERIFY(ggmlQuantize(type, x, 64, want).ok());
            const Tensor& q = tensorOf(*dst, name);
            QVERIFY2(q.data.size() == want.size() && std::memcmp(q.data.data(), want.data(), want.size()) == 0, name.c_str());
            for (const GgufTensorResult& t : r->tensors)
                if (t.name == name) {
                    QVERIFY(t.mapped);
                    QCOMPARE(t.written, std::string(ggmlTypeInfo(type)->name));
                    QVERIFY2(t.why.find(std::string("-> ") + ggmlTypeInfo(type)->name) != std::string::npos, t.why.c_str());
                }
        };
        expect("blk.0.attn_q.weight", GgmlType::Q8_0, [](std::vector<float>& x) {
            for (float& v : x)
                v = std::clamp(v, -0.05f, 0.05f);  // symmetric: +-max(|lo|, |hi|)
        });
        expect("blk.0.attn_k.weight", GgmlType::Q4_1, [](std::vector<float>&) {});
        expect("blk.0.attn_output.weight", GgmlType::Q4_1, [&](std::vector<float>& x) {
            for (size_t row = 0; row < x.size(); row += 64) {
                std::span<float> s(x.data() + row, 64);
                const Range rg = *calibrateRange(s, pct);
                for (float& v : s)
                    v = std::clamp(v, rg.lo, rg.hi);
            }
        });
    }

    void badInputLeavesNothing()
    {
        QTemporaryDir tmp;
        GgufWriteOptions o;
        o.outPath = tmp.filePath("x.gguf").toStdString();
        // Not a GGUF source: refused, naming the pair.
        auto r = writeGgufExport(test::dataPath("ggml/edges.bin").toStdString(), {}, o);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, std::string("bad-pair"));
        QVERIFY(emptyDir(tmp));
        QL_REQUIRE_SHARED_MODELS();
        r = writeGgufExport(stories(), {{"no.such.tensor", scheme(Scheme::Q8_0)}}, o);
        QVERIFY(!r.ok());
        QVERIFY(emptyDir(tmp));
        // 3 bits have no ggml type Quantlens writes: refused with the reason, nothing written.
        QuantSpec three = scheme(Scheme::TorchSymmetric);
        three.bits = 3;
        r = writeGgufExport(stories(), {{"blk.0.attn_q.weight", three}}, o);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, std::string("no-ggml-type"));
        QCOMPARE(r.error().tensor, std::string("blk.0.attn_q.weight"));
        QVERIFY(r.error().message.find("3-bit") != std::string::npos);
        QVERIFY(emptyDir(tmp));
        QuantSpec entropy = scheme(Scheme::Q4_0);
        entropy.calib = CalibMethod::Entropy;
        r = writeGgufExport(stories(), {{"blk.3.attn_q.weight", entropy}}, o);
        QVERIFY(!r.ok());
        QVERIFY(emptyDir(tmp));
        // Never over the source.
        GgufWriteOptions same;
        same.outPath = stories();
        r = writeGgufExport(stories(), {}, same);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, std::string("same-as-input"));
    }

    void cancelLeavesNothing()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir tmp;
        GgufWriteOptions o;
        o.outPath = tmp.filePath("x.gguf").toStdString();
        QFile old(QString::fromStdString(o.outPath));
        QVERIFY(old.open(QIODevice::WriteOnly));
        old.write("previous");
        old.close();
        int calls = 0;
        std::vector<double> seen;
        auto r = writeGgufExport(stories(), {{"blk.0.attn_q.weight", scheme(Scheme::Q4_1)}}, o,
                                 [&](double f, const std::string&) {
                                     seen.push_back(f);
                                     return ++calls < 10;
                                 });
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, std::string("cancelled"));
        QVERIFY(onlyFile(tmp, "x.gguf"));  // no temporary left, the old file untouched
        QCOMPARE(fs::file_size(o.outPath), uintmax_t(8));
        QVERIFY(std::is_sorted(seen.begin(), seen.end()));
    }

    // The source shrinks while it is exported (a training run rewriting it): float32
    // tensors are read with pread, so the next one read fails with the reason, and nothing
    // is left behind.
    void sourceShrinkingFailsCleanly()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir tmp;
        const std::string src = tmp.filePath("src.gguf").toStdString();
        fs::copy_file(stories(), src);
        const uintmax_t size = fs::file_size(src);
        GgufWriteOptions o;
        o.outPath = tmp.filePath("x.gguf").toStdString();
        const std::vector<GgufDecision> decisions = {{"blk.0.attn_q.weight", scheme(Scheme::Q8_0)},
                                                     {"blk.4.attn_q.weight", scheme(Scheme::Q8_0)}};
        bool shrunk = false;
        auto r = writeGgufExport(src, decisions, o, [&](double, const std::string& what) {
            if (what.find("quantizing blk.0.attn_q.weight") != std::string::npos) {
                fs::resize_file(src, size / 2);
                shrunk = true;
            }
            return true;
        });
        QVERIFY(shrunk);
        QVERIFY(!r.ok());
        QVERIFY2(r.error().message.find("changed") != std::string::npos, r.error().oneLine().c_str());
        QVERIFY(onlyFile(tmp, "src.gguf"));
    }
};

QTEST_GUILESS_MAIN(TestGgufWriter)
#include "tst_ggufwriter.moc"
