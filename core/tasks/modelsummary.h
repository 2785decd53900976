#pragma once
// Every tensor's statistics, and optionally its round-trip figures under a quantization
// spec, over the whole model on all cores: `quantlens-cli inspect` and the window's tree
// columns (issue #21: a 1.1B-parameter model at memory speed). Each worker owns reused
// float buffers and hands each tensor's mapped pages back once done, so the resident set
// stays near (workers x largest tensor's float copy) however large the file.
#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

#include "model.h"
#include "quant/metrics.h"
#include "quant/quantspec.h"
#include "result.h"

namespace quantlens {

struct TensorFigures {
    Status status = Ok{};  // decoding (or quantizing) failed: the reason
    TensorStats stats;     // of the stored values
    bool quantized = false;
    // With a spec: the [out, in] view (matrixView) quantized with spec.axis = 0, per tensor
    // for a one-row view; metrics as computeMetrics(x, dequantize(q), q.clampedCount).
    Metrics metrics;
    int64_t bytesAfter = 0;
};

struct ModelSummaryJob {
    std::vector<size_t> order;  // tensor indices, in the order workers take them; empty = all
    // The spec to quantize tensor i with, or nullopt for statistics only.
    std::function<std::optional<QuantSpec>(size_t)> specFor;
    // Called from the worker threads, one call at a time (the caller needs no lock), as each
    // tensor finishes.
    std::function<void(size_t, TensorFigures&&)> done;
    std::function<bool()> cancelled;  // polled between tensors
    size_t workers = 0;               // 0: one per core, at most 4
    // Workers at the lowest CPU priority (nice 19, per thread on Linux): the window fills its
    // tree this way while the tensor the user looks at is quantized at normal priority.
    bool lowPriority = false;
};

void summarizeModel(const Model& m, const ModelSummaryJob& job);

// The statistics of every tensor, in model order (inspect).
std::vector<TensorFigures> modelStatistics(const Model& m);

}  // namespace quantlens
