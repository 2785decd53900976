#include "io/exporter.h"
#include "io/mappedfile.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <mutex>

#include "io/ggufwriter.h"
#include "io/compressedtensors.h"
#include "io/h5export.h"
#include "io/npyfolderexport.h"
#include "io/onnxqdq.h"
#include "io/safetensorswriter.h"
#include "layers.h"

namespace quantlens {

namespace fs = std::filesystem;

std::string exportFormatName(ExportFormat f)
{
    switch (f) {
    case ExportFormat::Hdf5: return "hdf5";
    case ExportFormat::SafetensorsInt8: return "safetensors-int8";
    case ExportFormat::SafetensorsFakeQuant: return "safetensors-fake-quant";
    case ExportFormat::NpyFolder: return "npy-folder";
    case ExportFormat::Gguf: return "gguf";
    case ExportFormat::OnnxQdq: return "onnx-qdq";
    case ExportFormat::CompressedTensors: return "compressed-tensors";
    }
    return "unknown";
}

Result<ExportFormat> exportFormatForPath(const std::string& outPath)
{
    if (outPath.empty())
        return makeError("bad-path", "empty output path");
    std::error_code ec;
    if (fs::is_directory(outPath, ec) || outPath.back() == '/')
        return ExportFormat::NpyFolder;
    std::string ext = fs::path(outPath).extension().string();
    for (char& c : ext)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    if (ext == ".h5" || ext == ".hdf5")
        return ExportFormat::Hdf5;
    if (ext == ".safetensors")
        return ExportFormat::SafetensorsInt8;
    if (ext == ".gguf")
        return ExportFormat::Gguf;
    if (ext == ".onnx")
        return ExportFormat::OnnxQdq;
    if (fs::exists(outPath, ec))
        return makeError("bad-path", "output exists and is neither a folder nor a .h5/.hdf5/.safetensors/.onnx file", outPath);
    // "model.xyz" would otherwise silently become a folder: only plain names do.
    if (!ext.empty())
        return makeError("bad-path", "unknown output type '" + ext + "': use .h5, .hdf5, .safetensors, .gguf, .onnx or a folder (end it with / to force one)", outPath);
    return ExportFormat::NpyFolder;
}

Result<ExportFormat> exportFormatFor(const std::string& outPath, const std::string& name)
{
    if (name.empty())
        return exportFormatForPath(outPath);
    for (ExportFormat f : {ExportFormat::Hdf5, ExportFormat::SafetensorsInt8, ExportFormat::SafetensorsFakeQuant,
                           ExportFormat::NpyFolder, ExportFormat::OnnxQdq, ExportFormat::CompressedTensors})
        if (exportFormatName(f) == name)
            return f;
    return makeError("bad-format", "unknown export format '" + name +
                                       "': use compressed-tensors, onnx-qdq, hdf5, safetensors-int8 or npy-folder");
}

Status checkExportSource(const Model& m, ExportFormat f)
{
    const bool onnx = m.format == "onnx";
    const bool hf = m.format == "safetensors" || m.format == "safetensors-sharded";
    const bool gguf = m.format == "gguf" && m.files.size() == 1;
    const std::string source = m.format.empty() ? "model" : m.format;
    const std::string possible = "from this " + source + " source Quantlens can write .h5, .safetensors or an npy folder"
                                 + (gguf ? ", or .gguf (llama.cpp)" : "") + (onnx ? ", or .onnx (ONNX QDQ)" : "")
                                 + (hf ? ", or a folder with --format compressed-tensors" : "");
    auto refuse = [&](const std::string& what) {
        return makeError("bad-pair", what + ", and this source is " + source + "; " + possible);
    };
    if (f == ExportFormat::Gguf && !gguf)
        return refuse("a GGUF export (.gguf) rewrites a GGUF model");
    if (f == ExportFormat::OnnxQdq && !onnx)
        return refuse("an ONNX QDQ export (.onnx) rewrites an ONNX model");
    if (f == ExportFormat::CompressedTensors && !hf)
        return refuse("a compressed-tensors export rewrites a Hugging Face safetensors checkpoint");
    return Ok{};
}

Status checkExportSpec(ExportFormat f, const QuantSpec& spec)
{
    if (f != ExportFormat::CompressedTensors)
        return Ok{};
    auto bad = [](const std::string& why) { return makeError("bad-spec", "compressed-tensors: " + why); };
    if (spec.isUnsigned)
        return bad("stores signed integers; use --dtype int8");
    if (spec.scheme == Scheme::TorchAffine)
        return bad("takes symmetric schemes (zero point 0): torch-symmetric, narrow-symmetric or seed, not torch-affine");
    const bool w8a8 = spec.bits == 8 && spec.scheme != Scheme::Q8_0 && spec.granularity != Granularity::PerGroup;
    const bool w4a16 = spec.bits == 4 && spec.scheme != Scheme::Q8_0 && spec.granularity != Granularity::PerTensor;
    if (!w8a8 && !w4a16)
        return bad("takes --bits 8 with --granularity tensor|channel (W8A8, int-quantized) or --bits 4 with --granularity "
                   "channel|group:G (W4A16, pack-quantized); this is " + std::to_string(spec.bits) + "-bit " + schemeName(spec.scheme) +
                   " " + granularityName(spec));
    return Ok{};
}

std::string storedGranularity(const QuantizedTensor& qt)
{
    if (qt.params.groupSize > 0)
        return "group:" + std::to_string(qt.params.groupSize);
    if (qt.spec.granularity == Granularity::PerChannel)
        return "channel";
    return "tensor";
}

int storedAxis(const QuantizedTensor& qt)
{
    if (qt.params.groupSize <= 0 && qt.spec.granularity != Granularity::PerChannel)
        return -1;
    return qt.params.axis >= 0 ? qt.params.axis : qt.spec.axis;
}

Result<std::vector<int64_t>> scaleShape(const QuantizedTensor& qt)
{
    const int64_t n = static_cast<int64_t>(qt.params.scale.size());
    auto bad = [&](const std::string& why) {
        return makeError("bad-params", why + " (" + std::to_string(n) + " scales for shape " + shapeString(qt.shape) + ")", {}, -1, qt.name);
    };
    if (n == 0)
        return bad("no scales");
    if (qt.params.zeroPoint.size() != qt.params.scale.size())
        return bad("zero points and scales differ in count");
    const int axis = qt.params.axis >= 0 ? qt.params.axis : qt.spec.axis;
    if (axis < 0 || axis >= std::max<int64_t>(qt.rank(), 1))
        return bad("channel axis " + std::to_string(axis) + " is outside the tensor");
    if (qt.params.groupSize > 0) {
        // A scalar or vector is one row of groups (as quantize() treats it).
        const int64_t channels = qt.rank() <= 1 ? 1 : qt.shape[size_t(axis)];
        if (channels <= 0 || n % channels != 0)
            return bad("scales do not divide into channels");
        return std::vector<int64_t>{channels, n / channels};
    }
    if (qt.spec.granularity == Granularity::PerChannel) {
        if (qt.rank() < 2 || qt.shape[size_t(axis)] != n)
            return bad("one scale per channel expected");
        return std::vector<int64_t>{n};
    }
    if (n != 1)
        return bad("one scale expected for per-tensor");
    return std::vector<int64_t>{1};
}

namespace {

// quantizeForExport without the bias; the metrics only when asked (a writer's second pass
// has them already).
Result<ExportEntry> quantizeEntry(const Model& m, const std::string& name, QuantSpec spec, bool withMetrics)
{
    const Tensor* t = m.find(name);
    if (!t)
        return makeError("no-tensor", "no tensor named '" + name + "'", {}, -1, name);
    if (!t->decodable())
        return makeError("not-decoded", "tensor type " + t->opaqueType + " cannot be decoded, so it cannot be quantized", {}, -1, name);
    if (spec.granularity != Granularity::PerTensor && t->rank() < 2)
        return makeError("bad-granularity", "per-" + std::string(spec.granularity == Granularity::PerChannel ? "channel" : "group") +
                         " quantization needs a tensor of rank >= 2; this one has shape " + shapeString(t->shape), {}, -1, name);
    // Output channels are axis 0 of a PyTorch weight and the last axis of a Keras kernel.
    spec.axis = outputChannelAxis(*t);
    // The float copy is all that is read from here on: the mapped pages go back piece by
    // piece during the conversion, so a big tensor costs its float copy once, not its
    // file pages on top.
    auto x = t->toFloatReleasingPages();
    if (!x)
        return x.error();
    auto q = quantize(*x, t->shape, spec);
    if (!q) {
        Error e = q.error();
        if (e.tensor.empty())
            e.tensor = name;
        return e;
    }
    ExportEntry e;
    e.quantized = std::move(*q);
    e.quantized.name = t->name;
    e.quantized.shape = t->shape;
    e.quantized.sourceDtype = t->dtype;
    if (withMetrics)
        e.metrics = quantizationMetrics(*x, e.quantized);  // no second float copy of a big tensor
    return e;
}

}  // namespace

Result<ExportEntry> quantizeForExport(const Model& m, const std::string& name, QuantSpec spec)
{
    auto e = quantizeEntry(m, name, spec, true);
    if (!e)
        return e;
    const Tensor* t = m.find(name);
    for (const QuantLayer& l : findQuantLayers(m))
        if (l.weight == t && l.bias)
            e->biasName = l.bias->name;
    return e;
}

namespace {

std::mutex payloadMutex;
exportdetail::PayloadCount payloads;

std::shared_ptr<const QuantizedTensor> countedPayload(QuantizedTensor&& q)
{
    {
        std::lock_guard lock(payloadMutex);
        ++payloads.made;
        payloads.peak = std::max(payloads.peak, ++payloads.live);
    }
    return {new QuantizedTensor(std::move(q)), [](const QuantizedTensor* p) {
                delete p;
                std::lock_guard lock(payloadMutex);
                --payloads.live;
            }};
}

}  // namespace

void dropPayload(ExportEntry& e)
{
    if (e.payloadDropped)
        return;
    e.droppedBytesAfter = e.quantized.bytesAfter();
    std::vector<int8_t>().swap(e.quantized.q);
    std::vector<std::byte>().swap(e.quantized.blocks);
    e.payloadDropped = true;
}

Result<EntryPayload> EntryPayload::of(const Model& m, const ExportEntry& e)
{
    const QuantizedTensor& want = e.quantized;
    EntryPayload p;
    if (!e.payloadDropped) {
        p.p_ = &want;
    } else {
        auto again = quantizeEntry(m, want.name, want.spec, false);
        if (!again)
            return again.error();
        const QuantizedTensor& got = again->quantized;
        // The first pass's scales are already in the export's header or metadata.
        if (got.shape != want.shape || got.params.scale != want.params.scale || got.params.zeroPoint != want.params.zeroPoint)
            return makeError("internal", "quantizing the tensor again for writing gave other scales than the first pass",
                             {}, -1, want.name);
        p.owned_ = countedPayload(std::move(again->quantized));
        p.p_ = p.owned_.get();
    }
    auto n = checkedNumel(p.p_->shape.data(), p.p_->shape.size());
    if (!n || *n != static_cast<int64_t>(p.p_->q.size()))
        return makeError("bad-params", "integer data does not match shape " + shapeString(p.p_->shape), {}, -1, want.name);
    return p;
}

std::string exportSchemeProblem(Scheme s, ExportFormat f)
{
    if (f == ExportFormat::Gguf && !isGgmlScheme(s))
        return "GGUF holds ggml types: use q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, f16, bf16, f32 or a "
               "llama-quantize mix (q4_k_s, q4_k_m, q5_k_s, q5_k_m), not " + schemeName(s);
    if (f != ExportFormat::Gguf && isGgmlBlockScheme(s))
        return schemeName(s) + " is ggml's block format and is written only as GGUF (--out FILE.gguf from a GGUF "
                               "model); the int8 formats take seed, torch-symmetric, torch-affine, narrow-symmetric "
                               "or q8_0";
    return {};
}

Result<ExportReport> exportGguf(const Model& m, const std::vector<GgufDecision>& decisions, const ExportOptions& opts,
                                const ExportProgress& progress)
{
    if (Status s = checkExportSource(m, ExportFormat::Gguf); !s)
        return s.error();
    GgufWriteOptions go;
    go.outPath = opts.outPath;
    go.fileType = opts.ggufFileType;
    auto r = writeGgufExport(m.files.front(), decisions, go, progress);
    if (!r)
        return r.error();
    ExportReport rep;
    rep.bytesWritten = r->bytesWritten;
    rep.files.push_back(r->outPath);
    for (const GgufTensorResult& t : r->tensors) {
        if (t.requested.empty() || (t.note.empty() && !t.mapped))
            continue;
        const std::string mapped = t.mapped ? t.why : "";
        rep.warnings.push_back(t.name + ": " + mapped + (mapped.empty() || t.note.empty() ? "" : "; ") + t.note);
    }
    return rep;
}

Result<ExportReport> exportModel(const Model& m, const std::vector<ExportEntry>& entries,
                                 const ExportOptions& opts, const ExportProgress& progress)
{
    if (Status s = checkExportSource(m, opts.format); !s)
        return s.error();
    if (opts.format == ExportFormat::Gguf) {  // the writer maps specs that are not ggml types
        std::vector<GgufDecision> decisions;
        for (const ExportEntry& e : entries)
            decisions.push_back({e.quantized.name, e.quantized.spec, {}});
        return exportGguf(m, decisions, opts, progress);
    }
    for (const ExportEntry& e : entries)
        if (std::string why = exportSchemeProblem(e.quantized.spec.scheme, opts.format); !why.empty())
            return makeError("unsupported-pair", why, {}, -1, e.quantized.name);
    for (const ExportEntry& e : entries) {
        auto ss = scaleShape(e.quantized);
        if (!ss)
            return ss.error();
        auto n = checkedNumel(e.quantized.shape.data(), e.quantized.shape.size());
        if (!n || (!e.payloadDropped && *n != static_cast<int64_t>(e.quantized.q.size())))
            return makeError("bad-params", "integer data does not match shape " + shapeString(e.quantized.shape), {}, -1, e.quantized.name);
    }
    switch (opts.format) {
    case ExportFormat::Hdf5: return writeHdf5Export(m, entries, opts, progress);
    case ExportFormat::SafetensorsInt8: return writeSafetensorsExport(m, entries, opts, progress, false);
    case ExportFormat::SafetensorsFakeQuant: return writeSafetensorsExport(m, entries, opts, progress, true);
    case ExportFormat::NpyFolder: return writeNpyFolderExport(m, entries, opts, progress);
    case ExportFormat::Gguf: break;  // handled above
    case ExportFormat::OnnxQdq: return writeOnnxQdqExport(m, entries, opts, progress);
    case ExportFormat::CompressedTensors: return writeCompressedTensorsExport(m, entries, opts, progress);
    }
    return makeError("internal", "unknown export format");
}

namespace exportdetail {

std::string sourceOf(const Model& m, const ExportOptions& opts)
{
    if (!opts.source.empty())
        return opts.source;
    std::string s;
    for (const std::string& f : m.files) {
        if (!s.empty())
            s += ";";
        s += f;
    }
    return s;
}

bool report(const ExportProgress& p, double fraction, const std::string& what)
{
    return !p || p(fraction, what);
}

Error cancelled(const std::string& path) { return makeError("cancelled", "export cancelled; nothing was written", path); }

PayloadCount payloadCount(bool reset)
{
    std::lock_guard lock(payloadMutex);
    const PayloadCount now = payloads;
    if (reset)
        payloads.peak = payloads.made = 0;
    return now;
}

}  // namespace exportdetail

}  // namespace quantlens
