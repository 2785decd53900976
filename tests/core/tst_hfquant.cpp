// Quantized Hugging Face checkpoints read as float: compressed-tensors int-quantized and
// pack-quantized, GPTQ v1 (desc_act, zero points minus one) and v2 (asymmetric). The
// fixtures and the floats their reference dequantization gives come from
// tests/scripts/make_hfquant_fixtures.py (compressed-tensors' and GPTQModel's rules, in
// torch): every decoded weight must equal them bit for bit. Where the reference computes
// in the scale's dtype (compressed-tensors with bfloat16 / float16 scales) the expected
// floats are already rounded to it, so the comparison is still exact. Then the hostile
// variants of tests/data/malformed/hfquant, each refused with its one-line reason.
#include <QTest>

#include <cstring>
#include <filesystem>

#include "compare/compare.h"
#include "io/safetensors.h"
#include "model.h"
#include "packedweight.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

std::string data(const char* rel) { return test::dataPath(QString::fromLatin1(rel)).toStdString(); }

bool isAuxName(const std::string& n)
{
    for (const char* s : {".weight_scale", ".weight_zero_point", ".weight_packed", ".weight_shape", ".weight_g_idx", ".qweight",
                          ".qzeros", ".scales", ".g_idx"})
        if (n.ends_with(s))
            return true;
    return false;
}

}  // namespace

