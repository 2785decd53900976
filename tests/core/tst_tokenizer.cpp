// Plain-text calibration (issue #19): text to ids through the quantlens-tokenize helper.
// References: python's sentencepiece (tests/scripts/make_tokenizer_fixtures.py) for a
// trained tokenizer.model and for stories260K.gguf's vocabulary, and llama.cpp itself
// (node-llama-cpp, tests/scripts/tokenize_llama.mjs) for the GGUF vocabulary. The helper is
// found beside this executable (a link made by tests/CMakeLists.txt), as beside quantlens-cli.
#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "runner/ggufvocab.h"
#include "runner/tokenizer.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

std::vector<std::pair<std::string, std::vector<int64_t>>> readJsonl(const QString& path)
{
    std::vector<std::pair<std::string, std::vector<int64_t>>> rows;
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return rows;
    while (!f.atEnd()) {
        const QByteArray line = f.readLine().trimmed();
        if (line.isEmpty())
            continue;
        const auto j = nlohmann::json::parse(line.toStdString());
        rows.emplace_back(j["text"].get<std::string>(), j["ids"].get<std::vector<int64_t>>());
    }
    return rows;
}

QString stories() { return test::sharedModel(QStringLiteral("stories260K.gguf")); }

// A helper stand-in: a shell script (the test's own, not the product's) that misbehaves.
QString script(QTemporaryDir& dir, const char* name, const QByteArray& body)
{
    const QString path = dir.filePath(QLatin1String(name));
    QFile f(path);
    f.open(QIODevice::WriteOnly);
    f.write("#!/bin/sh\n" + body + "\n");
    f.close();
    f.setPermissions(QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
    return path;
}

// What a helper would write: 32-bit words, as runner/tokenizewire.h lays them out.
QString reply(QTemporaryDir& dir, const char* name, const std::vector<uint32_t>& words)
{
    const QString path = dir.filePath(QLatin1String(name));
    QFile f(path);
    f.open(QIODevice::WriteOnly);
    f.write(reinterpret_cast<const char*>(words.data()), qint64(words.size() * sizeof(uint32_t)));
    return path;
}

// Reads the whole first request (header and the unigram tokenizer.model), as a helper must
// before the caller's send can finish.
QByteArray readRequest()
{
    const qint64 size = QFileInfo(test::dataPath(QStringLiteral("tokenizer/unigram/tokenizer.model"))).size();
    return "head -c " + QByteArray::number(12 + size) + " >/dev/null\n";
}

}  // namespace

class TestTokenizer : public QObject {
    Q_OBJECT
private slots:
    void trainedTokenizerModelMatchesPythonSentencePiece()
    {
        // A Hugging Face folder: the model file need not exist, tokenizer.model beside it does.
        auto t = TextTokenizer::forModel(test::dataPath(QStringLiteral("tokenizer/unigram/model.safetensors")).toStdString());
        QVERIFY2(t.ok(), t ? "" : t.error().oneLine().c_str());
        QCOMPARE(t->pieceCount(), int64_t(300));
        QCOMPARE(t->bosId(), int64_t(1));
        QVERIFY(t->source().find("tokenizer.model") != std::string::npos);
        const auto rows = readJsonl(test::dataPath(QStringLiteral("tokenizer/unigram_ids.jsonl")));
        QCOMPARE(rows.size(), size_t(6));  // NFKC (ligature, full-width), byte fallback, spaces
        for (const auto& [text, ids] : rows) {
            auto got = t->encode(text);
            QVERIFY2(got.ok(), text.c_str());
            QCOMPARE(*got, ids);
        }
        // The folder itself works too.
        auto dir = TextTokenizer::forModel(test::dataPath(QStringLiteral("tokenizer/unigram")).toStdString());
        QVERIFY(dir.ok());
        QCOMPARE(*dir->encode(rows[0].first), rows[0].second);
    }

