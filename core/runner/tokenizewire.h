#pragma once
// The conversation between core (runner/tokenizer.cpp) and the quantlens-tokenize helper
// (app/tokenize/main.cpp) over the helper's stdin/stdout. Header-only and dependency-free:
// the helper includes it without linking core. Integers are the host's (both ends are the
// same machine and build), little-endian on every platform we build for.
//
//   core   -> helper  u32 kMagic, u32 kVersion, u32 n, n bytes: a serialized ModelProto
//   helper -> core    u32 kOk, i32 bos id (-1: none), u32 piece count
//                   | u32 kFailed, u32 n, n bytes of reason (n <= kMaxReasonBytes)
//   then, per text:
//   core   -> helper  u32 n, n bytes of UTF-8 (n <= kMaxTextBytes)
//   helper -> core    u32 kOk, u32 count, count x i32 ids  |  u32 kFailed, u32 n, reason
// The helper exits on end of input; core checks every count and id it is given.
#include <cstdint>

namespace quantlens::tokenizewire {

constexpr uint32_t kMagic = 0x4b544c51;  // "QLTK"
constexpr uint32_t kVersion = 1;
constexpr uint32_t kOk = 0;
constexpr uint32_t kFailed = 1;
constexpr uint32_t kMaxModelBytes = 64u << 20;  // Gemma's tokenizer.model is 4 MiB
constexpr uint32_t kMaxTextBytes = 1u << 20;    // one calibration sequence
constexpr uint32_t kMaxReasonBytes = 4096;
// NFKC can expand one UTF-8 byte to a few, and byte fallback gives one id per byte:
// more ids than this for a text of n bytes means the helper is broken.
constexpr uint64_t maxIds(uint64_t textBytes) { return 32 * (textBytes + 4); }

}  // namespace quantlens::tokenizewire
