#pragma once
// ONNX QDQ export: the source ONNX model with each quantized weight initializer W
// replaced by W_quantized (INT8/UINT8) + W_scale + W_zero_point and a DequantizeLinear
// node whose output is named W, so every consumer reads the dequantized weight
// unchanged (docs/export-formats.md "ONNX QDQ").
//  - per tensor: scalar scale; per channel: 1-D scale with `axis` = the output-channel
//    axis (0 for Conv [out, in, k..] and Gemm transB=1, 1 for MatMul / Gemm transB=0 [in, out]);
//  - per group (and q8_0): blocked DequantizeLinear (opset 21) with `block_size` along the
//    input axis; refused below opset 21, which ONNX 1.12's converter cannot reach.
// A model below opset 13 is converted to 13 with ONNX's own version converter.
// External data is copied into OUT.onnx.data beside the output (the source's files are
// never referenced), so the written model stands on its own.
// Reading stays with our reader (io/onnx.h): the source is re-parsed with libprotobuf only
// after readOnnx validated it, and without the data of its large initializers
// (io/onnxskeleton.h), which is copied from the source file as the output is written
// (io/onnxsplice.h): the export holds the graph and the quantized values, not the model.
#include <cstdint>

#include "io/exporter.h"

namespace quantlens {

Result<ExportReport> writeOnnxQdqExport(const Model& m, const std::vector<ExportEntry>& entries,
                                        const ExportOptions& opts, const ExportProgress& progress);

namespace onnxqdqdetail {

// Initializers whose data has this many bytes or more are streamed, not parsed.
constexpr uint64_t kStreamFrom = uint64_t(64) << 10;

enum class Writing {
    Streamed,    // the export: the data spliced in from the files (SplicedModel::write)
    WholeModel,  // the reference the tests compare it with: everything read in, serialized whole
};

// writeOnnxQdqExport with its streaming threshold and writer chosen (for the tests).
Result<ExportReport> write(const Model& m, const std::vector<ExportEntry>& entries, const ExportOptions& opts,
                           const ExportProgress& progress, uint64_t streamFrom, Writing writing);

}  // namespace onnxqdqdetail

}  // namespace quantlens
