#pragma once
#include <string>

#include "model.h"

namespace quantlens {

Result<Model> readGguf(const std::string& path);

}  // namespace quantlens
