#include "io/safetensorswriter.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "io/exportentryjson.h"
#include "truncationguard.h"

namespace quantlens {

// The writers emit native bytes as little-endian; a big-endian host would need swaps here.
static_assert(std::endian::native == std::endian::little, "export writers assume a little-endian host");

namespace {

using ojson = nlohmann::ordered_json;

constexpr size_t kChunk = size_t(1) << 20;

template <class T>
std::span<const std::byte> bytesOf(const std::vector<T>& v)
{
    return std::as_bytes(std::span<const T>(v.data(), v.size()));
}

SafetensorsItem copyItem(const Tensor& t)
{
    SafetensorsItem it;
    it.name = t.name;
    it.shape = t.shape;
    if (dtypeInfo(t.dtype).isBlock) {
        // ggml blocks have no safetensors dtype: store the decoded values.
        it.dtype = DType::F32;
        it.writeData = [&t](AtomicFile& f) -> Status {
            auto v = t.toFloat();
            if (!v)
                return v.error();
            return f.write(bytesOf(*v));
        };
    } else {
        it.dtype = t.dtype;
        it.writeData = [&t](AtomicFile& f) { return writeTensorBytes(f, t); };
    }
    return it;
}

}  // namespace

Status writeTensorBytes(AtomicFile& out, const Tensor& t)
{
    const DTypeInfo& info = dtypeInfo(t.dtype);
    if (info.isBlock)
        return makeError("unsupported-dtype", "block type " + std::string(info.name) + " is not a plain array", {}, -1, t.name);
    auto n = checkedNumel(t.shape.data(), t.shape.size());
    auto total = n ? byteSizeFor(t.dtype, *n) : std::nullopt;
    if (!total)
        return makeError("bad-shape", "shape " + shapeString(t.shape) + " overflows", {}, -1, t.name);
    const int64_t es = info.blockBytes;
    const bool swap = t.bigEndian && es > 1;

    if (t.strides.empty()) {
        if (static_cast<int64_t>(t.data.size()) < *total)
            return makeError("truncated", "needs " + std::to_string(*total) + " bytes, has " + std::to_string(t.data.size()), {}, -1, t.name);
        if (!swap) {
            // Copied in user space, not handed to write(2): the kernel answers a mapped
            // page gone with EFAULT, which the truncation guard would never see.
            std::vector<std::byte> chunk;
            for (int64_t at = 0; at < *total; at += int64_t(kChunk)) {
                const auto len = size_t(std::min<int64_t>(int64_t(kChunk), *total - at));
                chunk.assign(t.data.data() + at, t.data.data() + at + len);
                if (Status c = truncationguard::checkRange(t.data.data() + at, len, t.name); !c)
                    return c;
                if (Status s = out.write(chunk); !s)
                    return s;
            }
            return Ok{};
        }
    } else {
        if (t.strides.size() != t.shape.size())
            return makeError("bad-layout", "strides and shape differ in rank", {}, -1, t.name);
        if (*n > 0) {
            int64_t maxOff = 0;
            for (size_t d = 0; d < t.shape.size(); ++d) {
                if (t.strides[d] < 0)
                    return makeError("bad-layout", "negative stride", {}, -1, t.name);
                if (t.shape[d] > 1 && t.strides[d] > (std::numeric_limits<int64_t>::max() - maxOff) / (t.shape[d] - 1))
                    return makeError("bad-layout", "strides overflow", {}, -1, t.name);
                maxOff += t.strides[d] * (t.shape[d] - 1);
            }
            if (maxOff >= static_cast<int64_t>(t.data.size()) / es)
                return makeError("truncated", "strided view reaches element " + std::to_string(maxOff) + " beyond its storage", {}, -1, t.name);
        }
    }

    // Gather (and byte-swap) element by element through a bounded buffer.
    std::vector<std::byte> buf;
    buf.reserve(kChunk);
    std::vector<int64_t> idx(t.shape.size(), 0);
    for (int64_t i = 0; i < *n; ++i) {
        int64_t off = i;
        if (!t.strides.empty()) {
            off = 0;
            for (size_t d = 0; d < t.shape.size(); ++d)
                off += idx[d] * t.strides[d];
            for (size_t d = t.shape.size(); d-- > 0;) {
                if (++idx[d] < t.shape[d])
                    break;
                idx[d] = 0;
            }
        }
        const std::byte* p = t.data.data() + off * es;
        if (swap)
            for (int64_t b = es; b-- > 0;)
                buf.push_back(p[b]);
        else
            buf.insert(buf.end(), p, p + es);
        if (buf.size() + size_t(es) > kChunk) {
            if (Status s = out.write(buf); !s)
                return s;
            buf.clear();
        }
    }
    if (Status s = out.write(buf); !s)
        return s;
    return truncationguard::checkRange(t.data.data(), t.data.size(), t.name);
}

Result<std::vector<std::byte>> safetensorsHeader(const std::vector<SafetensorsItem>& items, const SafetensorsMetadata& metadata)
{
    ojson h = ojson::object();
    if (!metadata.empty()) {
        ojson md = ojson::object();
        for (const auto& [k, v] : metadata)
            md[k] = v;
        h["__metadata__"] = md;
    }
    std::set<std::string> seen;
    int64_t offset = 0;
    for (const SafetensorsItem& it : items) {
        if (it.name.empty() || it.name == "__metadata__")
            return makeError("bad-name", "invalid safetensors tensor name '" + it.name + "'", {}, -1, it.name);
        if (!seen.insert(it.name).second)
            return makeError("duplicate-name", "two tensors would be named '" + it.name + "'", {}, -1, it.name);
        if (dtypeInfo(it.dtype).isBlock)
            return makeError("unsupported-dtype", "safetensors has no dtype " + std::string(dtypeName(it.dtype)), {}, -1, it.name);
        auto n = checkedNumel(it.shape.data(), it.shape.size());
        auto bytes = n ? byteSizeFor(it.dtype, *n) : std::nullopt;
        if (!bytes || *bytes > std::numeric_limits<int64_t>::max() - offset)
            return makeError("bad-shape", "shape " + shapeString(it.shape) + " overflows", {}, -1, it.name);
        ojson e;
        e["dtype"] = std::string(dtypeName(it.dtype));
        e["shape"] = it.shape;
        e["data_offsets"] = {offset, offset + *bytes};
        h[it.name] = e;
        offset += *bytes;
    }
    std::string json = h.dump();
    // Pad so the data starts 8-byte aligned (the 8-byte length prefix keeps that).
    json.append((8 - json.size() % 8) % 8, ' ');
    std::vector<std::byte> out(8 + json.size());
    const uint64_t len = json.size();
    for (int i = 0; i < 8; ++i)
        out[size_t(i)] = std::byte((len >> (8 * i)) & 0xff);
    std::memcpy(out.data() + 8, json.data(), json.size());
    return out;
}

Result<int64_t> writeSafetensors(const std::string& path, const std::vector<SafetensorsItem>& items,
                                 const SafetensorsMetadata& metadata, const std::vector<std::string>& inputs,
                                 const ExportProgress& progress)
{
    auto header = safetensorsHeader(items, metadata);
    if (!header)
        return header.error();
    auto file = AtomicFile::create(path, inputs);
    if (!file)
        return file.error();
    if (Status s = file->write(*header); !s)
        return s.error();
    const double n = items.empty() ? 1.0 : double(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
        const SafetensorsItem& it = items[i];
        if (!exportdetail::report(progress, double(i) / n, it.name))
            return exportdetail::cancelled(path);
        const int64_t before = file->bytesWritten();
        if (Status s = it.writeData(*file); !s) {
            Error e = s.error();
            if (e.path.empty())
                e.path = path;
            if (e.tensor.empty())
                e.tensor = it.name;
            return e;
        }
        const int64_t expected = *byteSizeFor(it.dtype, *checkedNumel(it.shape.data(), it.shape.size()));
        if (file->bytesWritten() - before != expected)
            return makeError("internal", "wrote " + std::to_string(file->bytesWritten() - before) + " bytes, the header says " +
                             std::to_string(expected), path, before, it.name);
    }
    if (!exportdetail::report(progress, 1.0, "finishing"))
        return exportdetail::cancelled(path);
    const int64_t written = file->bytesWritten();
    if (Status s = file->commit(); !s)
        return s.error();
    return written;
}

Result<ExportReport> writeSafetensorsExport(const Model& m, const std::vector<ExportEntry>& entries,
                                            const ExportOptions& opts, const ExportProgress& progress, bool fakeQuant)
{
    std::map<std::string, const ExportEntry*> byName;
    for (const ExportEntry& e : entries) {
        if (!m.find(e.quantized.name))
            return makeError("no-tensor", "quantized tensor '" + e.quantized.name + "' is not in the model", opts.outPath, -1, e.quantized.name);
        if (!byName.emplace(e.quantized.name, &e).second)
            return makeError("duplicate-name", "tensor '" + e.quantized.name + "' is quantized twice", opts.outPath, -1, e.quantized.name);
    }

    ExportReport report;
    std::vector<SafetensorsItem> items;
    std::string skipped;
    for (const Tensor& t : m.tensors) {
        if (!t.group.empty())
            continue;  // optimizer state and the like are not model weights
        auto it = byName.find(t.name);
        if (it == byName.end()) {
            if (!t.decodable()) {
                report.warnings.push_back("tensor '" + t.name + "' (" + t.opaqueType + ") cannot be decoded and was left out");
                skipped += (skipped.empty() ? "" : ",") + t.name;
                continue;
            }
            items.push_back(copyItem(t));
            continue;
        }
        const ExportEntry& e = *it->second;
        const QuantizedTensor& qt = e.quantized;
        // The integers are made (or taken) only when their turn comes to be written.
        auto withPayload = [&m, &e](auto&& use) {
            return [&m, &e, use](AtomicFile& f) -> Status {
                auto payload = EntryPayload::of(m, e);
                if (!payload)
                    return payload.error();
                return use(f, **payload);
            };
        };
        if (fakeQuant) {
            SafetensorsItem d{t.name, DType::F32, qt.shape, {}};
            d.writeData = withPayload([](AtomicFile& f, const QuantizedTensor& p) { return f.write(bytesOf(dequantize(p))); });
            items.push_back(std::move(d));
            continue;
        }
        auto sshape = scaleShape(qt);
        if (!sshape)
            return sshape.error();
        SafetensorsItem q{t.name, qt.spec.isUnsigned ? DType::U8 : DType::I8, qt.shape, {}};
        q.writeData = withPayload([](AtomicFile& f, const QuantizedTensor& p) { return f.write(bytesOf(p.q)); });
        SafetensorsItem s{t.name + "_scale", DType::F32, *sshape, {}};
        s.writeData = [&qt](AtomicFile& f) { return f.write(bytesOf(qt.params.scale)); };
        SafetensorsItem z{t.name + "_zero_point", DType::I32, *sshape, {}};
        z.writeData = [&qt](AtomicFile& f) { return f.write(bytesOf(qt.params.zeroPoint)); };
        items.push_back(std::move(q));
        items.push_back(std::move(s));
        items.push_back(std::move(z));
    }

    std::string scheme;
    ojson perTensor = ojson::object();
    for (const ExportEntry& e : entries) {
        const std::string s = schemeName(e.quantized.spec.scheme);
        scheme = scheme.empty() || scheme == s ? s : "mixed";
        describeExportEntry(e, perTensor[e.quantized.name]);
    }
    SafetensorsMetadata md = {
        {"format", "pt"},  // transformers' from_pretrained expects it
        {"quantlens_format", fakeQuant ? "fake-quant" : "int8"},
        {"quantlens_format_version", "1"},
        {"scheme", scheme.empty() ? "none" : scheme},
        {"source", exportdetail::sourceOf(m, opts)},
        {"source_format", m.format},
        {"quantlens_tensors", perTensor.dump()},
    };
    if (!skipped.empty())
        md.emplace_back("quantlens_skipped", skipped);

    auto written = writeSafetensors(opts.outPath, items, md, m.files, progress);
    if (!written)
        return written.error();
    report.bytesWritten = *written;
    report.files.push_back(opts.outPath);
    return report;
}

}  // namespace quantlens
