#include "io/npy.h"

namespace quantlens {

// TEMPORARY: replaced by the real reader (issue #3).
Result<Model> readNpy(const std::string& path) { return makeError("unsupported", "npy is not supported yet", path); }
Result<Model> readNpz(const std::string& path) { return makeError("unsupported", "npz is not supported yet", path); }

}  // namespace quantlens
