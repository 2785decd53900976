#include "comparepanel.h"

#include <QFile>
#include <QFileInfo>
#include <QFutureWatcher>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QSplitter>
#include <QTimer>
#include <QToolButton>
#include <QTreeWidget>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrent>

#include <algorithm>
#include <cmath>

#include "formatting.h"
#include "histogramplot.h"
#include "qcp.h"
#include "workpool.h"

namespace quantlens::ui {

namespace {

constexpr int kRowPixels = 18;
const QColor kBarColor(0x1f, 0x77, 0xb4);
const QColor kExactColor(0x9a, 0x9a, 0x9a);

struct Progress {
    std::atomic<bool> cancel{false};
    std::atomic<int64_t> done{0}, total{-1};  // total -1: still opening the reference
};

struct CompareJob {
    std::shared_ptr<const Model> b;
    std::shared_ptr<const CompareReport> report;
    std::shared_ptr<const MatchPlan> plan;
    Error error;
};

template <class Job, class Done>
void runThen(QObject* ctx, Job&& job, Done&& done)
{
    using T = std::invoke_result_t<Job>;
    auto* watcher = new QFutureWatcher<T>(ctx);
    QObject::connect(watcher, &QFutureWatcherBase::finished, ctx, [watcher, done = std::forward<Done>(done)]() mutable {
        watcher->deleteLater();
        done(watcher->result());
    });
    watcher->setFuture(QtConcurrent::run(workPool(), std::forward<Job>(job)));
}

// The canonical array as the heatmaps' matrix: rank 1 is one row, rank >= 3 is [shape[0], rest].
void matrixShape(const std::vector<int64_t>& s, int64_t n, int64_t& rows, int64_t& cols)
{
    rows = s.size() >= 2 ? s[0] : 1;
    cols = rows > 0 ? n / rows : 0;
}

std::shared_ptr<const PairView> makePairView(int index, const TensorPair& p, int64_t maxCells)
{
    auto v = std::make_shared<PairView>();
    v->tensor = index;
    auto values = decodePair(p);
    if (!values) {
        v->error = qs(values.error().oneLine());
        return v;
    }
    int64_t rows = 0, cols = 0;
    matrixShape(values->shape, int64_t(values->b.size()), rows, cols);
    auto ref = std::make_shared<MatrixData>();
    ref->name = p.b->name;
    ref->storedShape = p.b->shape;
    ref->dtype = p.b->dtype;
    ref->rows = rows;
    ref->cols = cols;
    ref->stats = computeStats(values->b);
    ref->grid = poolMaxAbs(values->b.data(), rows, cols, maxCells);
    auto diff = std::make_shared<QuantOutcome>();
    diff->metrics = computeMetrics(values->b, values->a);
    diff->after = poolMaxAbs(values->a.data(), rows, cols, maxCells);
    diff->error = poolMaxAbsDiff(values->a.data(), values->b.data(), rows, cols, maxCells);
    std::vector<float> d(values->a.size());
    for (size_t i = 0; i < d.size(); ++i)
        d[i] = values->a[i] - values->b[i];
    v->errorStats = computeStats(d);
    const double lo = v->errorStats.min, hi = v->errorStats.max > lo ? v->errorStats.max : lo + 1e-12;
    v->errorHistogram = computeHistogram(d, lo, hi, 256);
    ref->values = std::move(values->b);
    v->reference = std::move(ref);
    v->difference = std::move(diff);
    return v;
}

}  // namespace

ComparePanel::ComparePanel(QWidget* parent) : QWidget(parent)
{
    auto* v = new QVBoxLayout(this);
    v->setContentsMargins(4, 4, 4, 4);
    auto* top = new QHBoxLayout;
    summary_ = new QLabel(tr("No reference: File ▸ Compare with…, Shift-drop a second file, or quantlens A --compare B."), this);
    summary_->setObjectName(QStringLiteral("compareSummary"));
    summary_->setWordWrap(true);
    summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    top->addWidget(summary_, 1);
    progress_ = new QProgressBar(this);
    progress_->setMaximumWidth(220);
    progress_->hide();
    top->addWidget(progress_);
    cancelButton_ = new QToolButton(this);
    cancelButton_->setObjectName(QStringLiteral("compareCancel"));
    cancelButton_->setText(tr("Cancel"));
    cancelButton_->hide();
    top->addWidget(cancelButton_);
    compareButton_ = new QPushButton(tr("Compare with…"), this);
    top->addWidget(compareButton_);
    v->addLayout(top);
    connect(cancelButton_, &QToolButton::clicked, this, &ComparePanel::cancel);
    connect(compareButton_, &QPushButton::clicked, this, &ComparePanel::compareRequested);

    auto* split = new QSplitter(Qt::Vertical, this);
    plotScroll_ = new QScrollArea(split);
    plotScroll_->setWidgetResizable(true);
    plotScroll_->setFrameShape(QFrame::NoFrame);
    plot_ = new QCustomPlot;
    plot_->setObjectName(QStringLiteral("compareChart"));
    bars_ = new QCPBars(plot_->yAxis, plot_->xAxis);  // horizontal: one row per layer
    bars_->setBrush(kBarColor);
    bars_->setPen(Qt::NoPen);
    bars_->setWidth(0.7);
    exactBars_ = new QCPBars(plot_->yAxis, plot_->xAxis);
    exactBars_->setBrush(kExactColor);
    exactBars_->setPen(Qt::NoPen);
    exactBars_->setWidth(0.7);
    chartMessage_ = new QCPItemText(plot_);
    chartMessage_->position->setType(QCPItemPosition::ptAxisRectRatio);
    chartMessage_->position->setCoords(0.5, 0.5);
    chartMessage_->setPositionAlignment(Qt::AlignCenter);
    plot_->yAxis->setRangeReversed(true);  // the worst layer at the top
    plot_->yAxis->setSubTicks(false);
    plot_->yAxis->setTickLength(0, 4);
    plot_->yAxis->grid()->setVisible(false);
    plot_->xAxis2->setVisible(true);  // the scale stays in view when the chart scrolls
    connect(plot_->xAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), plot_->xAxis2,
            qOverload<const QCPRange&>(&QCPAxis::setRange));
    connect(plot_, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) {
        if (!plot_->axisRect()->rect().contains(e->pos()))
            return;
        const int i = barAt(plot_->yAxis->pixelToCoord(e->pos().y()));
        if (i >= 0 && report_) {
            const auto it = indexOfA_.find(report_->matched[size_t(layers_[size_t(i)].worst)].aName);
            if (it != indexOfA_.end())
                emit tensorActivated(it->second);
        }
    });
    plotScroll_->setWidget(plot_);
    split->addWidget(plotScroll_);

    auto* lower = new QSplitter(Qt::Horizontal, split);
    unpaired_ = new QTreeWidget(lower);
    unpaired_->setObjectName(QStringLiteral("compareUnpaired"));
    unpaired_->setHeaderLabels({tr("Not compared"), tr("Why")});
    unpaired_->setRootIsDecorated(true);
    histogram_ = new HistogramPlot(lower);
    histogram_->setObjectName(QStringLiteral("compareErrorHistogram"));
    histogram_->legend->setVisible(false);  // its entries name quantization ranges, not errors
    histogram_->clearHistogram(tr("Select a paired tensor: its error (A − reference) shows here"));
    lower->addWidget(unpaired_);
    lower->addWidget(histogram_);
    lower->setSizes({400, 500});
    split->addWidget(lower);
    split->setSizes({520, 360});
    v->addWidget(split, 1);
    applyTheme();
    showReport();
}

