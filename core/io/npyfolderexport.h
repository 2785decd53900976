#pragma once
// NumPy folder export: one .npy per array — <name>.q.npy, <name>.scale.npy,
// <name>.zero_point.npy and, for a linear layer with a bias, <name>.bias.npy — plus
// manifest.json listing every tensor, its files and its quantization parameters.
// File names percent-encode every byte outside [A-Za-z0-9._-] (and a leading '.'),
// so any tensor name maps to one file name and back; the manifest has the exact names.
// Everything is written into a hidden temporary folder inside the target and moved into
// place only when all files are complete, manifest.json last.
#include <string>
#include <vector>

#include "io/exporter.h"

namespace quantlens {

Result<ExportReport> writeNpyFolderExport(const Model& m, const std::vector<ExportEntry>& entries,
                                          const ExportOptions& opts, const ExportProgress& progress);

std::string npyFileStem(const std::string& tensorName);

}  // namespace quantlens
