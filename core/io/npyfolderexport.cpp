#include "io/npyfolderexport.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "io/atomicfile.h"
#include "io/exportentryjson.h"
#include "io/npywriter.h"

namespace quantlens {

namespace fs = std::filesystem;

namespace {

using ojson = nlohmann::ordered_json;

template <class T>
std::span<const std::byte> bytesOf(const std::vector<T>& v)
{
    return std::as_bytes(std::span<const T>(v.data(), v.size()));
}

// Removes the temporary folder unless everything was moved out of it.
struct TempDir {
    fs::path path;
    ~TempDir()
    {
        if (!path.empty()) {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    }
};

}  // namespace

std::string npyFileStem(const std::string& tensorName)
{
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (size_t i = 0; i < tensorName.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(tensorName[i]);
        const bool plain = std::isalnum(c) || c == '_' || c == '-' || (c == '.' && i > 0);
        if (plain) {
            out += char(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

Result<ExportReport> writeNpyFolderExport(const Model& m, const std::vector<ExportEntry>& entries,
                                          const ExportOptions& opts, const ExportProgress& progress)
{
    const fs::path dir(opts.outPath);
    std::error_code ec;
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
        return makeError("not-a-directory", "output exists and is not a folder", opts.outPath);
    fs::create_directories(dir, ec);
    if (ec)
        return makeError("mkdir", "cannot create the output folder: " + ec.message(), opts.outPath);

    // Plan every file first: names must be unique, fit a file name, and not be an input.
    struct Planned {
        const ExportEntry* entry;
        std::string stem;
        const Tensor* bias = nullptr;
    };
    std::vector<Planned> plan;
    std::set<std::string> stems;
    for (const ExportEntry& e : entries) {
        Planned p{&e, npyFileStem(e.quantized.name)};
        if (p.stem.empty() || p.stem.size() + 16 > 255)
            return makeError("bad-name", "tensor name gives no usable file name (empty or longer than 239 bytes once encoded)", opts.outPath, -1, e.quantized.name);
        if (!stems.insert(p.stem).second)
            return makeError("duplicate-name", "tensor '" + e.quantized.name + "' is exported twice", opts.outPath, -1, e.quantized.name);
        if (!e.biasName.empty()) {
            p.bias = m.find(e.biasName);
            if (!p.bias)
                return makeError("no-tensor", "bias '" + e.biasName + "' is not in the model", opts.outPath, -1, e.quantized.name);
        }
        plan.push_back(p);
    }
    std::vector<std::string> finalNames;
    for (const Planned& p : plan) {
        for (const char* suffix : {".q.npy", ".scale.npy", ".zero_point.npy"})
            finalNames.push_back(p.stem + suffix);
        if (p.bias)
            finalNames.push_back(p.stem + ".bias.npy");
    }
    finalNames.push_back("manifest.json");
    for (const std::string& f : finalNames)
        if (Status s = checkNotAnInput((dir / f).string(), m.files); !s)
            return s.error();

    std::string tmpl = (dir / ".quantlens-tmp-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
        return makeError("mkdir", std::string("cannot create a temporary folder: ") + std::strerror(errno), opts.outPath);
    TempDir tmp{fs::path(buf.data())};

    ojson tensors = ojson::array();
    const double n = plan.empty() ? 1.0 : double(plan.size());
    for (size_t i = 0; i < plan.size(); ++i) {
        const Planned& p = plan[i];
        const QuantizedTensor& qt = p.entry->quantized;
        if (!exportdetail::report(progress, double(i) / n, qt.name))
            return exportdetail::cancelled(opts.outPath);
        auto sshape = scaleShape(qt);
        if (!sshape)
            return sshape.error();
        auto put = [&](const std::string& file, DType t, const std::vector<int64_t>& shape, std::span<const std::byte> data) {
            Status s = writeNpyFile((tmp.path / file).string(), t, shape, data);
            if (!s) {
                Error e = s.error();
                e.tensor = qt.name;
                return Status(e);
            }
            return s;
        };
        const std::string qFile = p.stem + ".q.npy", sFile = p.stem + ".scale.npy", zFile = p.stem + ".zero_point.npy";
        {
            auto payload = EntryPayload::of(m, *p.entry);
            if (!payload)
                return payload.error();
            if (Status s = put(qFile, qt.spec.isUnsigned ? DType::U8 : DType::I8, qt.shape, bytesOf((**payload).q)); !s)
                return s.error();
        }
        if (Status s = put(sFile, DType::F32, *sshape, bytesOf(qt.params.scale)); !s)
            return s.error();
        if (Status s = put(zFile, DType::I32, *sshape, bytesOf(qt.params.zeroPoint)); !s)
            return s.error();
        ojson j;
        j["name"] = qt.name;
        j["shape"] = qt.shape;
        j["dtype"] = qt.spec.isUnsigned ? "uint8" : "int8";
        j["q"] = qFile;
        j["scale"] = sFile;
        j["zero_point"] = zFile;
        j["scale_shape"] = *sshape;
        if (p.bias) {
            auto bv = p.bias->toFloat();
            if (!bv)
                return bv.error();
            const std::string bFile = p.stem + ".bias.npy";
            if (Status s = put(bFile, DType::F32, p.bias->shape, bytesOf(*bv)); !s)
                return s.error();
            j["bias"] = bFile;
            j["bias_name"] = p.bias->name;
        } else {
            j["bias"] = nullptr;
        }
        describeExportEntry(*p.entry, j);
        tensors.push_back(std::move(j));
    }
    ojson manifest;
    manifest["format"] = "quantlens-int8-npy";
    manifest["format_version"] = 1;
    manifest["source"] = exportdetail::sourceOf(m, opts);
    manifest["source_format"] = m.format;
    manifest["tensors"] = std::move(tensors);
    const std::string text = manifest.dump(2) + "\n";
    {
        auto f = AtomicFile::create((tmp.path / "manifest.json").string(), {});
        if (!f)
            return f.error();
        if (Status s = f->write(text.data(), text.size()); !s)
            return s.error();
        if (Status s = f->commit(); !s)
            return s.error();
    }
    if (!exportdetail::report(progress, 1.0, "finishing"))
        return exportdetail::cancelled(opts.outPath);

    // Every file is complete: move them in, manifest.json last so a reader that finds
    // the manifest finds everything it lists.
    ExportReport report;
    for (const std::string& f : finalNames) {
        const fs::path from = tmp.path / f, to = dir / f;
        if (::rename(from.c_str(), to.c_str()) != 0)
            return makeError("rename", "cannot move " + f + " into place: " + std::strerror(errno), opts.outPath);
        report.files.push_back(to.string());
        report.bytesWritten += int64_t(fs::file_size(to, ec));
    }
    return report;
}

}  // namespace quantlens
