#include "modeloverview.h"

#include <QLabel>
#include <QVBoxLayout>

#include "qcp.h"

#include <algorithm>
#include <cmath>

#include "formatting.h"

namespace quantlens::ui {

namespace {


}  // namespace

ModelOverview::ModelOverview(QWidget* parent) : QWidget(parent)
{
    auto* v = new QVBoxLayout(this);
    sizes_ = new QLabel(this);
    sizes_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    sizes_->setWordWrap(true);
    v->addWidget(sizes_);
    plot_ = new QCustomPlot(this);
    plot_->setObjectName(QStringLiteral("overviewPlot"));
    v->addWidget(plot_, 1);
    bars_ = new QCPBars(plot_->yAxis, plot_->xAxis);  // horizontal: one row per layer
    bars_->setBrush(QColor(0x4c, 0x72, 0xb0));
    bars_->setPen(Qt::NoPen);
    bars_->setWidth(0.7);
    plot_->xAxis->setLabel(tr("SQNR (dB), higher is better"));
    plot_->yAxis->setRangeReversed(true);
    plot_->yAxis->setTickLabelFont(QFont(font().family(), std::max(6, font().pointSize() - 1)));
    plot_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    plot_->axisRect()->setRangeDrag(Qt::Vertical);
    plot_->axisRect()->setRangeZoom(Qt::Vertical);
    connect(plot_, &QCustomPlot::plottableClick, this, [this](QCPAbstractPlottable*, int dataIndex, QMouseEvent*) {
        if (dataIndex >= 0 && size_t(dataIndex) < linear_.size())
            emit layerActivated(linear_[size_t(dataIndex)]);
    });
    reset(nullptr, {}, QString());
}

void ModelOverview::reset(std::shared_ptr<const Model> model, const std::vector<int>& linearTensors, const QString& scheme)
{
    model_ = std::move(model);
    linear_ = linearTensors;
    got_.assign(linear_.size(), TensorSummary{});
    scheme_ = scheme;
    std::vector<QString> names;
    if (model_)
        for (int i : linear_)
            names.push_back(qs(model_->tensors[size_t(i)].name));
    names = shortLayerNames(names);
    auto ticker = QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText);
    for (size_t i = 0; i < names.size(); ++i)
        ticker->addTick(double(i), names[i]);
    plot_->yAxis->setTicker(ticker);
    plot_->yAxis->setRange(-0.6, std::max<double>(double(names.size()) - 0.4, 1.0));
    refresh();
}

void ModelOverview::addSummary(const TensorSummary& s)
{
    for (size_t k = 0; k < linear_.size(); ++k)
        if (linear_[k] == s.index) {
            got_[k] = s;
            refresh();
            return;
        }
}

int ModelOverview::barCount() const { return bars_->data()->size(); }

QString ModelOverview::sizeText() const { return sizes_->text(); }

void ModelOverview::refresh()
{
    QVector<double> keys, values;
    int64_t before = 0, after = 0;
    size_t done = 0;
    double worst = 1e300;
    QString worstName;
    for (size_t k = 0; k < got_.size(); ++k) {
        if (!got_[k].ok)
            continue;
        ++done;
        keys << double(k);
        const double db = std::isfinite(got_[k].sqnrDb) ? got_[k].sqnrDb : 100.0;
        values << db;
        before += got_[k].bytesBefore;
        after += got_[k].bytesAfter;
        if (db < worst) {
            worst = db;
            worstName = qs(model_->tensors[size_t(got_[k].index)].name);
        }
    }
    bars_->setData(keys, values, true);
    double top = 10;
    for (double v : values)
        top = std::max(top, v);
    plot_->xAxis->setRange(0, top * 1.08);
    if (!model_) {
        sizes_->setText(tr("No model"));
    } else if (linear_.empty()) {
        sizes_->setText(tr("No layers found (linear, convolution or recurrent weights: *.weight / kernel tensors of rank 2 to 5)."));
    } else {
        const int64_t whole = model_->byteCount();
        QString text = tr("<b>%1</b>: %2 of %3 layers quantized (linear, convolution, recurrent)").arg(scheme_).arg(done).arg(linear_.size());
        if (done > 0 && after > 0) {
            text += tr(" — layer weights %1 → %2 (%3×); whole model %4 → %5 (%6×)")
                        .arg(formatBytes(before), formatBytes(after))
                        .arg(double(before) / double(after), 0, 'f', 3)
                        .arg(formatBytes(whole), formatBytes(whole - before + after))
                        .arg(double(whole) / double(std::max<int64_t>(1, whole - before + after)), 0, 'f', 3);
            text += tr("<br>lowest SQNR: %1 (%2)").arg(worstName, formatDb(worst));
        }
        sizes_->setText(text);
    }
    plot_->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace quantlens::ui