class TstHfQuant : public QObject {
    Q_OBJECT
private slots:
    void decodesAsTheReference_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("type");
        QTest::addColumn<QStringList>("notes");  // one note fragment per quantized tensor, in ref order
        QTest::newRow("ct int-quantized") << "ct_int" << "CT_INT8"
                                          << QStringList{"int-quantized int8, per channel, scales BF16",
                                                         "int-quantized int8, per tensor, scales F32",
                                                         "int-quantized int8, group 8, asymmetric, scales F16"};
        QTest::newRow("ct pack-quantized") << "ct_pack" << "CT_INT4"
                                           << QStringList{"pack-quantized int4, group 32, scales F16",
                                                          "pack-quantized int4, per channel, scales BF16",
                                                          "pack-quantized int4, group 32, activation order (g_idx), asymmetric, scales F32"};
        QTest::newRow("gptq v1 desc_act") << "gptq" << "GPTQ_INT4"
                                          << QStringList{"GPTQ int4, group 32, activation order (g_idx), zero points stored minus one (v1)",
                                                         "GPTQ int4, group 32, activation order (g_idx), zero points stored minus one (v1)"};
        QTest::newRow("autogptq quantize_config.json") << "gptq_legacy" << "GPTQ_INT4"
                                                       << QStringList{"GPTQ int4, group 32, activation order (g_idx), zero points stored minus one (v1)",
                                                                      "GPTQ int4, group 32, activation order (g_idx), zero points stored minus one (v1)"};
        QTest::newRow("gptq v2 asym") << "gptq_v2" << "GPTQ_INT4"
                                      << QStringList{"GPTQ int4, group 32, zero points as stored (v2)",
                                                     "GPTQ int4, group 32, zero points as stored (v2)"};
    }
    void decodesAsTheReference()
    {
        QFETCH(QString, name);
        QFETCH(QString, type);
        QFETCH(QStringList, notes);
        const std::string folder = data(("hfquant/" + name).toLatin1().constData());
        auto m = openModel(folder);
        QVERIFY2(m.ok(), m ? "" : m.error().oneLine().c_str());
        auto ref = readSafetensors(data(("hfquant/" + name + "_ref.safetensors").toLatin1().constData()));
        QVERIFY2(ref.ok(), ref ? "" : ref.error().oneLine().c_str());
        QCOMPARE(ref->tensors.size(), size_t(notes.size()));
        for (size_t k = 0; k < ref->tensors.size(); ++k) {
            const Tensor& r = ref->tensors[k];
            const Tensor* t = m->find(r.name);
            QVERIFY2(t, r.name.c_str());
            QCOMPARE(t->dtype, DType::Packed);
            QCOMPARE(t->opaqueType, type.toStdString());
            QCOMPARE(t->shape, r.shape);
            QVERIFY2(t->note.find(notes[int(k)].toStdString()) != std::string::npos, (t->note + " | " + notes[int(k)].toStdString()).c_str());
            auto want = r.toFloat();
            auto got = t->toFloat();
            QVERIFY2(got.ok(), got ? "" : got.error().oneLine().c_str());
            QCOMPARE(got->size(), want->size());
            for (size_t i = 0; i < want->size(); ++i)
                if (std::memcmp(&(*got)[i], &(*want)[i], 4) != 0)
                    QFAIL(qPrintable(QStringLiteral("%1[%2]: %3, reference %4")
                                         .arg(QString::fromStdString(r.name))
                                         .arg(i)
                                         .arg(double((*got)[i]), 0, 'g', 9)
                                         .arg(double((*want)[i]), 0, 'g', 9)));
            // Effective bits: every part the weight is stored in, over its values.
            QVERIFY(t->packed);
            int64_t bytes = 0;
            for (const auto& part : t->packed->ranges())
                bytes += int64_t(part.size());
            QCOMPARE(bitsPerWeight(*t), double(bytes) * 8.0 / double(t->numel()));
        }
        // The parts are gone from the tensor list; what was not quantized stays as stored.
        for (const Tensor& t : m->tensors) {
            QVERIFY2(!isAuxName(t.name), t.name.c_str());
            if (t.dtype != DType::Packed)
                QVERIFY(t.dtype == DType::F32 || t.dtype == DType::F16);
        }
    }

    // The bits per weight for known layouts, counted by hand from the file's shapes.
    void effectiveBits()
    {
        auto m = openModel(data("hfquant/gptq"));
        QVERIFY(m.ok());
        // q_proj [16, 64] int4 g32: qweight 8x16 I32, qzeros 2x2 I32, scales 2x16 F16, g_idx 64 I32.
        const Tensor* q = m->find("model.layers.0.self_attn.q_proj.weight");
        QVERIFY(q);
        QCOMPARE(bitsPerWeight(*q), double(8 * 16 * 4 + 2 * 2 * 4 + 2 * 16 * 2 + 64 * 4) * 8 / (16 * 64));
        auto c = openModel(data("hfquant/ct_pack"));
        QVERIFY(c.ok());
        // up_proj [16, 96] int4 g32: packed 16x12 I32, scales 16x3 F16, weight_shape 2 I64.
        const Tensor* u = c->find("model.layers.0.mlp.up_proj.weight");
        QVERIFY(u);
        QCOMPARE(bitsPerWeight(*u), double(16 * 12 * 4 + 16 * 3 * 2 + 16) * 8 / (16 * 96));
        // The model's bytes: up_proj; gate_proj [10, 36] (5 words a row, BF16 [10, 1] scales);
        // down_proj [12, 64] (F32 [12, 2] scales, zero points packed to [2, 2], g_idx); norm.
        QCOMPARE(c->byteCount(), int64_t(16 * 12 * 4 + 16 * 3 * 2 + 16) + (10 * 5 * 4 + 10 * 2 + 16) +
                                     (12 * 8 * 4 + 12 * 2 * 4 + 2 * 2 * 4 + 64 * 4 + 16) + 16 * 4);
    }

    // Without a config.json nothing says the integers are quantized weights: listed as stored.
    void bareFileIsListedAsStored()
    {
        auto m = readSafetensors(data("hfquant/ct_pack/model.safetensors"));
        QVERIFY(m.ok());
        QVERIFY(m->find("model.layers.0.mlp.up_proj.weight_packed"));
        QVERIFY(!m->find("model.layers.0.mlp.up_proj.weight"));
    }

    // A compressed-tensors format not decoded here (marlin-24 names its codes weight_packed
    // too) is listed as stored, not misread as pack-quantized.
    void otherFormatIsListedAsStored()
    {
        auto m = openModel(data("hfquant/ct_other_format"));
        QVERIFY2(m.ok(), m ? "" : m.error().oneLine().c_str());
        QVERIFY(m->find("model.layers.0.mlp.up_proj.weight_packed"));
        QVERIFY(!m->find("model.layers.0.mlp.up_proj.weight"));
        for (const Tensor& t : m->tensors)
            QVERIFY(t.dtype != DType::Packed);
    }

    void malformed_data()
    {
        QTest::addColumn<QString>("folder");
        QTest::addColumn<QString>("reason");
        auto row = [](const char* f, const char* why) { QTest::newRow(f) << QString::fromLatin1(f) << QString::fromLatin1(why); };
        row("ct_truncated_packed", "has shape [16, 11]; 96 4-bit values per row need [16, 12]");
        row("ct_scale_shape", "5 groups, which do not divide 96 inputs");
        row("ct_weight_shape_huge", "not between 1 and 2^24");
        row("ct_missing_scale", "'model.layers.0.mlp.up_proj.weight_scale' is missing");
        row("ct_gidx_range", "puts input 5 in group 7, outside the 2 groups");
        row("ct_int_scale_dtype", "is I32, not a float type");
        row("gptq_gidx_range", "puts input 3 in group 2, outside the 2 groups");
        row("gptq_gidx_negative", "puts input 3 in group -1, outside the 2 groups");
        row("gptq_qzeros_shape", "qzeros 'model.layers.0.self_attn.q_proj.qzeros' has shape [2, 1], not [2, 2]");
        row("gptq_gidx_length", "has shape [63] (63 values); 64 expected");
        row("gptq_bits", "bits is not 2, 4 or 8");
        row("gptq_format", "checkpoint_format 'marlin' is not gptq or gptq_v2");
        row("config_not_object", "quantization_config is not an object");
    }
    void malformed()
    {
        QFETCH(QString, folder);
        QFETCH(QString, reason);
        const std::string path = data(("malformed/hfquant/" + folder).toLatin1().constData());
        QVERIFY2(std::filesystem::exists(path), "fixture missing; run tests/scripts/make_hfquant_fixtures.py");
        auto m = openModel(path);
        QVERIFY2(!m.ok(), "a hostile checkpoint opened");
        const std::string line = m.error().oneLine();
        QVERIFY2(line.find(reason.toStdString()) != std::string::npos, line.c_str());
        QVERIFY2(line.find('\n') == std::string::npos, line.c_str());
        QVERIFY2(line.find("config.json") != std::string::npos, line.c_str());  // names the checkpoint
    }
};

QTEST_GUILESS_MAIN(TstHfQuant)
#include "tst_hfquant.moc"
