// PyTorch checkpoints through openModel(): every fixture is compared with what torch 1.13
// reported for it (tests/scripts/make_pytorch_fixtures.py), every malformed or hostile
// file must be refused with a one-line reason, and hostile pickles must provably not run.
#include <QtTest>

#include <QDir>
#include <QTemporaryDir>
#include <QThread>

#include <cstring>
#include <fstream>
#include <unistd.h>

#include "model.h"
#include "readertestutil.h"
#include "testsupport.h"

using namespace quantlens;
using quantlens::test::closeRel;
using quantlens::test::dataPath;
using quantlens::test::loadJson;

namespace {

// Checks one model against the expected JSON document the fixture script wrote.
void compareWithTorch(const Model& m, const nlohmann::json& exp)
{
    QCOMPARE(m.format, std::string("pytorch"));
    QCOMPARE(m.files.size(), size_t(1));
    const auto& tensors = exp["tensors"];
    QCOMPARE(m.tensors.size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& e = tensors[i];
        const Tensor& t = m.tensors[i];
        const std::string name = e["name"];
        QCOMPARE(t.name, name);  // file order, joined path names
        QCOMPARE(std::string(dtypeName(t.dtype)), e["dtype"].get<std::string>());
        QCOMPARE(t.shape, e["shape"].get<std::vector<int64_t>>());
        QCOMPARE(t.group, e["group"].get<std::string>());
        QCOMPARE(!t.isContiguous(), e["strided"].get<bool>());
        QVERIFY(t.keepAlive != nullptr);
        auto values = t.toFloat();
        QVERIFY2(values.ok(), values.ok() ? "" : values.error().oneLine().c_str());
        QCOMPARE(int64_t(values->size()), e["numel"].get<int64_t>());
        if (values->empty())
            continue;
        // Plain float64 accumulation (readertestutil.h), like torch's .double() stats.
        const auto st = quantlens::test::statsOf(*values);
        // float64 sources lose digits in toFloat; everything else converts exactly.
        const double rel = t.dtype == DType::F64 ? 1e-6 : 1e-9;
        QVERIFY2(closeRel(st.min, e["min"], rel), name.c_str());
        QVERIFY2(closeRel(st.max, e["max"], rel), name.c_str());
        QVERIFY2(closeRel(st.mean, e["mean"], rel, 1e-9), name.c_str());
        QVERIFY2(closeRel(st.std, e["std"], rel, 1e-9), name.c_str());
        const auto first = e["first"].get<std::vector<double>>();
        for (size_t k = 0; k < first.size(); ++k)
            QVERIFY2(closeRel((*values)[k], first[k], rel), (name + " value " + std::to_string(k)).c_str());
    }
    for (const auto& [key, value] : exp["metadata"].items())
        QCOMPARE(quantlens::test::metaValue(m, key), value.get<std::string>());
}

QStringList malformedFiles()
{
    QDir d(dataPath(QStringLiteral("malformed/pytorch")));
    return d.entryList({QStringLiteral("*.pt")}, QDir::Files, QDir::Name);
}

}  // namespace

class TestPytorch : public QObject {
    Q_OBJECT
private slots:
    void matchesTorch_data();
    void matchesTorch();
    void realMnistCheckpoint();
    void archivePrefixIsReported_data();
    void archivePrefixIsReported();
    void storedTensorsAreViewsOfOneMapping();
    void stridedViewsKeepStorageOffsetAndStrides();
    void bigEndianArchiveIsFlagged();
    void tensorsOutliveTheModel();
    void hostilePicklesAreRefusedAndDoNotRun_data();
    void hostilePicklesAreRefusedAndDoNotRun();
    void malformedFilesFailWithOneLine_data();
    void malformedFilesFailWithOneLine();
    void malformedReasons_data();
    void malformedReasons();
    void huggingFaceBinFolderOpens();
    void shardedBinIndexOpensEveryShard();
    void binIndexMixingShardKindsIsRefused();
};

