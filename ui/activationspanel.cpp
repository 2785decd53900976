#include "activationspanel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFile>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QMetaObject>
#include <QPlainTextEdit>
#include <QPointer>
#include <QProgressBar>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QSplitter>
#include <QTabWidget>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "histogramplot.h"
#include "qcp.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "io/exporter.h"
#include "runner/activationquant.h"
#include "runner/encoder.h"
#include "runner/normfold.h"
#include "runner/tokenizer.h"
#include "tasks/modelhints.h"
#include "tasks/staticranges.h"

namespace quantlens::ui {

namespace {

constexpr float kOutlier = 6.0f;  // LLM.int8's threshold
constexpr int kAlphaSteps = SmoothQuantView::kSteps;  // α = k / 20
constexpr int kSmoothedBins = 201;  // odd: zero sits in the middle of a bin

struct Job {
    std::shared_ptr<const Model> model;
    QString layer;
    int heads = 0;
    ActivationsPanel::Input input = ActivationsPanel::RandomIds;
    QString text;
    QuantPlan plan;
    std::shared_ptr<std::atomic<bool>> cancel;
    std::function<void(int64_t, int64_t)> progress;
};

constexpr int kErrorBins = 81;

// Histogram of w - ŵ over [-edge, edge].
std::vector<double> errorHistogram(const std::vector<float>& w, const std::vector<float>& q, double edge)
{
    std::vector<double> counts(kErrorBins, 0.0);
    for (size_t i = 0; i < w.size(); ++i) {
        const double e = double(w[i]) - double(q[i]);
        const int b = int(std::floor((e + edge) / (2 * edge) * kErrorBins));
        counts[size_t(std::clamp(b, 0, kErrorBins - 1))] += 1;
    }
    return counts;
}

// GPTQ on the layer at the plan's spec, against round to nearest with the same scales.
void gptqLayer(const Job& j, const EncoderConfig& cfg, const ActivationRecording& rec, ActivationsResult& r)
{
    const std::string tensor = j.layer.toStdString() + ".weight";
    const Tensor* t = j.model->find(tensor);
    if (!t) {
        r.gptqWhy = QStringLiteral("no weight tensor %1").arg(QString::fromStdString(tensor));
        return;
    }
    const PlanDecision d = j.plan.decide(*t);
    if (!d.quantize) {
        r.gptqWhy = QStringLiteral("the plan does not quantize this layer (%1)").arg(QString::fromStdString(d.reason));
        return;
    }
    MethodSpec gptq;
    gptq.method = WeightMethod::Gptq;
    gptq.gptq = j.plan.methodFor(tensor).gptq;
    auto g = quantizeWithActivations(*j.model, cfg, tensor, d.spec, gptq, rec);
    auto rtn = quantizeForExport(*j.model, tensor, d.spec);
    auto w = t->toFloat();
    if (!g || !rtn || !w) {
        r.gptqWhy = QString::fromStdString((!g ? g.error() : !rtn ? rtn.error() : w.error()).oneLine());
        return;
    }
    const std::vector<float> qg = dequantize(g->entry.quantized), qr = dequantize(rtn->quantized);
    double edge = 0;
    for (size_t i = 0; i < w->size(); ++i)
        edge = std::max({edge, std::abs(double((*w)[i]) - qg[i]), std::abs(double((*w)[i]) - qr[i])});
    r.errorEdge = edge > 0 ? edge : 1.0;
    r.rtnErrors = errorHistogram(*w, qr, r.errorEdge);
    r.gptqErrors = errorHistogram(*w, qg, r.errorEdge);
    r.rtnOutputSqnrDb = g->rtnOutputSqnrDb;
    r.gptqOutputSqnrDb = g->outputSqnrDb;
    r.rtnWeightSqnrDb = rtn->metrics.sqnrDb;
    r.gptqWeightSqnrDb = g->entry.metrics.sqnrDb;
    r.gptqSpec = QString::fromStdString(schemeName(d.spec.scheme) + ", " + std::to_string(d.spec.bits) + "-bit, " +
                                        granularityName(d.spec));
    r.gptq = true;
}

std::shared_ptr<const ActivationsResult> runJob(const Job& j)
{
    auto r = std::make_shared<ActivationsResult>();
    r->layer = j.layer;
    const auto t0 = std::chrono::steady_clock::now();
    auto fail = [&](const std::string& why) {
        r->error = QString::fromStdString(why);
        return r;
    };
    const std::string path = j.model->files.empty() ? std::string() : j.model->files.front();
    const ModelHints hints = modelHints(path, j.heads);
    if (!hints.warning.empty())
        return fail(hints.warning);
    auto runner = EncoderRunner::create(*j.model, hints.options);
    if (!runner)
        return fail(runner.error().oneLine());
    const std::string layer = j.layer.toStdString();
    std::vector<std::vector<int64_t>> seqs;
    if (j.input == ActivationsPanel::RandomIds) {
        for (int s = 0; s < 8; ++s)
            seqs.push_back(randomEncoderInput(1, std::min<int64_t>(64, runner->config().maxPositions),
                                              runner->config().vocab, uint64_t(s + 1))
                               .ids);
        r->input = QStringLiteral("8 sequences of random ids");
    } else if (j.input == ActivationsPanel::TokenIds) {
        auto s = parseTokenText(j.text.toStdString());
        if (!s)
            return fail(s.error().message);
        seqs = std::move(*s);
        r->input = QStringLiteral("typed token ids");
    } else {
        auto tok = TextTokenizer::forModel(path);
        if (!tok)
            return fail(tok.error().oneLine());
        auto s = tok->encodeLines(j.text.toStdString(), j.cancel.get());  // Cancel kills the tokenizer helper
        if (!s)
            return fail(s.error().code == "cancelled" ? std::string("cancelled") : s.error().message);
        seqs = std::move(*s);
        r->input = QStringLiteral("text through the ") + QString::fromStdString(tok->source());
    }
    r->ids = seqs;
    ActivationOptions o;
    o.layers = {layer};
    o.hessian = true;  // one layer's [in, in]: GPTQ's before/after below
    o.keepRows = 512;
    auto rec = recordActivations(*runner, seqs, o, [&](int64_t done, int64_t total) {
        if (j.progress)
            j.progress(done, total);
        return !j.cancel->load();
    });
    if (!rec)
        return fail(rec.error().code == "cancelled" ? std::string("cancelled") : rec.error().oneLine());
    const LayerActivationStats* st = rec->find(layer);
    if (!st || st->tokens == 0)
        return fail("'" + layer + "' is not a linear layer the runner executes");
    r->stats = *st;
    r->tokens = rec->tokens;
    auto lw = readLinearWeight(*j.model, layer);
    if (!lw)
        return fail(lw.error().oneLine());
    r->weightColumnAbsMax = weightColumnAbsMax({lw->w}, lw->in);
    std::vector<double> alphas;
    for (int k = 0; k <= kAlphaSteps; ++k)
        alphas.push_back(double(k) / kAlphaSteps);
    auto sweep = smoothQuantSweep(st->rows, st->keptRows, lw->w, lw->out, lw->in, st->absMax, alphas);
    auto none = w8a8OutputSqnrDb(st->rows, st->keptRows, lw->w, lw->out, lw->in, {});
    if (!sweep || !none)
        return fail((sweep ? none.error() : sweep.error()).oneLine());
    r->sweep = std::move(*sweep);
    r->noSmoothingSqnrDb = *none;
    // The smoothed operands at every α step (a few ms each for a 768 x 3072 layer,
    // tests/bench/bench_smoothedoperands), so the slider only redraws.
    SmoothQuantView::Data& sd = r->smooth;
    sd.sweep = r->sweep;
    sd.noSmoothingSqnrDb = r->noSmoothingSqnrDb;
    sd.rows = st->keptRows;
    auto smoothed = [&](std::span<const float> s) {
        return smoothedOperands(st->rows, st->keptRows, lw->w, lw->out, lw->in, st->absMax, r->weightColumnAbsMax, s,
                                kSmoothedBins);
    };
    auto asRecorded = smoothed(std::vector<float>(size_t(lw->in), 1.0f));
    if (!asRecorded)
        return fail(asRecorded.error().oneLine());
    sd.none = std::move(*asRecorded);
    for (double alpha : alphas) {
        if (j.cancel->load())
            return fail("cancelled");
        auto o = smoothed(smoothQuantScales(st->absMax, r->weightColumnAbsMax, alpha));
        if (!o)
            return fail(o.error().oneLine());
        o->alpha = alpha;
        sd.steps.push_back(std::move(*o));
    }
    auto fold = precedingNorm(runner->config(), layer);
    r->fold = fold ? QStringLiteral("1/s folds into ") + QString::fromStdString(fold->gamma)
                   : QString::fromStdString(fold.error().message);
    // Static activations: the calibrators on the recorded rows (minmax over every token).
    QuantSpec cal;
    cal.scheme = Scheme::TorchAffine;
    r->ranges = suggestRanges(st->rows, cal);
    r->inputStats = computeStats(st->rows);
    r->inputStats.min = st->overallMin();
    r->inputStats.max = st->overallMax();
    r->inputStats.count = st->tokens * st->inFeatures;
    for (CalibSuggestion& c : r->ranges)
        if (c.method == CalibMethod::MinMax) {
            c.lo = st->overallMin();
            c.hi = st->overallMax();
        }
    if (!j.cancel->load())
        gptqLayer(j, runner->config(), *rec, *r);
    r->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace

ActivationsPanel::ActivationsPanel(QWidget* parent) : QWidget(parent)
{
    pool_.setMaxThreadCount(1);
    auto* top = new QVBoxLayout(this);
    layerLabel_ = new QLabel(tr("Select a linear layer"), this);
    top->addWidget(layerLabel_);

    auto* form = new QFormLayout;
    inputKind_ = new QComboBox(this);
    inputKind_->addItems({tr("Random token ids (8 x 64)"), tr("Token ids, one sequence per line"),
                          tr("Text, one sequence per line (model's tokenizer)")});
    form->addRow(tr("Calibration input"), inputKind_);
    inputEdit_ = new QPlainTextEdit(this);
    inputEdit_->setMaximumHeight(70);
    inputEdit_->setEnabled(false);
    inputEdit_->setVisible(false);
    loadButton_ = new QPushButton(tr("Open file…"), this);
    loadButton_->setToolTip(tr("Load calibration text or token ids from a file (up to 1 MiB)"));
    auto* inputRow = new QHBoxLayout;
    inputRow->addWidget(inputEdit_, 1);
    inputRow->addWidget(loadButton_, 0, Qt::AlignTop);
    inputRow->addStretch(0);  // takes the row while the edit is hidden (random ids)
    form->addRow(QString(), inputRow);
    connect(loadButton_, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Calibration input"), QString(),
                                                          tr("Text or token ids (*.txt);;All files (*)"));
        if (!path.isEmpty())
            loadInputFile(path);
    });
    heads_ = new QSpinBox(this);
    heads_->setRange(0, 1024);
    heads_->setSpecialValueText(tr("infer"));
    form->addRow(tr("Attention heads"), heads_);
    top->addLayout(form);
    connect(inputKind_, &QComboBox::currentIndexChanged, this,
            [this](int i) {
                inputEdit_->setEnabled(i != RandomIds);
                inputEdit_->setVisible(i != RandomIds);  // the plots get the room
            });

