#include "truncationguard.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <sys/mman.h>
#include <unistd.h>

namespace quantlens::truncationguard {

namespace {

// A fixed table, because the signal handler may neither lock nor allocate. Slots are
// claimed with a compare-exchange; the handler reads them with acquire loads.
constexpr int kSlots = 16384;
enum : uint32_t { kFree = 0, kClaimed = 1, kLive = 2, kChanged = 4 };

struct Slot {
    std::atomic<uint32_t> state{kFree};
    std::atomic<uintptr_t> base{0};
    std::atomic<size_t> size{0};
    const std::string* path = nullptr;  // read only outside the handler
};

Slot g_slots[kSlots];
std::atomic<int> g_highWater{0};
struct sigaction g_previous {};
std::once_flag g_installed;

void chainToPrevious(int sig, siginfo_t* info, void* ctx)
{
    if (g_previous.sa_flags & SA_SIGINFO) {
        if (g_previous.sa_sigaction) {
            g_previous.sa_sigaction(sig, info, ctx);
            return;
        }
    } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
        g_previous.sa_handler(sig);
        return;
    }
    // No one else handles it: restore the default so the faulting instruction, run
    // again on return, ends the process exactly as it would have without us.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGBUS, &dfl, nullptr);
}

void onSigbus(int sig, siginfo_t* info, void* ctx)
{
    const int savedErrno = errno;
    const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
    const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));  // async-signal-safe
    const int n = g_highWater.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
        Slot& s = g_slots[i];
        if (!(s.state.load(std::memory_order_acquire) & kLive))
            continue;
        const uintptr_t base = s.base.load(std::memory_order_relaxed);
        const uintptr_t end = base + s.size.load(std::memory_order_relaxed);
        if (addr < base || addr >= end)
            continue;
        // Zero pages from the faulting page to the end of the mapping: everything past
        // the new end of file would fault the same way. mmap is a plain system call on
        // Linux (no lock in glibc's wrapper), so it is safe here; MAP_FIXED replaces the
        // range atomically, so a second thread faulting on it simply retries.
        const uintptr_t from = addr & ~(page - 1);
        const uintptr_t to = (end + page - 1) & ~(page - 1);
        void* r = ::mmap(reinterpret_cast<void*>(from), to - from, PROT_READ,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (r != MAP_FAILED) {
            s.state.fetch_or(kChanged, std::memory_order_release);
            errno = savedErrno;
            return;
        }
        break;
    }
    errno = savedErrno;
    chainToPrevious(sig, info, ctx);
}

void install()
{
    struct sigaction sa {};
    sa.sa_sigaction = onSigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous);
}

}  // namespace

int registerMapping(const std::byte* base, size_t size, const std::string* path)
{
    std::call_once(g_installed, install);
    for (int i = 0; i < kSlots; ++i) {
        uint32_t expected = kFree;
        if (!g_slots[i].state.compare_exchange_strong(expected, kClaimed, std::memory_order_acq_rel))
            continue;
        g_slots[i].base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_relaxed);
        g_slots[i].size.store(size, std::memory_order_relaxed);
        g_slots[i].path = path;
        g_slots[i].state.store(kLive, std::memory_order_release);
        int hw = g_highWater.load(std::memory_order_relaxed);
        while (hw < i + 1 && !g_highWater.compare_exchange_weak(hw, i + 1, std::memory_order_release)) {
        }
        return i;
    }
    return -1;
}

void unregisterMapping(int slot)
{
    if (slot < 0 || slot >= kSlots)
        return;
    Slot& s = g_slots[slot];
    s.state.store(kClaimed, std::memory_order_release);
    s.base.store(0, std::memory_order_relaxed);
    s.size.store(0, std::memory_order_relaxed);
    s.path = nullptr;
    s.state.store(kFree, std::memory_order_release);
}

std::optional<std::string> changedFile(const void* p, size_t n)
{
    const auto a = reinterpret_cast<uintptr_t>(p);
    const int hw = g_highWater.load(std::memory_order_acquire);
    for (int i = 0; i < hw; ++i) {
        const Slot& s = g_slots[i];
        const uint32_t st = s.state.load(std::memory_order_acquire);
        if ((st & (kLive | kChanged)) != (kLive | kChanged))
            continue;
        const uintptr_t base = s.base.load(std::memory_order_relaxed);
        const uintptr_t end = base + s.size.load(std::memory_order_relaxed);
        if (a < end && a + n > base)
            return s.path ? *s.path : std::string();
    }
    return std::nullopt;
}

bool insideMapping(const void* p, size_t n)
{
    const auto a = reinterpret_cast<uintptr_t>(p);
    const int hw = g_highWater.load(std::memory_order_acquire);
    for (int i = 0; i < hw; ++i) {
        const Slot& s = g_slots[i];
        if (!(s.state.load(std::memory_order_acquire) & kLive))
            continue;
        const uintptr_t base = s.base.load(std::memory_order_relaxed);
        if (a >= base && a + n <= base + s.size.load(std::memory_order_relaxed))
            return true;
    }
    return false;
}

Error fileChangedError(const std::string& path, const std::string& tensor)
{
    return makeError("file-changed", "file changed while reading: " + path +
                     " was truncated or rewritten while open; reopen it", {}, -1, tensor);
}

Status checkRange(const void* p, size_t n, const std::string& tensor)
{
    if (auto f = changedFile(p, n))
        return fileChangedError(*f, tensor);
    return Ok{};
}

}  // namespace quantlens::truncationguard
