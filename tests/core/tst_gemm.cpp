// Every int8 GEMM variant this machine can run must equal the plain-loop specification
// (kernels/gemm_ref.cpp) exactly: int32 accumulators bit for bit, and the float epilogue
// bit for bit too, since both compute float(raw) * float(sa*sw) + bias with no FMA.
#include <QTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/gemmtune.h"

using namespace quantlens::kernels;

namespace {

enum class Values { RandomFull, RandomReduceRange, Extremes, AllMaxProducts };

struct Shape {
    int64_t m, n, k;
};

std::vector<Shape> shapes()
{
    std::vector<Shape> s;
    for (int64_t m = 1; m <= 17; m += 4)
        for (int64_t n = 1; n <= 17; ++n)
            for (int64_t k = 1; k <= 17; ++k)
                s.push_back({m, n, k});
    for (int64_t m : {1, 2, 6, 7, 12, 13, 17, 31, 32, 33})
        for (int64_t n : {1, 15, 16, 17, 47, 48, 63, 64, 65, 127, 128, 129})
            for (int64_t k : {1, 3, 4, 5, 63, 64, 65, 255, 256, 257})
                s.push_back({m, n, k});
    // More rows than a row chunk (96): full chunks, a remainder below and above the 16 rows
    // from which the epilogue is deferred, and a pending epilogue carried across chunks.
    for (int64_t m : {97, 100, 130, 200})
        for (int64_t n : {65, 129})
            for (int64_t k : {96, 257})
                s.push_back({m, n, k});
    return s;
}

struct Operands {
    Shape sh;
    int64_t lda, ldw;
    std::vector<uint8_t> a;  // [m][lda], lda >= k4; padding bytes are garbage on purpose
    std::vector<int8_t> w;   // [n][ldw]
};

Operands makeOperands(const Shape& sh, Values v, std::mt19937& rng)
{
    Operands o;
    o.sh = sh;
    o.lda = paddedK(sh.k) + 3;
    o.ldw = sh.k + 5;
    o.a.resize(size_t(sh.m * o.lda));
    o.w.resize(size_t(sh.n * o.ldw));
    std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127), coin(0, 1), r7(0, 128);
    for (auto& x : o.a)
        x = uint8_t(u8(rng));  // includes the padding: the kernels must ignore it
    for (auto& x : o.w)
        x = int8_t(s8(rng));
    for (int64_t i = 0; i < sh.m; ++i)
        for (int64_t p = 0; p < sh.k; ++p) {
            uint8_t& x = o.a[size_t(i * o.lda + p)];
            switch (v) {
            case Values::RandomFull: break;
            case Values::RandomReduceRange: x = uint8_t(r7(rng)); break;  // 0..128: the aMax128 contract
            case Values::Extremes: x = coin(rng) ? 255 : (coin(rng) ? 0 : 1); break;
            case Values::AllMaxProducts: x = 255; break;
            }
        }
    if (v == Values::Extremes || v == Values::AllMaxProducts)
        for (int64_t j = 0; j < sh.n; ++j)
            for (int64_t p = 0; p < sh.k; ++p)
                o.w[size_t(j * o.ldw + p)] = v == Values::AllMaxProducts ? int8_t(-128) : (coin(rng) ? int8_t(127) : int8_t(-128));
    return o;
}

const GemmKernels* kernelsNamed(const QString& name)
{
    for (const GemmKernels* k : availableKernels())
        if (name == QLatin1String(k->name))
            return k;
    return nullptr;
}

// "isa/blocking" -> the table and one of its blockings; every candidate the per-CPU choice
// (kernels/gemmtune.h) may pick is tested, not only the one this machine picks.
struct Variant {
    const GemmKernels* kr = nullptr;
    const GemmBlocking* bl = nullptr;
};
Variant variantNamed(const QString& name)
{
    const QStringList parts = name.split(QLatin1Char('/'));
    Variant v;
    v.kr = kernelsNamed(parts.value(0));
    if (v.kr)
        v.bl = findBlocking(*v.kr, parts.value(1).toStdString());
    return v;
}
QList<QByteArray> variantNames()
{
    QList<QByteArray> l;
    for (const GemmKernels* k : availableKernels())
        for (int i = 0; i < k->blockingCount; ++i)
            l << QByteArray(k->name) + '/' + k->blockings[i].name;
    return l;
}

