// libFuzzer target for the HDF5 reader: any input must give a Model or an Error, never a
// crash, and every tensor it accepts must decode within its stated bounds.
// HDF5 resolves the real path of what it opens, and a memfd's /proc/self/fd link points
// at "/memfd:... (deleted)", so this target uses a temporary file in /dev/shm instead of
// withMemFile. Crashes inside libhdf5 itself are possible (it is not hardened against
// hostile files); they are reported as HDF5 bugs, not ours.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include "fuzz_common.h"
#include "io/hdf5reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string path = dir + "/ql-fuzz-hdf5-XXXXXX";
    const int fd = mkstemp(path.data());
    if (fd < 0)
        return 0;
    size_t off = 0;
    while (off < size) {
        const ssize_t w = write(fd, data + off, size - off);
        if (w <= 0)
            break;
        off += size_t(w);
    }
    close(fd);
    quantlens::fuzz::decodeAll(quantlens::readHdf5(path));
    unlink(path.c_str());
    return 0;
}
