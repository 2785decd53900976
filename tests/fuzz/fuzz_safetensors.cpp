// libFuzzer target for the safetensors reader: any byte string must give a Model or
// an Error, never a crash, and every tensor of a Model must convert without reading
// outside its view; a small model with transformer names is then run. Seed with
// tests/data/safetensors, tests/data/malformed/safetensors and tests/fuzz/seeds/safetensors.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.h"
#include "io/safetensors.h"

namespace {

void exercise(const quantlens::Result<quantlens::Model>& m)
{
    quantlens::fuzz::decodeAll(m, 1 << 20);
    if (m.ok())
        quantlens::fuzz::runTransformerIfSmall(*m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    quantlens::fuzz::withMemFile(data, size, [](const std::string& path) {
        // The reader alone: openModel would hand mutated magic bytes to other formats'
        // readers, which have their own targets.
        exercise(quantlens::readSafetensors(path));
    });
    return 0;
}
