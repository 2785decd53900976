#pragma once
#include <string>

#include "model.h"

namespace quantlens {

Result<Model> readHdf5(const std::string& path, const OpenProgress& progress = {});

}  // namespace quantlens
