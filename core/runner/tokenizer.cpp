#include "runner/tokenizer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "runner/ggufvocab.h"
#include "runner/tokenizewire.h"

extern char** environ;

namespace quantlens {

namespace wire = tokenizewire;

namespace {

constexpr int kPollMs = 50;                           // how often a wait looks at `cancel`
constexpr auto kSilence = std::chrono::seconds(120);  // a helper quiet this long is hung
constexpr size_t kStderrKeep = 2048;                  // the end of its stderr, for the reason

std::string errnoText(int e) { return std::strerror(e); }

// The last few non-empty lines of the helper's stderr, as one line.
std::string lastLines(const std::string& s)
{
    std::vector<std::string> lines;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);)
        if (l.find_first_not_of(" \t\r") != std::string::npos)
            lines.push_back(l);
    std::string out;
    for (size_t i = lines.size() > 3 ? lines.size() - 3 : 0; i < lines.size(); ++i)
        out += (out.empty() ? "" : "; ") + lines[i];
    return out.size() > 400 ? "..." + out.substr(out.size() - 400) : out;
}

}  // namespace

struct TextTokenizer::Impl {
    std::string helper;
    pid_t pid = -1;
    int fd = -1;   // our end of the socket pair: the helper's stdin and stdout
    int err = -1;  // the helper's stderr
    std::string stderrTail;
    std::optional<Error> broken;  // once the conversation failed, every call says why

    ~Impl() { stop(); }

