#pragma once
#include <string>

#include "model.h"

namespace quantlens {

Result<Model> readPytorch(const std::string& path);

}  // namespace quantlens
