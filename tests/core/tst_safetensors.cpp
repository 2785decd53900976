// safetensors reader: fixtures and real files compared with values numpy computed
// (tests/scripts/make_safetensors_fixtures.py), plus the malformed corpus.
#include <QTest>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
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

bool closeRel(double a, double b)
{
    // 1e-6 relative; the floor keeps a numpy mean of exactly 0 comparable.
    return std::abs(a - b) <= 1e-6 * std::max(std::abs(b), 1e-9);
}

// Compares every tensor of `m` with the script's expectations; QVERIFY-style failures.
void compareModel(const Model& m, const json& exp)
{
    QCOMPARE(m.format, exp.at("format").get<std::string>());
    if (exp.contains("metadata")) {
        std::vector<std::pair<std::string, std::string>> want;
        for (const auto& kv : exp.at("metadata"))
            want.emplace_back(kv.at(0).get<std::string>(), kv.at(1).get<std::string>());
        QVERIFY2(m.metadata == want, "metadata differs from the fixture script's");
    }
    const auto& tensors = exp.at("tensors");
    QCOMPARE(m.tensors.size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const Tensor& t = m.tensors[i];
        const json& e = tensors[i];
        const QByteArray where = QByteArray::fromStdString("tensor " + std::to_string(i) + " '" + t.name + "'");
        QVERIFY2(t.name == e.at("name").get<std::string>(), where.constData());
        QVERIFY2(t.shape == e.at("shape").get<std::vector<int64_t>>(), where.constData());
        const std::string dt = t.dtype == DType::Opaque ? t.opaqueType : std::string(dtypeName(t.dtype));
        QVERIFY2(dt == e.at("dtype").get<std::string>(), (where + " dtype " + QByteArray::fromStdString(dt)).constData());
        QCOMPARE(t.decodable(), e.at("decodable").get<bool>());
        if (e.contains("layout"))
            QVERIFY2((t.layout == Layout::InOut) == (e.at("layout") == "InOut"), where.constData());
        if (!t.decodable()) {
            QVERIFY2(!t.toFloat().ok(), "an opaque tensor must not convert");
            continue;
        }
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

class TestSafetensors : public QObject {
    Q_OBJECT

private slots:
    void fixtures_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("key");
        QTest::newRow("every-dtype-with-metadata") << "safetensors/dtypes.safetensors" << "dtypes.safetensors";
        QTest::newRow("float8-opaque-unpadded-header") << "safetensors/float8.safetensors" << "float8.safetensors";
        QTest::newRow("gpt2-conv1d-layout") << "safetensors/conv1d.safetensors" << "conv1d.safetensors";
        QTest::newRow("sharded-index") << "safetensors/sharded/model.safetensors.index.json"
                                       << "sharded/model.safetensors.index.json";
        QTest::newRow("sharded-folder") << "safetensors/sharded" << "sharded/model.safetensors.index.json";
    }
    void fixtures()
    {
        QFETCH(QString, file);
        QFETCH(QString, key);
        const json all = loadJson(QStringLiteral("safetensors/expected.json"));
        QVERIFY2(all.is_object(), "safetensors/expected.json missing; run tests/scripts/make_safetensors_fixtures.py");
        auto m = openModel(str(test::dataPath(file)));
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
        const json& exp = all.at(str(key));
        compareModel(*m, exp);
        if (QTest::currentTestFailed())
            return;
        if (exp.contains("files")) {
            QCOMPARE(m->files.size(), exp.at("files").size());
            for (size_t i = 0; i < m->files.size(); ++i)
                QCOMPARE(std::filesystem::path(m->files[i]).filename().string(), exp.at("files")[i].get<std::string>());
        } else {
            QCOMPARE(m->files.size(), size_t(1));
        }
    }

    // Tensors are views into one mapping, laid end to end as the offsets say; the
    // mapping outlives the Model through keepAlive.
    void viewsIntoTheMapping()
    {
        std::vector<Tensor> kept;
        {
            auto m = readSafetensors(str(test::dataPath(QStringLiteral("safetensors/dtypes.safetensors"))));
            QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
            const auto& ts = m->tensors;
            QVERIFY(ts.size() > 2);
            for (size_t i = 0; i < ts.size(); ++i) {
                QVERIFY(ts[i].keepAlive);
                QVERIFY(!ts[i].keepAlive.owner_before(ts[0].keepAlive) && !ts[0].keepAlive.owner_before(ts[i].keepAlive));
                if (i > 0 && !ts[i].data.empty() && !ts[i - 1].data.empty())
                    QCOMPARE(ts[i].data.data(), ts[i - 1].data.data() + ts[i - 1].data.size());
            }
            kept = m->tensors;
        }
        auto v = kept.front().toFloat();  // the Model is gone; the mapping is not
        QVERIFY(v.ok());
        QCOMPARE(v->size(), size_t(24));
    }

    void errorNamesTensorAndNumbers()
    {
        const std::string path = str(test::dataPath(QStringLiteral("malformed/safetensors/offsets_shape_mismatch.safetensors")));
        auto m = readSafetensors(path);
        QVERIFY(!m.ok());
        const std::string line = m.error().oneLine();
        for (const char* part : {"offsets_shape_mismatch.safetensors", "tensor 'a'", "data_offsets [0, 16]", "[3, 4]",
                                 "F32", "needs 48 bytes"})
            QVERIFY2(line.find(part) != std::string::npos, (line + "  lacks  " + part).c_str());
        QCOMPARE(m.error().tensor, std::string("a"));
    }

    void malformed_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("openKeyword");    // in openModel()'s one-line error
        QTest::addColumn<QString>("readerKeyword");  // in the reader's own error
        auto row = [](const char* name, const char* file, const char* open, const char* reader) {
            QTest::newRow(name) << QString::fromLatin1(file) << QString::fromLatin1(open) << QString::fromLatin1(reader);
        };
        // openModel picks the reader by magic (byte 8 == '{'), so a few never reach it.
        row("empty-file", "empty.safetensors", "empty", "at least 8");
        row("four-bytes", "four_bytes.safetensors", "not a recognised", "at least 8");
        row("header-length-past-end", "header_past_end.safetensors", "runs past the end", "runs past the end");
        row("header-length-2^63", "header_len_2pow63.safetensors", "exceeds the 100000000-byte limit", "9223372036854775808");
        row("header-length-200MB", "header_len_200mb.safetensors", "exceeds", "200000000");
        row("bad-json", "bad_json.safetensors", "not valid JSON", "not valid JSON");
        row("json-array", "json_array.safetensors", "not a recognised", "JSON array, not an object");
        row("json-nested-5000-deep", "json_deep.safetensors", "nests deeper", "nests deeper");
        row("unknown-dtype", "unknown_dtype.safetensors", "unknown dtype 'F33'", "tensor 'a'");
        row("dtype-not-string", "dtype_not_string.safetensors", "dtype 4 is not a string", "tensor 'a'");
        row("block-dtype-name", "block_dtype.safetensors", "unknown dtype 'Q8_0'", "tensor 'a'");
        row("negative-dim", "negative_dim.safetensors", "not a non-negative integer", "-4");
        row("float-dim", "float_dim.safetensors", "not a non-negative integer", "4.0");
        row("shape-product-overflow", "shape_overflow.safetensors", "overflows", "[1099511627776, 1099511627776, 1099511627776]");
        row("byte-count-overflow", "bytes_overflow.safetensors", "overflows", "F64");
        row("offsets-past-end", "offsets_past_end.safetensors", "past the end of the data area", "[0, 32]");
        row("offsets-near-2^64", "offsets_huge.safetensors", "past the end of the data area", "18446744073709551600");
        row("offsets-reversed", "offsets_reversed.safetensors", "end before begin", "[16, 0]");
        row("offsets-not-a-pair", "offsets_not_pair.safetensors", "not a [begin, end] pair", "tensor 'a'");
        row("offsets-negative", "offsets_negative.safetensors", "not a non-negative integer", "-16");
        row("overlapping-offsets", "overlap.safetensors", "overlap tensor 'a'", "tensor 'b'");
        row("hole-between-tensors", "hole.safetensors", "hole", "tensor 'b'");
        row("first-tensor-not-at-0", "not_at_zero.safetensors", "hole", "previous tensor ends at 0");
        row("trailing-bytes", "trailing_bytes.safetensors", "8 trailing bytes", "cover 16 of 24");
        row("data-truncated", "truncated_data.safetensors", "past the end of the data area", "13 bytes");
        row("offsets-not-matching-shape", "offsets_shape_mismatch.safetensors", "needs 48 bytes", "[3, 4]");
        row("metadata-not-strings", "metadata_not_strings.safetensors", "__metadata__ value for 'n'", "not a string");
        row("entry-not-object", "entry_not_object.safetensors", "not an object", "tensor 'a'");
        row("entry-missing-shape", "missing_shape.safetensors", "lacks dtype, shape or data_offsets", "tensor 'a'");
        row("index-path-traversal", "index_traversal.json", "not a plain relative path", "../safetensors");
        row("index-absolute-path", "index_absolute.json", "not a plain relative path", "/etc/passwd");
        row("index-tensor-missing-from-shard", "index_missing_tensor.json", "does not contain it", "tensor 'zz'");
        row("index-missing-shard", "index_missing_shard.json", "cannot open", "no_such_shard.safetensors");
        row("index-shard-malformed", "index_bad_shard.json", "trailing bytes", "trailing_bytes.safetensors");
        row("index-without-weight-map", "index_no_weight_map.json", "no \"weight_map\"", "weight_map");
    }
    void malformed()
    {
        QFETCH(QString, file);
        QFETCH(QString, openKeyword);
        QFETCH(QString, readerKeyword);
        const std::string path = str(test::dataPath(QStringLiteral("malformed/safetensors/") + file));
        QVERIFY2(std::filesystem::exists(path), "fixture missing; run tests/scripts/make_safetensors_fixtures.py");

        auto m = openModel(path);
        QVERIFY2(!m.ok(), "openModel accepted a malformed file");
        const std::string line = m.error().oneLine();
        QVERIFY2(line.find(str(file)) != std::string::npos || line.find(".safetensors") != std::string::npos,
                 ("error does not name the file: " + line).c_str());
        QVERIFY2(line.find(str(openKeyword)) != std::string::npos, ("openModel: " + line).c_str());

        const bool index = file.endsWith(QLatin1String(".json"));
        auto r = index ? readSafetensorsIndex(path) : readSafetensors(path);
        QVERIFY2(!r.ok(), "the reader accepted a malformed file");
        const std::string rline = r.error().oneLine();
        QVERIFY2(rline.find(str(readerKeyword)) != std::string::npos, ("reader: " + rline).c_str());
        QVERIFY2(rline.find('\n') == std::string::npos, "error spans several lines");
        qDebug("%s", rline.c_str());
    }

    void realFiles_data()
    {
        QTest::addColumn<QString>("file");
        QTest::newRow("gpt2-capp") << "gpt2_capp.safetensors";
        QTest::newRow("silero-vad-16k") << "silero_vad_16k.safetensors";
    }
    void realFiles()
    {
        QL_REQUIRE_SHARED_MODELS();
        QFETCH(QString, file);
        const json all = loadJson(QStringLiteral("safetensors/real_expected.json"));
        QVERIFY2(all.is_object() && all.contains(str(file)), "real_expected.json lacks this file");
        auto m = openModel(str(test::sharedModel(file)));
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
        compareModel(*m, all.at(str(file)));
    }

    void gpt2LayoutAndMetadata()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto m = openModel(str(test::sharedModel(QStringLiteral("gpt2_capp.safetensors"))));
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
        const Tensor* w = m->find("transformer.h.0.attn.c_attn.weight");
        QVERIFY(w);
        QCOMPARE(w->shape, (std::vector<int64_t>{64, 192}));
        QVERIFY(w->layout == Layout::InOut);
        const Tensor* wpe = m->find("transformer.wpe.weight");
        QVERIFY(wpe && wpe->layout == Layout::Plain);
        bool havePt = false;
        for (const auto& [k, v] : m->metadata)
            havePt |= k == "format" && v == "pt";
        QVERIFY2(havePt, "__metadata__ format=pt not kept");
        QCOMPARE(m->tensors.size(), size_t(52));
        QCOMPARE(m->parameterCount(), int64_t(236224));
    }
};

QTEST_GUILESS_MAIN(TestSafetensors)
#include "tst_safetensors.moc"