QString where(const Shape& s, int64_t i, int64_t j)
{
    return QStringLiteral("M=%1 N=%2 K=%3 at (%4,%5)").arg(s.m).arg(s.n).arg(s.k).arg(i).arg(j);
}

// Operands and reference results, made once per data kind and reused by every variant (the
// rows run variant after variant on the same kind): with every blocking tested, the scalar
// reference had become most of the run time.
struct Int32Case {
    Operands o;
    PackedWeights pw;
    std::vector<int32_t> want;
};
const std::vector<Int32Case>& int32Cases(Values v)
{
    static int cached = -1;
    static std::vector<Int32Case> cases;
    if (cached != int(v)) {
        cases.clear();
        std::mt19937 rng(1234 + int(v));
        for (const Shape& sh : shapes()) {
            Int32Case c;
            c.o = makeOperands(sh, v, rng);
            c.want.resize(size_t(sh.m * sh.n));
            gemm_u8s8s32_ref(sh.m, sh.n, sh.k, c.o.a.data(), c.o.lda, c.o.w.data(), c.o.ldw, c.want.data(), sh.n);
            c.pw = packWeights(c.o.w.data(), sh.n, sh.k, c.o.ldw);
            cases.push_back(std::move(c));
        }
        cached = int(v);
    }
    return cases;
}

struct FloatCase {
    Operands o;
    PackedWeights pw;
    std::vector<int32_t> aZero;
    std::vector<float> aScale, wScale, bias, want;
    Requant rq;
};
const std::vector<FloatCase>& floatCases(bool perRow, bool perChannel, bool withBias)
{
    static int cached = -1;
    static std::vector<FloatCase> cases;
    const int key = perRow * 4 + perChannel * 2 + withBias;
    if (cached != key) {
        cases.clear();
        std::mt19937 rng(7);
        std::uniform_real_distribution<float> sc(1e-4f, 0.05f), bi(-3.0f, 3.0f);
        std::uniform_int_distribution<int> zp(0, 127);
        for (const Shape& sh : shapes()) {
            FloatCase c;
            c.o = makeOperands(sh, Values::RandomReduceRange, rng);
            c.aZero.resize(size_t(sh.m));
            c.aScale.resize(size_t(sh.m));
            c.wScale.resize(size_t(sh.n));
            c.bias.resize(size_t(sh.n));
            for (auto& x : c.aZero) x = zp(rng);
            for (auto& x : c.aScale) x = sc(rng);
            for (auto& x : c.wScale) x = sc(rng);
            for (auto& x : c.bias) x = bi(rng);
            c.rq.aZero = c.aZero.data();
            c.rq.aZeroStride = perRow ? 1 : 0;
            c.rq.aScale = c.aScale.data();
            c.rq.aScaleStride = perRow ? 1 : 0;
            c.rq.wScale = c.wScale.data();
            c.rq.wScaleStride = perChannel ? 1 : 0;
            c.rq.bias = withBias ? c.bias.data() : nullptr;
            std::vector<int32_t> acc(size_t(sh.m * sh.n));
            gemm_u8s8s32_ref(sh.m, sh.n, sh.k, c.o.a.data(), c.o.lda, c.o.w.data(), c.o.ldw, acc.data(), sh.n);
            c.pw = packWeights(c.o.w.data(), sh.n, sh.k, c.o.ldw);
            c.want.resize(size_t(sh.m * sh.n));
            requant_f32_ref(sh.m, sh.n, acc.data(), sh.n, c.pw.colSum.data(), c.rq, c.want.data(), sh.n);
            cases.push_back(std::move(c));
        }
        cached = key;
    }
    return cases;
}

}  // namespace

