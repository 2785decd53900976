#include "workteam.h"

#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace quantlens {

namespace {

// hardware_concurrency(), or QUANTLENS_THREADS=n (1..256) when set.
int defaultThreads()
{
    static const int n = [] {
        if (const char* e = std::getenv("QUANTLENS_THREADS")) {
            const int v = std::atoi(e);
            if (v >= 1 && v <= 256)
                return v;
        }
        const unsigned h = std::thread::hardware_concurrency();
        return h == 0 ? 1 : int(std::min(h, 256u));
    }();
    return n;
}

std::atomic<int> g_limit{0};  // 0: defaultThreads()
thread_local bool t_optedOut = false;

class Team {
public:
    // False when the team is busy: the caller then runs the parts itself.
    bool run(int64_t parts, const std::function<void(int64_t)>& part, int threads)
    {
        // A flag, not a mutex: a part that calls parallelFor runs on a thread that may be
        // the owner, and try_lock by the owner of a std::mutex is undefined.
        if (busy_.exchange(true, std::memory_order_acquire))
            return false;
        struct Release {
            std::atomic<bool>& b;
            ~Release() { b.store(false, std::memory_order_release); }
        } release{busy_};
        const int helpers = int(std::min<int64_t>(threads, parts)) - 1;
        {
            std::lock_guard lk(mu_);
            try {
                while (int(threads_.size()) < helpers)
                    threads_.emplace_back([this, g = generation_] { serve(g); });
            } catch (const std::system_error&) {  // no more threads: fewer helpers
            }
            job_ = &part;
            parts_ = parts;
            next_.store(0);
            done_.store(0);
            wanted_ = std::min<int>(helpers, int(threads_.size()));
            joined_ = 0;
            error_ = nullptr;
            open_ = true;
            ++generation_;
        }
        cv_.notify_all();
        work(part, parts);
        std::unique_lock lk(mu_);
        finished_.wait(lk, [&] { return done_.load() == parts_ && inside_ == 0; });
        open_ = false;  // a helper waking only now must not join: the job is gone
        const std::exception_ptr err = error_;
        lk.unlock();
        if (err)
            std::rethrow_exception(err);
        return true;
    }

private:
    void work(const std::function<void(int64_t)>& part, int64_t parts)
    {
        for (int64_t i; (i = next_.fetch_add(1)) < parts;) {
            try {
                part(i);
            } catch (...) {
                std::lock_guard lk(mu_);
                if (!error_)
                    error_ = std::current_exception();
            }
            if (done_.fetch_add(1) + 1 == parts) {
                std::lock_guard lk(mu_);
                finished_.notify_all();
            }
        }
    }

    [[noreturn]] void serve(uint64_t seen)
    {
        std::unique_lock lk(mu_);
        for (;;) {
            cv_.wait(lk, [&] { return generation_ != seen; });
            seen = generation_;
            if (!open_ || joined_ >= wanted_)
                continue;
            ++joined_;
            ++inside_;
            const std::function<void(int64_t)>& part = *job_;
            const int64_t parts = parts_;
            lk.unlock();
            work(part, parts);
            lk.lock();
            if (--inside_ == 0)
                finished_.notify_all();
        }
    }

    std::atomic<bool> busy_{false};  // set by the caller whose job the team runs
    std::mutex mu_;
    std::condition_variable cv_, finished_;
    std::vector<std::thread> threads_;
    const std::function<void(int64_t)>* job_ = nullptr;
    int64_t parts_ = 0;
    std::atomic<int64_t> next_{0}, done_{0};
    int wanted_ = 0, joined_ = 0, inside_ = 0;
    bool open_ = false;
    uint64_t generation_ = 0;
    std::exception_ptr error_;
};

// Never destroyed: its threads wait for work until the process ends. A forked child has
// none of them (and maybe a mutex held by one), so it starts a team of its own.
std::atomic<Team*> g_team{nullptr};
std::once_flag g_atfork;

Team& team()
{
    std::call_once(g_atfork, [] { ::pthread_atfork(nullptr, nullptr, [] { g_team.store(nullptr); }); });
    Team* t = g_team.load(std::memory_order_acquire);
    if (!t) {
        auto* fresh = new Team;
        if (g_team.compare_exchange_strong(t, fresh, std::memory_order_acq_rel))
            t = fresh;
        else
            delete fresh;
    }
    return *t;
}

}  // namespace

int teamThreads()
{
    const int n = g_limit.load(std::memory_order_relaxed);
    return n > 0 ? n : defaultThreads();
}

void setTeamThreads(int n) { g_limit.store(std::max(n, 0), std::memory_order_relaxed); }

TeamOptOut::TeamOptOut() : previous_(t_optedOut) { t_optedOut = true; }
TeamOptOut::~TeamOptOut() { t_optedOut = previous_; }

void parallelFor(int64_t parts, const std::function<void(int64_t)>& part, bool split)
{
    const int threads = teamThreads();
    if (split && !t_optedOut && parts >= 2 && threads >= 2 && team().run(parts, part, threads))
        return;
    for (int64_t i = 0; i < parts; ++i)
        part(i);
}

}  // namespace quantlens
