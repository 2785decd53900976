#include "io/npy.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <unordered_set>

#include <zip.h>

#include "io/mappedfile.h"

namespace quantlens {

namespace {

// numpy itself refuses headers over 10,000 bytes unless told otherwise
// (np.load max_header_size); a megabyte leaves room for odd writers.
constexpr uint32_t kMaxHeaderBytes = 1u << 20;
// Deflate cannot expand by more than 1032:1 (RFC 1951 max ratio), so a member
// claiming more than that over its compressed size is lying.
constexpr uint64_t kMaxDeflateRatio = 1032;
constexpr uint64_t kMaxMemberBytes = 16ull << 30;

struct NpyHeader {
    DType dtype = DType::F32;
    bool bigEndian = false;
    bool fortran = false;
    std::vector<int64_t> shape;
};

// A strict reader for the one Python literal numpy writes:
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// Only strings, True/False and tuples of ints are accepted; nothing is evaluated.
class DictParser {
public:
    explicit DictParser(std::string_view s) : s_(s) {}

    std::optional<std::string> parse(NpyHeader& h)
    {
        bool haveDescr = false, haveFortran = false, haveShape = false;
        std::string descr;
        skipSpace();
        if (!eat('{'))
            return "header does not start with '{'";
        for (;;) {
            skipSpace();
            if (eat('}'))
                break;
            std::string key;
            if (!parseString(key))
                return "expected a quoted key at header position " + std::to_string(pos_);
            skipSpace();
            if (!eat(':'))
                return "expected ':' after key '" + key + "'";
            skipSpace();
            if (key == "descr") {
                if (haveDescr)
                    return std::string("key 'descr' appears twice");
                haveDescr = true;
                if (peek() == '[')
                    return std::string("structured dtypes (descr is a list) are not supported");
                if (!parseString(descr))
                    return std::string("descr is not a quoted string");
            } else if (key == "fortran_order") {
                if (haveFortran)
                    return std::string("key 'fortran_order' appears twice");
                haveFortran = true;
                if (eatWord("True"))
                    h.fortran = true;
                else if (eatWord("False"))
                    h.fortran = false;
                else
                    return std::string("fortran_order is not True or False");
            } else if (key == "shape") {
                if (haveShape)
                    return std::string("key 'shape' appears twice");
                haveShape = true;
                if (auto err = parseShape(h.shape))
                    return err;
            } else {
                return "unexpected key '" + key + "' in header";
            }
            skipSpace();
            if (eat(','))
                continue;
            skipSpace();
            if (eat('}'))
                break;
            return "expected ',' or '}' at header position " + std::to_string(pos_);
        }
        skipSpace();
        if (pos_ != s_.size())
            return "unexpected text after the header dict at position " + std::to_string(pos_);
        if (!haveDescr || !haveFortran || !haveShape)
            return std::string("header lacks one of 'descr', 'fortran_order', 'shape'");
        return parseDescr(descr, h);
    }

private:
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    bool eat(char c)
    {
        if (peek() != c)
            return false;
        ++pos_;
        return true;
    }
    bool eatWord(std::string_view w)
    {
        if (s_.substr(pos_, w.size()) != w)
            return false;
        pos_ += w.size();
        return true;
    }
    void skipSpace()
    {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }
    bool parseString(std::string& out)
    {
        const char q = peek();
        if (q != '\'' && q != '"')
            return false;
        ++pos_;
        const size_t close = s_.find(q, pos_);
        if (close == std::string_view::npos || close - pos_ > 64)
            return false;
        out.assign(s_.substr(pos_, close - pos_));
        if (out.find('\\') != std::string::npos)
            return false;  // numpy never escapes inside these strings
        pos_ = close + 1;
        return true;
    }
    std::optional<std::string> parseShape(std::vector<int64_t>& shape)
    {
        if (!eat('('))
            return std::string("shape is not a tuple");
        for (;;) {
            skipSpace();
            if (eat(')'))
                return std::nullopt;
            if (peek() == '-')
                return "shape holds a negative dimension at header position " + std::to_string(pos_);
            if (peek() < '0' || peek() > '9')
                return "shape holds a non-integer at header position " + std::to_string(pos_);
            int64_t v = 0;
            while (peek() >= '0' && peek() <= '9') {
                const int digit = peek() - '0';
                if (v > (std::numeric_limits<int64_t>::max() - digit) / 10)
                    return std::string("shape dimension overflows 64 bits");
                v = v * 10 + digit;
                ++pos_;
            }
            eat('L');  // Python 2 longs: files written by numpy under Python 2
            shape.push_back(v);
            if (shape.size() > 64)
                return std::string("shape has more than 64 dimensions");
            skipSpace();
            if (eat(','))
                continue;
            skipSpace();
            if (eat(')'))
                return std::nullopt;
            return "expected ',' or ')' in shape at header position " + std::to_string(pos_);
        }
    }
    static std::optional<std::string> parseDescr(const std::string& d, NpyHeader& h)
    {
        if (d.size() != 3)
            return "unsupported descr '" + d + "'";
        static const struct {
            char kind, size;
            DType t;
        } kTypes[] = {
            {'f', '2', DType::F16}, {'f', '4', DType::F32}, {'f', '8', DType::F64}, {'i', '1', DType::I8},
            {'i', '2', DType::I16}, {'i', '4', DType::I32}, {'i', '8', DType::I64}, {'u', '1', DType::U8},
            {'u', '2', DType::U16}, {'u', '4', DType::U32}, {'u', '8', DType::U64}, {'b', '1', DType::BOOL},
        };
        const char order = d[0];
        if (order != '<' && order != '>' && order != '|' && order != '=')
            return "descr '" + d + "' has no byte-order mark (<, >, | or =)";
        for (const auto& k : kTypes)
            if (k.kind == d[1] && k.size == d[2]) {
                h.dtype = k.t;
                // '|' means "not applicable" and only fits one-byte types.
                if (order == '|' && k.size != '1')
                    return "descr '" + d + "' gives no byte order for a multi-byte type";
                h.bigEndian = order == '>' || (order == '=' && std::endian::native == std::endian::big);
                return std::nullopt;
            }
        return "unsupported descr '" + d + "'";
    }

