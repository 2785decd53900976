#include "runner/ggufvocab.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

namespace quantlens {

namespace {

// ---- the GGUF key/value section, only as far as the tokenizer needs ----------------------
// GGUF value types (ggml docs/gguf.md).
enum : uint32_t { kU8, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64 };

int64_t scalarBytes(uint32_t t)
{
    switch (t) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
    }
}

class Reader {
public:
    Reader(std::ifstream& in, uint64_t size, std::string path) : in_(in), size_(size), path_(std::move(path)) {}

    template <class T>
    Result<T> read(const char* what)
    {
        T v{};
        if (remaining() < sizeof v || !in_.read(reinterpret_cast<char*>(&v), sizeof v))
            return fail(std::string("truncated reading ") + what);
        pos_ += sizeof v;
        return v;
    }
    Result<std::string> string(const char* what)
    {
        auto n = read<uint64_t>(what);
        if (!n)
            return n.error();
        if (*n > remaining())
            return fail(std::string(what) + " of " + std::to_string(*n) + " bytes runs past the end of the file");
        std::string s(size_t(*n), '\0');
        if (!in_.read(s.data(), std::streamsize(*n)))
            return fail(std::string("truncated reading ") + what);
        pos_ += *n;
        return s;
    }
    Status skip(uint64_t n)
    {
        if (n > remaining())
            return fail("a value runs past the end of the file");
        in_.seekg(std::streamoff(n), std::ios::cur);
        pos_ += n;
        return Ok{};
    }
    uint64_t remaining() const { return size_ - pos_; }
    Error fail(const std::string& why) const { return makeError("bad-gguf", why, path_, int64_t(pos_)); }

private:
    std::ifstream& in_;
    uint64_t size_, pos_ = 0;
    std::string path_;
};

Status skipValue(Reader& r, uint32_t type, int depth)
{
    if (const int64_t b = scalarBytes(type))
        return r.skip(uint64_t(b));
    if (type == kString) {
        auto s = r.read<uint64_t>("a string length");
        return s ? r.skip(*s) : Status(s.error());
    }
    if (type != kArray || depth > 3)
        return r.fail("unknown or too deeply nested value type " + std::to_string(type));
    auto et = r.read<uint32_t>("an array type");
    auto n = et ? r.read<uint64_t>("an array length") : Result<uint64_t>(et.error());
    if (!n)
        return n.error();
    if (const int64_t b = scalarBytes(*et)) {
        if (*n > r.remaining() / uint64_t(b))
            return r.fail("an array runs past the end of the file");
        return r.skip(*n * uint64_t(b));
    }
    if (*n > r.remaining() / 8)
        return r.fail("an array runs past the end of the file");
    for (uint64_t i = 0; i < *n; ++i)
        if (auto s = skipValue(r, *et, depth + 1); !s)
            return s;
    return Ok{};
}

struct GgufVocab {
    std::string model;
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    int64_t bos = 1, eos = 2, unk = 0;
    bool addBos = true, addSpacePrefix = true;
};

Result<GgufVocab> readGgufVocab(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    if (!in || ec)
        return makeError("io", "cannot open", path);
    Reader r(in, size, path);
    auto magic = r.read<uint32_t>("the magic");
    if (!magic || std::memcmp(&*magic, "GGUF", 4) != 0)
        return makeError("bad-gguf", "not a GGUF file", path);
    auto version = r.read<uint32_t>("the version");
    if (!version || *version < 2 || *version > 3)
        return makeError("bad-gguf", "GGUF version 2 or 3 expected", path);
    auto nTensors = r.read<uint64_t>("the tensor count");
    auto nKv = nTensors ? r.read<uint64_t>("the key/value count") : Result<uint64_t>(nTensors.error());
    if (!nKv)
        return nKv.error();
    if (*nKv > r.remaining() / 12)
        return r.fail("more key/value pairs than the file can hold");
    GgufVocab v;
    for (uint64_t i = 0; i < *nKv; ++i) {
        auto key = r.string("a key");
        auto type = key ? r.read<uint32_t>("a value type") : Result<uint32_t>(key.error());
        if (!type)
            return type.error();
        auto intValue = [&](int64_t& dst) -> Status {
            if (*type == kU32 || *type == kI32) {
                auto x = r.read<uint32_t>(key->c_str());
                if (!x)
                    return x.error();
                dst = *type == kI32 ? int64_t(int32_t(*x)) : int64_t(*x);
                return Ok{};
            }
            return skipValue(r, *type, 0);
        };
        auto boolValue = [&](bool& dst) -> Status {
            if (*type != kBool)
                return skipValue(r, *type, 0);
            auto x = r.read<uint8_t>(key->c_str());
            if (!x)
                return x.error();
            dst = *x != 0;
            return Ok{};
        };
        // An array of fixed-size or string elements, each element stored by `take`.
        auto array = [&](uint32_t want, auto take) -> Status {
            if (*type != kArray)
                return r.fail("'" + *key + "' is not an array");
            auto et = r.read<uint32_t>("an array type");
            auto n = et ? r.read<uint64_t>("an array length") : Result<uint64_t>(et.error());
            if (!n)
                return n.error();
            if (*et != want)
                return r.fail("'" + *key + "' holds elements of type " + std::to_string(*et));
            const uint64_t minBytes = want == kString ? 8 : uint64_t(scalarBytes(want));
            if (*n > r.remaining() / minBytes)
                return r.fail("'" + *key + "' runs past the end of the file");
            for (uint64_t k = 0; k < *n; ++k)
                if (auto s = take(); !s)
                    return s;
            return Ok{};
        };
        Status st = Ok{};
        if (*key == "tokenizer.ggml.model" && *type == kString) {
            auto s = r.string(key->c_str());
            st = s ? (v.model = *s, Status(Ok{})) : Status(s.error());
        } else if (*key == "tokenizer.ggml.tokens") {
            st = array(kString, [&]() -> Status {
                auto s = r.string("a token");
                if (!s)
                    return s.error();
                v.tokens.push_back(std::move(*s));
                return Ok{};
            });
        } else if (*key == "tokenizer.ggml.scores") {
            st = array(kF32, [&]() -> Status {
                auto x = r.read<float>("a score");
                if (!x)
                    return x.error();
                v.scores.push_back(*x);
                return Ok{};
            });
        } else if (*key == "tokenizer.ggml.token_type") {
            st = array(kI32, [&]() -> Status {
                auto x = r.read<int32_t>("a token type");
                if (!x)
                    return x.error();
                v.types.push_back(*x);
                return Ok{};
            });
        } else if (*key == "tokenizer.ggml.bos_token_id") {
            st = intValue(v.bos);
        } else if (*key == "tokenizer.ggml.eos_token_id") {
            st = intValue(v.eos);
        } else if (*key == "tokenizer.ggml.unknown_token_id") {
            st = intValue(v.unk);
        } else if (*key == "tokenizer.ggml.add_bos_token") {
            st = boolValue(v.addBos);
        } else if (*key == "tokenizer.ggml.add_space_prefix") {
            st = boolValue(v.addSpacePrefix);
        } else {
            st = skipValue(r, *type, 0);
        }
        if (!st)
            return st.error();
    }
    return v;
}

// ---- sentencepiece_model.proto, written field by field ---------------------------------
void varint(std::string& out, uint64_t v)
{
    while (v >= 0x80) {
        out.push_back(char(uint8_t(v) | 0x80));
        v >>= 7;
    }
    out.push_back(char(v));
}
void tag(std::string& out, uint32_t field, uint32_t wire) { varint(out, (uint64_t(field) << 3) | wire); }
void bytesField(std::string& out, uint32_t field, const std::string& s)
{
    tag(out, field, 2);
    varint(out, s.size());
    out += s;
}
void intField(std::string& out, uint32_t field, int64_t v)
{
    tag(out, field, 0);
    varint(out, uint64_t(v));  // negative int32 as ten bytes, as protobuf encodes it
}
void floatField(std::string& out, uint32_t field, float f)
{
    tag(out, field, 5);
    char b[4];
    std::memcpy(b, &f, 4);
    out.append(b, 4);
}

}  // namespace

