// libFuzzer target for the GGUF reader: any input must give a Model or an Error, never a
// crash, and every tensor it accepts must decode within its stated bounds. A small model
// with Llama names is then run, since its configuration comes from the file's metadata.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    quantlens::fuzz::withMemFile(data, size, [](const std::string& path) {
        const auto m = quantlens::readGguf(path);
        quantlens::fuzz::decodeAll(m);
        if (m.ok())
            quantlens::fuzz::runTransformerIfSmall(*m);
    });
    return 0;
}
