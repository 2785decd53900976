#pragma once
// Recognising a Llama-family checkpoint by its names (Hugging Face's model.layers.N.self_attn.*
// or llama.cpp's GGUF blk.N.attn_*) and reading what its shapes and GGUF metadata say.
// Internal to the runner (runner/llama.cpp).
#include <optional>

#include "model.h"
#include "result.h"
#include "runner/encoder.h"

namespace quantlens {

// nullopt when the model has no Llama-named embedding table with a first layer beside it;
// otherwise its configuration, or why it cannot be run.
std::optional<Result<EncoderConfig>> inferLlamaConfig(const Model& m, const EncoderOptions& opt);

}  // namespace quantlens
