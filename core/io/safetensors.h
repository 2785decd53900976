#pragma once
#include <cstddef>
#include <span>
#include <string>

#include "model.h"

namespace quantlens {

// Reads a .safetensors file: tensors are views into the memory mapping.
Result<Model> readSafetensors(const std::string& path);
// Reads model.safetensors.index.json and opens every shard it names as one model.
Result<Model> readSafetensorsIndex(const std::string& indexPath);

}  // namespace quantlens
