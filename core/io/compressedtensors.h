#pragma once
// compressed-tensors export: a Hugging Face folder in the layout llm-compressor writes
// and vLLM / transformers load (docs/export-formats.md "compressed-tensors"). The plan's
// activations (ExportOptions::activations) choose the scheme:
//  - 8 bits, per tensor or per channel, dynamic activations (or none planned) -> W8A8
//    "int-quantized": <m>.weight I8 [out, in], <m>.weight_scale [out, 1] (or [1]) in the
//    weight's dtype, activations int8 dynamic per token (per tensor, asymmetric, for a
//    per-tensor plan: valid compressed-tensors that vLLM does not run, with a warning);
//  - 8 bits, activations none -> W8A16 "pack-quantized": as below with four bytes per int32;
//  - 4 bits, per channel or group:G -> W4A16 "pack-quantized": <m>.weight_packed I32
//    [out, ceil(in/8)] (eight offset-binary nibbles per int32, lowest bits first),
//    <m>.weight_scale [out, in/G] (or [out, 1]), <m>.weight_shape I64 [2]; a plan's dynamic
//    activations are not written for them (a warning says so).
//  - entries carrying a staticInput (a plan with static activations) -> W8A8 static: also
//    <m>.input_scale [1] in the scale dtype and, unless every zero point of the config group
//    is 0, <m>.input_zero_point I8 [1] = the uint8 zero point - 128 (the same levels shifted),
//    input_activations {strategy "tensor", dynamic false}.
// Symmetric signed weight schemes only (every weight zero point 0). Only nn.Linear-style [out, in]
// weights named <m>.weight: GPT-2 Conv1D [in, out] weights are refused, as llm-compressor
// leaves Conv1D modules alone. The folder gets model.safetensors, config.json with
// quantization_config, and the source folder's tokenizer/generation files.
#include "io/exporter.h"

namespace quantlens {

Result<ExportReport> writeCompressedTensorsExport(const Model& m, const std::vector<ExportEntry>& entries,
                                                  const ExportOptions& opts, const ExportProgress& progress);

}  // namespace quantlens
