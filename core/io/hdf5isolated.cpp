// readHdf5: libhdf5 runs in a forked child; this process only checks and maps what the
// child reports. See hdf5reader.h for why.
//
// The child reads with readHdf5InProcess. Datasets it has to convert or inflate go into a
// memfd both processes share (so nothing is copied back); contiguous ones stay views of
// the file. Over a pipe it sends frames of [kind u8][length u32][payload]: 'P' progress
// (f64) and, last, 'R' the result (an Error, or the Model with each tensor's source, offset
// and size). The parent trusts none of it: every string, count, shape and range is checked
// again before a Tensor points anywhere.
#include "io/hdf5reader.h"

#include "io/hdf5lock.h"
#include "io/mappedfile.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <mutex>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace quantlens {

namespace {

constexpr int kPollMs = 100;
// A read that sends nothing for this long is stuck inside libhdf5 (fuzzing found loops);
// the slowest step, one 16 MiB slab of gzip, takes well under a second.
constexpr int kIdleLimitMs = 60000;
constexpr uint32_t kMaxFrame = uint32_t(256) << 20;
constexpr uint32_t kMaxItems = uint32_t(1) << 22;

enum Source : uint8_t { kEmpty = 0, kFile = 1, kShared = 2 };

// ---- wire format -------------------------------------------------------------------

struct Writer {
    std::string out;
    void u8(uint8_t v) { out.push_back(char(v)); }
    void u32(uint32_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
    void i64(int64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
    void f64(double v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
    void str(const std::string& s)
    {
        u32(uint32_t(s.size()));
        out += s;
    }
};

// Reads what Writer wrote; any read past the end sets bad and yields zeros.
struct Reader {
    const std::string& in;
    size_t pos = 0;
    bool bad = false;
    template <class T>
    T pod()
    {
        T v{};
        if (in.size() - pos < sizeof v) {
            bad = true;
            return v;
        }
        std::memcpy(&v, in.data() + pos, sizeof v);
        pos += sizeof v;
        return v;
    }
    std::string str()
    {
        const auto n = pod<uint32_t>();
        if (bad || in.size() - pos < n) {
            bad = true;
            return {};
        }
        std::string s = in.substr(pos, n);
        pos += n;
        return s;
    }
    // A count of items, each at least `minBytes` long in what is left.
    uint32_t count(size_t minBytes)
    {
        const auto n = pod<uint32_t>();
        if (bad || n > kMaxItems || uint64_t(n) * minBytes > in.size() - pos) {
            bad = true;
            return 0;
        }
        return n;
    }
};

void putError(Writer& w, const Error& e)
{
    w.str(e.code);
    w.str(e.message);
    w.str(e.path);
    w.i64(e.offset);
    w.str(e.tensor);
}

Error getError(Reader& r)
{
    Error e;
    e.code = r.str();
    e.message = r.str();
    e.path = r.str();
    e.offset = r.pod<int64_t>();
    e.tensor = r.str();
    return e;
}

// A region of the shared memfd, as the child mapped it.
struct Region {
    const std::byte* base;
    int64_t offset;
    int64_t bytes;
};

void putModel(Writer& w, const Model& m, const std::vector<Region>& regions)
{
    w.str(m.format);
    w.u32(uint32_t(m.metadata.size()));
    for (const auto& [k, v] : m.metadata) {
        w.str(k);
        w.str(v);
    }
    w.u32(uint32_t(m.tensors.size()));
    for (const Tensor& t : m.tensors) {
        w.str(t.name);
        w.u8(uint8_t(t.dtype));
        w.u32(uint32_t(t.shape.size()));
        for (int64_t d : t.shape)
            w.i64(d);
        w.u8(uint8_t(t.layout));
        w.str(t.group);
        w.str(t.note);
        // Converted data lies in a region of the memfd; anything else the reader hands out
        // is a view of its MappedFile of the file (inPlace).
        const std::byte* p = t.data.data();
        const int64_t n = int64_t(t.data.size());
        uint8_t source = kEmpty;
        int64_t offset = 0;
        if (n > 0) {
            auto in = std::find_if(regions.begin(), regions.end(),
                                   [&](const Region& g) { return p >= g.base && p + n <= g.base + g.bytes; });
            if (in != regions.end()) {
                source = kShared;
                offset = in->offset + (p - in->base);
            } else {
                const auto* f = static_cast<const MappedFile*>(t.keepAlive.get());
                source = kFile;
                offset = p - f->bytes().data();
            }
        }
        w.u8(source);
        w.i64(offset);
        w.i64(n);
    }
}

// ---- the child ---------------------------------------------------------------------------

bool writeAll(int fd, const std::string& s)
{
    size_t off = 0;
    while (off < s.size()) {
        const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        off += size_t(n);
    }
    return true;
}

bool sendFrame(int fd, char kind, const std::string& payload)
{
    Writer w;
    w.u8(uint8_t(kind));
    w.u32(uint32_t(payload.size()));
    return writeAll(fd, w.out + payload);
}

[[noreturn]] void runChild(const std::string& path, int out, int mem)
{
    // Die at once on a crash: handlers inherited from the parent (crash reporters, Qt
    // Test's, which starts gdb) would run here for a bug in libhdf5.
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL})
        std::signal(sig, SIG_DFL);
    std::vector<Region> regions;
    int64_t used = 0;
    const Hdf5Buffer buffer = [&](int64_t bytes, std::shared_ptr<const void>& keep) -> std::byte* {
        const int64_t page = ::sysconf(_SC_PAGESIZE);
        const int64_t offset = (used + page - 1) / page * page;
        const int64_t len = std::max<int64_t>(bytes, 1);
        if (::ftruncate(mem, offset + len) != 0)
            return nullptr;
        void* p = ::mmap(nullptr, size_t(len), PROT_READ | PROT_WRITE, MAP_SHARED, mem, offset);
        if (p == MAP_FAILED)
            return nullptr;
        used = offset + len;
        regions.push_back({static_cast<const std::byte*>(p), offset, len});
        keep = std::shared_ptr<const void>(p, [](const void*) {});  // the child exits instead
        return static_cast<std::byte*>(p);
    };
    const OpenProgress progress = [&](double f) {
        Writer w;
        w.f64(f);
        return sendFrame(out, 'P', w.out);
    };
    try {
        auto r = readHdf5InProcess(path, progress, buffer);
        Writer w;
        w.u8(r.ok() ? 1 : 0);
        if (r.ok())
            putModel(w, *r, regions);
        else
            putError(w, r.error());
        sendFrame(out, 'R', w.out);
    } catch (...) {
        // Never unwind into the parent's frames, which this process has copies of.
        ::_exit(2);
    }
    ::_exit(0);
}

// ---- the parent -------------------------------------------------------------------------

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }
    void reset()
    {
        if (fd >= 0)
            ::close(fd);
        fd = -1;
    }
};

