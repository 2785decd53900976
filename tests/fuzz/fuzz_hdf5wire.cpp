// libFuzzer target for what the HDF5 reading child sends its parent (io/hdf5wire.h). The
// child runs libhdf5 on hostile files, so these bytes may be anything: the parent must turn
// them into progress, a Model whose every tensor lies inside the data it maps, or an Error,
// and never crash. Seeds: tests/fuzz/seeds/hdf5wire (a progress frame and a result).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "io/hdf5wire.h"

namespace {

using namespace quantlens;

// The file the child read and the memfd it wrote, as the parent would map them.
struct Backings {
    std::vector<std::byte> file = std::vector<std::byte>(4096, std::byte{0x3c});
    std::vector<std::byte> shared = std::vector<std::byte>(8192, std::byte{0x41});
};

bool inside(std::span<const std::byte> part, const std::vector<std::byte>& all)
{
    return part.data() >= all.data() && part.data() + part.size() <= all.data() + all.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    static const Backings b;
    // The first byte splits the stream into reads of that size, as a pipe may.
    const size_t step = size > 0 ? 1 + data[0] % 64 : 1;
    std::vector<std::string> results;
    hdf5wire::FrameReader reader;
    const hdf5wire::FrameReader::Events on{[](double f) {
                                               if (!(f >= 0.0 && f <= 1.0))
                                                   std::abort();  // the parent clamps every fraction
                                               return true;
                                           },
                                           [&](std::string r) { results.push_back(std::move(r)); }};
    for (size_t pos = size > 0 ? 1 : 0; pos < size; pos += step)
        if (!reader.feed(reinterpret_cast<const char*>(data + pos), std::min(step, size - pos), on))
            break;
    const auto file = [&]() -> Result<hdf5wire::Backing> { return hdf5wire::Backing{b.file, nullptr}; };
    const auto shared = [&]() -> Result<hdf5wire::Backing> { return hdf5wire::Backing{b.shared, nullptr}; };
    for (const std::string& payload : results) {
        auto m = hdf5wire::decodeResult(payload, "/fuzz.h5", file, shared);
        if (m.ok())
            for (const Tensor& t : m->tensors)
                if (!t.data.empty() && !inside(t.data, b.file) && !inside(t.data, b.shared))
                    std::abort();
        fuzz::decodeAll(m, 1 << 20);
    }
    return 0;
}
