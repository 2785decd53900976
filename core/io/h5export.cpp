#include "io/h5export.h"

#include <hdf5.h>

#include <cstdio>
#include <filesystem>
#include <utility>

#include "io/atomicfile.h"
#include "io/hdf5lock.h"

namespace quantlens {

namespace {

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Hid {
public:
    Hid() = default;
    Hid(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
    Hid(Hid&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
    Hid& operator=(Hid&& o) noexcept
    {
        if (this != &o) {
            reset();
            id_ = std::exchange(o.id_, H5I_INVALID_HID);
            close_ = o.close_;
        }
        return *this;
    }
    Hid(const Hid&) = delete;
    Hid& operator=(const Hid&) = delete;
    ~Hid() { reset(); }
    bool valid() const { return id_ >= 0; }
    hid_t get() const { return id_; }
    herr_t reset()
    {
        herr_t r = 0;
        if (id_ >= 0 && close_)
            r = close_(id_);
        id_ = H5I_INVALID_HID;
        return r;
    }

private:
    hid_t id_ = H5I_INVALID_HID;
    herr_t (*close_)(hid_t) = nullptr;
};

// HDF5 prints its error stack to stderr by default; we report one line instead.
class SilenceHdf5Errors {
public:
    SilenceHdf5Errors()
    {
        H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    }
    ~SilenceHdf5Errors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
    SilenceHdf5Errors(const SilenceHdf5Errors&) = delete;
    SilenceHdf5Errors& operator=(const SilenceHdf5Errors&) = delete;

private:
    H5E_auto2_t func_ = nullptr;
    void* data_ = nullptr;
};

class Writer {
public:
    explicit Writer(std::string path) : path_(std::move(path)) {}

    Status fail(const std::string& what, const std::string& tensor = {}) const
    {
        return makeError("hdf5-write", "HDF5 could not " + what, path_, -1, tensor);
    }

    Status stringAttr(hid_t obj, const char* name, const std::string& value, const std::string& tensor = {}) const
    {
        Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
        if (!type.valid() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 || H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0)
            return fail("make a string type", tensor);
        Hid space(H5Screate(H5S_SCALAR), H5Sclose);
        Hid attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
        const char* p = value.c_str();
        if (!attr.valid() || H5Awrite(attr.get(), type.get(), &p) < 0)
            return fail(std::string("write attribute ") + name, tensor);
        return Ok{};
    }

    Status intAttr(hid_t obj, const char* name, int64_t value, const std::string& tensor = {}) const
    {
        Hid space(H5Screate(H5S_SCALAR), H5Sclose);
        Hid attr(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
        if (!attr.valid() || H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0)
            return fail(std::string("write attribute ") + name, tensor);
        return Ok{};
    }

    Status doubleAttr(hid_t obj, const char* name, double value, const std::string& tensor = {}) const
    {
        Hid space(H5Screate(H5S_SCALAR), H5Sclose);
        Hid attr(H5Acreate2(obj, name, H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
        if (!attr.valid() || H5Awrite(attr.get(), H5T_NATIVE_DOUBLE, &value) < 0)
            return fail(std::string("write attribute ") + name, tensor);
        return Ok{};
    }

    Status dataset(hid_t loc, const char* name, hid_t fileType, hid_t memType, const std::vector<int64_t>& shape,
                   const void* data, const std::string& tensor) const
    {
        std::vector<hsize_t> dims(shape.begin(), shape.end());
        Hid space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
        if (!space.valid())
            return fail(std::string("make the dataspace of ") + name, tensor);
        Hid ds(H5Dcreate2(loc, name, fileType, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
        if (!ds.valid())
            return fail(std::string("create dataset ") + name, tensor);
        // An empty array has nothing to write, and HDF5 rejects a null buffer.
        const bool empty = H5Sget_simple_extent_npoints(space.get()) == 0;
        if (!empty && H5Dwrite(ds.get(), memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            return fail(std::string("write dataset ") + name, tensor);
        return Ok{};
    }

private:
    std::string path_;
};

Status writeEntry(const Writer& w, hid_t tensors, const Model& m, const ExportEntry& e)
{
    const QuantizedTensor& qt = e.quantized;
    const std::string& tn = qt.name;
    auto sshape = scaleShape(qt);
    if (!sshape)
        return sshape.error();
    const std::string gname = hdf5GroupName(tn);
    Hid g(H5Gcreate2(tensors, gname.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    if (!g.valid())
        return w.fail("create group /tensors/" + gname + " (duplicate tensor name?)", tn);

    const bool u = qt.spec.isUnsigned;
    {
        auto payload = EntryPayload::of(m, e);
        if (!payload)
            return payload.error();
        if (Status s = w.dataset(g.get(), "q", u ? H5T_STD_U8LE : H5T_STD_I8LE, u ? H5T_NATIVE_UINT8 : H5T_NATIVE_INT8,
                                 qt.shape, (**payload).q.data(), tn); !s)
            return s;
    }
    if (Status s = w.dataset(g.get(), "scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, *sshape, qt.params.scale.data(), tn); !s)
        return s;
    if (Status s = w.dataset(g.get(), "zero_point", H5T_STD_I32LE, H5T_NATIVE_INT32, *sshape, qt.params.zeroPoint.data(), tn); !s)
        return s;
    if (!e.biasName.empty()) {
        const Tensor* b = m.find(e.biasName);
        if (!b)
            return makeError("no-tensor", "bias '" + e.biasName + "' is not in the model", {}, -1, tn);
        auto bv = b->toFloat();
        if (!bv)
            return bv.error();
        if (Status s = w.dataset(g.get(), "bias", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, b->shape, bv->data(), tn); !s)
            return s;
    }

    const hid_t id = g.get();
    Status checks[] = {
        w.stringAttr(id, "name", tn, tn),
        w.stringAttr(id, "scheme", schemeName(qt.spec.scheme), tn),
        w.stringAttr(id, "granularity", storedGranularity(qt), tn),
        w.intAttr(id, "axis", storedAxis(qt), tn),
        w.intAttr(id, "group_size", qt.params.groupSize, tn),
        w.intAttr(id, "bits", qt.spec.bits, tn),
        w.intAttr(id, "qmin", qt.params.qmin, tn),
        w.intAttr(id, "qmax", qt.params.qmax, tn),
        w.stringAttr(id, "calib", calibName(qt.spec), tn),
        w.doubleAttr(id, "range_lo", qt.params.rangeLo, tn),
        w.doubleAttr(id, "range_hi", qt.params.rangeHi, tn),
        w.stringAttr(id, "source_dtype", std::string(dtypeName(qt.sourceDtype)), tn),
        w.doubleAttr(id, "mse", e.metrics.mse, tn),
        w.doubleAttr(id, "sqnr_db", e.metrics.sqnrDb, tn),
    };
    for (Status& s : checks)
        if (!s)
            return s;
    if (const auto& in = e.staticInput) {
        // A static plan's input quantization of this layer: uint8 affine, clamp [0, 255].
        Status inputs[] = {
            w.doubleAttr(id, "input_scale", in->scale, tn),
            w.intAttr(id, "input_zero_point", in->zeroPoint, tn),
            w.doubleAttr(id, "input_range_lo", in->lo, tn),
            w.doubleAttr(id, "input_range_hi", in->hi, tn),
            w.intAttr(id, "input_reduce_range", in->reduceRange ? 1 : 0, tn),
        };
        for (Status& s : inputs)
            if (!s)
                return s;
    }
    return Ok{};
}

}  // namespace

std::string hdf5GroupName(const std::string& tensorName)
{
    if (tensorName == ".")
        return "%2E";
    if (tensorName == "..")
        return "%2E%2E";
    std::string out;
    out.reserve(tensorName.size());
    for (char c : tensorName) {
        if (c == '%')
            out += "%25";
        else if (c == '/')
            out += "%2F";
        else
            out += c;
    }
    return out;
}

Result<ExportReport> writeHdf5Export(const Model& m, const std::vector<ExportEntry>& entries,
                                     const ExportOptions& opts, const ExportProgress& progress)
{
    for (const ExportEntry& e : entries)
        if (e.quantized.name.empty())
            return makeError("bad-name", "a tensor without a name cannot be exported to HDF5", opts.outPath);

    // Declared first, released last: after every handle is closed and the error printer
    // is restored.
    std::lock_guard lock(hdf5Mutex());
    auto file = AtomicFile::create(opts.outPath, m.files);
    if (!file)
        return file.error();
    SilenceHdf5Errors quiet;
    Writer w(opts.outPath);
    {
        Hid f(H5Fcreate(file->tempPath().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
        if (!f.valid())
            return w.fail("create the file").error();
        Status root[] = {
            w.stringAttr(f.get(), "format", "quantlens-int8"),
            w.intAttr(f.get(), "format_version", 1),
            w.stringAttr(f.get(), "source", exportdetail::sourceOf(m, opts)),
            w.stringAttr(f.get(), "source_format", m.format),
        };
        for (Status& s : root)
            if (!s)
                return s.error();
        // Track creation order so h5py (which iterates tracked groups in that order) lists
        // the tensors in the model's order rather than alphabetically.
        Hid gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
        if (!gcpl.valid() || H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0)
            return w.fail("set up group /tensors").error();
        Hid tensors(H5Gcreate2(f.get(), "tensors", H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
        if (!tensors.valid())
            return w.fail("create group /tensors").error();

        const double n = entries.empty() ? 1.0 : double(entries.size());
        for (size_t i = 0; i < entries.size(); ++i) {
            if (!exportdetail::report(progress, double(i) / n, entries[i].quantized.name))
                return exportdetail::cancelled(opts.outPath);
            if (Status s = writeEntry(w, tensors.get(), m, entries[i]); !s) {
                Error e = s.error();
                if (e.path.empty())
                    e.path = opts.outPath;
                return e;
            }
        }
        tensors.reset();
        if (H5Fflush(f.get(), H5F_SCOPE_GLOBAL) < 0 || f.reset() < 0)
            return w.fail("finish the file").error();
    }
    if (!exportdetail::report(progress, 1.0, "finishing"))
        return exportdetail::cancelled(opts.outPath);
    if (Status s = file->commit(); !s)
        return s.error();
    ExportReport r;
    r.files.push_back(opts.outPath);
    std::error_code ec;
    r.bytesWritten = int64_t(std::filesystem::file_size(opts.outPath, ec));
    return r;
}

}  // namespace quantlens