    std::string_view s_;
    size_t pos_ = 0;
};

// Parses one .npy image held in `bytes` (a mapping or an owned npz member buffer).
Result<Tensor> parseNpy(std::span<const std::byte> bytes, std::shared_ptr<const void> keepAlive, std::string name,
                        const std::string& path)
{
    auto err = [&](std::string code, std::string msg, int64_t off = -1) {
        return makeError(std::move(code), std::move(msg), path, off, name);
    };
    const uint64_t size = bytes.size();
    if (size < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
        return err("bad-magic", "not a .npy image (no \\x93NUMPY magic)", 0);
    const int major = std::to_integer<int>(bytes[6]);
    const int minor = std::to_integer<int>(bytes[7]);
    uint64_t headerLen = 0, headerStart = 0;
    if (major == 1 && minor == 0) {
        headerLen = std::to_integer<uint64_t>(bytes[8]) | (std::to_integer<uint64_t>(bytes[9]) << 8);
        headerStart = 10;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (size < 12)
            return err("truncated", "file ends inside the version " + std::to_string(major) + ".0 header length", 8);
        for (int i = 3; i >= 0; --i)
            headerLen = (headerLen << 8) | std::to_integer<uint64_t>(bytes[size_t(8 + i)]);
        headerStart = 12;
    } else {
        return err("bad-version", "unsupported format version " + std::to_string(major) + "." + std::to_string(minor), 6);
    }
    if (headerLen > kMaxHeaderBytes)
        return err("header-too-large", "header length " + std::to_string(headerLen) + " exceeds the " +
                                           std::to_string(kMaxHeaderBytes) + "-byte limit",
                   8);
    if (headerStart + headerLen > size)
        return err("truncated", "header length " + std::to_string(headerLen) + " runs past the end (" +
                                    std::to_string(size) + " bytes)",
                   8);

    const std::string_view text(reinterpret_cast<const char*>(bytes.data() + headerStart), size_t(headerLen));
    NpyHeader h;
    if (auto msg = DictParser(text).parse(h))
        return err("bad-header", "bad header dict: " + *msg, int64_t(headerStart));

    const auto numel = checkedNumel(h.shape.data(), h.shape.size());
    const auto need = numel ? byteSizeFor(h.dtype, *numel) : std::nullopt;
    if (!need)
        return err("bad-shape", "shape " + shapeString(h.shape) + " overflows a 64-bit byte count", int64_t(headerStart));
    const uint64_t dataStart = headerStart + headerLen;
    const uint64_t have = size - dataStart;
    if (uint64_t(*need) > have)
        return err("truncated", "shape " + shapeString(h.shape) + " " + std::string(dtypeName(h.dtype)) + " needs " +
                                    std::to_string(*need) + " data bytes, file has " + std::to_string(have),
                   int64_t(dataStart));

    Tensor t;
    t.name = std::move(name);
    t.dtype = h.dtype;
    t.shape = std::move(h.shape);
    t.bigEndian = h.bigEndian;
    t.data = bytes.subspan(size_t(dataStart), size_t(*need));
    t.keepAlive = std::move(keepAlive);
    if (h.fortran && t.shape.size() > 1 && *numel > 0) {
        // Column-major: the first index varies fastest.
        t.strides.resize(t.shape.size());
        int64_t s = 1;
        for (size_t d = 0; d < t.shape.size(); ++d) {
            t.strides[d] = s;
            s *= t.shape[d];  // cannot overflow: bounded by the numel checked above
        }
    }
    return t;
}

std::string zipErrorText(zip_error_t* ze)
{
    return ze ? std::string(zip_error_strerror(ze)) : std::string("unknown error");
}

// Reads one member into an owned buffer, never trusting its claimed size further than
// the archive can back it.
Result<std::shared_ptr<std::vector<std::byte>>> readMember(zip_t* z, zip_uint64_t i, const std::string& member,
                                                           uint64_t archiveSize, const std::string& path)
{
    auto err = [&](std::string code, std::string msg) { return makeError(std::move(code), std::move(msg), path + ":" + member); };
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z, i, 0, &st) != 0)
        return err("bad-zip", "cannot stat member: " + zipErrorText(zip_get_error(z)));
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE) || !(st.valid & ZIP_STAT_COMP_METHOD))
        return err("bad-zip", "member has no recorded size or method");
    uint64_t limit = 0;
    if (st.comp_method == ZIP_CM_STORE) {
        if (st.size != st.comp_size)
            return err("bad-zip", "stored member claims " + std::to_string(st.size) + " bytes but occupies " +
                                      std::to_string(st.comp_size));
        limit = archiveSize;
    } else if (st.comp_method == ZIP_CM_DEFLATE) {
        limit = std::min(kMaxMemberBytes, st.comp_size > kMaxMemberBytes / kMaxDeflateRatio
                                              ? kMaxMemberBytes
                                              : st.comp_size * kMaxDeflateRatio + 1024);
    } else {
        return err("bad-zip", "compression method " + std::to_string(st.comp_method) + " is not supported (stored or deflate only)");
    }
    if (st.comp_size > archiveSize || st.size > limit)
        return err("member-too-large", "member claims " + std::to_string(st.size) + " bytes (" +
                                           std::to_string(st.comp_size) + " compressed) in a " +
                                           std::to_string(archiveSize) + "-byte archive");

    zip_file_t* f = zip_fopen_index(z, i, 0);
    if (!f)
        return err("bad-zip", "cannot open member: " + zipErrorText(zip_get_error(z)));
    auto buf = std::make_shared<std::vector<std::byte>>();
    // Grow as bytes arrive rather than trusting st.size for one big allocation.
    buf->reserve(size_t(std::min<uint64_t>(st.size, 64u << 20)));
    std::byte chunk[1 << 16];
    for (;;) {
        const zip_int64_t n = zip_fread(f, chunk, sizeof chunk);
        if (n < 0) {
            std::string msg = zipErrorText(zip_file_get_error(f));
            zip_fclose(f);
            return err("bad-zip", "cannot read member: " + msg);
        }
        if (n == 0)
            break;
        if (buf->size() + uint64_t(n) > st.size) {
            zip_fclose(f);
            return err("bad-zip", "member inflates beyond its recorded size of " + std::to_string(st.size) + " bytes");
        }
        buf->insert(buf->end(), chunk, chunk + n);
    }
    const int rc = zip_fclose(f);
    if (buf->size() != st.size)
        return err("truncated", "member holds " + std::to_string(buf->size()) + " of its recorded " +
                                    std::to_string(st.size) + " bytes");
    if (rc != 0)
        return err("bad-zip", "member failed its checksum");
    return buf;
}

}  // namespace