class TestGemm : public QObject {
    Q_OBJECT

private:
    void isaByValuesData()
    {
        QTest::addColumn<QString>("isa");
        QTest::addColumn<int>("values");
        // Data kind outer, variant inner: int32Cases() keeps one kind's operands at a time.
        const std::pair<const char*, Values> kinds[] = {{"/random-u8-full-range", Values::RandomFull},
                                                        {"/random-u8-reduce-range", Values::RandomReduceRange},
                                                        {"/extremes-0-255-x-minus128-127", Values::Extremes},
                                                        {"/all-255-x-minus128", Values::AllMaxProducts}};
        for (const auto& [suffix, v] : kinds)
            for (const QByteArray& n : variantNames())
                QTest::newRow(n + suffix) << QString::fromLatin1(n) << int(v);
    }

private slots:
    void dispatchTableEndsWithReference()
    {
        const auto& ks = availableKernels();
        QVERIFY(!ks.empty());
        QCOMPARE(QString::fromLatin1(ks.back()->name), QStringLiteral("ref"));
        QVERIFY(kernelsNamed(QString::fromLatin1(activeIsa())) != nullptr);
        qInfo("kernels here: %s; active: %s", qPrintable([&] {
                  QStringList l;
                  for (auto* k : ks) l << QString::fromLatin1(k->name);
                  return l.join(QLatin1Char(' '));
              }()), activeIsa());
    }

    void blockingCacheIsCheckedLineByLine()
    {
        // The cache file is untrusted input: anything malformed is ignored, never trusted.
        const std::string cpu = "GenuineIntel family 6 model 106 stepping 6";
        const std::string good = std::string("quantlens-gemm-blocking 1\n") + "avx512vnni\t12x32\t" + cpu + "\n";
        QCOMPARE(QString::fromStdString(parseBlockingCache(good, cpu, "avx512vnni").value_or("-")), QStringLiteral("12x32"));
        QVERIFY(!parseBlockingCache(good, cpu, "avx2"));
        QVERIFY(!parseBlockingCache(good, "AuthenticAMD family 26 model 2 stepping 1", "avx512vnni"));
        QVERIFY(!parseBlockingCache("quantlens-gemm-blocking 2\navx512vnni\t12x32\t" + cpu + "\n", cpu, "avx512vnni"));
        QVERIFY(!parseBlockingCache("", cpu, "avx512vnni"));
        QVERIFY(!parseBlockingCache(std::string("quantlens-gemm-blocking 1\navx512vnni\t12\x01x32\t") + cpu, cpu,
                                    "avx512vnni"));
        QVERIFY(!parseBlockingCache(std::string("quantlens-gemm-blocking 1\navx512vnni 12x32 ") + cpu, cpu, "avx512vnni"));
        std::string huge = good + std::string(20000, '#');
        QVERIFY(!parseBlockingCache(huge, cpu, "avx512vnni"));
        // Updating keeps other CPUs' and ISAs' entries and replaces this one.
        const std::string other = "AuthenticAMD family 26 model 2 stepping 1";
        std::string t = updateBlockingCache(good, other, "avx512vnni", "6x64");
        t = updateBlockingCache(t, cpu, "avx512vnni", "6x64-r96");
        QCOMPARE(QString::fromStdString(parseBlockingCache(t, cpu, "avx512vnni").value_or("-")), QStringLiteral("6x64-r96"));
        QCOMPARE(QString::fromStdString(parseBlockingCache(t, other, "avx512vnni").value_or("-")), QStringLiteral("6x64"));
        QCOMPARE(int(std::count(t.begin(), t.end(), '\n')), 3);
        // A name the cache holds but the table does not know is refused by the caller.
        QVERIFY(!findBlocking(*availableKernels().front(), "no-such-blocking"));
    }