void TestPytorch::matchesTorch_data()
{
    QTest::addColumn<QString>("stem");
    QTest::newRow("bert_state_dict") << "bert";
    QTest::newRow("bert_deflated_members") << "deflated";
    QTest::newRow("nested_training_checkpoint") << "nested";
    QTest::newRow("transposed_and_sliced_views") << "transposed";
    QTest::newRow("two_views_of_one_storage") << "shared";
    QTest::newRow("fp16_bf16_f64_ints_bool") << "dtypes";
    QTest::newRow("big_endian_byteorder_member") << "bigendian";
    QTest::newRow("assembled_with_little_byteorder") << "assembled";
    QTest::newRow("legacy_pre_1_6_format") << "legacy";
    QTest::newRow("pickle_protocol_4") << "protocol4";
    QTest::newRow("custom_archive_prefix") << "custom_prefix";
    QTest::newRow("parameter_0d_empty_tied_numpy_device") << "misc";
}

void TestPytorch::matchesTorch()
{
    QFETCH(QString, stem);
    const auto exp = loadJson(dataPath(QStringLiteral("pytorch/%1.json").arg(stem)));
    QVERIFY(exp.is_object());
    auto m = openModel(dataPath(QStringLiteral("pytorch/%1.pt").arg(stem)).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    compareWithTorch(*m, exp);
}

void TestPytorch::realMnistCheckpoint()
{
    QL_REQUIRE_SHARED_MODELS();
    const auto exp = loadJson(dataPath(QStringLiteral("pytorch/real_expected.json")));
    QVERIFY(exp.is_object());
    auto m = openModel(quantlens::test::sharedModel(QStringLiteral("ggml_mnist_mlp.pt")).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    QCOMPARE(m->tensors.size(), size_t(4));
    QCOMPARE(quantlens::test::metaValue(*m, "torch.archive_prefix"), std::string("mnist/"));
    compareWithTorch(*m, exp);
    QCOMPARE(m->parameterCount(), int64_t(397510));  // SOURCES.md
}

void TestPytorch::archivePrefixIsReported_data()
{
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("prefix");
    QTest::newRow("buffer_save_is_archive") << "bert.pt" << "archive/";
    QTest::newRow("file_save_uses_stem") << "custom_prefix.pt" << "custom_prefix/";
}

void TestPytorch::archivePrefixIsReported()
{
    QFETCH(QString, file);
    QFETCH(QString, prefix);
    auto m = openModel(dataPath(QStringLiteral("pytorch/") + file).toStdString());
    QVERIFY(m.ok());
    QCOMPARE(QString::fromStdString(quantlens::test::metaValue(*m, "torch.archive_prefix")), prefix);
    QCOMPARE(QString::fromStdString(quantlens::test::metaValue(*m, "torch.archive_version")), QStringLiteral("3"));
}

void TestPytorch::storedTensorsAreViewsOfOneMapping()
{
    // shared.pt: torch wrote one storage of 20 floats; "second" starts 8 floats after "first".
    auto m = openModel(dataPath(QStringLiteral("pytorch/shared.pt")).toStdString());
    QVERIFY(m.ok());
    const Tensor* a = m->find("first");
    const Tensor* b = m->find("second");
    QVERIFY(a && b);
    QCOMPARE(b->data.data() - a->data.data(), std::ptrdiff_t(8 * 4));
    QCOMPARE(a->data.size(), size_t(8 * 4));
    QCOMPARE(b->data.size(), size_t(12 * 4));
    QCOMPARE(a->keepAlive.get(), b->keepAlive.get());  // both hold the same mapping
    // Every stored tensor of the BERT file lies in that file's one mapping.
    auto bert = openModel(dataPath(QStringLiteral("pytorch/bert.pt")).toStdString());
    QVERIFY(bert.ok());
    for (const Tensor& t : bert->tensors)
        QCOMPARE(t.keepAlive.get(), bert->tensors.front().keepAlive.get());
    // Tied weights (one tensor under two names) view the same bytes.
    auto misc = openModel(dataPath(QStringLiteral("pytorch/misc.pt")).toStdString());
    QVERIFY(misc.ok());
    QCOMPARE(misc->find("tied_a")->data.data(), misc->find("tied_b")->data.data());
}

void TestPytorch::stridedViewsKeepStorageOffsetAndStrides()
{
    auto m = openModel(dataPath(QStringLiteral("pytorch/transposed.pt")).toStdString());
    QVERIFY(m.ok());
    const Tensor* t = m->find("fc.weight_t");  // base[3,4].t()
    QVERIFY(t);
    QCOMPARE(t->shape, (std::vector<int64_t>{4, 3}));
    QCOMPARE(t->strides, (std::vector<int64_t>{1, 4}));
    QCOMPARE(t->data.size(), size_t(12 * 4));
    const Tensor* c = m->find("fc.cols");  // base[:, 1:3]: offset 1, reaches 1 + 2*4 + 1
    QVERIFY(c);
    QCOMPARE(c->strides, (std::vector<int64_t>{4, 1}));
    QCOMPARE(c->data.size(), size_t((2 * 4 + 1 + 1) * 4));
    QCOMPARE(c->data.data() - t->data.data(), std::ptrdiff_t(4));  // one float into the shared storage
    const Tensor* e = m->find("fc.every_other");
    QVERIFY(e);
    QCOMPARE(e->strides, (std::vector<int64_t>{2}));
}

void TestPytorch::bigEndianArchiveIsFlagged()
{
    auto be = openModel(dataPath(QStringLiteral("pytorch/bigendian.pt")).toStdString());
    auto le = openModel(dataPath(QStringLiteral("pytorch/assembled.pt")).toStdString());
    QVERIFY(be.ok() && le.ok());
    for (const Tensor& t : be->tensors)
        QVERIFY(t.bigEndian);
    for (const Tensor& t : le->tensors)
        QVERIFY(!t.bigEndian);
}

void TestPytorch::tensorsOutliveTheModel()
{
    Tensor kept;
    {
        auto m = openModel(dataPath(QStringLiteral("pytorch/bert.pt")).toStdString());
        QVERIFY(m.ok());
        kept = *m->find("bert.pooler.dense.weight");
    }
    auto v = kept.toFloat();  // the mapping is still alive through keepAlive
    QVERIFY(v.ok());
    QCOMPARE(v->size(), size_t(256));
}

void TestPytorch::hostilePicklesAreRefusedAndDoNotRun_data()
{
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("global");
    QTest::addColumn<QString>("marker");
    const auto manifest = loadJson(dataPath(QStringLiteral("malformed/pytorch/exec_manifest.json")));
    QVERIFY(manifest.is_object() && manifest.size() >= 5);
    for (const auto& [file, e] : manifest.items())
        QTest::newRow(file.c_str()) << QString::fromStdString(file)
                                    << QString::fromStdString(e["global"].get<std::string>())
                                    << QString::fromStdString(e["marker"].get<std::string>());
}

void TestPytorch::hostilePicklesAreRefusedAndDoNotRun()
{
    QFETCH(QString, file);
    QFETCH(QString, global);
    QFETCH(QString, marker);
    // The payloads create `marker` in the current directory (the fixture script proved
    // that Python's own unpickler does); run from an empty temporary directory.
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString old = QDir::currentPath();
    QVERIFY(QDir::setCurrent(dir.path()));
    auto m = openModel(dataPath(QStringLiteral("malformed/pytorch/") + file).toStdString());
    QThread::msleep(100);  // a spawned process would have had time to run
    const bool ran = QFileInfo::exists(dir.filePath(marker));
    QDir::setCurrent(old);
    QVERIFY(!m.ok());
    QVERIFY2(!ran, "the payload ran");
    QCOMPARE(QString::fromStdString(m.error().code), QStringLiteral("unsafe-pickle"));
    const QString line = QString::fromStdString(m.error().oneLine());
    QVERIFY2(line.contains(QStringLiteral("pickle global '%1' is not allowed (state_dict readers never execute code)").arg(global)),
             qPrintable(line));
    QVERIFY(QDir(dir.path()).isEmpty());
}

void TestPytorch::malformedFilesFailWithOneLine_data()
{
    QTest::addColumn<QString>("file");
    const QStringList files = malformedFiles();
    QVERIFY(files.size() >= 40);
    for (const QString& f : files)
        QTest::newRow(qPrintable(f)) << f;
}

void TestPytorch::malformedFilesFailWithOneLine()
{
    QFETCH(QString, file);
    const std::string path = dataPath(QStringLiteral("malformed/pytorch/") + file).toStdString();
    auto m = openModel(path);
    QVERIFY2(!m.ok(), "a malformed checkpoint was accepted");
    const std::string line = m.error().oneLine();
    QVERIFY(!line.empty());
    QVERIFY(line.find('\n') == std::string::npos);
    QVERIFY2(line.find(path) != std::string::npos, line.c_str());  // names the file
    QVERIFY2(line.size() < 400, line.c_str());
}

void TestPytorch::malformedReasons_data()
{
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("reason");
    QTest::newRow("truncated_zip") << "truncated_zip.pt" << "zip";
    QTest::newRow("truncated_pickle") << "truncated_pickle.pt" << "a string claims 7 bytes but only 3 remain";
    QTest::newRow("pickle_without_stop") << "pickle_without_stop.pt" << "without STOP";
    QTest::newRow("unknown_opcode") << "unknown_opcode.pt" << "unsupported pickle opcode 0xff";
    QTest::newRow("inst_opcode") << "inst_opcode.pt" << "INST";
    QTest::newRow("deep_marks") << "deep_marks.pt" << "MARKs deeper than 1000";
    QTest::newRow("deep_lists_stack") << "deep_lists_stack.pt" << "stack deeper than";
    QTest::newRow("deep_nesting_memo") << "deep_nesting_memo.pt" << "key path is longer than 1024 characters";
    QTest::newRow("deep_nesting_empty_keys") << "deep_nesting_empty_keys.pt" << "deeper than 1000 levels";
    QTest::newRow("huge_memo_get") << "huge_memo_get.pt" << "memo index 4294967295 was never stored";
    QTest::newRow("huge_memo_put") << "huge_memo_put.pt" << "larger than the pickle could hold";
    QTest::newRow("cyclic_list") << "cyclic_list.pt" << "cycle";
    QTest::newRow("cyclic_dict") << "cyclic_dict.pt" << "cycle";
    QTest::newRow("huge_string_length") << "huge_string_length.pt" << "claims 2147483647 bytes";
    QTest::newRow("huge_frame") << "huge_frame.pt" << "FRAME";
    QTest::newRow("empty_checkpoint") << "empty_checkpoint.pt" << "holds no tensors";
    QTest::newRow("storage_key_missing") << "storage_key_missing.pt" << "storage '7' is missing";
    QTest::newRow("storage_too_small") << "storage_too_small.pt" << "too few for 16 elements";
    QTest::newRow("storage_key_path") << "storage_key_path.pt" << "not a plain name";
    QTest::newRow("storage_type_unknown") << "storage_type_unknown.pt" << "torch.ComplexFloatStorage";
    QTest::newRow("negative_size") << "negative_size.pt" << "negative or overflows";
    QTest::newRow("overflow_size") << "overflow_size.pt" << "negative or overflows";
    QTest::newRow("bigint_size") << "bigint_size.pt" << "not a tuple of integers";
    QTest::newRow("negative_stride") << "negative_stride.pt" << "is negative";
    QTest::newRow("overflow_stride") << "overflow_stride.pt" << "overflow";
    QTest::newRow("stride_out_of_bounds") << "stride_out_of_bounds.pt" << "overruns its storage";
    QTest::newRow("offset_out_of_bounds") << "offset_out_of_bounds.pt" << "overruns its storage";
    QTest::newRow("offset_plus_size_overrun") << "offset_plus_size_overrun.pt" << "overruns its storage";
    QTest::newRow("negative_offset") << "negative_offset.pt" << "storage offset is not a non-negative";
    QTest::newRow("negative_numel") << "negative_numel.pt" << "element count is not a non-negative";
    QTest::newRow("huge_numel") << "huge_numel.pt" << "too few for";
    QTest::newRow("rank_mismatch") << "rank_mismatch.pt" << "differ in rank";
    QTest::newRow("bad_byteorder") << "bad_byteorder.pt" << "byteorder";
    QTest::newRow("no_data_pkl") << "no_data_pkl.pt" << "zip";
    QTest::newRow("two_data_pkl") << "two_data_pkl.pt" << "ambiguous";
    QTest::newRow("member_claims_gigabytes") << "member_claims_gigabytes.pt" << "zip";
    QTest::newRow("deflate_claims_gigabytes") << "deflate_claims_gigabytes.pt" << "claims 4026531840 bytes from 44 compressed bytes";
    QTest::newRow("legacy_truncated") << "legacy_truncated.pt" << "legacy storage";
    QTest::newRow("legacy_bad_magic") << "legacy_bad_magic.pt" << "magic number";
    QTest::newRow("legacy_bad_protocol") << "legacy_bad_protocol.pt" << "_use_new_zipfile_serialization=True";
    QTest::newRow("legacy_storage_lies") << "legacy_storage_lies.pt" << "more than the file holds";
}

void TestPytorch::malformedReasons()
{
    QFETCH(QString, file);
    QFETCH(QString, reason);
    auto m = openModel(dataPath(QStringLiteral("malformed/pytorch/") + file).toStdString());
    QVERIFY(!m.ok());
    const QString line = QString::fromStdString(m.error().oneLine());
    QVERIFY2(line.contains(reason), qPrintable(line));
}

namespace {

bool writeText(const QString& path, const QByteArray& text)
{
    QFile f(path);
    return f.open(QIODevice::WriteOnly) && f.write(text) == text.size();
}

}  // namespace

// A Hugging Face repository from before safetensors holds only pytorch_model.bin.
void TestPytorch::huggingFaceBinFolderOpens()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(QFile::copy(dataPath(QStringLiteral("pytorch/bert.pt")), dir.filePath(QStringLiteral("pytorch_model.bin"))));
    QVERIFY(writeText(dir.filePath(QStringLiteral("config.json")), R"({"model_type": "bert"})"));
    auto m = openModel(dir.path().toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    auto direct = openModel(dataPath(QStringLiteral("pytorch/bert.pt")).toStdString());
    QVERIFY(direct.ok());
    QCOMPARE(m->format, std::string("pytorch"));
    QCOMPARE(m->tensors.size(), direct->tensors.size());
    for (size_t i = 0; i < m->tensors.size(); ++i) {
        QCOMPARE(m->tensors[i].name, direct->tensors[i].name);
        QVERIFY(std::equal(m->tensors[i].data.begin(), m->tensors[i].data.end(), direct->tensors[i].data.begin(),
                           direct->tensors[i].data.end()));
    }
}

// pytorch_model.bin.index.json has the same weight_map as the safetensors index.
void TestPytorch::shardedBinIndexOpensEveryShard()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(QFile::copy(dataPath(QStringLiteral("pytorch/bert.pt")), dir.filePath(QStringLiteral("pytorch_model-00001-of-00002.bin"))));
    QVERIFY(QFile::copy(dataPath(QStringLiteral("pytorch/custom_prefix.pt")),
                        dir.filePath(QStringLiteral("pytorch_model-00002-of-00002.bin"))));
    auto a = openModel(dataPath(QStringLiteral("pytorch/bert.pt")).toStdString());
    auto b = openModel(dataPath(QStringLiteral("pytorch/custom_prefix.pt")).toStdString());
    QVERIFY(a.ok() && b.ok());
    nlohmann::json index;
    index["metadata"]["total_size"] = a->byteCount() + b->byteCount();
    for (const Tensor& t : a->tensors)
        index["weight_map"][t.name] = "pytorch_model-00001-of-00002.bin";
    for (const Tensor& t : b->tensors)
        index["weight_map"][t.name] = "pytorch_model-00002-of-00002.bin";
    QVERIFY(writeText(dir.filePath(QStringLiteral("pytorch_model.bin.index.json")), QByteArray::fromStdString(index.dump())));

    auto m = openModel(dir.path().toStdString());  // the folder, as a user opens it
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
    QCOMPARE(m->format, std::string("pytorch-sharded"));
    QCOMPARE(m->files.size(), size_t(2));
    QCOMPARE(m->tensors.size(), a->tensors.size() + b->tensors.size());
    const Tensor* w = m->find("layer.weight");
    QVERIFY(w);
    QCOMPARE(w->shape, b->find("layer.weight")->shape);
    QCOMPARE(*w->toFloat(), *b->find("layer.weight")->toFloat());
    QCOMPARE(*m->find("bert.encoder.layer.0.attention.self.query.weight")->toFloat(),
             *a->find("bert.encoder.layer.0.attention.self.query.weight")->toFloat());
}

void TestPytorch::binIndexMixingShardKindsIsRefused()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(writeText(dir.filePath(QStringLiteral("pytorch_model.bin.index.json")),
                      R"({"weight_map": {"a": "one.bin", "b": "two.safetensors"}})"));
    auto m = openModel(dir.path().toStdString());
    QVERIFY(!m.ok());
    QVERIFY2(QString::fromStdString(m.error().oneLine()).contains(QStringLiteral("mixes")), m.error().oneLine().c_str());
}

QTEST_GUILESS_MAIN(TestPytorch)
#include "tst_pytorch.moc"
