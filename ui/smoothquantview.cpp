#include "smoothquantview.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QSlider>
#include <QSplitter>
#include <QVBoxLayout>

#include "formatting.h"
#include "qcp.h"

#include <algorithm>
#include <cmath>

namespace quantlens::ui {

namespace {
const QColor kBars(0x4c, 0x72, 0xb0);
const QColor kWidest(0xd6, 0x27, 0x28);
const QColor kTypical(0x2c, 0xa0, 0x2c);
constexpr double kLogBase = 0.4;  // bars start here on the log axis, so a count of 1 shows
}  // namespace

SmoothQuantView::SmoothQuantView(QWidget* parent) : QWidget(parent)
{
    auto* top = new QVBoxLayout(this);
    top->setContentsMargins(0, 0, 0, 0);
    auto* row = new QHBoxLayout;
    row->addWidget(new QLabel(tr("SmoothQuant α"), this));
    slider_ = new QSlider(Qt::Horizontal, this);
    slider_->setObjectName(QStringLiteral("smoothQuantAlpha"));
    slider_->setRange(0, kSteps);
    slider_->setValue(kSteps / 2);
    slider_->setToolTip(tr("s_j = max|X_j|^α / max|W_j|^(1−α): α = 0 leaves the activations' outliers, α = 1 moves "
                           "them all into the weights"));
    row->addWidget(slider_, 1);
    label_ = new QLabel(this);
    // One line whose length does not move the layout: a wrapped label's new text re-laid out
    // the whole tab at every slider step (tests/bench/ui/bench_alphadrag).
    label_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Fixed);
    label_->setMinimumWidth(200);
    row->addWidget(label_, 2);
    top->addLayout(row);

    auto* split = new QSplitter(Qt::Horizontal, this);
    activations_ = makeHistPlot(tr("activations"));
    weights_ = makeHistPlot(tr("weights"));
    activations_.plot->setObjectName(QStringLiteral("smoothedActivations"));
    weights_.plot->setObjectName(QStringLiteral("smoothedWeights"));
    split->addWidget(activations_.plot);
    split->addWidget(weights_.plot);

    sqnr_ = new QCustomPlot(split);
    sqnr_->setObjectName(QStringLiteral("smoothQuantSqnr"));
    sqnr_->setMinimumSize(170, 160);
    sqnr_->xAxis->setLabel(tr("α"));
    auto ticks = QSharedPointer<QCPAxisTickerFixed>(new QCPAxisTickerFixed);
    ticks->setTickStep(0.5);  // the plot is narrow: 0, 0.5, 1
    ticks->setScaleStrategy(QCPAxisTickerFixed::ssNone);
    sqnr_->xAxis->setTicker(ticks);
    sqnr_->yAxis->setLabel(tr("W8A8 output SQNR (dB)"));
    sqnrCurve_ = sqnr_->addGraph();
    sqnrCurve_->setName(tr("smoothed at α"));
    sqnrCurve_->setPen(QPen(kBars, 2));
    sqnrCurve_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, 4));
    sqnrNone_ = sqnr_->addGraph();
    sqnrNone_->setName(tr("no smoothing"));
    sqnrNone_->setPen(QPen(Qt::gray, 1.5, Qt::DashLine));
    sqnrAt_ = sqnr_->addGraph();
    sqnrAt_->setName(tr("slider"));
    sqnrAt_->setLineStyle(QCPGraph::lsNone);
    sqnrAt_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, kWidest, 9));
    sqnrAt_->removeFromLegend();
    // The legend in a row of its own above the curve, which fills the plot.
    sqnr_->legend->setVisible(true);
    sqnr_->axisRect()->insetLayout()->take(sqnr_->legend);
    sqnr_->axisRect()->insetLayout()->simplify();
    sqnr_->plotLayout()->insertRow(0);
    sqnr_->plotLayout()->addElement(0, 0, sqnr_->legend);
    sqnr_->plotLayout()->setRowStretchFactor(0, 0.001);
    sqnr_->legend->setBorderPen(Qt::NoPen);
    sqnr_->legend->setBrush(Qt::NoBrush);
    split->addWidget(sqnr_);
    split->setStretchFactor(0, 2);
    split->setStretchFactor(1, 2);
    split->setStretchFactor(2, 1);
    split->setSizes({400, 400, 190});  // scaled to the width there is
    top->addWidget(split, 1);

    connect(slider_, &QSlider::valueChanged, this, [this](int v) {
        show();
        emit alphaChanged(v);
    });
    show();
}

