#include "io/hdf5reader.h"

#include "io/hdf5lock.h"
#include "io/mappedfile.h"
#include "io/writeall.h"

#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace quantlens {

namespace {

// Closes an HDF5 handle on scope exit.
struct Hid {
    hid_t id = H5I_INVALID_HID;
    herr_t (*close)(hid_t) = nullptr;
    Hid(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
    Hid(const Hid&) = delete;
    Hid& operator=(const Hid&) = delete;
    ~Hid()
    {
        if (id >= 0 && close)
            close(id);
    }
    bool ok() const { return id >= 0; }
    operator hid_t() const { return id; }
};

constexpr size_t kShownChars = 200;
constexpr size_t kShownItems = 3;
constexpr int64_t kMaxBytes = int64_t(16) << 30;
// Compression lets a dataset legitimately exceed the file, but not without bound.
constexpr int64_t kExpansion = 64;
// Attributes are metadata; anything larger is not worth decoding for display.
constexpr int64_t kMaxAttrBytes = int64_t(64) << 20;
constexpr const char* kVlenUnreadable = "(variable-length string, unreadable)";
constexpr int kIsolatedTimeoutMs = 5000;
constexpr size_t kMaxPathChars = 4096;
constexpr size_t kMaxDepth = 64;
constexpr uint64_t kMaxLinks = uint64_t(1) << 20;

std::string shorten(std::string s)
{
    if (s.size() <= kShownChars)
        return s;
    size_t cut = kShownChars;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
        --cut;
    s.resize(cut);
    return s + "\xE2\x80\xA6";
}

// The deepest message on HDF5's error stack says what was actually wrong
// ("truncated file: eof = ...", "bad object header version number").
std::string hdf5Detail()
{
    struct Acc {
        std::string last;
    } acc;
    H5Ewalk2(
        H5E_DEFAULT, H5E_WALK_UPWARD,
        [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
            auto* a = static_cast<Acc*>(data);
            if (n == 0 && e && e->desc)
                a->last = e->desc;
            return 0;
        },
        &acc);
    H5Eclear2(H5E_DEFAULT);
    return acc.last.empty() ? std::string("unknown HDF5 error") : shorten(acc.last);
}

std::string formatDouble(double v)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

// Reads a string or numeric attribute (or string dataset) for display; nullopt if its
// type is something else. Arrays are summarised like the GGUF reader does.
struct Readable {
    hid_t obj;
    bool isAttr;
    herr_t read(hid_t memType, void* buf) const
    {
        return isAttr ? H5Aread(obj, memType, buf) : H5Dread(obj, memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    }
};

// Variable-length strings live in HDF5's global heap, and libhdf5 1.10.8 crashes
// (SIGSEGV in H5HG_read) or loops forever on a corrupted one: fuzzing found both. They
// are only metadata (Keras writes keras_version and backend this way), so they are read
// in a forked child with a time limit; if it dies or hangs, only the text is lost.
std::optional<std::vector<std::string>> readVlenIsolated(const Readable& r, hid_t type, hid_t space, size_t shown)
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        return std::nullopt;
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        return std::nullopt;
    }
    if (pid == 0) {
        // Child: the parent's HDF5 handles are valid here; write "len:bytes" per item, then
        // leave without running destructors or atexit handlers that belong to the parent.
        ::close(fds[0]);
        // Die at once on a crash: handlers inherited from the parent (crash reporters,
        // Qt Test's, which starts gdb) would run in this child for a bug in libhdf5.
        for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL})
            std::signal(sig, SIG_DFL);
        std::string out;
        const hssize_t n = H5Sget_simple_extent_npoints(space);
        hid_t mem = H5Tcopy(H5T_C_S1);
        // HDF5 converts no strings between ASCII and UTF-8: match the file's character set.
        if (n >= 0 && mem >= 0 && H5Tset_size(mem, H5T_VARIABLE) >= 0 && H5Tset_cset(mem, H5Tget_cset(type)) >= 0) {
            std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
            if (r.read(mem, ptrs.data()) >= 0) {
                for (size_t i = 0; i < shown && i < ptrs.size(); ++i) {
                    const std::string item = ptrs[i] ? shorten(ptrs[i]) : std::string();
                    out += std::to_string(item.size()) + ":" + item;
                }
                out += "ok";
            }
        }
        writeAll(fds[1], out.data(), out.size());
        ::_exit(0);
    }
    ::close(fds[1]);
    std::string got;
    bool timedOut = false;
    for (;;) {
        pollfd p{fds[0], POLLIN, 0};
        const int pr = ::poll(&p, 1, kIsolatedTimeoutMs);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            timedOut = true;
            break;
        }
        char buf[4096];
        const ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got.append(buf, size_t(n));
        if (got.size() > size_t(kMaxAttrBytes))
            break;
    }
    ::close(fds[0]);
    if (timedOut)
        ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timedOut || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || got.size() < 2 || got.compare(got.size() - 2, 2, "ok") != 0)
        return std::nullopt;
    got.resize(got.size() - 2);
    std::vector<std::string> items;
    size_t pos = 0;
    while (pos < got.size()) {
        const size_t colon = got.find(':', pos);
        if (colon == std::string::npos)
            return std::nullopt;
        const size_t len = size_t(std::strtoull(got.c_str() + pos, nullptr, 10));
        if (len > got.size() - colon - 1)
            return std::nullopt;
        items.push_back(got.substr(colon + 1, len));
        pos = colon + 1 + len;
    }
    return items;
}

