// quantlens-cli compare, run as a user runs it: the --json document, exit codes, and the
// figure a user checks first: against its own fake-quant export, every tensor's SQNR is
// exactly the one `quantize --json` reported.
#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "clirunner.h"
#include "testsupport.h"

using json = nlohmann::json;
using quantlens::test::runCli;

class TstCliCompare : public QObject {
    Q_OBJECT
private slots:
    void fakeQuantSqnrIsQuantizeSqnr()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir dir;
        const QString model = quantlens::test::sharedModel("stories260K.gguf");
        const QString fq = dir.filePath("fq.safetensors");
        for (const QString& scheme : {QStringLiteral("seed"), QStringLiteral("q8_0")}) {
            auto q = runCli({"quantize", model, "--all-linear", "--scheme", scheme, "--bits", "8", "--fake-quant", fq,
                             "--json"});
            QCOMPARE(q.code, 0);
            const json qj = json::parse(q.out.toStdString());
            auto c = runCli({"compare", fq, model, "--json"});
            QCOMPARE(c.code, 0);
            const json cj = json::parse(c.out.toStdString());
            QCOMPARE(QString::fromStdString(cj["a"].get<std::string>()), fq);
            QCOMPARE(QString::fromStdString(cj["b"].get<std::string>()), model);
            QVERIFY(cj["unmatched_a"].empty() && cj["unmatched_b"].empty() && cj["mismatched"].empty());
            std::map<std::string, json> byName;
            for (const json& m : cj["matched"]) {
                QVERIFY(m["a_name"] == m["b_name"]);
                byName[m["a_name"].get<std::string>()] = m;
            }
            QCOMPARE(byName.size(), size_t(48));
            QVERIFY(qj["tensors"].size() >= 35);
            for (const json& t : qj["tensors"]) {
                const json& m = byName.at(t["name"].get<std::string>());
                QVERIFY2(m["sqnr_db"].get<double>() == t["sqnr_db"].get<double>(), t["name"].dump().c_str());
                QVERIFY(m["cosine"].get<double>() == t["cosine"].get<double>());
                QVERIFY(m["max_abs_error"].get<double>() == t["max_abs_error"].get<double>());
                QVERIFY(m["shape"] == t["shape"]);
                QCOMPARE(m["a_bits_per_weight"].get<double>(), 32.0);  // the fake-quant copy is float32
                QCOMPARE(m["b_bits_per_weight"].get<double>(), 32.0);
                const double rel = m["rel_frobenius"].get<double>();
                QVERIFY(std::abs(rel - std::pow(10.0, -t["sqnr_db"].get<double>() / 20)) < 1e-9);
            }
            // Tensors quantize left alone compare exactly: sqnr null (inf), no error.
            const json& norm = byName.at("blk.0.attn_norm.weight");
            QVERIFY(norm["sqnr_db"].is_null());
            QCOMPARE(norm["max_abs_error"].get<double>(), 0.0);
        }
    }

    // The GGUF export decoded by the reader as ggml decodes it: each tensor's figures are
    // exactly those `quantize --json` reported for it, Q8_0 and the F16 fallbacks alike.
    void ggufQ8_0ExportSqnrIsQuantizeSqnr()
    {
        QL_REQUIRE_SHARED_MODELS();
        QTemporaryDir dir;
        const QString model = quantlens::test::sharedModel("stories260K.gguf");
        const QString out = dir.filePath("q8.gguf");
        auto q = runCli({"quantize", model, "--all-linear", "--scheme", "q8_0", "--out", out, "--json"});
        QVERIFY2(q.code == 0, q.err.constData());
        const json qj = json::parse(q.out.toStdString());
        auto c = runCli({"compare", out, model, "--json"});
        QCOMPARE(c.code, 0);
        const json cj = json::parse(c.out.toStdString());
        std::map<std::string, json> byName;
        for (const json& m : cj["matched"])
            byName[m["a_name"].get<std::string>()] = m;
        QCOMPARE(byName.size(), size_t(48));
        int quantized = 0, q8 = 0;
        for (const json& t : qj["tensors"]) {
            if (!t.contains("sqnr_db"))
                continue;
            ++quantized;
            q8 += t["type"] == "q8_0";
            const json& m = byName.at(t["name"].get<std::string>());
            QVERIFY2(m["sqnr_db"].get<double>() == t["sqnr_db"].get<double>(), t["name"].dump().c_str());
            QVERIFY(m["cosine"].get<double>() == t["cosine"].get<double>());
            QVERIFY(m["max_abs_error"].get<double>() == t["max_abs_error"].get<double>());
            if (t["type"] == "q8_0")
                QCOMPARE(m["a_bits_per_weight"].get<double>(), 8.5);
        }
        QCOMPARE(quantized, 36);  // 31 Q8_0 + the five ffn_down (rows of 172) as F16
        QCOMPARE(q8, 31);
    }

    // The compressed-tensors exports (W8A8 int-quantized per channel, W4A16 pack-quantized
    // group 8 and per channel) read back through config.json's quantization_config: each
    // tensor's figures are exactly those `quantize --json` reported, and the bits per weight
    // count the codes, the scales and weight_shape.
    void compressedTensorsExportSqnrIsQuantizeSqnr()
    {
        QTemporaryDir dir;
        const QString model = quantlens::test::dataPath(QStringLiteral("encoder/llama3_tiny"));
        struct Case {
            const char* name;
            QStringList args;
            int bits;
            int64_t group;  // 0: per channel
        };
        const Case cases[] = {
            {"w8a8", {"--scheme", "torch-symmetric", "--granularity", "channel"}, 8, 0},
            {"w4a16-g8", {"--scheme", "torch-symmetric", "--bits", "4", "--granularity", "group:8"}, 4, 8},
            {"w4a16-channel", {"--scheme", "seed", "--bits", "4", "--granularity", "channel"}, 4, 0},
        };
        for (const Case& k : cases) {
            const QString out = dir.filePath(QString::fromLatin1(k.name));
            QStringList args{"quantize", model, "--all-linear"};
            args << k.args << QStringList{"--format", "compressed-tensors", "--out", out, "--json"};
            auto q = runCli(args);
            QVERIFY2(q.code == 0, q.err.constData());
            const json qj = json::parse(q.out.toStdString());
            auto c = runCli({"compare", out, model, "--json"});
            QVERIFY2(c.code == 0, c.err.constData());
            const json cj = json::parse(c.out.toStdString());
            QVERIFY2(cj["unmatched_a"].empty() && cj["unmatched_b"].empty() && cj["mismatched"].empty(), cj.dump().c_str());
            std::map<std::string, json> byName;
            for (const json& m : cj["matched"])
                byName[m["a_name"].get<std::string>()] = m;
            QCOMPARE(byName.size(), size_t(20));
            QCOMPARE(qj["tensors"].size(), size_t(14));
            for (const json& t : qj["tensors"]) {
                const json& m = byName.at(t["name"].get<std::string>());
                QVERIFY2(m["sqnr_db"].get<double>() == t["sqnr_db"].get<double>(), (std::string(k.name) + " " + t["name"].dump()).c_str());
                QVERIFY(m["cosine"].get<double>() == t["cosine"].get<double>());
                QVERIFY(m["max_abs_error"].get<double>() == t["max_abs_error"].get<double>());
                const int64_t outF = t["shape"][0].get<int64_t>(), inF = t["shape"][1].get<int64_t>();
                int64_t bytes = 0;
                if (k.bits == 8)
                    bytes = outF * inF + outF * 4;  // I8 codes + F32 [out, 1] scales
                else
                    bytes = outF * ((inF + 7) / 8) * 4 + outF * (k.group ? inF / k.group : 1) * 4 + 16;  // + weight_shape
                QCOMPARE(m["a_bits_per_weight"].get<double>(), double(bytes) * 8.0 / double(outF * inF));
                QCOMPARE(m["b_bits_per_weight"].get<double>(), 32.0);
            }
        }
    }

    void hfCopyTextTable()
    {
        QL_REQUIRE_SHARED_MODELS();
        auto c = runCli({"compare", quantlens::test::dataPath("compare/stories260K_hf.safetensors"),
                         quantlens::test::sharedModel("stories260K.gguf")});
        QCOMPARE(c.code, 0);
        QVERIFY(c.out.contains("model.layers.0.self_attn.q_proj.weight"));
        QVERIFY(c.out.contains("blk.0.attn_q.weight"));
        QVERIFY(c.out.contains("48 matched, 0 shape mismatches, 0 only in A, 0 only in B"));
    }

    void unmatchedNamesAreListed()
    {
        auto c = runCli({"compare", "demo", quantlens::test::dataPath("compare/stories260K_hf.safetensors"), "--json"});
        QCOMPARE(c.code, 0);
        const json j = json::parse(c.out.toStdString());
        QVERIFY(j["matched"].empty());
        QCOMPARE(j["unmatched_b"].size(), size_t(48));
        bool found = false;
        for (const json& u : j["unmatched_b"]) {
            QVERIFY(!u["reason"].get<std::string>().empty());
            found |= u["name"] == "model.layers.4.mlp.down_proj.weight";
        }
        QVERIFY(found);
        QVERIFY(!j["unmatched_a"].empty());
    }

    void mismatchedShapesCarryBoth()
    {
        auto c = runCli({"compare", quantlens::test::dataPath("encoder/llama_tiny.safetensors"),
                         quantlens::test::dataPath("compare/stories260K_hf.safetensors"), "--json"});
        QCOMPARE(c.code, 0);
        const json j = json::parse(c.out.toStdString());
        QVERIFY(!j["mismatched"].empty());
        for (const json& m : j["mismatched"]) {
            QVERIFY(m["a_shape"] != m["b_shape"]);
            QVERIFY(!m["reason"].get<std::string>().empty());
        }
    }

    void exitCodes()
    {
        QCOMPARE(runCli({"compare", "demo"}).code, 2);
        auto r = runCli({"compare", "demo", "/nonexistent/x.safetensors", "--json"});
        QCOMPARE(r.code, 1);
        QVERIFY(r.out.isEmpty());
        QVERIFY(r.err.contains("x.safetensors"));
    }
};

QTEST_GUILESS_MAIN(TstCliCompare)
#include "tst_cli_compare.moc"
