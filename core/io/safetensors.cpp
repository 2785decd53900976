#include "io/safetensors.h"

namespace quantlens {
Result<Model> readSafetensors(const std::string& path) { return makeError("unsupported", "wip", path); }
Result<Model> readSafetensorsIndex(const std::string& path) { return makeError("unsupported", "wip", path); }
}  // namespace quantlens