std::optional<std::string> readForDisplay(const Readable& r, hid_t type, hid_t space)
{
    const H5S_class_t sc = H5Sget_simple_extent_type(space);
    if (sc == H5S_NULL)
        return std::string("(empty)");
    const hssize_t npoints = H5Sget_simple_extent_npoints(space);
    if (npoints < 0)
        return std::nullopt;
    const H5T_class_t cls = H5Tget_class(type);
    std::vector<std::string> items;
    const size_t shown = size_t(std::min<hssize_t>(npoints, sc == H5S_SCALAR ? 1 : hssize_t(kShownItems)));
    if (cls == H5T_STRING) {
        const htri_t vlen = H5Tis_variable_str(type);
        if (vlen < 0)
            return std::nullopt;
        if (vlen) {
            if (npoints > kMaxAttrBytes / int64_t(sizeof(char*)))
                return std::nullopt;
            auto got = readVlenIsolated(r, type, space, shown);
            if (!got)
                return std::string(kVlenUnreadable);
            items = std::move(*got);
        } else {
            const size_t sz = H5Tget_size(type);
            if (sz == 0 || int64_t(sz) > kMaxAttrBytes / std::max<int64_t>(1, npoints))
                return std::nullopt;
            Hid mem(H5Tcopy(H5T_C_S1), H5Tclose);
            if (!mem.ok() || H5Tset_size(mem, sz) < 0 || H5Tset_strpad(mem, H5T_STR_NULLPAD) < 0 ||
                H5Tset_cset(mem, H5Tget_cset(type)) < 0)
                return std::nullopt;
            std::vector<char> buf(size_t(npoints) * sz);
            if (r.read(mem, buf.data()) < 0)
                return std::nullopt;
            for (size_t i = 0; i < shown; ++i) {
                const char* p = buf.data() + i * sz;
                items.push_back(shorten(std::string(p, strnlen(p, sz))));
            }
        }
        if (sc == H5S_SCALAR)
            return items.empty() ? std::string() : items[0];
        std::string s = "[" + std::to_string(npoints) + " strings";
        for (size_t i = 0; i < items.size(); ++i)
            s += (i ? ", '" : ": '") + items[i] + "'";
        return s + (size_t(npoints) > items.size() ? ", ...]" : "]");
    }
    if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
        if (npoints > kMaxAttrBytes / 8)
            return std::nullopt;
        std::vector<double> v(static_cast<size_t>(npoints));
        if (r.read(H5T_NATIVE_DOUBLE, v.data()) < 0)
            return std::nullopt;
        if (sc == H5S_SCALAR)
            return v.empty() ? std::string() : formatDouble(v[0]);
        std::string s = "[" + std::to_string(npoints) + " numbers";
        for (size_t i = 0; i < shown; ++i)
            s += (i ? ", " : ": ") + formatDouble(v[i]);
        return s + (size_t(npoints) > shown ? ", ...]" : "]");
    }
    return std::nullopt;
}

