#pragma once
// Comparing two checkpoints tensor by tensor: each pair from matchTensors is decoded to float,
// brought to the canonical layout and measured. B is the reference: SQNR's signal and the
// relative error's denominator are B's values (so comparing a model with its quantized copy,
// give the copy as A and the original as B).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "compare/namematch.h"
#include "model.h"
#include "quant/metrics.h"
#include "result.h"

namespace quantlens {

struct TensorComparison {
    std::string aName, bName;
    std::vector<int64_t> shape;  // canonical
    std::string how;             // how the names were paired (TensorPair::how)
    Metrics metrics;             // computeMetrics(b, a): sqnrDb inf when identical
    double relFrobenius = 0;     // |a - b| / |b|; inf when b is all zero and a is not
    double aBitsPerWeight = 0, bBitsPerWeight = 0;  // stored bytes * 8 / elements
    double errEnergy = 0, refEnergy = 0;            // sum (a - b)^2, sum b^2 (per-layer totals)
};

struct CompareReport {
    std::vector<TensorComparison> matched;  // a's file order
    std::vector<Unpaired> unmatchedA, unmatchedB;
    std::vector<ShapeMismatch> mismatched;  // includes pairs whose values could not be decoded
};

// (tensors done, tensors to do, the tensor about to be compared); false cancels.
using CompareProgress = std::function<bool(int64_t done, int64_t total, const std::string& tensor)>;

// Streams: at most one float copy of each side is alive at a time. Fails with code "cancelled"
// when progress returns false.
Result<CompareReport> compareModels(const Model& a, const Model& b, const CompareProgress& progress = {});

// One pair's values, both in the canonical layout (the GUI's before/after), after the same
// decoding and transforms compareModels uses.
struct PairValues {
    std::vector<float> a, b;
    std::vector<int64_t> shape;
};
Result<PairValues> decodePair(const TensorPair& p);

double bitsPerWeight(const Tensor& t);

// The transformer block a tensor belongs to: the name up to its first all-digit component
// ("model.layers.3", "blk.3"), or the whole name for tensors outside the blocks.
std::string layerOf(const std::string& name);

struct LayerComparison {
    std::string layer;      // layerOf(a's name)
    double sqnrDb = 0;      // over all its matched tensors: 10 log10(sum b^2 / sum (a-b)^2)
    int worst = -1;         // index into CompareReport::matched of its lowest-SQNR tensor
    int tensors = 0;
};
// Worst (lowest SQNR) first.
std::vector<LayerComparison> compareByLayer(const CompareReport& r);

}  // namespace quantlens
