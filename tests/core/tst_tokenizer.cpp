// Plain-text calibration (issue #19): the GGUF llama vocabulary turned into a SentencePiece
// model must tokenize as llama.cpp does. The reference ids come from llama.cpp itself
// (node-llama-cpp, tests/scripts/tokenize_llama.mjs) on ../shared/models/stories260K.gguf.
#include <QFile>
#include <QTemporaryDir>
#include <QTest>

#include <nlohmann/json.hpp>

#include "runner/tokenizer.h"
#include "testsupport.h"

using namespace quantlens;

class TestTokenizer : public QObject {
    Q_OBJECT
private slots:
    void init()
    {
        if (!textTokenizerAvailable())
            QSKIP("this executable loaded ONNX's protobuf 3.21 (a linker without --as-needed), which Debian's "
                  "libsentencepiece cannot share a process with; the tokenizer is refused there with the reason");
    }

    void ggufVocabularyTokenizesAsLlamaCpp()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto t = TextTokenizer::forModel(test::sharedModel(QStringLiteral("stories260K.gguf")).toStdString());
        QVERIFY2(t.ok(), t ? "" : t.error().oneLine().c_str());
        QFile f(test::dataPath(QStringLiteral("activations/stories260K_llamacpp_tokens.jsonl")));
        QVERIFY(f.open(QIODevice::ReadOnly));
        int lines = 0;
        while (!f.atEnd()) {
            const QByteArray line = f.readLine().trimmed();
            if (line.isEmpty())
                continue;
            const auto j = nlohmann::json::parse(line.toStdString());
            auto ids = t->encode(j["text"].get<std::string>());
            QVERIFY(ids.ok());
            QCOMPARE(*ids, j["ids"].get<std::vector<int64_t>>());
            ++lines;
        }
        QCOMPARE(lines, 7);  // spaces, a tab, punctuation, digits, accents, CJK and an emoji (byte fallback)
        QCOMPARE(t->bosId(), int64_t(1));
        // One sequence per non-empty line, BOS first, as llama.cpp starts a prompt.
        auto seqs = t->encodeLines("Once upon a time\n\n  \nThe end.\r\n");
        QVERIFY(seqs.ok());
        QCOMPARE(seqs->size(), size_t(2));
        QCOMPARE((*seqs)[0].front(), int64_t(1));
        QCOMPARE(std::vector<int64_t>((*seqs)[1].begin() + 1, (*seqs)[1].end()), *t->encode("The end."));
        QVERIFY(!t->encodeLines("\n \n").ok());
    }

    void tokenizerModelBesideTheWeights()
    {
        QL_REQUIRE_SHARED_MODELS();
        // A Hugging Face folder's tokenizer.model: here the same vocabulary, serialized.
        int64_t bos = -1;
        bool addBos = false;
        auto proto = ggufSentencePieceModel(test::sharedModel(QStringLiteral("stories260K.gguf")).toStdString(), bos, addBos);
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
        auto gguf = TextTokenizer::forModel(test::sharedModel(QStringLiteral("stories260K.gguf")).toStdString());
        QVERIFY(gguf.ok());
        const std::string text = "Lily and Ben found a shiny red ball in the garden.";
        QCOMPARE(*hf->encode(text), *gguf->encode(text));
        QCOMPARE(hf->bosId(), int64_t(1));

        // A GGUF cut short inside its key/value section fails with a reason.
        QFile src(test::sharedModel(QStringLiteral("stories260K.gguf")));
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
        // A truncated GGUF header fails with a reason, not a crash.
        QVERIFY(!TextTokenizer::forModel(test::dataPath(QStringLiteral("encoder/gpt2_tiny_ref.json")).toStdString()).ok());
    }
};

QTEST_GUILESS_MAIN(TestTokenizer)
#include "tst_tokenizer.moc"