    auto* buttons = new QHBoxLayout;
    runButton_ = new QPushButton(tr("Record activations"), this);
    cancelButton_ = new QPushButton(tr("Cancel"), this);
    progress_ = new QProgressBar(this);
    progress_->setRange(0, 1);
    progress_->setValue(0);
    buttons->addWidget(runButton_);
    buttons->addWidget(cancelButton_);
    buttons->addWidget(progress_, 1);
    top->addLayout(buttons);
    status_ = new QLabel(this);
    status_->setWordWrap(true);
    top->addWidget(status_);
    connect(runButton_, &QPushButton::clicked, this, &ActivationsPanel::run);
    connect(cancelButton_, &QPushButton::clicked, this, &ActivationsPanel::cancel);

    auto* split = new QSplitter(Qt::Vertical, this);
    auto* channelBox = new QWidget(split);
    auto* channelLayout = new QVBoxLayout(channelBox);
    channelLayout->setContentsMargins(0, 0, 0, 0);
    smoothedChannels_ = new QCheckBox(tr("Also smoothed at the SmoothQuant α (absmax / s and absmax · s, one log axis)"),
                                      channelBox);
    smoothedChannels_->setObjectName(QStringLiteral("smoothedChannels"));
    smoothedChannels_->setChecked(true);
    channelLayout->addWidget(smoothedChannels_);
    channels_ = new QCustomPlot(channelBox);
    channels_->setMinimumHeight(160);
    channelLayout->addWidget(channels_, 1);
    channels_->xAxis->setLabel(tr("input channel"));
    channels_->yAxis->setLabel(tr("activation absmax"));
    channels_->yAxis2->setVisible(true);
    channels_->yAxis2->setLabel(tr("weight column absmax"));
    channels_->addGraph(channels_->xAxis, channels_->yAxis);   // activation absmax
    channels_->addGraph(channels_->xAxis, channels_->yAxis2);  // weight column absmax
    channels_->addGraph(channels_->xAxis, channels_->yAxis);   // outliers
    channels_->addGraph(channels_->xAxis, channels_->yAxis);   // activation absmax / s
    channels_->addGraph(channels_->xAxis, channels_->yAxis2);  // weight column absmax · s
    channels_->graph(0)->setName(tr("activation absmax"));
    channels_->graph(1)->setName(tr("weight column absmax"));
    channels_->graph(2)->setLineStyle(QCPGraph::lsNone);
    channels_->graph(2)->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QColor(214, 39, 40), 7));
    channels_->graph(2)->setName(tr("outlier (|x| > 6)"));
    channels_->graph(3)->setPen(QPen(QColor(20, 60, 140), 1.6));
    channels_->graph(4)->setPen(QPen(QColor(200, 80, 0), 1.6));
    // About one point per pixel: antialiased lines look no better and triple a slider step.
    channels_->setNotAntialiasedElements(QCP::aePlottables);
    // The smoothed maxima (and the legend naming their α) on buffered layers of their own: a
    // slider step redraws only those, not the 3 x channels recorded points under them
    // (tests/bench/ui/bench_alphadrag).
    channels_->addLayer(QStringLiteral("smoothed"), channels_->layer(QStringLiteral("main")), QCustomPlot::limAbove);
    channels_->layer(QStringLiteral("smoothed"))->setMode(QCPLayer::lmBuffered);
    channels_->layer(QStringLiteral("legend"))->setMode(QCPLayer::lmBuffered);
    channels_->graph(3)->setLayer(QStringLiteral("smoothed"));
    channels_->graph(4)->setLayer(QStringLiteral("smoothed"));
    // The legend in a row of its own above the channels, where it hides none of them.
    channels_->legend->setVisible(true);
    channels_->axisRect()->insetLayout()->take(channels_->legend);
    channels_->axisRect()->insetLayout()->simplify();
    channels_->plotLayout()->insertRow(0);
    channels_->plotLayout()->addElement(0, 0, channels_->legend);
    channels_->plotLayout()->setRowStretchFactor(0, 0.001);
    channels_->legend->setWrap(3);
    channels_->legend->setFillOrder(QCPLegend::foColumnsFirst);
    channels_->legend->setBorderPen(Qt::NoPen);
    channels_->legend->setBrush(Qt::NoBrush);
    channels_->legend->setMargins(QMargins(4, 0, 4, 0));
    // With the smoothed maxima both sides share one log axis: at α = 0.5 the two smoothed
    // curves coincide (s balances them), which two linear axes would hide.
    connect(channels_->yAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this](const QCPRange& r) {
        if (smoothedChannels_->isChecked())
            channels_->yAxis2->setRange(r);
    });
    connect(smoothedChannels_, &QCheckBox::toggled, this, &ActivationsPanel::showChannels);
    split->addWidget(channelBox);

    // Below the channels, one page at a time: the input's range, SmoothQuant, GPTQ.
    sections_ = new QTabWidget(split);
    sections_->setObjectName(QStringLiteral("activationSections"));
    sections_->setDocumentMode(true);
    split->addWidget(sections_);
    split->setStretchFactor(0, 2);
    split->setStretchFactor(1, 3);
    top->addWidget(split, 1);

    auto* rangePage = new QWidget(sections_);
    auto* rangeLayout = new QVBoxLayout(rangePage);
    rangeLayout->setContentsMargins(0, 4, 0, 0);
    // The input's histogram with the same calibrator markers and draggable clamp lines as a
    // weight's: the lines are the layer's static range (uint8 affine, so 0 stays inside).
    histogram_ = new HistogramPlot(rangePage);
    histogram_->setObjectName(QStringLiteral("activationRange"));
    histogram_->setMinimumHeight(160);
    histogram_->setDragRule(HistogramPlot::DragRule::IncludeZero);
    histogram_->clearHistogram(tr("Record a layer's activations to see their histogram"));
    connect(histogram_, &HistogramPlot::rangeDragFinished, this, [this](double lo, double hi) {
        if (result_ && !isStale())
            emit activationRangeChosen(layer_ + QStringLiteral(".weight"), ActivationRange{float(lo), float(hi)});
    });
    connect(histogram_, &HistogramPlot::markerClicked, this, [this](int i) {
        if (result_ && !isStale() && i >= 0 && size_t(i) < result_->ranges.size())
            emit activationRangeChosen(layer_ + QStringLiteral(".weight"),
                                       ActivationRange{result_->ranges[size_t(i)].lo, result_->ranges[size_t(i)].hi});
    });
    rangeLayout->addWidget(histogram_, 1);

    // Static activation ranges.
    auto* st = new QHBoxLayout;
    st->addWidget(new QLabel(tr("Static range"), rangePage));
    calibrator_ = new QComboBox(rangePage);
    calibrator_->setObjectName(QStringLiteral("staticCalibrator"));
    for (const char* c : {"minmax", "percentile:99.99", "mse", "entropy", "hist-l2"})
        calibrator_->addItem(QString::fromLatin1(c));
    st->addWidget(calibrator_);
    useRange_ = new QPushButton(tr("Use its range for this layer"), rangePage);
    calibrateAll_ = new QPushButton(tr("Calibrate every layer, static activations"), rangePage);
    calibrateAll_->setToolTip(tr("Each linear layer's input range with this calibrator over the inputs above, into the "
                                 "plan, and the plan's activations set to static"));
    st->addWidget(useRange_);
    st->addWidget(calibrateAll_);
    st->addStretch(1);
    rangeLayout->addLayout(st);
    connect(useRange_, &QPushButton::clicked, this, [this] {
        if (!result_ || isStale())
            return;
        QuantSpec want;
        if (!parseCalib(calibrator_->currentText().toStdString(), want))
            return;
        for (const CalibSuggestion& c : result_->ranges)
            if (c.method == want.calib)
                emit activationRangeChosen(layer_ + QStringLiteral(".weight"), ActivationRange{c.lo, c.hi});
    });
    connect(calibrateAll_, &QPushButton::clicked, this, &ActivationsPanel::calibrateAll);
    sections_->addTab(rangePage, tr("Input range (static)"));

    sq_ = new SmoothQuantView(sections_);
    connect(sq_, &SmoothQuantView::alphaChanged, this, &ActivationsPanel::showAlpha);
    connect(sq_->slider(), &QSlider::sliderReleased, this, &ActivationsPanel::showAlpha);
    sections_->addTab(sq_, tr("SmoothQuant α"));

    // GPTQ's before/after for this layer at the plan's spec.
    auto* gptqPage = new QWidget(sections_);
    auto* gptqLayout = new QVBoxLayout(gptqPage);
    gptqLayout->setContentsMargins(0, 4, 0, 0);
    gptqLabel_ = new QLabel(gptqPage);
    gptqLabel_->setObjectName(QStringLiteral("gptqSummary"));
    gptqLabel_->setWordWrap(true);
    gptqLayout->addWidget(gptqLabel_);
    errors_ = new QCustomPlot(gptqPage);
    errors_->setObjectName(QStringLiteral("gptqErrors"));
    errors_->setMinimumHeight(140);
    errors_->xAxis->setLabel(tr("weight error w − ŵ"));
    errors_->yAxis->setLabel(tr("weights"));
    errors_->addGraph();
    errors_->addGraph();
    errors_->graph(0)->setName(tr("round to nearest"));
    errors_->graph(0)->setPen(QPen(QColor(127, 127, 127), 2));
    errors_->graph(0)->setLineStyle(QCPGraph::lsStepCenter);
    errors_->graph(1)->setName(tr("GPTQ"));
    errors_->graph(1)->setPen(QPen(QColor(44, 160, 44), 2));
    errors_->graph(1)->setLineStyle(QCPGraph::lsStepCenter);
    errors_->legend->setVisible(true);
    gptqLayout->addWidget(errors_, 1);
    sections_->addTab(gptqPage, tr("GPTQ"));

    // What the plan does with this layer, and putting a method into it.
    auto* planRow = new QHBoxLayout;
    planRow->addWidget(new QLabel(tr("Method for the plan"), this));
    method_ = new QComboBox(this);
    method_->setObjectName(QStringLiteral("planMethod"));
    method_->addItems({tr("Round to nearest"), tr("GPTQ"), tr("GPTQ, activation order"), tr("SmoothQuant at α = 0.50")});
    planRow->addWidget(method_);
    applyLayer_ = new QPushButton(tr("Use for this layer"), this);
    applyAll_ = new QPushButton(tr("Use for all layers"), this);
    planRow->addWidget(applyLayer_);
    planRow->addWidget(applyAll_);
    planRow->addStretch(1);
    top->addLayout(planRow);
    planLabel_ = new QLabel(this);
    planLabel_->setObjectName(QStringLiteral("planMethodLine"));
    planLabel_->setWordWrap(true);
    top->addWidget(planLabel_);
    connect(applyLayer_, &QPushButton::clicked, this, [this] { choose(false); });
    connect(applyAll_, &QPushButton::clicked, this, [this] { choose(true); });
    connect(method_, &QComboBox::currentIndexChanged, this, &ActivationsPanel::updateButtons);
    showAlpha();

    watcher_ = new QFutureWatcher<std::shared_ptr<const ActivationsResult>>(this);
    connect(watcher_, &QFutureWatcherBase::finished, this, [this] {
        running_ = false;
        auto r = watcher_->result();
        if (!r->error.isEmpty()) {
            setStatus(r->error == QLatin1String("cancelled") ? tr("cancelled") : r->error, r->error != QLatin1String("cancelled"));
        } else {
            result_ = r;
            showResult();
        }
        updateButtons();
        emit finished();
    });
    rangesWatcher_ = new QFutureWatcher<std::shared_ptr<const StaticRangesResult>>(this);
    connect(rangesWatcher_, &QFutureWatcherBase::finished, this, [this] {
        calibrating_ = false;
        running_ = false;
        auto r = rangesWatcher_->result();
        if (!r->error.isEmpty()) {
            setStatus(r->error == QLatin1String("cancelled") ? tr("cancelled") : r->error, r->error != QLatin1String("cancelled"));
        } else {
            setStatus(tr("Static ranges for %1 layers, %2, into the plan").arg(r->ranges.size()).arg(calibrator_->currentText()));
            emit staticRangesChosen(r->ranges, r->calibration);
        }
        updateButtons();
        emit finished();
    });
    updateButtons();
}

