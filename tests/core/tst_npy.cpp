// .npy / .npz reader: fixtures and the real MLX npz compared with values numpy computed
// (tests/scripts/make_npy_fixtures.py), plus the malformed corpus.
#include <QTest>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/npy.h"
#include "model.h"
#include "readertestutil.h"
#include "testsupport.h"

using namespace quantlens;
using nlohmann::json;

namespace {

std::string str(const QString& s) { return s.toStdString(); }

json loadJson(const QString& rel) { return test::loadJson(test::dataPath(rel)); }
using test::Stats;
using test::statsOf;

bool closeRel(double a, double b) { return std::abs(a - b) <= 1e-6 * std::max(std::abs(b), 1e-9); }

void compareModel(const Model& m, const json& exp)
{
    QCOMPARE(m.format, exp.at("format").get<std::string>());
    QCOMPARE(m.files.size(), size_t(1));
    const auto& tensors = exp.at("tensors");
    QCOMPARE(m.tensors.size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const Tensor& t = m.tensors[i];
        const json& e = tensors[i];
        const QByteArray where = QByteArray::fromStdString("tensor " + std::to_string(i) + " '" + t.name + "'");
        QVERIFY2(t.name == e.at("name").get<std::string>(), where.constData());
        QVERIFY2(t.shape == e.at("shape").get<std::vector<int64_t>>(), where.constData());
        QVERIFY2(dtypeName(t.dtype) == e.at("dtype").get<std::string>(), where.constData());
        if (e.contains("bigEndian"))
            QVERIFY2(t.bigEndian == e.at("bigEndian").get<bool>(), where.constData());
        if (e.contains("fortran"))
            QVERIFY2(t.isContiguous() != e.at("fortran").get<bool>(), where.constData());
        auto values = t.toFloat();
        QVERIFY2(values.ok(), (where + ": " + QByteArray::fromStdString(values.ok() ? "" : values.error().oneLine())).constData());
        QCOMPARE(int64_t(values->size()), t.numel());
        if (e.at("stats").is_null()) {
            QCOMPARE(t.numel(), int64_t(0));
            continue;
        }
        const Stats s = statsOf(*values);
        QCOMPARE(s.nonFinite, int64_t(0));
        const json& es = e.at("stats");
        QVERIFY2(s.min == es.at("min").get<double>(), where.constData());
        QVERIFY2(s.max == es.at("max").get<double>(), where.constData());
        QVERIFY2(closeRel(s.mean, es.at("mean").get<double>()),
                 (where + " mean " + QByteArray::number(s.mean, 'g', 17)).constData());
        QVERIFY2(closeRel(s.std, es.at("std").get<double>()),
                 (where + " std " + QByteArray::number(s.std, 'g', 17)).constData());
        for (const auto& sample : e.at("samples")) {
            const size_t at = sample.at(0).get<size_t>();
            QVERIFY(at < values->size());
            QVERIFY2((*values)[at] == float(sample.at(1).get<double>()),
                     (where + " value " + QByteArray::number(qulonglong(at))).constData());
        }
    }
}

}  // namespace

class TestNpy : public QObject {
    Q_OBJECT

private slots:
    void fixtures_data()
    {
        QTest::addColumn<QString>("file");
        const json all = loadJson(QStringLiteral("npy/expected.json"));
        for (auto it = all.begin(); it != all.end(); ++it)
            QTest::newRow(it.key().c_str()) << QString::fromStdString(it.key());
        if (all.empty())
            QTest::newRow("expected.json-missing") << QString();
    }
    void fixtures()
    {
        QFETCH(QString, file);
        QVERIFY2(!file.isEmpty(), "npy/expected.json missing; run tests/scripts/make_npy_fixtures.py");
        const json all = loadJson(QStringLiteral("npy/expected.json"));
        auto m = openModel(str(test::dataPath(QStringLiteral("npy/") + file)));
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
        compareModel(*m, all.at(str(file)));
    }

    // The fixture table above must cover what the brief lists; guard against a script
    // change silently dropping a case.
    void fixtureCoverage()
    {
        const json all = loadJson(QStringLiteral("npy/expected.json"));
        for (const char* f : {"c_f4.npy", "fortran_f8.npy", "be_f4.npy", "be_i2.npy", "scalar_f8.npy", "v2_f4.npy",
                              "v3_u2.npy", "stored.npz", "deflated.npz", "zeros_deflated.npz"})
            QVERIFY2(all.contains(f), f);
    }

    void npyIsAViewIntoTheMapping()
    {
        const std::string path = str(test::dataPath(QStringLiteral("npy/c_f4.npy")));
        auto m = readNpy(path);
        QVERIFY(m.ok());
        QCOMPARE(m->tensors.size(), size_t(1));
        const Tensor& t = m->tensors[0];
        QCOMPARE(t.name, std::string("c_f4"));
        QVERIFY(t.keepAlive);
        // numpy pads the header so the data starts on a 64-byte boundary; 12 floats follow.
        QCOMPARE(t.data.size(), size_t(48));
        QCOMPARE(int64_t(std::filesystem::file_size(path)), int64_t(128 + 48));
    }

    void scalarIsRankZero()
    {
        auto m = openModel(str(test::dataPath(QStringLiteral("npy/scalar_f8.npy"))));
        QVERIFY(m.ok());
        const Tensor& t = m->tensors[0];
        QCOMPARE(t.rank(), int64_t(0));
        QCOMPARE(t.numel(), int64_t(1));
        auto v = t.toFloat();
        QVERIFY(v.ok());
        QCOMPARE((*v)[0], float(1728.94));
    }

