#include "tensoranalysis.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace quantlens::ui {

namespace {

int64_t storedBytes(DType dtype, int64_t numel)
{
    const auto b = byteSizeFor(dtype, numel);
    return b ? *b : 0;
}

// Rows/cols of the [out, in] view of a stored shape.
void matrixShape(const Tensor& t, int64_t numel, int64_t& rows, int64_t& cols, bool& transposed)
{
    transposed = false;
    if (t.rank() == 2) {
        rows = t.shape[0];
        cols = t.shape[1];
        if (t.layout == Layout::InOut) {
            std::swap(rows, cols);
            transposed = true;
        }
    } else if (t.rank() >= 3 && t.shape[0] > 0) {
        rows = t.shape[0];
        cols = numel / t.shape[0];
    } else {
        rows = 1;
        cols = numel;
    }
}

}  // namespace

Result<std::shared_ptr<const MatrixData>> loadMatrix(const Tensor& t, int histogramBins, int64_t maxCells)
{
    if (!t.decodable())
        return makeError("not-decodable", "tensor type " + t.opaqueType + " cannot be decoded", {}, -1, t.name);
    const int64_t n = t.numel();
    if (n <= 0)
        return makeError("empty", "tensor has no elements", {}, -1, t.name);
    auto values = t.toFloat();
    if (!values)
        return values.error();
    auto m = std::make_shared<MatrixData>();
    m->name = t.name;
    m->storedShape = t.shape;
    m->dtype = t.dtype;
    matrixShape(t, n, m->rows, m->cols, m->transposed);
    if (m->transposed) {
        // Stored [in, out] = [cols, rows] of the view.
        const std::vector<float>& src = *values;
        m->values.resize(size_t(n));
        for (int64_t i = 0; i < m->cols; ++i)
            for (int64_t o = 0; o < m->rows; ++o)
                m->values[size_t(o * m->cols + i)] = src[size_t(i * m->rows + o)];
    } else {
        m->values = std::move(*values);
    }
    m->stats = computeStats(m->values);
    double lo = m->stats.min, hi = m->stats.max;
    if (!(hi > lo)) {  // constant tensor: give the histogram a visible width
        const double pad = std::max(1e-6, std::abs(lo) * 0.01);
        lo -= pad;
        hi += pad;
    }
    m->histogram = computeHistogram(m->values, lo, hi, histogramBins);
    m->rowMin.assign(size_t(m->rows), 0.0f);
    m->rowMax.assign(size_t(m->rows), 0.0f);
    for (int64_t r = 0; r < m->rows; ++r) {
        const Range rr = minMaxRange(std::span<const float>(m->values.data() + r * m->cols, size_t(m->cols)));
        m->rowMin[size_t(r)] = rr.lo;
        m->rowMax[size_t(r)] = rr.hi;
    }
    if (maxCells > 0)
        m->grid = poolMaxAbs(m->values.data(), m->rows, m->cols, maxCells);
    return std::shared_ptr<const MatrixData>(std::move(m));
}

namespace {

// Max-abs pooling over rows supplied one at a time by rowAt(r, scratch) (a pointer to
// `cols` floats, possibly into scratch), so an error map needs no full-size temporary.
// Runs on every clamp-drag update: blocks are walked column range by column range (no
// per-element division) in float, with NaN/inf skipped by the magnitude test.
template <class RowAt>
HeatGrid poolRows(int64_t rows, int64_t cols, int64_t maxCells, RowAt&& rowAt)
{
    HeatGrid g;
    if (rows <= 0 || cols <= 0 || maxCells <= 0)
        return g;
    g.poolRows = (rows + maxCells - 1) / maxCells;
    g.poolCols = (cols + maxCells - 1) / maxCells;
    g.rows = (rows + g.poolRows - 1) / g.poolRows;
    g.cols = (cols + g.poolCols - 1) / g.poolCols;
    g.v.assign(size_t(g.rows * g.cols), 0.0);
    std::vector<float> best(size_t(g.rows * g.cols), -1.0f), val(size_t(g.rows * g.cols), 0.0f);
    std::vector<float> scratch(static_cast<size_t>(cols));
    const float inf = std::numeric_limits<float>::infinity();
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = rowAt(r, scratch.data());
        float* b = best.data() + (r / g.poolRows) * g.cols;
        float* v = val.data() + (r / g.poolRows) * g.cols;
        for (int64_t gc = 0, c0 = 0; gc < g.cols; ++gc, c0 += g.poolCols) {
            const int64_t c1 = std::min(cols, c0 + g.poolCols);
            float bm = b[gc], bv = v[gc];
            for (int64_t c = c0; c < c1; ++c) {
                const float a = std::fabs(row[c]);
                if (a > bm && a < inf) {  // false for NaN and inf
                    bm = a;
                    bv = row[c];
                }
            }
            b[gc] = bm;
            v[gc] = bv;
        }
    }
    for (size_t k = 0; k < best.size(); ++k) {
        g.v[k] = double(val[k]);
        g.absMax = std::max(g.absMax, double(best[k]));
    }
    std::vector<double> mags;
    mags.reserve(best.size());
    for (float b : best)
        if (b >= 0)
            mags.push_back(double(b));
    if (!mags.empty()) {
        const size_t k = std::min(mags.size() - 1, size_t(double(mags.size()) * 0.999));
        std::nth_element(mags.begin(), mags.begin() + std::ptrdiff_t(k), mags.end());
        g.clipAbs = mags[k];
    }
    if (!(g.clipAbs > 0))
        g.clipAbs = g.absMax > 0 ? g.absMax : 1.0;
    return g;
}

}  // namespace

