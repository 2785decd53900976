// libFuzzer target for the HDF5 reader: any input must give a Model or an Error, never a
// crash, and every tensor it accepts must decode within its stated bounds.
// HDF5 resolves the real path of what it opens, and a memfd's /proc/self/fd link points
// at "/memfd:... (deleted)", so this target uses a temporary file in /dev/shm instead of
// withMemFile (withTempFile). Crashes inside libhdf5 itself are possible (it is not hardened against
// hostile files); they are reported as HDF5 bugs, not ours. It drives readHdf5InProcess:
// readHdf5 would run each input in a child process, where a crash is contained and so
// never seen.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include "fuzz_common.h"
#include "io/hdf5reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    quantlens::fuzz::withTempFile(data, size, [](const std::string& path) { quantlens::fuzz::decodeAll(quantlens::readHdf5InProcess(path)); });
    return 0;
}
