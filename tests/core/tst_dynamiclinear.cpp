// DynamicLinear against PyTorch 1.13 quantize_dynamic (fixtures from
// tests/scripts/make_runner_fixtures.py, engine onednn), stage by stage: activation
// parameters, activation bytes, weight bytes, then whole outputs.
#include <QTest>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "kernels/gemm.h"
#include "quant/metrics.h"
#include "runner/dynamiclinear.h"
#include "runner/fp32linear.h"
#include "runner/modelquant.h"
#include "io/npy.h"
#include "testsupport.h"

using namespace quantlens;
using nlohmann::json;

namespace {

std::string fixture(const std::string& name)
{
    return quantlens::test::dataPath(QStringLiteral("runner/") + QString::fromStdString(name)).toStdString();
}

json manifest()
{
    std::ifstream f(fixture("manifest.json"));
    return json::parse(f);
}

std::vector<float> loadF32(const std::string& name, std::vector<int64_t>* shape = nullptr)
{
    auto m = readNpy(fixture(name));
    if (!m)
        qFatal("%s", m.error().oneLine().c_str());
    auto v = m->tensors.front().toFloat();
    if (!v)
        qFatal("%s", v.error().oneLine().c_str());
    if (shape)
        *shape = m->tensors.front().shape;
    return v.value();
}

std::vector<std::byte> loadBytes(const std::string& name)
{
    // The file's own bytes (int8 / uint8 / int32 fixtures), C order.
    auto m = readNpy(fixture(name));
    if (!m)
        qFatal("%s", m.error().oneLine().c_str());
    const Tensor& t = m->tensors.front();
    if (!t.isContiguous() || t.bigEndian)
        qFatal("%s: expected a C-order little-endian array", name.c_str());
    return std::vector<std::byte>(t.data.begin(), t.data.end());
}

// Must match formula_weight() in make_runner_fixtures.py bit for bit.
void formulaWeight(int64_t out, int64_t in, std::vector<float>& w, std::vector<float>& b)
{
    w.resize(size_t(out * in));
    for (int64_t i = 0; i < out * in; ++i) {
        const uint32_t h = uint32_t(uint64_t(i) * 2654435761u);
        const int v = int(h & 0xFF) + int((h >> 8) & 0xFF) + int((h >> 16) & 0xFF) + int(h >> 24) - 510;
        float x = float(v) * 0x1p-12f;
        if ((h >> 8) % 997 == 0)
            x *= 8.0f;
        w[size_t(i)] = x;
    }
    b.resize(size_t(out));
    for (int64_t j = 0; j < out; ++j) {
        const uint32_t h = uint32_t(uint64_t(j + 7919) * 2654435761u);
        b[size_t(j)] = float(int(h % 201) - 100) * 0x1p-10f;
    }
}

struct Layer {
    int64_t in = 0, out = 0;
    std::vector<float> w, b;
};

Layer loadLayer(const json& man, const std::string& name)
{
    Layer l;
    l.in = man["layers"][name]["in"];
    l.out = man["layers"][name]["out"];
    if (man["layers"][name]["source"] == "formula") {
        formulaWeight(l.out, l.in, l.w, l.b);
    } else {
        l.w = loadF32(name + "_w.npy");
        l.b = loadF32(name + "_b.npy");
    }
    return l;
}

double sqnrDb(const std::vector<float>& ref, const std::vector<float>& y)
{
    return computeMetrics(ref, y).sqnrDb;
}

// Runs `d` on x and checks every output against torch's within the bound derived in
// outputsMatchTorch, with each output channel's own weight scale; then, given the float32
// output, that our SQNR is no worse than torch's by more than 0.1 dB.
void checkAgainstTorch(const QString& caseName, const DynamicLinear& d, const Layer& l, const std::vector<float>& x,
                       int64_t m, const std::vector<std::byte>& tq, const std::vector<float>& yt,
                       const std::vector<float>* yf)
{
    std::vector<float> y(size_t(m * l.out));
    d.forward(x.data(), m, y.data());
    const ActParams p = DynamicLinear::lastActParams();
    std::vector<uint8_t> q(x.size());
    kernels::activeKernels().quantizeU8(x.data(), int64_t(x.size()), 1.0f / p.scale, p.zeroPoint, q.data());
    const auto& ws = d.weight().params.scale;
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < l.out; ++j) {
            const float step = p.scale * ws[ws.size() > 1 ? size_t(j) : 0];
            double tieTerm = 0, magnitude = 0;
            for (int64_t k = 0; k < l.in; ++k) {
                const int qw = std::abs(int(d.weight().q[size_t(j * l.in + k)]));
                const size_t ik = size_t(i * l.in + k);
                if (int(tq[ik]) != q[ik])
                    tieTerm += qw;
                magnitude += double(std::abs(int(q[ik]) - p.zeroPoint)) * qw;
            }
            const double yij = y[size_t(i * l.out + j)], tij = yt[size_t(i * l.out + j)];
            const double bound = step * tieTerm + 4 * FLT_EPSILON * (step * magnitude + std::abs(l.b[size_t(j)]) + std::abs(tij));
            if (!(std::abs(yij - tij) <= bound))
                QFAIL(qPrintable(QStringLiteral("%1 (%2,%3): ours %4, torch %5, bound %6")
                                     .arg(caseName).arg(i).arg(j).arg(yij, 0, 'g', 9).arg(tij, 0, 'g', 9).arg(bound)));
        }
    if (yf) {
        const double ours = sqnrDb(*yf, y), theirs = sqnrDb(*yf, yt);
        qInfo("%s: SQNR vs fp32: ours %.3f dB, torch %.3f dB", qPrintable(caseName), ours, theirs);
        QVERIFY2(ours >= theirs - 0.1, qPrintable(QStringLiteral("ours %1 dB, torch %2 dB").arg(ours).arg(theirs)));
    }
}

}  // namespace