void ActivationsPanel::calibrateAll()
{
    if (running_ || !model_ || !result_ || isStale() || result_->ids.empty())
        return;
    StaticRangeOptions so;
    if (!parseCalib(calibrator_->currentText().toStdString(), so.calibrator))
        return;
    running_ = calibrating_ = true;
    cancel_ = std::make_shared<std::atomic<bool>>(false);
    QuantPlan plan = plan_;
    plan.calibration = {};
    plan.calibration.tokens = result_->ids;
    const std::string path = model_->files.empty() ? std::string() : model_->files.front();
    const EncoderOptions eo = modelHints(path, heads_->value()).options;
    auto model = model_;
    auto cancel = cancel_;
    progress_->setRange(0, 0);
    setStatus(tr("Calibrating every layer's input range (%1)…").arg(calibrator_->currentText()));
    rangesWatcher_->setFuture(QtConcurrent::run(&pool_, [model, path, eo, plan, so, cancel] {
        auto out = std::make_shared<StaticRangesResult>();
        out->calibration = plan.calibration;
        auto r = calibrateActivationRanges(model, path, eo, plan, so, [cancel](double) { return !cancel->load(); });
        if (!r)
            out->error = r.error().code == "cancelled" ? QStringLiteral("cancelled") : QString::fromStdString(r.error().oneLine());
        else
            out->ranges = std::move(*r);
        return std::shared_ptr<const StaticRangesResult>(out);
    }));
    updateButtons();
}

