// The export dialog's llama-quantize mixes: offered for a GGUF model, the plan takes the
// mix's tensors and types (a tuned layer keeps its spec, mapped to the nearest ggml type),
// other formats are refused in the summary, and the written file has the mix's file type.
#include <QComboBox>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

#include "exportdialog.h"
#include "model.h"
#include "testsupport.h"

using namespace quantlens;
using namespace quantlens::ui;

class TestExportDialogMix : public QObject {
    Q_OBJECT
private slots:
    void q4KMFromTheDialog()
    {
        QL_REQUIRE_SHARED_MODELS();
        const QString path = test::sharedModel(QStringLiteral("stories260K.gguf"));
        auto m = openModel(path.toStdString());
        QVERIFY(m.ok());
        auto model = std::make_shared<const Model>(std::move(*m));
        Session s;
        QuantSpec affine4;
        affine4.scheme = Scheme::TorchAffine;
        affine4.bits = 4;
        affine4.granularity = Granularity::PerGroup;
        affine4.groupSize = 32;
        s.overrides["blk.0.attn_q.weight"] = affine4;
        ExportDialog d(model, s, path);
        const int mixAt = d.schemeBox()->findText(QStringLiteral("q4_k_m"), Qt::MatchContains);
        QVERIFY(mixAt >= 0);
        d.schemeBox()->setCurrentIndex(mixAt);

        // Not GGUF: nothing to export, and the summary says why.
        d.formatBox()->setCurrentIndex(d.formatBox()->findData(int(ExportFormat::Hdf5)));
        QVERIFY(d.plan().items.empty());
        QVERIFY(d.summaryLabel()->text().contains(QStringLiteral("GGUF")));
        QVERIFY(!d.exportButton()->isEnabled());

        d.formatBox()->setCurrentIndex(d.formatBox()->findData(int(ExportFormat::Gguf)));
        const ExportPlan p = d.plan();
        QVERIFY(p.mix && *p.mix == GgufMix::Q4_K_M);
        QCOMPARE(p.items.size(), size_t(37));  // every matrix; the 11 norms stay
        int tuned = 0;
        for (const ExportPlanItem& it : p.items)
            tuned += it.tuned ? 1 : 0;
        QCOMPARE(tuned, 1);
        QVERIFY(d.summaryLabel()->text().contains(QStringLiteral("general.file_type 15")));

        QTemporaryDir tmp;
        const QString out = tmp.filePath(QStringLiteral("mix.gguf"));
        d.setOutputPath(out);
        QSignalSpy done(&d, &ExportDialog::exportFinished);
        d.startExport();
        QVERIFY(done.wait(60000));
        QCOMPARE(done.first().first().toBool(), true);
        const QStringList warnings = d.lastOutcome()->warnings;
        QVERIFY2(warnings.filter(QStringLiteral("blk.0.attn_q.weight")).join(u' ').contains(QStringLiteral("-> q4_1")),
                 qPrintable(warnings.join(u'\n')));
        auto written = openModel(out.toStdString());
        QVERIFY(written.ok());
        std::string fileType;
        for (const auto& [k, v] : written->metadata)
            if (k == "general.file_type")
                fileType = v;
        QCOMPARE(fileType, std::string("15"));
        QCOMPARE(int(written->find("blk.0.attn_q.weight")->dtype), int(DType::Q4_1));
        QCOMPARE(int(written->find("output.weight")->dtype), int(DType::Q8_0));
    }
};

QTEST_MAIN(TestExportDialogMix)
#include "tst_exportdialogmix.moc"
