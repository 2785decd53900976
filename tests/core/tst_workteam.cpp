// The work team (workteam.h) and the passes it splits: every part runs once, nested and
// concurrent callers neither deadlock nor share parts, a part's exception reaches the
// caller; and the histogram, metrics, row metrics, round trip and the per-channel and
// per-group quantize / dequantize give the same bits on one thread as on several, for
// sizes that do not divide into the parts, a one-row matrix, and nothing at all.
#include <QTest>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/quantrun.h"
#include "quant/histogram.h"
#include "quant/metrics.h"
#include "quant/quantize.h"
#include "workteam.h"

using namespace quantlens;

namespace {

std::vector<float> sample(int64_t n, uint32_t seed)
{
    std::mt19937 rng(seed);
    std::student_t_distribution<float> t3(3.0f);
    std::uniform_int_distribution<int> e(-24, 0);
    std::vector<float> x(static_cast<size_t>(n));
    // Magnitudes spread over 2^24, so the double sums carry all 53 bits and any change in
    // the order of their additions shows in the last bit.
    for (auto& v : x)
        v = std::ldexp(t3(rng) * 0.03f, e(rng));
    if (n > 10) {
        x[size_t(n / 3)] = std::nanf("");  // NaN: its own histogram slot, zero point on quantizing
        x[size_t(n / 2)] = 2.0f;           // clamped by the manual range below
    }
    return x;
}

bool sameBits(const Metrics& a, const Metrics& b)
{
    return std::memcmp(&a.mse, &b.mse, 8) == 0 && std::memcmp(&a.sqnrDb, &b.sqnrDb, 8) == 0
           && std::memcmp(&a.cosine, &b.cosine, 8) == 0 && std::memcmp(&a.maxAbsError, &b.maxAbsError, 8) == 0
           && a.clampedFraction == b.clampedFraction && a.count == b.count;
}

bool sameHistogram(const Histogram& a, const Histogram& b)
{
    return a.counts == b.counts && a.below == b.below && a.above == b.above;
}

// Everything the split passes compute, with the team limited to `threads`.
struct Results {
    Histogram hist, absHist;
    Metrics metrics, roundTrip, runPieces, fromCodes, perChannel, perGroup;
    std::vector<Metrics> rows;
    std::vector<int8_t> q, qChannel, qGroup;
    std::vector<float> xhat, xhatChannel, scalesChannel, scalesGroup;
    float rangeLo = 0, rangeHi = 0;
    int64_t clampedChannel = 0;
};

Results compute(const std::vector<float>& x, int64_t rows, int64_t cols, int threads)
{
    setTeamThreads(threads);
    Results r;
    r.hist = computeHistogram(x, -0.5, 0.5, 2048);
    r.absHist = computeAbsHistogram(x, 0.5, 301);
    QuantSpec spec;
    spec.scheme = Scheme::TorchAffine;
    QuantizedTensor qt;
    r.xhat.assign(x.size(), -1.0f);
    auto m = quantizeManualRoundTrip(x, {rows, cols}, spec, -0.4f, 0.3f, qt, r.xhat);
    if (m)
        r.roundTrip = *m;
    r.q = qt.q;
    r.metrics = computeMetrics(x, r.xhat, qt.clampedCount);
    r.fromCodes = quantizationMetrics(x, qt);
    r.rows = computeRowMetrics(x, r.xhat, rows, cols);
    MetricsRun run;  // odd pieces (whole MetricsRun::kPiece multiples), across chunk ends
    for (size_t i = 0; i < x.size();) {
        const size_t k = std::min(x.size() - i, size_t(MetricsRun::kPiece) * (1 + i % 97));
        run.add({x.data() + i, k}, {r.xhat.data() + i, k});
        i += k;
    }
    r.runPieces = run.finish(qt.clampedCount);
    // Per channel (the slices split over the team) and per group, calibrated by min/max.
    QuantSpec pc;
    pc.scheme = Scheme::TorchSymmetric;
    pc.granularity = Granularity::PerChannel;
    r.xhatChannel.assign(x.size(), -1.0f);
    if (auto mc = quantizeRoundTrip(x, {rows, cols}, pc, qt, r.xhatChannel)) {
        r.perChannel = *mc;
        r.qChannel = qt.q;
        r.scalesChannel = qt.params.scale;
        r.rangeLo = qt.params.rangeLo;
        r.rangeHi = qt.params.rangeHi;
        r.clampedChannel = qt.clampedCount;
    }
    pc.granularity = Granularity::PerGroup;
    pc.groupSize = 64;
    std::vector<float> scratch(x.size());
    if (auto mg = quantizeRoundTrip(x, {rows, cols}, pc, qt, scratch)) {
        r.perGroup = *mg;
        r.qGroup = qt.q;
        r.scalesGroup = qt.params.scale;
    }
    setTeamThreads(0);
    return r;
}

}  // namespace

