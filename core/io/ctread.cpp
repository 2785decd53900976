// Reading compressed-tensors checkpoints (the layout llm-compressor writes). Names and
// rules from the compressed-tensors sources (neuralmagic/compressed-tensors):
//  - compressors/quantized_compressors/naive_quantized.py: "int-quantized" and
//    "naive-quantized" keep <m>.weight as integers beside <m>.weight_scale and an
//    optional <m>.weight_zero_point / <m>.weight_g_idx;
//  - compressors/quantized_compressors/pack_quantized.py: "pack-quantized" stores
//    <m>.weight_packed (pack_to_int32: value + 2^(bits-1), 32/bits per int32 along a row,
//    lowest bits first), <m>.weight_shape, <m>.weight_scale, and for asymmetric group or
//    channel schemes <m>.weight_zero_point packed the same way along dim 0;
//  - quantization/lifecycle/forward.py dequantize(): the strategy follows the scale's
//    shape ([1] tensor, [out, 1] channel, [out, G] group, [R, C] block), g_idx holding a
//    -1 means column order, and the arithmetic runs in the scale's dtype.
#include <cstdio>
#include <optional>
#include <regex>

#include <nlohmann/json.hpp>

#include "io/hfquant.h"

namespace quantlens {

namespace {

using Json = nlohmann::ordered_json;

struct WeightArgs {
    int bits = 8;
    bool symmetric = true;
    std::string strategy;
    std::string format;  // the group's own format, else the config's
};

struct Group {
    WeightArgs args;
    std::vector<std::string> names;     // exact module names
    std::vector<std::regex> patterns;   // "re:" targets (Python re.match: anchored at the start)
    bool byClass = false;               // a class name ("Linear"): every Linear
};

Result<std::vector<Group>> parseGroups(const Json& qc, const std::string& path)
{
    auto bad = [&](const std::string& why) { return makeError("bad-config", "quantization_config: " + why, path); };
    std::string format;
    if (auto f = qc.find("format"); f != qc.end() && f->is_string())
        format = f->get<std::string>();
    const auto cg = qc.find("config_groups");
    if (cg == qc.end() || !cg->is_object())
        return bad("no config_groups object");
    std::vector<Group> groups;
    for (auto it = cg->begin(); it != cg->end(); ++it) {
        const Json& g = it.value();
        if (!g.is_object())
            return bad("config group '" + it.key() + "' is not an object");
        Group out;
        out.args.format = format;
        if (auto f = g.find("format"); f != g.end() && f->is_string())
            out.args.format = f->get<std::string>();
        const auto w = g.find("weights");
        if (w == g.end() || w->is_null())
            continue;  // activations only
        if (!w->is_object())
            return bad("config group '" + it.key() + "' weights is not an object");
        if (auto b = w->find("num_bits"); b != w->end()) {
            if (!b->is_number_integer() || b->get<int64_t>() < 1 || b->get<int64_t>() > 8)
                return bad("config group '" + it.key() + "' num_bits is not an integer from 1 to 8");
            out.args.bits = int(b->get<int64_t>());
        }
        if (auto s = w->find("symmetric"); s != w->end() && s->is_boolean())
            out.args.symmetric = s->get<bool>();
        if (auto s = w->find("strategy"); s != w->end() && s->is_string())
            out.args.strategy = s->get<std::string>();
        if (auto ty = w->find("type"); ty != w->end() && ty->is_string() && ty->get<std::string>() != "int")
            continue;  // float weights (fp8, fp4): not integer codes, left as stored
        const auto targets = g.find("targets");
        if (targets == g.end() || !targets->is_array())
            return bad("config group '" + it.key() + "' has no targets list");
        for (const Json& t : *targets) {
            if (!t.is_string())
                return bad("config group '" + it.key() + "' has a target that is not a string");
            const std::string s = t.get<std::string>();
            if (s.rfind("re:", 0) == 0) {
                if (s.size() > 1000)
                    return bad("a target pattern is over 1000 characters");
                try {
                    out.patterns.emplace_back(s.substr(3), std::regex::ECMAScript | std::regex::optimize);
                } catch (const std::regex_error&) {
                    return bad("target '" + s + "' is not a regular expression this reader understands");
                }
            } else if (s.find('.') != std::string::npos) {
                out.names.push_back(s);
            } else {
                out.byClass = true;  // "Linear" and other class names: every Linear here
            }
        }
        groups.push_back(std::move(out));
    }
    return groups;
}

// The weight arguments of module `mod`: groups naming it (exactly or by pattern) first,
// then groups targeting a class; several that disagree are an error.
Result<WeightArgs> argsFor(const std::vector<Group>& groups, const std::string& mod, const std::string& path)
{
    std::optional<WeightArgs> byName, byClass;
    bool conflict = false;
    auto take = [&](std::optional<WeightArgs>& slot, const WeightArgs& a) {
        if (slot && (slot->bits != a.bits || slot->symmetric != a.symmetric || slot->format != a.format))
            conflict = true;
        slot = a;
    };
    for (const Group& g : groups) {
        bool named = std::find(g.names.begin(), g.names.end(), mod) != g.names.end();
        for (const std::regex& r : g.patterns) {
            if (named)
                break;
            try {
                named = std::regex_search(mod, r, std::regex_constants::match_continuous);
            } catch (const std::regex_error&) {
                return makeError("bad-config", "a target pattern is too complex to match", path, -1, mod);
            }
        }
        if (named)
            take(byName, g.args);
        else if (g.byClass && !byName)
            take(byClass, g.args);
    }
    if (conflict)
        return makeError("bad-config", "config groups that disagree on bits or format all target it", path, -1, mod);
    if (byName)
        return *byName;
    if (byClass)
        return *byClass;
    return makeError("bad-config", "no config group of quantization_config targets it", path, -1, mod);
}

// The scale's [rows, groups] as dequantize() infers the strategy from its shape.
Status scaleLayout(const Tensor& s, PackedWeight& pw, const std::string& name)
{
    if (s.rank() <= 1 && s.numel() == 1) {
        pw.scaleRows = 1;
        pw.groups = 1;
        return Ok{};
    }
    if (s.rank() != 2)
        return makeError("bad-packed", "scale '" + s.name + "' has shape " + shapeString(s.shape) +
                                           "; [1], [out, 1], [out, groups] or [rows, cols] blocks expected",
                         {}, -1, name);
    pw.scaleRows = s.shape[0];
    pw.groups = s.shape[1];
    if (pw.scaleRows <= 0 || pw.groups <= 0 || pw.out % pw.scaleRows != 0)
        return makeError("bad-packed", "scale '" + s.name + "' has shape " + shapeString(s.shape) + ", which does not tile the [" +
                                           std::to_string(pw.out) + ", " + std::to_string(pw.in) + "] weight",
                         {}, -1, name);
    return Ok{};
}

std::string strategyText(const PackedWeight& pw)
{
    if (pw.scaleRows == 1 && pw.groups == 1)
        return "per tensor";
    if (pw.groups == 1)
        return pw.scaleRows == pw.out ? "per channel" : "blocks of " + std::to_string(pw.out / pw.scaleRows) + " rows";
    const std::string g = "group " + std::to_string(pw.in / pw.groups);
    if (pw.scaleRows != pw.out)
        return "blocks of " + std::to_string(pw.out / pw.scaleRows) + "x" + std::to_string(pw.in / pw.groups);
    return pw.gIdx.name.empty() ? g : g + ", activation order (g_idx)";
}

DType roundingFor(DType scale) { return scale == DType::F16 || scale == DType::BF16 ? scale : DType::F32; }

}  // namespace

Status decodeCompressedTensors(Model& m, const Json& qc, const std::string& path)
{
    if (auto st = qc.find("quantization_status"); st != qc.end() && st->is_string() && st->get<std::string>() != "compressed")
        return Ok{};  // "frozen" etc.: the weights are still float
    auto groups = parseGroups(qc, path);
    if (!groups)
        return groups.error();
    hfquant::Rewrite rw(m, path);
    auto part = [&](const std::string& n) { return rw.find(n); };
    for (const Tensor& t : m.tensors) {
        std::string mod;
        bool packed = false;
        if (t.name.ends_with(".weight_packed")) {
            mod = t.name.substr(0, t.name.size() - 14);
            packed = true;
        } else if (t.name.ends_with(".weight") && part(t.name + "_scale") &&
                   (t.dtype == DType::I8 || t.dtype == DType::I16 || t.dtype == DType::I32 || t.dtype == DType::U8)) {
            mod = t.name.substr(0, t.name.size() - 7);
        } else {
            continue;
        }
        const std::string name = mod + ".weight";
        auto args = argsFor(*groups, mod, path);
        if (!args)
            return args.error();
        // Other layouts under the same names (marlin-24's weight_packed, say) are not
        // misread: their tensors stay listed as stored.
        if (packed ? args->format != "pack-quantized" : args->format != "int-quantized" && args->format != "naive-quantized")
            continue;
        auto fail = [&](const std::string& why) { return makeError("bad-packed", why, path, -1, name); };
        const Tensor* scale = part(mod + ".weight_scale");
        if (!scale)
            return fail("'" + mod + ".weight_scale' is missing");
        if (part(mod + ".weight_global_scale"))
            return fail("a weight_global_scale (NVFP4) is not an integer scheme this reader decodes");
        PackedWeight pw;
        pw.q = t;
        pw.scale = *scale;
        pw.bits = args->bits;
        pw.roundTo = roundingFor(scale->dtype);
        const Tensor* zp = part(mod + ".weight_zero_point");
        const Tensor* gi = part(mod + ".weight_g_idx");
        if (gi) {
            pw.gIdx = *gi;
            pw.gIdxColumnOrder = true;
        }
        std::vector<std::string> parts{mod + ".weight_scale", mod + ".weight_zero_point", mod + ".weight_g_idx"};
        std::string label, note;
        if (packed) {
            const Tensor* shape = part(mod + ".weight_shape");
            if (!shape)
                return fail("'" + mod + ".weight_shape' is missing");
            if ((shape->dtype != DType::I32 && shape->dtype != DType::I64) || shape->numel() != 2 || shape->rank() != 1)
                return fail("'" + shape->name + "' is " + std::string(dtypeName(shape->dtype)) + " " + shapeString(shape->shape) +
                            ", not an I32/I64 [2]");
            auto dims = shape->toFloat();
            if (!dims)
                return dims.error();
            // Compared in float so a huge or negative value cannot overflow a cast.
            for (float d : *dims)
                if (!(d >= 1.0f && d <= float(1 << 24)))
                    return fail("'" + shape->name + "' holds a dimension that is not between 1 and 2^24");
            pw.out = int64_t((*dims)[0]);
            pw.in = int64_t((*dims)[1]);
            pw.codes = PackedWeight::Codes::PackedRows;
            pw.others.push_back(*shape);
            parts.push_back(mod + ".weight_shape");
            if (Status s = scaleLayout(*scale, pw, name); !s)
                return s;
            // pack_quantized.py decompress_weight: asymmetric group/channel zero points are
            // packed along dim 0; any other zero point is used as stored.
            const bool packedZp = !args->symmetric && (args->strategy == "group" || args->strategy == "channel");
            if (packedZp && !zp)
                return fail("asymmetric pack-quantized weight without '" + mod + ".weight_zero_point'");
            if (zp) {
                pw.zero = *zp;
                pw.zeros = packedZp ? PackedWeight::Zeros::CtPacked : PackedWeight::Zeros::Plain;
            }
            label = "CT_INT" + std::to_string(pw.bits);
            note = "compressed-tensors pack-quantized int" + std::to_string(pw.bits) + ", " + strategyText(pw);
        } else {
            if (t.rank() != 2)
                return fail("'" + t.name + "' has shape " + shapeString(t.shape) + "; an [out, in] Linear weight expected");
            pw.out = t.shape[0];
            pw.in = t.shape[1];
            pw.codes = PackedWeight::Codes::Plain;
            if (Status s = scaleLayout(*scale, pw, name); !s)
                return s;
            if (zp) {
                pw.zero = *zp;
                pw.zeros = PackedWeight::Zeros::Plain;
            }
            label = "CT_INT" + std::to_string(pw.bits);
            note = "compressed-tensors " + args->format + " int" + std::to_string(pw.bits) + ", " + strategyText(pw);
        }
        if (pw.zeros != PackedWeight::Zeros::None)
            note += ", asymmetric";
        note += ", scales " + std::string(dtypeName(scale->dtype));
        // W8A8 static: the layer's input quantization is not a weight; it is shown with the
        // layer ("static input ...") instead of as two more tensors.
        if (const Tensor* is = part(mod + ".input_scale")) {
            const Tensor* iz = part(mod + ".input_zero_point");
            auto floatOf = [](const Tensor* x) -> std::optional<float> {
                if (!x || x->numel() != 1 || !x->decodable() || dtypeInfo(x->dtype).isBlock)
                    return std::nullopt;
                auto v = x->toFloat();
                return v && v->size() == 1 ? std::optional<float>((*v)[0]) : std::nullopt;
            };
            const auto sv = floatOf(is);
            const auto zv = floatOf(iz);
            // Compared in float so a huge or NaN value cannot overflow the int cast below.
            if (!sv || (iz && !(zv && *zv >= -65536.0f && *zv <= 65536.0f)))
                return fail("'" + mod + ".input_scale' / '.input_zero_point' must hold one number each");
            char buf[96];
            std::snprintf(buf, sizeof buf, ", static input scale %.6g, zero point %d (int8)", double(*sv), zv ? int(*zv) : 0);
            note += buf;
            parts.push_back(mod + ".input_scale");
            parts.push_back(mod + ".input_zero_point");
        }
        if (Status s = rw.add(mod, t.name, std::move(pw), parts, std::move(label), std::move(note)); !s)
            return s;
    }
    rw.apply();
    return Ok{};
}

}  // namespace quantlens
