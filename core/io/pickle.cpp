#include "io/pickle.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <cstdio>
#include <limits>
#include <unordered_map>

namespace quantlens::pickle {

namespace {

// Opcodes of pickle protocols 2-5 (CPython Lib/pickle.py names).
enum Op : uint8_t {
    MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2',
    BININT = 'J', BININT1 = 'K', BININT2 = 'M', NONE = 'N', BINPERSID = 'Q', REDUCE = 'R',
    BINSTRING = 'T', SHORT_BINSTRING = 'U', BINUNICODE = 'X', APPEND = 'a', BUILD = 'b',
    GLOBAL = 'c', DICT = 'd', EMPTY_DICT = '}', APPENDS = 'e', BINGET = 'h', LONG_BINGET = 'j',
    LIST = 'l', EMPTY_LIST = ']', BINPUT = 'q', LONG_BINPUT = 'r', SETITEM = 's', TUPLE = 't',
    EMPTY_TUPLE = ')', SETITEMS = 'u', BINFLOAT = 'G',
    PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85,
    TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b,
    SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f,
    ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94,
    FRAME = 0x95, BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
    BINBYTES = 'B', SHORT_BINBYTES = 'C',
    INST = 'i', OBJ = 'o',
};

class Reader {
public:
    Reader(std::span<const std::byte> bytes, const Options& opt) : b_(bytes), opt_(opt) {}

    Result<Pickle> run();

private:
    std::span<const std::byte> b_;
    const Options& opt_;
    size_t pos_ = 0;
    size_t opStart_ = 0;
    Pickle out_;
    std::vector<NodeId> stack_;
    std::vector<size_t> marks_;
    // A map, not a vector: memo indices may be sparse, and a vector sized by the
    // largest index would let a 10-byte pickle allocate gigabytes.
    std::unordered_map<uint64_t, NodeId> memo_;

    Error fail(std::string msg, std::string code = "bad-pickle") const
    {
        return makeError(std::move(code), std::move(msg), {}, static_cast<int64_t>(opStart_));
    }
    bool have(size_t n) const { return n <= b_.size() - pos_; }
    uint64_t readLE(size_t n)
    {
        uint64_t v = 0;
        for (size_t i = 0; i < n; ++i)
            v |= uint64_t(std::to_integer<uint8_t>(b_[pos_ + i])) << (8 * i);
        pos_ += n;
        return v;
    }
    size_t items_ = 0;
    bool overBudget_ = false;

