// The reductions behind minMaxRange and computeStats: every ISA variant this machine runs
// gives bit-for-bit the reference's result (reduce.h defines the summation order), on
// data with NaN, infinities, signed zeros and denormals.
#include <QTest>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/reduce.h"

using namespace quantlens::kernels;

namespace {

std::vector<float> hostile(size_t n, unsigned seed)
{
    std::mt19937 rng(seed);
    std::student_t_distribution<float> t3(3.0f);
    std::uniform_int_distribution<int> pick(0, 199);
    std::vector<float> v(n);
    for (auto& x : v) {
        x = t3(rng) * 0.05f + 0.003f;
        switch (pick(rng)) {
        case 0: x = std::numeric_limits<float>::quiet_NaN(); break;
        case 1: x = std::numeric_limits<float>::infinity(); break;
        case 2: x = -std::numeric_limits<float>::infinity(); break;
        case 3: x = 0.0f; break;
        case 4: x = -0.0f; break;
        case 5: x = std::numeric_limits<float>::denorm_min() * float(pick(rng)); break;
        case 6: x = FLT_MAX; break;
        case 7: x = -FLT_MAX; break;
        default: break;
        }
    }
    return v;
}

// n = 0 compares nothing (and memcmp must not see the null data() of an empty vector).
bool sameBits(const void* a, const void* b, size_t n) { return n == 0 || std::memcmp(a, b, n) == 0; }

}  // namespace

class TestReduce : public QObject {
    Q_OBJECT
private slots:
    void variantsExist()
    {
        QVERIFY(!availableReduce().empty());
        QCOMPARE(std::string(availableReduce().back()->name), std::string("ref"));
        qInfo("reduce variants here: %s (active: %s)", [] {
            std::string s;
            for (auto* r : availableReduce())
                s += std::string(s.empty() ? "" : ", ") + r->name;
            return s;
        }().c_str(), activeReduce().name);
    }

    void minMaxBitExact()
    {
        for (unsigned seed : {1u, 2u, 3u}) {
            const auto x = hostile(16 * 4099, seed);
            float lo0[kMinMaxLanes], hi0[kMinMaxLanes];
            for (int j = 0; j < kMinMaxLanes; ++j) {
                lo0[j] = FLT_MAX;
                hi0[j] = -FLT_MAX;
            }
            float rlo[kMinMaxLanes], rhi[kMinMaxLanes];
            std::memcpy(rlo, lo0, sizeof rlo);
            std::memcpy(rhi, hi0, sizeof rhi);
            kReduceRef.minMaxFinite(x.data(), 4099, rlo, rhi);
            for (const ReduceKernels* k : availableReduce()) {
                float lo[kMinMaxLanes], hi[kMinMaxLanes];
                std::memcpy(lo, lo0, sizeof lo);
                std::memcpy(hi, hi0, sizeof hi);
                k->minMaxFinite(x.data(), 4099, lo, hi);
                QVERIFY2(sameBits(lo, rlo, sizeof lo) && sameBits(hi, rhi, sizeof hi), k->name);
            }
        }
    }

    // Only signed zeros: which zero wins a tie is part of the definition.
    void zeroTies()
    {
        std::vector<float> x(16 * 64);
        for (size_t i = 0; i < x.size(); ++i)
            x[i] = (i * 7 % 3) ? -0.0f : 0.0f;
        for (const ReduceKernels* k : availableReduce()) {
            float lo[kMinMaxLanes], hi[kMinMaxLanes], rlo[kMinMaxLanes], rhi[kMinMaxLanes];
            for (int j = 0; j < kMinMaxLanes; ++j) {
                lo[j] = rlo[j] = FLT_MAX;
                hi[j] = rhi[j] = -FLT_MAX;
            }
            kReduceRef.minMaxFinite(x.data(), 64, rlo, rhi);
            k->minMaxFinite(x.data(), 64, lo, hi);
            QVERIFY2(sameBits(lo, rlo, sizeof lo) && sameBits(hi, rhi, sizeof hi), k->name);
        }
    }

    void statsBitExact()
    {
        for (unsigned seed : {4u, 5u}) {
            const int64_t blocks = 37;
            const auto x = hostile(size_t(blocks * kStatsBlock), seed);
            double rs = 0.25;  // a running total carried in, as computeStats does
            int64_t rbad = 3;
            float rlo[kStatsLanes], rhi[kStatsLanes];
            for (int j = 0; j < kStatsLanes; ++j) {
                rlo[j] = FLT_MAX;
                rhi[j] = -FLT_MAX;
            }
            kReduceRef.statsSum(x.data(), blocks, &rs, &rbad, rlo, rhi);
            double rd = 0, rd2 = 0;
            kReduceRef.statsDev(x.data(), blocks, 0.00312f, &rd, &rd2);
            QVERIFY(std::isfinite(rs) && rbad > 3);
            for (const ReduceKernels* k : availableReduce()) {
                double s = 0.25;
                int64_t bad = 3;
                float lo[kStatsLanes], hi[kStatsLanes];
                for (int j = 0; j < kStatsLanes; ++j) {
                    lo[j] = FLT_MAX;
                    hi[j] = -FLT_MAX;
                }
                k->statsSum(x.data(), blocks, &s, &bad, lo, hi);
                QVERIFY2(sameBits(&s, &rs, sizeof s), k->name);
                QCOMPARE(bad, rbad);
                QVERIFY2(sameBits(lo, rlo, sizeof lo) && sameBits(hi, rhi, sizeof hi), k->name);
                double d = 0, d2 = 0;
                k->statsDev(x.data(), blocks, 0.00312f, &d, &d2);
                QVERIFY2(sameBits(&d, &rd, sizeof d) && sameBits(&d2, &rd2, sizeof d2), k->name);
            }
        }
    }