void ComparePanel::changeEvent(QEvent* e)
{
    QWidget::changeEvent(e);
    if (e->type() == QEvent::PaletteChange)
        applyTheme();
}

void ComparePanel::applyTheme()
{
    const QPalette pal = palette();
    plot_->setBackground(pal.brush(QPalette::Base));
    const QColor fg = pal.color(QPalette::Text);
    for (QCPAxis* a : {plot_->xAxis, plot_->yAxis, plot_->xAxis2}) {
        a->setBasePen(QPen(fg));
        a->setTickPen(QPen(fg));
        a->setSubTickPen(QPen(fg));
        a->setTickLabelColor(fg);
        a->setLabelColor(fg);
    }
    plot_->replot(QCustomPlot::rpQueuedReplot);
}

ComparePanel::~ComparePanel()
{
    if (cancel_)
        *cancel_ = true;
}

void ComparePanel::setModel(std::shared_ptr<const Model> a)
{
    if (cancel_)
        *cancel_ = true;
    cancel_.reset();
    ++gen_;
    ++viewGen_;
    a_ = std::move(a);
    b_.reset();
    report_.reset();
    pairs_.clear();
    indexOfA_.clear();
    layers_.clear();
    referencePath_.clear();
    setBusy(false, {});
    histogram_->clearHistogram(tr("Select a paired tensor: its error (A − reference) shows here"));
    showReport();
}

