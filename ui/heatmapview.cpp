#include "heatmapview.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QVBoxLayout>

#include "formatting.h"
#include "heatmapplot.h"
#include "qcp.h"

namespace quantlens::ui {

namespace {

// Diverging maps with white at zero: sign and magnitude read at a glance.
QCPColorGradient valueGradient()
{
    QCPColorGradient g;
    g.setColorInterpolation(QCPColorGradient::ciRGB);
    g.setColorStopAt(0.0, QColor(0x3b, 0x4c, 0xc0));
    g.setColorStopAt(0.25, QColor(0x8d, 0xb0, 0xfe));
    g.setColorStopAt(0.5, QColor(0xf7, 0xf7, 0xf7));
    g.setColorStopAt(0.75, QColor(0xf4, 0x9a, 0x7b));
    g.setColorStopAt(1.0, QColor(0xb4, 0x04, 0x26));
    return g;
}

QCPColorGradient errorGradient()
{
    QCPColorGradient g;
    g.setColorInterpolation(QCPColorGradient::ciRGB);
    g.setColorStopAt(0.0, QColor(0x76, 0x2a, 0x83));
    g.setColorStopAt(0.25, QColor(0xc2, 0xa5, 0xcf));
    g.setColorStopAt(0.5, QColor(0xf7, 0xf7, 0xf7));
    g.setColorStopAt(0.75, QColor(0xa6, 0xdb, 0xa0));
    g.setColorStopAt(1.0, QColor(0x1b, 0x78, 0x37));
    return g;
}

}  // namespace

HeatmapView::HeatmapView(QWidget* parent) : QWidget(parent)
{
    auto* v = new QVBoxLayout(this);
    v->setContentsMargins(0, 0, 0, 0);
    auto* h = new QHBoxLayout;
    h->setSpacing(2);
    for (int i = 0; i < 3; ++i) {
        plots_[i] = new HeatmapPlot(this);
        h->addWidget(plots_[i], 1);
        connect(plots_[i]->xAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this, i] { syncRanges(i); });
        connect(plots_[i]->yAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this, i] { syncRanges(i); });
        connect(plots_[i], &HeatmapPlot::hovered, this, &HeatmapView::onHover);
    }
    plots_[0]->setObjectName(QStringLiteral("heatmapBefore"));
    plots_[1]->setObjectName(QStringLiteral("heatmapAfter"));
    plots_[2]->setObjectName(QStringLiteral("heatmapError"));
    v->addLayout(h, 1);
    strip_ = new QCustomPlot(this);
    strip_->setObjectName(QStringLiteral("stripPlot"));
    strip_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    strip_->axisRect()->setRangeDrag(Qt::Horizontal);
    strip_->axisRect()->setRangeZoom(Qt::Horizontal);
    strip_->xAxis->setLabel(tr("element index"));
    strip_->yAxis->setLabel(tr("value"));
    auto* before = strip_->addGraph();
    before->setName(tr("before (float)"));
    before->setPen(QPen(QColor(0x3b, 0x4c, 0xc0), 1.2));
    before->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, 3));
    auto* after = strip_->addGraph();
    after->setName(tr("after (dequantized)"));
    after->setPen(QPen(QColor(0xb4, 0x04, 0x26), 1.0));
    after->setLineStyle(QCPGraph::lsStepCenter);
    strip_->legend->setVisible(true);
    strip_->hide();
    v->addWidget(strip_, 1);
    hover_ = new QLabel(this);
    hover_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    hover_->setText(tr("Hover a heatmap to read one weight; wheel zooms and drag pans all three together."));
    v->addWidget(hover_);
    clear(tr("Select a 2-D tensor"));
}

void HeatmapView::clear(const QString& message)
{
    matrix_.reset();
    outcome_.reset();
    showStrip(false);
    for (HeatmapPlot* p : plots_)
        p->clearGrid(message);
}

void HeatmapView::setMatrix(std::shared_ptr<const MatrixData> m)
{
    matrix_ = std::move(m);
    outcome_.reset();
    showStrip(matrix_ && matrix_->rows == 1);
    if (showsStrip()) {
        updateStrip();
        return;
    }
    plots_[1]->clearGrid(tr("quantizing…"));
    plots_[2]->clearGrid(tr("quantizing…"));
    updateLabels();
}

void HeatmapView::setTitles(const QString& before, const QString& after, const QString& error)
{
    titles_[0] = before;
    titles_[1] = after;
    titles_[2] = error;
}

void HeatmapView::setOutcome(std::shared_ptr<const QuantOutcome> q)
{
    outcome_ = std::move(q);
    if (showsStrip())
        updateStrip();
    else
        updateLabels();
}

bool HeatmapView::showsStrip() const { return !strip_->isHidden(); }

void HeatmapView::showStrip(bool on)
{
    strip_->setVisible(on);
    for (HeatmapPlot* p : plots_)
        p->setVisible(!on);
    hover_->setVisible(!on);
}

