#pragma once
// Which GemmBlocking a kernel table uses on this CPU, chosen once per process:
//   1. QUANTLENS_GEMM_BLOCKING=<name> forces one of the active table's (an unknown name is
//      refused, naming the choices; other tables use it only when they have that name);
//   2. QUANTLENS_GEMM_TUNE=0: the CPUID table below, nothing read, measured or written;
//   3. else a valid entry for this CPU and ISA in the cache file
//      ($XDG_CACHE_HOME or ~/.cache)/quantlens/gemm-blocking-v1.txt;
//   4. else (or with QUANTLENS_GEMM_TUNE=1, which ignores the cache) a one-off measurement of
//      every candidate on representative shapes (~0.1 s of one thread), written to the cache.
// All candidates give bit-identical output, so the choice changes speed only.
// docs/kernels.md ("Blocking chosen per CPU") explains the candidates and the figures.
#include <optional>
#include <string>
#include <string_view>

#include "kernels/gemm.h"

namespace quantlens::kernels {

struct BlockingChoice {
    const GemmBlocking* blocking = nullptr;
    std::string source;  // "forced", "table", "cache", "measured"
    std::string why;     // one line: the table row, the cache path, or the measured times
};

// The choice for `kr` (any table of availableKernels()); thread-safe, decided at first call.
// Throws std::runtime_error for a bad QUANTLENS_GEMM_BLOCKING, like activeKernels for QUANTLENS_ISA.
const BlockingChoice& activeBlocking(const GemmKernels& kr);

// The CPUID table's choice for this CPU and `kr`, and the row that matched.
const GemmBlocking& tableBlocking(const GemmKernels& kr, std::string* why = nullptr);

// nullptr when `kr` has no blocking of that name.
const GemmBlocking* findBlocking(const GemmKernels& kr, std::string_view name);

// "AuthenticAMD family 26 model 2 stepping 1": the key of the cache and the table.
std::string cpuKey();

// Times every candidate of `kr` (thread CPU time, `rounds` interleaved rounds on 128x768->768,
// 128x3072->384 and 8x768->1536, each candidate against the table's choice in the same round,
// the three shapes' ratios averaged) and returns the one with the lowest median ratio; the
// table's choice is kept unless another is at least 4% faster both at the median and in the
// fastest rounds, so load on a shared machine does not flip it. `why` gets ratios and times.
const GemmBlocking& measureBlocking(const GemmKernels& kr, int rounds, std::string* why = nullptr);

// The cache file's text is untrusted: every line is checked, anything malformed is ignored.
// Returns the blocking name stored for (cpu, isa), if any line has one.
std::optional<std::string> parseBlockingCache(std::string_view text, std::string_view cpu, std::string_view isa);
// `text` with the (cpu, isa) entry set to `blocking` (other valid entries kept).
std::string updateBlockingCache(std::string_view text, std::string_view cpu, std::string_view isa,
                                std::string_view blocking);
// Where the cache lives ("" when neither XDG_CACHE_HOME nor HOME is set).
std::string blockingCachePath();

}  // namespace quantlens::kernels