std::optional<std::string> attrString(hid_t obj, const char* name)
{
    if (H5Aexists(obj, name) <= 0)
        return std::nullopt;
    Hid a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
    if (!a.ok())
        return std::nullopt;
    Hid type(H5Aget_type(a), H5Tclose);
    Hid space(H5Aget_space(a), H5Sclose);
    if (!type.ok() || !space.ok())
        return std::nullopt;
    return readForDisplay(Readable{a, true}, type, space);
}

const char* className(H5T_class_t c)
{
    switch (c) {
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    case H5T_FLOAT: return "float";
    case H5T_INTEGER: return "integer";
    default: return "unknown";
    }
}

struct Visit {
    std::string path;
    int64_t fileSize = 0;
    int64_t cap = 0;         // per dataset and in total
    int64_t total = 0;
    Model* model = nullptr;
    std::shared_ptr<const MappedFile> mapped;  // opened at the first dataset used in place
    const OpenProgress* progress = nullptr;
    const Hdf5Buffer* buffer = nullptr;
    uint64_t links = 0;
    uint64_t stored = 0;  // file bytes of the datasets taken so far (compressed size if compressed)
    std::vector<std::string> skipped;
    std::optional<Error> error;
};

// The memory type to read a dataset into and the DType it becomes; nullopt for
// types that are not numbers (or not numbers we keep).
std::optional<std::pair<hid_t, DType>> memTypeFor(hid_t type, std::string& why, hid_t& owned)
{
    const H5T_class_t cls = H5Tget_class(type);
    const size_t size = H5Tget_size(type);
    if (cls == H5T_INTEGER) {
        const H5T_sign_t sign = H5Tget_sign(type);
        if (sign < 0)
            return std::nullopt;
        const bool s = sign == H5T_SGN_2;
        switch (size) {
        case 1: return std::pair{s ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8, s ? DType::I8 : DType::U8};
        case 2: return std::pair{s ? H5T_NATIVE_INT16 : H5T_NATIVE_UINT16, s ? DType::I16 : DType::U16};
        case 4: return std::pair{s ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT32, s ? DType::I32 : DType::U32};
        case 8: return std::pair{s ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64, s ? DType::I64 : DType::U64};
        default: why = std::to_string(size) + "-byte integer"; return std::nullopt;
        }
    }
    if (cls == H5T_FLOAT) {
        if (size == 4)
            return std::pair{H5T_NATIVE_FLOAT, DType::F32};
        if (size == 8)
            return std::pair{H5T_NATIVE_DOUBLE, DType::F64};
        if (size == 2) {
            // IEEE half, little-endian, as numpy/h5py write float16; HDF5 converts any
            // other 16-bit float layout into it.
            owned = H5Tcopy(H5T_IEEE_F32LE);
            if (owned < 0 || H5Tset_fields(owned, 15, 10, 5, 0, 10) < 0 || H5Tset_size(owned, 2) < 0 ||
                H5Tset_ebias(owned, 15) < 0) {
                why = "float16 conversion unavailable";
                return std::nullopt;
            }
            return std::pair{owned, DType::F16};
        }
        why = std::to_string(size) + "-byte float";
        return std::nullopt;
    }
    if (cls == H5T_ENUM) {
        // h5py stores numpy bool as an int8 enum {FALSE = 0, TRUE = 1}.
        if (size == 1 && H5Tget_nmembers(type) == 2) {
            char* n0 = H5Tget_member_name(type, 0);
            char* n1 = H5Tget_member_name(type, 1);
            const bool isBool = n0 && n1 && std::strcmp(n0, "FALSE") == 0 && std::strcmp(n1, "TRUE") == 0;
            H5free_memory(n0);
            H5free_memory(n1);
            int8_t v0 = -1, v1 = -1;
            if (isBool && H5Tget_member_value(type, 0, &v0) >= 0 && H5Tget_member_value(type, 1, &v1) >= 0 && v0 == 0 && v1 == 1) {
                owned = H5Tget_native_type(type, H5T_DIR_ASCEND);
                if (owned >= 0)
                    return std::pair{owned, DType::BOOL};
            }
        }
        why = "enum";
        return std::nullopt;
    }
    why = className(cls);
    return std::nullopt;
}

