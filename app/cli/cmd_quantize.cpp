// quantlens-cli quantize: quantizes chosen tensors (or every linear layer) with one spec,
// reports the round-trip error per tensor and writes an HDF5 / safetensors / npy-folder
// export, optionally with a dequantized float32 ("fake-quant") safetensors copy; or, from a
// GGUF model to OUT.gguf, the whole model with the chosen tensors as ggml types.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calibration.h"
#include "commands.h"
#include "io/exporter.h"
#include "io/ggufmix.h"
#include "io/ggufwriter.h"
#include "tasks/exportplan.h"
#include "tasks/planfile.h"
#include "layers.h"
#include "modelarg.h"
#include "quant/quantspec.h"

namespace quantlens::cli {

namespace {

struct QuantizeOptions {
    std::string model;
    std::vector<std::string> tensors;
    bool allLinear = false;
    std::string scheme = "seed";
    std::string granularity = "tensor";
    std::string calib = "minmax";
    int bits = 8;
    std::string dtype = "int8";
    bool reduceRange = false;
    std::string out;
    std::string format;  // --format; "" = by --out's extension
    std::string fakeQuant;
    std::string plan;
    bool json = false;
    MethodArgs method;  // --method gptq|smoothquant:ALPHA and its calibration input
};

using ojson = nlohmann::ordered_json;

ojson number(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }

ojson value(float v) { return number(double(v)); }
ojson value(int32_t v) { return ojson(v); }

// One value for per-tensor, a list otherwise (DESIGN.md's "number or [numbers]").
template <class T>
ojson numberOrList(const std::vector<T>& v)
{
    if (v.size() == 1)
        return value(v[0]);
    ojson a = ojson::array();
    for (const T& x : v)
        a.push_back(value(x));
    return a;
}

// Everything that is wrong with the command line is found before the model is opened.
QuantSpec specFrom(const QuantizeOptions& o)
{
    QuantSpec spec;
    // A llama-quantize mix names a set of ggml types; its base type stands in for the checks.
    auto scheme = parseScheme(o.scheme);
    if (!scheme && !parseGgufMix(o.scheme))
        throw CLI::ValidationError("--scheme", scheme.error().message + " (or, for .gguf, a llama-quantize mix: "
                                                                        "q4_k_s, q4_k_m, q5_k_s, q5_k_m)");
    spec.scheme = scheme ? *scheme : Scheme::Q4_K;
    if (Status s = parseGranularity(o.granularity, spec); !s)
        throw CLI::ValidationError("--granularity", s.error().message);
    if (Status s = parseCalib(o.calib, spec); !s)
        throw CLI::ValidationError("--calib", s.error().message);
    spec.bits = o.bits;
    spec.isUnsigned = o.dtype == "uint8";
    spec.reduceRange = o.reduceRange;
    if (spec.scheme == Scheme::Q8_0 && spec.isUnsigned)
        throw CLI::ValidationError("--dtype", "q8_0 has no unsigned form");
    if (spec.scheme == Scheme::Q8_0 && spec.bits != 8)
        throw CLI::ValidationError("--bits", "q8_0 is 8-bit only");
    if (isGgmlBlockScheme(spec.scheme) && (spec.bits != 8 || spec.isUnsigned || spec.reduceRange))
        throw CLI::ValidationError("--scheme", schemeName(spec.scheme) + " fixes its own bits and range (no --bits, --dtype or --reduce-range)");
    return spec;
}

// The tensors and their specs: a saved plan's (--plan), else the one spec of the flags for
// every chosen tensor. One chooser for this command and the window's export dialog.
struct Chosen {
    Session plan;
    ExportPlan exported;
};
Chosen choosePlan(const Model& m, const QuantizeOptions& o, const QuantSpec& flagSpec, std::optional<GgufMix> mix)
{
    Session plan;
    if (!o.plan.empty()) {
        auto p = loadPlanFor(o.plan, m);
        if (!p)
            throw Failure{p.error().oneLine()};
        for (const std::string& w : p->warnings)
            std::fprintf(stderr, "quantlens-cli: %s\n", w.c_str());
        plan = std::move(p->session);
    } else {
        plan.defaultSpec = flagSpec;
    }
    ExportPlanOptions po;
    po.choice = o.allLinear ? ExportChoice::AllLinear
                : !o.tensors.empty() ? ExportChoice::Named
                : !plan.exportSelection.empty() ? ExportChoice::Selected
                                                : ExportChoice::AllLinear;
    po.tensors = o.tensors;
    po.mix = mix;
    ExportPlan ep = planExport(m, plan, po);
    for (size_t i = 0; i < ep.skipped.size(); ++i)
        throw Failure{"'" + ep.skipped[i] + "' in " + o.model + ": " + ep.skipReasons[i]};
    for (const std::string& k : ep.keptFloat)
        std::fprintf(stderr, "kept in float32 by the plan: %s\n", k.c_str());
    if (ep.items.empty())
        throw Failure{po.choice == ExportChoice::AllLinear ? "no linear layers found in " + o.model + " (use --tensor NAME)"
                                                           : "nothing to quantize in " + o.model};
    // --method names the method of each chosen tensor, over what a loaded plan says.
    std::vector<std::string> chosen;
    for (const ExportPlanItem& it : ep.items)
        chosen.push_back(it.tensor);
    applyMethodArgs(o.method, chosen, plan);
    return {std::move(plan), std::move(ep)};
}

void printTable(const Model& m, const std::vector<ExportEntry>& entries, int64_t before, int64_t after)
{
    size_t w = 6;
    for (const ExportEntry& e : entries)
        w = std::max(w, e.quantized.name.size());
    std::printf("%-*s  %-16s %-10s %-13s %-23s %8s %9s %10s %8s %12s\n", int(w), "tensor", "scheme", "gran", "scale",
                "range", "SQNR dB", "cosine", "max err", "clamped", "bytes");
    for (const ExportEntry& e : entries) {
        const QuantizedTensor& qt = e.quantized;
        char scale[32];
        if (qt.params.scale.size() == 1)
            std::snprintf(scale, sizeof scale, "%.6g", double(qt.params.scale[0]));
        else
            std::snprintf(scale, sizeof scale, "%zu scales", qt.params.scale.size());
        char range[48];
        std::snprintf(range, sizeof range, "[%.5g, %.5g]", double(qt.params.rangeLo), double(qt.params.rangeHi));
        const Tensor* t = m.find(qt.name);
        char bytes[48];
        std::snprintf(bytes, sizeof bytes, "%lld->%lld", (long long)(t ? t->storedBytes() : 0), (long long)e.bytesAfter());
        std::printf("%-*s  %-16s %-10s %-13s %-23s %8.2f %9.6f %10.4g %7.3f%% %12s\n", int(w), qt.name.c_str(),
                    schemeName(qt.spec.scheme).c_str(), storedGranularity(qt).c_str(), scale, range, e.metrics.sqnrDb,
                    e.metrics.cosine, e.metrics.maxAbsError, 100.0 * e.metrics.clampedFraction, bytes);
    }
    std::printf("total: %lld bytes -> %lld bytes, ratio %.4f\n", (long long)before, (long long)after,
                after > 0 ? double(before) / double(after) : 0.0);
}

void printGgufTable(const GgufWriteReport& r)
{
    size_t w = 6;
    for (const GgufTensorResult& t : r.tensors)
        w = std::max(w, t.name.size());
    std::printf("%-*s  %-16s %-6s %-6s %-6s %12s %12s %8s  %s\n", int(w), "tensor", "shape", "from", "asked", "type",
                "bytes before", "bytes after", "clipped", "why");
    int64_t before = 0, after = 0;
    for (const GgufTensorResult& t : r.tensors) {
        const std::string why = t.why + (t.why.empty() || t.note.empty() ? "" : "; ") + t.note;
        std::printf("%-*s  %-16s %-6s %-6s %-6s %12lld %12lld %8s  %s%s\n", int(w), t.name.c_str(), shapeString(t.shape).c_str(),
                    t.sourceType.c_str(), t.requested.empty() ? "-" : t.requested.c_str(), t.written.c_str(),
                    (long long)t.bytesBefore, (long long)t.bytesAfter,
                    t.clipped ? std::to_string(t.clippedValues).c_str() : "-", t.mapped ? "mapped: " : "", why.c_str());
        before += t.bytesBefore;
        after += t.bytesAfter;
    }
    std::map<std::string, std::pair<int, int64_t>> byType;  // tensors and bytes per written type
    for (const GgufTensorResult& t : r.tensors) {
        byType[t.written].first += 1;
        byType[t.written].second += t.bytesAfter;
    }
    std::string types;
    for (const auto& [type, nb] : byType)
        types += (types.empty() ? "" : ", ") + type + " " + std::to_string(nb.first) + " (" + std::to_string(nb.second) + " B)";
    std::printf("types: %s\n", types.c_str());
    std::printf("total: %lld bytes -> %lld bytes of tensor data, ratio %.4f; general.file_type %u\n", (long long)before,
                (long long)after, after > 0 ? double(before) / double(after) : 0.0, r.fileType);
}

// MODEL.gguf -> OUT.gguf: the (tensor, spec) decisions go to the GGUF writer, which quantizes
// while it writes. One scheme for every chosen tensor here; a plan gives one per tensor.
void runGgufQuantize(const Model& m, const std::vector<GgufDecision>& decisions, const QuantizeOptions& o,
                     std::optional<uint32_t> fileType)
{
    GgufWriteOptions go;
    go.outPath = o.out;
    go.fileType = fileType;
    int lastPct = -1;
    auto r = writeGgufExport(m.files.front(), decisions, go, [&](double f, const std::string& what) {
        const int pct = int(f * 100);
        if (pct != lastPct)
            std::fprintf(stderr, "[%3d%%] %s\n", pct, what.c_str());
        lastPct = pct;
        return true;
    });
    if (!r)
        throw Failure{r.error().oneLine()};
    std::fprintf(stderr, "wrote %s (gguf, %lld bytes)\n", o.out.c_str(), (long long)r->bytesWritten);
    if (!o.json) {
        printGgufTable(*r);
        return;
    }
    ojson doc;
    ojson tensors = ojson::array();
    int64_t before = 0, after = 0;
    for (const GgufTensorResult& t : r->tensors) {
        ojson j;
        j["name"] = t.name;
        j["shape"] = t.shape;
        j["source_type"] = t.sourceType;
        j["requested"] = t.requested.empty() ? ojson(nullptr) : ojson(t.requested);
        j["type"] = t.written;
        j["bytes_before"] = t.bytesBefore;
        j["bytes_after"] = t.bytesAfter;
        j["clipped"] = t.clipped;
        j["clipped_values"] = t.clippedValues;
        j["mapped"] = t.mapped;
        j["why"] = t.why;
        if (t.haveMetrics) {
            j["sqnr_db"] = number(t.metrics.sqnrDb);  // null when the round trip is exact (inf)
            j["cosine"] = number(t.metrics.cosine);
            j["max_abs_error"] = number(t.metrics.maxAbsError);
        }
        j["note"] = t.note;
        before += t.bytesBefore;
        after += t.bytesAfter;
        tensors.push_back(std::move(j));
    }
    doc["tensors"] = std::move(tensors);
    doc["total"] = {{"bytes_before", before}, {"bytes_after", after},
                    {"ratio", number(after > 0 ? double(before) / double(after) : 0.0)}};
    doc["file_type"] = r->fileType;
    doc["outputs"] = {o.out};
    std::cout << doc.dump(2) << std::endl;
}

void runQuantize(const QuantizeOptions& o)
{
    const std::optional<GgufMix> mix = parseGgufMix(o.scheme);
    const QuantSpec spec = specFrom(o);
    if (mix && (o.allLinear || !o.tensors.empty()))
        throw CLI::ValidationError("--scheme", o.scheme + " picks every tensor's type itself, as llama-quantize does; "
                                                           "drop --tensor/--all-linear");
    if (!mix && o.plan.empty() && o.allLinear == !o.tensors.empty())
        throw CLI::ValidationError("quantize", "give either --tensor NAME (repeatable), --all-linear or --plan FILE");
    if (o.out.empty() && o.fakeQuant.empty())
        throw CLI::ValidationError("quantize", "give --out FILE.h5|FILE.safetensors|DIR (or --fake-quant FILE.safetensors)");
    validateMethodArgs(o.method);
    ExportFormat format = ExportFormat::Hdf5;
    if (!o.out.empty()) {
        auto f = exportFormatFor(o.out, o.format);
        if (!f)
            throw CLI::ValidationError(o.format.empty() ? "--out" : "--format", f.error().message);
        format = *f;
        // With --plan the plan's schemes decide (a GGUF maps those that are not ggml types).
        if (std::string why = exportSchemeProblem(spec.scheme, format); !why.empty() && o.plan.empty())
            throw CLI::ValidationError("--scheme", why);
        if (mix && format != ExportFormat::Gguf)
            throw CLI::ValidationError("--scheme", o.scheme + " is llama-quantize's type mix and is written only as GGUF "
                                                               "(--out FILE.gguf from a GGUF model)");
        if (format == ExportFormat::Gguf && !o.fakeQuant.empty())
            throw CLI::ValidationError("--fake-quant", "a .gguf export is already the whole model; drop --fake-quant");
        if (Status s = checkExportSpec(format, spec); !s && o.plan.empty())
            throw CLI::ValidationError("--out", s.error().message);
    } else if ((mix || isGgmlBlockScheme(spec.scheme)) && o.plan.empty()) {
        throw CLI::ValidationError("--scheme", mix ? o.scheme + " is llama-quantize's type mix and is written only as "
                                                                "GGUF (--out FILE.gguf from a GGUF model)"
                                                   : exportSchemeProblem(spec.scheme, ExportFormat::Hdf5));
    }
    if (!o.fakeQuant.empty()) {
        auto f = exportFormatForPath(o.fakeQuant);
        if (!f || *f != ExportFormat::SafetensorsInt8)
            throw CLI::ValidationError("--fake-quant", "the fake-quant copy is a .safetensors file");
    }

    if (!o.out.empty() && !o.fakeQuant.empty()) {
        std::error_code e1, e2;
        if (std::filesystem::weakly_canonical(std::filesystem::absolute(o.out), e1) ==
            std::filesystem::weakly_canonical(std::filesystem::absolute(o.fakeQuant), e2))
            throw CLI::ValidationError("--fake-quant", "must be a different file from --out");
    }

    const auto shared = std::make_shared<const Model>(loadModelArg(o.model));
    const Model& m = *shared;
    if (!o.out.empty())
        if (Status s = checkExportSource(m, format); !s)
            throw CLI::ValidationError("--out", s.error().message);
    const auto [session, plan] = choosePlan(m, o, spec, mix);
    for (ExportFormat f : {format, ExportFormat::SafetensorsFakeQuant})
        if (std::string why = planMethodsExportProblem(session, f); !why.empty() && (f == format ? !o.out.empty() : !o.fakeQuant.empty()))
            throw Failure{why};
    if (!o.out.empty())
        if (std::string why = staticRangesExportProblem(plan, format); !why.empty())
            throw Failure{why};
    if (format == ExportFormat::Gguf && !o.out.empty()) {
        // Each planned tensor with its own spec: a mix's types, or a --plan's per-layer specs
        // (the writer maps those that are not ggml types to the nearest one and says so).
        std::vector<GgufDecision> decisions;
        for (const ExportPlanItem& it : plan.items)
            decisions.push_back({it.tensor, it.spec, it.why});
        runGgufQuantize(m, decisions, o, mix ? std::optional<uint32_t>(ggufMixFileType(*mix)) : std::nullopt);
        return;
    }

    // GPTQ / SmoothQuant first: their integers and smoothed weights are what gets written.
    const PreparedPlan prep = prepareForCli(shared, o.model, o.method.heads, session);
    const Model& src = *prep.model;
    std::map<std::string, const MethodLayerOutcome*> outcomes;
    for (const MethodLayerOutcome& l : prep.layers)
        outcomes[l.tensor] = &l;

    std::vector<ExportEntry> entries;
    entries.reserve(plan.items.size());
    int64_t before = 0, after = 0;
    for (size_t i = 0; i < plan.items.size(); ++i) {
        const ExportPlanItem& it = plan.items[i];
        std::fprintf(stderr, "[%zu/%zu] quantizing %s\n", i + 1, plan.items.size(), it.tensor.c_str());
        Result<ExportEntry> e = makeError("internal", "not quantized");
        if (auto g = prep.entries.find(it.tensor); g != prep.entries.end()) {
            e = g->second;
        } else {
            e = quantizeForExport(src, it.tensor, it.spec);
            // The writer quantizes it again when its turn comes: one tensor's integers at a time.
            if (e)
                dropPayload(*e);
        }
        if (!e)
            throw Failure{e.error().oneLine()};
        attachStaticInput(plan, it, *e);
        before += m.find(it.tensor)->storedBytes();
        after += e->bytesAfter();
        entries.push_back(std::move(*e));
    }

    // A --plan's activations choose compressed-tensors' scheme; without one nothing was
    // planned for them, and the format's usual scheme is written.
    const ExportActivations activations =
        o.plan.empty() ? ExportActivations::Unplanned : exportActivationsFor(plan.activations.mode);
    std::vector<std::string> outputs;
    auto write = [&](ExportFormat f, const std::string& path) {
        ExportOptions eo;
        eo.format = f;
        eo.outPath = path;
        eo.activations = activations;
        auto r = exportModel(src, entries, eo);
        if (!r)
            throw Failure{r.error().oneLine()};
        for (const std::string& w : r->warnings)
            std::fprintf(stderr, "warning: %s\n", w.c_str());
        std::fprintf(stderr, "wrote %s (%s, %lld bytes)\n", path.c_str(), exportFormatName(f).c_str(), (long long)r->bytesWritten);
        outputs.push_back(path);
    };
    if (!o.out.empty())
        write(format, o.out);
    if (!o.fakeQuant.empty())
        write(ExportFormat::SafetensorsFakeQuant, o.fakeQuant);

    if (!o.json) {
        printTable(m, entries, before, after);
        for (const MethodLayerOutcome& l : prep.layers)
            std::printf("%s\n", methodSummary(l).c_str());
        return;
    }
    ojson doc;
    ojson tensors = ojson::array();
    for (const ExportEntry& e : entries) {
        const QuantizedTensor& qt = e.quantized;
        ojson j;
        j["name"] = qt.name;
        j["scheme"] = schemeName(qt.spec.scheme);
        j["granularity"] = storedGranularity(qt);
        j["bits"] = qt.spec.bits;
        j["scale"] = numberOrList(qt.params.scale);
        j["zero_point"] = numberOrList(qt.params.zeroPoint);
        j["range"] = {number(qt.params.rangeLo), number(qt.params.rangeHi)};
        j["mse"] = number(e.metrics.mse);
        j["sqnr_db"] = number(e.metrics.sqnrDb);  // null when the round trip is exact (inf)
        j["cosine"] = number(e.metrics.cosine);
        j["max_abs_error"] = number(e.metrics.maxAbsError);
        j["clamped_fraction"] = number(e.metrics.clampedFraction);
        j["bytes_before"] = m.find(qt.name)->storedBytes();
        j["bytes_after"] = e.bytesAfter();
        j["shape"] = qt.shape;
        j["calib"] = calibName(qt.spec);
        if (auto it = outcomes.find(qt.name); it != outcomes.end())
            j["method"] = methodReport(*it->second);
        if (const auto& in = e.staticInput)  // static plans: the layer's input quantization, uint8 affine
            j["input_activation"] = {{"mode", "static"}, {"range", {number(in->lo), number(in->hi)}},
                                     {"scale", number(in->scale)}, {"zero_point", in->zeroPoint}, {"qmin", 0},
                                     {"qmax", 255}, {"reduce_range", in->reduceRange}};
        tensors.push_back(std::move(j));
    }
    doc["tensors"] = std::move(tensors);
    doc["total"] = {{"bytes_before", before}, {"bytes_after", after},
                    {"ratio", number(after > 0 ? double(before) / double(after) : 0.0)}};
    doc["outputs"] = outputs;
    std::cout << doc.dump(2) << std::endl;
}

}  // namespace

void addQuantizeCommand(CLI::App& app)
{
    auto o = std::make_shared<QuantizeOptions>();
    auto* cmd = app.add_subcommand("quantize", "quantize tensors and export them (HDF5, safetensors, npy folder; GGUF from a GGUF model)");
    cmd->add_option("MODEL", o->model, "model file or folder; 'demo' is the built-in demo model")->required();
    auto* tensor = cmd->add_option("--tensor", o->tensors, "tensor name or linear-layer prefix; repeat for more")
                       ->allow_extra_args(false);
    auto* all = cmd->add_flag("--all-linear", o->allLinear, "every linear layer's weight");
    tensor->excludes(all);
    cmd->add_option("--scheme", o->scheme, "seed|torch-symmetric|torch-affine|narrow-symmetric|q8_0; for .gguf also "
                                           "q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k|f16|bf16|f32, or a llama-quantize mix "
                                           "q4_k_s|q4_k_m|q5_k_s|q5_k_m (every tensor's type as llama-quantize picks it)")->capture_default_str();
    cmd->add_option("--granularity", o->granularity, "tensor|channel|group:G")->capture_default_str();
    cmd->add_option("--calib", o->calib, "minmax|percentile:P|mse|entropy|hist-l2|manual:LO,HI")->capture_default_str();
    cmd->add_option("--bits", o->bits, "integer bits, 2..8")->check(CLI::Range(2, 8))->capture_default_str();
    cmd->add_option("--dtype", o->dtype, "int8|uint8")->check(CLI::IsMember({"int8", "uint8"}))->capture_default_str();
    cmd->add_flag("--reduce-range", o->reduceRange, "PyTorch reduce_range: one bit less of range");
    cmd->add_option("--out", o->out, "FILE.h5|FILE.hdf5 (HDF5), FILE.safetensors (int8 + scales), DIR (npy files + "
                                     "manifest.json; --format compressed-tensors), FILE.onnx (ONNX QDQ, from an ONNX model) "
                                     "or FILE.gguf (from a GGUF model; llama.cpp loads it)");
    cmd->add_option("--format", o->format, "compressed-tensors (a Hugging Face folder), onnx-qdq, hdf5, safetensors-int8, "
                                           "npy-folder; default: by --out (.onnx from an ONNX model is onnx-qdq)");
    cmd->add_option("--fake-quant", o->fakeQuant, "also write FILE.safetensors: the whole model in its own dtypes with the "
                                                  "quantized tensors replaced by their dequantized float32 values");
    auto* plan = cmd->add_option("--plan", o->plan, "a saved plan (session file): each tensor's spec, the kept-float layers and the "
                                                     "static activation ranges; without --tensor/--all-linear, its export selection (else every linear layer)")
                     ->check(CLI::ExistingFile);
    for (const char* flag : {"--scheme", "--granularity", "--calib", "--bits", "--dtype", "--reduce-range"})
        plan->excludes(cmd->get_option(flag));
    addMethodOptions(cmd, o->method);
    cmd->add_flag("--json", o->json, "print one JSON document on stdout");
    cmd->callback([o] { runQuantize(*o); });
}

}  // namespace quantlens::cli
