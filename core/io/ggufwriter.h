#pragma once
// Writes a quantized GGUF from a GGUF source, the way llama-quantize does: every metadata
// key/value copied byte for byte (tokenizer included), general.file_type and
// general.quantization_version set, the source's alignment kept, tensors not chosen copied
// unchanged, chosen ones quantized with ggml's reference quantizers (ggmlquant.h). One
// tensor is in memory at a time; the file appears under its name only when complete.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/exporter.h"
#include "quant/metrics.h"
#include "quant/ggmlquant.h"
#include "quant/quantspec.h"
#include "result.h"

namespace quantlens {

// One decision: quantize `tensor` with spec.scheme (a ggml scheme: q8_0, q4_k, f16, ...).
// A Manual calib (the range tuned in the window) or a percentile clips the values first.
// Any other spec (int8 per channel, 4-bit affine groups, ...) is written as the nearest
// ggml type (ggufspecmap.h), its tuned range clipped first; the result says so.
struct GgufDecision {
    std::string tensor;
    QuantSpec spec;
    std::string why;  // why this type (a mix's rule); shown with the tensor
};

struct GgufWriteOptions {
    std::string outPath;
    std::optional<uint32_t> fileType;  // llama_ftype for general.file_type; default: from the types written
};

struct GgufTensorResult {
    std::string name;
    std::vector<int64_t> shape;   // numpy order (outermost first)
    std::string sourceType;       // ggml_type_name spelling: "f32", "q8_0", ...
    std::string requested;        // the decision's type, "" when the tensor was not chosen
    std::string written;          // what the file holds now
    int64_t bytesBefore = 0;
    int64_t bytesAfter = 0;
    int64_t clippedValues = 0;    // values the tuned range changed (0 when none or no clip)
    bool clipped = false;         // a clip range was applied
    std::string why;              // the decision's reason (a mix rule), or how a non-ggml spec was mapped
    bool mapped = false;          // the spec was not a ggml type and was mapped to `requested`
    std::string note;             // why written differs from requested (fallback), etc.
    // The written tensor, decoded as ggml decodes it, against the source values (quantized
    // tensors only): the same figures `compare` gives for the two files.
    bool haveMetrics = false;
    Metrics metrics;
};

struct GgufWriteReport {
    std::string outPath;
    uint32_t fileType = 0;
    int64_t bytesWritten = 0;
    std::vector<GgufTensorResult> tensors;  // every tensor, in file order
};

// llama-quantize's shape fallback (llama-quant.cpp tensor_type_fallback): a row length that
// is not a multiple of the type's block demotes Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
// and to F16 when that does not fit either (or the type already has 32-value blocks).
GgmlType ggmlFallbackType(GgmlType wanted, int64_t rowLen);
// The llama_ftype llama-quantize records for a file mostly of this type.
uint32_t llamaFileType(GgmlType mostly);

// True when the file at `path` starts with the GGUF magic (the writer's only source).
bool isGgufFile(const std::string& path);

Result<GgufWriteReport> writeGgufExport(const std::string& sourcePath, const std::vector<GgufDecision>& decisions,
                                        const GgufWriteOptions& opts, const ExportProgress& progress = {});

}  // namespace quantlens
