// Reading GPTQ checkpoints (AutoGPTQ, GPTQModel, AutoRound's GPTQ export). Layout and
// rules from GPTQModel's own safetensors dequantizer, gptqmodel/utils/model_dequant.py
// (convert_gptq_file, unpack_rows, unpack_cols, _uses_gptq_v1_qzeros,
// _correct_gptq_v1_qzeros) and gptqmodel/nn_modules/qlinear/__init__.py dequantize_weight,
// which agree with AutoGPTQ's auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py (zeros + 1,
// then masked to the field):
//  - <m>.qweight int32 [in / pf, out]: input i of output o in word [i / pf][o] at bits
//    (i % pf) * bits, unsigned, pf = 32 / bits;
//  - <m>.qzeros int32 [groups, out / pf], packed the same way along outputs;
//  - <m>.scales [groups, out] (float16 in practice), <m>.g_idx int32 [in] (the group of
//    each input; with desc_act a permutation of i / group_size);
//  - checkpoint_format "gptq" (or none; the historic v1) stores each zero point minus one,
//    so the reader adds one back to each field, wrapping within the field; "gptq_v2"
//    stores them as they are;
//  - w = (q - zero[g_idx]) * scale[g_idx] in float32, then transposed to [out, in].
#include <nlohmann/json.hpp>

#include "io/hfquant.h"

namespace quantlens {

Status decodeGptq(Model& m, const nlohmann::ordered_json& qc, const std::string& path)
{
    auto bad = [&](const std::string& why) { return makeError("bad-config", "quantization_config: " + why, path); };
    int bits = 4;
    if (auto b = qc.find("bits"); b != qc.end()) {
        if (!b->is_number_integer() || (b->get<int64_t>() != 2 && b->get<int64_t>() != 4 && b->get<int64_t>() != 8))
            return bad("bits is not 2, 4 or 8 (3-bit and planar GPTQ layouts are not decoded)");
        bits = int(b->get<int64_t>());
    }
    std::string format = "gptq";
    for (const char* key : {"checkpoint_format", "format"})
        if (auto f = qc.find(key); f != qc.end() && f->is_string()) {
            format = f->get<std::string>();
            break;
        }
    bool v1 = false;
    if (format == "gptq" || format == "gemm")
        v1 = true;
    else if (format != "gptq_v2")
        return bad("checkpoint_format '" + format + "' is not gptq or gptq_v2 (other kernels' repacked layouts are not decoded)");
    bool perModuleBits = false;
    if (auto d = qc.find("dynamic"); d != qc.end() && d->is_object() && !d->empty())
        perModuleBits = true;  // GPTQModel per-module overrides: each module's bits follow from its own tensors

    hfquant::Rewrite rw(m, path);
    for (const Tensor& t : m.tensors) {
        if (!t.name.ends_with(".qweight"))
            continue;
        const std::string mod = t.name.substr(0, t.name.size() - 8);
        const std::string name = mod + ".weight";
        auto fail = [&](const std::string& why) { return makeError("bad-packed", why, path, -1, name); };
        const Tensor* qzeros = rw.find(mod + ".qzeros");
        const Tensor* scales = rw.find(mod + ".scales");
        const Tensor* gIdx = rw.find(mod + ".g_idx");
        if (!qzeros || !scales)
            return fail("GPTQ module without '" + mod + (qzeros ? ".scales'" : ".qzeros'"));
        if (t.rank() != 2 || scales->rank() != 2)
            return fail("qweight " + shapeString(t.shape) + " and scales " + shapeString(scales->shape) + " are not both 2-D");
        // Bounds first: a dimension next to a zero one costs no bytes, so the file does not limit it.
        for (const Tensor* x : {&t, scales})
            for (int64_t d : x->shape)
                if (d > (int64_t(1) << 40))
                    return fail("'" + x->name + "' has shape " + shapeString(x->shape) + ", implausibly large");
        PackedWeight pw;
        pw.bits = bits;
        if (perModuleBits && gIdx && gIdx->rank() == 1 && gIdx->shape[0] > 0 && (t.shape[0] * 32) % gIdx->shape[0] == 0)
            pw.bits = int((t.shape[0] * 32) / gIdx->shape[0]);
        if (pw.bits != 2 && pw.bits != 4 && pw.bits != 8)
            return fail("qweight " + shapeString(t.shape) + " does not hold 2, 4 or 8 bits per input");
        const int pf = 32 / pw.bits;
        pw.out = t.shape[1];
        pw.in = t.shape[0] * pf;
        pw.codes = PackedWeight::Codes::PackedCols;
        pw.q = t;
        pw.scale = *scales;
        pw.scaleGroupsMajor = true;
        pw.groups = scales->shape[0];
        pw.scaleRows = pw.out;
        if (scales->shape[1] != pw.out)
            return fail("scales " + shapeString(scales->shape) + " do not have the " + std::to_string(pw.out) + " outputs of qweight " +
                        shapeString(t.shape));
        pw.zeros = PackedWeight::Zeros::GptqPacked;
        pw.zero = *qzeros;
        pw.zeroOffset = v1 ? 1 : 0;
        if (gIdx)
            pw.gIdx = *gIdx;
        const std::string label = "GPTQ_INT" + std::to_string(pw.bits);
        std::string note = "GPTQ int" + std::to_string(pw.bits);
        if (pw.groups > 0 && pw.in % pw.groups == 0)
            note += pw.groups == 1 ? ", per channel" : ", group " + std::to_string(pw.in / pw.groups);
        bool actOrder = false;
        if (gIdx && pw.groups > 0 && pw.in % pw.groups == 0) {
            auto g = gIdx->toFloat();
            if (g && int64_t(g->size()) == pw.in)
                for (int64_t i = 0; i < pw.in && !actOrder; ++i)
                    actOrder = (*g)[size_t(i)] != float(i / (pw.in / pw.groups));
        }
        if (actOrder)
            note += ", activation order (g_idx)";
        note += v1 ? ", zero points stored minus one (v1)" : ", zero points as stored (v2)";
        if (Status s = rw.add(mod, t.name, std::move(pw), {mod + ".qzeros", mod + ".scales", mod + ".g_idx"},
                              label, std::move(note)); !s)
            return s;
    }
    rw.apply();
    return Ok{};
}

}  // namespace quantlens