// The child, killed and reaped unless it was reaped already.
struct Child {
    pid_t pid = -1;
    int status = 0;
    ~Child() { stop(); }
    void stop()
    {
        if (pid > 0)
            ::kill(pid, SIGKILL);
        reap();
    }
    void reap()
    {
        if (pid <= 0)
            return;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        pid = -1;
    }
};

// The memfd, mapped read-only for as long as any tensor points into it.
struct SharedData {
    const std::byte* data = nullptr;
    size_t size = 0;
    ~SharedData()
    {
        if (data)
            ::munmap(const_cast<std::byte*>(data), size);
    }
};

std::string describeExit(int status)
{
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        const char* name = sigabbrev_np(sig);
        return "libhdf5 crashed (SIG" + std::string(name ? name : std::to_string(sig).c_str()) +
               ") reading this file: it is damaged, or made to attack the reader";
    }
    return "the reading process failed (exit status " + std::to_string(WEXITSTATUS(status)) +
           ") without a result: the file is damaged, or made to attack the reader";
}

// Turns the child's 'R' payload into a Model whose tensors all point inside the file or
// the shared data, or into the error the child reported.
Result<Model> decodeResult(const std::string& payload, const std::string& path, int mem)
{
    Reader r{payload};
    const bool ok = r.pod<uint8_t>() == 1;
    if (!ok) {
        Error e = getError(r);
        if (r.bad)
            return makeError("bad-hdf5", "the reading process sent a malformed error", path);
        e.path = path;
        return e;
    }
    Model m;
    m.files.push_back(path);
    m.format = r.str();
    for (uint32_t i = 0, n = r.count(8); i < n && !r.bad; ++i) {
        std::string k = r.str();
        m.metadata.emplace_back(std::move(k), r.str());
    }
    std::shared_ptr<SharedData> shared;
    std::shared_ptr<const MappedFile> file;
    const auto bad = [&](const std::string& why) { return makeError("bad-hdf5", "the reading process sent " + why, path); };
    for (uint32_t i = 0, n = r.count(30); i < n && !r.bad; ++i) {
        Tensor t;
        t.name = r.str();
        const auto dtype = r.pod<uint8_t>();
        for (uint32_t d = 0, rank = r.count(8); d < rank && !r.bad; ++d)
            t.shape.push_back(r.pod<int64_t>());
        const auto layout = r.pod<uint8_t>();
        t.group = r.str();
        t.note = r.str();
        const auto source = r.pod<uint8_t>();
        const auto offset = r.pod<int64_t>();
        const auto bytes = r.pod<int64_t>();
        if (r.bad)
            break;
        if (dtype >= uint8_t(DType::Opaque) || layout > uint8_t(Layout::InOut) || source > kShared)
            return bad("an unknown type, layout or source for tensor '" + t.name + "'");
        t.dtype = DType(dtype);
        t.layout = Layout(layout);
        const auto numel = checkedNumel(t.shape.data(), t.shape.size());
        const auto want = numel ? byteSizeFor(t.dtype, *numel) : std::nullopt;
        if (!want || *want != bytes || (bytes > 0) != (source != kEmpty) || offset < 0)
            return bad("a size that does not match the shape of tensor '" + t.name + "'");
        std::span<const std::byte> all;
        if (source == kFile) {
            if (!file) {
                auto f = MappedFile::open(path);
                if (!f)
                    return f.error();
                file = *f;
            }
            all = file->bytes();
            t.keepAlive = file;
        } else if (source == kShared) {
            if (!shared) {
                struct stat st {};
                if (::fstat(mem, &st) != 0 || st.st_size <= 0)
                    return bad("data it did not write");
                shared = std::make_shared<SharedData>();
                void* p = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED, mem, 0);
                if (p == MAP_FAILED)
                    return makeError("out-of-memory", std::string("cannot map the data read: ") + std::strerror(errno), path);
                shared->data = static_cast<const std::byte*>(p);
                shared->size = size_t(st.st_size);
            }
            all = {shared->data, shared->size};
            t.keepAlive = shared;
        }
        if (uint64_t(offset) > all.size() || uint64_t(bytes) > all.size() - uint64_t(offset))
            return bad("a range outside the data for tensor '" + t.name + "'");
        t.data = all.subspan(size_t(offset), size_t(bytes));
        m.tensors.push_back(std::move(t));
    }
    if (r.bad || r.pos != payload.size())
        return bad("a malformed result");
    return m;
}

}  // namespace

