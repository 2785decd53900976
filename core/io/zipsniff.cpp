#include "io/zipsniff.h"

#include <zip.h>

namespace quantlens {

Result<ZipKind> sniffZip(const std::string& path)
{
    int err = 0;
    zip_t* z = zip_open(path.c_str(), ZIP_RDONLY, &err);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, err);
        std::string msg = std::string("not a readable zip archive: ") + zip_error_strerror(&ze);
        zip_error_fini(&ze);
        return makeError("bad-zip", msg, path);
    }
    const zip_int64_t n = zip_get_num_entries(z, 0);
    bool pkl = false, npy = false;
    for (zip_int64_t i = 0; i < n; ++i) {
        const char* name = zip_get_name(z, static_cast<zip_uint64_t>(i), 0);
        if (!name)
            continue;
        const std::string s(name);
        if (s == "data.pkl" || (s.size() > 9 && s.compare(s.size() - 9, 9, "/data.pkl") == 0))
            pkl = true;
        if (s.size() > 4 && s.compare(s.size() - 4, 4, ".npy") == 0)
            npy = true;
    }
    zip_close(z);
    if (pkl)
        return ZipKind::TorchCheckpoint;
    if (npy)
        return ZipKind::Npz;
    return makeError("unknown-format", "zip archive holds neither data.pkl (torch.save) nor .npy members (np.savez)", path);
}

}  // namespace quantlens