class TestDynamicLinear : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { qInfo("kernels: %s", kernels::activeIsa()); }

    void chooseQuantizationParamsMatchesTorch_data()
    {
        QTest::addColumn<QString>("caseName");
        const json man = manifest();
        for (const json& c : man["cases"])
            QTest::newRow(c["name"].get<std::string>().c_str()) << QString::fromStdString(c["name"]);
    }
    void chooseQuantizationParamsMatchesTorch()
    {
        // torch.quantize_per_tensor_dynamic(x, quint8, reduce_range=True) runs the same
        // ChooseQuantizationParams as quantize_dynamic: scale and zero point must be identical,
        // and the bytes identical except at ties: torch rounds float(x*(1/s)) half to even and
        // then adds the zero point, FBGEMM (and we) round fma(x, 1/s, z), so a value that is
        // (or rounds onto) .5 on one path can go to the other neighbour. Only those may differ, by 1.
        QFETCH(QString, caseName);
        const std::string name = caseName.toStdString();
        json c;
        const json man = manifest();
        for (const json& e : man["cases"])
            if (e["name"] == name)
                c = e;
        std::vector<int64_t> shape;
        const std::vector<float> x = loadF32(name + "_x.npy", &shape);
        const auto& kr = kernels::activeKernels();
        float mn, mx;
        QVERIFY(kr.minMax(x.data(), int64_t(x.size()), &mn, &mx));
        const ActParams p = chooseQuantizationParams(mn, mx, 0, 255, true);
        QCOMPARE(p.scale, c["act_scale"].get<float>());
        QCOMPARE(p.zeroPoint, c["act_zero_point"].get<int32_t>());

        std::vector<uint8_t> q(x.size());
        const float inv = 1.0f / p.scale;
        kr.quantizeU8(x.data(), int64_t(x.size()), inv, p.zeroPoint, q.data());
        const std::vector<std::byte> tq = loadBytes(name + "_qa.npy");
        QCOMPARE(tq.size(), q.size());
        int64_t ties = 0;
        for (size_t i = 0; i < q.size(); ++i) {
            const int t = int(tq[i]);
            if (t == q[i])
                continue;
            // A tie on either path: torch's float(x*inv), or our fma(x, inv, z) whose exact value
            // was within half an ulp of .5 (float spacing near 100 is 2^-17) and rounded onto it.
            const float scaled = x[i] * inv;
            const float fused = std::fma(x[i], inv, float(p.zeroPoint));
            const bool tie = scaled - std::floor(scaled) == 0.5f || fused - std::floor(fused) == 0.5f;
            if (!tie || std::abs(t - int(q[i])) != 1)
                QFAIL(qPrintable(QStringLiteral("x[%1]=%2: ours %3, torch %4").arg(i).arg(double(x[i]), 0, 'g', 9).arg(q[i]).arg(t)));
            ++ties;
        }
        if (ties)
            qInfo("%lld exact .5 ties rounded differently (expected, see comment)", static_cast<long long>(ties));
    }

    void weightsMatchTorch()
    {
        const json man = manifest();
        {
            const Layer l = loadLayer(man, "small");
            auto d = DynamicLinear::create(l.w, l.out, l.in, Layout::Plain, l.b);
            QVERIFY2(d.ok(), d.ok() ? "" : d.error().oneLine().c_str());
            QCOMPARE(d->weight().params.scale.at(0), man["layers"]["small"]["w_scale"].get<float>());
            const std::vector<std::byte> tq = loadBytes("small_wq.npy");
            QCOMPARE(tq.size(), d->weight().q.size());
            for (size_t i = 0; i < tq.size(); ++i)
                QCOMPARE(int(int8_t(tq[i])), int(d->weight().q[i]));
        }
        {
            // 768x768 weights are multiples of 2^-12 with scale 2^-7: many w/s are exact .5
            // ties, so equal row sums also check round-half-to-even.
            const Layer l = loadLayer(man, "large");
            auto d = DynamicLinear::create(l.w, l.out, l.in, Layout::Plain, l.b);
            QVERIFY(d.ok());
            QCOMPARE(d->weight().params.scale.at(0), man["layers"]["large"]["w_scale"].get<float>());
            const auto& sums = man["layers"]["large"]["wq_row_sums"];
            const auto& abss = man["layers"]["large"]["wq_row_abs_sums"];
            for (int64_t j = 0; j < l.out; ++j) {
                int64_t s = 0, a = 0;
                for (int64_t k = 0; k < l.in; ++k) {
                    s += d->weight().q[size_t(j * l.in + k)];
                    a += std::abs(int(d->weight().q[size_t(j * l.in + k)]));
                }
                QCOMPARE(s, sums[size_t(j)].get<int64_t>());
                QCOMPARE(a, abss[size_t(j)].get<int64_t>());
            }
        }
    }

    void outputsMatchTorch_data() { chooseQuantizationParamsMatchesTorch_data(); }
    void outputsMatchTorch()
    {
        // Bound, per output y[i][j]. Both sides compute the same exact int32 sum over the same
        // int8 weights (checked above) and the same activation bytes except at exact ties,
        // where one byte differs by 1 (checked above). So
        //   |y - y_torch| <= s_a*s_w * sum_{k: byte differs} |q_w[j][k]|       (tie term)
        //                  + 4*eps*(s_a*s_w*sum_k |q_a-z_a|*|q_w[j][k]| + |b_j| + |y_torch|)
        // where the second term covers float rounding: the int32->float conversion is exact
        // (|raw| < 2^24 here), and each side then rounds a scale product, a multiply and a bias
        // add, each within half an ulp of a value bounded by that magnitude.
        // This is far tighter than one activation step per output (s_a*s_w*sum_k|q_w|).
        QFETCH(QString, caseName);
        const std::string name = caseName.toStdString();
        const json man = manifest();
        json c;
        for (const json& e : man["cases"])
            if (e["name"] == name)
                c = e;
        const Layer l = loadLayer(man, c["layer"]);
        std::vector<int64_t> shape;
        const std::vector<float> x = loadF32(name + "_x.npy", &shape);
        const std::vector<float> yt = loadF32(name + "_y_int8_torch.npy");
        const std::vector<float> yf = loadF32(name + "_y_fp32.npy");
        auto d = DynamicLinear::create(l.w, l.out, l.in, Layout::Plain, l.b);
        QVERIFY(d.ok());
        checkAgainstTorch(caseName, *d, l, x, shape[0], loadBytes(name + "_qa.npy"), yt, name == "small_zeros" ? nullptr : &yf);
    }

    // quantize_dynamic with per_channel_dynamic_qconfig: one symmetric scale per output
    // channel. The same bound with each channel's own step.
    void perChannelOutputsMatchTorch()
    {
        const json man = manifest();
        const json& pc = man["per_channel"];
        const std::string name = pc["case"];
        const Layer l = loadLayer(man, pc["layer"]);
        DynamicLinearOptions o;
        o.weightGranularity = Granularity::PerChannel;
        auto d = DynamicLinear::create(l.w, l.out, l.in, Layout::Plain, l.b, o);
        QVERIFY(d.ok());
        const auto& scales = d->weight().params.scale;
        QCOMPARE(int64_t(scales.size()), l.out);
        for (int64_t j = 0; j < l.out; ++j)
            QCOMPARE(scales[size_t(j)], pc["w_scales"][size_t(j)].get<float>());
        const std::vector<std::byte> tq = loadBytes("small_pc_wq.npy");
        QCOMPARE(tq.size(), d->weight().q.size());
        for (size_t i = 0; i < tq.size(); ++i)
            QCOMPARE(int(int8_t(tq[i])), int(d->weight().q[i]));
        std::vector<int64_t> shape;
        const std::vector<float> x = loadF32(name + "_x.npy", &shape);
        const std::vector<float> yf = loadF32(name + "_y_fp32.npy");
        checkAgainstTorch(QString::fromStdString(name + " per-channel"), *d, l, x, shape[0], loadBytes(name + "_qa.npy"),
                          loadF32(name + "_y_int8_torch_per_channel.npy"), &yf);
    }

    void everyIsaGivesIdenticalOutputs_data()
    {
        QTest::addColumn<int>("act");
        QTest::addColumn<int>("gran");
        QTest::newRow("per-tensor-act/per-tensor-w") << int(ActQuant::PerTensor) << int(Granularity::PerTensor);
        QTest::newRow("per-row-act/per-channel-w") << int(ActQuant::PerRow) << int(Granularity::PerChannel);
    }
    void everyIsaGivesIdenticalOutputs()
    {
        QFETCH(int, act);
        QFETCH(int, gran);
        const Layer l = loadLayer(manifest(), "large");
        std::vector<int64_t> shape;
        const std::vector<float> x = loadF32("large_m33_x.npy", &shape);
        std::vector<float> first;
        for (const kernels::GemmKernels* kr : kernels::availableKernels()) {
            for (int threads : {1, 2}) {
                DynamicLinearOptions o;
                o.kernels = kr;
                o.threads = threads;
                o.act = ActQuant(act);
                o.weightGranularity = Granularity(gran);
                auto d = DynamicLinear::create(l.w, l.out, l.in, Layout::Plain, l.b, o);
                QVERIFY(d.ok());
                std::vector<float> y(size_t(33 * l.out));
                d->forward(x.data(), 33, y.data());
                if (first.empty())
                    first = y;
                else if (std::memcmp(first.data(), y.data(), y.size() * 4) != 0)
                    QFAIL(qPrintable(QStringLiteral("%1 with %2 threads differs from %3").arg(QLatin1String(kr->name)).arg(threads)
                                         .arg(QLatin1String(kernels::availableKernels().front()->name))));
            }
        }
    }

    // With two threads each scans half the rows for min/max: a NaN in either half, or an
    // infinity, must still poison the output (per-tensor activations).
    void twoThreadsStillRefuseNonFinite()
    {
        const Layer l = loadLayer(manifest(), "large");
        std::vector<int64_t> shape;
        const std::vector<float> x0 = loadF32("large_m33_x.npy", &shape);
        DynamicLinearOptions o;
        o.threads = 2;
        auto d = DynamicLinear::create(l.w, l.out, l.in, Layout::Plain, l.b, o);
        QVERIFY(d.ok());
        for (const size_t at : {size_t(3), size_t(20 * l.in + 5), x0.size() - 1}) {
            for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
                std::vector<float> x = x0;
                x[at] = bad;
                std::vector<float> y(size_t(33 * l.out), 0.0f);
                d->forward(x.data(), 33, y.data());
                QVERIFY2(std::all_of(y.begin(), y.end(), [](float v) { return std::isnan(v); }),
                         qPrintable(QStringLiteral("bad value at %1 not refused").arg(at)));
            }
        }
    }

    void perRowComposesTheStages()
    {
        // Per-row mode = per-row ChooseQuantizationParams + quantize + reference GEMM + reference epilogue.
        const Layer l = loadLayer(manifest(), "small");
        std::vector<int64_t> shape;
        const std::vector<float> x = loadF32("small_m33_x.npy", &shape);
        const int64_t m = shape[0], k = l.in, n = l.out;
        DynamicLinearOptions o;
        o.act = ActQuant::PerRow;
        o.weightGranularity = Granularity::PerChannel;
        auto d = DynamicLinear::create(l.w, n, k, Layout::Plain, l.b, o);
        QVERIFY(d.ok());
        QCOMPARE(int64_t(d->weight().params.scale.size()), n);
        std::vector<float> y(size_t(m * n));
        d->forward(x.data(), m, y.data());

        std::vector<uint8_t> qa(size_t(m * k));
        std::vector<int32_t> zp(static_cast<size_t>(m)), acc(size_t(m * n)), colSum(size_t(n), 0);
        std::vector<float> sa(static_cast<size_t>(m));
        const auto& ref = *kernels::availableKernels().back();
        for (int64_t i = 0; i < m; ++i) {
            float mn, mx;
            QVERIFY(ref.minMax(x.data() + i * k, k, &mn, &mx));
            const ActParams p = chooseQuantizationParams(mn, mx, 0, 255, true);
            zp[size_t(i)] = p.zeroPoint;
            sa[size_t(i)] = p.scale;
            ref.quantizeU8(x.data() + i * k, k, 1.0f / p.scale, p.zeroPoint, qa.data() + i * k);
        }
        kernels::gemm_u8s8s32_ref(m, n, k, qa.data(), k, d->weight().q.data(), k, acc.data(), n);
        for (int64_t j = 0; j < n; ++j)
            for (int64_t p = 0; p < k; ++p)
                colSum[size_t(j)] += d->weight().q[size_t(j * k + p)];
        kernels::Requant rq;
        rq.aZero = zp.data();
        rq.aZeroStride = 1;
        rq.aScale = sa.data();
        rq.aScaleStride = 1;
        rq.wScale = d->weight().params.scale.data();
        rq.wScaleStride = 1;
        rq.bias = l.b.data();
        std::vector<float> want(size_t(m * n));
        kernels::requant_f32_ref(m, n, acc.data(), n, colSum.data(), rq, want.data(), n);
        QVERIFY(std::memcmp(want.data(), y.data(), y.size() * 4) == 0);

        // And per-row activations are at least as accurate as per-tensor on outlier-heavy rows.
        auto dt = DynamicLinear::create(l.w, n, k, Layout::Plain, l.b);
        std::vector<float> yt(size_t(m * n));
        dt->forward(x.data(), m, yt.data());
        const std::vector<float> yf = loadF32("small_m33_y_fp32.npy");
        QVERIFY(sqnrDb(yf, y) > sqnrDb(yf, yt));
    }

    void transposedLayoutIsTheSameLayer()
    {
        const Layer l = loadLayer(manifest(), "small");
        std::vector<float> wt(l.w.size());
        for (int64_t j = 0; j < l.out; ++j)
            for (int64_t k = 0; k < l.in; ++k)
                wt[size_t(k * l.out + j)] = l.w[size_t(j * l.in + k)];
        auto a = DynamicLinear::create(l.w, l.out, l.in, Layout::Plain, l.b);
        auto b = DynamicLinear::create(wt, l.out, l.in, Layout::InOut, l.b);
        QVERIFY(a.ok() && b.ok());
        const std::vector<float> x = loadF32("small_m8_x.npy");
        std::vector<float> ya(size_t(8 * l.out)), yb(ya.size());
        a->forward(x.data(), 8, ya.data());
        b->forward(x.data(), 8, yb.data());
        QVERIFY(ya == yb);
    }

    void fp32BaselineMatchesTorch()
    {
        const Layer l = loadLayer(manifest(), "large");
        auto f = Fp32Linear::create(l.w, l.out, l.in, Layout::Plain, l.b);
        QVERIFY(f.ok());
        const std::vector<float> x = loadF32("large_m33_x.npy"), yt = loadF32("large_m33_y_fp32.npy");
        std::vector<float> y(yt.size());
        f->forward(x.data(), 33, y.data());
        // Different summation orders: a relative 1e-5 of the row's magnitude.
        const Metrics mt = computeMetrics(yt, y);
        QVERIFY2(mt.sqnrDb > 100.0, qPrintable(QString::number(mt.sqnrDb)));
    }

    void rejectsBadInput()
    {
        std::vector<float> w(12, 0.5f), b(3, 0.0f);
        QVERIFY(!DynamicLinear::create(w, 3, 5, Layout::Plain, b).ok());                    // 12 != 15
        QVERIFY(!DynamicLinear::create(w, 3, 4, Layout::Plain, std::vector<float>(2)).ok());  // bias size
        std::vector<float> wn = w;
        wn[3] = std::nanf("");
        QVERIFY(!DynamicLinear::create(wn, 3, 4, Layout::Plain, b).ok());
        QVERIFY(!DynamicLinear::create(std::vector<float>(size_t(40000)), 1, 40000, Layout::Plain, {}).ok());

        // Non-finite activations cannot be quantized: NaN out, never garbage.
        auto d = DynamicLinear::create(w, 3, 4, Layout::Plain, b);
        QVERIFY(d.ok());
        std::vector<float> x = {1, 2, 3, 4, 1, 2, INFINITY, 4}, y(6, 0.0f);
        d->forward(x.data(), 2, y.data());
        for (float v : y)
            QVERIFY(std::isnan(v));
        DynamicLinearOptions o;
        o.act = ActQuant::PerRow;
        auto dr = DynamicLinear::create(w, 3, 4, Layout::Plain, b, o);
        dr->forward(x.data(), 2, y.data());
        QVERIFY(std::isfinite(y[0]) && std::isnan(y[3]));
    }

    void wholeModelSummary()
    {
        // Two linears (one [in, out]) and an embedding that must be left out.
        Model m;
        m.format = "demo";
        m.tensors.push_back(makeFloatTensor("enc.q.weight", {4, 8}, std::vector<float>(32, 0.25f)));
        m.tensors.push_back(makeFloatTensor("enc.q.bias", {4}, std::vector<float>(4, 0.1f)));
        Tensor kernel = makeFloatTensor("h.0.mlp.c_fc.weight", {8, 6}, std::vector<float>(48, -0.5f));
        kernel.layout = Layout::InOut;
        m.tensors.push_back(kernel);
        m.tensors.push_back(makeFloatTensor("embeddings.word_embeddings.weight", {10, 8}, std::vector<float>(80, 1.0f)));
        auto s = quantizeAllLinear(m, {}, true);
        QVERIFY2(s.ok(), s.ok() ? "" : s.error().oneLine().c_str());
        QCOMPARE(int(s->layers.size()), 2);
        QCOMPARE(s->layers[0].bytesBefore, int64_t(32 * 4 + 4 * 4));
        // int8 weight + one float scale + one int32 zero point + float bias.
        QCOMPARE(s->layers[0].bytesAfter, int64_t(32 + 4 + 4 + 16));
        QVERIFY(s->layers[1].transposed);
        QCOMPARE(s->layers[1].outFeatures, int64_t(6));
        QCOMPARE(s->layers[1].bytesAfter, int64_t(48 + 8));
        QCOMPARE(s->bytesBefore, int64_t(144 + 192));
        QCOMPARE(s->ratio, double(s->bytesBefore) / double(s->bytesAfter));
        QCOMPARE(int(s->linears.size()), 2);
    }
};

QTEST_GUILESS_MAIN(TestDynamicLinear)
#include "tst_dynamiclinear.moc"