Result<Model> readHdf5(const std::string& path, const OpenProgress& progress)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return makeError("open", std::string("cannot open: ") + std::strerror(errno), path);
    if (!S_ISREG(st.st_mode))
        return makeError("open", "not a regular file", path);

    Fd mem(::memfd_create("quantlens-hdf5", MFD_CLOEXEC));
    int fds[2];
    if (mem.fd < 0 || ::pipe2(fds, O_CLOEXEC) != 0)
        return makeError("open", std::string("cannot set up the reading process: ") + std::strerror(errno), path);
    Fd in(fds[0]), out(fds[1]);
    Child child;
    {
        std::unique_lock lock(hdf5Mutex());
        child.pid = ::fork();
        if (child.pid == 0) {
            // This copy of the mutex is held by the parent's thread, which does not exist
            // here; readHdf5InProcess takes it again.
            lock.unlock();
            in.reset();
            runChild(path, out.fd, mem.fd);
        }
    }
    if (child.pid < 0)
        return makeError("open", std::string("cannot start the reading process: ") + std::strerror(errno), path);
    out.reset();

    std::string buf, result;
    bool gotResult = false;
    double fraction = 0;
    auto lastNews = std::chrono::steady_clock::now();
    for (;;) {
        pollfd p{in.fd, POLLIN, 0};
        const int pr = ::poll(&p, 1, kPollMs);
        if (pr < 0 && errno != EINTR)
            return makeError("open", std::string("cannot follow the reading process: ") + std::strerror(errno), path);
        if (pr <= 0) {
            // Asked again while the child is quiet, not only when it reports: a Cancel lands
            // within kPollMs even while libhdf5 inflates one large slab.
            if (progress && !progress(fraction))
                return makeError("cancelled", "opening cancelled", path);
            if (std::chrono::steady_clock::now() - lastNews > std::chrono::milliseconds(kIdleLimitMs))
                return makeError("bad-hdf5", "libhdf5 made no progress on this file for " +
                                                 std::to_string(kIdleLimitMs / 1000) + " s; stopped it", path);
            continue;
        }
        char chunk[65536];
        const ssize_t n = ::read(in.fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        lastNews = std::chrono::steady_clock::now();
        buf.append(chunk, size_t(n));
        // Whole frames only; a partial one waits for the next read.
        size_t pos = 0;
        while (buf.size() - pos >= 5) {
            const char kind = buf[pos];
            uint32_t len = 0;
            std::memcpy(&len, buf.data() + pos + 1, sizeof len);
            if (len > kMaxFrame || (kind != 'P' && kind != 'R') || (kind == 'P' && len != sizeof(double)))
                return makeError("bad-hdf5", "the reading process sent a malformed message", path);
            if (buf.size() - pos - 5 < len)
                break;
            if (kind == 'P') {
                double f = 0;
                std::memcpy(&f, buf.data() + pos + 5, sizeof f);
                fraction = f >= 0.0 ? std::min(f, 1.0) : 0.0;  // a NaN becomes 0
                // Passed on one for one: the caller sees the reader's own progress points.
                if (progress && !progress(fraction))
                    return makeError("cancelled", "opening cancelled", path);
            } else {
                result.assign(buf, pos + 5, len);
                gotResult = true;
            }
            pos += 5 + len;
        }
        buf.erase(0, pos);
    }
    child.reap();
    if (!gotResult)
        return makeError("bad-hdf5", describeExit(child.status), path);
    return decodeResult(result, path, mem.fd);
}

}  // namespace quantlens
