#include "tensoranalysis.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>
#include <mutex>

#include "io/mappedfile.h"
#include "kernels/reduce.h"
#include "workteam.h"

namespace quantlens::ui {

namespace {

int64_t storedBytes(DType dtype, int64_t numel)
{
    const auto b = byteSizeFor(dtype, numel);
    return b ? *b : 0;
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
    const MatrixView view = matrixView(t);
    m->rows = view.rows;
    m->cols = view.cols;
    m->transposed = view.transposed;
    if (view.transposed) {
        m->values.resize(size_t(n));
        copyAsView(view, *values, m->values);
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
// |x| (and the signed value that has it) for its band of poolRows rows, a SIMD row at a
// time; when a band is complete its columns are reduced to cells, a scalar step over
// 1/poolRows of the data. NaN and inf never win (the magnitude test fails for them).
// Ties keep the first row within a column, then the first column: the value kept has the
// largest magnitude either way (3072x768 into 384x384 cells: ~10 ms -> ~1.5 ms).
struct BandMax {
    std::vector<float> mag, val;  // per source column; mag -1 = nothing finite seen
    std::vector<float> cellVal;   // per cell of the band, from foldCells
    void reset()
    {
        std::fill(mag.begin(), mag.end(), -1.0f);
        std::fill(val.begin(), val.end(), 0.0f);
    }
};

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

// One heatmap built a band of poolRows source rows at a time, so several maps (and the
// per-row metrics) can share one pass over the data while a band is still in cache. Bands
// write disjoint cells, so threads can build different bands, each with its own BandMax.
class GridBuilder {
public:
    GridBuilder(int64_t rows, int64_t cols, int64_t maxCells) : cols_(cols)
    {
        if (rows <= 0 || cols <= 0 || maxCells <= 0)
            return;
        g_.poolRows = (rows + maxCells - 1) / maxCells;
        g_.poolCols = (cols + maxCells - 1) / maxCells;
        g_.rows = (rows + g_.poolRows - 1) / g_.poolRows;
        g_.cols = (cols + g_.poolCols - 1) / g_.poolCols;
        g_.v.assign(size_t(g_.rows * g_.cols), 0.0);
        best_.assign(size_t(g_.rows * g_.cols), -1.0f);
    }
    bool empty() const { return g_.v.empty(); }
    int64_t bands() const { return g_.rows; }
    int64_t bandRows() const { return g_.poolRows; }
    BandMax scratch() const
    {
        return BandMax{std::vector<float>(size_t(cols_)), std::vector<float>(size_t(cols_)),
                       std::vector<float>(size_t(g_.cols))};
    }
    // One source row, a (b null) or a - b, into the band's per-column maxima: the
    // dispatched kernel (kernels/reduce.h), since this runs over every value per drag step.
    void fold(BandMax& band, const float* a, const float* b) const
    {
        kernels::activeReduce().foldMaxAbs(a, b, cols_, band.mag.data(), band.val.data());
    }
    // The band's columns to its cells: a kernel too (kernels/reduce.h foldCells), since it
    // was a quarter of the drag step's map building as a scalar loop.
    void endBand(BandMax& band, int64_t gr)
    {
        kernels::activeReduce().foldCells(band.mag.data(), band.val.data(), cols_, g_.poolCols,
                                          best_.data() + gr * g_.cols, band.cellVal.data());
        double* v = g_.v.data() + gr * g_.cols;
        for (int64_t gc = 0; gc < g_.cols; ++gc)
            v[gc] = double(band.cellVal[size_t(gc)]);
    }
    HeatGrid finish()
    {
        if (empty())
            return std::move(g_);
        for (const float m : best_)
            g_.absMax = std::max(g_.absMax, double(m));
        g_.clipAbs = double(upperPercentile(best_, 0.999));
        if (!(g_.clipAbs > 0))
            g_.clipAbs = g_.absMax > 0 ? g_.absMax : 1.0;
        return std::move(g_);
    }

private:
    int64_t cols_;
    HeatGrid g_;
    std::vector<float> best_;
};

// Bands in parts of about kBandValues source values each, spread over the work team;
// part(b0, b1) builds bands [b0, b1). Each band's result depends on its rows only.
void forBandParts(int64_t bands, int64_t bandValues, const std::function<void(int64_t, int64_t)>& part)
{
    constexpr int64_t kPartValues = int64_t(1) << 16;
    const int64_t perPart = std::max<int64_t>(1, kPartValues / std::max<int64_t>(1, bandValues));
    const int64_t parts = (bands + perPart - 1) / perPart;
    parallelFor(
        parts, [&](int64_t p) { part(p * perPart, std::min(bands, (p + 1) * perPart)); },
        bands * bandValues >= kTeamMinValues);
}

template <bool Diff>
HeatGrid poolRows(const float* a, const float* b, int64_t rows, int64_t cols, int64_t maxCells)
{
    GridBuilder g(rows, cols, maxCells);
    if (g.empty())
        return g.finish();
    forBandParts(g.bands(), g.bandRows() * cols, [&](int64_t b0, int64_t b1) {
        BandMax band = g.scratch();
        for (int64_t gr = b0; gr < b1; ++gr) {
            band.reset();
            const int64_t r1 = std::min(rows, (gr + 1) * g.bandRows());
            for (int64_t r = gr * g.bandRows(); r < r1; ++r)
                g.fold(band, a + r * cols, Diff ? b + r * cols : nullptr);
            g.endBand(band, gr);
        }
    });
    return g.finish();
}

// The "after" and "error" maps and each row's metrics of one quantization, in one pass over
// x and xhat instead of three (the drag update's second sweep after the round trip).
void poolOutcome(const float* x, const float* xhat, int64_t rows, int64_t cols, int64_t maxCells, HeatGrid& after,
                 HeatGrid& error, std::vector<Metrics>* rowMetrics)
{
    GridBuilder ga(rows, cols, maxCells), ge(rows, cols, maxCells);
    if (rowMetrics)
        rowMetrics->clear();
    if (ga.empty()) {
        after = ga.finish();
        error = ge.finish();
        if (rowMetrics && rows > 0 && cols > 0)
            *rowMetrics = computeRowMetrics({x, size_t(rows * cols)}, {xhat, size_t(rows * cols)}, rows, cols);
        return;
    }
    if (rowMetrics)
        rowMetrics->resize(size_t(rows));
    forBandParts(ga.bands(), ga.bandRows() * cols, [&](int64_t b0, int64_t b1) {
        BandMax ba = ga.scratch(), be = ge.scratch();
        for (int64_t gr = b0; gr < b1; ++gr) {
            ba.reset();
            be.reset();
            const int64_t r0 = gr * ga.bandRows(), r1 = std::min(rows, r0 + ga.bandRows());
            for (int64_t r = r0; r < r1; ++r) {  // the row stays in L1 for the second fold
                ga.fold(ba, xhat + r * cols, nullptr);
                ge.fold(be, xhat + r * cols, x + r * cols);
            }
            ga.endBand(ba, gr);
            ge.endBand(be, gr);
            if (rowMetrics) {
                const size_t n = size_t((r1 - r0) * cols);
                const auto band = computeRowMetrics({x + r0 * cols, n}, {xhat + r0 * cols, n}, r1 - r0, cols);
                std::copy(band.begin(), band.end(), rowMetrics->begin() + r0);
            }
        }
    });
    // Each finish ranks ~150K cells for the colour range: the two maps side by side.
    parallelFor(2, [&](int64_t i) { (i == 0 ? after : error) = (i == 0 ? ga : ge).finish(); }, rows * cols >= kTeamMinValues);
}

// Drag steps make a new outcome per mouse move and drop the one before: 2.4 MB of codes
// and 9.4 MB of floats for a 768x3072 matrix. Handing the buffers of dropped outcomes to
// the next one spares the allocator's zero fill and fresh pages on every step.
class BufferRecycler {
public:
    void put(QuantizedTensor&& qt, std::vector<float>&& xhat)
    {
        std::lock_guard lock(mu_);
        if (spare_.size() < kKeep)
            spare_.push_back({std::move(qt), std::move(xhat)});
    }
    bool take(size_t numel, QuantizedTensor& qt, std::vector<float>& xhat)
    {
        std::lock_guard lock(mu_);
        for (size_t i = 0; i < spare_.size(); ++i) {
            if (spare_[i].xhat.size() != numel)
                continue;
            qt = std::move(spare_[i].qt);
            xhat = std::move(spare_[i].xhat);
            spare_.erase(spare_.begin() + std::ptrdiff_t(i));
            return true;
        }
        spare_.clear();  // another matrix's sizes: let them go
        return false;
    }

private:
    static constexpr size_t kKeep = 2;
    struct Spare {
        QuantizedTensor qt;
        std::vector<float> xhat;
    };
    std::mutex mu_;
    std::vector<Spare> spare_;
};

BufferRecycler& recycler()
{
    static auto* r = new BufferRecycler;  // never destroyed: outcomes may outlive statics at exit
    return *r;
}

std::shared_ptr<QuantOutcome> newOutcome(size_t numel)
{
    auto* o = new QuantOutcome;
    if (!recycler().take(numel, o->qt, o->dequantized))
        o->dequantized.resize(numel);
    return std::shared_ptr<QuantOutcome>(o, [](QuantOutcome* p) {
        recycler().put(std::move(p->qt), std::move(p->dequantized));
        delete p;
    });
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
    auto out = newOutcome(m->values.size());
    // Quantize, dequantize and the metrics in one sweep where the spec allows; then the
    // maps and per-row metrics in a second. Same numbers as the separate passes.
    auto metrics = quantizeRoundTrip(m->values, shape, spec, out->qt, out->dequantized);
    if (!metrics)
        return metrics.error();
    out->spec = spec;
    out->metrics = *metrics;
    effectiveRange(out->qt.params, out->effLo, out->effHi);
    out->bytesBefore = storedBytes(m->dtype, int64_t(m->values.size()));
    out->bytesAfter = out->qt.bytesAfter();

    poolOutcome(m->values.data(), out->dequantized.data(), m->rows, m->cols, maxCells, out->after, out->error,
                m->rows > 1 ? &out->rowMetrics : nullptr);

    if (m->rows > 1) {
        if (withAlternative && !isGgmlScheme(spec.scheme)) {
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

TensorSummary tensorSummary(const Tensor& t, int index, const TensorFigures& f)
{
    TensorSummary s;
    s.index = index;
    if (!f.status) {
        s.error = f.status.error().message;
        return s;
    }
    s.min = f.stats.min;
    s.max = f.stats.max;
    s.bytesBefore = storedBytes(t.dtype, t.numel());
    s.keptFloat = !f.quantized;
    s.sqnrDb = f.quantized ? f.metrics.sqnrDb : 0;
    s.clampedFraction = f.quantized ? f.metrics.clampedFraction : 0;
    s.bytesAfter = f.quantized ? f.bytesAfter : s.bytesBefore;
    s.ok = true;
    return s;
}

}  // namespace quantlens::ui
