#pragma once
// HDF5 export (DESIGN.md "Export layouts"): root attributes format/format_version/source/
// source_format, one group per tensor under /tensors holding q, scale, zero_point and
// an optional bias, with the quantization parameters as attributes.
// Tensor names are group names as they are ("." is fine in HDF5); "/" and "%" are
// percent-encoded ("%2F", "%25") so a Keras name stays one group, and each group also
// carries the original name in its "name" attribute. See docs/export-formats.md.
#include <string>
#include <vector>

#include "io/exporter.h"

namespace quantlens {

Result<ExportReport> writeHdf5Export(const Model& m, const std::vector<ExportEntry>& entries,
                                     const ExportOptions& opts, const ExportProgress& progress);

// "dense_1/kernel:0" -> "dense_1%2Fkernel:0"; "%" -> "%25"; the names "." and ".." -> "%2E", "%2E%2E".
std::string hdf5GroupName(const std::string& tensorName);

}  // namespace quantlens