    void ggufVocabularyMatchesPythonAndLlamaCpp()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto t = TextTokenizer::forModel(stories().toStdString());
        QVERIFY2(t.ok(), t ? "" : t.error().oneLine().c_str());
        QCOMPARE(t->pieceCount(), int64_t(512));
        QCOMPARE(t->bosId(), int64_t(1));
        auto python = readJsonl(test::dataPath(QStringLiteral("tokenizer/stories260K_ids.jsonl")));
        auto llama = readJsonl(test::dataPath(QStringLiteral("activations/stories260K_llamacpp_tokens.jsonl")));
        QCOMPARE(python.size(), size_t(6));
        QCOMPARE(llama.size(), size_t(7));  // spaces, a tab, punctuation, digits, accents, CJK, an emoji
        for (const auto* rows : {&python, &llama})
            for (const auto& [text, ids] : *rows) {
                auto got = t->encode(text);
                QVERIFY2(got.ok(), text.c_str());
                QCOMPARE(*got, ids);
            }
        // One sequence per non-empty line, BOS first, as llama.cpp starts a prompt.
        auto seqs = t->encodeLines("Once upon a time\n\n  \nThe end.\r\n");
        QVERIFY(seqs.ok());
        QCOMPARE(seqs->size(), size_t(2));
        QCOMPARE((*seqs)[0].front(), int64_t(1));
        QCOMPARE(std::vector<int64_t>((*seqs)[1].begin() + 1, (*seqs)[1].end()), *t->encode("The end."));
        QVERIFY(!t->encodeLines("\n \n").ok());
        // Moved, the tokenizer keeps its helper.
        TextTokenizer moved = std::move(*t);
        QCOMPARE(*moved.encode(python[0].first), python[0].second);
    }

    void ggufVocabularyAsTokenizerModel()
    {
        QL_REQUIRE_SHARED_MODELS();
        int64_t bos = -1;
        bool addBos = false;
        auto proto = ggufSentencePieceModel(stories().toStdString(), bos, addBos);
        QVERIFY(proto.ok());
        QCOMPARE(bos, int64_t(1));
        QVERIFY(addBos);
        QTemporaryDir dir;
        QFile f(dir.filePath(QStringLiteral("tokenizer.model")));
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(proto->data(), qint64(proto->size()));
        f.close();
        auto hf = TextTokenizer::forModel(dir.filePath(QStringLiteral("model.safetensors")).toStdString());
        QVERIFY2(hf.ok(), hf ? "" : hf.error().oneLine().c_str());
        for (const auto& [text, ids] : readJsonl(test::dataPath(QStringLiteral("tokenizer/stories260K_ids.jsonl"))))
            QCOMPARE(*hf->encode(text), ids);

        // A GGUF cut short inside its key/value section fails with a reason.
        QFile src(stories());
        QVERIFY(src.open(QIODevice::ReadOnly));
        for (qint64 cut : {qint64(6), qint64(30), qint64(2000)}) {
            QFile part(dir.filePath(QStringLiteral("cut.gguf")));
            QVERIFY(part.open(QIODevice::WriteOnly | QIODevice::Truncate));
            src.seek(0);
            part.write(src.read(cut));
            part.close();
            auto t = TextTokenizer::forModel(part.fileName().toStdString());
            QVERIFY(!t.ok());
            QCOMPARE(t.error().code, std::string("bad-gguf"));
        }
    }

    void modelsWithoutOneSaySo()
    {
        auto gpt2 = TextTokenizer::forModel(test::dataPath(QStringLiteral("encoder/gpt2_tiny.safetensors")).toStdString());
        QVERIFY(!gpt2.ok());
        QCOMPARE(gpt2.error().code, std::string("no-tokenizer"));
        // A GGUF fixture written without tokenizer keys.
        auto bare = TextTokenizer::forModel(test::dataPath(QStringLiteral("encoder/llama_gguf_tiny.gguf")).toStdString());
        QVERIFY(!bare.ok());
        QCOMPARE(bare.error().code, std::string("no-tokenizer"));
        QVERIFY(!TextTokenizer::forModel(test::dataPath(QStringLiteral("encoder/gpt2_tiny_ref.json")).toStdString()).ok());
    }

    void aDamagedTokenizerModelIsRefusedByTheHelper()
    {
        QTemporaryDir dir;
        QFile f(dir.filePath(QStringLiteral("tokenizer.model")));
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("this is not a ModelProto");
        f.close();
        auto t = TextTokenizer::forModel(dir.path().toStdString());
        QVERIFY(!t.ok());
        QCOMPARE(t.error().code, std::string("bad-tokenizer"));
        QVERIFY2(t.error().message.find("SentencePiece refused") != std::string::npos, t.error().oneLine().c_str());
    }

    void aMissingHelperSaysWhere()
    {
        const std::string model = test::dataPath(QStringLiteral("tokenizer/unigram")).toStdString();
        auto t = TextTokenizer::forModel(model, {"/nonexistent/quantlens-tokenize"});
        QVERIFY(!t.ok());
        QCOMPARE(t.error().code, std::string("no-tokenizer-helper"));
        QVERIFY(t.error().oneLine().find("/nonexistent/quantlens-tokenize") != std::string::npos);
        QVERIFY(t.error().oneLine().find("--calib-tokens") != std::string::npos);
        QVERIFY(t.error().oneLine().find('\n') == std::string::npos);
        QVERIFY(TextTokenizer::defaultHelperPath().ends_with("/tests/quantlens-tokenize"));
    }

    void aFailingHelperIsReportedWithItsReason()
    {
        const std::string model = test::dataPath(QStringLiteral("tokenizer/unigram")).toStdString();
        QTemporaryDir dir;
        // Dies while loading, saying why.
        auto dies = TextTokenizer::forModel(model, {script(dir, "dies", "echo 'out of memory, say' >&2; exit 3").toStdString()});
        QVERIFY(!dies.ok());
        QCOMPARE(dies.error().code, std::string("tokenizer-helper"));
        QVERIFY2(dies.error().message.find("exited with code 3") != std::string::npos, dies.error().oneLine().c_str());
        QVERIFY2(dies.error().message.find("out of memory, say") != std::string::npos, dies.error().oneLine().c_str());
        // Aborts (as protobuf does on a clash).
        auto aborts = TextTokenizer::forModel(model, {script(dir, "aborts", "kill -ABRT $$").toStdString()});
        QVERIFY(!aborts.ok());
        QVERIFY2(aborts.error().message.find("signal 6") != std::string::npos, aborts.error().oneLine().c_str());
        // Claims more ids than a text can have: refused before anything is allocated.
        const QString liarSays = reply(dir, "liar.bin", {0, 1, 256, 0, 0x7fffffff});  // ok, BOS 1, 256 pieces; ok, 2^31-1 ids
        const QByteArray liar = readRequest() + "cat '" + liarSays.toUtf8() + "'\nexec sleep 5";
        auto t = TextTokenizer::forModel(model, {script(dir, "liar", liar).toStdString()});
        QVERIFY2(t.ok(), t ? "" : t.error().oneLine().c_str());
        QCOMPARE(t->pieceCount(), int64_t(256));
        auto ids = t->encode("hello");
        QVERIFY(!ids.ok());
        QVERIFY2(ids.error().message.find("2147483647 ids for 5 bytes") != std::string::npos, ids.error().oneLine().c_str());
        auto again = t->encode("hello");  // the conversation is over: same reason, at once
        QVERIFY(!again.ok());
        QCOMPARE(again.error().message, ids.error().message);
    }

    void cancelKillsTheHelper()
    {
        const std::string model = test::dataPath(QStringLiteral("tokenizer/unigram")).toStdString();
        QTemporaryDir dir;
        // Accepts the model, then never answers a text.
        const QString accepts = reply(dir, "accepts.bin", {0, 1, 256});
        const QByteArray silent = readRequest() + "cat '" + accepts.toUtf8() + "'\nexec sleep 60";
        auto t = TextTokenizer::forModel(model, {script(dir, "silent", silent).toStdString()});
        QVERIFY2(t.ok(), t ? "" : t.error().oneLine().c_str());
        std::atomic<bool> cancel{false};
        std::thread stop([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            cancel = true;
        });
        QElapsedTimer timer;
        timer.start();
        auto ids = t->encodeLines("a line\nanother\n", &cancel);
        stop.join();
        QVERIFY(!ids.ok());
        QCOMPARE(ids.error().code, std::string("cancelled"));
        QVERIFY(timer.elapsed() < 5000);  // not the helper's 60 s
    }

    // The reason the helper exists: SentencePiece (bundling protobuf-lite 3.14) and the
    // system libprotobuf 3.21 (ONNX) must never share a process. ldd lists what each loads.
    void sentencePieceAndOnnxStayApart()
    {
        auto needs = [](const QString& program) {
            QProcess ldd;
            ldd.start(QStringLiteral("ldd"), {program});
            ldd.waitForFinished(30000);
            return QString::fromUtf8(ldd.readAllStandardOutput());
        };
        const QString cli = needs(QStringLiteral(QUANTLENS_CLI));
        const QString helper = needs(QString::fromStdString(TextTokenizer::defaultHelperPath()));
        QVERIFY2(cli.contains(QStringLiteral("libprotobuf.so")), qPrintable(cli));  // ONNX's, for the QDQ export
        QVERIFY2(!cli.contains(QStringLiteral("libsentencepiece")), qPrintable(cli));
        QVERIFY2(helper.contains(QStringLiteral("libsentencepiece")), qPrintable(helper));
        QVERIFY2(!helper.contains(QStringLiteral("libprotobuf.so")), qPrintable(helper));
        QVERIFY2(!helper.contains(QStringLiteral("libonnx")), qPrintable(helper));
    }

    void anOverlongLineIsRefused()
    {
        auto t = TextTokenizer::forModel(test::dataPath(QStringLiteral("tokenizer/unigram")).toStdString());
        QVERIFY(t.ok());
        auto ids = t->encode(std::string((1u << 20) + 1, 'a'));
        QVERIFY(!ids.ok());
        QCOMPARE(ids.error().code, std::string("too-long"));
        QVERIFY(t->encode("still works").ok());
    }
};

QTEST_GUILESS_MAIN(TestTokenizer)
#include "tst_tokenizer.moc"
