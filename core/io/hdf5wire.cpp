#include "io/hdf5wire.h"

#include <algorithm>
#include <cstring>

#include "io/mappedfile.h"

namespace quantlens::hdf5wire {

namespace {

constexpr uint32_t kMaxFrame = uint32_t(256) << 20;
constexpr uint32_t kMaxItems = uint32_t(1) << 22;
constexpr size_t kHeader = 5;

enum Source : uint8_t { kEmpty = 0, kFile = 1, kShared = 2 };

struct Writer {
    std::string out;
    void u8(uint8_t v) { out.push_back(char(v)); }
    template <class T>
    void pod(T v)
    {
        out.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
    void str(const std::string& s)
    {
        pod(uint32_t(s.size()));
        out += s;
    }
};

// Reads what Writer wrote; a read past the end sets bad and yields zeros or "".
struct Reader {
    const std::string& in;
    size_t pos = 0;
    bool bad = false;
    template <class T>
    T pod()
    {
        T v{};
        if (bad || in.size() - pos < sizeof v) {
            bad = true;
            return v;
        }
        std::memcpy(&v, in.data() + pos, sizeof v);
        pos += sizeof v;
        return v;
    }
    std::string str()
    {
        const auto n = pod<uint32_t>();
        if (bad || in.size() - pos < n) {
            bad = true;
            return {};
        }
        std::string s = in.substr(pos, n);
        pos += n;
        return s;
    }
    // A count of items, each at least minBytes long in what is left: a corrupt count
    // cannot make the reader reserve or loop more than the payload allows.
    uint32_t count(size_t minBytes)
    {
        const auto n = pod<uint32_t>();
        if (bad || n > kMaxItems || uint64_t(n) * minBytes > in.size() - pos) {
            bad = true;
            return 0;
        }
        return n;
    }
};

std::string frame(char kind, const std::string& payload)
{
    Writer w;
    w.u8(uint8_t(kind));
    w.pod(uint32_t(payload.size()));
    return w.out + payload;
}

// Bytes per tensor record before its strings' and dims' contents.
constexpr size_t kMinTensorRecord = 4 + 1 + 4 + 1 + 1 + 4 + 4 + 1 + 8 + 8;

}  // namespace

std::string progressFrame(double fraction)
{
    Writer w;
    w.pod(fraction);
    return frame('P', w.out);
}

std::string resultFrame(const Result<Model>& r, const std::vector<Region>& regions)
{
    Writer w;
    if (!r.ok()) {
        const Error& e = r.error();
        w.u8(0);
        w.str(e.code);
        w.str(e.message);
        w.str(e.path);
        w.pod(e.offset);
        w.str(e.tensor);
        return frame('R', w.out);
    }
    const Model& m = *r;
    w.u8(1);
    w.str(m.format);
    w.pod(uint32_t(m.metadata.size()));
    for (const auto& [k, v] : m.metadata) {
        w.str(k);
        w.str(v);
    }
    w.pod(uint32_t(m.tensors.size()));
    for (const Tensor& t : m.tensors) {
        w.str(t.name);
        w.u8(uint8_t(t.dtype));
        w.pod(uint32_t(t.shape.size()));
        for (int64_t d : t.shape)
            w.pod(d);
        w.u8(uint8_t(t.layout));
        w.u8(t.bigEndian ? 1 : 0);
        w.str(t.group);
        w.str(t.note);
        const std::byte* p = t.data.data();
        const auto n = int64_t(t.data.size());
        uint8_t source = kEmpty;
        int64_t offset = 0;
        if (n > 0) {
            auto in = std::find_if(regions.begin(), regions.end(),
                                   [&](const Region& g) { return p >= g.base && p + n <= g.base + g.bytes; });
            if (in != regions.end()) {
                source = kShared;
                offset = in->offset + (p - in->base);
            } else {
                const auto* f = static_cast<const MappedFile*>(t.keepAlive.get());
                source = kFile;
                offset = f ? p - f->bytes().data() : -1;  // the parent rejects -1
            }
        }
        w.u8(source);
        w.pod(offset);
        w.pod(n);
    }
    return frame('R', w.out);
}

bool FrameReader::feed(const char* data, size_t n, const Events& on)
{
    if (!error_.empty() || cancelled_)
        return false;
    buf_.append(data, n);
    size_t pos = 0;
    while (buf_.size() - pos >= kHeader) {
        const char kind = buf_[pos];
        uint32_t len = 0;
        std::memcpy(&len, buf_.data() + pos + 1, sizeof len);
        if (len > kMaxFrame || (kind != 'P' && kind != 'R') || (kind == 'P' && len != sizeof(double))) {
            error_ = "the reading process sent a malformed message";
            return false;
        }
        if (buf_.size() - pos - kHeader < len)
            break;
        if (kind == 'P') {
            double f = 0;
            std::memcpy(&f, buf_.data() + pos + kHeader, sizeof f);
            f = f >= 0.0 ? std::min(f, 1.0) : 0.0;  // a NaN becomes 0
            if (on.progress && !on.progress(f)) {
                cancelled_ = true;
                return false;
            }
        } else if (on.result) {
            on.result(buf_.substr(pos + kHeader, len));
        }
        pos += kHeader + len;
    }
    buf_.erase(0, pos);
    return true;
}

Result<Model> decodeResult(const std::string& payload, const std::string& path, const BackingSource& file,
                           const BackingSource& shared)
{
    const auto bad = [&](const std::string& why) { return makeError("bad-hdf5", "the reading process sent " + why, path); };
    Reader r{payload};
    if (r.pod<uint8_t>() != 1) {
        Error e;
        e.code = r.str();
        e.message = r.str();
        r.str();  // the child's path is this path
        e.offset = r.pod<int64_t>();
        e.tensor = r.str();
        if (r.bad || r.pos != payload.size() || e.code.empty())
            return bad("a malformed error");
        e.path = path;
        return e;
    }
    Model m;
    m.files.push_back(path);
    m.format = r.str();
    for (uint32_t i = 0, n = r.count(8); i < n && !r.bad; ++i) {
        std::string k = r.str();
        m.metadata.emplace_back(std::move(k), r.str());
    }
    std::optional<Backing> fileBytes, sharedBytes;
    for (uint32_t i = 0, n = r.count(kMinTensorRecord); i < n && !r.bad; ++i) {
        Tensor t;
        t.name = r.str();
        const auto dtype = r.pod<uint8_t>();
        for (uint32_t d = 0, rank = r.count(8); d < rank && !r.bad; ++d)
            t.shape.push_back(r.pod<int64_t>());
        const auto layout = r.pod<uint8_t>();
        const auto bigEndian = r.pod<uint8_t>();
        t.group = r.str();
        t.note = r.str();
        const auto source = r.pod<uint8_t>();
        const auto offset = r.pod<int64_t>();
        const auto bytes = r.pod<int64_t>();
        if (r.bad)
            break;
        if (dtype >= uint8_t(DType::Opaque) || layout > uint8_t(Layout::InOut) || source > kShared || bigEndian > 1)
            return bad("an unknown type, layout, byte order or source for tensor '" + t.name + "'");
        t.bigEndian = bigEndian == 1;
        t.dtype = DType(dtype);
        t.layout = Layout(layout);
        const auto numel = checkedNumel(t.shape.data(), t.shape.size());
        const auto want = numel ? byteSizeFor(t.dtype, *numel) : std::nullopt;
        if (!want || *want != bytes || (bytes > 0) != (source != kEmpty) || offset < 0)
            return bad("a size that does not match the shape of tensor '" + t.name + "'");
        if (source != kEmpty) {
            std::optional<Backing>& backing = source == kFile ? fileBytes : sharedBytes;
            if (!backing) {
                const BackingSource& get = source == kFile ? file : shared;
                auto b = get ? get() : Result<Backing>(bad("data from a source it does not have"));
                if (!b)
                    return b.error();
                backing = std::move(*b);
            }
            const auto all = backing->bytes;
            if (uint64_t(offset) > all.size() || uint64_t(bytes) > all.size() - uint64_t(offset))
                return bad("a range outside the data for tensor '" + t.name + "'");
            t.data = all.subspan(size_t(offset), size_t(bytes));
            t.keepAlive = backing->keep;
        }
        m.tensors.push_back(std::move(t));
    }
    if (r.bad || r.pos != payload.size())
        return bad("a malformed result");
    return m;
}

}  // namespace quantlens::hdf5wire
