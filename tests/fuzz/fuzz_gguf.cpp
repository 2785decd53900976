// libFuzzer target for the GGUF reader: any input must give a Model or an Error, never a
// crash, and every tensor it accepts must decode within its stated bounds.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    quantlens::fuzz::withMemFile(data, size, [](const std::string& path) {
        quantlens::fuzz::decodeAll(quantlens::readGguf(path));
    });
    return 0;
}
