// ggml's reference quantizers, byte for byte against ggml_quantize_chunk's own output
// (tests/data/ggml, made by tests/scripts/make_ggml_fixtures.py from libggml-base.so), and
// the decoded values against ggml's own dequantize_row_*.
#include <QFile>
#include <QTest>

#include <cmath>
#include <cstring>

#include "halffloat.h"
#include "quant/ggmlquant.h"
#include "quant/quantize.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

struct Expected {
    uint32_t type;
    QByteArray bytes;
    std::vector<float> decoded;  // ggml's decoding of the first decoded.size() values
};

struct Fixture {
    int64_t rows = 0, rowLen = 0;
    std::vector<float> x;
    std::vector<Expected> expected;
};

template <class T>
T take(const QByteArray& b, qsizetype& pos)
{
    T v{};
    if (pos + qsizetype(sizeof(T)) > b.size())
        throw std::runtime_error("fixture truncated");
    std::memcpy(&v, b.constData() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
}

Fixture load(const QString& name)
{
    QFile f(test::dataPath("ggml/" + name + ".bin"));
    if (!f.open(QIODevice::ReadOnly))
        throw std::runtime_error("cannot open fixture " + name.toStdString());
    const QByteArray b = f.readAll();
    if (!b.startsWith("QLGGML01"))
        throw std::runtime_error("bad fixture magic");
    qsizetype pos = 8;
    Fixture fx;
    fx.rows = int64_t(take<uint64_t>(b, pos));
    fx.rowLen = int64_t(take<uint64_t>(b, pos));
    fx.x.resize(size_t(fx.rows * fx.rowLen));
    for (float& v : fx.x)
        v = take<float>(b, pos);
    const uint32_t n = take<uint32_t>(b, pos);
    for (uint32_t i = 0; i < n; ++i) {
        Expected e;
        e.type = take<uint32_t>(b, pos);
        const auto nb = qsizetype(take<uint64_t>(b, pos));
        if (pos + nb > b.size())
            throw std::runtime_error("fixture truncated");
        e.bytes = b.mid(pos, nb);
        pos += nb;
        e.decoded.resize(size_t(take<uint64_t>(b, pos)));
        for (float& v : e.decoded)
            v = take<float>(b, pos);
        fx.expected.push_back(std::move(e));
    }
    return fx;
}

// "" when equal, else where the first difference is (block and byte within it).
QString firstDifference(const QByteArray& want, const std::vector<std::byte>& got, int64_t blockBytes)
{
    if (qsizetype(got.size()) != want.size())
        return QString("size %1, ggml %2").arg(got.size()).arg(want.size());
    for (qsizetype i = 0; i < want.size(); ++i)
        if (uint8_t(want[i]) != uint8_t(got[size_t(i)]))
            return QString("byte %1 (block %2, offset %3): ours 0x%4, ggml 0x%5")
                .arg(i)
                .arg(i / blockBytes)
                .arg(i % blockBytes)
                .arg(uint8_t(got[size_t(i)]), 2, 16, QChar('0'))
                .arg(uint8_t(want[i]), 2, 16, QChar('0'));
    return {};
}

bool sameBits(float a, float b) { return std::memcmp(&a, &b, 4) == 0 || (a != a && b != b); }

const char* const kFixtures[] = {"stories_attn_q", "stories_ffn_up_256", "stories_ffn_down_256", "edges"};

}  // namespace

class TestGgmlQuant : public QObject {
    Q_OBJECT
private slots:
    void bytesEqualGgml_data()
    {
        QTest::addColumn<QString>("fixture");
        QTest::addColumn<uint32_t>("type");
        for (const char* name : kFixtures) {
            const Fixture fx = load(name);
            for (const Expected& e : fx.expected)
                QTest::addRow("%s/%s", name, ggmlTypeInfo(e.type)->name) << QString(name) << e.type;
        }
    }

    // The low-level entry the GGUF writer uses.
    void bytesEqualGgml()
    {
        QFETCH(QString, fixture);
        QFETCH(uint32_t, type);
        const Fixture fx = load(fixture);
        for (const Expected& e : fx.expected) {
            if (e.type != type)
                continue;
            const GgmlTypeInfo* info = ggmlTypeInfo(type);
            QVERIFY(info);
            std::vector<std::byte> out(size_t(e.bytes.size()));
            const Status s = ggmlQuantize(GgmlType(type), fx.x, fx.rowLen, out);
            QVERIFY2(s.ok(), s.ok() ? "" : s.error().message.c_str());
            const QString diff = firstDifference(e.bytes, out, info->blockBytes);
            QVERIFY2(diff.isEmpty(), qPrintable(diff));
        }
    }