ActivationsPanel::~ActivationsPanel()
{
    if (cancel_)
        cancel_->store(true);
    pool_.waitForDone();
}

void ActivationsPanel::setSelection(std::shared_ptr<const Model> model, int tensorIndex)
{
    if (model != model_) {
        result_.reset();
        model_ = std::move(model);
    }
    layer_.clear();
    if (model_ && tensorIndex >= 0 && tensorIndex < int(model_->tensors.size())) {
        const Tensor& t = model_->tensors[size_t(tensorIndex)];
        if (t.rank() == 2 && t.name.ends_with(".weight"))
            layer_ = QString::fromStdString(t.name.substr(0, t.name.size() - 7));
    }
    layerLabel_->setText(layer_.isEmpty() ? tr("Select a linear layer's weight")
                                          : tr("Layer: %1").arg(layer_));
    showPlanLine();
    if (!result_ || result_->layer == layer_)
        showResult();
    else
        setStatus(tr("Stale: the plots are for %1; record again for %2").arg(result_->layer, layer_));
    sq_->setStaleNote(isStale() ? tr("stale: for %1").arg(result_->layer) : QString());
    updateButtons();
}

void ActivationsPanel::setInput(Input kind, const QString& text)
{
    inputKind_->setCurrentIndex(int(kind));
    inputEdit_->setPlainText(text);
}

