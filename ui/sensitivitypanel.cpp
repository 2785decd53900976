#include "sensitivitypanel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMouseEvent>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QRadioButton>
#include <QScrollArea>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QToolTip>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "contraststyle.h"
#include "qcp.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>

#include "formatting.h"
#include "quant/ggmlquant.h"
#include "quant/quantize.h"
#include "runner/fp32linear.h"
#include "tasks/modelhints.h"
#include "tasks/methodprep.h"
#include "tasks/modelrun.h"

namespace quantlens::ui {

// The float32 runner of one (model, heads) pair, built by the first job that needs it and
// reused by every later run and kept-set comparison of that pair.
struct SensitivityJobState {
    std::shared_ptr<const Model> model;
    EncoderOptions options;
    std::mutex mutex;  // the pool has one thread; the lock documents who owns the runner
    std::optional<EncoderRunner> runner;
    std::atomic<bool> built{false};
    // The plan's GPTQ/SmoothQuant, run once per plan (tasks/methodprep.h), and the runner
    // over its smoothed model when SmoothQuant changed the weights.
    std::shared_ptr<const PreparedPlan> prepared;
    std::optional<QuantPlan> preparedFor;
    std::optional<EncoderRunner> smoothedRunner;
};

struct LayerBytes {
    int64_t values = 0;  // weight elements
    int64_t rows = 0;    // output features: one scale each when per-channel
};

// What a finished run leaves for the kept-set comparisons: the same input, the float32
// reference and the specs the int8 layers ran with.
struct SensitivityBaseline {
    std::shared_ptr<SensitivityJobState> state;
    EncoderInput input;
    std::vector<float> ref;
    int64_t hidden = 0;
    std::vector<std::string> names;  // linear prefixes in execution order
    std::vector<QuantSpec> specs;    // per linear layer, what its int8 weights use
    std::vector<LayerBytes> sizes;   // per linear layer
    int64_t tunedApplied = 0;        // layers that ran with a tuned spec
    int64_t simulated = 0;           // layers whose spec has no int8 kernel (simulated)
    bool smoothed = false;           // ran on state->smoothedRunner (SmoothQuant in the plan)
    QString methods;                 // "GPTQ on 14 layers, ..." or ""
    SensitivityMetric rankBy = SensitivityMetric::Cosine;  // the report does not say
};

struct SensitivityRunOutcome {
    QString error;
    bool cancelled = false;
    std::shared_ptr<const SensitivityReport> report;
    std::shared_ptr<const SensitivityBaseline> baseline;
};

namespace {

constexpr int kRowPixels = 22;  // per bar: room for one line of tick label
const QColor kBarColor(0x4c, 0x72, 0xb0);

QString weightName(const std::string& prefix) { return qs(prefix) + QStringLiteral(".weight"); }

int64_t quantizedBytes(const LayerBytes& b, const QuantSpec& s)
{
    if (auto gt = ggmlTypeForScheme(s.scheme); gt && s.scheme != Scheme::Q8_0) {
        const GgmlTypeInfo* gi = ggmlTypeInfo(*gt);  // blocks of 256 or 32 values
        return (b.values + gi->blockElems - 1) / gi->blockElems * gi->blockBytes;
    }
    const int64_t cols = b.rows > 0 ? b.values / b.rows : b.values;
    const int64_t scales = s.granularity == Granularity::PerChannel ? b.rows
                           : s.granularity == Granularity::PerGroup && s.groupSize > 0
                               ? b.rows * ((cols + s.groupSize - 1) / s.groupSize)
                               : 1;
    return quantizedByteCount(b.values, scales, s);
}


// No translator is installed, so %n would print "layer(s)".
QString layers(int64_t n, const char* what = "layer")
{
    return QStringLiteral("%1 %2%3").arg(n).arg(QLatin1String(what)).arg(n == 1 ? QString() : QStringLiteral("s"));
}

QString cosineDamage(double cosine) { return QString::number(1.0 - cosine, 'e', 3); }

struct RunJob {
    std::shared_ptr<SensitivityJobState> state;
    EncoderInput input;
    SensitivityView view = SensitivityView::OneQuantized;
    SensitivityMetric rankBy = SensitivityMetric::Cosine;
    QuantPlan plan;
    std::shared_ptr<std::atomic<bool>> cancel;
    std::function<void(int64_t, int64_t)> post;  // progress to the GUI thread
};

std::shared_ptr<const SensitivityRunOutcome> runJob(const RunJob& j)
{
    auto out = std::make_shared<SensitivityRunOutcome>();
    auto cancelled = [&] {
        out->cancelled = true;
        return out;
    };
    auto fail = [&](const Error& e) {
        out->error = qs(e.oneLine());
        return out;
    };
    if (j.cancel->load())
        return cancelled();
    // One BLAS thread: OpenBLAS's own threads spin against the GUI's and the other jobs.
    setBlasThreads(1);
    std::lock_guard<std::mutex> lock(j.state->mutex);
    if (!j.state->runner) {
        auto r = EncoderRunner::create(*j.state->model, j.state->options);
        if (!r)
            return fail(r.error());
        j.state->runner.emplace(std::move(*r));
        j.state->built = true;
    }
    EncoderRunner* active = &*j.state->runner;
    const Model* model = j.state->model.get();
    std::shared_ptr<const PreparedPlan> prep;
    if (j.plan.usesMethods()) {
        // Activations do not change what GPTQ/SmoothQuant find (they calibrate in float).
        QuantPlan key = j.plan;
        key.activations = {};
        if (!j.state->prepared || j.state->preparedFor != key) {
            j.state->prepared.reset();
            j.state->smoothedRunner.reset();
            auto p = preparePlan(j.state->model, {}, j.state->options, j.plan,
                                 [&j](double, const std::string&) { return !j.cancel->load(); });
            if (!p)
                return p.error().code == "cancelled" ? cancelled() : fail(p.error());
            j.state->prepared = std::make_shared<const PreparedPlan>(std::move(*p));
            j.state->preparedFor = key;
            if (j.state->prepared->smoothed()) {
                auto r = EncoderRunner::create(*j.state->prepared->model, j.state->options);
                if (!r)
                    return fail(r.error());
                j.state->smoothedRunner.emplace(std::move(*r));
            }
        }
        prep = j.state->prepared;
        if (j.state->smoothedRunner) {
            active = &*j.state->smoothedRunner;
            model = prep->model.get();
        }
    }
    EncoderRunner& runner = *active;
    if (j.cancel->load())
        return cancelled();

    auto b = std::make_shared<SensitivityBaseline>();
    b->smoothed = active != &*j.state->runner;
    if (prep) {
        int64_t gptq = 0, smooth = 0;
        for (const MethodLayerOutcome& o : prep->layers)
            (o.asked.method == WeightMethod::Gptq ? gptq : smooth) += o.why.empty();
        QStringList parts;
        if (gptq)
            parts << QStringLiteral("GPTQ on %1").arg(layers(gptq));
        if (smooth)
            parts << QStringLiteral("SmoothQuant on %1").arg(layers(smooth));
        b->methods = parts.join(QStringLiteral(", ")) +
                     QStringLiteral(" (calibrated on %1)").arg(qs(prep->calibration));
    }
    b->state = j.state;
    b->input = j.input;
    b->hidden = runner.config().hidden;
    b->names = runner.linearNames();
    const int64_t L = runner.linearCount();

    SensitivityOptions o;
    o.view = j.view;
    o.rankBy = j.rankBy;
    b->rankBy = j.rankBy;
    // Every layer's spec and the activations from the plan (tasks/modelrun.h, as the CLI).
    auto planned = applyPlan(runner, *model, j.plan, o, prep.get());
    if (!planned)
        return fail(planned.error());
    b->specs.clear();
    for (const RunnerLayerPlan& lp : *planned) {
        b->specs.push_back(lp.decision.spec);
        b->tunedApplied += lp.decision.tuned;
        b->simulated += lp.simulated;
    }
    for (const std::string& n : b->names) {
        const Tensor* w = model->find(n + ".weight");
        LayerBytes lb;
        if (w && w->rank() == 2) {
            lb.values = w->numel();
            lb.rows = w->shape[0];
        }
        b->sizes.push_back(lb);
    }

    // computeSensitivity computes its own float32 pass but keeps it; this one is the
    // reference every later kept-set comparison is measured against.
    const int64_t total = L + 3;
    if (auto s = runner.setAllQuantized(false); !s)
        return fail(s.error());
    auto ref = runner.forward(j.input);
    if (!ref)
        return fail(ref.error());
    b->ref = std::move(*ref);
    j.post(1, total);
    if (j.cancel->load())
        return cancelled();

    o.progress = [&j, total](int64_t done, int64_t) {
        j.post(done + 1, total);
        return !j.cancel->load();
    };
    auto rep = computeSensitivity(runner, j.input, o);
    // A Cancel that arrives as the last pass ends still wins: the user asked to stop.
    if (j.cancel->load() || (!rep && rep.error().code == "cancelled"))
        return cancelled();
    if (!rep)
        return fail(rep.error());
    out->report = std::make_shared<const SensitivityReport>(std::move(*rep));
    out->baseline = std::move(b);
    return out;
}

std::shared_ptr<const KeptComparison> keptJob(std::shared_ptr<const SensitivityBaseline> b, std::vector<uint8_t> keep,
                                              QStringList keptNames)
{
    auto k = std::make_shared<KeptComparison>();
    k->kept = std::move(keptNames);
    setBlasThreads(1);
    std::lock_guard<std::mutex> lock(b->state->mutex);
    if (!b->state->runner) {  // a baseline exists only after its runner was built
        k->error = QStringLiteral("the encoder is not built");
        return k;
    }
    if (b->smoothed && !b->state->smoothedRunner) {
        k->error = QStringLiteral("the plan's smoothed model was replaced: run again");
        return k;
    }
    EncoderRunner& runner = b->smoothed ? *b->state->smoothedRunner : *b->state->runner;
    for (int64_t i = 0; i < runner.linearCount(); ++i) {
        const bool int8 = !keep[size_t(i)];
        if (auto s = runner.setQuantized(i, int8, int8 ? &b->specs[size_t(i)] : nullptr); !s) {
            k->error = qs(s.error().oneLine());
            return k;
        }
    }
    auto y = runner.forward(b->input);
    if (!y) {
        k->error = qs(y.error().oneLine());
        return k;
    }
    k->cmp = compareHidden(b->ref, *y, b->input, b->hidden);
    for (size_t i = 0; i < b->sizes.size(); ++i) {
        k->bytesBefore += 4 * b->sizes[i].values;
        k->bytesAfter += keep[i] ? 4 * b->sizes[i].values : quantizedBytes(b->sizes[i], b->specs[i]);
    }
    return k;
}

}  // namespace

SensitivityPanel::SensitivityPanel(QWidget* parent)
    : QWidget(parent)
{
    pool_.setMaxThreadCount(1);

    auto* v = new QVBoxLayout(this);
    v->setContentsMargins(8, 8, 8, 8);
    configLabel_ = new QLabel(this);
    configLabel_->setObjectName(QStringLiteral("sensitivityConfig"));
    configLabel_->setWordWrap(true);
    configLabel_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    v->addWidget(configLabel_);

    auto* controls = new QHBoxLayout;
    auto* inputBox = new QGroupBox(tr("Input"), this);
    auto* inputGrid = new QGridLayout(inputBox);
    randomInput_ = new QRadioButton(tr("Random token ids (seed 1), length:"), inputBox);
    randomInput_->setChecked(true);
    length_ = new QSpinBox(inputBox);
    length_->setObjectName(QStringLiteral("sensitivityLength"));
    length_->setRange(1, 512);
    length_->setValue(int(kDefaultEvalTokens));  // as quantlens-cli sensitivity
    length_->setSuffix(tr(" tokens"));
    tokenInput_ = new QRadioButton(tr("Token ids, one sequence per line (padded to the longest):"), inputBox);
    tokenEdit_ = new QPlainTextEdit(inputBox);
    tokenEdit_->setObjectName(QStringLiteral("sensitivityTokens"));
    tokenEdit_->setPlaceholderText(tr("101 7592 2088 102\n101 2023 2003 1037 3231 102"));
    tokenEdit_->setFixedHeight(tokenEdit_->fontMetrics().lineSpacing() * 3 + 12);
    inputGrid->addWidget(randomInput_, 0, 0);
    inputGrid->addWidget(length_, 0, 1);
    inputGrid->addWidget(tokenInput_, 1, 0, 1, 2);
    inputGrid->addWidget(tokenEdit_, 2, 0, 1, 2);
    inputGrid->setColumnStretch(0, 1);
    controls->addWidget(inputBox, 3);

    auto* analysisBox = new QGroupBox(tr("Analysis"), this);
    auto* form = new QFormLayout(analysisBox);
    view_ = new QComboBox(analysisBox);
    view_->setObjectName(QStringLiteral("sensitivityView"));
    view_->addItem(tr("only this layer quantized"));
    view_->addItem(tr("every layer quantized but this one"));
    form->addRow(tr("View:"), view_);
    rankBy_ = new QComboBox(analysisBox);
    rankBy_->setObjectName(QStringLiteral("sensitivityRankBy"));
    rankBy_->addItem(tr("1 − cosine of the last hidden state"));
    rankBy_->addItem(tr("SQNR (dB) of the last hidden state"));
    form->addRow(tr("Rank by:"), rankBy_);
    heads_ = new QSpinBox(analysisBox);
    heads_->setObjectName(QStringLiteral("sensitivityHeads"));
    heads_->setRange(0, 4096);
    heads_->setSpecialValueText(tr("infer"));
    heads_->setToolTip(tr("Attention heads; \"infer\" reads config.json beside the weights, else hidden / 64"));
    form->addRow(tr("Heads:"), heads_);
    controls->addWidget(analysisBox, 2);
    v->addLayout(controls);

    auto* runRow = new QHBoxLayout;
    runButton_ = new QPushButton(tr("Run"), this);
    runButton_->setObjectName(QStringLiteral("sensitivityRun"));
    cancelButton_ = new QPushButton(tr("Cancel"), this);
    cancelButton_->setObjectName(QStringLiteral("sensitivityCancel"));
    progress_ = new QProgressBar(this);
    progress_->setObjectName(QStringLiteral("sensitivityProgress"));
    progress_->setRange(0, 1);
    progress_->setValue(0);
    progress_->setFormat(tr("%v / %m passes"));
    progress_->setTextVisible(false);
    progress_->setMaximumWidth(260);
    progress_->hide();  // an empty bar beside the buttons reads as a text field
    status_ = new QLabel(this);
    status_->setObjectName(QStringLiteral("sensitivityStatus"));
    status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    runRow->addWidget(runButton_);
    runRow->addWidget(cancelButton_);
    runRow->addWidget(progress_);
    runRow->addWidget(status_, 1);
    v->addLayout(runRow);

    summary_ = new QLabel(this);
    summary_->setObjectName(QStringLiteral("sensitivitySummary"));
    summary_->setWordWrap(true);
    summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    v->addWidget(summary_);

    split_ = new QSplitter(Qt::Vertical, this);
    auto* split = split_;
    plotScroll_ = new QScrollArea(split);
    plotScroll_->setWidgetResizable(true);
    plotScroll_->setFrameShape(QFrame::NoFrame);
    plot_ = new QCustomPlot;
    plot_->setObjectName(QStringLiteral("sensitivityPlot"));
    plot_->setMouseTracking(true);
    bars_ = new QCPBars(plot_->yAxis, plot_->xAxis);  // horizontal: one row per layer
    bars_->setBrush(kBarColor);
    bars_->setPen(Qt::NoPen);
    bars_->setWidth(0.7);
    plot_->yAxis->setRangeReversed(true);  // rank 1 at the top
    plot_->yAxis->setSubTicks(false);
    plot_->yAxis->setTickLength(0, 4);
    plot_->yAxis->grid()->setVisible(false);
    plot_->xAxis->setNumberFormat(QStringLiteral("gb"));
    allLine_ = new QCPItemStraightLine(plot_);
    allLine_->setPen(QPen(QColor(0xc0, 0x39, 0x2b), 1.5, Qt::DashLine));
    allLine_->setVisible(false);
    // The scale on top as well: with many layers the bottom axis is scrolled out of view.
    // Its label explains the dashed line, so no text item covers a bar.
    plot_->xAxis2->setVisible(true);
    plot_->xAxis2->setTickLabels(true);
    plot_->xAxis2->setNumberFormat(QStringLiteral("gb"));
    plot_->xAxis2->setLabelColor(QColor(0xc0, 0x39, 0x2b));
    connect(plot_->xAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), plot_->xAxis2,
            qOverload<const QCPRange&>(&QCPAxis::setRange));
    plotScroll_->setWidget(plot_);
    split->addWidget(plotScroll_);

