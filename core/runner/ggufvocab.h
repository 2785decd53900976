#pragma once
// A GGUF file's llama.cpp "llama" vocabulary (SentencePiece BPE with byte fallback) as a
// serialized SentencePiece ModelProto, for the tokenizer helper (runner/tokenizer.h): its
// tokens, scores and token types, normalisation off and spaces kept as llama.cpp keeps
// them. Written field by field from sentencepiece_model.proto, so core needs neither
// SentencePiece nor protobuf.
#include <cstdint>
#include <string>

#include "result.h"

namespace quantlens {

// Error code "no-tokenizer" when the file has no vocabulary or another kind (GPT-2's
// byte-level BPE is "gpt2"), "bad-gguf" when the key/value section is damaged.
Result<std::string> ggufSentencePieceModel(const std::string& ggufPath, int64_t& bosId, bool& addBos);

}  // namespace quantlens
