#include "tensoranalysis.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>

#include "vec8.h"

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

// Max-abs pooling, run on every clamp-drag update for the "after" and "error" maps, so it
// is separable and vectorised: each source row updates a per-column running maximum of
// |x| (and the signed value that has it) for its band of poolRows rows, 8 columns at a
// time; when a band is complete its columns are reduced to cells, a scalar step over
// 1/poolRows of the data. NaN and inf never win (the magnitude test fails for them).
// Ties keep the first row within a column, then the first column: the value kept has the
// largest magnitude either way (3072x768 into 384x384 cells: ~10 ms -> ~1.5 ms).
struct BandMax {
    std::vector<float> mag, val;  // per source column; mag -1 = nothing finite seen
    void reset()
    {
        std::fill(mag.begin(), mag.end(), -1.0f);
        std::fill(val.begin(), val.end(), 0.0f);
    }
};

// x = a (- b): one source row folded into the band's per-column maxima.
template <bool Diff>
__attribute__((target_clones("avx2", "default"))) void foldRow(const float* a, const float* b, int64_t n, float* mag,
                                                              float* val)
{
    using namespace vec8;
    const v8f inf = splat(std::numeric_limits<float>::infinity());
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        const v8f x = Diff ? load8(a + c) - load8(b + c) : load8(a + c);
        const v8f m = vabs(x);
        const v8i take = (m > load8(mag + c)) & (m < inf);
        store8(mag + c, take ? m : load8(mag + c));
        store8(val + c, take ? x : load8(val + c));
    }
    for (; c < n; ++c) {
        const float x = Diff ? a[c] - b[c] : a[c];
        const float m = std::fabs(x);
        if (m > mag[c] && m < std::numeric_limits<float>::infinity()) {
            mag[c] = m;
            val[c] = x;
        }
    }
}

// The value at ascending position min(n - 1, floor(q n)) among the v >= 0 (-1 marks an
// empty cell), i.e. what nth_element would put there, found as the smallest of the n - k
// largest with a small min-heap: for q = 0.999 that is ~150 of ~150k cells, so one
// comparison per cell instead of a selection over all of them (~1 ms per map).
float upperPercentile(const std::vector<float>& v, double q)
{
    size_t n = 0;
    for (const float x : v)
        n += x >= 0 ? 1 : 0;
    if (n == 0)
        return 0;
    const size_t k = std::min(n - 1, size_t(double(n) * q));
    const size_t keep = n - k;
    std::vector<float> heap;
    heap.reserve(keep);
    for (const float x : v) {
        if (x < 0)
            continue;
        if (heap.size() < keep) {
            heap.push_back(x);
            std::push_heap(heap.begin(), heap.end(), std::greater<>());
        } else if (x > heap.front()) {
            std::pop_heap(heap.begin(), heap.end(), std::greater<>());
            heap.back() = x;
            std::push_heap(heap.begin(), heap.end(), std::greater<>());
        }
    }
    return heap.front();
}

template <bool Diff>
HeatGrid poolRows(const float* a, const float* b, int64_t rows, int64_t cols, int64_t maxCells)
{
    HeatGrid g;
    if (rows <= 0 || cols <= 0 || maxCells <= 0)
        return g;
    g.poolRows = (rows + maxCells - 1) / maxCells;
    g.poolCols = (cols + maxCells - 1) / maxCells;
    g.rows = (rows + g.poolRows - 1) / g.poolRows;
    g.cols = (cols + g.poolCols - 1) / g.poolCols;
    g.v.assign(size_t(g.rows * g.cols), 0.0);
    std::vector<float> best(size_t(g.rows * g.cols), -1.0f);
    BandMax band{std::vector<float>(size_t(cols)), std::vector<float>(size_t(cols))};
    for (int64_t gr = 0; gr < g.rows; ++gr) {
        band.reset();
        const int64_t r1 = std::min(rows, (gr + 1) * g.poolRows);
        for (int64_t r = gr * g.poolRows; r < r1; ++r)
            foldRow<Diff>(a + r * cols, Diff ? b + r * cols : nullptr, cols, band.mag.data(), band.val.data());
        for (int64_t gc = 0, c0 = 0; gc < g.cols; ++gc, c0 += g.poolCols) {
            const int64_t c1 = std::min(cols, c0 + g.poolCols);
            // Selected with bit masks, not a branch (GCC keeps one for a ?: here): which
            // column wins is a coin toss, and the missed branches cost more than the rest.
            float bm = -1.0f;
            uint32_t bv = 0;
            for (int64_t c = c0; c < c1; ++c) {
                const float m = band.mag[size_t(c)];
                const uint32_t take = 0u - uint32_t(m > bm);
                bv ^= (bv ^ std::bit_cast<uint32_t>(band.val[size_t(c)])) & take;
                bm = std::max(m, bm);
            }
            best[size_t(gr * g.cols + gc)] = bm;
            g.v[size_t(gr * g.cols + gc)] = double(std::bit_cast<float>(bv));
        }
    }
    for (const float m : best)
        g.absMax = std::max(g.absMax, double(m));
    g.clipAbs = double(upperPercentile(best, 0.999));
    if (!(g.clipAbs > 0))
        g.clipAbs = g.absMax > 0 ? g.absMax : 1.0;
    return g;
}

}  // namespace

HeatGrid poolMaxAbs(const float* data, int64_t rows, int64_t cols, int64_t maxCells)
{
    return poolRows<false>(data, nullptr, rows, cols, maxCells);
}

HeatGrid poolMaxAbsDiff(const float* a, const float* b, int64_t rows, int64_t cols, int64_t maxCells)
{
    return poolRows<true>(a, b, rows, cols, maxCells);
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
            if (previous && previous->haveAlt && previous->altSpec == alt &&
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
    // The bounds go too: min/max ignores them, and left behind they made every drag step
    // look like a new alternative spec, so the per-channel comparison was requantized on
    // each mouse move instead of reused.
    if (s.calib == CalibMethod::Manual) {
        s.calib = CalibMethod::MinMax;
        s.manualLo = s.manualHi = 0.0f;
    }
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
