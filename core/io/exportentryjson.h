#pragma once
// The per-tensor description the int8 exports write beside the integers: one entry of the
// npy folder's manifest.json and of the safetensors header's "quantlens_tensors". One
// function, so both exports name the same fields the same way (docs/export-formats.md).
#include <nlohmann/json.hpp>

#include "io/exporter.h"

namespace quantlens {

// Adds scheme, granularity, axis, group_size, bits, qmin, qmax, calib, range_lo/hi,
// source_dtype, mse and sqnr_db to `j`, after whatever it already holds; under a static
// plan also input_activation (the layer input's uint8 scale, zero point and range).
void describeExportEntry(const ExportEntry& e, nlohmann::ordered_json& j);

}  // namespace quantlens
