// libFuzzer target for the PyTorch checkpoint reader (zip archives and legacy pickle
// streams) and, through the legacy path, the restricted unpickler itself: any byte string
// must give a Model or an Error, never a crash, a hang or an unbounded allocation, and
// every tensor of a Model must convert without reading outside its view.
// Seed with tests/data/pytorch and tests/data/malformed/pytorch.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.h"
#include "io/pytorch.h"

namespace {

void exercise(const quantlens::Result<quantlens::Model>& m) { quantlens::fuzz::decodeAll(m, 1 << 20); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    quantlens::fuzz::withMemFile(data, size, [](const std::string& path) {
        exercise(quantlens::readPytorch(path));
    });
    return 0;
}
