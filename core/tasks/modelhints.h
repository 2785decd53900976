#pragma once
// What the weights' shapes cannot tell the transformer runner (heads, eps, rotary base...),
// from the user, a Hugging Face config.json beside the model, or the file itself, and
// where each came from. One lookup for the window and the command line.
#include <string>

#include "runner/encoder.h"

namespace quantlens {

struct ModelHints {
    EncoderOptions options;
    std::string configPath;  // the config.json read, "" when none
    std::string warning;     // a config.json that exists but could not be used
};

// `modelPath` is the file or folder the model came from ("demo" and "" have no config).
// `heads` > 0 is the user's choice and wins over config.json.
ModelHints modelHints(const std::string& modelPath, int64_t heads = 0);

// Where the runner's head count came from: "--heads" (or `userLabel`), "config.json", the
// file's own metadata, or "hidden/64" (a guess).
std::string headsSource(const ModelHints& h, const EncoderConfig& c, int64_t userHeads,
                        const std::string& userLabel = "--heads");
bool headsAreGuessed(const std::string& source);

}  // namespace quantlens
