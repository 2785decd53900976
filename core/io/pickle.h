#pragma once
// A restricted unpickler: it turns a pickle into a graph of plain values and never
// executes anything. Only globals on the caller's allow-list may appear; REDUCE and
// NEWOBJ on them build inert Call nodes that the caller interprets itself
// (torch's _rebuild_tensor_v2, OrderedDict, ...). Every length, memo index and stack
// depth is checked against the pickle's own size before use.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "result.h"

namespace quantlens::pickle {

using NodeId = uint32_t;
inline constexpr NodeId kNoNode = 0xffffffffu;

enum class Kind : uint8_t {
    None, Bool, Int, BigInt, Float, String, Bytes,
    List, Tuple, Dict, Set,
    Global,        // a reference to an allowed callable/class: `text` = "module.name"
    Call,          // REDUCE/NEWOBJ of an allowed Global: `callee`, `args` (not executed)
    PersistentId,  // BINPERSID: `args` is the id object (torch: ('storage', type, key, ...))
};

struct Node {
    Kind kind = Kind::None;
    bool boolean = false;
    int64_t integer = 0;
    double real = 0;
    std::string text;            // String/Bytes: raw bytes; BigInt: little-endian two's complement; Global: "module.name"
    std::vector<NodeId> items;   // List/Tuple/Set elements; Dict: key0, value0, key1, value1, ...
    NodeId callee = kNoNode;     // Call: the Global node
    NodeId args = kNoNode;       // Call: the argument tuple; PersistentId: the id
    NodeId state = kNoNode;      // BUILD state, kept but not applied

    bool isContainer() const { return kind == Kind::List || kind == Kind::Tuple || kind == Kind::Dict || kind == Kind::Set; }
    bool isScalar() const
    {
        return kind == Kind::None || kind == Kind::Bool || kind == Kind::Int || kind == Kind::BigInt ||
               kind == Kind::Float || kind == Kind::String;
    }
};

// What an allowed global turns into when called.
enum class GlobalKind : uint8_t {
    Dict,    // collections.OrderedDict, builtins.dict: () or ([(k, v), ...]) give a Dict
    Set,     // builtins.set / frozenset: () or ([items]) give a Set
    Opaque,  // anything else: a Call node for the caller to interpret
};

struct AllowedGlobal {
    std::string_view module;
    std::string_view name;
    GlobalKind kind;
};

struct Options {
    std::span<const AllowedGlobal> allowed;
    // A state_dict needs a few levels of MARK; 1000 matches CPython's recursion limit.
    size_t maxMarkDepth = 1000;
    // Pickle batches SETITEMS/APPENDS by 1000 pairs, so real pickles stay far below this.
    size_t maxStackDepth = 100000;
    // Nodes cost ~100 bytes each while the opcodes that make them cost 1-3: cap them so a
    // pickle of repeated tiny opcodes cannot turn megabytes into gigabytes. A state_dict
    // needs about 15 nodes per tensor.
    size_t maxNodes = size_t(1) << 22;
    // Container items, counting copies (OrderedDict(list) copies its argument); also
    // capped at twice the pickle's size, which honest pickles never approach.
    size_t maxItems = size_t(1) << 26;
};

struct Pickle {
    std::vector<Node> nodes;
    NodeId root = kNoNode;
    size_t end = 0;  // offset just past STOP: a legacy torch.save file is several pickles in a row

    const Node& at(NodeId id) const { return nodes[id]; }
};

// Reads one pickle from the start of `bytes`. Errors carry the byte offset within `bytes`.
// A refused global is reported as code "unsafe-pickle" with the global's name.
Result<Pickle> unpickle(std::span<const std::byte> bytes, const Options& options);

// Python-like rendering of a scalar node (3, 0.001, 'adam' -> adam, True, None), for metadata.
std::string scalarText(const Node& n);

}  // namespace quantlens::pickle
