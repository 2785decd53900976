// AtomicFile and the export front: a final name only ever holds a complete file, an
// existing file is replaced only on success, cancel/failure leave no temporaries, and
// no export may write over one of the model's own files.
#include <QTemporaryDir>
#include <QTest>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomicfile.h"
#include "io/demomodel.h"
#include "io/exporter.h"
#include "layers.h"
#include "testsupport.h"

using namespace quantlens;
namespace fs = std::filesystem;

Q_DECLARE_METATYPE(quantlens::ExportFormat)

namespace {

std::string slurp(const std::string& p)
{
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void spit(const std::string& p, const std::string& text)
{
    std::ofstream out(p, std::ios::binary);
    out << text;
}

// Names in `dir` (recursively) that look like our temporaries.
QStringList leftovers(const std::string& dir)
{
    QStringList out;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dir, ec))
        if (e.path().filename().string().find("quantlens-tmp") != std::string::npos)
            out << QString::fromStdString(e.path().string());
    return out;
}

std::vector<ExportEntry> quantizeAllLinear(const Model& m)
{
    std::vector<ExportEntry> out;
    QuantSpec spec;
    for (const LinearLayer& l : findLinearLayers(m)) {
        auto e = quantizeForExport(m, l.weight->name, spec);
        if (!e)
            qFatal("quantizeForExport: %s", e.error().oneLine().c_str());
        out.push_back(std::move(*e));
    }
    return out;
}

}  // namespace

class TestExportAtomic : public QObject {
    Q_OBJECT
private slots:
    void commitWritesCompleteFile()
    {
        QTemporaryDir tmp;
        const std::string p = tmp.filePath(QStringLiteral("out.bin")).toStdString();
        {
            auto f = AtomicFile::create(p, {});
            QVERIFY2(f.ok(), f.ok() ? "" : f.error().oneLine().c_str());
            QVERIFY(f->write("hello ", 6).ok());
            QVERIFY(!fs::exists(p));  // nothing under the final name while writing
            QVERIFY(fs::exists(f->tempPath()));
            QCOMPARE(fs::path(f->tempPath()).parent_path(), fs::path(p).parent_path());
            QVERIFY(f->write("world", 5).ok());
            QCOMPARE(f->bytesWritten(), int64_t(11));
            QVERIFY(f->commit().ok());
        }
        QCOMPARE(slurp(p), std::string("hello world"));
        QVERIFY(leftovers(tmp.path().toStdString()).isEmpty());
        // Ordinary permissions, not mkstemp's 0600.
        const auto perms = fs::status(p).permissions();
        QVERIFY((perms & fs::perms::owner_read) != fs::perms::none);
        const mode_t mask = ::umask(022);
        ::umask(mask);
        QCOMPARE((perms & fs::perms::group_read) != fs::perms::none, (mask & 040) == 0);
    }

    void existingFileReplacedOnlyOnSuccess_data()
    {
        QTest::addColumn<bool>("commit");
        QTest::newRow("committed: replaced") << true;
        QTest::newRow("discarded: old content kept") << false;
    }
    void existingFileReplacedOnlyOnSuccess()
    {
        QFETCH(bool, commit);
        QTemporaryDir tmp;
        const std::string p = tmp.filePath(QStringLiteral("out.bin")).toStdString();
        spit(p, "old");
        {
            auto f = AtomicFile::create(p, {});
            QVERIFY(f.ok());
            QVERIFY(f->write("new content", 11).ok());
            QCOMPARE(slurp(p), std::string("old"));
            if (commit)
                QVERIFY(f->commit().ok());
            // else: the destructor discards
        }
        QCOMPARE(slurp(p), std::string(commit ? "new content" : "old"));
        QVERIFY2(leftovers(tmp.path().toStdString()).isEmpty(), qPrintable(leftovers(tmp.path().toStdString()).join(u',')));
    }