    NodeId add(Node n)
    {
        items_ += n.items.size();
        if (out_.nodes.size() >= nodeBudget() || items_ > itemBudget()) {
            // Reported by the main loop after this opcode; return a valid id meanwhile.
            overBudget_ = true;
            return out_.nodes.empty() ? 0 : static_cast<NodeId>(out_.nodes.size() - 1);
        }
        out_.nodes.push_back(std::move(n));
        return static_cast<NodeId>(out_.nodes.size() - 1);
    }
    size_t nodeBudget() const { return std::min(opt_.maxNodes, b_.size() + 16); }
    size_t itemBudget() const { return std::min(opt_.maxItems, 2 * b_.size() + 1024); }
    bool addItems(size_t n)
    {
        items_ += n;
        return items_ <= itemBudget();
    }
    NodeId addKind(Kind k)
    {
        Node n;
        n.kind = k;
        return add(std::move(n));
    }
    Status push(NodeId id)
    {
        if (stack_.size() >= opt_.maxStackDepth)
            return fail("pickle stack deeper than " + std::to_string(opt_.maxStackDepth) + " entries");
        stack_.push_back(id);
        return Ok{};
    }
    Result<NodeId> pop()
    {
        if (stack_.size() <= (marks_.empty() ? 0 : marks_.back()))
            return fail("pickle stack underflow");
        NodeId v = stack_.back();
        stack_.pop_back();
        return v;
    }
    Result<NodeId> top()
    {
        if (stack_.size() <= (marks_.empty() ? 0 : marks_.back()))
            return fail("pickle stack underflow");
        return stack_.back();
    }
    // Items above the topmost MARK, which is removed.
    Result<std::vector<NodeId>> popMark()
    {
        if (marks_.empty())
            return fail("pickle opcode needs a MARK but none is open");
        const size_t m = marks_.back();
        marks_.pop_back();
        std::vector<NodeId> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
        stack_.resize(m);
        return items;
    }
    Status checkRoom(size_t n, const char* what)
    {
        if (!have(n))
            return fail(std::string("pickle ends inside ") + what + " (needs " + std::to_string(n) + " bytes, " +
                        std::to_string(b_.size() - pos_) + " left)", "truncated");
        return Ok{};
    }
    Result<std::string> readBytes(uint64_t n, const char* what)
    {
        if (n > b_.size() - pos_)
            return fail(std::string(what) + " claims " + std::to_string(n) + " bytes but only " +
                        std::to_string(b_.size() - pos_) + " remain", "truncated");
        std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<size_t>(n));
        pos_ += static_cast<size_t>(n);
        return s;
    }
    Result<std::string> readLine()
    {
        // GLOBAL's module and name are newline-terminated; a name longer than this is not Python.
        constexpr size_t kMaxLine = 1024;
        for (size_t i = pos_; i < b_.size() && i - pos_ <= kMaxLine; ++i) {
            if (std::to_integer<char>(b_[i]) == '\n') {
                std::string s(reinterpret_cast<const char*>(b_.data() + pos_), i - pos_);
                pos_ = i + 1;
                return s;
            }
        }
        return fail("GLOBAL name is not newline-terminated within 1024 bytes", "truncated");
    }
    Status global(const std::string& module, const std::string& name);
    Status memoPut(uint64_t idx);
    Status memoGet(uint64_t idx);
    Status call(NodeId callee, NodeId args);
    Status setItems(NodeId dict, const std::vector<NodeId>& kv);
    Status appendItems(NodeId list, const std::vector<NodeId>& items);
    Status makeInt(const std::string& le);
};

Status Reader::global(const std::string& module, const std::string& name)
{
    for (const AllowedGlobal& g : opt_.allowed) {
        if (g.module == module && g.name == name) {
            Node n;
            n.kind = Kind::Global;
            n.text = module + "." + name;
            n.integer = static_cast<int64_t>(g.kind);
            return push(add(std::move(n)));
        }
    }
    std::string shown = module + "." + name;
    for (char& c : shown)
        if (static_cast<unsigned char>(c) < 0x20)
            c = '?';
    if (shown.size() > 200)
        shown = shown.substr(0, 200) + "...";
    return fail("pickle global '" + shown + "' is not allowed (state_dict readers never execute code)", "unsafe-pickle");
}

Status Reader::memoPut(uint64_t idx)
{
    // No pickle can define more memo entries than it has bytes, so larger indices are lies.
    if (idx > b_.size())
        return fail("memo index " + std::to_string(idx) + " is larger than the pickle could hold");
    auto t = top();
    if (!t)
        return t.error();
    memo_[idx] = *t;
    return Ok{};
}

Status Reader::memoGet(uint64_t idx)
{
    auto it = memo_.find(idx);
    if (it == memo_.end())
        return fail("memo index " + std::to_string(idx) + " was never stored");
    return push(it->second);
}

Status Reader::makeInt(const std::string& le)
{
    Node n;
    if (le.size() <= 8) {
        uint64_t v = 0;
        for (size_t i = 0; i < le.size(); ++i)
            v |= uint64_t(static_cast<uint8_t>(le[i])) << (8 * i);
        if (!le.empty() && le.size() < 8 && (static_cast<uint8_t>(le.back()) & 0x80))
            v |= ~uint64_t(0) << (8 * le.size());  // sign-extend two's complement
        n.kind = Kind::Int;
        n.integer = static_cast<int64_t>(v);
    } else {
        n.kind = Kind::BigInt;
        n.text = le;
    }
    return push(add(std::move(n)));
}

Status Reader::setItems(NodeId dict, const std::vector<NodeId>& kv)
{
    if (kv.size() % 2 != 0)
        return fail("SETITEMS has an odd number of items");
    if (out_.nodes[dict].kind != Kind::Dict)
        return fail("SETITEM(S) on a value that is not a dict");
    if (!addItems(kv.size()))
        return fail("pickle builds more container items than its size allows");
    auto& items = out_.nodes[dict].items;
    items.insert(items.end(), kv.begin(), kv.end());
    return Ok{};
}

Status Reader::appendItems(NodeId list, const std::vector<NodeId>& items)
{
    const Kind k = out_.nodes[list].kind;
    if (k != Kind::List && k != Kind::Set)
        return fail("APPEND(S)/ADDITEMS on a value that is not a list or set");
    if (!addItems(items.size()))
        return fail("pickle builds more container items than its size allows");
    auto& v = out_.nodes[list].items;
    v.insert(v.end(), items.begin(), items.end());
    return Ok{};
}

// Calling an allowed global never runs it: dict/set constructors are modelled, the rest
// become Call nodes that the caller interprets (or ignores).
Status Reader::call(NodeId callee, NodeId args)
{
    const Node& c = out_.nodes[callee];
    if (c.kind != Kind::Global)
        return fail("REDUCE/NEWOBJ on a value that is not an allowed global");
    const Node& a = out_.nodes[args];
    if (a.kind != Kind::Tuple)
        return fail("REDUCE/NEWOBJ arguments are not a tuple");
    const auto kind = static_cast<GlobalKind>(c.integer);
    if (kind == GlobalKind::Dict || kind == GlobalKind::Set) {
        const bool isDict = kind == GlobalKind::Dict;
        Node n;
        n.kind = isDict ? Kind::Dict : Kind::Set;
        if (a.items.size() > 1)
            return fail(c.text + " called with more than one argument");
        if (a.items.size() == 1) {
            const Node& src = out_.nodes[a.items[0]];
            if (src.kind != Kind::List && src.kind != Kind::Tuple && !(isDict && src.kind == Kind::Dict) &&
                !(!isDict && src.kind == Kind::Set))
                return fail(c.text + " called with an argument that is not a list, tuple or dict");
            // The copy is counted by add(): repeated OrderedDict(big_list) hits the budget.
            if (isDict && src.kind != Kind::Dict) {
                for (NodeId pid : src.items) {
                    const Node& pair = out_.nodes[pid];
                    if ((pair.kind != Kind::Tuple && pair.kind != Kind::List) || pair.items.size() != 2)
                        return fail(c.text + " item is not a (key, value) pair");
                    n.items.push_back(pair.items[0]);
                    n.items.push_back(pair.items[1]);
                }
            } else {
                n.items = src.items;
            }
        }
        return push(add(std::move(n)));
    }
    Node n;
    n.kind = Kind::Call;
    n.callee = callee;
    n.args = args;
    return push(add(std::move(n)));
}

Result<Pickle> Reader::run()
{
    if (b_.size() >= std::numeric_limits<NodeId>::max() / 2)
        return makeError("too-large", "pickle is larger than 2 GiB", {}, 0);
    while (pos_ < b_.size()) {
        opStart_ = pos_;
        const auto op = std::to_integer<uint8_t>(b_[pos_++]);
        Status st = Ok{};
        switch (op) {
        case PROTO: {
            if (auto r = checkRoom(1, "PROTO"); !r)
                return r.error();
            const auto v = readLE(1);
            if (v > 5)
                return fail("unsupported pickle protocol " + std::to_string(v));
            break;
        }
        case FRAME:
            if (auto r = checkRoom(8, "FRAME"); !r)
                return r.error();
            if (readLE(8) > b_.size() - pos_)
                return fail("FRAME claims more bytes than the pickle has", "truncated");
            break;  // framing is only a read-ahead hint
        case STOP: {
            auto v = pop();
            if (!v)
                return v.error();
            out_.root = *v;
            out_.end = pos_;
            return std::move(out_);
        }
        case MARK:
            if (marks_.size() >= opt_.maxMarkDepth)
                return fail("pickle nests MARKs deeper than " + std::to_string(opt_.maxMarkDepth) + " levels");
            marks_.push_back(stack_.size());
            break;
        case POP:
            if (auto v = pop(); !v)
                return v.error();
            break;
        case POP_MARK:
            if (auto v = popMark(); !v)
                return v.error();
            break;
        case DUP: {
            auto v = top();
            if (!v)
                return v.error();
            st = push(*v);
            break;
        }
        case NONE: st = push(addKind(Kind::None)); break;
        case NEWTRUE:
        case NEWFALSE: {
            Node n;
            n.kind = Kind::Bool;
            n.boolean = op == NEWTRUE;
            st = push(add(std::move(n)));
            break;
        }
        case BININT:
        case BININT1:
        case BININT2: {
            const size_t w = op == BININT ? 4 : op == BININT2 ? 2 : 1;
            if (auto r = checkRoom(w, "an integer"); !r)
                return r.error();
            uint64_t v = readLE(w);
            Node n;
            n.kind = Kind::Int;
            n.integer = op == BININT ? static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(v)))
                                     : static_cast<int64_t>(v);
            st = push(add(std::move(n)));
            break;
        }
        case LONG1:
        case LONG4: {
            const size_t w = op == LONG1 ? 1 : 4;
            if (auto r = checkRoom(w, "LONG"); !r)
                return r.error();
            const uint64_t raw = readLE(w);
            if (op == LONG4 && (raw & 0x80000000u))
                return fail("LONG4 has a negative length");
            auto s = readBytes(raw, "LONG");
            if (!s)
                return s.error();
            st = makeInt(*s);
            break;
        }
        case BINFLOAT: {
            if (auto r = checkRoom(8, "BINFLOAT"); !r)
                return r.error();
            uint64_t v = 0;
            for (int i = 0; i < 8; ++i)
                v = (v << 8) | std::to_integer<uint8_t>(b_[pos_ + size_t(i)]);  // big-endian
            pos_ += 8;
            Node n;
            n.kind = Kind::Float;
            n.real = std::bit_cast<double>(v);
            st = push(add(std::move(n)));
            break;
        }
        case BINUNICODE:
        case SHORT_BINUNICODE:
        case BINUNICODE8:
        case BINSTRING:
        case SHORT_BINSTRING:
        case BINBYTES:
        case SHORT_BINBYTES:
        case BINBYTES8:
        case BYTEARRAY8: {
            const size_t w = (op == SHORT_BINUNICODE || op == SHORT_BINSTRING || op == SHORT_BINBYTES) ? 1
                             : (op == BINUNICODE8 || op == BINBYTES8 || op == BYTEARRAY8)             ? 8
                                                                                                       : 4;
            if (auto r = checkRoom(w, "a string length"); !r)
                return r.error();
            uint64_t len = readLE(w);
            if (op == BINSTRING && (len & 0x80000000u))
                return fail("BINSTRING has a negative length");
            auto s = readBytes(len, "a string");
            if (!s)
                return s.error();
            Node n;
            const bool isText = op == BINUNICODE || op == SHORT_BINUNICODE || op == BINUNICODE8 ||
                                op == BINSTRING || op == SHORT_BINSTRING;
            n.kind = isText ? Kind::String : Kind::Bytes;
            n.text = std::move(*s);
            st = push(add(std::move(n)));
            break;
        }
        case EMPTY_DICT: st = push(addKind(Kind::Dict)); break;
        case EMPTY_LIST: st = push(addKind(Kind::List)); break;
        case EMPTY_TUPLE: st = push(addKind(Kind::Tuple)); break;
        case EMPTY_SET: st = push(addKind(Kind::Set)); break;
        case TUPLE:
        case LIST:
        case DICT:
        case FROZENSET: {
            auto items = popMark();
            if (!items)
                return items.error();
            Node n;
            n.kind = op == TUPLE ? Kind::Tuple : op == LIST ? Kind::List : op == DICT ? Kind::Dict : Kind::Set;
            if (op == DICT && items->size() % 2 != 0)
                return fail("DICT has an odd number of items");
            n.items = std::move(*items);
            st = push(add(std::move(n)));
            break;
        }
        case TUPLE1:
        case TUPLE2:
        case TUPLE3: {
            const size_t k = size_t(op - TUPLE1) + 1;
            const size_t floor = marks_.empty() ? 0 : marks_.back();
            if (stack_.size() < floor + k)
                return fail("pickle stack underflow");
            Node n;
            n.kind = Kind::Tuple;
            n.items.assign(stack_.end() - static_cast<std::ptrdiff_t>(k), stack_.end());
            stack_.resize(stack_.size() - k);
            st = push(add(std::move(n)));
            break;
        }
        case APPEND: {
            auto v = pop();
            if (!v)
                return v.error();
            auto l = top();
            if (!l)
                return l.error();
            st = appendItems(*l, {*v});
            break;
        }
        case APPENDS:
        case ADDITEMS: {
            auto items = popMark();
            if (!items)
                return items.error();
            auto l = top();
            if (!l)
                return l.error();
            st = appendItems(*l, *items);
            break;
        }
        case SETITEM: {
            auto v = pop();
            if (!v)
                return v.error();
            auto k = pop();
            if (!k)
                return k.error();
            auto d = top();
            if (!d)
                return d.error();
            st = setItems(*d, {*k, *v});
            break;
        }
        case SETITEMS: {
            auto items = popMark();
            if (!items)
                return items.error();
            auto d = top();
            if (!d)
                return d.error();
            st = setItems(*d, *items);
            break;
        }
        case BINPUT:
        case LONG_BINPUT: {
            const size_t w = op == BINPUT ? 1 : 4;
            if (auto r = checkRoom(w, "a memo index"); !r)
                return r.error();
            st = memoPut(readLE(w));
            break;
        }
        case MEMOIZE: st = memoPut(memo_.size()); break;  // CPython: len(memo)
        case BINGET:
        case LONG_BINGET: {
            const size_t w = op == BINGET ? 1 : 4;
            if (auto r = checkRoom(w, "a memo index"); !r)
                return r.error();
            st = memoGet(readLE(w));
            break;
        }
        case GLOBAL: {
            auto module = readLine();
            if (!module)
                return module.error();
            auto name = readLine();
            if (!name)
                return name.error();
            st = global(*module, *name);
            break;
        }
        case STACK_GLOBAL: {
            auto name = pop();
            if (!name)
                return name.error();
            auto module = pop();
            if (!module)
                return module.error();
            if (out_.nodes[*name].kind != Kind::String || out_.nodes[*module].kind != Kind::String)
                return fail("STACK_GLOBAL operands are not strings");
            // Copies: global() appends nodes, which may move the strings.
            const std::string m = out_.nodes[*module].text, n = out_.nodes[*name].text;
            st = global(m, n);
            break;
        }
        case REDUCE:
        case NEWOBJ: {
            auto args = pop();
            if (!args)
                return args.error();
            auto fn = pop();
            if (!fn)
                return fn.error();
            st = call(*fn, *args);
            break;
        }
        case NEWOBJ_EX: {
            auto kwargs = pop();
            if (!kwargs)
                return kwargs.error();
            auto args = pop();
            if (!args)
                return args.error();
            auto cls = pop();
            if (!cls)
                return cls.error();
            const Node& kw = out_.nodes[*kwargs];
            if (kw.kind != Kind::Dict || !kw.items.empty())
                return fail("NEWOBJ_EX with keyword arguments is not supported");
            st = call(*cls, *args);
            break;
        }
        case BUILD: {
            auto state = pop();
            if (!state)
                return state.error();
            auto obj = top();
            if (!obj)
                return obj.error();
            // Kept for the caller (e.g. OrderedDict._metadata); never applied as attributes.
            out_.nodes[*obj].state = *state;
            break;
        }
        case BINPERSID: {
            auto pid = pop();
            if (!pid)
                return pid.error();
            Node n;
            n.kind = Kind::PersistentId;
            n.args = *pid;
            st = push(add(std::move(n)));
            break;
        }
        case EXT1:
        case EXT2:
        case EXT4:
            return fail("pickle uses the copyreg extension registry (EXT opcodes), which could name any global",
                        "unsafe-pickle");
        case INST:
        case OBJ:
            return fail(std::string("pickle opcode ") + (op == INST ? "INST" : "OBJ") +
                            " instantiates arbitrary classes and is not allowed",
                        "unsafe-pickle");
        case NEXT_BUFFER:
        case READONLY_BUFFER:
            return fail("pickle uses out-of-band buffers (protocol 5), which torch.save never writes");
        default: {
            char hex[8];
            std::snprintf(hex, sizeof hex, "0x%02x", op);
            return fail(std::string("unsupported pickle opcode ") + hex);
        }
        }
        if (!st)
            return st.error();
        if (overBudget_)
            return fail("pickle builds more than " + std::to_string(nodeBudget()) + " values or " +
                        std::to_string(itemBudget()) + " container items; not a state_dict");
    }
    opStart_ = pos_;
    return fail("pickle ends without STOP", "truncated");
}

}  // namespace