    auto* lower = new QWidget(split);
    auto* lv = new QVBoxLayout(lower);
    lv->setContentsMargins(0, 4, 0, 0);
    keptLabel_ = new QLabel(lower);
    keptLabel_->setObjectName(QStringLiteral("sensitivityKept"));
    keptLabel_->setWordWrap(true);
    keptLabel_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    lv->addWidget(keptLabel_);
    table_ = new QTableWidget(0, 6, lower);
    useContrastingIndicators(table_);
    table_->setObjectName(QStringLiteral("sensitivityTable"));
    table_->setHorizontalHeaderLabels({tr("Rank"), tr("Layer"), tr("1 − cosine"), tr("SQNR (dB)"), tr("Max abs err"),
                                       tr("Keep float32")});
    table_->verticalHeader()->setVisible(false);
    table_->setSelectionBehavior(QAbstractItemView::SelectRows);
    table_->setSelectionMode(QAbstractItemView::SingleSelection);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    table_->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Stretch);
    lv->addWidget(table_, 1);
    split->addWidget(lower);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    split->setChildrenCollapsible(false);
    table_->verticalHeader()->setDefaultSectionSize(table_->fontMetrics().height() + 8);
    v->addWidget(split, 1);
    placeholder_ = new QLabel(tr("Run ranks every linear layer by how much quantizing it alone moves the "
                                 "model's last hidden state; the bar chart and the table appear here."),
                              this);
    placeholder_->setAlignment(Qt::AlignCenter);
    placeholder_->setWordWrap(true);
    placeholder_->setStyleSheet(QStringLiteral("color: palette(mid);"));
    v->addWidget(placeholder_, 1);

    runWatcher_ = new QFutureWatcher<std::shared_ptr<const SensitivityRunOutcome>>(this);
    keptWatcher_ = new QFutureWatcher<std::shared_ptr<const KeptComparison>>(this);
    // Connected once, before any setFuture (QFuture::then was unreliable with Qt 6.4 here).
    connect(runWatcher_, &QFutureWatcherBase::finished, this, [this] {
        const auto o = runWatcher_->result();
        running_ = false;
        progress_->setRange(0, 1);
        progress_->setValue(0);
        progress_->setTextVisible(false);
        progress_->hide();
        if (runWatcher_->property("gen").toULongLong() == runGen_)
            applyOutcome(*o);
        updateButtons();
        emit finished();
    });
    connect(keptWatcher_, &QFutureWatcherBase::finished, this, [this] {
        const auto k = keptWatcher_->result();
        keptRunning_ = false;
        if (keptWatcher_->property("gen").toULongLong() == keptGen_)
            applyKept(k);
        if (keptPending_)
            startKeptComparison();
    });
    connect(runButton_, &QPushButton::clicked, this, &SensitivityPanel::run);
    connect(cancelButton_, &QPushButton::clicked, this, &SensitivityPanel::cancel);
    connect(heads_, &QSpinBox::valueChanged, this, [this] { inferConfig(); });
    connect(tokenEdit_, &QPlainTextEdit::textChanged, this, [this] {
        if (!tokenEdit_->toPlainText().trimmed().isEmpty())
            tokenInput_->setChecked(true);
    });
    // A click anywhere on a layer's row counts, not only on its bar: the axis claims clicks
    // within a few pixels of it, which is all a short bar has, and the tick label is the
    // natural thing to click too.
    connect(plot_, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) { pressPos_ = e->position().toPoint(); });
    connect(plot_, &QCustomPlot::mouseRelease, this, [this](QMouseEvent* e) {
        const QPoint pos = e->position().toPoint();
        if (e->button() != Qt::LeftButton || (pos - pressPos_).manhattanLength() > 4)
            return;
        const int row = rowAt(pos);
        if (row < 0)
            return;
        table_->selectRow(row);
        setStatus(tr("%1 (rank %2)").arg(barNames_[size_t(row)]).arg(row + 1));
        emit layerActivated(barNames_[size_t(row)]);
    });
    connect(plot_, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) {
        showBarTip(rowAt(e->position().toPoint()), e->globalPosition().toPoint());
    });
    connect(table_, &QTableWidget::itemChanged, this, [this](QTableWidgetItem* item) {
        if (item->column() == kKeepColumn)
            onKeepToggled();
    });
    connect(table_, &QTableWidget::cellDoubleClicked, this, [this](int row, int) {
        if (row >= 0 && size_t(row) < barNames_.size())
            emit layerActivated(barNames_[size_t(row)]);
    });

    setModel(nullptr);
}

