// quantlens-tokenize: SentencePiece in a process of its own. Debian's libsentencepiece
// bundles protobuf-lite 3.14, which aborts next to ONNX's libprotobuf 3.21 in quantlens-cli
// and the GUI; here it is alone. It links SentencePiece and nothing of Quantlens: core
// (runner/tokenizer.cpp) starts it and speaks runner/tokenizewire.h over stdin/stdout.
// It reads no file: the vocabulary arrives as a serialized ModelProto.
#include <link.h>
#include <sentencepiece_processor.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "runner/tokenizewire.h"

namespace wire = quantlens::tokenizewire;

namespace {

// 1: all read, 0: end of input before the first byte, -1: end or error midway.
int readAll(void* data, size_t size)
{
    auto* p = static_cast<char*>(data);
    size_t got = 0;
    while (got < size) {
        const ssize_t n = ::read(0, p + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return got == 0 && n == 0 ? 0 : -1;
        got += size_t(n);
    }
    return 1;
}

bool writeAll(const void* data, size_t size)
{
    auto* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::write(1, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        size -= size_t(n);
    }
    return true;
}

bool writeU32(uint32_t v) { return writeAll(&v, sizeof v); }

bool failWith(std::string why)
{
    if (why.size() > wire::kMaxReasonBytes)
        why.resize(wire::kMaxReasonBytes);
    return writeU32(wire::kFailed) && writeU32(uint32_t(why.size())) && writeAll(why.data(), why.size());
}

// Protocol errors are the caller's bug: say so on stderr (core reports it) and stop.
int die(const char* why)
{
    std::fprintf(stderr, "quantlens-tokenize: %s\n", why);
    return 1;
}

// The clash this program exists to avoid: a build that links the system libprotobuf here
// (directly or through a library) would abort inside SentencePiece; refuse with the reason.
bool systemProtobufLoaded()
{
    bool found = false;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* data) {
            if (info->dlpi_name && std::strstr(info->dlpi_name, "libprotobuf.so"))
                *static_cast<bool*>(data) = true;
            return 0;
        },
        &found);
    return found;
}

}  // namespace

int main(int argc, char**)
{
    if (argc > 1 || ::isatty(0)) {
        std::fprintf(stderr, "quantlens-tokenize: Quantlens' SentencePiece helper; quantlens-cli and quantlens start it "
                             "themselves (plain-text calibration), it takes no arguments\n");
        return 2;
    }
    if (systemProtobufLoaded())
        return die("this build loaded the system libprotobuf beside SentencePiece's bundled protobuf-lite; "
                   "it must link SentencePiece only (app/CMakeLists.txt)");
    uint32_t header[3];
    if (readAll(header, sizeof header) != 1)
        return die("no request header on stdin");
    if (header[0] != wire::kMagic || header[1] != wire::kVersion)
        return die("the caller speaks another protocol (a quantlens-tokenize from another build?)");
    if (header[2] == 0 || header[2] > wire::kMaxModelBytes) {
        failWith("a model of " + std::to_string(header[2]) + " bytes");
        return 1;
    }
    std::string proto(header[2], '\0');
    if (readAll(proto.data(), proto.size()) != 1)
        return die("the model ended early");
    sentencepiece::SentencePieceProcessor sp;
    if (const auto s = sp.LoadFromSerializedProto(proto); !s.ok()) {
        failWith(s.ToString());
        return 1;
    }
    proto = {};
    if (!writeU32(wire::kOk))
        return 1;
    const int32_t bos = sp.bos_id();
    const uint32_t pieces = uint32_t(sp.GetPieceSize());
    if (!writeAll(&bos, sizeof bos) || !writeU32(pieces))
        return 1;

    std::string text;
    std::vector<int> ids;
    for (;;) {
        uint32_t n = 0;
        const int r = readAll(&n, sizeof n);
        if (r == 0)
            return 0;  // the caller is done
        if (r < 0)
            return die("a request ended early");
        if (n > wire::kMaxTextBytes)
            return die("a text longer than the protocol allows");
        text.resize(n);
        if (readAll(text.data(), n) != 1)
            return die("a text ended early");
        ids.clear();
        if (const auto s = sp.Encode(text, &ids); !s.ok()) {
            if (!failWith(s.ToString()))
                return 1;
            continue;
        }
        std::vector<int32_t> out(ids.begin(), ids.end());
        if (!writeU32(wire::kOk) || !writeU32(uint32_t(out.size())) || !writeAll(out.data(), out.size() * sizeof(int32_t)))
            return 1;
    }
}