bool ActivationsPanel::loadInputFile(const QString& path)
{
    constexpr qint64 kMaxBytes = 1 << 20;  // the edit stays responsive; the CLI takes larger files
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) {
        setStatus(tr("%1: %2").arg(path, f.errorString()), true);
        return false;
    }
    if (f.size() > kMaxBytes) {
        setStatus(tr("%1: %2 bytes; the view takes up to 1 MiB of calibration input (quantlens-cli activations "
                     "--calib-text takes any size)")
                      .arg(path)
                      .arg(f.size()),
                  true);
        return false;
    }
    const QByteArray bytes = f.readAll();
    if (inputKind_->currentIndex() == RandomIds)
        inputKind_->setCurrentIndex(Text);
    inputEdit_->setPlainText(QString::fromUtf8(bytes));
    setStatus(tr("Loaded %1 (%2 bytes)").arg(path).arg(bytes.size()));
    return true;
}

bool ActivationsPanel::isStale() const { return result_ && result_->layer != layer_; }

void ActivationsPanel::run()
{
    if (running_ || !model_ || layer_.isEmpty())
        return;
    running_ = true;
    ++gen_;
    cancel_ = std::make_shared<std::atomic<bool>>(false);
    Job j;
    j.model = model_;
    j.layer = layer_;
    j.heads = heads_->value();
    j.input = Input(inputKind_->currentIndex());
    j.text = inputEdit_->toPlainText();
    j.plan = plan_;
    j.cancel = cancel_;
    QPointer<ActivationsPanel> self(this);
    const uint64_t gen = gen_;
    j.progress = [self, gen](int64_t done, int64_t total) {
        QMetaObject::invokeMethod(
            self.data(),
            [self, gen, done, total] {
                if (self && self->gen_ == gen) {
                    self->progress_->setRange(0, int(total));
                    self->progress_->setValue(int(done));
                }
            },
            Qt::QueuedConnection);
    };
    progress_->setRange(0, 0);
    setStatus(tr("Recording the inputs of %1…").arg(layer_));
    watcher_->setFuture(QtConcurrent::run(&pool_, [j] { return runJob(j); }));
    updateButtons();
}

