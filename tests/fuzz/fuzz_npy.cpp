// libFuzzer target for the .npy and .npz readers: any byte string must give a Model or
// an Error, never a crash, and every tensor of a Model must convert without reading
// outside its view. Seed with tests/data/npy and tests/data/malformed/npy.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.h"
#include "io/npy.h"
#include "model.h"

namespace {

void exercise(const quantlens::Result<quantlens::Model>& m) { quantlens::fuzz::decodeAll(m, 1 << 20); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    quantlens::fuzz::withMemFile(data, size, [&](const std::string& path) {
        // Call the reader the magic bytes would pick, and the other one too: each must
        // cope with the other's format.
        exercise(quantlens::readNpy(path));
        exercise(quantlens::readNpz(path));
    });
    return 0;
}
