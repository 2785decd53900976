// Sessions (per-layer choices as JSON): every spec field survives the round trip bit for
// bit, bad files fail with a reason naming the field, the fingerprint tells models apart,
// applying to another model drops and lists the names it lacks, and saving is atomic and
// never writes over the model.
#include <QTemporaryDir>
#include <QTest>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/demomodel.h"
#include "plan/session.h"
#include "tensor.h"

using namespace quantlens;

Q_DECLARE_METATYPE(quantlens::QuantSpec)

namespace {

QuantSpec spec(Scheme s, Granularity g, CalibMethod c)
{
    QuantSpec q;
    q.scheme = s;
    q.granularity = g;
    q.calib = c;
    return q;
}

bool sameBits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void compareSpecs(const QuantSpec& a, const QuantSpec& b)
{
    QCOMPARE(int(a.scheme), int(b.scheme));
    QCOMPARE(int(a.granularity), int(b.granularity));
    QCOMPARE(a.groupSize, b.groupSize);
    QCOMPARE(a.bits, b.bits);
    QCOMPARE(a.isUnsigned, b.isUnsigned);
    QCOMPARE(a.reduceRange, b.reduceRange);
    QCOMPARE(int(a.calib), int(b.calib));
    if (a.calib == CalibMethod::Percentile)
        QCOMPARE(a.percentile, b.percentile);
    if (a.calib == CalibMethod::Manual) {
        QVERIFY2(sameBits(a.manualLo, b.manualLo), qPrintable(QString::number(double(b.manualLo), 'g', 17)));
        QVERIFY2(sameBits(a.manualHi, b.manualHi), qPrintable(QString::number(double(b.manualHi), 'g', 17)));
    }
}

Model smallModel(std::vector<std::pair<std::string, std::vector<int64_t>>> shapes)
{
    Model m;
    for (auto& [name, shape] : shapes) {
        int64_t n = 1;
        for (int64_t d : shape)
            n *= d;
        m.tensors.push_back(makeFloatTensor(name, shape, std::vector<float>(size_t(n), 0.5f)));
    }
    return m;
}

}  // namespace

class TestSession : public QObject {
    Q_OBJECT
private slots:
    void specRoundTrip_data()
    {
        QTest::addColumn<QuantSpec>("s");
        QTest::newRow("seed per tensor minmax") << spec(Scheme::Seed, Granularity::PerTensor, CalibMethod::MinMax);
        QuantSpec manual = spec(Scheme::TorchSymmetric, Granularity::PerTensor, CalibMethod::Manual);
        manual.manualLo = -0.123456789f;  // not exactly representable: the float's bits must survive
        manual.manualHi = 0.74000001f;
        QTest::newRow("torch-symmetric manual range") << manual;
        QuantSpec tiny = manual;
        tiny.manualLo = -1.17549435e-38f;
        tiny.manualHi = 3.4028235e38f;
        QTest::newRow("manual range at float limits") << tiny;
        QuantSpec pct = spec(Scheme::TorchAffine, Granularity::PerChannel, CalibMethod::Percentile);
        pct.percentile = 99.987654321;
        pct.isUnsigned = true;
        pct.reduceRange = true;
        QTest::newRow("affine uint8 reduce_range percentile") << pct;
        QuantSpec grp = spec(Scheme::NarrowSymmetric, Granularity::PerGroup, CalibMethod::Mse);
        grp.groupSize = 128;
        grp.bits = 4;
        QTest::newRow("narrow 4-bit group:128 mse") << grp;
        QTest::newRow("q8_0") << spec(Scheme::Q8_0, Granularity::PerGroup, CalibMethod::MinMax);
        QTest::newRow("entropy") << spec(Scheme::TorchSymmetric, Granularity::PerChannel, CalibMethod::Entropy);
        QTest::newRow("hist-l2") << spec(Scheme::TorchAffine, Granularity::PerTensor, CalibMethod::HistogramL2);
    }
    void specRoundTrip()
    {
        QFETCH(QuantSpec, s);
        if (s.scheme == Scheme::Q8_0)
            s.groupSize = 32;
        Session in;
        in.defaultSpec = s;
        in.overrides["a.weight"] = s;
        in.modelPath = "/models/x.safetensors";
        in.modelTensors = 7;
        in.modelFingerprint = "0123456789abcdef";
        auto out = sessionFromJson(sessionToJson(in));
        QVERIFY2(out, out ? "" : out.error().oneLine().c_str());
        compareSpecs(s, out->defaultSpec);
        QCOMPARE(out->overrides.size(), size_t(1));
        compareSpecs(s, out->overrides.at("a.weight"));
        QCOMPARE(out->modelPath, in.modelPath);
        QCOMPARE(out->modelTensors, int64_t(7));
        QCOMPARE(out->modelFingerprint, in.modelFingerprint);
    }