SmoothQuantView::HistPlot SmoothQuantView::makeHistPlot(const QString& what)
{
    HistPlot h;
    h.plot = new QCustomPlot(this);
    h.plot->setMinimumSize(260, 200);
    h.plot->plotLayout()->insertRow(0);
    h.title = new QCPTextElement(h.plot, QString(), QFont(font().family(), font().pointSize(), QFont::Bold));
    h.plot->plotLayout()->addElement(0, 0, h.title);
    h.plot->xAxis->setLabel(tr("%1 after smoothing").arg(what));
    h.bars = new QCPBars(h.plot->xAxis, h.plot->yAxis);
    h.bars->setPen(Qt::NoPen);
    h.bars->setBrush(kBars);
    h.bars->setWidthType(QCPBars::wtPlotCoords);
    h.bars->setBaseValue(kLogBase);
    h.bars->removeFromLegend();
    h.plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
    auto t = QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog);
    t->setLogBase(10);
    h.plot->yAxis->setTicker(t);
    h.plot->yAxis->setNumberFormat(QStringLiteral("eb"));
    h.plot->yAxis->setNumberPrecision(0);
    h.plot->yAxis->setLabel(tr("count (log)"));
    for (int i = 0; i < 4; ++i) {
        h.lines[i] = new QCPItemStraightLine(h.plot);
        h.lines[i]->setPen(QPen(i < 2 ? kWidest : kTypical, 1.5, Qt::DashLine));
        h.lines[i]->setSelectable(false);
        h.lines[i]->setVisible(false);
    }
    for (int i = 0; i < 2; ++i) {
        h.keys[i] = h.plot->addGraph();
        h.keys[i]->setPen(QPen(i == 0 ? kWidest : kTypical, 1.5, Qt::DashLine));
    }
    // The legend in its own row under the title, where it hides no bars.
    h.plot->legend->setVisible(true);
    h.plot->axisRect()->insetLayout()->take(h.plot->legend);
    h.plot->axisRect()->insetLayout()->simplify();
    h.plot->plotLayout()->insertRow(1);
    h.plot->plotLayout()->addElement(1, 0, h.plot->legend);
    h.plot->plotLayout()->setRowStretchFactor(1, 0.001);
    h.plot->legend->setFillOrder(QCPLegend::foRowsFirst);
    h.plot->legend->setBorderPen(Qt::NoPen);
    h.plot->legend->setBrush(Qt::NoBrush);
    h.plot->legend->setMargins(QMargins(4, 0, 4, 0));
    h.plot->legend->setRowSpacing(0);
    QFont small = font();
    small.setPointSizeF(std::max(6.0, small.pointSizeF() - 1.0));
    h.plot->legend->setFont(small);
    return h;
}

void SmoothQuantView::setData(const Data* d)
{
    data_ = d && d->steps.size() == size_t(kSteps + 1) && d->sweep.size() == size_t(kSteps + 1) ? d : nullptr;
    sqnrCurve_->data()->clear();
    sqnrNone_->data()->clear();
    if (data_) {
        for (const SmoothQuantPoint& p : data_->sweep)
            sqnrCurve_->addData(p.alpha, p.sqnrDb);
        sqnrNone_->addData(0.0, data_->noSmoothingSqnrDb);
        sqnrNone_->addData(1.0, data_->noSmoothingSqnrDb);
        sqnr_->rescaleAxes();
        QCPRange y = sqnr_->yAxis->range();
        const double pad = std::max(0.5, 0.08 * y.size());
        sqnr_->yAxis->setRange(y.lower - pad, y.upper + pad);
        sqnr_->xAxis->setRange(-0.03, 1.03);
    }
    show();
}

void SmoothQuantView::setStaleNote(const QString& note)
{
    stale_ = note;
    show();
}

int SmoothQuantView::step() const { return slider_->value(); }

const SmoothedOperands* SmoothQuantView::current() const
{
    return data_ ? &data_->steps[size_t(step())] : nullptr;
}

const SmoothQuantView::HistPlot* SmoothQuantView::find(const QCustomPlot* plot) const
{
    return plot == weights_.plot ? &weights_ : plot == activations_.plot ? &activations_ : nullptr;
}

int SmoothQuantView::barCount(const QCustomPlot* plot) const
{
    const HistPlot* h = find(plot);
    return h ? h->bars->data()->size() : 0;
}