SensitivityPanel::~SensitivityPanel()
{
    // The jobs hold their own state; stop the analysis early and let them end before the
    // Qt objects they post to go away.
    if (cancel_)
        *cancel_ = true;
    pool_.waitForDone();
}

void SensitivityPanel::setStatus(const QString& s, bool error)
{
    status_->setText(s);
    status_->setStyleSheet(error ? QStringLiteral("color: #c0392b;") : QString());
}

QString SensitivityPanel::statusText() const { return status_->text(); }
QString SensitivityPanel::configText() const { return configLabel_->text(); }
bool SensitivityPanel::canRun() const { return configOk_; }
bool SensitivityPanel::isComparingKept() const { return keptRunning_ || keptPending_; }
const SensitivityReport* SensitivityPanel::lastReport() const { return report_.get(); }

QStringList SensitivityPanel::barLayers() const
{
    QStringList out;
    for (const QString& n : barNames_)
        out << n;
    return out;
}

void SensitivityPanel::updateButtons()
{
    runButton_->setEnabled(configOk_ && !running_);
    cancelButton_->setEnabled(running_);
}

void SensitivityPanel::setPlan(const QuantPlan& plan)
{
    plan_ = plan;
    updateStale();
}

QString SensitivityPanel::inputKey() const
{
    return QStringLiteral("%1|%2|%3|%4")
        .arg(heads_->value())
        .arg(tokenInput_->isChecked() ? tokenEdit_->toPlainText() : QString::number(length_->value()))
        .arg(view_->currentIndex())
        .arg(rankBy_->currentIndex());
}