bool isKerasKernel(const std::string& name)
{
    const size_t cut = name.find_last_of('/');
    std::string leaf = cut == std::string::npos ? name : name.substr(cut + 1);
    if (const size_t colon = leaf.find(':'); colon != std::string::npos)
        leaf.resize(colon);
    return leaf == "kernel" || leaf == "recurrent_kernel";
}

// Asks the progress callback, if any, whether to go on, with `done` file bytes taken so far;
// on a refusal v.error says the open was cancelled.
bool keepGoing(Visit& v, double done)
{
    if (!v.progress || !*v.progress || (*v.progress)(v.fileSize > 0 ? std::min(1.0, done / double(v.fileSize)) : 0.0))
        return true;
    v.error = makeError("cancelled", "opening cancelled", v.path);
    return false;
}

// One dataset to read through HDF5, and where it stands in the file's progress.
struct RowRead {
    hid_t dset;
    hid_t memType;
    hid_t fileSpace;
    const std::vector<hsize_t>* dims;
    hsize_t chunkRows;      // 0 unless chunked
    int64_t bytes;          // in memory
    uint64_t storedBefore;  // file bytes of the datasets before this one
    uint64_t storage;       // this one's
};

// H5Dread of the whole dataset; a large one is read in slabs of whole rows (first dimension,
// whole chunks where chunked) with progress and the cancel check between slabs, so that a
// compressed tensor of gigabytes, one H5Dread otherwise, can be stopped part-way. False on
// an HDF5 error (v.error unset) or a cancel (v.error set).
bool readRows(Visit& v, const RowRead& r, std::byte* out)
{
    constexpr int64_t kSlabBytes = int64_t(16) << 20;
    const std::vector<hsize_t>& dims = *r.dims;
    if (r.bytes <= 2 * kSlabBytes || dims.empty() || dims[0] < 2)
        return H5Dread(r.dset, r.memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0;
    const int64_t rowBytes = r.bytes / int64_t(dims[0]);  // exact: bytes = dims[0] * the rest
    hsize_t rows = hsize_t(std::max<int64_t>(1, kSlabBytes / std::max<int64_t>(rowBytes, 1)));
    // The chunk size comes from the file: only a sane one (below the row count, which the
    // byte cap bounds) is rounded to, so the step can neither wrap nor reach zero.
    if (r.chunkRows > 0 && r.chunkRows < dims[0])
        rows = std::min(dims[0], (rows + r.chunkRows - 1) / r.chunkRows * r.chunkRows);
    std::vector<hsize_t> start(dims.size(), 0), count = dims;
    for (hsize_t r0 = 0; r0 < dims[0]; r0 += rows) {
        start[0] = r0;
        count[0] = std::min(rows, dims[0] - r0);
        Hid file(H5Scopy(r.fileSpace), H5Sclose);
        Hid mem(H5Screate_simple(int(dims.size()), count.data(), nullptr), H5Sclose);
        if (!file.ok() || !mem.ok() ||
            H5Sselect_hyperslab(file, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0 ||
            H5Dread(r.dset, r.memType, mem, file, H5P_DEFAULT, out + int64_t(r0) * rowBytes) < 0)
            return false;
        if (!keepGoing(v, double(r.storedBefore) + double(r.storage) * double(r0 + count[0]) / double(dims[0])))
            return false;
    }
    return true;
}

// True when the file stores `mem` (a native little-endian number type) big-endian, byte for
// byte otherwise the same: such a dataset can be a view too, marked big-endian.
bool storedBigEndian(hid_t file, hid_t mem)
{
    if (H5Tget_order(file) != H5T_ORDER_BE || H5Tget_size(mem) < 2)
        return false;
    Hid swapped(H5Tcopy(mem), H5Tclose);
    const bool same = swapped.ok() && H5Tset_order(swapped, H5T_ORDER_BE) >= 0 && H5Tequal(file, swapped) > 0;
    H5Eclear2(H5E_DEFAULT);
    return same;
}

// A contiguous dataset whose file type is its memory type is used where it lies in the file,
// like every other format's tensors: reading a 200 MB Keras file took ~1 s, half of it
// zero-filling buffers and the rest copying. Returns nullopt (and leaves v.error unset) when
// HDF5 should read the dataset instead: space not allocated (fill values) or stored size
// different from the shape's. Sets v.error when the recorded address lies outside the file.
std::optional<Tensor> inPlace(Visit& v, hid_t dset, int64_t bytes, uint64_t storage, const std::string& name)
{
    H5D_space_status_t status{};
    const haddr_t offset = H5Dget_offset(dset);
    if (H5Dget_space_status(dset, &status) < 0 || status != H5D_SPACE_STATUS_ALLOCATED || offset == HADDR_UNDEF ||
        storage != uint64_t(bytes)) {
        H5Eclear2(H5E_DEFAULT);
        return std::nullopt;
    }
    if (offset > uint64_t(v.fileSize) || uint64_t(bytes) > uint64_t(v.fileSize) - offset) {
        v.error = makeError("truncated",
                            "raw data at offset " + std::to_string(offset) + " (" + std::to_string(bytes) +
                                " bytes) runs past the end of the file (" + std::to_string(v.fileSize) + " bytes)",
                            v.path, -1, name);
        return std::nullopt;
    }
    if (!v.mapped) {
        auto m = MappedFile::open(v.path);
        if (!m) {
            v.error = m.error();
            return std::nullopt;
        }
        v.mapped = *m;
    }
    // The file may have changed size since stat(); the mapping is what counts.
    if (offset + uint64_t(bytes) > v.mapped->size()) {
        v.error = makeError("truncated", "the file shrank while it was being read", v.path, -1, name);
        return std::nullopt;
    }
    Tensor t;
    t.name = name;
    t.data = v.mapped->bytes().subspan(size_t(offset), size_t(bytes));
    t.keepAlive = v.mapped;
    return t;
}

herr_t visitLink(hid_t root, const char* cname, const H5L_info_t* info, void* data)
{
    auto* v = static_cast<Visit*>(data);
    const std::string name(cname);
    // libhdf5 1.10.8 follows a group that links back to itself (a corrupted symbol table)
    // with ever longer path names, each step slower than the last: found by fuzzing, a 2 KB
    // file ran for minutes (17 s to reach 2048 levels). Real models nest a few groups deep.
    const auto depth = size_t(std::count(name.begin(), name.end(), '/'));
    if (depth > kMaxDepth || name.size() > kMaxPathChars || ++v->links > kMaxLinks) {
        const std::string why = depth > kMaxDepth ? "groups nested more than " + std::to_string(kMaxDepth) + " deep"
                                : name.size() > kMaxPathChars
                                    ? "an object path longer than " + std::to_string(kMaxPathChars) + " characters"
                                    : "more than " + std::to_string(kMaxLinks) + " links";
        v->error = makeError("bad-hdf5", why + " (a group that contains itself?) at " + shorten(name), v->path);
        return 1;
    }
    if (info->type != H5L_TYPE_HARD) {
        // Soft links point at objects visited anyway; external links would open other files.
        if (info->type == H5L_TYPE_EXTERNAL)
            v->skipped.push_back(shorten(name) + " (external link)");
        return 0;
    }
    Hid obj(H5Oopen(root, cname, H5P_DEFAULT), H5Oclose);
    if (!obj.ok()) {
        v->error = makeError("hdf5", "cannot open object: " + hdf5Detail(), v->path, -1, name);
        return 1;
    }
    if (H5Iget_type(obj) != H5I_DATASET)
        return 0;
    Hid type(H5Dget_type(obj), H5Tclose);
    Hid space(H5Dget_space(obj), H5Sclose);
    if (!type.ok() || !space.ok()) {
        v->error = makeError("hdf5", "cannot read the dataset's type or shape: " + hdf5Detail(), v->path, -1, name);
        return 1;
    }
    H5D_layout_t layout = H5D_LAYOUT_ERROR;
    hsize_t chunkRows = 0;
    {
        // Raw data in external files (EFL) or virtual datasets would make HDF5 read files
        // the model names, e.g. /etc/passwd as "weights": never followed, like ONNX's "..".
        Hid dcpl(H5Dget_create_plist(obj), H5Pclose);
        layout = dcpl.ok() ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
        hsize_t chunk[H5S_MAX_RANK] = {};
        if (layout == H5D_CHUNKED && H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk) > 0)
            chunkRows = chunk[0];
        if (!dcpl.ok() || H5Pget_external_count(dcpl) != 0 || layout == H5D_VIRTUAL) {
            H5Eclear2(H5E_DEFAULT);
            v->skipped.push_back(shorten(name) + " (data in other files)");
            return 0;
        }
    }
    const H5S_class_t sc = H5Sget_simple_extent_type(space);
    if (sc != H5S_SIMPLE && sc != H5S_SCALAR) {
        v->skipped.push_back(shorten(name) + " (no dataspace)");
        return 0;
    }
    std::string why;
    hid_t ownedType = H5I_INVALID_HID;
    auto mt = memTypeFor(type, why, ownedType);
    Hid ownedGuard(ownedType, H5Tclose);
    if (!mt) {
        if (H5Tget_class(type) == H5T_STRING) {
            if (auto s = readForDisplay(Readable{obj, false}, type, space)) {
                v->model->metadata.emplace_back(name, *s);
                return 0;
            }
        }
        H5Eclear2(H5E_DEFAULT);
        v->skipped.push_back(shorten(name) + " (" + why + ")");
        return 0;
    }
    const int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0 || rank > H5S_MAX_RANK) {
        v->error = makeError("bad-shape", "cannot read the dataset's rank", v->path, -1, name);
        return 1;
    }
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (rank > 0 && H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0) {
        v->error = makeError("bad-shape", "cannot read the dataset's dimensions: " + hdf5Detail(), v->path, -1, name);
        return 1;
    }
    std::vector<int64_t> shape;
    for (hsize_t d : dims) {
        if (d > hsize_t(INT64_MAX)) {
            v->error = makeError("bad-shape", "dimension " + std::to_string(d) + " is too large", v->path, -1, name);
            return 1;
        }
        shape.push_back(int64_t(d));
    }
    auto numel = checkedNumel(shape.data(), shape.size());
    auto bytes = numel ? byteSizeFor(mt->second, *numel) : std::nullopt;
    if (!bytes) {
        v->error = makeError("bad-shape", "shape " + shapeString(shape) + " overflows", v->path, -1, name);
        return 1;
    }
    if (*bytes > v->cap || *bytes > v->cap - v->total) {
        v->error = makeError("too-large",
                             "dataset of shape " + shapeString(shape) + " needs " + std::to_string(*bytes) +
                                 " bytes, more than this file can hold (limit " + std::to_string(v->cap) + " bytes in total)",
                             v->path, -1, name);
        return 1;
    }
    // Checked per dataset: a Keras file has one per weight, and a single H5Dread cannot be
    // interrupted.
    if (!keepGoing(*v, double(v->stored)))
        return 1;
    const uint64_t storedBefore = v->stored, storage = H5Dget_storage_size(obj);
    v->stored += storage;
    const bool asInMemory = H5Tequal(type, mt->first) > 0;
    const bool bigEndian = !asInMemory && storedBigEndian(type, mt->first);
    if (layout == H5D_CONTIGUOUS && *bytes > 0 && (asInMemory || bigEndian)) {
        auto in = inPlace(*v, obj, *bytes, storage, name);
        if (v->error)
            return 1;
        if (in) {
            v->total += *bytes;
            v->model->tensors.push_back(std::move(*in));
            Tensor& t = v->model->tensors.back();
            t.dtype = mt->second;
            t.shape = std::move(shape);
            t.bigEndian = bigEndian;  // Tensor swaps on conversion, as for a big-endian .npy
            return 0;
        }
    }
    // Not zero-filled first: H5Dread writes every byte or fails (zero-filling 200 MB took
    // as long as reading it).
    std::shared_ptr<const void> keep;
    std::byte* out = nullptr;
    if (v->buffer && *v->buffer) {
        out = (*v->buffer)(*bytes, keep);
    } else {
        std::shared_ptr<std::byte[]> heap(new std::byte[static_cast<size_t>(std::max<int64_t>(*bytes, 1))]);
        out = heap.get();
        keep = std::move(heap);
    }
    if (!out) {
        v->error = makeError("out-of-memory", "no memory for " + std::to_string(*bytes) + " bytes of data", v->path, -1, name);
        return 1;
    }
    if (*bytes > 0) {
        const RowRead rr{obj, mt->first, space, &dims, chunkRows, *bytes, storedBefore, storage};
        if (!readRows(*v, rr, out)) {
            if (!v->error)
                v->error = makeError("hdf5", "cannot read the data: " + hdf5Detail(), v->path, -1, name);
            return 1;
        }
    }
    v->total += *bytes;
    Tensor t;
    t.name = name;
    t.dtype = mt->second;
    t.shape = std::move(shape);
    t.data = std::span<const std::byte>(out, static_cast<size_t>(*bytes));
    t.keepAlive = std::move(keep);
    v->model->tensors.push_back(std::move(t));
    return 0;
}

}  // namespace