class TstWorkTeam : public QObject {
    Q_OBJECT
private slots:
    void everyPartOnce()
    {
        for (const int threads : {1, 2, 3, 8}) {
            setTeamThreads(threads);
            for (const int64_t parts : {0, 1, 2, 3, 17, 1000}) {
                std::vector<std::atomic<int>> hits(static_cast<size_t>(parts));
                parallelFor(parts, [&](int64_t i) { hits[size_t(i)]++; });
                for (int64_t i = 0; i < parts; ++i)
                    QVERIFY2(hits[size_t(i)] == 1, qPrintable(QStringLiteral("threads %1 parts %2 part %3").arg(threads).arg(parts).arg(i)));
            }
        }
        setTeamThreads(0);
        QVERIFY(teamThreads() >= 1);
    }

    void nestedAndConcurrentCallers()
    {
        setTeamThreads(4);
        std::atomic<int64_t> sum{0};
        // A part that splits again runs its inner parts itself (the team is busy).
        parallelFor(6, [&](int64_t i) { parallelFor(5, [&](int64_t j) { sum += i * 10 + j; }); });
        int64_t want = 0;
        for (int i = 0; i < 6; ++i)
            for (int j = 0; j < 5; ++j)
                want += i * 10 + j;
        QCOMPARE(sum.load(), want);
        // Two callers at once: one gets the team, the other runs alone; both finish.
        std::atomic<int64_t> a{0}, b{0};
        std::thread other([&] {
            for (int k = 0; k < 200; ++k)
                parallelFor(7, [&](int64_t i) { a += i; });
        });
        for (int k = 0; k < 200; ++k)
            parallelFor(7, [&](int64_t i) { b += i; });
        other.join();
        QCOMPARE(a.load(), int64_t(200 * 21));
        QCOMPARE(b.load(), int64_t(200 * 21));
        setTeamThreads(0);
    }

    void optOutRunsOnTheCallingThread()
    {
        setTeamThreads(4);
        const std::thread::id me = std::this_thread::get_id();
        auto others = [&] {
            std::atomic<int> n{0};
            parallelFor(64, [&](int64_t) {
                if (std::this_thread::get_id() != me)
                    ++n;
                std::this_thread::sleep_for(std::chrono::microseconds(200));  // time for helpers to join
            });
            return n.load();
        };
        {
            const TeamOptOut serial;
            QCOMPARE(others(), 0);
            {
                const TeamOptOut nested;
                QCOMPARE(others(), 0);
            }
            QCOMPARE(others(), 0);  // still opted out after the inner scope
        }
        // Opted in again: helpers may take parts (whether they do depends on the machine's
        // load, so this only checks that every part still runs).
        std::atomic<int> all{0};
        parallelFor(64, [&](int64_t) { ++all; });
        QCOMPARE(all.load(), 64);
        setTeamThreads(0);
    }

    void exceptionReachesCaller()
    {
        setTeamThreads(2);
        std::atomic<int> ran{0};
        bool caught = false;
        try {
            parallelFor(9, [&](int64_t i) {
                ++ran;
                if (i == 4)
                    throw std::runtime_error("part 4");
            });
        } catch (const std::runtime_error& e) {
            caught = std::string(e.what()) == "part 4";
        }
        QVERIFY(caught);
        QCOMPARE(ran.load(), 9);  // the other parts still ran
        // and the team still works afterwards
        std::atomic<int> after{0};
        parallelFor(9, [&](int64_t) { ++after; });
        QCOMPARE(after.load(), 9);
        setTeamThreads(0);
    }

