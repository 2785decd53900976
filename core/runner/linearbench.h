#pragma once
// Times one linear layer four ways on the same weights and input: float32 OpenBLAS sgemm,
// the whole int8 DynamicLinear (activation quantization + GEMM + epilogue), the int8 GEMM +
// epilogue alone, and oneDNN's int8 matmul on the same quantized operands. Each figure is
// the median over repeats of the mean time per call, hot cache, as in docs/kernels.md.
#include <cstdint>
#include <string>
#include <vector>

#include "model.h"
#include "result.h"

namespace quantlens {

struct LinearBenchShape {
    std::string name;  // layer prefix, or "768->3072" for synthetic shapes
    int64_t in = 0, out = 0;
    std::vector<float> weight;  // [out, in]
    std::vector<float> bias;    // out values
};

struct LinearBenchRow {
    std::string name;
    int64_t in = 0, out = 0, tokens = 0;
    double fp32Seconds = 0;
    double int8Seconds = 0;    // whole dynamic int8 linear, per call
    double gemmSeconds = 0;    // int8 GEMM + epilogue only
    double onednnInt8Seconds = -1;  // oneDNN u8s8->f32 matmul, same epilogue; < 0 when not built
    // The fastest repeat of each: on a shared, loaded machine these show what the code can do
    // when it gets the core; the medians above are the figures to report.
    double fp32BestSeconds = 0, int8BestSeconds = 0, gemmBestSeconds = 0, onednnBestSeconds = -1;
    double onednnMaxAbsDiff = 0;  // oneDNN's output vs ours on the same operands
    std::string blocking;         // the GEMM blocking gemmSeconds used (kernels/gemmtune.h)
    // With LinearBenchOptions::allBlockings: GEMM + epilogue alone under every candidate
    // blocking of the active ISA (name, median seconds), timed interleaved with the rest.
    std::vector<std::pair<std::string, double>> blockingSeconds;
    double speedup() const { return int8Seconds > 0 ? fp32Seconds / int8Seconds : 0; }
    double int8Gops() const { return int8Seconds > 0 ? 2e-9 * double(tokens * in * out) / int8Seconds : 0; }
    double gemmGops() const { return gemmSeconds > 0 ? 2e-9 * double(tokens * in * out) / gemmSeconds : 0; }
};

struct LinearBenchOptions {
    int threads = 1;
    int repeats = 7;
    double minRepeatSeconds = 0.02;  // each repeat loops until it has run at least this long
    bool threadCpuTime = false;      // time with CLOCK_THREAD_CPUTIME_ID (one thread only), not wall time
    bool allBlockings = false;       // also time the GEMM under every candidate blocking
};

// DistilBERT's linear shapes 768->768, 768->3072, 3072->768 with trained-looking weights.
std::vector<LinearBenchShape> distilbertBenchShapes();
// One entry per distinct (in, out) among the model's linear layers, with the real weights
// of the first layer of that shape.
Result<std::vector<LinearBenchShape>> modelBenchShapes(const Model& m);
Result<LinearBenchRow> benchLinear(const LinearBenchShape& shape, int64_t tokens, const LinearBenchOptions& options);

}  // namespace quantlens