Result<Model> readNpy(const std::string& path)
{
    auto mapped = MappedFile::open(path);
    if (!mapped)
        return mapped.error();
    const std::shared_ptr<const MappedFile> file = *mapped;
    auto t = parseNpy(file->bytes(), file, std::filesystem::path(path).stem().string(), path);
    if (!t)
        return t.error();
    Model m;
    m.format = "npy";
    m.files.push_back(path);
    m.tensors.push_back(std::move(*t));
    return m;
}

Result<Model> readNpz(const std::string& path)
{
    auto mapped = MappedFile::open(path);
    if (!mapped)
        return mapped.error();
    const std::shared_ptr<const MappedFile> file = *mapped;
    const auto bytes = file->bytes();
    if (bytes.empty())
        return makeError("empty", "file is empty", path, 0);

    // Open the zip over the mapping we already hold, so the archive libzip sees is
    // exactly the bytes we bounds-check against.
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &ze);
    if (!src) {
        std::string msg = zipErrorText(&ze);
        zip_error_fini(&ze);
        return makeError("bad-zip", "cannot read archive: " + msg, path);
    }
    zip_t* z = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    if (!z) {
        zip_source_free(src);
        std::string msg = zipErrorText(&ze);
        zip_error_fini(&ze);
        return makeError("bad-zip", "not a readable zip archive: " + msg, path);
    }
    zip_error_fini(&ze);
    struct Closer {
        zip_t* z;
        ~Closer() { zip_discard(z); }
    } closer{z};

    Model m;
    m.format = "npz";
    std::unordered_set<std::string> names;
    uint64_t totalBytes = 0;
    const uint64_t totalBudget = std::min<uint64_t>(kMaxMemberBytes, uint64_t(bytes.size()) * kMaxDeflateRatio + 1024);
    m.files.push_back(path);
    const zip_int64_t n = zip_get_num_entries(z, 0);
    for (zip_int64_t i = 0; i < n; ++i) {
        const char* cname = zip_get_name(z, zip_uint64_t(i), 0);
        if (!cname)
            return makeError("bad-zip", "member " + std::to_string(i) + " has no readable name", path);
        std::string member(cname);
        // np.load only turns *.npy members into arrays; anything else is not a tensor.
        if (member.size() < 4 || member.compare(member.size() - 4, 4, ".npy") != 0)
            continue;
        auto buf = readMember(z, zip_uint64_t(i), member, bytes.size(), path);
        if (!buf)
            return buf.error();
        // Members whose entries share one compressed stream (a non-recursive zip bomb)
        // each pass the per-member bound; the archive as a whole cannot legitimately
        // inflate beyond deflate's ratio over all its bytes.
        totalBytes += (*buf)->size();
        if (totalBytes > totalBudget)
            return makeError("member-too-large", "members inflate to more than " + std::to_string(totalBudget) +
                                                     " bytes in a " + std::to_string(bytes.size()) +
                                                     "-byte archive (overlapping members?)",
                             path + ":" + member);
        std::string name = member.substr(0, member.size() - 4);
        const std::span<const std::byte> view((*buf)->data(), (*buf)->size());
        auto t = parseNpy(view, *buf, name, path + ":" + member);
        if (!t)
            return t.error();
        if (!names.insert(t->name).second)
            return makeError("duplicate-tensor", "archive holds two members with this name", path, -1, t->name);
        m.tensors.push_back(std::move(*t));
    }
    if (m.tensors.empty())
        return makeError("empty", "archive holds no .npy members", path);
    return m;
}

}  // namespace quantlens