    void measuredBlockingIsACandidate()
    {
        // One round only (a few ms): the choice itself depends on the machine's load.
        for (const GemmKernels* k : availableKernels()) {
            if (QByteArray(k->name) == "ref")
                continue;
            std::string why;
            const GemmBlocking& b = measureBlocking(*k, 1, &why);
            QVERIFY(&b >= k->blockings && &b < k->blockings + k->blockingCount);
            QVERIFY2(why.find(" us") != std::string::npos, why.c_str());
            const GemmBlocking& t = tableBlocking(*k);
            QVERIFY(&t >= k->blockings && &t < k->blockings + k->blockingCount);
        }
        qInfo("cpu: %s", cpuKey().c_str());
    }

    void packedColumnSums()
    {
        // colSum is the zero-point correction term; check it on a ragged shape.
        std::vector<int8_t> w(size_t(70 * 9));
        for (size_t i = 0; i < w.size(); ++i) w[i] = int8_t(int(i * 37 % 256) - 128);
        const PackedWeights p = packWeights(w.data(), 70, 9, 9);
        QCOMPARE(p.panels, int64_t(2));
        QCOMPARE(p.panelWidth(1), int64_t(16));
        for (int64_t j = 0; j < 70; ++j) {
            int32_t s = 0;
            for (int64_t k = 0; k < 9; ++k) s += w[size_t(j * 9 + k)];
            QCOMPARE(p.colSum[size_t(j)], s);
        }
        for (size_t j = 70; j < p.colSum.size(); ++j) QCOMPARE(p.colSum[j], 0);
    }

    void int32MatchesReference_data() { isaByValuesData(); }
    void int32MatchesReference()
    {
        QFETCH(QString, isa);
        QFETCH(int, values);
        const Variant va = variantNamed(isa);
        QVERIFY(va.kr && va.bl);
        const bool aMax128 = Values(values) == Values::RandomReduceRange;
        for (const Int32Case& c : int32Cases(Values(values))) {
            const Shape& sh = c.o.sh;
            const Operands& o = c.o;
            const std::vector<int32_t>& want = c.want;
            std::vector<int32_t> got(size_t(sh.m * sh.n), 0x5A5A5A5A);
            gemmU8S8S32(*va.kr, sh.m, o.a.data(), o.lda, c.pw, got.data(), sh.n, aMax128, va.bl);
            for (int64_t i = 0; i < sh.m; ++i)
                for (int64_t j = 0; j < sh.n; ++j)
                    if (got[size_t(i * sh.n + j)] != want[size_t(i * sh.n + j)])
                        QFAIL(qPrintable(QStringLiteral("%1: %2 got %3, reference %4").arg(isa, where(sh, i, j))
                                             .arg(got[size_t(i * sh.n + j)]).arg(want[size_t(i * sh.n + j)])));
        }
    }

    void s8s8MatchesReference_data()
    {
        QTest::addColumn<QString>("isa");
        for (const QByteArray& n : variantNames())
            QTest::newRow(n) << QString::fromLatin1(n);
    }
    void s8s8MatchesReference()
    {
        QFETCH(QString, isa);
        const Variant va = variantNamed(isa);
        QVERIFY(va.kr && va.bl);
        std::mt19937 rng(99);
        std::uniform_int_distribution<int> s8(-128, 127);
        for (const Shape& sh : shapes()) {
            if (sh.m * sh.n * sh.k > 200000)
                continue;
            std::vector<int8_t> a(size_t(sh.m * sh.k)), w(size_t(sh.n * sh.k));
            for (auto& x : a) x = int8_t(s8(rng));
            for (auto& x : w) x = int8_t(s8(rng));
            if (sh.k == 5)  // extremes: every product is (-128)*(-128)
                std::fill(a.begin(), a.end(), int8_t(-128)), std::fill(w.begin(), w.end(), int8_t(-128));
            std::vector<int32_t> want(size_t(sh.m * sh.n)), got(size_t(sh.m * sh.n));
            gemm_s8s8s32_ref(sh.m, sh.n, sh.k, a.data(), sh.k, w.data(), sh.k, want.data(), sh.n);
            const PackedWeights pw = packWeights(w.data(), sh.n, sh.k, sh.k);
            gemmS8S8S32(*va.kr, sh.m, a.data(), sh.k, pw, got.data(), sh.n, va.bl);
            for (int64_t i = 0; i < sh.m; ++i)
                for (int64_t j = 0; j < sh.n; ++j)
                    if (got[size_t(i * sh.n + j)] != want[size_t(i * sh.n + j)])
                        QFAIL(qPrintable(QStringLiteral("%1: %2 got %3, reference %4").arg(isa, where(sh, i, j))
                                             .arg(got[size_t(i * sh.n + j)]).arg(want[size_t(i * sh.n + j)])));
        }
    }