void ComparePanel::cancel()
{
    if (cancel_)
        *cancel_ = true;
}

void ComparePanel::setBusy(bool on, const QString& what)
{
    busy_ = on;
    progress_->setVisible(on);
    cancelButton_->setVisible(on);
    if (on) {
        progress_->setRange(0, 0);
        progress_->setFormat(what);
    }
}

void ComparePanel::compareWith(const QString& path)
{
    if (!a_)
        return;
    if (cancel_)
        *cancel_ = true;
    const uint64_t gen = ++gen_;
    ++viewGen_;
    auto state = std::make_shared<Progress>();
    cancel_ = std::shared_ptr<std::atomic<bool>>(state, &state->cancel);
    report_.reset();
    pairs_.clear();
    layers_.clear();
    referencePath_ = path;
    lastError_.clear();
    setBusy(true, tr("opening reference…"));
    summary_->setText(tr("Comparing with %1…").arg(path));
    showReport();
    emit started();

    auto* poll = new QTimer(this);
    poll->setInterval(100);
    connect(poll, &QTimer::timeout, this, [this, state, gen] {
        if (gen != gen_ || state->total.load() < 0)
            return;
        progress_->setRange(0, int(std::max<int64_t>(state->total.load(), 1)));
        progress_->setValue(int(state->done.load()));
        progress_->setFormat(tr("comparing %v/%m"));
    });
    poll->start();

    const std::string p = QFile::encodeName(path).toStdString();
    const std::shared_ptr<const Model> a = a_;
    runThen(this, [a, p, state] {
        CompareJob j;
        auto b = openModel(p, [state](double) { return !state->cancel.load(); });
        if (!b) {
            j.error = b.error();
            return j;
        }
        auto bm = std::make_shared<const Model>(std::move(*b));
        j.plan = std::make_shared<const MatchPlan>(matchTensors(*a, *bm));
        auto r = compareModels(*a, *bm, [state](int64_t done, int64_t total, const std::string&) {
            state->total = total;
            state->done = done;
            return !state->cancel.load();
        });
        if (!r) {
            j.error = r.error();
            return j;
        }
        j.b = std::move(bm);
        j.report = std::make_shared<const CompareReport>(std::move(*r));
        return j;
    }, [this, gen, poll](CompareJob j) {
        poll->deleteLater();
        if (gen != gen_)
            return;  // superseded, or the model on screen changed
        setBusy(false, {});
        cancel_.reset();
        if (!j.report) {
            lastError_ = j.error.code == "cancelled" ? tr("comparison cancelled") : qs(j.error.oneLine());
            summary_->setText(tr("No comparison with %1: %2").arg(referencePath_, lastError_));
            emit finished();
            return;
        }
        b_ = j.b;
        report_ = j.report;
        for (size_t i = 0; i < a_->tensors.size(); ++i)
            indexOfA_[a_->tensors[i].name] = int(i);
        for (const TensorPair& p : j.plan->pairs)
            if (auto it = indexOfA_.find(p.a->name); it != indexOfA_.end())
                pairs_[it->second] = p;
        layers_ = compareByLayer(*report_);
        showReport();
        emit finished();
    });
}

