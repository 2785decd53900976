#pragma once
// The pure computations behind the tensor views. They run on worker threads
// (QtConcurrent), take values and return immutable results behind
// shared_ptr<const T>, so the GUI thread only stores them and repaints.
// No widgets here; only core types.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quant/calibrate.h"
#include "quant/histogram.h"
#include "quant/metrics.h"
#include "quant/quantize.h"
#include "quant/quantspec.h"
#include "tasks/modelsummary.h"
#include "tensor.h"

namespace quantlens::ui {

// A display grid of at most maxCells x maxCells values: each cell holds the value of
// largest magnitude in its block (sign kept), so a lone outlier is never averaged away.
struct HeatGrid {
    int64_t rows = 0, cols = 0;          // display cells
    int64_t poolRows = 1, poolCols = 1;  // source elements per cell
    std::vector<double> v;               // rows*cols
    double absMax = 0;
    // 99.9th percentile of |v|: the colour range. A few outliers would otherwise turn
    // the whole picture into one pale colour; beyond it colours saturate.
    double clipAbs = 0;
    bool pooled() const { return poolRows > 1 || poolCols > 1; }
};
HeatGrid poolMaxAbs(const float* data, int64_t rows, int64_t cols, int64_t maxCells);
// The same grid for a - b, without materialising the difference.
HeatGrid poolMaxAbsDiff(const float* a, const float* b, int64_t rows, int64_t cols, int64_t maxCells);

// A tensor's values as a matrix in the PyTorch [out, in] orientation. Kernels stored with
// output channels last (Layout::InOut: [in, out], Keras conv [k..., in, out]) are
// transposed once here, so views, per-channel statistics and quantization all see output
// channels as rows. Rank 1 is one row; other rank >= 3 is [shape[0], rest].
struct MatrixData {
    std::string name;
    std::vector<int64_t> storedShape;
    DType dtype = DType::F32;
    bool transposed = false;
    int64_t rows = 0, cols = 0;
    std::vector<float> values;  // rows*cols, row-major, [out, in]
    TensorStats stats;
    Histogram histogram;        // over [stats.min, stats.max]
    HeatGrid grid;              // display grid of the values (empty when maxCells was 0)
    std::vector<float> rowMin, rowMax;  // per output channel
};

// Decodes the tensor to float32 (the expensive part for big matrices).
Result<std::shared_ptr<const MatrixData>> loadMatrix(const Tensor& t, int histogramBins = 256, int64_t maxCells = 0);



// The clamp range a quantized tensor really applies: [(qmin - zp) * s, (qmax - zp) * s],
// taken over all channels/groups for the finer granularities.
void effectiveRange(const QuantParams& p, double& lo, double& hi);

struct QuantOutcome {
    QuantSpec spec;
    QuantizedTensor qt;
    std::vector<float> dequantized;  // rows*cols, same orientation as MatrixData
    Metrics metrics;
    double effLo = 0, effHi = 0;
    int64_t bytesBefore = 0, bytesAfter = 0;
    HeatGrid after, error;
    // Per output channel (rows) under this spec and under the same scheme with the other
    // granularity (per-tensor <-> per-channel, min/max calibration): the per-channel view.
    std::vector<Metrics> rowMetrics;
    std::vector<Metrics> altRowMetrics;
    QuantSpec altSpec;
    bool haveAlt = false;
    // Every calibrator's range for this tensor under spec's scheme (histogram markers);
    // only computed when asked, since the entropy/L2 searches cost more than a quantize.
    std::vector<CalibSuggestion> suggestions;
    bool haveSuggestions = false;
};

Result<std::shared_ptr<const QuantOutcome>> quantizeMatrix(const std::shared_ptr<const MatrixData>& m,
                                                           const QuantSpec& spec, int64_t maxCells,
                                                           bool withAlternative, bool withSuggestions = false,
                                                           const std::shared_ptr<const QuantOutcome>& previous = nullptr);
// `previous`: an earlier outcome on the same matrix. Its per-row metrics under the
// alternative granularity are reused when that spec is unchanged (a dragged range does
// not change it), which keeps a second full quantization out of every drag update.

// One line of the tree's background columns.
struct TensorSummary {
    int index = -1;  // into Model::tensors
    bool ok = false;
    std::string error;
    double min = 0, max = 0;
    double sqnrDb = 0, clampedFraction = 0;
    int64_t bytesBefore = 0, bytesAfter = 0;
    bool keptFloat = false;  // the plan leaves it in float (a vector): no SQNR to show
};
// The tree's line for tensor `index` from the whole-model pass (tasks/modelsummary.h), which
// quantized it with the model-wide choice (modelWideSpec), or the user's tuned spec, manual
// range included, or not at all when the plan keeps it float.
TensorSummary tensorSummary(const Tensor& t, int index, const TensorFigures& f);

// Spec for the whole-model columns: the chooser's scheme and granularity, but a manual
// range belongs to one tensor and is replaced by min/max.
QuantSpec modelWideSpec(QuantSpec s);

}  // namespace quantlens::ui