    void refusesAnInput_data()
    {
        QTest::addColumn<QString>("how");
        QTest::newRow("same path") << QStringLiteral("same");
        QTest::newRow("dot-dot path") << QStringLiteral("dotdot");
        QTest::newRow("symlink to the input") << QStringLiteral("symlink");
        QTest::newRow("hard link to the input") << QStringLiteral("hardlink");
    }
    void refusesAnInput()
    {
        QFETCH(QString, how);
        QTemporaryDir tmp;
        const std::string input = tmp.filePath(QStringLiteral("model.safetensors")).toStdString();
        spit(input, "the model");
        fs::create_directory(tmp.filePath(QStringLiteral("sub")).toStdString());
        std::string target = input;
        if (how == u"dotdot")
            target = tmp.filePath(QStringLiteral("sub/../model.safetensors")).toStdString();
        else if (how == u"symlink") {
            target = tmp.filePath(QStringLiteral("link.safetensors")).toStdString();
            fs::create_symlink(input, target);
        } else if (how == u"hardlink") {
            target = tmp.filePath(QStringLiteral("hard.safetensors")).toStdString();
            fs::create_hard_link(input, target);
        }
        auto f = AtomicFile::create(target, {"/nonexistent/other", input});
        QVERIFY(!f.ok());
        QCOMPARE(f.error().code, std::string("same-as-input"));
        QCOMPARE(slurp(input), std::string("the model"));
        QVERIFY(leftovers(tmp.path().toStdString()).isEmpty());
        // A different file in the same folder is fine.
        auto g = AtomicFile::create(tmp.filePath(QStringLiteral("other.safetensors")).toStdString(), {input});
        QVERIFY(g.ok());
    }

    void missingFolderIsAnError()
    {
        QTemporaryDir tmp;
        auto f = AtomicFile::create(tmp.filePath(QStringLiteral("no/such/dir/x.h5")).toStdString(), {});
        QVERIFY(!f.ok());
        QCOMPARE(f.error().code, std::string("no-directory"));
    }

    void formatForPath_data()
    {
        QTest::addColumn<QString>("path");
        QTest::addColumn<int>("format");  // -1: error
        QTest::newRow("h5") << QStringLiteral("x.h5") << int(ExportFormat::Hdf5);
        QTest::newRow("hdf5 upper case") << QStringLiteral("x.HDF5") << int(ExportFormat::Hdf5);
        QTest::newRow("safetensors") << QStringLiteral("a/b.safetensors") << int(ExportFormat::SafetensorsInt8);
        QTest::newRow("new plain folder") << QStringLiteral("outdir") << int(ExportFormat::NpyFolder);
        QTest::newRow("forced folder with a dot") << QStringLiteral("out.v2/") << int(ExportFormat::NpyFolder);
        QTest::newRow("onnx") << QStringLiteral("model.onnx") << int(ExportFormat::OnnxQdq);
        QTest::newRow("unknown extension") << QStringLiteral("model.xyz") << -1;
        QTest::newRow("empty") << QString() << -1;
    }
    void formatForPath()
    {
        QFETCH(QString, path);
        QFETCH(int, format);
        QTemporaryDir tmp;
        const std::string p = path.isEmpty() ? std::string() : tmp.filePath(path).toStdString() + (path.endsWith(u'/') ? "/" : "");
        auto f = exportFormatForPath(p);
        QCOMPARE(f.ok() ? int(*f) : -1, format);
    }

    void existingFolderIsNpy()
    {
        QTemporaryDir tmp;
        const std::string d = tmp.filePath(QStringLiteral("exp.h5")).toStdString();
        fs::create_directory(d);  // a folder wins over its extension
        auto f = exportFormatForPath(d);
        QVERIFY(f.ok());
        QCOMPARE(*f, ExportFormat::NpyFolder);
    }