    // The chunk contract itself (kernels/quantrun.h): up to kSumChunk values one kernel call,
    // above it each chunk from zero, folded in order.
    void metricsFollowTheChunkContract()
    {
        const int64_t C = quantrun::kSumChunk;
        for (const int64_t n : {int64_t(0), int64_t(1), C - 1, C, C + 1, 3 * C + 777}) {
            const std::vector<float> x = sample(n, 7), y = sample(n, 8);
            quantrun::Sums want;
            for (int64_t c = 0; c * C < n; ++c) {
                quantrun::Sums s;
                quantrun::activeQuant().sums(x.data() + c * C, y.data() + c * C, std::min(C, n - c * C), &s);
                quantrun::foldChunk(want, s, c == 0);
            }
            QVERIFY(sameBits(computeMetrics(x, y), metricsFromSums(want, n, 0)));
        }
    }

    void splitPassesEqualOneThread_data()
    {
        QTest::addColumn<qlonglong>("rows");
        QTest::addColumn<qlonglong>("cols");
        QTest::newRow("empty") << 0LL << 0LL;
        QTest::newRow("small 3x5 (no split)") << 3LL << 5LL;
        QTest::newRow("1 row x 300001") << 1LL << 300001LL;     // one long row: split inside the row
        QTest::newRow("257 x 1031") << 257LL << 1031LL;         // no size divides into the parts
        QTest::newRow("1000 x 333") << 1000LL << 333LL;
        QTest::newRow("9 x 65537") << 9LL << 65537LL;           // rows longer than a sum chunk
    }
    void splitPassesEqualOneThread()
    {
        QFETCH(qlonglong, rows);
        QFETCH(qlonglong, cols);
        const std::vector<float> x = sample(rows * cols, uint32_t(rows * 31 + cols));
        const Results one = compute(x, rows, cols, 1);
        QCOMPARE(one.hist.total() + (rows * cols > 10 ? 1 : 0), int64_t(x.size()));  // NaN counted nowhere
        for (const int threads : {2, 3, 5}) {
            const Results many = compute(x, rows, cols, threads);
            const QString at = QStringLiteral("%1 threads").arg(threads);
            QVERIFY2(sameHistogram(one.hist, many.hist), qPrintable(at));
            QVERIFY2(sameHistogram(one.absHist, many.absHist), qPrintable(at));
            QVERIFY2(sameBits(one.roundTrip, many.roundTrip), qPrintable(at));
            QVERIFY2(sameBits(one.metrics, many.metrics), qPrintable(at));
            QVERIFY2(sameBits(one.fromCodes, many.fromCodes), qPrintable(at));
            QVERIFY2(sameBits(one.runPieces, many.runPieces), qPrintable(at));
            QVERIFY2(one.q == many.q, qPrintable(at));
            QVERIFY2(x.empty() || std::memcmp(one.xhat.data(), many.xhat.data(), x.size() * 4) == 0, qPrintable(at));
            QVERIFY2(sameBits(one.perChannel, many.perChannel), qPrintable(at));
            QVERIFY2(one.qChannel == many.qChannel && one.scalesChannel == many.scalesChannel, qPrintable(at));
            QVERIFY2(x.empty() || std::memcmp(one.xhatChannel.data(), many.xhatChannel.data(), x.size() * 4) == 0,
                     qPrintable(at));
            QVERIFY2(one.rangeLo == many.rangeLo && one.rangeHi == many.rangeHi, qPrintable(at));
            QCOMPARE(many.clampedChannel, one.clampedChannel);
            QVERIFY2(sameBits(one.perGroup, many.perGroup), qPrintable(at));
            QVERIFY2(one.qGroup == many.qGroup && one.scalesGroup == many.scalesGroup, qPrintable(at));
            QCOMPARE(many.rows.size(), one.rows.size());
            for (size_t r = 0; r < one.rows.size(); ++r)
                QVERIFY2(sameBits(one.rows[r], many.rows[r]), qPrintable(at + QStringLiteral(" row %1").arg(r)));
        }
        // The one sweep, the separate passes and the piecewise run agree with each other too.
        QVERIFY(sameBits(one.roundTrip, one.metrics));
        QVERIFY(sameBits(one.roundTrip, one.fromCodes));
        QVERIFY(sameBits(one.roundTrip, one.runPieces));
    }
};

QTEST_GUILESS_MAIN(TstWorkTeam)
#include "tst_workteam.moc"