double SmoothQuantView::rangeLine(const QCustomPlot* plot, int which) const
{
    const HistPlot* h = find(plot);
    if (!h || which < 0 || which > 1 || !h->lines[2 * which + 1]->visible())
        return std::nan("");
    return h->lines[2 * which + 1]->point1->key();
}

void SmoothQuantView::showHist(HistPlot& h, const Histogram* hist, double widest, double typical,
                               double widestBefore, double typicalBefore, const QString& title, const QString& unit)
{
    h.bars->data()->clear();
    for (auto* l : h.lines)
        l->setVisible(hist != nullptr);
    if (!hist) {
        h.title->setText(title);
        h.keys[0]->setName(tr("widest %1's int8 range").arg(unit));
        h.keys[1]->setName(tr("median %1's int8 range").arg(unit));
        h.plot->xAxis->setRange(-1, 1);
        h.plot->yAxis->setRange(kLogBase, 10);
        h.plot->replot(QCustomPlot::rpQueuedReplot);
        return;
    }
    QVector<double> x, y;
    int64_t most = 1;
    for (size_t i = 0; i < hist->counts.size(); ++i)
        if (hist->counts[i] > 0) {  // empty bins would sit at log(0)
            x << hist->binCenter(i);
            y << double(hist->counts[i]);
            most = std::max(most, hist->counts[i]);
        }
    h.bars->setWidth(hist->binWidth());
    h.bars->setData(x, y, true);
    const double at[4] = {-widest, widest, -typical, typical};
    for (int i = 0; i < 4; ++i) {
        h.lines[i]->point1->setCoords(at[i], 1);
        h.lines[i]->point2->setCoords(at[i], 2);
    }
    // Each int8 range beside what it was before smoothing, and the step a value of that
    // token (row) is rounded to.
    h.keys[0]->setName(tr("widest %1 ±%2 (before ±%3)")
                           .arg(unit, formatNumber(widest, 3), formatNumber(widestBefore, 3)));
    h.keys[1]->setName(tr("median %1 ±%2, step %3 (before ±%4)")
                           .arg(unit, formatNumber(typical, 3), formatNumber(typical / 127.0, 3),
                                formatNumber(typicalBefore, 3)));
    h.title->setText(title);
    const double span = std::max(widest, 1e-12) * 1.06;
    h.plot->xAxis->setRange(-span, span);
    h.plot->yAxis->setRange(kLogBase, double(most) * 2.0);
    h.plot->replot(QCustomPlot::rpQueuedReplot);
}

void SmoothQuantView::show()
{
    const double a = alpha();
    const SmoothedOperands* s = current();
    if (!data_ || !s) {
        label_->setText(tr("α = %1").arg(a, 0, 'f', 2));
        showHist(activations_, nullptr, 0, 0, 0, 0, tr("Activations X / s: record a layer to see them"), tr("token"));
        showHist(weights_, nullptr, 0, 0, 0, 0, tr("Weights W · diag(s)"), tr("row"));
        sqnrAt_->data()->clear();
        sqnr_->replot(QCustomPlot::rpQueuedReplot);
        return;
    }
    const SmoothQuantPoint& p = data_->sweep[size_t(step())];
    label_->setText(tr("α = %1: W8A8 output SQNR %2 dB (no smoothing %3 dB, α = 0 %4 dB)")
                        .arg(p.alpha, 0, 'f', 2)
                        .arg(p.sqnrDb, 0, 'f', 2)
                        .arg(data_->noSmoothingSqnrDb, 0, 'f', 2)
                        .arg(data_->sweep.front().sqnrDb, 0, 'f', 2) +
                    (stale_.isEmpty() ? QString() : QStringLiteral(" — ") + stale_));
    label_->setStyleSheet(stale_.isEmpty() ? QString() : QStringLiteral("color: #b00020;"));
    showHist(activations_, &s->activations, s->actRange, s->medianTokenRange, data_->none.actRange,
             data_->none.medianTokenRange, tr("int8 ranges of X / s at α = %1 (%2 rows)").arg(a, 0, 'f', 2).arg(data_->rows),
             tr("token"));
    showHist(weights_, &s->weights, s->weightRange, s->medianRowRange, data_->none.weightRange,
             data_->none.medianRowRange, tr("int8 ranges of W · diag(s) at α = %1").arg(a, 0, 'f', 2), tr("row"));
    sqnrAt_->data()->clear();
    sqnrAt_->addData(p.alpha, p.sqnrDb);
    sqnr_->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace quantlens::ui
