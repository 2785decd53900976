#include "allocatortuning.h"

#include <cstdlib>  // defines __GLIBC__ on glibc systems

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace quantlens::ui {

void tuneAllocatorForLiveUpdates()
{
#if defined(__GLIBC__)
    // Blocks up to 32 MiB (glibc's ceiling for this setting on 64-bit; mallopt refuses
    // more) come from the heap and are reused; the heap is only trimmed
    // once 1 GiB sits free at its top. The cost: up to that much freed memory may stay
    // mapped (counted in RSS) after a large matrix is closed.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

}  // namespace quantlens::ui