    // The same through the window's quantize()/dequantize(): block bytes equal ggml's and
    // the dequantized values equal ggml's own decoding, bit for bit.
    void schemesThroughQuantize_data() { bytesEqualGgml_data(); }
    void schemesThroughQuantize()
    {
        QFETCH(QString, fixture);
        QFETCH(uint32_t, type);
        const Fixture fx = load(fixture);
        for (const Expected& e : fx.expected) {
            if (e.type != type)
                continue;
            QuantSpec spec;
            spec.scheme = schemeForGgmlType(GgmlType(type));
            auto q = quantize(fx.x, {fx.rows, fx.rowLen}, spec);
            QVERIFY2(q.ok(), q.ok() ? "" : q.error().message.c_str());
            std::vector<float> deq = dequantize(*q);
            QCOMPARE(int64_t(deq.size()), fx.rows * fx.rowLen);
            if (spec.scheme == Scheme::Q8_0) {
                // Q8_0 keeps its int8 path: codes and fp16 scales are ggml's block contents.
                for (size_t b = 0; b < q->params.scale.size(); ++b) {
                    uint16_t d;
                    std::memcpy(&d, e.bytes.constData() + b * 34, 2);
                    QVERIFY2(sameBits(q->params.scale[b], halfToFloat(d)), qPrintable(QString("block %1 scale").arg(b)));
                    for (int j = 0; j < 32; ++j)
                        QCOMPARE(int(q->q[b * 32 + size_t(j)]), int(int8_t(e.bytes[qsizetype(b * 34 + 2 + size_t(j))])));
                }
            } else {
                const QString diff = firstDifference(e.bytes, q->blocks, ggmlTypeInfo(type)->blockBytes);
                QVERIFY2(diff.isEmpty(), qPrintable(diff));
                QCOMPARE(q->bytesAfter(), int64_t(e.bytes.size()));
            }
            for (size_t i = 0; i < e.decoded.size(); ++i)
                QVERIFY2(sameBits(deq[i], e.decoded[i]),
                         qPrintable(QString("value %1: ours %2, ggml %3").arg(i).arg(deq[i]).arg(e.decoded[i])));
        }
    }

    // A tuned range is a clip before the blocks: values outside it quantize exactly as the
    // clipped values do, and the clip is counted.
    void manualClipBeforeBlocks()
    {
        const Fixture fx = load("edges");
        const int64_t n = fx.rowLen;
        std::vector<float> row(fx.x.begin() + n, fx.x.begin() + 2 * n);  // clipped to [-1.25, 0.75] from +-inf
        std::vector<float> wide = row;
        int64_t outside = 0;
        for (float& v : wide) {
            if (v == 0.75f) {
                v = std::numeric_limits<float>::infinity();
                ++outside;
            } else if (v == -1.25f) {
                v = -40.0f;
                ++outside;
            }
        }
        QVERIFY(outside > 4);
        for (const Expected& e : fx.expected) {
            QuantSpec spec;
            spec.scheme = schemeForGgmlType(GgmlType(e.type));
            if (spec.scheme == Scheme::Q8_0)
                continue;
            spec.calib = CalibMethod::Manual;
            spec.manualLo = -1.25f;
            spec.manualHi = 0.75f;
            auto q = quantize(wide, {1, n}, spec);
            QVERIFY(q.ok());
            const int64_t bb = ggmlTypeInfo(e.type)->blockBytes;
            const int64_t rowBytes = n / ggmlTypeInfo(e.type)->blockElems * bb;
            const QByteArray want = e.bytes.mid(qsizetype(rowBytes), qsizetype(rowBytes));
            const QString diff = firstDifference(want, q->blocks, bb);
            QVERIFY2(diff.isEmpty(), qPrintable(QString(ggmlTypeInfo(e.type)->name) + ": " + diff));
            QCOMPARE(q->clampedCount, outside);
            QCOMPARE(q->params.rangeHi, 0.75f);
        }
    }

    void rowsNotWholeBlocksAreRefused()
    {
        std::vector<float> x(172 * 2, 0.5f);
        for (Scheme s : {Scheme::Q4_K, Scheme::Q5_K, Scheme::Q6_K, Scheme::Q4_0, Scheme::Q5_1}) {
            QuantSpec spec;
            spec.scheme = s;
            auto q = quantize(x, {2, 172}, spec);
            QVERIFY(!q.ok());
            QVERIFY2(q.error().message.find("multiple of") != std::string::npos, q.error().message.c_str());
            QVERIFY2(q.error().message.find("172") != std::string::npos, q.error().message.c_str());
        }
        // The float types take any row.
        QuantSpec f16;
        f16.scheme = Scheme::F16;
        QVERIFY(quantize(x, {2, 172}, f16).ok());
        std::vector<std::byte> out(100);
        QVERIFY(!ggmlQuantize(GgmlType::Q4_K, x, 172, out).ok());
    }

    void schemeNamesRoundTrip()
    {
        for (Scheme s : allSchemes()) {
            auto p = parseScheme(schemeName(s));
            QVERIFY(p.ok());
            QCOMPARE(int(*p), int(s));
        }
        QCOMPARE(int(*parseScheme("Q4_K")), int(Scheme::Q4_K));
        QVERIFY(!parseScheme("q3_k").ok());
    }

    void gridCalibratorsAreRefused()
    {
        std::vector<float> x(256, 1.0f);
        QuantSpec spec;
        spec.scheme = Scheme::Q4_K;
        spec.calib = CalibMethod::Entropy;
        QVERIFY(!quantize(x, {1, 256}, spec).ok());
    }
};

QTEST_GUILESS_MAIN(TestGgmlQuant)
#include "tst_ggmlquant.moc"