    void stop()
    {
        if (fd >= 0)
            ::close(fd);
        fd = -1;
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            int st = 0;
            while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
        }
        pid = -1;
        if (err >= 0)
            ::close(err);
        err = -1;
    }

    void drainStderr()
    {
        char buf[1024];
        for (;;) {
            const ssize_t n = ::read(err, buf, sizeof buf);
            if (n > 0) {
                stderrTail.append(buf, size_t(n));
                if (stderrTail.size() > kStderrKeep)
                    stderrTail.erase(0, stderrTail.size() - kStderrKeep);
                continue;
            }
            if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                ::close(err);
                err = -1;
            }
            return;
        }
    }

    Error fail(Error e)
    {
        stop();
        broken = e;
        return e;
    }

    // The helper closed the conversation: collect how it ended and what it last said.
    Error died(const std::string& during)
    {
        ::close(fd);
        fd = -1;
        int st = 0;
        bool ended = false;
        for (int i = 0; i < 40 && !ended; ++i) {  // up to 2 s to exit on its own
            const pid_t r = ::waitpid(pid, &st, WNOHANG);
            ended = r == pid || (r < 0 && errno != EINTR);
            if (!ended && err >= 0) {
                pollfd p{err, POLLIN, 0};
                if (::poll(&p, 1, kPollMs) > 0)
                    drainStderr();
            } else if (!ended) {
                ::usleep(kPollMs * 1000);
            }
        }
        if (!ended) {
            ::kill(pid, SIGKILL);
            while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
        }
        pid = -1;
        while (err >= 0) {
            pollfd p{err, POLLIN, 0};
            if (::poll(&p, 1, 0) <= 0)
                break;
            drainStderr();
        }
        std::string how = "ended";
        if (WIFEXITED(st))
            how = "exited with code " + std::to_string(WEXITSTATUS(st));
        else if (WIFSIGNALED(st))
            how = "was killed by signal " + std::to_string(WTERMSIG(st)) + " (" + ::strsignal(WTERMSIG(st)) + ")";
        const std::string said = lastLines(stderrTail);
        return fail(makeError("tokenizer-helper", "quantlens-tokenize " + how + " while " + during + (said.empty() ? "" : ": " + said),
                              helper));
    }

    // Waits until the socket is ready for `events`, reading the helper's stderr meanwhile.
    Status wait(short events, const std::atomic<bool>* cancel, const std::string& during)
    {
        const auto since = std::chrono::steady_clock::now();
        for (;;) {
            if (cancel && cancel->load())
                return fail(makeError("cancelled", "tokenization cancelled"));
            pollfd p[2] = {{fd, events, 0}, {err, POLLIN, 0}};
            const int n = ::poll(p, err >= 0 ? 2 : 1, kPollMs);
            if (n < 0 && errno != EINTR)
                return fail(makeError("tokenizer-helper", "poll: " + errnoText(errno), helper));
            if (n > 0 && err >= 0 && p[1].revents)
                drainStderr();
            if (n > 0 && (p[0].revents & events))
                return Ok{};
            if (n > 0 && (p[0].revents & (POLLHUP | POLLERR | POLLNVAL)))
                return died(during);
            if (std::chrono::steady_clock::now() - since > kSilence)
                return fail(makeError("tokenizer-helper", "quantlens-tokenize stopped answering while " + during, helper));
        }
    }

    Status send(const void* data, size_t size, const std::atomic<bool>* cancel, const std::string& during)
    {
        auto* p = static_cast<const char*>(data);
        while (size > 0) {
            if (auto s = wait(POLLOUT, cancel, during); !s)
                return s;
            const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                if (errno == EPIPE || errno == ECONNRESET)
                    return died(during);
                return fail(makeError("tokenizer-helper", "send: " + errnoText(errno), helper));
            }
            p += n;
            size -= size_t(n);
        }
        return Ok{};
    }

    Status recv(void* data, size_t size, const std::atomic<bool>* cancel, const std::string& during)
    {
        auto* p = static_cast<char*>(data);
        while (size > 0) {
            if (auto s = wait(POLLIN, cancel, during); !s)
                return s;
            const ssize_t n = ::recv(fd, p, size, MSG_DONTWAIT);
            if (n == 0)
                return died(during);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                if (errno == ECONNRESET)
                    return died(during);
                return fail(makeError("tokenizer-helper", "recv: " + errnoText(errno), helper));
            }
            p += n;
            size -= size_t(n);
        }
        return Ok{};
    }

    template <class T>
    Result<T> recvValue(const std::atomic<bool>* cancel, const std::string& during)
    {
        T v{};
        if (auto s = recv(&v, sizeof v, cancel, during); !s)
            return s.error();
        return v;
    }

    // The reason after a kFailed status; an oversized one is a broken helper.
    Result<std::string> recvReason(const std::atomic<bool>* cancel, const std::string& during)
    {
        auto n = recvValue<uint32_t>(cancel, during);
        if (!n)
            return n.error();
        if (*n > wire::kMaxReasonBytes)
            return fail(makeError("tokenizer-helper", "quantlens-tokenize sent a reason of " + std::to_string(*n) + " bytes", helper));
        std::string s(*n, '\0');
        if (auto r = recv(s.data(), s.size(), cancel, during); !r)
            return r.error();
        for (char& c : s)
            if (c == '\n' || c == '\r')
                c = ' ';
        return s;
    }

    Status start()
    {
        if (::access(helper.c_str(), X_OK) != 0)
            return makeError("no-tokenizer-helper",
                             "plain-text calibration needs the quantlens-tokenize program beside this one (" + errnoText(errno) +
                                 "); reinstall Quantlens, or give token ids (--calib-tokens)",
                             helper);
        int sv[2], ep[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            return makeError("tokenizer-helper", "socketpair: " + errnoText(errno));
        if (::pipe2(ep, O_CLOEXEC) != 0) {
            const int e = errno;
            ::close(sv[0]);
            ::close(sv[1]);
            return makeError("tokenizer-helper", "pipe: " + errnoText(e));
        }
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
        posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
        posix_spawn_file_actions_addclosefrom_np(&fa, 3);  // nothing else of ours leaks into it
        // The GUI's threads may block signals; the helper starts with none blocked and
        // SIGPIPE at its default, so a vanished parent ends it.
        posix_spawnattr_t at;
        posix_spawnattr_init(&at);
        sigset_t none, dflt;
        sigemptyset(&none);
        sigemptyset(&dflt);
        sigaddset(&dflt, SIGPIPE);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &dflt);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        std::string arg0 = helper;
        char* argv[] = {arg0.data(), nullptr};
        const int rc = ::posix_spawn(&pid, helper.c_str(), &fa, &at, argv, environ);  // no shell
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        ::close(sv[1]);
        ::close(ep[1]);
        if (rc != 0) {
            pid = -1;
            ::close(sv[0]);
            ::close(ep[0]);
            return makeError("tokenizer-helper", "cannot start quantlens-tokenize: " + errnoText(rc), helper);
        }
        fd = sv[0];
        err = ep[0];
        ::fcntl(err, F_SETFL, ::fcntl(err, F_GETFL) | O_NONBLOCK);
        return Ok{};
    }
};

