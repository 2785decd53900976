// quantlens-cli bench: times linear layers in float32 (OpenBLAS), int8 (ours, whole dynamic
// linear and GEMM alone) and oneDNN int8 on the same operands. Times are per call, the
// median of repeats, hot cache.
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "kernels/gemm.h"
#include "kernels/gemmtune.h"
#include "kernels/peak.h"
#include "modelarg.h"
#include "runner/fp32linear.h"
#include "runner/linearbench.h"
#include "runner/onednnmatmul.h"

namespace quantlens::cli {

namespace {

struct BenchOptions {
    std::string model;
    int64_t tokens = 0;
    int threads = 1;
    bool json = false;
    bool cpuTime = false;
};

void runBench(const BenchOptions& o)
{
    const std::string isa = kernels::activeIsa();  // throws on a bad QUANTLENS_ISA before any work
    std::vector<LinearBenchShape> shapes;
    if (o.model.empty()) {
        shapes = distilbertBenchShapes();
    } else {
        auto s = modelBenchShapes(loadModelArg(o.model));
        if (!s)
            throw Failure{s.error().oneLine()};
        shapes = std::move(s.value());
    }
    const std::vector<int64_t> tokens = o.tokens > 0 ? std::vector<int64_t>{o.tokens} : std::vector<int64_t>{1, 8, 128};
    LinearBenchOptions bo;
    bo.threads = o.threads;
    if (o.cpuTime && o.threads != 1)
        throw CLI::ValidationError("--cpu-time", "measures one thread's CPU time; use it with --threads 1");
    bo.threadCpuTime = o.cpuTime;
    std::fprintf(stderr, "int8 kernels: %s; OpenBLAS core: %s; oneDNN: %s; threads: %d; clock: %s\n", isa.c_str(),
                 blasCoreName().c_str(), OnednnInt8Matmul::available() ? "yes" : "not built", o.threads,
                 o.cpuTime ? "thread CPU time" : "wall");
    // Chosen (and, at the first use on this CPU, measured) before any timing starts.
    const kernels::BlockingChoice& blocking = kernels::activeBlocking(kernels::activeKernels());
    std::fprintf(stderr, "GEMM blocking: %s (%s: %s); cpu: %s\n", blocking.blocking->name, blocking.source.c_str(),
                 blocking.why.c_str(), kernels::cpuKey().c_str());

    nlohmann::json rows = nlohmann::json::array();
    if (!o.json)
        std::printf("%-40s %6s %6s %6s | %10s %10s %10s %10s | %8s %8s | %7s %7s | %6s %6s\n", "layer", "in", "out",
                    "tokens", "fp32 us", "int8 us", "gemm us", "oneDNN us", "int8GOPs", "gemmGOPs", "x fp32", "x oneDNN",
                    "peak", "%peak");
    for (const LinearBenchShape& s : shapes)
        for (int64_t m : tokens) {
            // Timed just before the row, so %peak is against the clock of the same moment.
            const double peak = o.threads == 1 ? kernels::vnniPeakGops() : 0;
            auto r = benchLinear(s, m, bo);
            if (!r)
                throw Failure{s.name + ": " + r.error().oneLine()};
            nlohmann::json j;
            j["layer"] = r->name;
            j["in_features"] = r->in;
            j["out_features"] = r->out;
            j["tokens"] = r->tokens;
            j["fp32_seconds"] = r->fp32Seconds;
            j["int8_seconds"] = r->int8Seconds;
            j["speedup"] = r->speedup();
            j["int8_gops"] = r->int8Gops();
            j["gemm_seconds"] = r->gemmSeconds;
            j["gemm_gops"] = r->gemmGops();
            if (r->onednnInt8Seconds > 0) {
                j["onednn_int8_seconds"] = r->onednnInt8Seconds;
                j["onednn_int8_gops"] = 2.0 * double(r->tokens) * double(r->in) * double(r->out) / r->onednnInt8Seconds * 1e-9;
                j["int8_vs_onednn"] = r->onednnInt8Seconds / r->int8Seconds;
            }
            if (peak > 0) {
                j["vnni_peak_gops"] = peak;
                j["gemm_fraction_of_peak"] = r->gemmGops() / peak;
                j["int8_fraction_of_peak"] = r->int8Gops() / peak;
            }
            rows.push_back(j);
            if (!o.json) {
                const std::string peakText = peak > 0 ? std::to_string(int64_t(peak + 0.5)) : "-";
                const std::string pctText = peak > 0 ? std::to_string(int64_t(100 * r->gemmGops() / peak + 0.5)) + "%" : "-";
                std::printf("%-40s %6lld %6lld %6lld | %10.1f %10.1f %10.1f %10s | %8.0f %8.0f | %7.2f %7s | %6s %6s\n",
                            r->name.c_str(), static_cast<long long>(r->in), static_cast<long long>(r->out),
                            static_cast<long long>(m), r->fp32Seconds * 1e6, r->int8Seconds * 1e6,
                            r->gemmSeconds * 1e6,
                            r->onednnInt8Seconds >= 0 ? std::to_string(int64_t(r->onednnInt8Seconds * 1e6 + 0.5)).c_str() : "-",
                            r->int8Gops(), r->gemmGops(), r->speedup(),
                            r->onednnInt8Seconds > 0 ? std::to_string(r->onednnInt8Seconds / r->int8Seconds).substr(0, 4).c_str() : "-",
                            peakText.c_str(), pctText.c_str());
                std::fflush(stdout);
            }
        }
    if (o.json) {
        nlohmann::json doc;
        doc["isa"] = isa;
        doc["threads"] = o.threads;
        doc["blas_core"] = blasCoreName();
        doc["clock"] = o.cpuTime ? "thread-cpu" : "wall";
        doc["cpu"] = kernels::cpuKey();
        doc["gemm_blocking"] = blocking.blocking->name;
        doc["gemm_blocking_source"] = blocking.source;  // forced, table, cache or measured
        doc["gemm_blocking_why"] = blocking.why;
        doc["rows"] = rows;
        std::cout << doc.dump(1) << "\n";
    }
}

}  // namespace

void addBenchCommand(CLI::App& app)
{
    auto o = std::make_shared<BenchOptions>();
    auto* cmd = app.add_subcommand("bench", "Time int8 vs float32 (and oneDNN) linear layers");
    cmd->add_option("MODEL", o->model, "model whose linear shapes to time (default: DistilBERT's 768/3072 shapes)");
    cmd->add_option("--tokens", o->tokens, "tokens per call (default: 1, 8 and 128)")->check(CLI::Range(int64_t(1), int64_t(1) << 20));
    cmd->add_option("--threads", o->threads, "threads for every implementation (default 1)")->check(CLI::Range(1, 256));
    cmd->add_flag("--json", o->json, "print one JSON document on stdout");
    cmd->add_flag("--cpu-time", o->cpuTime,
                  "time this thread's CPU time instead of wall time (a loaded machine; --threads 1 only)");
    cmd->callback([o] { runBench(*o); });
}

}  // namespace quantlens::cli