void HeatmapView::updateStrip()
{
    if (!matrix_)
        return;
    const MatrixData& m = *matrix_;
    QVector<double> x(qsizetype(m.cols)), y(qsizetype(m.cols)), yq;
    for (int64_t i = 0; i < m.cols; ++i) {
        x[qsizetype(i)] = double(i);
        y[qsizetype(i)] = m.values[size_t(i)];
    }
    strip_->graph(0)->setData(x, y, true);
    // Dots for a few hundred values; a line alone for more, where dots would merge.
    strip_->graph(0)->setScatterStyle(QCPScatterStyle(m.cols <= 512 ? QCPScatterStyle::ssDisc : QCPScatterStyle::ssNone, 3));
    if (outcome_ && outcome_->dequantized.size() == size_t(m.cols)) {
        yq.reserve(qsizetype(m.cols));
        for (float v : outcome_->dequantized)
            yq << double(v);
        strip_->graph(1)->setData(x, yq, true);
        strip_->graph(1)->addToLegend();
    } else {
        strip_->graph(1)->data()->clear();
        strip_->graph(1)->removeFromLegend();
    }
    strip_->xAxis->setRange(-0.5, double(m.cols) - 0.5);
    strip_->yAxis->rescale();
    const QCPRange r = strip_->yAxis->range();
    const double pad = 0.05 * (r.size() > 0 ? r.size() : 1.0);
    strip_->yAxis->setRange(r.lower - pad, r.upper + pad);
    strip_->replot(QCustomPlot::rpQueuedReplot);
}

void HeatmapView::updateLabels()
{
    if (!matrix_)
        return;
    const MatrixData& m = *matrix_;
    const HeatGrid& g = m.grid;
    QString xl = tr("in feature (column)");
    QString yl = tr("out feature (row)");
    if (g.pooled()) {
        // Say that a cell is not one weight.
        xl += tr(" · %1 cols, max-|x| of %2 per cell").arg(m.cols).arg(g.poolCols);
        yl += tr(" · %1 rows, max-|x| of %2").arg(m.rows).arg(g.poolRows);
    }
    // Short: the map is a third of the window wide. The histogram title and the numbers
    // panel say "stored [in, out]" in full.
    const QString note = m.transposed ? tr(", transposed") : QString();
    for (HeatmapPlot* p : plots_)
        p->setAxisLabels(xl, yl);
    const double range = g.clipAbs;
    const QString scaleLabel = tr("value, ±%1 (p99.9 of |x|)").arg(formatNumber(range, 3));
    auto title = [this](int i, const QString& standard) { return titles_[i].isEmpty() ? standard : titles_[i]; };
    plots_[0]->setGrid(g, m.rows, m.cols, range, title(0, tr("before (float%1)").arg(note)), scaleLabel, valueGradient());
    if (outcome_) {
        // "dequantized, transposed" overflows a third of a 1400-pixel window: shortened then.
        const QString after = m.transposed ? tr("after (dequant., transposed)") : tr("after (dequantized)");
        plots_[1]->setGrid(outcome_->after, m.rows, m.cols, range, title(1, after),
                           scaleLabel, valueGradient());
        const double er = outcome_->error.clipAbs;
        plots_[2]->setGrid(outcome_->error, m.rows, m.cols, er, title(2, tr("error (after − before)")),
                           tr("error, ±%1").arg(formatNumber(er, 3)), errorGradient());
    }
    // Match the views of the new maps to the first one.
    syncRanges(0);
}

void HeatmapView::syncRanges(int from)
{
    if (syncing_)
        return;
    syncing_ = true;
    const QCPRange xr = plots_[from]->xAxis->range();
    const QCPRange yr = plots_[from]->yAxis->range();
    for (int i = 0; i < 3; ++i) {
        if (i == from || !plots_[i]->hasGrid())
            continue;
        plots_[i]->xAxis->setRange(xr);
        plots_[i]->yAxis->setRange(yr);
        plots_[i]->replot(QCustomPlot::rpQueuedReplot);
    }
    syncing_ = false;
}

QString HeatmapView::describe(qint64 row, qint64 col) const
{
    if (!matrix_ || row < 0 || col < 0 || row >= matrix_->rows || col >= matrix_->cols)
        return {};
    const size_t i = size_t(row * matrix_->cols + col);
    const double x = matrix_->values[i];
    QString s = tr("row %1, col %2: value %3").arg(row).arg(col).arg(formatNumber(x, 6));
    if (outcome_ && i < outcome_->dequantized.size()) {
        const double d = outcome_->dequantized[i];
        s += tr(", quantized %1, dequantized %2, error %3")
                 .arg(outcome_->qt.qAt(int64_t(i)))
                 .arg(formatNumber(d, 6))
                 .arg(formatNumber(d - x, 3));
    }
    return s;
}

void HeatmapView::onHover(qint64 row, qint64 col)
{
    const QString s = describe(row, col);
    if (s.isEmpty())
        return;
    hover_->setText(s);
    emit hoverChanged(s);
}

QString HeatmapView::hoverText() const { return hover_->text(); }

}  // namespace quantlens::ui