    // The heatmap fold: rows of every length around the vector widths, with and without a
    // subtrahend, folded several times into the same running maxima (so ties between rows,
    // NaN, infinities and FLT_MAX differences that overflow to inf all meet a kept value).
    void foldMaxAbsBitExact()
    {
        for (int64_t n : {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 768}) {
            for (const bool diff : {false, true}) {
                std::vector<std::vector<float>> rows, subs;
                for (unsigned r = 0; r < 5; ++r) {
                    rows.push_back(hostile(size_t(n), 10 + r));
                    subs.push_back(hostile(size_t(n), 20 + r));
                }
                if (n > 3) {  // exact magnitude ties of both signs across rows
                    rows[1][2] = -rows[0][2];
                    rows[2][3] = rows[0][3];
                }
                std::vector<float> rmag(size_t(n), -1.0f), rval(size_t(n), 0.0f);
                for (size_t r = 0; r < rows.size(); ++r)
                    kReduceRef.foldMaxAbs(rows[r].data(), diff ? subs[r].data() : nullptr, n, rmag.data(), rval.data());
                for (const ReduceKernels* k : availableReduce()) {
                    std::vector<float> mag(size_t(n), -1.0f), val(size_t(n), 0.0f);
                    for (size_t r = 0; r < rows.size(); ++r)
                        k->foldMaxAbs(rows[r].data(), diff ? subs[r].data() : nullptr, n, mag.data(), val.data());
                    QVERIFY2(sameBits(mag.data(), rmag.data(), mag.size() * 4), k->name);
                    QVERIFY2(sameBits(val.data(), rval.data(), val.size() * 4), k->name);
                }
                for (size_t c = 0; c < size_t(n); ++c)  // the reference itself: finite winners only
                    QVERIFY(rmag[c] == -1.0f || (std::isfinite(rval[c]) && rmag[c] == std::fabs(rval[c])));
            }
        }
    }

    // Band columns to cells: every pool width from 1 to 19 and a wide one, column counts that
    // leave a short last cell and fewer columns than one SIMD group of cells, ties (the first
    // column wins), empty columns (-1) and whole empty cells.
    void foldCellsBitExact()
    {
        for (const int64_t n : {0, 1, 2, 7, 16, 31, 32, 33, 100, 257, 768, 3072}) {
            for (const int64_t pool : {1, 2, 3, 4, 5, 7, 8, 16, 19, 300}) {
                std::vector<float> mag = hostile(size_t(n), unsigned(n * 7 + pool)), val = hostile(size_t(n), unsigned(pool));
                for (int64_t c = 0; c < n; ++c) {
                    mag[size_t(c)] = std::isfinite(mag[size_t(c)]) ? std::fabs(mag[size_t(c)]) : -1.0f;
                    if (c % 11 == 3)
                        mag[size_t(c)] = -1.0f;  // nothing finite seen in this column
                    if (c % 5 == 1 && c > 0)
                        mag[size_t(c)] = mag[size_t(c - 1)];  // a tie with the column before
                }
                if (n >= 3 * pool)
                    std::fill(mag.begin() + pool, mag.begin() + 2 * pool, -1.0f);  // an empty cell
                const size_t cells = size_t((n + pool - 1) / pool);
                std::vector<float> rm(cells + 1, 7.0f), rv(cells + 1, 7.0f);
                kReduceRef.foldCells(mag.data(), val.data(), n, pool, rm.data(), rv.data());
                QCOMPARE(rm[cells], 7.0f);  // nothing written past the last cell
                for (size_t g = 0; g < cells; ++g) {  // the reference against the rule itself
                    float bm = -1.0f, bv = 0.0f;
                    for (int64_t c = int64_t(g) * pool; c < std::min(n, int64_t(g + 1) * pool); ++c)
                        if (mag[size_t(c)] > bm) {
                            bm = mag[size_t(c)];
                            bv = val[size_t(c)];
                        }
                    QVERIFY(sameBits(&bm, &rm[g], 4) && sameBits(&bv, &rv[g], 4));
                }
                for (const ReduceKernels* k : availableReduce()) {
                    std::vector<float> m(cells + 1, 7.0f), v(cells + 1, 7.0f);
                    k->foldCells(mag.data(), val.data(), n, pool, m.data(), v.data());
                    const QString at = QStringLiteral("%1 n %2 pool %3").arg(QLatin1String(k->name)).arg(n).arg(pool);
                    QVERIFY2(sameBits(m.data(), rm.data(), m.size() * 4), qPrintable(at));
                    QVERIFY2(sameBits(v.data(), rv.data(), v.size() * 4), qPrintable(at));
                }
            }
        }
    }
};

QTEST_GUILESS_MAIN(TestReduce)
#include "tst_reduce.moc"
