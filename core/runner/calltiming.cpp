#include "runner/calltiming.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>

namespace quantlens {

std::vector<CallTiming> timeCalls(const std::vector<std::function<void()>>& calls, const CallTimingOptions& o)
{
    // This thread's CPU time excludes the time it sat descheduled on a busy machine.
    const auto now = [&] {
        if (o.threadCpuTime) {
            timespec ts{};
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
            return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
        }
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    };
    const auto cancelled = [&] { return o.cancel && o.cancel->load(); };
    // Calls per repeat, from one timed call after a warm-up one (caches, scratch buffers,
    // oneDNN/OpenBLAS set-up), so that a repeat lasts about minRepeatSeconds.
    std::vector<int64_t> iters(calls.size(), 1);
    if (o.timed)
        for (size_t i = 0; i < calls.size(); ++i) {
            calls[i]();
            const double t0 = now();
            calls[i]();
            const double once = std::max(1e-9, now() - t0);
            iters[i] = std::max<int64_t>(1, int64_t(std::ceil(o.minRepeatSeconds / once)));
            if (cancelled())
                return {};
        }
    std::vector<std::vector<double>> per(calls.size());
    const int repeats = o.timed ? std::max(1, o.repeats) : 1;
    for (int r = 0; r < repeats; ++r)
        for (size_t i = 0; i < calls.size(); ++i) {
            const double t0 = now();
            for (int64_t n = 0; n < iters[i]; ++n) {
                calls[i]();
                if (cancelled())
                    return {};
            }
            per[i].push_back((now() - t0) / double(iters[i]));
        }
    std::vector<CallTiming> out;
    for (auto& v : per) {
        CallTiming t;
        t.best = *std::min_element(v.begin(), v.end());
        std::nth_element(v.begin(), v.begin() + ptrdiff_t(v.size() / 2), v.end());
        t.median = v[v.size() / 2];
        out.push_back(t);
    }
    return out;
}

}  // namespace quantlens
