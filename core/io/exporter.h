#pragma once
// One front for every export format: the CLI and the GUI quantize tensors with
// quantizeForExport() and hand the results to exportModel(), which picks the writer.
// Layouts: docs/export-formats.md.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model.h"
#include "quant/metrics.h"
#include "quant/quantize.h"
#include "result.h"

namespace quantlens {

enum class ExportFormat {
    Hdf5,                  // .h5 / .hdf5: one group per tensor under /tensors
    SafetensorsInt8,       // .safetensors: <name>, <name>_scale, <name>_zero_point + the rest unchanged
    SafetensorsFakeQuant,  // .safetensors: the whole model, chosen tensors replaced by dequantized float32
    NpyFolder,             // a folder of .npy files + manifest.json
    Gguf,                  // .gguf from a GGUF source: the whole model, chosen tensors as ggml types (ggufwriter.h)
    OnnxQdq,               // .onnx from an ONNX source: int8 initializers + DequantizeLinear nodes (onnxqdq.h)
    CompressedTensors,     // a Hugging Face folder in compressed-tensors layout (compressedtensors.h)
};

// A layer's input under static activations (W8A8 static): uint8 affine, values clamped to
// [0, 255], with the scale and zero point the runner quantizes that input with (filled in by
// tasks/exportplan.h from the plan's calibrated range; the writers only store them).
struct StaticInputParams {
    float lo = 0.0f, hi = 0.0f;  // the plan's range
    float scale = 1.0f;
    int32_t zeroPoint = 0;       // in [0, 255]
    bool reduceRange = false;    // the range was spread over 0..127 when the parameters were chosen
};

// One quantized tensor ready to be written.
struct ExportEntry {
    QuantizedTensor quantized;  // quantized.q is empty once the payload is dropped
    Metrics metrics;       // of the round trip, recorded in the export
    std::string biasName;  // the linear layer's bias tensor in the model, "" if none
    std::optional<StaticInputParams> staticInput;  // the layer's input quantization, static plans only
    // Set by dropPayload(): everything but the integers is kept (metrics, scales, zero
    // points, shape), and the writer quantizes the tensor again when it writes it
    // (EntryPayload), so a whole export holds one tensor's integers at a time.
    bool payloadDropped = false;
    int64_t droppedBytesAfter = 0;  // quantized.bytesAfter() from before the drop

