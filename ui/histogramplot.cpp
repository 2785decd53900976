#include "histogramplot.h"

#include <QMouseEvent>

#include <algorithm>
#include <cmath>

#include "formatting.h"

namespace quantlens::ui {

namespace {
const QColor kInside(0x4c, 0x72, 0xb0);
const QColor kClamped(0xd6, 0x27, 0x28);
const QColor kLine(0xc0, 0x39, 0x2b);
// Bars start here on the log axis, so a count of 1 still has a visible height.
constexpr double kLogBase = 0.4;
}  // namespace

HistogramPlot::HistogramPlot(QWidget* parent) : QCustomPlot(parent)
{
    setMouseTracking(true);
    setMinimumSize(320, 220);
    setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    axisRect()->setRangeDrag(Qt::Horizontal);
    axisRect()->setRangeZoom(Qt::Horizontal);

    plotLayout()->insertRow(0);
    title_ = new QCPTextElement(this, QString(), QFont(font().family(), font().pointSize(), QFont::Bold));
    plotLayout()->addElement(0, 0, title_);

    xAxis->setLabel(tr("value"));
    yAxis->setLabel(tr("count"));

    inside_ = new QCPBars(xAxis, yAxis);
    inside_->setName(tr("kept"));
    inside_->setPen(Qt::NoPen);
    inside_->setBrush(kInside);
    inside_->setWidthType(QCPBars::wtPlotCoords);
    clamped_ = new QCPBars(xAxis, yAxis);
    clamped_->setName(tr("clamped"));
    clamped_->setPen(Qt::NoPen);
    clamped_->setBrush(kClamped);
    clamped_->setWidthType(QCPBars::wtPlotCoords);

    // The clamp labels sit above everything on "main": the calibrator markers, added later,
    // were drawn across the "lo" label when a calibrator's value lay next to the range.
    addLayer(QStringLiteral("clampLabels"), layer(QStringLiteral("main")), QCustomPlot::limAbove);
    for (int i = 0; i < 2; ++i) {
        bands_[i] = new QCPItemRect(this);
        bands_[i]->topLeft->setTypeY(QCPItemPosition::ptAxisRectRatio);
        bands_[i]->bottomRight->setTypeY(QCPItemPosition::ptAxisRectRatio);
        bands_[i]->setPen(Qt::NoPen);
        bands_[i]->setBrush(QColor(214, 39, 40, 28));
        bands_[i]->setSelectable(false);
        bands_[i]->setLayer(QStringLiteral("background"));

        lines_[i] = new QCPItemStraightLine(this);
        lines_[i]->setPen(QPen(kLine, 2));
        lines_[i]->setSelectable(false);

        labels_[i] = new QCPItemText(this);
        labels_[i]->position->setTypeY(QCPItemPosition::ptAxisRectRatio);
        labels_[i]->setPositionAlignment(Qt::AlignTop | (i == 0 ? Qt::AlignLeft : Qt::AlignRight));
        labels_[i]->setPadding(QMargins(4, 2, 4, 2));
        labels_[i]->setColor(kLine);
        labels_[i]->setBrush(QColor(255, 255, 255, 210));
        labels_[i]->setClipToAxisRect(true);
        labels_[i]->setLayer(QStringLiteral("clampLabels"));
    }
    message_ = new QCPItemText(this);
    message_->position->setType(QCPItemPosition::ptAxisRectRatio);
    message_->position->setCoords(0.5, 0.5);
    message_->setVisible(false);
    pending_ = new QCPItemText(this);
    pending_->setObjectName(QStringLiteral("pendingNote"));
    pending_->position->setType(QCPItemPosition::ptAxisRectRatio);
    pending_->position->setCoords(0.5, 0.06);
    pending_->setPositionAlignment(Qt::AlignTop | Qt::AlignHCenter);
    pending_->setPadding(QMargins(6, 3, 6, 3));
    pending_->setBrush(QColor(255, 255, 255, 220));
    pending_->setColor(Qt::black);
    pending_->setPen(QPen(QColor(0x88, 0x88, 0x88)));
    pending_->setLayer(QStringLiteral("clampLabels"));
    pending_->setVisible(false);

    // Single clamped values are one-count bars, a sliver on a log axis: mark them too.
    clampedDots_ = new QCPGraph(xAxis, yAxis);
    clampedDots_->setName(tr("clamped"));
    clampedDots_->setLineStyle(QCPGraph::lsNone);
    clampedDots_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, kClamped, kClamped, 6));
    clampedDots_->removeFromLegend();
    // Legend entries for the items, which QCP legends cannot show by themselves.
    auto* lineKey = new QCPGraph(xAxis, yAxis);
    lineKey->setName(tr("clamp range (drag)"));
    lineKey->setPen(QPen(kLine, 2));
    auto* markerKey = new QCPGraph(xAxis, yAxis);
    markerKey->setName(tr("calibrators (click)"));
    markerKey->setPen(QPen(Qt::gray, 1.2, Qt::DashLine));

    // The legend goes in its own row under the title, where it hides no data.
    legend->setVisible(true);
    axisRect()->insetLayout()->take(legend);
    axisRect()->insetLayout()->simplify();
    plotLayout()->insertRow(1);
    plotLayout()->addElement(1, 0, legend);
    plotLayout()->setRowStretchFactor(1, 0.001);
    legend->setFillOrder(QCPLegend::foColumnsFirst);
    legend->setBorderPen(Qt::NoPen);
    legend->setBrush(Qt::NoBrush);
    legend->setMargins(QMargins(4, 0, 4, 0));
    applyTheme();
    clearHistogram(tr("Select a tensor"));
}