bool SensitivityPanel::isStale() const
{
    return report_ && (!(reportPlan_ == plan_) || reportInput_ != inputKey());
}

void SensitivityPanel::updateStale()
{
    if (!report_ || running_)
        return;
    const QString mark = tr("<b style='color:#c0392b'>Stale</b>: ");
    const bool stale = isStale();
    const bool marked = summary_->text().startsWith(mark);
    if (stale && !marked) {
        summary_->setText(mark + tr("made under an older plan or other settings; Run again. ") + summary_->text());
        setStatus(tr("Stale: the plan or the settings changed since this ranking; Run to see the current plan"), true);
    } else if (!stale && marked) {
        summary_->setText(summary_->text().mid(summary_->text().indexOf(QStringLiteral("; Run again. ")) + 12));
        setStatus(tr("Done: %1 ranked, most sensitive first").arg(layers(int64_t(report_->layers.size()), "linear layer")));
    }
}

void SensitivityPanel::useRandomInput(int length)
{
    length_->setValue(length);
    randomInput_->setChecked(true);
}

void SensitivityPanel::setTokenText(const QString& text)
{
    tokenEdit_->setPlainText(text);
    tokenInput_->setChecked(true);
}

void SensitivityPanel::setModel(std::shared_ptr<const Model> model)
{
    if (model && model == model_)
        return;
    const bool hadKept = !keptFloatLayers().isEmpty();
    model_ = std::move(model);
    // A run or comparison still out belongs to the previous model: stop it and drop it.
    if (cancel_)
        *cancel_ = true;
    ++runGen_;
    ++keptGen_;
    keptPending_ = false;
    report_.reset();
    baseline_.reset();
    kept_.reset();
    showReport();
    summary_->clear();
    keptLabel_->clear();
    setStatus(QString());
    {
        // A head count given for the previous model says nothing about this one.
        const QSignalBlocker block(heads_);
        heads_->setValue(0);
    }
    inferConfig();
    if (hadKept)
        emit keptFloatChanged();
}

