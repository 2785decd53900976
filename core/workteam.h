#pragma once
// The process's one team of worker threads for whole-tensor passes that are too short for
// a thread start (the GUI's drag step: ~1 ms of work, where creating and joining a thread
// cost 50-100 us on the development VM). The threads are created at the first parallel
// call and then wait on a condition variable; the caller runs parts too.
//
// Results must not depend on how many threads ran: callers split their work into parts
// fixed by the data (chunks of a size they choose), never by the thread count, and combine
// the parts' results in part order.
#include <cstdint>
#include <functional>

namespace quantlens {

// Threads a parallel call may use, the caller included: hardware_concurrency() (or the
// environment's QUANTLENS_THREADS), or the last setTeamThreads(n) (benches and tests
// compare 1 thread with all).
int teamThreads();
// n < 1 means the default again. Not for use while a parallel call runs.
void setTeamThreads(int n);

// Runs part(i) for every i in [0, parts), on up to teamThreads() threads, and returns when
// all are done. Runs them one after the other on the calling thread when parts < 2, when
// one thread is allowed, or when the team is already busy (another caller, or a part that
// calls parallelFor itself): never blocks waiting for the team. An exception thrown by a
// part is rethrown here after every part has finished.
// split = false runs them in order on the calling thread (callers pass whether the work is
// worth a wake-up, e.g. n >= kTeamMinValues).
void parallelFor(int64_t parts, const std::function<void(int64_t)>& part, bool split = true);

// While one is alive, parallelFor on this thread runs its parts itself. For threads that
// already work side by side, one tensor each (the whole-model summary): splitting further
// gains nothing on busy cores and would hold the team the GUI's drag step needs.
class TeamOptOut {
public:
    TeamOptOut();
    ~TeamOptOut();
    TeamOptOut(const TeamOptOut&) = delete;
    TeamOptOut& operator=(const TeamOptOut&) = delete;

private:
    bool previous_;
};

// Below this many floats a pass stays on the calling thread: waking a helper costs 10-50 us
// on the development VM, about what one pass over 256K floats takes.
constexpr int64_t kTeamMinValues = int64_t(1) << 18;

}  // namespace quantlens
