#pragma once
// A user's per-layer quantization choices, saved to and loaded from a JSON file so the
// same tuning can be re-applied to the same model later (issue #6). Layout:
// docs/sessions.md. Nothing here knows about Qt; the GUI keeps one Session and the
// export plan reads it.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "model.h"
#include "quant/quantspec.h"
#include "result.h"

namespace quantlens {

struct Session {
    static constexpr int kVersion = 1;

    // What the session was made on, to warn when it is applied to another model.
    std::string modelPath;
    int64_t modelTensors = 0;
    std::string modelFingerprint;  // modelFingerprint() of that model

    QuantSpec defaultSpec;                       // the model-wide choice
    std::map<std::string, QuantSpec> overrides;  // tensor name -> what the user tuned on it
    std::set<std::string> exportSelection;       // tensors ticked for export (empty: none ticked)
    std::set<std::string> keepFloat;             // linear weights kept in float32 (sensitivity)

    // The spec tensor `name` is quantized with: its override, else the default.
    const QuantSpec& specFor(const std::string& name) const;
    bool empty() const { return overrides.empty() && exportSelection.empty() && keepFloat.empty(); }
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