void SensitivityPanel::inferConfig()
{
    configOk_ = false;
    state_.reset();
    if (!model_) {
        configLabel_->setText(tr("No model"));
        configLabel_->setStyleSheet(QString());
        updateButtons();
        return;
    }
    // A Hugging Face config.json beside the weights knows the head count the shapes cannot
    // tell (tasks/modelhints.h, as the CLI looks it up).
    const ModelHints hints = modelHints(model_->synthetic || model_->files.empty() ? std::string() : model_->files.front(),
                                        heads_->value());
    const EncoderOptions opt = hints.options;
    QString headsFrom = opt.heads > 0 ? (heads_->value() > 0 ? tr("set here") : tr("config.json")) : tr("hidden / 64");
    auto c = inferEncoderConfig(*model_, opt);
    // The shapes cannot tell the head count, and a wrong one changes every attention
    // (gpt2_capp has 4, not hidden / 64 = 1): say so where the guess is shown. A GGUF file
    // states it in its metadata.
    if (c && !c->headsFrom.empty() && opt.heads <= 0)
        headsFrom = tr("from the GGUF metadata");
    else if (opt.heads <= 0 && !model_->synthetic)
        headsFrom = tr("hidden / 64, a guess: set Heads or put config.json beside the model");
    if (!c) {
        const Error& e = c.error();
        QString why = qs(e.oneLine());
        if (e.code == "not-an-encoder")
            why = tr("Not a supported transformer: %1").arg(why);
        else if (e.code == "heads-unknown")
            why.replace(QStringLiteral("give --heads"), tr("set Heads"));
        configLabel_->setText(why);
        configLabel_->setStyleSheet(QStringLiteral("color: #c0392b;"));
        updateButtons();
        return;
    }
    config_ = *c;
    configOk_ = true;
    state_ = std::make_shared<SensitivityJobState>();
    state_->model = model_;
    state_->options = opt;
    // RoBERTa numbers positions from padding_idx + 1: its table holds that many fewer tokens.
    const int64_t longest = config_.maxPositions - (config_.robertaPositions ? config_.padId + 1 : 0);
    length_->setMaximum(int(std::clamp<int64_t>(longest, 1, 1 << 20)));
    // An example the model can run: BERT's "[CLS] hello world [SEP]" ids where the
    // vocabulary has them, otherwise small ids (GPT-2 checkpoints can have 53 words).
    const bool bertFamily = config_.family != EncoderFamily::Gpt2 && config_.family != EncoderFamily::Llama;
    tokenEdit_->setPlaceholderText(bertFamily && config_.vocab > 7592
                                       ? tr("101 7592 2088 102\n101 2023 2003 1037 3231 102")
                                       : tr("5 17 42 8 3\n7 7 23"));
    configLabel_->setStyleSheet(QString());
    QString kind = tr("%1 encoder").arg(qs(encoderFamilyName(config_.family)));
    if (config_.family == EncoderFamily::Gpt2)
        kind = tr("GPT-2 (causal)");
    else if (config_.family == EncoderFamily::Llama)
        kind = config_.kvHeads == config_.heads
                   ? tr("Llama family (causal)")
                   : tr("Llama family (causal, grouped-query: %1 key/value heads)").arg(config_.kvHeads);
    if (config_.slidingWindow > 0)
        kind += tr(", sliding window %1").arg(config_.slidingWindow);
    if (!config_.ropeScaling.empty())
        kind += tr(", rope scaling %1").arg(qs(config_.ropeScaling));
    configLabel_->setText(tr("<b>%1</b>: %2 layers, hidden %3, %4 (%5), intermediate %6, vocabulary %7, "
                             "up to %8 positions")
                              .arg(kind)
                              .arg(config_.layers)
                              .arg(config_.hidden)
                              .arg(config_.heads == 1 ? tr("1 head") : tr("%1 heads").arg(config_.heads))
                              .arg(headsFrom)
                              .arg(config_.intermediate)
                              .arg(formatCount(config_.vocab))
                              .arg(config_.maxPositions));
    updateButtons();
}

