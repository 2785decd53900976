// readHdf5: libhdf5 runs in a forked child; this process only checks and maps what the
// child reports. See hdf5reader.h for why.
//
// The child reads with readHdf5InProcess. Datasets it has to convert or inflate go into a
// memfd both processes share (so nothing is copied back); contiguous ones stay views of
// the file. It reports progress and the result over a pipe (hdf5wire.h), and the parent
// checks everything it receives before a Tensor points anywhere.
#include "io/hdf5reader.h"

#include "io/hdf5lock.h"
#include "io/hdf5wire.h"
#include "io/mappedfile.h"
#include "io/writeall.h"

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

// ---- the child ---------------------------------------------------------------------------

[[noreturn]] void runChild(const std::string& path, int out, int mem)
{
    // Die at once on a crash: handlers inherited from the parent (crash reporters, Qt
    // Test's, which starts gdb) would run here for a bug in libhdf5.
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL})
        std::signal(sig, SIG_DFL);
    try {
        std::vector<hdf5wire::Region> regions;
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
        // A failed write means the parent is gone or cancelled: stop reading.
        const auto send = [out](const std::string& frame) { return writeAll(out, frame.data(), frame.size()); };
        const OpenProgress progress = [&](double f) { return send(hdf5wire::progressFrame(f)); };
        send(hdf5wire::resultFrame(readHdf5InProcess(path, progress, buffer), regions));
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

}  // namespace

Result<Model> readHdf5(const std::string& path, const OpenProgress& progress)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return makeError("open", std::string("cannot open: ") + std::strerror(errno), path);
    if (!S_ISREG(st.st_mode))
        return makeError("open", "not a regular file", path);

    // Without a child (no memfd in a sandbox, or fork refused under strict overcommit) the
    // file is still opened, in this process as before, and the metadata says so.
    const auto inProcess = [&](const char* what) {
        const std::string why = std::string(what) + ": " + std::strerror(errno);
        auto r = readHdf5InProcess(path, progress);
        if (r)
            r->metadata.emplace_back("hdf5 reader", "ran in this process (" + why + ")");
        return r;
    };
    Fd mem(::memfd_create("quantlens-hdf5", MFD_CLOEXEC));
    if (mem.fd < 0)
        return inProcess("no shared memory file");
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        return inProcess("no pipe");
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
        return inProcess("fork failed");
    out.reset();

    std::string result;
    bool gotResult = false;
    double fraction = 0;
    hdf5wire::FrameReader frames;
    const hdf5wire::FrameReader::Events events{
        [&](double f) {
            fraction = f;
            // Passed on one for one: the caller sees the reader's own progress points.
            return !progress || progress(f);
        },
        [&](std::string r) {
            result = std::move(r);
            gotResult = true;
        }};
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
        if (!frames.feed(chunk, size_t(n), events))
            return frames.cancelled() ? makeError("cancelled", "opening cancelled", path)
                                      : makeError("bad-hdf5", frames.error(), path);
    }
    child.reap();
    if (!gotResult)
        return makeError("bad-hdf5", describeExit(child.status), path);
    const auto mapFile = [&]() -> Result<hdf5wire::Backing> {
        auto f = MappedFile::open(path);
        if (!f)
            return f.error();
        return hdf5wire::Backing{(*f)->bytes(), *f};
    };
    const auto mapShared = [&]() -> Result<hdf5wire::Backing> {
        struct stat ms {};
        if (::fstat(mem.fd, &ms) != 0 || ms.st_size <= 0)
            return makeError("bad-hdf5", "the reading process sent data it did not write", path);
        void* p = ::mmap(nullptr, size_t(ms.st_size), PROT_READ, MAP_SHARED, mem.fd, 0);
        if (p == MAP_FAILED)
            return makeError("out-of-memory", std::string("cannot map the data read: ") + std::strerror(errno), path);
        auto shared = std::make_shared<SharedData>();
        shared->data = static_cast<const std::byte*>(p);
        shared->size = size_t(ms.st_size);
        return hdf5wire::Backing{{shared->data, shared->size}, shared};
    };
    return hdf5wire::decodeResult(result, path, mapFile, mapShared);
}

}  // namespace quantlens
