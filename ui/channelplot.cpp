#include "channelplot.h"

#include <cmath>

#include "formatting.h"

namespace quantlens::ui {

ChannelPlot::ChannelPlot(QWidget* parent) : QCustomPlot(parent)
{
    setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    plotLayout()->clear();
    title_ = new QCPTextElement(this, QString(), QFont(font().family(), font().pointSize(), QFont::Bold));
    plotLayout()->addElement(0, 0, title_);
    rangeRect_ = new QCPAxisRect(this);
    sqnrRect_ = new QCPAxisRect(this);
    plotLayout()->addElement(1, 0, rangeRect_);
    plotLayout()->addElement(2, 0, sqnrRect_);
    auto* group = new QCPMarginGroup(this);
    rangeRect_->setMarginGroup(QCP::msLeft | QCP::msRight, group);
    sqnrRect_->setMarginGroup(QCP::msLeft | QCP::msRight, group);
    // Zooming one axis rect along channels zooms the other.
    connect(rangeRect_->axis(QCPAxis::atBottom), qOverload<const QCPRange&>(&QCPAxis::rangeChanged),
            sqnrRect_->axis(QCPAxis::atBottom), qOverload<const QCPRange&>(&QCPAxis::setRange));
    connect(sqnrRect_->axis(QCPAxis::atBottom), qOverload<const QCPRange&>(&QCPAxis::rangeChanged),
            rangeRect_->axis(QCPAxis::atBottom), qOverload<const QCPRange&>(&QCPAxis::setRange));
    for (QCPAxisRect* r : {rangeRect_, sqnrRect_}) {
        r->setRangeDrag(Qt::Horizontal);
        r->setRangeZoom(Qt::Horizontal);
    }

    QCPAxis* rx = rangeRect_->axis(QCPAxis::atBottom);
    QCPAxis* ry = rangeRect_->axis(QCPAxis::atLeft);
    rx->setLabel(tr("output channel (row)"));
    ry->setLabel(tr("channel min / max"));
    max_ = addGraph(rx, ry);
    min_ = addGraph(rx, ry);
    max_->setPen(QPen(QColor(0xb4, 0x04, 0x26)));
    min_->setPen(QPen(QColor(0x3b, 0x4c, 0xc0)));
    max_->setName(tr("max"));
    min_->setName(tr("min"));
    max_->setBrush(QColor(0x80, 0x80, 0x80, 50));
    max_->setChannelFillGraph(min_);

    QCPAxis* sx = sqnrRect_->axis(QCPAxis::atBottom);
    QCPAxis* sy = sqnrRect_->axis(QCPAxis::atLeft);
    sx->setLabel(tr("output channel (row)"));
    sy->setLabel(tr("SQNR (dB)"));
    sqnrTensor_ = addGraph(sx, sy);
    sqnrChannel_ = addGraph(sx, sy);
    sqnrTensor_->setPen(QPen(QColor(0xd6, 0x27, 0x28), 1.2));
    sqnrChannel_->setPen(QPen(QColor(0x2c, 0xa0, 0x2c), 1.2));

    sqnrLegend_ = new QCPLegend;
    sqnrRect_->insetLayout()->addElement(sqnrLegend_, Qt::AlignBottom | Qt::AlignRight);
    sqnrLegend_->setLayer(QStringLiteral("legend"));
    sqnrLegend_->setBrush(QColor(255, 255, 255, 210));
    sqnrTensor_->addToLegend(sqnrLegend_);
    sqnrChannel_->addToLegend(sqnrLegend_);
    clearData(tr("Select a 2-D tensor"));
}

void ChannelPlot::clearData(const QString& message)
{
    channels_ = 0;
    for (QCPGraph* g : {min_, max_, sqnrTensor_, sqnrChannel_})
        g->data()->clear();
    title_->setText(message);
    replot(QCustomPlot::rpQueuedReplot);
}

void ChannelPlot::setData(const MatrixData& m, const QuantOutcome& q)
{
    if (m.rows <= 1 || q.rowMetrics.empty()) {
        clearData(tr("Per-channel view needs a matrix with several output channels"));
        return;
    }
    channels_ = int(m.rows);
    QVector<double> x(channels_), lo(channels_), hi(channels_), s1, s2;
    for (int i = 0; i < channels_; ++i) {
        x[i] = i;
        lo[i] = m.rowMin[size_t(i)];
        hi[i] = m.rowMax[size_t(i)];
    }
    min_->setData(x, lo, true);
    max_->setData(x, hi, true);

    // Curves: per-tensor first, per-channel second, whichever the current spec is.
    const bool currentIsTensor = q.spec.granularity == Granularity::PerTensor;
    const std::vector<Metrics>* tensorRows = currentIsTensor ? &q.rowMetrics : (q.haveAlt ? &q.altRowMetrics : nullptr);
    const std::vector<Metrics>* channelRows =
        q.spec.granularity == Granularity::PerChannel ? &q.rowMetrics
        : (q.haveAlt && q.altSpec.granularity == Granularity::PerChannel ? &q.altRowMetrics : nullptr);
    double ymin = 1e300, ymax = -1e300;
    auto fill = [&](QCPGraph* g, const std::vector<Metrics>* rows, const QString& name) {
        g->data()->clear();
        g->setVisible(rows != nullptr);
        g->setName(name);
        if (!rows)
            return;
        QVector<double> y(channels_);
        for (int i = 0; i < channels_; ++i) {
            double v = (*rows)[size_t(i)].sqnrDb;
            if (!std::isfinite(v))
                v = 100.0;  // an exactly represented channel; drawn at the top rather than lost
            y[i] = v;
            ymin = std::min(ymin, v);
            ymax = std::max(ymax, v);
        }
        g->setData(x, y, true);
    };
    const QString scheme = qs(schemeName(q.spec.scheme));
    fill(sqnrTensor_, tensorRows, tr("%1 per tensor").arg(scheme));
    fill(sqnrChannel_, channelRows, tr("%1 per channel").arg(scheme));
    if (!currentIsTensor && q.spec.granularity != Granularity::PerChannel)
        fill(sqnrChannel_, &q.rowMetrics, tr("%1 %2").arg(scheme, qs(granularityName(q.spec))));

    title_->setText(tr("%1 — %2 output channels%3")
                        .arg(qs(m.name))
                        .arg(channels_)
                        .arg(m.transposed ? tr(" (stored [in, out], channels are columns there)") : QString()));
    rangeRect_->axis(QCPAxis::atBottom)->setRange(-0.5, channels_ - 0.5);
    min_->rescaleValueAxis(false, true);
    max_->rescaleValueAxis(true, true);
    const QCPRange r = rangeRect_->axis(QCPAxis::atLeft)->range();
    rangeRect_->axis(QCPAxis::atLeft)->setRange(r.lower - 0.05 * r.size(), r.upper + 0.05 * r.size());
    if (ymin <= ymax)
        sqnrRect_->axis(QCPAxis::atLeft)->setRange(std::floor(ymin) - 2, std::ceil(ymax) + 2);
    replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace quantlens::ui
