// The export dialog's plan: which tensors with which spec, the byte summary (equal to
// what quantizing really produces), and the quantize-then-write job with cancel.
#include <QTemporaryDir>
#include <QTest>

#include <filesystem>

#include "io/demomodel.h"
#include "tasks/exportplan.h"
#include "layers.h"
#include "testsupport.h"

using namespace quantlens;

Q_DECLARE_METATYPE(quantlens::QuantSpec)

class TestExportPlan : public QObject {
    Q_OBJECT
private:
    Model demo = makeDemoModel();

private slots:
    void allLinearFollowsTheModel()
    {
        Session s;
        const ExportPlan p = planExport(demo, s, {});
        const auto layers = findLinearLayers(demo);
        QCOMPARE(p.items.size(), layers.size());
        for (size_t i = 0; i < layers.size(); ++i) {
            QCOMPARE(p.items[i].tensor, layers[i].weight->name);
            QVERIFY(!p.items[i].tuned);
        }
        QVERIFY(p.keptFloat.empty());
    }

    void overridesAndKeepFloat()
    {
        const auto layers = findLinearLayers(demo);
        const std::string tuned = layers[1].weight->name, kept = layers[2].weight->name;
        Session s;
        s.defaultSpec.scheme = Scheme::TorchSymmetric;
        s.overrides[tuned].scheme = Scheme::Seed;
        s.overrides[tuned].calib = CalibMethod::Manual;
        s.overrides[tuned].manualLo = -0.01f;
        s.overrides[tuned].manualHi = 0.02f;
        s.keepFloat = {kept};

        ExportPlan p = planExport(demo, s, {});
        QCOMPARE(p.items.size(), layers.size() - 1);
        QCOMPARE(p.keptFloat, std::vector<std::string>{kept});
        for (const ExportPlanItem& it : p.items) {
            QVERIFY(it.tensor != kept);
            QCOMPARE(it.tuned, it.tensor == tuned);
            QCOMPARE(int(it.spec.scheme), int(it.tensor == tuned ? Scheme::Seed : Scheme::TorchSymmetric));
        }

        ExportPlanOptions plain;
        plain.useOverrides = false;
        plain.honourKeepFloat = false;
        p = planExport(demo, s, plain);
        QCOMPARE(p.items.size(), layers.size());
        for (const ExportPlanItem& it : p.items)
            QCOMPARE(int(it.spec.scheme), int(Scheme::TorchSymmetric));
    }

    void selectedInFileOrder()
    {
        Session s;
        // A set sorts by name; the plan must list the model's order instead.
        const auto layers = findLinearLayers(demo);
        s.exportSelection = {layers.back().weight->name, layers.front().weight->name, "not.in.model"};
        ExportPlanOptions o;
        o.choice = ExportChoice::Selected;
        const ExportPlan p = planExport(demo, s, o);
        QCOMPARE(p.items.size(), size_t(2));
        QCOMPARE(p.items[0].tensor, layers.front().weight->name);
        QCOMPARE(p.items[1].tensor, layers.back().weight->name);
        QCOMPARE(p.skipped, std::vector<std::string>{"not.in.model"});
    }

    void sizesEqualWhatQuantizingProduces_data()
    {
        QTest::addColumn<QuantSpec>("spec");
        QuantSpec s;
        QTest::newRow("seed per tensor") << s;
        s.scheme = Scheme::TorchSymmetric;
        s.granularity = Granularity::PerChannel;
        QTest::newRow("torch-symmetric per channel") << s;
        s.scheme = Scheme::TorchAffine;
        s.granularity = Granularity::PerGroup;
        s.groupSize = 100;  // does not divide 768: the last group is short
        QTest::newRow("affine group:100") << s;
        s.bits = 4;
        s.groupSize = 128;
        QTest::newRow("affine 4-bit group:128") << s;
        QuantSpec q;
        q.scheme = Scheme::Q8_0;
        q.granularity = Granularity::PerGroup;
        q.groupSize = 32;
        QTest::newRow("q8_0") << q;
    }
    void sizesEqualWhatQuantizingProduces()
    {
        QFETCH(QuantSpec, spec);
        Session s;
        s.defaultSpec = spec;
        const ExportPlan p = planExport(demo, s, {});
        const ExportSizes est = estimateExportSizes(demo, p);
        int64_t before = 0, after = 0;
        for (const ExportPlanItem& it : p.items) {
            auto e = quantizeForExport(demo, it.tensor, it.spec);
            QVERIFY2(e, e ? "" : e.error().oneLine().c_str());
            before += demo.find(it.tensor)->storedBytes();
            after += e->quantized.bytesAfter();
        }
        QCOMPARE(est.quantizedBefore, before);
        QCOMPARE(est.quantizedAfter, after);
        int64_t model = 0;
        for (const Tensor& t : demo.tensors)
            model += t.storedBytes();
        QCOMPARE(est.modelBefore, model);
        QCOMPARE(est.modelAfter, model - before + after);
        if (spec.bits == 8 && spec.granularity != Granularity::PerGroup)
            QVERIFY2(est.ratio() > 3.9 && est.ratio() <= 4.0, qPrintable(QString::number(est.ratio())));
    }

    void runWritesAndCancels()
    {
        QTemporaryDir dir;
        Session s;
        s.defaultSpec.scheme = Scheme::TorchSymmetric;
        const ExportPlan p = planExport(demo, s, {});
        ExportOptions o;
        o.format = ExportFormat::SafetensorsInt8;
        o.outPath = dir.filePath(QStringLiteral("out.safetensors")).toStdString();

        std::vector<double> seen;
        auto r = runExportPlan(demo, p, o, [&](double f, const std::string&) {
            seen.push_back(f);
            return true;
        });
        QVERIFY2(r, r ? "" : r.error().oneLine().c_str());
        QVERIFY(std::filesystem::exists(o.outPath));
        QVERIFY(!seen.empty());
        for (size_t i = 1; i < seen.size(); ++i)
            QVERIFY(seen[i] >= seen[i - 1]);
        QVERIFY(seen.front() >= 0.0 && seen.back() <= 1.0);

        // Cancel in the quantizing half and in the writing half: nothing under the name.
        for (double stopAt : {0.2, 0.75}) {
            o.outPath = dir.filePath(QStringLiteral("cancelled-%1.safetensors").arg(stopAt)).toStdString();
            auto c = runExportPlan(demo, p, o, [&](double f, const std::string&) { return f < stopAt; });
            QVERIFY(!c);
            QCOMPARE(c.error().code, std::string("cancelled"));
            QVERIFY(!std::filesystem::exists(o.outPath));
        }

        Session none;
        ExportPlanOptions sel;
        sel.choice = ExportChoice::Selected;
        auto empty = runExportPlan(demo, planExport(demo, none, sel), o);
        QVERIFY(!empty);
        QCOMPARE(empty.error().code, std::string("nothing-to-export"));
    }
};

QTEST_GUILESS_MAIN(TestExportPlan)
#include "tst_exportplan.moc"