Result<Pickle> unpickle(std::span<const std::byte> bytes, const Options& options)
{
    Reader r(bytes, options);
    return r.run();
}

std::string scalarText(const Node& n)
{
    switch (n.kind) {
    case Kind::None: return "None";
    case Kind::Bool: return n.boolean ? "True" : "False";
    case Kind::Int: return std::to_string(n.integer);
    case Kind::Float: {
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof buf, n.real);  // shortest round-trip, like repr()
        return std::string(buf, r.ptr);
    }
    case Kind::String: return n.text;
    case Kind::BigInt: {
        // Little-endian two's complement; shown as hex because decimal needs bignum arithmetic.
        static const char* digits = "0123456789abcdef";
        const bool neg = !n.text.empty() && (static_cast<uint8_t>(n.text.back()) & 0x80);
        std::string s = neg ? "-0x" : "0x";
        std::string mag = n.text;
        if (neg) {  // two's complement negate
            unsigned carry = 1;
            for (char& c : mag) {
                unsigned v = static_cast<uint8_t>(~static_cast<uint8_t>(c)) + carry;
                c = static_cast<char>(v & 0xff);
                carry = v >> 8;
            }
        }
        bool lead = true;
        for (size_t i = mag.size(); i-- > 0;) {
            const auto v = static_cast<uint8_t>(mag[i]);
            for (int sh : {4, 0}) {
                const int d = (v >> sh) & 0xf;
                if (lead && d == 0)
                    continue;
                lead = false;
                s += digits[d];
            }
        }
        if (lead)
            s += '0';
        return s;
    }
    case Kind::Bytes: return "<" + std::to_string(n.text.size()) + " bytes>";
    default: return {};
    }
}

}  // namespace quantlens::pickle
