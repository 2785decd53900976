#include "io/onnx.h"

namespace quantlens {

// TEMPORARY: replaced by the real reader (issue #3).
Result<Model> readOnnx(const std::string& path)
{
    return makeError("unsupported", "this format is not supported yet", path);
}

}  // namespace quantlens
