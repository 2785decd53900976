#pragma once
// Plain-text calibration input: text to token ids with the model's own SentencePiece
// tokenizer. Two sources work:
//  - a GGUF file whose vocabulary is llama.cpp's "llama" (runner/ggufvocab.h; checked
//    against llama.cpp's own tokenization and against python's sentencepiece);
//  - a Hugging Face model folder (or a file in one) with a SentencePiece tokenizer.model.
// Byte-level BPE (GPT-2's vocab.json/merges.txt, tokenizer.json, GGUF "gpt2") and WordPiece
// (BERT) are not handled: calibrate those with token ids.
//
// SentencePiece itself runs in a separate program, quantlens-tokenize (app/tokenize/),
// spoken to over a socket pair (runner/tokenizewire.h): Debian's libsentencepiece bundles
// protobuf-lite 3.14, which aborts in a process that also holds ONNX's libprotobuf 3.21
// (quantlens-cli and the GUI do). Core therefore never links SentencePiece.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "result.h"

namespace quantlens {

struct TokenizerOptions {
    std::string helper;  // the helper program; empty: quantlens-tokenize beside this program
};

class TextTokenizer {
public:
    // Finds the model's tokenizer (see above) and starts the helper with it; an error says
    // why there is none, or why the helper could not be started or refused the vocabulary.
    static Result<TextTokenizer> forModel(const std::string& modelPath, const TokenizerOptions& options = {});
    // quantlens-tokenize in the directory of /proc/self/exe.
    static std::string defaultHelperPath();

    TextTokenizer(TextTokenizer&&) noexcept;
    TextTokenizer& operator=(TextTokenizer&&) noexcept;
    ~TextTokenizer();  // ends the helper

    // Ids of `text` without BOS/EOS. Not thread-safe (one helper, one conversation). When
    // `cancel` becomes true the helper is killed and the error code is "cancelled"; after
    // any failure of the helper, every later call fails with the same reason.
    Result<std::vector<int64_t>> encode(const std::string& text, const std::atomic<bool>* cancel = nullptr);
    // One sequence per non-empty line, each started with BOS when the model wants it.
    Result<std::vector<std::vector<int64_t>>> encodeLines(const std::string& text,
                                                          const std::atomic<bool>* cancel = nullptr);
    const std::string& source() const { return source_; }  // what was loaded, for messages
    int64_t bosId() const { return bos_; }
    int64_t pieceCount() const { return pieces_; }

private:
    TextTokenizer();
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string source_;
    int64_t bos_ = -1;  // -1: no BOS is prepended
    int64_t pieces_ = 0;
};

}  // namespace quantlens
