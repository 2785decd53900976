#pragma once
#include <mutex>

namespace quantlens {

// Debian's libhdf5 is built without thread safety: one caller at a time in this process.
// The reader also holds it while it forks, so that its child never inherits libhdf5's
// state half-way through another thread's call (an export, say).
inline std::mutex& hdf5Mutex()
{
    static std::mutex m;
    return m;
}

}  // namespace quantlens
