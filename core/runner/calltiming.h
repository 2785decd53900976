#pragma once
// Timing of a few implementations of the same call, as the benchmark (linearbench.h) and the
// Run tab / `quantlens-cli run` (tasks/layerrun.h) both report it: per implementation the
// median over repeats of the mean time per call, and the fastest repeat.
#include <atomic>
#include <functional>
#include <vector>

namespace quantlens {

struct CallTiming {
    double median = 0, best = 0;  // seconds per call
};

struct CallTimingOptions {
    bool timed = true;                // false: one call each, no warm-up (a result, not a figure)
    int repeats = 5;
    double minRepeatSeconds = 0.005;  // each repeat loops until it has run about this long
    bool threadCpuTime = false;       // CLOCK_THREAD_CPUTIME_ID (one thread only), not wall time
    const std::atomic<bool>* cancel = nullptr;  // checked after every call
};

// Each repeat runs every call back to back (interleaved), so on a shared machine bursts of
// other work hit all of them alike and the ratios stay fair. Empty once `cancel` is set.
std::vector<CallTiming> timeCalls(const std::vector<std::function<void()>>& calls, const CallTimingOptions& o);

}  // namespace quantlens
