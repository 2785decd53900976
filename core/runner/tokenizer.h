#pragma once
// Plain-text calibration input: text to token ids with the model's own tokenizer, through
// Debian's libsentencepiece. Two sources work:
//  - a GGUF file whose vocabulary is llama.cpp's "llama" (SentencePiece BPE with byte
//    fallback): its tokens, scores and token types become a SentencePiece ModelProto,
//    normalisation off and spaces kept as llama.cpp keeps them (checked against
//    llama.cpp's own tokenization through node-llama-cpp);
//  - a Hugging Face model folder (or a file in one) with a SentencePiece tokenizer.model.
// Byte-level BPE (GPT-2's vocab.json/merges.txt, tokenizer.json, GGUF "gpt2") and WordPiece
// (BERT) are not handled: calibrate those with token ids.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "result.h"

namespace quantlens {

class TextTokenizer {
public:
    // Finds the model's tokenizer (see above); an error says why there is none.
    static Result<TextTokenizer> forModel(const std::string& modelPath);

    TextTokenizer(TextTokenizer&&) noexcept;
    TextTokenizer& operator=(TextTokenizer&&) noexcept;
    ~TextTokenizer();

    // Ids of `text` without BOS/EOS.
    Result<std::vector<int64_t>> encode(const std::string& text) const;
    // One sequence per non-empty line, each started with BOS when the model wants it.
    Result<std::vector<std::vector<int64_t>>> encodeLines(const std::string& text) const;
    const std::string& source() const { return source_; }  // what was loaded, for messages
    int64_t bosId() const { return bos_; }

private:
    TextTokenizer();
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string source_;
    int64_t bos_ = -1;  // -1: no BOS is prepended
};

// The GGUF vocabulary as a serialized SentencePiece ModelProto (exposed for the tests).
Result<std::string> ggufSentencePieceModel(const std::string& ggufPath, int64_t& bosId, bool& addBos);

// False in a process that also loaded the system libprotobuf (ONNX's): Debian's
// libsentencepiece bundles its own protobuf 3.14 and aborts next to 3.21.
bool textTokenizerAvailable();

}  // namespace quantlens