static bool sameSpec(const QuantSpec& a, const QuantSpec& b)
{
    return a.scheme == b.scheme && a.granularity == b.granularity && a.groupSize == b.groupSize && a.bits == b.bits &&
           a.isUnsigned == b.isUnsigned && a.reduceRange == b.reduceRange && a.calib == b.calib &&
           a.percentile == b.percentile && a.manualLo == b.manualLo && a.manualHi == b.manualHi && a.axis == b.axis;
}

HeatGrid poolMaxAbs(const float* data, int64_t rows, int64_t cols, int64_t maxCells)
{
    return poolRows(rows, cols, maxCells, [data, cols](int64_t r, float*) { return data + r * cols; });
}

HeatGrid poolMaxAbsDiff(const float* a, const float* b, int64_t rows, int64_t cols, int64_t maxCells)
{
    return poolRows(rows, cols, maxCells, [a, b, cols](int64_t r, float* scratch) {
        const float* x = a + r * cols;
        const float* y = b + r * cols;
        for (int64_t c = 0; c < cols; ++c)
            scratch[c] = x[c] - y[c];
        return static_cast<const float*>(scratch);
    });
}

void effectiveRange(const QuantParams& p, double& lo, double& hi)
{
    lo = std::numeric_limits<double>::infinity();
    hi = -std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < p.scale.size(); ++i) {
        const double s = p.scale[i];
        const double zp = i < p.zeroPoint.size() ? p.zeroPoint[i] : 0.0;
        lo = std::min(lo, (double(p.qmin) - zp) * s);
        hi = std::max(hi, (double(p.qmax) - zp) * s);
    }
    if (p.scale.empty()) {
        lo = p.rangeLo;
        hi = p.rangeHi;
    }
}

Result<std::shared_ptr<const QuantOutcome>> quantizeMatrix(const std::shared_ptr<const MatrixData>& m,
                                                           const QuantSpec& specIn, int64_t maxCells,
                                                           bool withAlternative, bool withSuggestions,
                                                           const std::shared_ptr<const QuantOutcome>& previous)
{
    QuantSpec spec = specIn;
    spec.axis = 0;  // MatrixData rows are output channels whatever the stored layout
    const std::vector<int64_t> shape{m->rows, m->cols};
    auto q = quantize(m->values, shape, spec);
    if (!q)
        return q.error();
    auto out = std::make_shared<QuantOutcome>();
    out->spec = spec;
    out->qt = std::move(*q);
    out->dequantized = dequantize(out->qt);
    out->metrics = computeMetrics(m->values, out->dequantized, out->qt.clampedCount);
    effectiveRange(out->qt.params, out->effLo, out->effHi);
    out->bytesBefore = storedBytes(m->dtype, int64_t(m->values.size()));
    out->bytesAfter = out->qt.bytesAfter();

    out->after = poolMaxAbs(out->dequantized.data(), m->rows, m->cols, maxCells);
    out->error = poolMaxAbsDiff(out->dequantized.data(), m->values.data(), m->rows, m->cols, maxCells);

    if (m->rows > 1) {
        out->rowMetrics = computeRowMetrics(m->values, out->dequantized, m->rows, m->cols);
        if (withAlternative && spec.scheme != Scheme::Q8_0) {
            QuantSpec alt = modelWideSpec(spec);
            alt.granularity = spec.granularity == Granularity::PerTensor ? Granularity::PerChannel
                                                                          : Granularity::PerTensor;
            alt.groupSize = 0;
            if (previous && previous->haveAlt && sameSpec(previous->altSpec, alt) &&
                previous->altRowMetrics.size() == size_t(m->rows)) {
                out->altRowMetrics = previous->altRowMetrics;
                out->altSpec = alt;
                out->haveAlt = true;
            } else if (auto aq = quantize(m->values, shape, alt)) {
                const std::vector<float> adq = dequantize(*aq);
                out->altRowMetrics = computeRowMetrics(m->values, adq, m->rows, m->cols);
                out->altSpec = alt;
                out->haveAlt = true;
            }
        }
    }
    if (withSuggestions) {
        out->suggestions = suggestRanges(m->values, modelWideSpec(spec));
        out->haveSuggestions = true;
    }
    return std::shared_ptr<const QuantOutcome>(std::move(out));
}

QuantSpec modelWideSpec(QuantSpec s)
{
    if (s.calib == CalibMethod::Manual)
        s.calib = CalibMethod::MinMax;
    return s;
}

TensorSummary summarizeTensor(const Tensor& t, int index, const QuantSpec& specIn)
{
    TensorSummary s;
    s.index = index;
    auto m = loadMatrix(t, 16);
    if (!m) {
        s.error = m.error().message;
        return s;
    }
    const MatrixData& md = **m;
    s.min = md.stats.min;
    s.max = md.stats.max;
    QuantSpec spec = specIn;  // a tuned manual range included: the caller chose it
    spec.axis = 0;
    if (md.rows <= 1 && spec.granularity == Granularity::PerChannel)
        spec.granularity = Granularity::PerTensor;  // a vector has one channel
    auto q = quantize(md.values, {md.rows, md.cols}, spec);
    if (!q) {
        s.error = q.error().message;
        return s;
    }
    const std::vector<float> dq = dequantize(*q);
    const Metrics mt = computeMetrics(md.values, dq, q->clampedCount);
    s.sqnrDb = mt.sqnrDb;
    s.clampedFraction = mt.clampedFraction;
    s.bytesBefore = storedBytes(md.dtype, int64_t(md.values.size()));
    s.bytesAfter = q->bytesAfter();
    s.ok = true;
    return s;
}

}  // namespace quantlens::ui