const TensorComparison* ComparePanel::comparisonFor(int index) const
{
    if (!report_ || !a_ || index < 0 || size_t(index) >= a_->tensors.size())
        return nullptr;
    const std::string& name = a_->tensors[size_t(index)].name;
    for (const TensorComparison& c : report_->matched)
        if (c.aName == name)
            return &c;
    return nullptr;
}

void ComparePanel::requestPairView(int index, int64_t maxCells)
{
    const auto it = pairs_.find(index);
    if (it == pairs_.end())
        return;
    const uint64_t gen = ++viewGen_;
    const TensorPair pair = it->second;
    const std::shared_ptr<const Model> a = a_, b = b_;  // the pair points into them
    ++viewJobs_;
    runThen(this, [pair, a, b, index, maxCells] { return makePairView(index, pair, maxCells); },
            [this, gen, a](std::shared_ptr<const PairView> v) {
        --viewJobs_;
        if (gen != viewGen_ || a != a_) {
            emit pairViewReady(std::make_shared<const PairView>());  // tensor -1: nothing to show, only "done"
            return;
        }
        if (!v->error.isEmpty()) {
            histogram_->clearHistogram(v->error);
        } else {
            histogram_->setHistogram(v->errorHistogram, v->errorStats,
                                     tr("error of %1 vs the reference (A − B)").arg(qs(a_->tensors[size_t(v->tensor)].name)));
            histogram_->setClampRange(v->errorStats.min, v->errorStats.max);
        }
        emit pairViewReady(v);
    });
}

int ComparePanel::barAt(double key) const
{
    const int i = int(std::lround(key));
    return i >= 0 && size_t(i) < layers_.size() && std::abs(key - i) <= 0.4 ? i : -1;
}