Result<std::string> ggufSentencePieceModel(const std::string& path, int64_t& bosId, bool& addBos)
{
    auto v = readGgufVocab(path);
    if (!v)
        return v.error();
    if (v->model != "llama")
        return makeError("no-tokenizer",
                         v->model.empty() ? "the GGUF file carries no tokenizer"
                                          : "the GGUF tokenizer is '" + v->model +
                                                "', not SentencePiece ('llama'): give token ids (--calib-tokens)",
                         path);
    const size_t n = v->tokens.size();
    if (n == 0 || v->scores.size() != n || v->types.size() != n)
        return makeError("bad-gguf", "tokenizer.ggml.tokens, scores and token_type differ in length", path);
    std::string proto;
    for (size_t i = 0; i < n; ++i) {
        std::string piece;
        bytesField(piece, 1, v->tokens[i]);
        floatField(piece, 2, v->scores[i]);
        // GGUF's token types are SentencePiece's (1 normal .. 6 byte).
        intField(piece, 3, v->types[i] >= 1 && v->types[i] <= 6 ? v->types[i] : 1);
        bytesField(proto, 1, piece);
    }
    std::string trainer;
    intField(trainer, 3, 2);  // model_type BPE: merges by score, as llama.cpp's SPM tokenizer
    intField(trainer, 4, int64_t(n));
    tag(trainer, 35, 0);      // byte_fallback
    varint(trainer, 1);
    intField(trainer, 40, v->unk);
    intField(trainer, 41, v->bos);
    intField(trainer, 42, v->eos);
    intField(trainer, 43, -1);  // pad
    bytesField(proto, 2, trainer);
    std::string norm;
    bytesField(norm, 1, "identity");  // llama.cpp does not normalise
    tag(norm, 3, 0);
    varint(norm, v->addSpacePrefix ? 1 : 0);
    tag(norm, 4, 0);  // remove_extra_whitespaces off: llama.cpp keeps every space
    varint(norm, 0);
    tag(norm, 5, 0);
    varint(norm, 1);
    bytesField(proto, 3, norm);
    bosId = v->bos;
    addBos = v->addBos;
    return proto;
}

}  // namespace quantlens