void ActivationsPanel::cancel()
{
    if ((running_ || calibrating_) && cancel_)
        cancel_->store(true);
}

QString ActivationsPanel::statusText() const { return status_->text(); }

void ActivationsPanel::updateButtons()
{
    runButton_->setEnabled(!running_ && model_ && !layer_.isEmpty());
    cancelButton_->setEnabled(running_);
    // A method calibrates on the ids of the result shown: record first.
    const bool needsIds = method_->currentIndex() != 0;
    const bool haveIds = result_ && !isStale() && !result_->ids.empty();
    applyLayer_->setEnabled(!running_ && !layer_.isEmpty() && (!needsIds || haveIds));
    applyAll_->setEnabled(!running_ && model_ && (!needsIds || haveIds));
    const QString why = needsIds && !haveIds ? tr("Record this layer's activations first: the method calibrates on them")
                                              : QString();
    applyLayer_->setToolTip(why);
    applyAll_->setToolTip(why);
    useRange_->setEnabled(!running_ && haveIds);
    calibrateAll_->setEnabled(!running_ && haveIds);
    if (!running_) {
        progress_->setRange(0, 1);
        progress_->setValue(result_ ? 1 : 0);
    }
}

void ActivationsPanel::setStatus(const QString& s, bool error)
{
    status_->setText(s);
    status_->setStyleSheet(error ? QStringLiteral("color: #b00020;") : QString());
}