    void cancelLeavesNothing_data()
    {
        QTest::addColumn<ExportFormat>("format");
        QTest::addColumn<QString>("out");
        QTest::addColumn<int>("cancelAt");  // progress call that returns false
        QTest::newRow("hdf5, first tensor") << ExportFormat::Hdf5 << QStringLiteral("x.h5") << 0;
        QTest::newRow("hdf5, midway") << ExportFormat::Hdf5 << QStringLiteral("x.h5") << 3;
        QTest::newRow("hdf5, while finishing") << ExportFormat::Hdf5 << QStringLiteral("x.h5") << 6;
        QTest::newRow("safetensors, midway") << ExportFormat::SafetensorsInt8 << QStringLiteral("x.safetensors") << 5;
        QTest::newRow("fake-quant, midway") << ExportFormat::SafetensorsFakeQuant << QStringLiteral("f.safetensors") << 7;
        QTest::newRow("npy folder, midway") << ExportFormat::NpyFolder << QStringLiteral("npy") << 2;
        QTest::newRow("npy folder, while finishing") << ExportFormat::NpyFolder << QStringLiteral("npy") << 6;
    }
    void cancelLeavesNothing()
    {
        QFETCH(ExportFormat, format);
        QFETCH(QString, out);
        QFETCH(int, cancelAt);
        Model small = makeDemoModel(1, 32);
        const std::vector<ExportEntry> entries = quantizeAllLinear(small);
        QCOMPARE(entries.size(), size_t(6));  // q, k, v, out_lin, lin1, lin2
        QTemporaryDir tmp;
        const std::string path = tmp.filePath(out).toStdString();
        if (format != ExportFormat::NpyFolder)
            spit(path, "previous export");
        ExportOptions o;
        o.format = format;
        o.outPath = path;
        int calls = 0;
        auto r = exportModel(small, entries, o, [&](double f, const std::string&) {
            if (f < 0.0 || f > 1.0)
                qWarning("progress out of range: %f", f);
            return calls++ != cancelAt;
        });
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, std::string("cancelled"));
        QVERIFY2(leftovers(tmp.path().toStdString()).isEmpty(), qPrintable(leftovers(tmp.path().toStdString()).join(u',')));
        if (format == ExportFormat::NpyFolder)
            QVERIFY(fs::is_empty(path));
        else
            QCOMPARE(slurp(path), std::string("previous export"));
    }

    void exportOntoTheInputIsRefused_data()
    {
        QTest::addColumn<ExportFormat>("format");
        QTest::newRow("hdf5") << ExportFormat::Hdf5;
        QTest::newRow("safetensors int8") << ExportFormat::SafetensorsInt8;
        QTest::newRow("safetensors fake-quant") << ExportFormat::SafetensorsFakeQuant;
    }
    void exportOntoTheInputIsRefused()
    {
        QFETCH(ExportFormat, format);
        QTemporaryDir tmp;
        Model m = makeDemoModel(1, 32);
        const std::string input = tmp.filePath(format == ExportFormat::Hdf5 ? QStringLiteral("model.h5") : QStringLiteral("model.safetensors")).toStdString();
        spit(input, "original bytes");
        m.files = {input};  // as if the model had been read from there
        const auto entries = quantizeAllLinear(m);
        ExportOptions o;
        o.format = format;
        o.outPath = input;
        auto r = exportModel(m, entries, o);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, std::string("same-as-input"));
        QCOMPARE(slurp(input), std::string("original bytes"));
        QVERIFY(leftovers(tmp.path().toStdString()).isEmpty());
    }

    void npyFolderNeverOverwritesAnInput()
    {
        // The input sits in the target folder under the name an export file would take.
        QTemporaryDir tmp;
        Model m = makeDemoModel(1, 32);
        const auto entries = quantizeAllLinear(m);
        const std::string clash = tmp.filePath(QStringLiteral("manifest.json")).toStdString();
        spit(clash, "{}");
        m.files = {clash};
        ExportOptions o;
        o.format = ExportFormat::NpyFolder;
        o.outPath = tmp.path().toStdString();
        auto r = exportModel(m, entries, o);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, std::string("same-as-input"));
        QCOMPARE(slurp(clash), std::string("{}"));
        QCOMPARE(int(std::distance(fs::directory_iterator(o.outPath), fs::directory_iterator())), 1);
    }
};

QTEST_GUILESS_MAIN(TestExportAtomic)
#include "tst_exportatomic.moc"