    void floatEpilogueMatchesReference_data()
    {
        QTest::addColumn<QString>("isa");
        QTest::addColumn<bool>("perRow");
        QTest::addColumn<bool>("perChannel");
        QTest::addColumn<bool>("withBias");
        // Scale kind outer, variant inner, as in isaByValuesData.
        for (const QByteArray& n : variantNames())
            QTest::newRow(n + "/per-tensor-act/per-tensor-w/bias") << QString::fromLatin1(n) << false << false << true;
        for (const QByteArray& n : variantNames())
            QTest::newRow(n + "/per-tensor-act/per-tensor-w/no-bias") << QString::fromLatin1(n) << false << false << false;
        for (const QByteArray& n : variantNames())
            QTest::newRow(n + "/per-row-act/per-channel-w/bias") << QString::fromLatin1(n) << true << true << true;
        for (const QByteArray& n : variantNames())
            QTest::newRow(n + "/per-tensor-act/per-channel-w/bias") << QString::fromLatin1(n) << false << true << true;
    }
    void floatEpilogueMatchesReference()
    {
        QFETCH(QString, isa);
        QFETCH(bool, perRow);
        QFETCH(bool, perChannel);
        QFETCH(bool, withBias);
        const Variant va = variantNamed(isa);
        QVERIFY(va.kr && va.bl);
        for (const FloatCase& c : floatCases(perRow, perChannel, withBias)) {
            const Shape& sh = c.o.sh;
            const std::vector<float>& want = c.want;
            std::vector<float> got(size_t(sh.m * sh.n), -777.0f);
            va.kr->gemmF32(sh.m, c.o.a.data(), c.o.lda, c.pw, 0, c.pw.panels, c.rq, got.data(), sh.n, true, *va.bl);
            for (int64_t i = 0; i < sh.m; ++i)
                for (int64_t j = 0; j < sh.n; ++j) {
                    const float g = got[size_t(i * sh.n + j)], r = want[size_t(i * sh.n + j)];
                    if (std::memcmp(&g, &r, sizeof g) != 0)
                        QFAIL(qPrintable(QStringLiteral("%1: %2 got %3, reference %4").arg(isa, where(sh, i, j))
                                             .arg(double(g), 0, 'g', 9).arg(double(r), 0, 'g', 9)));
                }
        }
    }

    void panelRangesCompose_data() { s8s8MatchesReference_data(); }
    void panelRangesCompose()
    {
        // Threads split the output by panel; two halves must write exactly the full result.
        QFETCH(QString, isa);
        const Variant va = variantNamed(isa);
        QVERIFY(va.kr && va.bl);
        std::mt19937 rng(5);
        const Operands o = makeOperands({9, 200, 70}, Values::RandomFull, rng);
        const PackedWeights pw = packWeights(o.w.data(), 200, 70, o.ldw);
        std::vector<int32_t> whole(9 * 200), halves(9 * 200, 0);
        va.kr->gemmS32(9, o.a.data(), o.lda, pw, 0, pw.panels, whole.data(), 200, false, *va.bl);
        va.kr->gemmS32(9, o.a.data(), o.lda, pw, 0, 2, halves.data(), 200, false, *va.bl);
        va.kr->gemmS32(9, o.a.data(), o.lda, pw, 2, pw.panels, halves.data(), 200, false, *va.bl);
        QVERIFY(whole == halves);
    }

