// Chooses the GEMM variant once, at first use: the best one this binary has and this
// CPU/OS can run, unless QUANTLENS_ISA forces one (like RUY_PATHS or oneDNN's MAX_CPU_ISA).
#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "kernels/cpufeatures.h"
#include "kernels/gemm.h"
#include "kernels/gemmtune.h"
#include "kernels/kernels_internal.h"

namespace quantlens::kernels {

namespace {

struct Entry {
    const GemmKernels* kernels;
    bool supported;
};

// Best first, reference last (oneDNN's implementation-list order).
std::vector<Entry> builtEntries()
{
    const CpuFeatures& f = cpuFeatures();
    std::vector<Entry> e;
#ifdef QUANTLENS_HAVE_kernels_avx512
    e.push_back({&kKernelsAvx512Vnni, f.avx512vnni});
#endif
#ifdef QUANTLENS_HAVE_kernels_avxvnni
    e.push_back({&kKernelsAvxVnni, f.avxvnni});
#endif
#ifdef QUANTLENS_HAVE_kernels_avx2
    e.push_back({&kKernelsAvx2, f.avx2});
#endif
    (void)f;
    e.push_back({&kKernelsRef, true});
    return e;
}

const GemmKernels& choose()
{
    const std::vector<Entry> entries = builtEntries();
    const char* forced = std::getenv("QUANTLENS_ISA");
    if (!forced || !*forced)
        return *availableKernels().front();
    std::string names;
    for (const Entry& e : entries) {
        names += names.empty() ? "" : ", ";
        names += e.kernels->name;
        if (e.kernels->name == std::string(forced)) {
            if (!e.supported)
                throw std::runtime_error(std::string("QUANTLENS_ISA=") + forced +
                                         ": this CPU or OS does not support that instruction set");
            return *e.kernels;
        }
    }
    throw std::runtime_error(std::string("QUANTLENS_ISA=") + forced + ": unknown or not built in (choose from " +
                             names + ")");
}

}  // namespace

const std::vector<const GemmKernels*>& availableKernels()
{
    static const std::vector<const GemmKernels*> list = [] {
        std::vector<const GemmKernels*> v;
        for (const Entry& e : builtEntries())
            if (e.supported)
                v.push_back(e.kernels);
        return v;
    }();
    return list;
}

std::vector<std::string> builtIsaNames()
{
    std::vector<std::string> v;
    for (const Entry& e : builtEntries())
        v.emplace_back(e.kernels->name);
    return v;
}

const GemmKernels& activeKernels()
{
    // A throwing initializer leaves the static unset, so a bad QUANTLENS_ISA is reported on
    // every call rather than silently replaced by another path.
    static const GemmKernels& k = choose();
    return k;
}

const char* activeIsa() { return activeKernels().name; }

namespace {

// The reductions follow the GEMM's choice, so QUANTLENS_ISA forces both at once.
const ReduceKernels* reduceFor(const std::string& isa)
{
#ifdef QUANTLENS_HAVE_kernels_avx512
    if (isa == "avx512vnni")
        return &kReduceAvx512;
#endif
#ifdef QUANTLENS_HAVE_kernels_avx2
    if (isa == "avx512vnni" || isa == "avxvnni" || isa == "avx2")
        return &kReduceAvx2;
#endif
    (void)isa;
    return &kReduceRef;
}

}  // namespace

const ReduceKernels& activeReduce()
{
    // A bad QUANTLENS_ISA is reported by every GEMM call; statistics, which the GUI
    // computes on worker threads, must not throw for it, so they run the reference.
    static const ReduceKernels* r = [] {
        try {
            return reduceFor(activeIsa());
        } catch (const std::exception&) {
            return &kReduceRef;
        }
    }();
    return *r;
}

std::vector<const ReduceKernels*> availableReduce()
{
    std::vector<const ReduceKernels*> v;
    for (const GemmKernels* k : availableKernels()) {
        const ReduceKernels* r = reduceFor(k->name);
        if (std::find(v.begin(), v.end(), r) == v.end())
            v.push_back(r);
    }
    return v;
}

namespace {

const quantrun::QuantKernels* quantFor(const std::string& isa)
{
#ifdef QUANTLENS_HAVE_kernels_avx512
    if (isa == "avx512vnni")
        return &quantrun::kQuantAvx512;
#endif
#ifdef QUANTLENS_HAVE_kernels_avx2
    if (isa == "avx512vnni" || isa == "avxvnni" || isa == "avx2")
        return &quantrun::kQuantAvx2;
#endif
    (void)isa;
    return &quantrun::kQuantRef;
}

}  // namespace

void gemmU8S8S32(const GemmKernels& kr, int64_t m, const uint8_t* a, int64_t lda, const PackedWeights& w,
                 int32_t* c, int64_t ldc, bool aMax128, const GemmBlocking* blocking)
{
    kr.gemmS32(m, a, lda, w, 0, w.panels, c, ldc, aMax128, blocking ? *blocking : *activeBlocking(kr).blocking);
}

void gemmS8S8S32(const GemmKernels& kr, int64_t m, const int8_t* a, int64_t lda, const PackedWeights& w,
                 int32_t* c, int64_t ldc, const GemmBlocking* blocking)
{
    const int64_t k4 = w.k4;
    std::vector<uint8_t> au(size_t(std::max<int64_t>(m * k4, 1)), 0);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t p = 0; p < w.k; ++p)
            au[size_t(i * k4 + p)] = uint8_t(a[i * lda + p]) ^ 0x80u;
    kr.gemmS32(m, au.data(), k4, w, 0, w.panels, c, ldc, false, blocking ? *blocking : *activeBlocking(kr).blocking);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < w.n; ++j)
            c[i * ldc + j] -= 128 * w.colSum[size_t(j)];
}

}  // namespace quantlens::kernels

namespace quantlens::quantrun {

// Follows the GEMM's choice like activeReduce, and like it never throws (worker threads).
const QuantKernels& activeQuant()
{
    static const QuantKernels* q = [] {
        try {
            return kernels::quantFor(kernels::activeIsa());
        } catch (const std::exception&) {
            return &kQuantRef;
        }
    }();
    return *q;
}

std::vector<const QuantKernels*> availableQuant()
{
    std::vector<const QuantKernels*> v;
    for (const kernels::GemmKernels* k : kernels::availableKernels()) {
        const QuantKernels* q = kernels::quantFor(k->name);
        if (std::find(v.begin(), v.end(), q) == v.end())
            v.push_back(q);
    }
    return v;
}

}  // namespace quantlens::quantrun