void HistogramPlot::setHistogram(const Histogram& h, const TensorStats& stats, const QString& title)
{
    hist_ = h;
    stats_ = stats;
    haveData_ = !h.counts.empty();
    title_->setText(title);
    message_->setVisible(false);
    const double w = hist_.binWidth();
    inside_->setWidth(w);
    clamped_->setWidth(w);
    // The previous tensor's lines mean nothing here: hidden until this one's range comes.
    haveRange_ = false;
    lo_ = stats.min;
    hi_ = stats.max;
    for (int i = 0; i < 2; ++i) {
        lines_[i]->setVisible(false);
        bands_[i]->setVisible(false);
        labels_[i]->setVisible(false);
    }
    rebuildBars();
    placeLines();
    rescale();
    replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::clearHistogram(const QString& message)
{
    haveData_ = false;
    hist_ = {};
    inside_->data()->clear();
    clamped_->data()->clear();
    clampedDots_->data()->clear();
    haveRange_ = false;
    pending_->setVisible(false);
    title_->setText(QString());
    message_->setText(message);
    message_->setVisible(true);
    for (int i = 0; i < 2; ++i) {
        lines_[i]->setVisible(false);
        bands_[i]->setVisible(false);
        labels_[i]->setVisible(false);
    }
    setMarkers({});
    replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::setClampRange(double lo, double hi)
{
    if (!std::isfinite(lo) || !std::isfinite(hi))
        return;
    if (lo > hi)
        std::swap(lo, hi);
    if (dragging_ >= 0)
        return;  // the user holds a line; the result of the drag will set it on release
    if (lo == lo_ && hi == hi_ && haveRange_ && lines_[0]->visible() == haveData_)
        return;
    lo_ = lo;
    hi_ = hi;
    haveRange_ = true;
    pending_->setVisible(false);
    rebuildBars();
    placeLines();
    rescale();
    replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::showPending(const QString& what)
{
    if (dragging_ >= 0 || !haveData_)
        return;
    haveRange_ = false;
    for (int i = 0; i < 2; ++i) {
        lines_[i]->setVisible(false);
        bands_[i]->setVisible(false);
        labels_[i]->setVisible(false);
    }
    pending_->setText(what);
    pending_->setVisible(true);
    rebuildBars();
    replot(QCustomPlot::rpQueuedReplot);
}

QString HistogramPlot::pendingText() const { return pending_->visible() ? pending_->text() : QString(); }

bool HistogramPlot::linesVisible() const { return lines_[0]->visible() && lines_[1]->visible(); }

void HistogramPlot::resetView()
{
    rescale();
    replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::setMarkers(const QVector<Marker>& markers)
{
    for (auto* l : markerLines_)
        removeItem(l);
    for (auto* t : markerLabels_)
        removeItem(t);
    markerLines_.clear();
    markerLabels_.clear();
    markers_ = markers;
    if (!haveData_)
        markers_.clear();
    for (int i = 0; i < markers_.size(); ++i) {
        const Marker& m = markers_[i];
        for (double x : {m.lo, m.hi}) {
            auto* l = new QCPItemStraightLine(this);
            l->point1->setCoords(x, 1);
            l->point2->setCoords(x, 2);
            l->setPen(QPen(m.color, 1.2, Qt::DashLine));
            l->setSelectable(false);
            markerLines_ << l;
        }
        auto* t = new QCPItemText(this);
        t->position->setTypeY(QCPItemPosition::ptAxisRectRatio);
        t->position->setCoords(m.hi, 0.14 + 0.08 * i);
        t->setPositionAlignment(Qt::AlignLeft | Qt::AlignVCenter);
        t->setText(m.name);
        t->setColor(m.color);
        t->setPadding(QMargins(3, 0, 3, 0));
        t->setBrush(QColor(255, 255, 255, 200));
        t->setClipToAxisRect(true);
        markerLabels_ << t;
    }
    rescale();
    replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::setLogScale(bool on)
{
    if (log_ == on)
        return;
    log_ = on;
    rebuildBars();
    rescale();
    replot(QCustomPlot::rpQueuedReplot);
}

void HistogramPlot::rebuildBars()
{
    QVector<double> kx, ky, cx, cy, dx, dy;
    int64_t maxCount = 1;
    for (int64_t c : hist_.counts)
        maxCount = std::max(maxCount, c);
    for (size_t i = 0; i < hist_.counts.size(); ++i) {
        const int64_t c = hist_.counts[i];
        if (c <= 0)
            continue;  // empty bins would sit at log(0)
        const double x = hist_.binCenter(i);
        // A bin belongs to the clamped colour when its centre is outside the range; with
        // ~256 bins over the data that is within half a bin of the exact split.
        const bool clamped = haveRange_ && (x < lo_ || x > hi_);
        (clamped ? cx : kx) << x;
        (clamped ? cy : ky) << double(c);
        if (clamped && c * 50 < maxCount) {
            dx << x;
            dy << double(c);
        }
    }
    inside_->setData(kx, ky, true);
    clamped_->setData(cx, cy, true);
    clampedDots_->setData(dx, dy, true);
    inside_->setBaseValue(log_ ? kLogBase : 0.0);
    clamped_->setBaseValue(log_ ? kLogBase : 0.0);
}

void HistogramPlot::placeLines()
{
    if (!haveData_ || !haveRange_)
        return;
    const double vals[2] = {lo_, hi_};
    const double span = std::max(stats_.max - stats_.min, std::abs(hi_ - lo_)) + 1e-12;
    for (int i = 0; i < 2; ++i) {
        lines_[i]->point1->setCoords(vals[i], 1);
        lines_[i]->point2->setCoords(vals[i], 2);
        lines_[i]->setVisible(true);
        labels_[i]->position->setCoords(vals[i], 0.0);
        labels_[i]->setText((i == 0 ? tr("lo %1") : tr("hi %1")).arg(formatNumber(vals[i], 4)));
        labels_[i]->setVisible(true);
        bands_[i]->setVisible(true);
    }
    bands_[0]->topLeft->setCoords(lo_ - 100 * span, 0);
    bands_[0]->bottomRight->setCoords(lo_, 1);
    bands_[1]->topLeft->setCoords(hi_, 0);
    bands_[1]->bottomRight->setCoords(hi_ + 100 * span, 1);
}

void HistogramPlot::rescale()
{
    if (!haveData_) {
        xAxis->setRange(-1, 1);
        yAxis->setScaleType(QCPAxis::stLinear);
        yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
        yAxis->setRange(0, 1);
        return;
    }
    // Cover the data and both lines, so clamped outliers and an over-wide manual range
    // are both on screen.
    double lo = std::min({stats_.min, haveRange_ ? lo_ : stats_.min, hist_.lo});
    double hi = std::max({stats_.max, haveRange_ ? hi_ : stats_.max, hist_.hi});
    for (const Marker& m : markers_) {
        lo = std::min(lo, m.lo);
        hi = std::max(hi, m.hi);
    }
    const double pad = 0.04 * (hi - lo) + 1e-12;
    xAxis->setRange(lo - pad, hi + pad);
    // Marker names right of their line, or left of it near the right edge.
    for (int i = 0; i < markerLabels_.size() && i < markers_.size(); ++i) {
        const bool nearRight = markers_[i].hi > hi - 0.2 * (hi - lo);
        markerLabels_[i]->setPositionAlignment((nearRight ? Qt::AlignRight : Qt::AlignLeft) | Qt::AlignVCenter);
    }
    int64_t maxCount = 1;
    for (int64_t c : hist_.counts)
        maxCount = std::max(maxCount, c);
    if (log_) {
        yAxis->setScaleType(QCPAxis::stLogarithmic);
        auto t = QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog);
        t->setLogBase(10);
        yAxis->setTicker(t);
        yAxis->setNumberFormat(QStringLiteral("eb"));
        yAxis->setNumberPrecision(0);
        yAxis->setRange(kLogBase, double(maxCount) * 4.0);  // headroom for the line labels
        yAxis->setLabel(tr("count (log)"));
    } else {
        yAxis->setScaleType(QCPAxis::stLinear);
        yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
        yAxis->setNumberFormat(QStringLiteral("gb"));
        yAxis->setNumberPrecision(6);
        yAxis->setRange(0, double(maxCount) * 1.12);
        yAxis->setLabel(tr("count"));
    }
}

int HistogramPlot::linePixel(int which) const
{
    return int(std::lround(xAxis->coordToPixel(which == 0 ? lo_ : hi_)));
}

int HistogramPlot::markerPixel(int index, bool hiSide) const
{
    if (index < 0 || index >= markers_.size())
        return -1;
    return int(std::lround(xAxis->coordToPixel(hiSide ? markers_[index].hi : markers_[index].lo)));
}

int HistogramPlot::nearestLine(double px) const
{
    if (!haveData_ || !haveRange_)
        return -1;
    const double d0 = std::abs(xAxis->coordToPixel(lo_) - px);
    const double d1 = std::abs(xAxis->coordToPixel(hi_) - px);
    const int best = d1 < d0 ? 1 : 0;
    return std::min(d0, d1) <= kGrabPixels ? best : -1;
}

int HistogramPlot::nearestMarker(double px) const
{
    int best = -1;
    double bestD = 6.0;
    for (int i = 0; i < markers_.size(); ++i)
        for (double x : {markers_[i].lo, markers_[i].hi}) {
            const double d = std::abs(xAxis->coordToPixel(x) - px);
            if (d <= bestD) {
                bestD = d;
                best = i;
            }
        }
    return best;
}

void HistogramPlot::mousePressEvent(QMouseEvent* e)
{
    if (e->button() == Qt::LeftButton && axisRect()->rect().contains(e->pos())) {
        const int line = nearestLine(e->position().x());
        if (line >= 0) {
            dragging_ = line;
            // Otherwise the press would also start panning the axis under the line.
            setInteraction(QCP::iRangeDrag, false);
            e->accept();
            return;
        }
        const int marker = nearestMarker(e->position().x());
        if (marker >= 0) {
            emit markerClicked(marker);
            e->accept();
            return;
        }
    }
    QCustomPlot::mousePressEvent(e);
}

void HistogramPlot::mouseMoveEvent(QMouseEvent* e)
{
    if (dragging_ < 0) {
        const bool near = nearestLine(e->position().x()) >= 0 || nearestMarker(e->position().x()) >= 0;
        setCursor(near ? Qt::SplitHCursor : Qt::ArrowCursor);
        QCustomPlot::mouseMoveEvent(e);
        return;
    }
    double x = xAxis->pixelToCoord(e->position().x());
    // Keep lo < hi by at least a pixel's worth so the range never collapses.
    const double minGap = std::abs(xAxis->pixelToCoord(1) - xAxis->pixelToCoord(0));
    switch (rule_) {
    case DragRule::Free:
        if (dragging_ == 0)
            lo_ = std::min(x, hi_ - minGap);
        else
            hi_ = std::max(x, lo_ + minGap);
        break;
    case DragRule::Mirror: {
        // A zero-point-0 scheme clamps at +-absmax: the other line is where it will clamp.
        const double a = std::max(dragging_ == 0 ? -x : x, minGap / 2);
        lo_ = -a;
        hi_ = a;
        break;
    }
    case DragRule::IncludeZero:
        if (dragging_ == 0)
            lo_ = std::min(x, std::min(0.0, hi_ - minGap));
        else
            hi_ = std::max(x, std::max(0.0, lo_ + minGap));
        break;
    }
    // The spec keeps its range in float32: the lines hold exactly what it will hold, so a
    // dropped line does not move by a rounding step when the result comes back.
    // (volatile: the optimiser may otherwise drop the narrowing as a no-op round trip)
    volatile float lof = float(lo_), hif = float(hi_);
    lo_ = lof;
    hi_ = hif;
    rebuildBars();
    placeLines();
    replot(QCustomPlot::rpQueuedReplot);
    emit rangeDragged(lo_, hi_);
    e->accept();
}

void HistogramPlot::mouseReleaseEvent(QMouseEvent* e)
{
    if (dragging_ < 0) {
        QCustomPlot::mouseReleaseEvent(e);
        return;
    }
    dragging_ = -1;
    setInteraction(QCP::iRangeDrag, true);
    e->accept();
    emit rangeDragFinished(lo_, hi_);
}

void HistogramPlot::mouseDoubleClickEvent(QMouseEvent* e)
{
    if (e->button() == Qt::LeftButton && haveData_) {
        resetView();
        e->accept();
        return;
    }
    QCustomPlot::mouseDoubleClickEvent(e);
}

void HistogramPlot::changeEvent(QEvent* e)
{
    QCustomPlot::changeEvent(e);
    if (e->type() == QEvent::PaletteChange)
        applyTheme();
}

void HistogramPlot::applyTheme()
{
    const QPalette pal = palette();
    setBackground(pal.brush(QPalette::Base));
    const QColor fg = pal.color(QPalette::Text);
    for (QCPAxis* a : {xAxis, yAxis}) {
        a->setBasePen(QPen(fg));
        a->setTickPen(QPen(fg));
        a->setSubTickPen(QPen(fg));
        a->setTickLabelColor(fg);
        a->setLabelColor(fg);
    }
    title_->setTextColor(fg);
    message_->setColor(fg);
    legend->setTextColor(Qt::black);
    replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace quantlens::ui