TextTokenizer::TextTokenizer() : impl_(std::make_unique<Impl>()) {}
TextTokenizer::TextTokenizer(TextTokenizer&&) noexcept = default;
TextTokenizer& TextTokenizer::operator=(TextTokenizer&&) noexcept = default;
TextTokenizer::~TextTokenizer() = default;

std::string TextTokenizer::defaultHelperPath()
{
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string("quantlens-tokenize") : (self.parent_path() / "quantlens-tokenize").string();
}

Result<TextTokenizer> TextTokenizer::forModel(const std::string& modelPath, const TokenizerOptions& options)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path p(modelPath);
    std::string proto, what;
    int64_t ggufBos = -1;
    bool gguf = false;
    if (fs::is_regular_file(p, ec)) {
        std::ifstream in(modelPath, std::ios::binary);
        char magic[4] = {};
        in.read(magic, 4);
        gguf = in && std::memcmp(magic, "GGUF", 4) == 0;
    }
    if (gguf) {
        bool addBos = true;
        auto m = ggufSentencePieceModel(modelPath, ggufBos, addBos);
        if (!m)
            return m.error();
        proto = std::move(*m);
        if (!addBos)
            ggufBos = -1;
        what = "GGUF llama vocabulary";
    } else {
        const fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
        const fs::path spm = (dir.empty() ? fs::path(".") : dir) / "tokenizer.model";
        if (!fs::exists(spm, ec))
            return makeError("no-tokenizer",
                             "no tokenizer found (a GGUF llama vocabulary or a SentencePiece tokenizer.model beside the "
                             "weights): give token ids (--calib-tokens)",
                             modelPath);
        const auto size = fs::file_size(spm, ec);
        if (ec)
            return makeError("io", "cannot read: " + ec.message(), spm.string());
        if (size > wire::kMaxModelBytes)
            return makeError("bad-tokenizer", "a tokenizer.model of " + std::to_string(size) + " bytes (at most " +
                                                  std::to_string(wire::kMaxModelBytes >> 20) + " MiB)",
                             spm.string());
        std::ifstream in(spm, std::ios::binary);
        proto.resize(size_t(size));
        if (!in || !in.read(proto.data(), std::streamsize(size)))
            return makeError("io", "cannot read", spm.string());
        what = spm.string();
    }
    if (proto.size() > wire::kMaxModelBytes)
        return makeError("bad-tokenizer", "the vocabulary is larger than the tokenizer takes", modelPath);

    TextTokenizer t;
    Impl& im = *t.impl_;
    im.helper = options.helper.empty() ? defaultHelperPath() : options.helper;
    if (auto s = im.start(); !s)
        return s.error();
    const std::string during = "loading the tokenizer of " + modelPath;
    const uint32_t header[3] = {wire::kMagic, wire::kVersion, uint32_t(proto.size())};
    if (auto s = im.send(header, sizeof header, nullptr, during); !s)
        return s.error();
    if (auto s = im.send(proto.data(), proto.size(), nullptr, during); !s)
        return s.error();
    auto status = im.recvValue<uint32_t>(nullptr, during);
    if (!status)
        return status.error();
    if (*status == wire::kFailed) {
        auto why = im.recvReason(nullptr, during);
        if (!why)
            return why.error();
        return im.fail(makeError("bad-tokenizer", "SentencePiece refused the " + std::string(gguf ? "GGUF vocabulary" : "tokenizer") + ": " + *why,
                                 gguf ? modelPath : what));
    }
    if (*status != wire::kOk)
        return im.fail(makeError("tokenizer-helper", "quantlens-tokenize answered out of protocol", im.helper));
    auto bos = im.recvValue<int32_t>(nullptr, during);
    if (!bos)
        return bos.error();
    auto pieces = im.recvValue<uint32_t>(nullptr, during);
    if (!pieces)
        return pieces.error();
    if (*pieces == 0 || *bos < -1 || *bos >= int64_t(*pieces))
        return im.fail(makeError("tokenizer-helper", "quantlens-tokenize reported " + std::to_string(*pieces) + " pieces and BOS " + std::to_string(*bos), im.helper));
    t.pieces_ = *pieces;
    t.bos_ = gguf ? ggufBos : *bos;
    if (t.bos_ >= t.pieces_)
        return im.fail(makeError("bad-gguf", "BOS id " + std::to_string(t.bos_) + " is not in the vocabulary", modelPath));
    t.source_ = gguf ? what + " (" + std::to_string(t.pieces_) + " pieces, SentencePiece BPE)"
                     : what + " (SentencePiece, " + std::to_string(t.pieces_) + " pieces)";
    return t;
}

