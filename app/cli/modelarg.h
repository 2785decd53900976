#pragma once
#include <string>

#include "model.h"

namespace quantlens::cli {

// MODEL arguments: a path, or "demo" for the built-in synthetic DistilBERT-shaped model
// (the same one the GUI opens with no file). Throws cli::Failure with a one-line reason.
Model loadModelArg(const std::string& arg);

}  // namespace quantlens::cli
