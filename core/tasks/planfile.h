#pragma once
// A saved plan (session file) applied to the model at hand, for `--plan FILE` and
// File ▸ Load session…: names the model lacks are dropped and reported, a file made on a
// model with other tensors is said to be.
#include <string>
#include <vector>

#include "model.h"
#include "plan/session.h"

namespace quantlens {

struct LoadedPlan {
    Session session;
    std::vector<std::string> warnings;  // one line each, for stderr or the status bar
};

Result<LoadedPlan> loadPlanFor(const std::string& path, const Model& m);

}  // namespace quantlens
