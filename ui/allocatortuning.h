#pragma once

namespace quantlens::ui {

// Keeps freed large blocks in the heap instead of returning them to the kernel. Every
// clamp-drag update allocates several matrix-sized buffers (9.4 MB each for 768x3072);
// with glibc's defaults each one is a fresh mmap whose first touch page-faults, which on
// this class of virtual machine cost more than the quantization itself (see bench_drag).
// Call once, first thing in main().
void tuneAllocatorForLiveUpdates();

}  // namespace quantlens::ui
