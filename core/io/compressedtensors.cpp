#include "io/compressedtensors.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "halffloat.h"
#include "io/atomicfile.h"
#include "io/safetensorswriter.h"
#include "layers.h"

namespace quantlens {

namespace fs = std::filesystem;

namespace {

using ojson = nlohmann::ordered_json;

constexpr int64_t kMaxConfigBytes = 16 << 20;

// compressed-tensors' names (config/base.py CompressionFormat).
constexpr const char* kIntQuantized = "int-quantized";
constexpr const char* kPackQuantized = "pack-quantized";

struct CtTensor {
    const ExportEntry* entry = nullptr;
    QuantizedTensor qt;      // the entry's without its integers, scales rounded to scaleDtype
    bool rescaled = false;   // the rounding changed a scale: the integers are made again with the stored scales
    std::string module;      // "model.layers.0.mlp.down_proj"
    std::string format;      // kIntQuantized or kPackQuantized
    std::string strategy;    // "tensor", "channel", "group"
    int64_t groupSize = 0;
    DType scaleDtype = DType::F32;
    // Dynamic activations: "token" or "tensor" (int8, quantized at run time); "" for none
    // (weight-only) or static.
    std::string dynamicInput;
    // Static activations: the input's scale (rounded to scaleDtype, as stored) and its
    // zero point in compressed-tensors' signed int8 range.
    bool staticInput = false;
    float inputScale = 1.0f;
    int8_t inputZeroPoint = 0;
    bool inputSymmetric = true;  // every layer of its config group has zero point 0
};

// The scale dtype llm-compressor uses: the weight's own float type, else bfloat16
// (quantization/lifecycle/initialize.py).
DType scaleDtypeFor(DType weight)
{
    switch (weight) {
    case DType::F16: case DType::BF16: case DType::F32: case DType::F64: return weight;
    default: return DType::BF16;
    }
}

uint16_t floatToBf16(float f)
{
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even; scales are finite
    return uint16_t(u >> 16);
}

float roundTo(DType d, float v)
{
    if (d == DType::F16)
        return halfToFloat(floatToHalf(v));
    if (d == DType::BF16)
        return bf16ToFloat(floatToBf16(v));
    return v;
}

Status writeScales(AtomicFile& f, DType d, const std::vector<float>& s)
{
    std::vector<std::byte> out;
    switch (d) {
    case DType::F32: return f.write(s.data(), s.size() * 4);
    case DType::F64: {
        std::vector<double> v(s.begin(), s.end());
        return f.write(v.data(), v.size() * 8);
    }
    case DType::F16:
    case DType::BF16: {
        std::vector<uint16_t> v(s.size());
        for (size_t i = 0; i < s.size(); ++i)
            v[i] = d == DType::F16 ? floatToHalf(s[i]) : floatToBf16(s[i]);
        return f.write(v.data(), v.size() * 2);
    }
    default: return makeError("internal", "no scale dtype");
    }
}

// The entry's description without its integers (those are fetched when written).
QuantizedTensor withoutIntegers(const QuantizedTensor& q)
{
    QuantizedTensor c;
    c.name = q.name;
    c.shape = q.shape;
    c.sourceDtype = q.sourceDtype;
    c.spec = q.spec;
    c.params = q.params;
    c.clampedCount = q.clampedCount;
    return c;
}

// Calls use(integers as stored) for one weight while it is written: the entry's own, or,
// where rounding the scales changed one, the weight quantized again with the stored scales
// so the file dequantizes to what it says.
template <class Use>
Status withStoredIntegers(const Model& m, const Tensor& t, const CtTensor& c, Use&& use)
{
    if (!c.rescaled) {
        auto payload = EntryPayload::of(m, *c.entry);
        if (!payload)
            return payload.error();
        return use(**payload);
    }
    QuantizedTensor qt = c.qt;
    {
        auto x = t.toFloatReleasingPages();
        if (!x)
            return x.error();
        if (Status s = requantize(*x, qt); !s)
            return s;
    }
    return use(qt);
}

// pack_to_int32 (compressors/quantized_compressors/pack_quantized.py): each value plus
// 2^(bits-1) as an unsigned nibble, 32/bits consecutive values of a row per int32, the
// first in the lowest bits; a short last word is padded with zero nibbles.
std::vector<int32_t> packRows(const QuantizedTensor& qt, int bits)
{
    const int64_t rows = qt.shape[0], cols = qt.shape[1];
    const int64_t per = 32 / bits;
    const int64_t words = (cols + per - 1) / per;
    const uint32_t mask = (1u << bits) - 1u;
    const int32_t offset = 1 << (bits - 1);
    std::vector<int32_t> out(size_t(rows * words), 0);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t w = 0; w < words; ++w) {
            uint32_t word = 0;
            for (int64_t i = 0; i < per && w * per + i < cols; ++i) {
                const int32_t v = qt.q[size_t(r * cols + w * per + i)] + offset;
                word |= (uint32_t(v) & mask) << (bits * i);
            }
            out[size_t(r * words + w)] = int32_t(word);
        }
    return out;
}

ojson weightArgs(const CtTensor& c)
{
    ojson a;
    a["actorder"] = nullptr;
    a["block_structure"] = nullptr;
    a["dynamic"] = false;
    a["group_size"] = c.groupSize > 0 ? ojson(c.groupSize) : ojson(nullptr);
    a["num_bits"] = c.qt.spec.bits;
    a["observer"] = "minmax";
    a["observer_kwargs"] = ojson::object();
    a["strategy"] = c.strategy;
    a["symmetric"] = true;
    a["type"] = "int";
    return a;
}

// Activation QuantizationArgs: 8-bit int, no groups; an observer only for ranges calibrated
// beforehand; zp_dtype as QuantizationArgs serializes it (null when symmetric), written for
// the tensor strategies only, as llm-compressor's presets have it.
ojson activationArgs(const char* strategy, bool dynamic, bool symmetric)
{
    ojson a;
    a["actorder"] = nullptr;
    a["block_structure"] = nullptr;
    a["dynamic"] = dynamic;
    a["group_size"] = nullptr;
    a["num_bits"] = 8;
    a["observer"] = dynamic ? ojson(nullptr) : ojson("minmax");
    a["observer_kwargs"] = ojson::object();
    a["strategy"] = strategy;
    a["symmetric"] = symmetric;
    a["type"] = "int";
    if (std::string_view(strategy) == "tensor")
        a["zp_dtype"] = symmetric ? ojson(nullptr) : ojson("torch.int8");
    return a;
}

// W8A8 static: one int8 scale (and, asymmetric, zero point) per layer input, calibrated
// beforehand (strategy "tensor", dynamic false: what vLLM's _is_static_tensor_w8a8 takes).
ojson staticTensorArgs(bool symmetric) { return activationArgs("tensor", false, symmetric); }

// W8A8: int8 activations quantized at run time, one scale per token (INT8_W8A8 in quant_scheme.py).
ojson dynamicTokenArgs() { return activationArgs("token", true, true); }

// A plan's dynamic per-tensor activations: one int8 scale and zero point over the whole input,
// from its min/max at run time, as PyTorch's quantize_dynamic (asymmetric: the uint8 affine
// levels shifted by 128). QuantizationArgs accepts strategy "tensor" with dynamic true;
// vLLM has no int8 kernel for it (see the export's warning).
ojson dynamicTensorArgs() { return activationArgs("tensor", true, false); }

struct TempDir {
    fs::path path;
    ~TempDir()
    {
        if (!path.empty()) {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    }
};

// What a loader needs beside the weights (tokenizer, generation config); weights of
// other formats and the old shard index are not copied.
bool isSideFile(const fs::path& p)
{
    const std::string name = p.filename().string();
    if (name == "config.json" || name.ends_with(".index.json") || name.starts_with("."))
        return false;
    for (const char* ext : {".json", ".txt", ".model", ".tiktoken", ".jinja"})
        if (name.ends_with(ext))
            return true;
    return false;
}

}  // namespace

Result<ExportReport> writeCompressedTensorsExport(const Model& m, const std::vector<ExportEntry>& entries,
                                                  const ExportOptions& opts, const ExportProgress& progress)
{
    auto fail = [&](std::string code, std::string why, std::string tensor = {}) {
        return makeError(std::move(code), std::move(why), opts.outPath, -1, std::move(tensor));
    };
    if (m.files.empty())
        return fail("bad-pair", "compressed-tensors needs a Hugging Face checkpoint on disk");
    if (entries.empty())
        return fail("nothing-to-export", "no tensors chosen for export");
    const fs::path srcDir = fs::path(m.files[0]).parent_path();
    const fs::path configPath = srcDir / "config.json";

    ojson config;
    {
        std::error_code ec;
        const auto size = fs::file_size(configPath, ec);
        if (ec)
            return fail("no-config", "compressed-tensors needs the checkpoint's config.json, and there is none in " +
                                         (srcDir.empty() ? std::string(".") : srcDir.string()));
        if (size > uint64_t(kMaxConfigBytes))
            return fail("bad-config", configPath.string() + " is over 16 MiB");
        std::ifstream in(configPath, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        config = ojson::parse(ss.str(), nullptr, false);
        if (config.is_discarded() || !config.is_object())
            return fail("bad-config", configPath.string() + " is not a JSON object");
        if (config.contains("quantization_config"))
            return fail("bad-config", "the source is already quantized (its config.json has quantization_config)");
    }

    // Every tensor is classified and checked before anything is written.
    ExportReport report;
    std::vector<CtTensor> cts;
    std::set<std::string> quantizedModules;
    std::map<std::string, size_t> byName;
    int64_t roundedInputScales = 0;
    int64_t weightOnlyTensor = 0;  // W8A16 layers with one weight scale (vLLM's WNA16 takes channel/group)
    int64_t dynamicDropped = 0;    // 4-bit layers of a plan with dynamic activations (written W4A16)
    for (const ExportEntry& e : entries) {
        const QuantizedTensor& q = e.quantized;
        const Tensor* t = m.find(q.name);
        if (!t)
            return fail("no-tensor", "not in the model", q.name);
        if (!q.name.ends_with(".weight") || q.rank() != 2)
            return fail("unsupported", "not a 2-D <module>.weight; compressed-tensors quantizes Linear weights", q.name);
        if (t->layout == Layout::InOut)
            return fail("unsupported", "stored [in, out] (a GPT-2 Conv1D); compressed-tensors "
                                       "quantizes nn.Linear [out, in] weights only, and llm-compressor leaves Conv1D layers in float", q.name);
        if (q.spec.isUnsigned)
            return fail("unsupported", "compressed-tensors stores signed integers: use --dtype int8", q.name);
        for (int32_t zp : q.params.zeroPoint)
            if (zp != 0)
                return fail("unsupported", "compressed-tensors export takes symmetric schemes (zero point 0): torch-symmetric, "
                                           "narrow-symmetric or seed, not " + schemeName(q.spec.scheme), q.name);
        CtTensor c;
        c.entry = &e;
        c.qt = withoutIntegers(q);
        c.module = q.name.substr(0, q.name.size() - 7);
        if (c.module == "lm_head") {
            // llm-compressor's recipes ignore lm_head and vLLM builds it unquantized for
            // compressed-tensors, so it stays float here too (listed in `ignore`).
            report.warnings.push_back("lm_head.weight was left in float: compressed-tensors checkpoints keep lm_head unquantized");
            continue;
        }
        const bool perChannel = q.params.groupSize <= 0 && q.spec.granularity == Granularity::PerChannel;
        const bool perTensor = q.params.groupSize <= 0 && !perChannel;
        // The plan's activations choose the scheme (quant_scheme.py): none -> weight-only
        // (W8A16 / W4A16, "pack-quantized", as llm-compressor's format inference picks for a
        // scheme without input_activations); dynamic -> W8A8 "int-quantized"; static below.
        const ExportActivations act = e.staticInput ? ExportActivations::Static : opts.activations;
        if (act == ExportActivations::Static && !e.staticInput)
            return fail("unsupported", "static activations: no input range for this layer, and a compressed-tensors "
                                       "W8A8 static checkpoint needs one for every quantized Linear: calibrate the ranges", q.name);
        if (q.spec.bits == 8 && q.spec.scheme != Scheme::Q8_0 && (perTensor || perChannel)) {
            c.strategy = perTensor ? "tensor" : "channel";
            if (act == ExportActivations::None) {
                c.format = kPackQuantized;
                weightOnlyTensor += perTensor ? 1 : 0;
            } else {
                c.format = kIntQuantized;
                if (act == ExportActivations::DynamicPerTensor)
                    c.dynamicInput = "tensor";
                else if (act != ExportActivations::Static)
                    c.dynamicInput = "token";
            }
        } else if (q.spec.bits == 4 && (perChannel || q.params.groupSize > 0)) {
            c.format = kPackQuantized;
            c.strategy = perChannel ? "channel" : "group";
            if (act == ExportActivations::DynamicPerToken || act == ExportActivations::DynamicPerTensor)
                ++dynamicDropped;
            c.groupSize = q.params.groupSize;
            if (c.groupSize > 0 && q.shape[1] % c.groupSize != 0)
                return fail("unsupported", "group size " + std::to_string(c.groupSize) + " does not divide its " +
                                               std::to_string(q.shape[1]) + " input features (vLLM needs whole groups)", q.name);
        } else {
            return fail("unsupported", "compressed-tensors takes --bits 8 with --granularity tensor|channel (W8A8, int-quantized) "
                                       "or --bits 4 with --granularity channel|group:G (W4A16, pack-quantized); this is " +
                                       std::to_string(q.spec.bits) + "-bit " + storedGranularity(q), q.name);
        }
        if (q.params.qmin < -(1 << (q.spec.bits - 1)) || q.params.qmax > (1 << (q.spec.bits - 1)) - 1)
            return fail("unsupported", "integer range [" + std::to_string(q.params.qmin) + ", " + std::to_string(q.params.qmax) +
                                           "] does not fit signed " + std::to_string(q.spec.bits) + "-bit", q.name);
        // Scales are stored in the weight's dtype; where that rounding changes one, the
        // integers are recomputed with the stored scales so the file dequantizes to what it says.
        c.scaleDtype = scaleDtypeFor(t->dtype);
        bool changed = false;
        for (float& s : c.qt.params.scale) {
            const float r = roundTo(c.scaleDtype, s);
            if (!(r > 0.0f) || !std::isfinite(r))
                return fail("bad-params", "a scale does not survive rounding to " + std::string(dtypeName(c.scaleDtype)), q.name);
            changed = changed || r != s;
            s = r;
        }
        c.rescaled = changed;
        if (const auto& in = e.staticInput) {
            if (c.format != kIntQuantized)
                return fail("unsupported", "static activations go with 8-bit weights (W8A8 int-quantized); compressed-tensors "
                                           "has no static-activation scheme vLLM runs for " + std::to_string(q.spec.bits) +
                                           "-bit weights: set the plan's activations to none for W4A16", q.name);
            if (in->zeroPoint < 0 || in->zeroPoint > 255 || !(in->scale > 0.0f) || !std::isfinite(in->scale))
                return fail("bad-params", "the static input's uint8 scale/zero point are out of range", q.name);
            // Quantlens' activations are uint8 affine, compressed-tensors' int8: the same levels
            // shifted by 128 (q_u8 = q_i8 + 128), so zp_i8 = zp_u8 - 128 with the same scale, and
            // the clamp [0, 255] becomes [-128, 127].
            c.staticInput = true;
            c.inputZeroPoint = int8_t(in->zeroPoint - 128);
            c.inputScale = roundTo(c.scaleDtype, in->scale);
            if (!(c.inputScale > 0.0f) || !std::isfinite(c.inputScale))
                return fail("bad-params", "the input scale does not survive rounding to " + std::string(dtypeName(c.scaleDtype)), q.name);
            if (c.inputScale != in->scale)
                ++roundedInputScales;
        }
        if (!byName.emplace(q.name, cts.size()).second)
            return fail("duplicate-name", "quantized twice", q.name);
        quantizedModules.insert(c.module);
        cts.push_back(std::move(c));
    }

    if (cts.empty())
        return fail("nothing-to-export", "no Linear weight left to quantize (lm_head stays float)");
    // A static checkpoint quantizes every Linear's input from its file's input_scale: one
    // layer without its range cannot be written beside the others.
    for (const CtTensor& c : cts)
        if (c.staticInput != cts.front().staticInput)
            return fail("unsupported", "static activations need every quantized Linear's input range, and this layer has "
                                       "none: calibrate the ranges", (c.staticInput ? cts.front() : c).entry->quantized.name);
    if (std::any_of(cts.begin(), cts.end(), [](const CtTensor& c) { return c.dynamicInput == "tensor"; }))
        report.warnings.push_back("the plan's dynamic per-tensor activations are written as they are (int8, strategy "
                                  "\"tensor\", dynamic true, asymmetric), which compressed-tensors describes but vLLM "
                                  "does not run: its int8 W8A8 takes dynamic per-token or static per-tensor inputs only, so "
                                  "vLLM will refuse this checkpoint; set the plan's activations to per-token for vLLM");
    if (weightOnlyTensor > 0)
        report.warnings.push_back(std::to_string(weightOnlyTensor) + " W8A16 layer(s) have one weight scale per tensor: "
                                  "compressed-tensors describes it, but vLLM's weight-only kernels take per-channel or "
                                  "group scales only; use --granularity channel for vLLM");
    if (dynamicDropped > 0)
        report.warnings.push_back(std::to_string(dynamicDropped) + " 4-bit layer(s) written as W4A16 (weight-only): the "
                                  "plan's dynamic " + std::string(opts.activations == ExportActivations::DynamicPerToken ? "per-token" : "per-tensor") +
                                  " activations are not written for 4-bit weights (vLLM runs int4 weights with float "
                                  "activations), so a runtime keeps those inputs in float");
    if (roundedInputScales > 0)
        report.warnings.push_back(std::to_string(roundedInputScales) + " input_scale(s) rounded to " +
                                  std::string(dtypeName(cts.front().scaleDtype)) + ", the weight's dtype, as llm-compressor "
                                  "stores them: a runtime quantizes those inputs with the rounded scale");

    // config_groups: one per distinct scheme. A single group targets every Linear and
    // lists the others in `ignore`, as llm-compressor writes it; several name their modules.
    std::map<std::string, std::vector<size_t>> groups;  // key -> cts indices, in a stable order
    std::vector<std::string> groupOrder;
    std::set<std::string> formats;
    for (size_t i = 0; i < cts.size(); ++i) {
        const CtTensor& c = cts[i];
        const std::string key = c.format + "/" + std::to_string(c.qt.spec.bits) + "/" + c.strategy + "/" +
                                std::to_string(c.groupSize) + (c.staticInput ? "/static" : "/" + c.dynamicInput);
        if (!groups.count(key))
            groupOrder.push_back(key);
        groups[key].push_back(i);
        formats.insert(c.format);
    }
    ojson configGroups = ojson::object();
    for (size_t gi = 0; gi < groupOrder.size(); ++gi) {
        const auto& idx = groups[groupOrder[gi]];
        // A group is symmetric when every zero point is 0; otherwise each layer gets its
        // input_zero_point (compressors/base.py drops them only for symmetric schemes).
        bool symmetric = true;
        for (size_t i : idx)
            symmetric = symmetric && cts[i].inputZeroPoint == 0;
        for (size_t i : idx)
            cts[i].inputSymmetric = symmetric;
        const CtTensor& c0 = cts[idx.front()];
        ojson scheme;
        scheme["format"] = c0.format;
        scheme["input_activations"] = c0.staticInput                 ? staticTensorArgs(symmetric)
                                      : c0.dynamicInput == "token"  ? dynamicTokenArgs()
                                      : c0.dynamicInput == "tensor" ? dynamicTensorArgs()
                                                                     : ojson(nullptr);
        scheme["output_activations"] = nullptr;
        ojson targets = ojson::array();
        if (groupOrder.size() == 1) {
            targets.push_back("Linear");
        } else {
            for (size_t i : idx)
                targets.push_back(cts[i].module);
        }
        scheme["targets"] = targets;
        scheme["weights"] = weightArgs(c0);
        configGroups["group_" + std::to_string(gi)] = scheme;
    }
    ojson ignore = ojson::array();
    bool haveLmHead = false;
    for (const LinearLayer& l : findLinearLayers(m)) {
        if (!l.weight->name.ends_with(".weight"))
            continue;
        const std::string mod = l.weight->name.substr(0, l.weight->name.size() - 7);
        haveLmHead = haveLmHead || mod == "lm_head";
        if (!quantizedModules.count(mod))
            ignore.push_back(mod);
    }
    // A tied lm_head is an nn.Linear with no tensor of its own: it must not match "Linear".
    if (!haveLmHead && !quantizedModules.count("lm_head"))
        ignore.push_back("lm_head");
    ojson qc;
    qc["config_groups"] = configGroups;
    qc["format"] = formats.size() == 1 ? ojson(*formats.begin()) : ojson("mixed-precision");
    qc["global_compression_ratio"] = nullptr;
    qc["ignore"] = ignore;
    qc["kv_cache_scheme"] = nullptr;
    qc["quant_method"] = "compressed-tensors";
    qc["quantization_status"] = "compressed";
    qc["sparsity_config"] = ojson::object();
    config["quantization_config"] = qc;

    // The state dict: every model tensor in file order, quantized weights replaced.
    std::vector<SafetensorsItem> items;
    std::vector<std::vector<int64_t>> shapes;  // kept alive for the writer's callbacks
    shapes.reserve(cts.size());
    for (const Tensor& t : m.tensors) {
        if (!t.group.empty())
            continue;
        auto it = byName.find(t.name);
        if (it == byName.end()) {
            if (!t.decodable() || dtypeInfo(t.dtype).isBlock) {
                report.warnings.push_back("tensor '" + t.name + "' has no safetensors dtype and was left out");
                continue;
            }
            items.push_back({t.name, t.dtype, t.shape, [&t](AtomicFile& f) { return writeTensorBytes(f, t); }});
            continue;
        }
        const CtTensor& c = cts[it->second];
        const QuantizedTensor& qt = c.qt;
        const int64_t out = qt.shape[0], in = qt.shape[1];
        std::vector<int64_t> scaleShape{out, 1};
        if (c.strategy == "tensor")
            scaleShape = {1};
        else if (c.strategy == "group")
            scaleShape = {out, in / c.groupSize};
        if (c.format == kIntQuantized) {
            items.push_back({c.module + ".weight", DType::I8, qt.shape, [&m, &t, &c](AtomicFile& f) {
                                 return withStoredIntegers(m, t, c, [&f](const QuantizedTensor& q) {
                                     return f.write(q.q.data(), q.q.size());
                                 });
                             }});
        } else {
            const int64_t per = 32 / qt.spec.bits;
            items.push_back({c.module + ".weight_packed", DType::I32, {out, (in + per - 1) / per}, [&m, &t, &c](AtomicFile& f) {
                                 return withStoredIntegers(m, t, c, [&f](const QuantizedTensor& q) {
                                     const std::vector<int32_t> p = packRows(q, q.spec.bits);
                                     return f.write(p.data(), p.size() * 4);
                                 });
                             }});
            shapes.push_back({out, in});
            const std::vector<int64_t>& s = shapes.back();
            items.push_back({c.module + ".weight_shape", DType::I64, {2},
                             [&s](AtomicFile& f) { return f.write(s.data(), s.size() * 8); }});
        }
        items.push_back({c.module + ".weight_scale", c.scaleDtype, scaleShape,
                         [&c](AtomicFile& f) { return writeScales(f, c.scaleDtype, c.qt.params.scale); }});
        if (c.staticInput) {
            // Shape [1] and the weight's scale dtype; the zero point int8 [1] (lifecycle/initialize.py
            // for strategy "tensor", zp_dtype int8 for 8-bit int).
            items.push_back({c.module + ".input_scale", c.scaleDtype, {1},
                             [&c](AtomicFile& f) { return writeScales(f, c.scaleDtype, {c.inputScale}); }});
            if (!c.inputSymmetric)
                items.push_back({c.module + ".input_zero_point", DType::I8, {1},
                                 [&c](AtomicFile& f) { return f.write(&c.inputZeroPoint, 1); }});
        }
    }

    // Written into a temporary folder inside the target, then moved into place file by file.
    const fs::path dir(opts.outPath);
    std::error_code ec;
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
        return fail("not-a-directory", "output exists and is not a folder");
    if (fs::exists(dir / "model.safetensors.index.json", ec))
        return fail("bad-path", "the output folder holds a sharded checkpoint (model.safetensors.index.json); use an empty folder");
    if (fs::exists(dir, ec) && fs::equivalent(dir, srcDir.empty() ? fs::path(".") : srcDir, ec))
        return fail("same-as-input", "the output folder is the source checkpoint's folder");
    std::vector<fs::path> sideFiles;
    for (const auto& de : fs::directory_iterator(srcDir.empty() ? fs::path(".") : srcDir, ec))
        if (de.is_regular_file(ec) && isSideFile(de.path()))
            sideFiles.push_back(de.path());
    for (const char* f : {"model.safetensors", "config.json"})
        if (Status s = checkNotAnInput((dir / f).string(), m.files); !s)
            return s.error();
    // A folder this export created is removed again if the export does not finish.
    struct CreatedDir {
        fs::path path;
        bool keep = false;
        ~CreatedDir()
        {
            std::error_code e;
            if (!path.empty() && !keep)
                fs::remove(path, e);  // only if empty: removes nothing it did not make
        }
    } created;
    if (!fs::exists(dir, ec))
        created.path = dir;
    fs::create_directories(dir, ec);
    if (ec)
        return fail("mkdir", "cannot create the output folder: " + ec.message());
    std::string tmpl = (dir / ".quantlens-tmp-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
        return fail("mkdir", std::string("cannot create a temporary folder: ") + std::strerror(errno));
    TempDir tmp{fs::path(buf.data())};

    ExportProgress inner;
    if (progress)
        inner = [&progress](double f, const std::string& what) { return progress(0.9 * f, what); };
    SafetensorsMetadata md = {{"format", "pt"}, {"quantlens_format", "compressed-tensors"}, {"source", exportdetail::sourceOf(m, opts)}};
    auto written = writeSafetensors((tmp.path / "model.safetensors").string(), items, md, m.files, inner);
    if (!written)
        return written.error();
    report.bytesWritten = *written;
    {
        auto cf = AtomicFile::create((tmp.path / "config.json").string(), m.files);
        if (!cf)
            return cf.error();
        const std::string text = config.dump(2) + "\n";
        if (Status s = cf->write(text.data(), text.size()); !s)
            return s.error();
        if (Status s = cf->commit(); !s)
            return s.error();
        report.bytesWritten += int64_t(text.size());
    }
    std::vector<std::string> names{"model.safetensors", "config.json"};
    for (const fs::path& p : sideFiles) {
        fs::copy_file(p, tmp.path / p.filename(), fs::copy_options::overwrite_existing, ec);
        if (ec)
            return fail("copy", "cannot copy " + p.string() + ": " + ec.message());
        names.push_back(p.filename().string());
    }
    if (!exportdetail::report(progress, 0.95, "moving into place"))
        return exportdetail::cancelled(opts.outPath);
    for (const std::string& n : names) {
        const fs::path from = tmp.path / n, to = dir / n;
        if (::rename(from.c_str(), to.c_str()) != 0)
            return fail("rename", "cannot move " + n + " into place: " + std::strerror(errno));
        report.files.push_back(to.string());
        created.keep = true;
    }
    exportdetail::report(progress, 1.0, "done");
    return report;
}

}  // namespace quantlens
