#include "tasks/planfile.h"

namespace quantlens {

Result<LoadedPlan> loadPlanFor(const std::string& path, const Model& m)
{
    auto s = loadSession(path);
    if (!s)
        return s.error();
    SessionApplied a = applySession(*s, m);
    LoadedPlan out;
    out.session = std::move(a.session);
    if (!a.sameModel)
        out.warnings.push_back(path + ": made on a model with other tensors (fingerprint differs)");
    if (!a.missing.empty()) {
        std::string names;
        for (size_t i = 0; i < a.missing.size() && i < 5; ++i)
            names += (i ? ", " : "") + a.missing[i];
        out.warnings.push_back(path + ": " + std::to_string(a.missing.size()) + " name(s) not in this model, ignored: " +
                               names + (a.missing.size() > 5 ? ", ..." : ""));
    }
    return out;
}

}  // namespace quantlens