void SensitivityPanel::run()
{
    if (!configOk_ || running_)
        return;
    RunJob j;
    j.state = state_;
    if (tokenInput_->isChecked()) {
        auto seqs = parseTokenText(tokenEdit_->toPlainText().toStdString());
        if (!seqs) {
            setStatus(tr("Token ids: %1").arg(qs(seqs.error().message)), true);
            return;
        }
        auto in = makeEncoderInput(*seqs, config_.padId);
        if (!in) {
            setStatus(tr("Token ids: %1").arg(qs(in.error().message)), true);
            return;
        }
        j.input = std::move(*in);
    } else {
        j.input = randomEncoderInput(1, length_->value(), config_.vocab);
    }
    j.view = view_->currentIndex() == 1 ? SensitivityView::AllButOne : SensitivityView::OneQuantized;
    j.rankBy = rankBy_->currentIndex() == 1 ? SensitivityMetric::Sqnr : SensitivityMetric::Cosine;
    j.plan = plan_;
    pendingPlan_ = plan_;
    pendingInput_ = inputKey();
    cancel_ = std::make_shared<std::atomic<bool>>(false);
    j.cancel = cancel_;
    const uint64_t gen = ++runGen_;
    j.post = [this, gen](int64_t done, int64_t total) {
        // Queued to the panel: if it is gone by then, Qt drops the call with it.
        QMetaObject::invokeMethod(this, [this, gen, done, total] { onProgress(gen, done, total); }, Qt::QueuedConnection);
    };
    running_ = true;
    updateButtons();
    progress_->setRange(0, 0);  // busy until the first forward pass reports
    progress_->show();
    setStatus(state_->built ? tr("Running %1 of %2 tokens…").arg(layers(j.input.batch, "sequence")).arg(j.input.seqLen)
                            : tr("Building the float32 encoder…"));
    runWatcher_->setProperty("gen", QVariant::fromValue<qulonglong>(gen));
    runWatcher_->setFuture(QtConcurrent::run(&pool_, [j] { return runJob(j); }));
}

void SensitivityPanel::cancel()
{
    if (!running_ || !cancel_)
        return;
    *cancel_ = true;
    cancelButton_->setEnabled(false);
    setStatus(tr("Cancelling…"));
}

void SensitivityPanel::onProgress(uint64_t gen, int64_t done, int64_t total)
{
    if (gen != runGen_ || !running_ || (cancel_ && *cancel_) || total <= 0)
        return;
    progress_->setRange(0, int(total));
    progress_->setValue(int(std::min(done, total)));
    progress_->setTextVisible(true);
    setStatus(tr("Forward pass %1 of %2").arg(done).arg(total));
}

void SensitivityPanel::applyOutcome(const SensitivityRunOutcome& o)
{
    if (o.cancelled) {
        setStatus(tr("cancelled"));
        return;
    }
    if (!o.error.isEmpty()) {
        setStatus(o.error, true);
        return;
    }
    // Layers kept in float32 stay kept across runs of the same encoder.
    const QStringList keptBefore = keptFloatLayers();
    report_ = o.report;
    baseline_ = o.baseline;
    showReport();
    checkKept(keptBefore);
    if (keptFloatLayers() != keptBefore)
        emit keptFloatChanged();
    reportPlan_ = pendingPlan_;
    reportInput_ = pendingInput_;
    const SensitivityReport& r = *report_;
    const bool one = r.view == SensitivityView::OneQuantized;
    QString tuned;
    if (baseline_->tunedApplied > 0)
        tuned = tr("; tuned on %1").arg(layers(baseline_->tunedApplied));
    if (baseline_->simulated > 0)
        tuned += tr("; %1 simulated (no int8 kernel for their spec)").arg(layers(baseline_->simulated));
    if (!baseline_->methods.isEmpty())
        tuned += QStringLiteral("; ") + baseline_->methods;
    const PlanFigure& pf = r.plan;
    const QString next = pf.next.valid ? tr(" &nbsp;·&nbsp; next token: KL %1 nats (max %2), top-1 agreement %3%")
                                             .arg(formatNumber(pf.next.meanKld, 3))
                                             .arg(formatNumber(pf.next.maxKld, 3))
                                             .arg(100.0 * pf.next.top1Agreement, 0, 'f', 1)
                                       : QString();
    summary_->setText(tr("<b>The plan, end to end</b> (%1 quantized, %2 kept float32; %3 activations): cosine %4 "
                         "(1 − cosine %5), SQNR %6, max abs error %7%8<br>%9, %10 real tokens &nbsp;·&nbsp; bars: %11%12")
                          .arg(layers(pf.quantizedLayers))
                          .arg(pf.keptLayers)
                          .arg(qs(activationModeName(reportPlan_.activations.mode)))
                          .arg(pf.hidden.cosine, 0, 'f', 6)
                          .arg(cosineDamage(pf.hidden.cosine))
                          .arg(formatDb(pf.hidden.sqnrDb))
                          .arg(formatNumber(pf.hidden.maxAbsError, 4))
                          .arg(next)
                          .arg(layers(baseline_->input.batch, "sequence"))
                          .arg(r.tokens)
                          .arg(one ? tr("only this layer quantized") : tr("every layer quantized except this one"))
                          .arg(tuned));
    setStatus(tr("Done: %1 ranked, most sensitive first").arg(layers(int64_t(r.layers.size()), "linear layer")));
    startKeptComparison();
}

