#pragma once
#include <string>

#include "model.h"

namespace quantlens {

Result<Model> readOnnx(const std::string& path);

}  // namespace quantlens
