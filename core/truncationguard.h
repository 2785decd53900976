#pragma once
// Survives a memory-mapped file shrinking under us (a training run rewriting its
// checkpoint is the normal case). The kernel answers a read past the new end of file
// with SIGBUS; a process-wide handler recognises addresses inside our mappings, puts
// anonymous zero pages over the rest of that mapping (so the faulting read completes,
// on any thread, inside any library) and marks the mapping changed. Every consumer of
// mapped bytes then asks changedFile() before trusting what it read and fails with
// "file changed while reading". SIGBUS elsewhere keeps its previous disposition.
// See docs/DESIGN.md, "Files that change while open".
#include <cstddef>
#include <optional>
#include <string>

#include "result.h"

namespace quantlens::truncationguard {

// Registers [base, base+size) of a read-only mapping of `path` (the string must outlive
// the registration). Installs the handler on first use. Returns a slot, or -1 when the
// table is full (the caller then reads the file into memory instead of mapping it).
int registerMapping(const std::byte* base, size_t size, const std::string* path);
void unregisterMapping(int slot);

// The path of a registered mapping that overlaps [p, p+n) and whose file shrank under
// it, if any. Cheap: a scan of the live slots, no system call.
std::optional<std::string> changedFile(const void* p, size_t n);

// Whether [p, p+n) lies wholly inside one registered (file-backed) mapping.
bool insideMapping(const void* p, size_t n);

// The error every reader reports for that case, so all say the same thing.
Error fileChangedError(const std::string& path, const std::string& tensor = {});

// Ok, or fileChangedError if [p, p+n) lies in a mapping whose file changed.
Status checkRange(const void* p, size_t n, const std::string& tensor = {});

}  // namespace quantlens::truncationguard