void SensitivityPanel::showReport()
{
    barNames_.clear();
    {
        const QSignalBlocker block(table_);
        table_->setRowCount(0);
    }
    const SensitivityReport* r = report_.get();
    // No ranking yet (or not an encoder): no empty axes, the status line says what to do.
    split_->setVisible(r != nullptr);
    placeholder_->setVisible(r == nullptr);
    const bool bySqnr = baseline_ && baseline_->rankBy == SensitivityMetric::Sqnr;
    const bool one = !r || r->view == SensitivityView::OneQuantized;
    std::vector<QString> prefixes;
    std::vector<double> raw;
    if (r)
        for (const LayerSensitivity& l : r->layers) {
            barNames_.push_back(weightName(l.name));
            prefixes.push_back(qs(l.name));
            raw.push_back(bySqnr ? l.sqnrDb : std::max(0.0, 1.0 - l.cosine));
        }
    const double allValue = !r ? 0.0 : bySqnr ? r->allQuantized.sqnrDb : std::max(0.0, 1.0 - r->allQuantized.cosine);

    double lo = INFINITY, hi = -INFINITY;
    for (double x : raw)
        if (std::isfinite(x)) {
            lo = std::min(lo, x);
            hi = std::max(hi, x);
        }
    // The all-int8 reference line only where it does not squash the bars: with one layer
    // int8 at a time, 1 - cosine of all of them is several times the largest bar (the
    // figure is in the summary above).
    const bool line = r && std::isfinite(allValue) && (bySqnr || !std::isfinite(hi) || allValue <= 1.5 * hi);
    if (line) {
        lo = std::min(lo, allValue);
        hi = std::max(hi, allValue);
    }
    if (!std::isfinite(lo) || !std::isfinite(hi)) {  // no finite value at all
        lo = 0;
        hi = bySqnr ? 10.0 : 1e-6;
    }
    double axisLo = 0, axisHi = 0, cap = 0;
    if (bySqnr) {
        // Decibels have no natural zero; the spread between layers is what ranks them, so
        // the axis frames it (bars start at the left edge).
        const double span = std::max(hi - lo, 1.0);
        axisLo = lo - 0.15 * span;
        axisHi = hi + 0.12 * span;
        cap = hi + 0.06 * span;  // an exact output (+inf dB) runs past the largest finite bar
    } else {
        axisHi = (hi > 0 ? hi : 1e-6) * 1.12;
        cap = axisHi;
    }
    QVector<double> keys, values;
    for (size_t i = 0; i < raw.size(); ++i) {
        keys << double(i);
        values << (std::isfinite(raw[i]) ? raw[i] : (raw[i] > 0 ? cap : axisLo));
    }
    bars_->setData(keys, values, true);

    shortLabels_ = shortLayerNames(prefixes);
    const std::vector<QString>& labels = shortLabels_;
    refreshTicks();
    plot_->yAxis->setRange(-0.6, std::max<double>(double(labels.size()) - 0.4, 1.0));
    plot_->xAxis->setRange(axisLo, axisHi);
    plot_->xAxis->setLabel((bySqnr ? tr("SQNR (dB) of the last hidden state vs float32")
                                   : tr("1 − cosine of the last hidden state vs float32")) +
                           (one ? tr("  ·  only this layer quantized") : tr("  ·  every layer quantized except this one")));
    allLine_->setVisible(line);
    plot_->xAxis2->setLabel(QString());
    if (line) {
        allLine_->point1->setCoords(allValue, 0);
        allLine_->point2->setCoords(allValue, 1);
        plot_->xAxis2->setLabel(tr("dashed line: all layers int8, %1")
                                    .arg(bySqnr ? formatDb(allValue) : QString::number(allValue, 'e', 2)));
    }
    // One readable row per layer; the scroll area takes what the tab cannot show.
    const int plotHeight = std::max(220, int(labels.size()) * kRowPixels + 90);
    plot_->setMinimumHeight(plotHeight);
    if (int(labels.size()) != splitRows_) {
        // A new layer count: give the chart what it needs, up to 60% of the splitter.
        splitRows_ = int(labels.size());
        const int total = split_->height();
        if (total > 0) {
            const int top = std::min(plotHeight + 4, total * 6 / 10);
            split_->setSizes({top, total - top});
        }
    }
    plot_->replot();

    if (!r)
        return;
    const QSignalBlocker block(table_);
    table_->setRowCount(int(r->layers.size()));
    auto number = [](const QString& text) {
        auto* it = new QTableWidgetItem(text);
        it->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
        return it;
    };
    for (size_t i = 0; i < r->layers.size(); ++i) {
        const LayerSensitivity& l = r->layers[i];
        const int row = int(i);
        auto* rank = number(QString::number(l.rank));
        rank->setData(Qt::UserRole, qlonglong(l.index));
        table_->setItem(row, 0, rank);
        auto* name = new QTableWidgetItem(prefixes[i]);
        name->setToolTip(barNames_[i]);
        table_->setItem(row, 1, name);
        table_->setItem(row, 2, number(cosineDamage(l.cosine)));
        table_->setItem(row, 3, number(std::isfinite(l.sqnrDb) ? QString::number(l.sqnrDb, 'f', 2) : formatDb(l.sqnrDb)));
        table_->setItem(row, 4, number(formatNumber(l.maxAbsError, 4)));
        auto* keep = new QTableWidgetItem(tr("keep"));
        keep->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable | Qt::ItemIsUserCheckable);
        keep->setCheckState(Qt::Unchecked);
        keep->setToolTip(tr("Keep %1 in float32 for export").arg(prefixes[i]));
        table_->setItem(row, kKeepColumn, keep);
    }
}

