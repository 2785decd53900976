#pragma once
#include <string>

#include "model.h"

namespace quantlens {

Result<Model> readNpy(const std::string& path);
Result<Model> readNpz(const std::string& path);

}  // namespace quantlens