Result<std::vector<int64_t>> TextTokenizer::encode(const std::string& text, const std::atomic<bool>* cancel)
{
    Impl& im = *impl_;
    if (im.broken)
        return *im.broken;
    if (text.size() > wire::kMaxTextBytes)
        return makeError("too-long", "a sequence of " + std::to_string(text.size()) + " bytes: the tokenizer takes at most " +
                                         std::to_string(wire::kMaxTextBytes >> 20) + " MiB per line");
    const std::string during = "tokenizing";
    const uint32_t n = uint32_t(text.size());
    if (auto s = im.send(&n, sizeof n, cancel, during); !s)
        return s.error();
    if (auto s = im.send(text.data(), text.size(), cancel, during); !s)
        return s.error();
    auto status = im.recvValue<uint32_t>(cancel, during);
    if (!status)
        return status.error();
    if (*status == wire::kFailed) {
        auto why = im.recvReason(cancel, during);
        if (!why)
            return why.error();
        return makeError("tokenizer", "SentencePiece: " + *why);
    }
    if (*status != wire::kOk)
        return im.fail(makeError("tokenizer-helper", "quantlens-tokenize answered out of protocol", im.helper));
    auto count = im.recvValue<uint32_t>(cancel, during);
    if (!count)
        return count.error();
    if (*count > wire::maxIds(text.size()))
        return im.fail(makeError("tokenizer-helper", "quantlens-tokenize returned " + std::to_string(*count) + " ids for " +
                                                         std::to_string(text.size()) + " bytes",
                                 im.helper));
    std::vector<int32_t> ids(*count);
    if (auto s = im.recv(ids.data(), ids.size() * sizeof(int32_t), cancel, during); !s)
        return s.error();
    std::vector<int64_t> out(ids.begin(), ids.end());
    for (int64_t id : out)
        if (id < 0 || id >= pieces_)
            return im.fail(makeError("tokenizer-helper", "quantlens-tokenize returned id " + std::to_string(id) + " outside the " +
                                                             std::to_string(pieces_) + "-piece vocabulary",
                                     im.helper));
    return out;
}

Result<std::vector<std::vector<int64_t>>> TextTokenizer::encodeLines(const std::string& text, const std::atomic<bool>* cancel)
{
    std::vector<std::vector<int64_t>> out;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos)
            continue;
        auto ids = encode(line, cancel);
        if (!ids)
            return ids.error();
        if (bos_ >= 0)
            ids->insert(ids->begin(), bos_);
        out.push_back(std::move(*ids));
    }
    if (out.empty())
        return makeError("empty-input", "no text lines to tokenize");
    return out;
}

}  // namespace quantlens
