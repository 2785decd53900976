#pragma once
// The quantization plan as a file: the plan (plan/quantplan.h) plus what it was made on
// and the tensors ticked for export, so the same tuning can be re-applied to the same
// model later, in the window or headless (`--plan`). Layout: docs/sessions.md. No Qt.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "model.h"
#include "plan/quantplan.h"
#include "result.h"

namespace quantlens {

struct Session : QuantPlan {
    // 2: the plan's activations and quantize_vectors; 3: weight methods (GPTQ, SmoothQuant)
    // and their calibration. Versions 1 and 2 still read.
    static constexpr int kVersion = 3;

    // What the session was made on, to warn when it is applied to another model.
    std::string modelPath;
    int64_t modelTensors = 0;
    std::string modelFingerprint;  // modelFingerprint() of that model

    std::set<std::string> exportSelection;       // tensors ticked for export (empty: none ticked)

    QuantPlan& plan() { return *this; }
    const QuantPlan& plan() const { return *this; }
    bool empty() const { return overrides.empty() && exportSelection.empty() && keepFloat.empty() && methods.empty(); }
};

// Names, dtypes and shapes of every tensor, hashed (FNV-1a 64, hex). Two files holding the
// same architecture with other weights share it; that is what re-applying needs.
std::string modelFingerprint(const Model& m);

std::string specToJsonText(const QuantSpec& s);  // one JSON object, for logs and tests
std::string sessionToJson(const Session& s);
// Every field is checked: unknown scheme/calibrator names, wrong types and a newer
// version are errors naming the field; unknown extra keys are ignored.
Result<Session> sessionFromJson(const std::string& text);

Status saveSession(const std::string& path, const Session& s);  // atomic (temp + rename)
Result<Session> loadSession(const std::string& path);           // refuses files > 64 MiB

// What applying `s` to `m` keeps: names the model does not have are dropped and listed.
struct SessionApplied {
    Session session;
    std::vector<std::string> missing;  // names in the file that `m` lacks
    bool sameModel = true;             // fingerprints equal
};
SessionApplied applySession(const Session& s, const Model& m);

}  // namespace quantlens