Result<Model> readHdf5InProcess(const std::string& path, const OpenProgress& progress, const Hdf5Buffer& buffer)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return makeError("open", std::string("cannot open: ") + std::strerror(errno), path);
    if (!S_ISREG(st.st_mode))
        return makeError("open", "not a regular file", path);
    const int64_t fileSize = int64_t(st.st_size);

    std::lock_guard lock(hdf5Mutex());
    // HDF5 prints its error stack to stderr by default; we turn it into an Error instead.
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!file.ok())
        return makeError("bad-hdf5", "HDF5 cannot open the file: " + hdf5Detail(), path);
    Hid root(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose);
    if (!root.ok())
        return makeError("bad-hdf5", "cannot open the root group: " + hdf5Detail(), path);

    Model model;
    model.files.push_back(path);
    bool keras = attrString(root, "layer_names").has_value();
    if (!keras && H5Lexists(root, "model_weights", H5P_DEFAULT) > 0) {
        Hid mw(H5Oopen(root, "model_weights", H5P_DEFAULT), H5Oclose);
        keras = mw.ok() && H5Iget_type(mw) == H5I_GROUP && attrString(mw, "layer_names").has_value();
    }
    H5Eclear2(H5E_DEFAULT);
    model.format = keras ? "keras-h5" : "hdf5";

    // Root attributes: keras_version, backend, model_config, training_config for Keras;
    // whatever the writer put there otherwise. Non-displayable types are left out.
    H5O_info_t rootInfo{};
    if (H5Oget_info2(root, &rootInfo, H5O_INFO_NUM_ATTRS) >= 0) {
        for (hsize_t i = 0; i < rootInfo.num_attrs && i < 256; ++i) {
            char aname[256] = {};
            if (H5Aget_name_by_idx(root, ".", H5_INDEX_NAME, H5_ITER_INC, i, aname, sizeof aname, H5P_DEFAULT) < 0)
                continue;
            if (auto s = attrString(root, aname))
                model.metadata.emplace_back(aname, *s);
        }
    }
    H5Eclear2(H5E_DEFAULT);

    Visit v;
    v.path = path;
    v.fileSize = fileSize;
    v.progress = &progress;
    v.buffer = &buffer;
    v.cap = std::min(kMaxBytes, fileSize > kMaxBytes / kExpansion ? kMaxBytes : fileSize * kExpansion);
    v.model = &model;
    if (H5Lvisit(root, H5_INDEX_NAME, H5_ITER_INC, visitLink, &v) < 0 && !v.error)
        return makeError("bad-hdf5", "cannot walk the file's groups: " + hdf5Detail(), path);
    if (v.error)
        return *v.error;
    if (!v.skipped.empty()) {
        std::string s;
        for (const auto& n : v.skipped)
            s += (s.empty() ? "" : ", ") + n;
        model.metadata.emplace_back("skipped datasets", shorten(s));
    }
    if (model.tensors.empty())
        return makeError("no-tensors", v.skipped.empty() ? "the file holds no numeric datasets"
                                                         : "the file holds no numeric datasets (skipped: " + shorten(v.skipped.front()) + ")",
                         path);

    for (Tensor& t : model.tensors) {
        if (keras && t.rank() >= 2 && isKerasKernel(t.name))
            t.layout = Layout::InOut;  // Dense/LSTM kernels are [in, out], Conv kernels [k..., in, out]
        if (t.name.rfind("optimizer_weights/", 0) == 0)
            t.group = "optimizer";
    }
    return model;
}

}  // namespace quantlens