    int64_t bytesAfter() const { return payloadDropped ? droppedBytesAfter : quantized.bytesAfter(); }
};

// Lets go of e's integers (see ExportEntry::payloadDropped). Only for entries made by
// quantizeForExport from the model that is exported: quantization is deterministic, so the
// writer's second pass gives the same integers. GPTQ's integers cannot be remade this way
// and are never dropped.
void dropPayload(ExportEntry& e);

// An entry's integers for as long as a writer needs them: the entry's own, or, when it
// dropped them, the tensor quantized again from the model (its scales and zero points are
// checked against the entry's). Writers take it right before writing the integers and let
// it go right after.
class EntryPayload {
public:
    static Result<EntryPayload> of(const Model& m, const ExportEntry& e);
    const QuantizedTensor& operator*() const { return *p_; }
    const QuantizedTensor* operator->() const { return p_; }

private:
    const QuantizedTensor* p_ = nullptr;
    std::shared_ptr<const QuantizedTensor> owned_;
};

// The plan's activation quantization, for the formats that describe it (compressed-tensors'
// input_activations). Unplanned: the format's usual scheme for the weights (compressed-tensors:
// W8A8 dynamic per token for 8-bit weights, W4A16 for 4-bit). A static plan's scale and zero
// point per layer ride on the entries (ExportEntry::staticInput).
enum class ExportActivations { Unplanned, None, DynamicPerToken, DynamicPerTensor, Static };

struct ExportOptions {
    ExportFormat format = ExportFormat::Hdf5;
    std::string outPath;
    std::string source;  // recorded as the export's source; "" = the model's files joined by ";"
    std::optional<uint32_t> ggufFileType;  // GGUF: general.file_type (a mix's ftype); default from the types written
    ExportActivations activations = ExportActivations::Unplanned;
};

struct ExportReport {
    int64_t bytesWritten = 0;
    std::vector<std::string> files;     // what was written
    std::vector<std::string> warnings;  // e.g. tensors that could not be copied
};

// Progress in [0, 1] with what is being written. Returning false cancels: the export then
// fails with code "cancelled" and leaves nothing under the final name.
using ExportProgress = std::function<bool(double fraction, const std::string& what)>;

std::string exportFormatName(ExportFormat f);  // "hdf5", "safetensors-int8", ...
// By the output path: an existing folder or a path ending in "/" -> NpyFolder; .h5/.hdf5 ->
// Hdf5; .safetensors -> SafetensorsInt8; .gguf -> Gguf; a new path without extension -> NpyFolder. Any other
// extension, or an existing file of another kind, is an error (no surprise folder "x.onnx").
Result<ExportFormat> exportFormatForPath(const std::string& outPath);

// By an explicit name ("compressed-tensors", "onnx-qdq", "hdf5", "safetensors-int8",
// "npy-folder"), or by the path as above when `name` is empty.
Result<ExportFormat> exportFormatFor(const std::string& outPath, const std::string& name);

// Whether `m` can be written as `f`, the one check every path makes (CLI, dialog, writers):
// runtime formats rewrite their source, so a GGUF export needs a GGUF model, an ONNX QDQ
// export an ONNX model and compressed-tensors a Hugging Face safetensors checkpoint. The
// error (code "bad-pair") is one line naming what is possible from this source.
Status checkExportSource(const Model& m, ExportFormat f);

// Whether a spec can be written as `f` at all, before any tensor is quantized (the CLI
// makes a failure here a usage error). compressed-tensors: signed and symmetric, 8 bits
// per tensor / per channel (W8A8) or 4 bits per channel / per group (W4A16).
Status checkExportSpec(ExportFormat f, const QuantSpec& spec);

// The granularity as stored: "tensor", "channel", "group:G" (Q8_0 is "group:32").
std::string storedGranularity(const QuantizedTensor& qt);
// The channel axis the scales run along; -1 for per-tensor.
int storedAxis(const QuantizedTensor& qt);
// The shape of the scale/zero-point arrays: [1], [channels] or [channels, groups].
// An error if the number of scales does not fit the tensor's shape.
Result<std::vector<int64_t>> scaleShape(const QuantizedTensor& qt);

// Quantizes tensor `name` of `m` for export. Sets spec.axis from the layout (1 for
// [in, out] weights), refuses per-channel/per-group on rank < 2, fills the metrics and
// the bias of the linear layer the tensor belongs to.
Result<ExportEntry> quantizeForExport(const Model& m, const std::string& name, QuantSpec spec);

// Why a scheme chosen for the whole export cannot be written as `f` ("" when it can): the
// ggml block schemes (q4_0 ... f32) exist only as GGUF tensors, and a GGUF export asked for
// by scheme name takes a ggml type (a plan's per-layer specs are mapped instead, ggufspecmap.h).
std::string exportSchemeProblem(Scheme s, ExportFormat f);

// Writes `entries` (tensors of `m`) in opts.format. Never writes over one of m.files.
Result<ExportReport> exportModel(const Model& m, const std::vector<ExportEntry>& entries,
                                 const ExportOptions& opts, const ExportProgress& progress = {});

struct GgufDecision;
// The GGUF path of exportModel/runExportPlan: the decisions go straight to the writer, which
// quantizes one tensor at a time while it writes.
Result<ExportReport> exportGguf(const Model& m, const std::vector<GgufDecision>& decisions, const ExportOptions& opts,
                                const ExportProgress& progress = {});

// Shared by the writers.
namespace exportdetail {
std::string sourceOf(const Model& m, const ExportOptions& opts);
// Calls progress; false = cancelled.
bool report(const ExportProgress& p, double fraction, const std::string& what);
Error cancelled(const std::string& path);
// The integers EntryPayload made again: how many are alive now, the most alive at once and
// how many were made since the last reset (tests check a writer holds one at a time).
struct PayloadCount {
    int live = 0, peak = 0, made = 0;
};
PayloadCount payloadCount(bool reset = false);
}  // namespace exportdetail

}  // namespace quantlens