void ComparePanel::showReport()
{
    unpaired_->clear();
    std::vector<QString> names;
    QVector<double> keys, values;
    double lo = INFINITY, hi = -INFINITY;
    for (const LayerComparison& l : layers_)
        if (std::isfinite(l.sqnrDb)) {
            lo = std::min(lo, l.sqnrDb);
            hi = std::max(hi, l.sqnrDb);
        }
    if (!std::isfinite(lo)) {
        lo = 0;
        hi = 60;
    }
    // Decibels have no natural zero: the axis frames the spread between layers, which is what
    // ranks them (bars start at the left edge).
    const double span = std::max(hi - lo, 1.0);
    const double axisLo = lo - 0.15 * span, axisHi = hi + 0.15 * span;
    const double cap = hi + 0.1 * span;  // an exact layer (+inf dB) runs past every finite bar
    QVector<double> exactKeys, exactValues;
    for (size_t i = 0; i < layers_.size(); ++i) {
        const double db = layers_[i].sqnrDb;
        if (std::isinf(db) && db > 0) {
            exactKeys << double(i);
            exactValues << cap;
        } else {
            keys << double(i);
            values << (std::isfinite(db) ? db : axisLo);
        }
        names.push_back(qs(layers_[i].layer));
    }
    bars_->setData(keys, values, true);
    exactBars_->setData(exactKeys, exactValues, true);
    auto ticker = QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText);
    const std::vector<QString> labels = shortLayerNames(names);
    for (size_t i = 0; i < labels.size(); ++i)
        ticker->addTick(double(i), std::isinf(layers_[i].sqnrDb) && layers_[i].sqnrDb > 0 ? labels[i] + tr("  (identical)")
                                                                                          : labels[i]);
    plot_->yAxis->setTicker(ticker);
    plot_->yAxis->setRange(-0.6, std::max<double>(double(labels.size()) - 0.4, 1.0));
    plot_->xAxis->setRange(axisLo, axisHi);
    plot_->xAxis->setLabel(tr("SQNR (dB) of each layer vs the reference, worst first · click a bar for its worst tensor"));
    plot_->setMinimumHeight(std::max(200, int(labels.size()) * kRowPixels + 90));
    chartMessage_->setVisible(layers_.empty());
    chartMessage_->setColor(palette().color(QPalette::Text));
    chartMessage_->setText(!report_ ? (busy_ ? tr("comparing…") : tr("No reference yet"))
                                    : tr("No tensor was paired with the reference: the list below says why"));
    plot_->replot(QCustomPlot::rpQueuedReplot);

    if (!report_) {
        if (!busy_ && referencePath_.isEmpty())
            summary_->setText(tr("No reference: File ▸ Compare with…, Shift-drop a second file, or quantlens A --compare B."));
        return;
    }
    const CompareReport& r = *report_;
    int exact = 0;
    for (const TensorComparison& c : r.matched)
        exact += c.errEnergy == 0;
    summary_->setText(tr("Reference (B): %1 · %2 tensors compared (%3 identical), %4 shape mismatches, %5 only here, "
                         "%6 only in the reference")
                          .arg(QFileInfo(referencePath_).fileName())
                          .arg(r.matched.size())
                          .arg(exact)
                          .arg(r.mismatched.size())
                          .arg(r.unmatchedA.size())
                          .arg(r.unmatchedB.size()));
    summary_->setToolTip(referencePath_);
    auto group = [this](const QString& title, size_t n) {
        auto* g = new QTreeWidgetItem(unpaired_, {tr("%1 (%2)").arg(title).arg(n)});
        g->setExpanded(n <= 50);
        return g;
    };
    if (!r.mismatched.empty()) {
        auto* g = group(tr("shape mismatches"), r.mismatched.size());
        for (const ShapeMismatch& m : r.mismatched)
            new QTreeWidgetItem(g, {qs(m.aName) + QStringLiteral(" ") + formatShape(m.aShape),
                                    (m.aName == m.bName ? tr("reference") : qs(m.bName)) + QStringLiteral(" ") +
                                        formatShape(m.bShape) + QStringLiteral(": ") + qs(m.reason)});
    }
    if (!r.unmatchedA.empty()) {
        auto* g = group(tr("only in this file"), r.unmatchedA.size());
        for (const Unpaired& u : r.unmatchedA)
            new QTreeWidgetItem(g, {qs(u.name), qs(u.reason)});
    }
    if (!r.unmatchedB.empty()) {
        auto* g = group(tr("only in the reference"), r.unmatchedB.size());
        for (const Unpaired& u : r.unmatchedB)
            new QTreeWidgetItem(g, {qs(u.name), qs(u.reason)});
    }
    if (r.mismatched.empty() && r.unmatchedA.empty() && r.unmatchedB.empty())
        new QTreeWidgetItem(unpaired_, {tr("every tensor was paired")});
    // Both columns readable in a narrow panel: long names and reasons are in the tooltips.
    for (int i = 0; i < unpaired_->topLevelItemCount(); ++i) {
        QTreeWidgetItem* g = unpaired_->topLevelItem(i);
        for (int k = 0; k < g->childCount(); ++k)
            for (int c = 0; c < 2; ++c)
                g->child(k)->setToolTip(c, g->child(k)->text(c));
    }
    unpaired_->resizeColumnToContents(0);
    unpaired_->setColumnWidth(0, std::min(unpaired_->columnWidth(0), std::max(160, unpaired_->width() / 2)));
}

}  // namespace quantlens::ui