void ActivationsPanel::showResult()
{
    sq_->setData(result_ ? &result_->smooth : nullptr);
    sq_->setStaleNote(isStale() ? tr("stale: for %1").arg(result_->layer) : QString());
    showChannels();
    if (!result_) {
        histogram_->clearHistogram(tr("Record a layer's activations to see their histogram"));
        showAlpha();
        showGptq();
        return;
    }
    const ActivationsResult& r = *result_;
    const LayerActivationStats& s = r.stats;
    int outliers = 0;
    for (float a : s.absMax)
        outliers += a > kOutlier ? 1 : 0;
    // The recorder's range is a power of two around zero: show only the bins that hold values.
    Histogram shown = s.histogram;
    size_t first = 0, last = shown.counts.size();
    while (first < last && shown.counts[first] == 0)
        ++first;
    while (last > first && shown.counts[last - 1] == 0)
        --last;
    if (first < last) {
        const double w = shown.binWidth();
        shown.hi = shown.lo + double(last) * w;
        shown.lo = shown.lo + double(first) * w;
        shown.counts = std::vector<int64_t>(s.histogram.counts.begin() + std::ptrdiff_t(first),
                                            s.histogram.counts.begin() + std::ptrdiff_t(last));
    }
    histogram_->setHistogram(shown, r.inputStats, tr("input of %1").arg(r.layer));
    QVector<HistogramPlot::Marker> markers;
    const QColor colors[] = {QColor(127, 127, 127), QColor(148, 103, 189), QColor(44, 160, 44), QColor(214, 39, 40),
                             QColor(140, 86, 75)};
    for (size_t i = 0; i < r.ranges.size(); ++i)
        markers.push_back({QString::fromStdString(r.ranges[i].label), double(r.ranges[i].lo), double(r.ranges[i].hi),
                           colors[i % 5]});
    histogram_->setMarkers(markers);
    showRange();
    setStatus(tr("%1: %2 real tokens (%3), %4 input channels, %5 outlier channel(s) with |x| > 6, range [%6, %7]; "
                 "%8 s. %9")
                  .arg(r.layer)
                  .arg(r.tokens)
                  .arg(r.input)
                  .arg(s.inFeatures)
                  .arg(outliers)
                  .arg(double(s.overallMin()), 0, 'g', 4)
                  .arg(double(s.overallMax()), 0, 'g', 4)
                  .arg(r.seconds, 0, 'f', 2)
                  .arg(r.fold));
    showAlpha();
    showGptq();
}

MethodSpec ActivationsPanel::chosenMethod() const
{
    MethodSpec m;
    switch (method_->currentIndex()) {
    case 1: m.method = WeightMethod::Gptq; break;
    case 2:
        m.method = WeightMethod::Gptq;
        m.gptq.actOrder = true;
        break;
    case 3:
        m.method = WeightMethod::SmoothQuant;
        m.alpha = sq_->alpha();
        break;
    default: break;
    }
    return m;
}

void ActivationsPanel::choose(bool allLayers)
{
    CalibrationSource c;
    const MethodSpec m = chosenMethod();
    if (m.needsCalibration()) {
        if (!result_ || isStale())
            return;
        c.tokens = result_->ids;
    }
    emit methodChosen(allLayers ? QString() : layer_ + QStringLiteral(".weight"), m, c);
}

void ActivationsPanel::setPlan(const QuantPlan& plan)
{
    plan_ = plan;
    showPlanLine();
    showRange();
}

void ActivationsPanel::showRange()
{
    if (!result_ || isStale() || result_->ranges.empty())
        return;
    // The plan's range for this layer, else minmax (what static calibration starts from).
    const auto it = plan_.activationRanges.find(layer_.toStdString() + ".weight");
    if (it != plan_.activationRanges.end())
        histogram_->setClampRange(it->second.lo, it->second.hi);
    else
        histogram_->setClampRange(result_->ranges.front().lo, result_->ranges.front().hi);
}

void ActivationsPanel::showPlanLine()
{
    if (layer_.isEmpty()) {
        planLabel_->setText(tr("In the plan: select a linear layer"));
        return;
    }
    const std::string tensor = layer_.toStdString() + ".weight";
    const bool own = plan_.methods.count(tensor) > 0;
    const MethodSpec& m = plan_.methodFor(tensor);
    QString line = tr("In the plan: %1 (%2)").arg(QString::fromStdString(methodName(m)),
                                                   own ? tr("this layer's own") : tr("the model-wide default"));
    if (plan_.usesMethods())
        line += tr("; calibration: %1").arg(QString::fromStdString(plan_.calibration.describe()));
    line += tr("; activations %1").arg(QString::fromStdString(activationModeName(plan_.activations.mode)));
    if (auto r = plan_.activationRanges.find(tensor); r != plan_.activationRanges.end())
        line += tr(", static range [%1, %2]").arg(double(r->second.lo), 0, 'g', 5).arg(double(r->second.hi), 0, 'g', 5);
    else if (plan_.activations.mode == ActivationMode::Static)
        line += tr(", no static range for this layer yet");
    planLabel_->setText(line);
}

void ActivationsPanel::showGptq()
{
    errors_->graph(0)->data()->clear();
    errors_->graph(1)->data()->clear();
    if (!result_ || !result_->gptq) {
        gptqLabel_->setText(result_ && !result_->gptqWhy.isEmpty() ? tr("GPTQ: %1").arg(result_->gptqWhy) : QString());
        errors_->replot();
        return;
    }
    const ActivationsResult& r = *result_;
    for (int b = 0; b < kErrorBins; ++b) {
        const double x = -r.errorEdge + (double(b) + 0.5) * 2 * r.errorEdge / kErrorBins;
        errors_->graph(0)->addData(x, r.rtnErrors[size_t(b)]);
        errors_->graph(1)->addData(x, r.gptqErrors[size_t(b)]);
    }
    errors_->rescaleAxes();
    errors_->replot();
    gptqLabel_->setText(tr("GPTQ at the plan's spec (%1): layer output SQNR %2 dB vs %3 dB round to nearest, on these "
                           "inputs; weight SQNR %4 dB vs %5 dB (GPTQ trades weight error for output error)")
                            .arg(r.gptqSpec)
                            .arg(r.gptqOutputSqnrDb, 0, 'f', 2)
                            .arg(r.rtnOutputSqnrDb, 0, 'f', 2)
                            .arg(r.gptqWeightSqnrDb, 0, 'f', 2)
                            .arg(r.rtnWeightSqnrDb, 0, 'f', 2));
}

