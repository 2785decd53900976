// Plain-text calibration (issue #19): the GGUF llama vocabulary turned into a SentencePiece
// model must tokenize as llama.cpp does. The reference ids come from llama.cpp itself
// (node-llama-cpp, tests/scripts/tokenize_llama.mjs) on ../shared/models/stories260K.gguf.
#include <QFile>
#include <QTest>

#include <nlohmann/json.hpp>

#include "runner/tokenizer.h"
#include "testsupport.h"

using namespace quantlens;

class TestTokenizer : public QObject {
    Q_OBJECT
private slots:
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