    void activationQuantizationMatchesReference_data()
    {
        QTest::addColumn<QString>("isa");
        for (const GemmKernels* k : availableKernels())
            QTest::newRow(k->name) << QString::fromLatin1(k->name);
    }
    void activationQuantizationMatchesReference()
    {
        QFETCH(QString, isa);
        const GemmKernels* kr = kernelsNamed(isa);
        const GemmKernels* ref = kernelsNamed(QStringLiteral("ref"));
        std::mt19937 rng(11);
        std::normal_distribution<float> nd(0.0f, 2.0f);
        // The kernels start their vector loops at x's first 64-byte boundary: every start
        // offset within a line, so that the head before it takes every length from 0 to 15.
        alignas(64) static float buf[16 + 200];
        for (int64_t off = 0; off < 16; ++off)
            for (int64_t n = 1; n <= 200; n += (n < 40 ? 1 : 17)) {
                float* const x = buf + off;
                for (int64_t i = 0; i < n; ++i)
                    x[i] = nd(rng);
                x[n / 2] = 1.5f * 0.25f;  // lands exactly on .5 with scale 0.25: tie to even
                const QString where = QStringLiteral("offset %1 floats, n=%2").arg(off).arg(n);
                float mn, mx, rmn, rmx;
                QVERIFY(kr->minMax(x, n, &mn, &mx));
                QVERIFY(ref->minMax(x, n, &rmn, &rmx));
                QCOMPARE(mn, rmn);
                QCOMPARE(mx, rmx);
                for (float inv : {4.0f, 31.7f, 1e9f}) {
                    std::vector<uint8_t> q(static_cast<size_t>(n) + 1, 0xAB), rq(static_cast<size_t>(n));
                    kr->quantizeU8(x, n, inv, 61, q.data());
                    ref->quantizeU8(x, n, inv, 61, rq.data());
                    for (int64_t i = 0; i < n; ++i)
                        if (q[size_t(i)] != rq[size_t(i)])
                            QFAIL(qPrintable(QStringLiteral("%1 inv=%2 x[%3]=%4: got %5, reference %6")
                                                 .arg(where).arg(double(inv)).arg(i).arg(double(x[i]))
                                                 .arg(q[size_t(i)]).arg(rq[size_t(i)])));
                    QVERIFY2(q[size_t(n)] == 0xAB, qPrintable(where + QStringLiteral(": wrote past the end")));
                }
                // The scan splits x into a head up to the line boundary and parts walked side
                // by side: an extreme or a NaN must be found wherever it sits (the head, each
                // part's start and end, the tail).
                for (int64_t p : {int64_t(0), int64_t(1), int64_t(7), int64_t(14), int64_t(15), int64_t(16), n / 4,
                                  n / 2 - 1, n / 2, n / 2 + 1, n - 17, n - 16, n - 2, n - 1}) {
                    if (p < 0 || p >= n)
                        continue;
                    const float keep = x[p];
                    for (float extreme : {1e30f, -1e30f}) {
                        x[p] = extreme;
                        QVERIFY(kr->minMax(x, n, &mn, &mx));
                        QVERIFY(ref->minMax(x, n, &rmn, &rmx));
                        QCOMPARE(mn, rmn);
                        QCOMPARE(mx, rmx);
                    }
                    x[p] = std::nanf("");
                    if (kr->minMax(x, n, &mn, &mx))
                        QFAIL(qPrintable(QStringLiteral("%1: NaN at %2 not reported").arg(where).arg(p)));
                    x[p] = keep;
                }
            }
        // Ties round half to even after the FMA with the zero point: 0.5+61 -> 62, 1.5+61 -> 62.
        const float ties[2] = {0.5f / 4.0f, 1.5f / 4.0f};
        uint8_t q[2];
        kr->quantizeU8(ties, 2, 4.0f, 61, q);
        QCOMPARE(int(q[0]), 62);
        QCOMPARE(int(q[1]), 62);
    }
};

QTEST_GUILESS_MAIN(TestGemm)
#include "tst_gemm.moc"