void SensitivityPanel::refreshTicks()
{
    auto ticker = QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText);
    for (size_t i = 0; i < shortLabels_.size(); ++i) {
        const QTableWidgetItem* keep = table_->item(int(i), kKeepColumn);
        const bool kept = keep && keep->checkState() == Qt::Checked;
        ticker->addTick(double(i), kept ? shortLabels_[i] + tr("  [float32]") : shortLabels_[i]);
    }
    plot_->yAxis->setTicker(ticker);
    plot_->replot(QCustomPlot::rpQueuedReplot);
}

int SensitivityPanel::rowAt(const QPoint& pos) const
{
    const QRect area = plot_->axisRect()->rect();
    if (barNames_.empty() || pos.y() < area.top() || pos.y() > area.bottom() || pos.x() > area.right())
        return -1;
    const double key = plot_->yAxis->pixelToCoord(pos.y());
    const long row = std::lround(key);
    if (row < 0 || size_t(row) >= barNames_.size() || std::abs(key - double(row)) > 0.5)
        return -1;
    return int(row);
}

void SensitivityPanel::showBarTip(int row, const QPoint& globalPos)
{
    const SensitivityReport* r = report_.get();
    if (!r || row < 0 || size_t(row) >= r->layers.size()) {
        QToolTip::hideText();
        return;
    }
    const LayerSensitivity& l = r->layers[size_t(row)];
    QToolTip::showText(globalPos,
                       tr("%1\nrank %2: 1 − cosine %3, SQNR %4, max abs error %5\nclick to select it")
                           .arg(barNames_[size_t(row)])
                           .arg(l.rank)
                           .arg(cosineDamage(l.cosine))
                           .arg(formatDb(l.sqnrDb))
                           .arg(formatNumber(l.maxAbsError, 4)),
                       plot_);
}

QStringList SensitivityPanel::keptFloatLayers() const
{
    std::vector<std::pair<qlonglong, QString>> kept;
    for (int row = 0; row < table_->rowCount() && size_t(row) < barNames_.size(); ++row) {
        const QTableWidgetItem* keep = table_->item(row, kKeepColumn);
        const QTableWidgetItem* rank = table_->item(row, 0);
        if (keep && rank && keep->checkState() == Qt::Checked)
            kept.emplace_back(rank->data(Qt::UserRole).toLongLong(), barNames_[size_t(row)]);
    }
    std::sort(kept.begin(), kept.end());  // execution order, as the encoder runs them
    QStringList out;
    for (const auto& k : kept)
        out << k.second;
    return out;
}

bool SensitivityPanel::checkKept(const QStringList& weightNames)
{
    const QStringList before = keptFloatLayers();
    {
        const QSignalBlocker block(table_);
        for (int row = 0; row < table_->rowCount() && size_t(row) < barNames_.size(); ++row)
            if (QTableWidgetItem* keep = table_->item(row, kKeepColumn))
                keep->setCheckState(weightNames.contains(barNames_[size_t(row)]) ? Qt::Checked : Qt::Unchecked);
    }
    refreshTicks();
    return keptFloatLayers() != before;
}

void SensitivityPanel::setKeptFloatLayers(const QStringList& weightNames)
{
    if (checkKept(weightNames))
        onKeepToggled();
}

void SensitivityPanel::onKeepToggled()
{
    refreshTicks();
    emit keptFloatChanged();
    startKeptComparison();
}

void SensitivityPanel::startKeptComparison()
{
    if (!baseline_ || !report_)
        return;
    ++keptGen_;
    const QStringList names = keptFloatLayers();
    keptLabel_->setStyleSheet(QString());
    keptLabel_->setText(tr("Computing every linear layer quantized except %1…").arg(layers(names.size(), "kept layer")));
    if (keptRunning_) {
        keptPending_ = true;  // started when the one out returns; its result is stale
        return;
    }
    keptPending_ = false;
    std::vector<uint8_t> keep(baseline_->names.size(), 0);
    for (const QString& n : names) {
        const auto it = std::find(baseline_->names.begin(), baseline_->names.end(), layerPrefix(n.toStdString()));  // ".weight" names
        if (it != baseline_->names.end())
            keep[size_t(it - baseline_->names.begin())] = 1;
    }
    keptRunning_ = true;
    keptWatcher_->setProperty("gen", QVariant::fromValue<qulonglong>(keptGen_));
    auto b = baseline_;
    keptWatcher_->setFuture(QtConcurrent::run(&pool_, [b, keep, names] { return keptJob(b, keep, names); }));
}

void SensitivityPanel::applyKept(std::shared_ptr<const KeptComparison> k)
{
    kept_ = std::move(k);
    if (!kept_->error.isEmpty()) {
        keptLabel_->setStyleSheet(QStringLiteral("color: #c0392b;"));
        keptLabel_->setText(kept_->error);
    } else {
        keptLabel_->setStyleSheet(QString());
        keptLabel_->setText(
            tr("<b>Quantized except %1</b>: cosine %2 (1 − cosine %3), SQNR %4, max abs error %5; "
               "linear weights %6 → %7 (%8× smaller)")
                .arg(layers(kept_->kept.size(), "kept layer"))
                .arg(kept_->cmp.cosine, 0, 'f', 6)
                .arg(cosineDamage(kept_->cmp.cosine))
                .arg(formatDb(kept_->cmp.sqnrDb))
                .arg(formatNumber(kept_->cmp.maxAbsError, 4))
                .arg(formatBytes(kept_->bytesBefore), formatBytes(kept_->bytesAfter))
                .arg(double(kept_->bytesBefore) / double(std::max<int64_t>(1, kept_->bytesAfter)), 0, 'f', 2));
    }
    emit keptComparisonFinished();
}

}  // namespace quantlens::ui