    void fortranStrides()
    {
        auto m = openModel(str(test::dataPath(QStringLiteral("npy/fortran_f8.npy"))));
        QVERIFY(m.ok());
        QCOMPARE(m->tensors[0].shape, (std::vector<int64_t>{3, 4, 2}));
        QCOMPARE(m->tensors[0].strides, (std::vector<int64_t>{1, 3, 12}));
    }

    void malformed_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("openKeyword");    // in openModel()'s one-line error
        QTest::addColumn<QString>("readerKeyword");  // in the reader's own error
        auto row = [](const char* name, const char* file, const char* open, const char* reader) {
            QTest::newRow(name) << QString::fromLatin1(file) << QString::fromLatin1(open) << QString::fromLatin1(reader);
        };
        // openModel picks the reader by the 6-byte magic, so a cut magic never reaches it.
        row("truncated-magic", "truncated_magic.npy", "not a recognised", "no \\x93NUMPY magic");
        row("magic-only", "magic_only.npy", "no \\x93NUMPY magic", "(at byte 0)");
        row("bad-version", "bad_version.npy", "unsupported format version 7.0", "(at byte 6)");
        row("header-len-past-end", "header_len_past_end.npy", "header length 60000 runs past the end", "176 bytes");
        row("v2-header-len-4GB", "v2_header_len_4gb.npy", "exceeds the 1048576-byte limit", "4294967280");
        row("unterminated-dict", "bad_dict.npy", "bad header dict", "expected a quoted key");
        row("dict-with-code", "dict_eval.npy", "fortran_order is not True or False", "bad header dict");
        row("dict-extra-key", "dict_extra_key.npy", "unexpected key 'x'", "bad header dict");
        row("dict-missing-shape", "dict_missing_shape.npy", "lacks one of", "'shape'");
        row("dict-duplicate-key", "dict_duplicate_key.npy", "'descr' appears twice", "bad header dict");
        row("unknown-descr", "unknown_descr.npy", "unsupported descr '<c8'", "bad header dict");
        row("object-descr", "object_descr.npy", "unsupported descr '|O'", "bad header dict");
        row("structured-descr", "structured_descr.npy", "structured dtypes", "not supported");
        row("no-byte-order-multibyte", "no_byteorder_multibyte.npy", "no byte order for a multi-byte type", "'|f4'");
        row("negative-dim", "negative_dim.npy", "negative dimension", "bad header dict");
        row("shape-overflow", "shape_overflow.npy", "overflows a 64-bit byte count", "[1099511627776, 1099511627776, 1099511627776]");
        row("dim-overflow", "dim_overflow.npy", "overflows 64 bits", "bad header dict");
        row("byte-count-overflow", "bytes_overflow.npy", "overflows a 64-bit byte count", "[4294967296, 4294967296]");
        row("data-truncated", "data_truncated.npy", "needs 48 data bytes, file has 43", "[3, 4] F32");
        row("fortran-data-truncated", "fortran_truncated.npy", "needs 48 data bytes, file has 44", "fortran_truncated");
        row("npz-member-claims-2GiB", "member_claims_huge.npz", "claims 2147483647 bytes", "a.npy");
        row("npz-member-size-lies-small", "member_size_lies_small.npz", "beyond its recorded size of 16", "a.npy");
        row("npz-stored-size-mismatch", "stored_size_mismatch.npz", "stored member claims 484 bytes but occupies 384", "a.npy");
        row("npz-truncated-zip", "truncated.npz", "zip", "not a readable zip archive");
        row("npz-member-bad-npy", "member_bad_npy.npz", "bad.npy", "needs 48 data bytes, file has 43");
        row("npz-overlapping-members-bomb", "overlapping_members.npz", "not a readable zip archive", "inconsistent");
        row("npz-member-bad-crc", "member_bad_crc.npz", "a.npy", "member_bad_crc.npz");
    }
    void malformed()
    {
        QFETCH(QString, file);
        QFETCH(QString, openKeyword);
        QFETCH(QString, readerKeyword);
        const std::string path = str(test::dataPath(QStringLiteral("malformed/npy/") + file));
        QVERIFY2(std::filesystem::exists(path), "fixture missing; run tests/scripts/make_npy_fixtures.py");

        auto m = openModel(path);
        QVERIFY2(!m.ok(), "openModel accepted a malformed file");
        const std::string line = m.error().oneLine();
        QVERIFY2(line.find(str(file)) != std::string::npos, ("error does not name the file: " + line).c_str());
        QVERIFY2(line.find(str(openKeyword)) != std::string::npos, ("openModel: " + line).c_str());

        auto r = file.endsWith(QLatin1String(".npz")) ? readNpz(path) : readNpy(path);
        QVERIFY2(!r.ok(), "the reader accepted a malformed file");
        const std::string rline = r.error().oneLine();
        QVERIFY2(rline.find(str(readerKeyword)) != std::string::npos, ("reader: " + rline).c_str());
        qDebug("%s", rline.c_str());
    }

    void realNpz()
    {
        QL_REQUIRE_SHARED_MODELS();
        const QString file = QStringLiteral("mlx_cvae_mnist.npz");
        const json all = loadJson(QStringLiteral("npy/real_expected.json"));
        QVERIFY2(all.is_object() && all.contains(str(file)), "real_expected.json lacks this file");
        auto m = openModel(str(test::sharedModel(file)));
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
        compareModel(*m, all.at(str(file)));
        QCOMPARE(m->tensors.size(), size_t(39));
        const Tensor* kl = m->find("encoder.kl_div");
        QVERIFY(kl);
        QCOMPARE(kl->rank(), int64_t(0));
        QCOMPARE(m->parameterCount(), int64_t(149586));
    }
};

QTEST_GUILESS_MAIN(TestNpy)
#include "tst_npy.moc"