void ActivationsPanel::showAlpha()
{
    // Renaming a combo item re-lays the row out: once the drag ends is soon enough.
    if (!sq_->slider()->isSliderDown())
        method_->setItemText(3, tr("SmoothQuant at α = %1").arg(sq_->alpha(), 0, 'f', 2));
    if (smoothedChannels_->isChecked())
        showSmoothedChannels(true);
}

void ActivationsPanel::showSmoothedChannels(bool replotNow)
{
    channels_->graph(3)->data()->clear();
    channels_->graph(4)->data()->clear();
    const QString at = QString::number(sq_->alpha(), 'f', 2);
    channels_->graph(3)->setName(tr("activation absmax / s at α = %1").arg(at));
    channels_->graph(4)->setName(tr("weight column absmax · s at α = %1").arg(at));
    const SmoothedOperands* o = sq_->current();
    if (!o || !smoothedChannels_->isChecked())
        return;
    QVector<double> x(qsizetype(o->actAbsMax.size())), a(x.size()), w(x.size());
    for (qsizetype c = 0; c < x.size(); ++c) {
        x[c] = double(c);
        a[c] = double(o->actAbsMax[size_t(c)]);
        w[c] = double(o->weightAbsMax[size_t(c)]);
    }
    channels_->graph(3)->setData(x, a, true);
    channels_->graph(4)->setData(x, w, true);
    if (replotNow) {
        // The axes hold every α's maxima (showChannels), so only these two layers change.
        channels_->layer(QStringLiteral("smoothed"))->replot();
        channels_->layer(QStringLiteral("legend"))->replot();
    }
}

void ActivationsPanel::showSmoothQuantPage() { sections_->setCurrentWidget(sq_); }

void ActivationsPanel::showChannels()
{
    for (int g = 0; g < 5; ++g)
        channels_->graph(g)->data()->clear();
    const bool smoothed = smoothedChannels_->isChecked();
    // As recorded in full colour alone, faded behind the smoothed maxima beside them.
    // Opaque pale colours, not translucent ones: blending every segment costs a frame.
    channels_->graph(0)->setPen(QPen(smoothed ? QColor(177, 207, 228) : QColor(31, 119, 180)));
    channels_->graph(1)->setPen(QPen(smoothed ? QColor(255, 210, 171) : QColor(255, 127, 14)));
    channels_->graph(3)->setVisible(smoothed);
    channels_->graph(4)->setVisible(smoothed);
    if (smoothed) {
        channels_->graph(3)->addToLegend();
        channels_->graph(4)->addToLegend();
    } else {
        channels_->graph(3)->removeFromLegend();
        channels_->graph(4)->removeFromLegend();
    }
    for (QCPAxis* a : {channels_->yAxis, channels_->yAxis2}) {
        a->setScaleType(smoothed ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
        if (smoothed) {
            auto t = QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog);
            t->setLogBase(10);
            a->setTicker(t);
            a->setNumberFormat(QStringLiteral("gb"));
        } else {
            a->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
        }
    }
    channels_->yAxis->setLabel(smoothed ? tr("absmax (log)") : tr("activation absmax"));
    channels_->yAxis2->setLabel(smoothed ? tr("absmax (log)") : tr("weight column absmax"));
    if (!result_) {
        channels_->replot(QCustomPlot::rpQueuedReplot);
        return;
    }
    const ActivationsResult& r = *result_;
    const LayerActivationStats& s = r.stats;
    showSmoothedChannels(false);
    double lo = 1e300, hi = 0;
    auto span = [&](double v) {
        if (v > 0) {
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
    };
    for (size_t c = 0; c < s.absMax.size(); ++c) {
        channels_->graph(0)->addData(double(c), double(s.absMax[c]));
        channels_->graph(1)->addData(double(c), double(r.weightColumnAbsMax[c]));
        if (s.absMax[c] > kOutlier)
            channels_->graph(2)->addData(double(c), double(s.absMax[c]));
        span(s.absMax[c]);
        span(r.weightColumnAbsMax[c]);
    }
    if (smoothed)
        for (const SmoothedOperands& o : r.smooth.steps)
            for (size_t c = 0; c < o.actAbsMax.size(); ++c) {
                span(o.actAbsMax[c]);
                span(o.weightAbsMax[c]);
            }
    channels_->rescaleAxes();
    if (smoothed && hi > 0) {
        // One range over all four at every α, so a slider step leaves the axes as they are.
        channels_->yAxis->setRange(lo / 1.5, hi * 1.5);
        channels_->yAxis2->setRange(channels_->yAxis->range());
    }
    channels_->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace quantlens::ui