    void namesRoundTrip()
    {
        Session in;
        in.exportSelection = {"b.weight", "a.weight", "name with \"quotes\" and / slash"};
        in.keepFloat = {"a.weight"};
        auto out = sessionFromJson(sessionToJson(in));
        QVERIFY(out);
        QCOMPARE(out->exportSelection, in.exportSelection);
        QCOMPARE(out->keepFloat, in.keepFloat);
        QVERIFY(out->overrides.empty());
    }

    void specForFallsBackToDefault()
    {
        Session s;
        s.defaultSpec.scheme = Scheme::TorchAffine;
        s.overrides["x"].scheme = Scheme::Q8_0;
        QCOMPARE(int(s.specFor("x").scheme), int(Scheme::Q8_0));
        QCOMPARE(int(s.specFor("y").scheme), int(Scheme::TorchAffine));
    }

    void badFiles_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<QString>("reason");
        QTest::newRow("not json") << "{ nope" << "not valid JSON";
        QTest::newRow("array") << "[1, 2]" << "top level";
        QTest::newRow("no version") << R"({"layers": {}})" << "quantlens_session";
        QTest::newRow("future version") << R"({"quantlens_session": 99})" << "version 99";
        QTest::newRow("unknown scheme")
            << R"({"quantlens_session": 1, "default": {"scheme": "fp4", "granularity": "tensor", "calib": "minmax"}})"
            << "default.scheme";
        QTest::newRow("bad calib")
            << R"({"quantlens_session": 1, "layers": {"w": {"scheme": "seed", "granularity": "tensor", "calib": "manual:x,y"}}})"
            << "layers[\"w\"].calib";
        QTest::newRow("bad granularity")
            << R"({"quantlens_session": 1, "default": {"scheme": "seed", "granularity": "group:0", "calib": "minmax"}})"
            << "default.granularity";
        QTest::newRow("bits out of range")
            << R"({"quantlens_session": 1, "default": {"scheme": "seed", "granularity": "tensor", "calib": "minmax", "bits": 16}})"
            << "default.bits";
        QTest::newRow("scheme not a string")
            << R"({"quantlens_session": 1, "default": {"scheme": 3, "granularity": "tensor", "calib": "minmax"}})"
            << "default.scheme";
        QTest::newRow("layers not an object") << R"({"quantlens_session": 1, "layers": []})" << "layers must be";
        QTest::newRow("selection of numbers") << R"({"quantlens_session": 1, "export_selection": [1]})" << "export_selection";
        QTest::newRow("keep not an array") << R"({"quantlens_session": 1, "keep_float32": "w"})" << "keep_float32";
    }
    void badFiles()
    {
        QFETCH(QString, text);
        QFETCH(QString, reason);
        auto r = sessionFromJson(text.toStdString());
        QVERIFY(!r);
        const QString line = QString::fromStdString(r.error().oneLine());
        QVERIFY2(line.contains(reason), qPrintable(line));
        QVERIFY(!line.contains(QLatin1Char('\n')));
    }

    void unknownKeysIgnored()
    {
        auto r = sessionFromJson(R"({"quantlens_session": 1, "comment": "by hand", "layers": {}})");
        QVERIFY(r);
    }

    void fingerprint()
    {
        const Model a = smallModel({{"w", {4, 3}}, {"b", {4}}});
        const Model same = smallModel({{"w", {4, 3}}, {"b", {4}}});
        const Model otherShape = smallModel({{"w", {3, 4}}, {"b", {4}}});
        const Model otherName = smallModel({{"w2", {4, 3}}, {"b", {4}}});
        // Names are separated, so "ab"+"c" is not "a"+"bc".
        const Model split1 = smallModel({{"ab", {1}}, {"c", {1}}});
        const Model split2 = smallModel({{"a", {1}}, {"bc", {1}}});
        QCOMPARE(modelFingerprint(a), modelFingerprint(same));
        QCOMPARE(modelFingerprint(a).size(), size_t(16));
        QVERIFY(modelFingerprint(a) != modelFingerprint(otherShape));
        QVERIFY(modelFingerprint(a) != modelFingerprint(otherName));
        QVERIFY(modelFingerprint(split1) != modelFingerprint(split2));
        QCOMPARE(modelFingerprint(makeDemoModel()), modelFingerprint(makeDemoModel()));
    }

    void applyToAnotherModel()
    {
        const Model m = smallModel({{"w", {4, 3}}, {"b", {4}}});
        Session s;
        s.modelFingerprint = "ffffffffffffffff";
        s.overrides["w"].calib = CalibMethod::Mse;
        s.overrides["gone.weight"].calib = CalibMethod::Entropy;
        s.exportSelection = {"w", "also.gone"};
        s.keepFloat = {"gone.weight"};
        SessionApplied a = applySession(s, m);
        QVERIFY(!a.sameModel);
        QCOMPARE(a.session.overrides.size(), size_t(1));
        QCOMPARE(int(a.session.overrides.at("w").calib), int(CalibMethod::Mse));
        QCOMPARE(a.session.exportSelection, std::set<std::string>{"w"});
        QVERIFY(a.session.keepFloat.empty());
        QCOMPARE(a.missing, (std::vector<std::string>{"also.gone", "gone.weight"}));

        s.modelFingerprint = modelFingerprint(m);
        QVERIFY(applySession(s, m).sameModel);
    }

    void saveAndLoad()
    {
        QTemporaryDir dir;
        const std::string path = dir.filePath(QStringLiteral("tuning.json")).toStdString();
        Session s;
        s.overrides["w"].calib = CalibMethod::Manual;
        s.overrides["w"].manualLo = -0.25f;
        s.overrides["w"].manualHi = 0.5f;
        QVERIFY(saveSession(path, s));
        auto back = loadSession(path);
        QVERIFY2(back, back ? "" : back.error().oneLine().c_str());
        compareSpecs(s.overrides["w"], back->overrides.at("w"));
        // No temporaries left beside it.
        int files = 0;
        for (const auto& e : std::filesystem::directory_iterator(dir.path().toStdString())) {
            (void)e;
            ++files;
        }
        QCOMPARE(files, 1);
    }

    void neverWritesOverTheModel()
    {
        QTemporaryDir dir;
        const std::string model = dir.filePath(QStringLiteral("model.safetensors")).toStdString();
        { std::ofstream(model) << "weights"; }
        Session s;
        s.modelPath = model;
        auto st = saveSession(model, s);
        QVERIFY(!st);
        std::ifstream in(model);
        std::string text;
        std::getline(in, text);
        QCOMPARE(text, std::string("weights"));
    }

    void loadErrorsNameTheFile()
    {
        QTemporaryDir dir;
        const std::string missing = dir.filePath(QStringLiteral("none.json")).toStdString();
        auto r = loadSession(missing);
        QVERIFY(!r);
        QVERIFY(QString::fromStdString(r.error().oneLine()).contains(QStringLiteral("none.json")));
        const std::string bad = dir.filePath(QStringLiteral("bad.json")).toStdString();
        { std::ofstream(bad) << "{\"quantlens_session\": 9}"; }
        auto r2 = loadSession(bad);
        QVERIFY(!r2);
        QVERIFY(QString::fromStdString(r2.error().oneLine()).contains(QStringLiteral("bad.json")));
    }
};

QTEST_GUILESS_MAIN(TestSession)
#include "tst_session.moc"
