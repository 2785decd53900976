#include "runpanel.h"

#include <QComboBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QRadioButton>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "qcp.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <atomic>
#include <random>

#include "alignedarray.h"
#include "formatting.h"
#include "io/npy.h"
#include "kernels/gemm.h"
#include "runner/dynamiclinear.h"
#include "runner/fp32linear.h"
#include "tasks/layerrun.h"
#include "tasks/methodprep.h"
#include "tasks/modelhints.h"
#include "workpool.h"

namespace quantlens::ui {

namespace {

constexpr int kRepeats = 5;
constexpr double kMinRepeatSeconds = 0.005;  // tiny layers run in microseconds: loop each repeat
constexpr int kBins = 61;
constexpr uint32_t kSeed = kLayerRunSeed;

struct RunJob {
    std::shared_ptr<const Model> model;  // keeps the layer's tensors alive
    LinearLayer layer;
    PlanDecision decision;
    ActivationSpec act;
    QuantPlan plan;  // for a GPTQ layer's integers (layerMethodWeights)
    int64_t tokens = 0;
    std::shared_ptr<const std::vector<float>> input;  // null: random
    std::shared_ptr<std::atomic<bool>> cancel;
};

QString planText(const QuantSpec& s, const ActivationSpec& a)
{
    const QString acts = a.mode == ActivationMode::None ? QStringLiteral("float activations (weight-only)")
                                                        : QStringLiteral("%1 activations").arg(qs(activationModeName(a.mode)));
    return QStringLiteral("%1, %2, %3-bit%4; %5")
        .arg(qs(schemeName(s.scheme)), qs(granularityName(s)))
        .arg(s.bits)
        .arg(s.isUnsigned ? QStringLiteral(" unsigned") : QString(), acts);
}

std::shared_ptr<const RunResult> runJob(const RunJob& j)
{
    auto r = std::make_shared<RunResult>();
    r->layer = qs(j.layer.prefix);
    r->tokens = j.tokens;
    r->in = j.layer.inFeatures;
    r->out = j.layer.outFeatures;
    r->weightSpec = j.decision.spec;
    r->act = j.act;
    // One BLAS thread, like the int8 kernel: OpenBLAS's own threads spin against the GUI's
    // and the other core, and made a 64x64 sgemm look 1000x slower than it is.
    setBlasThreads(1);
    LayerRunRequest req;
    req.tokens = j.tokens;
    if (j.input)
        req.input = *j.input;
    req.repeats = kRepeats;
    req.minRepeatSeconds = kMinRepeatSeconds;
    req.cancel = j.cancel.get();
    // A GPTQ layer runs with GPTQ's integers, as `quantlens-cli run --plan` does.
    std::optional<QuantizedTensor> given;
    if (j.plan.methodFor(j.layer.weight->name).method == WeightMethod::Gptq) {
        const std::string path = j.model->files.empty() ? std::string() : j.model->files.front();
        auto g = layerMethodWeights(j.model, path, modelHints(path).options, j.plan, j.layer.weight->name,
                                    [&j](double, const std::string&) { return !j.cancel->load(); });
        if (!g) {
            r->error = qs(g.error().oneLine());
            return r;
        }
        given = std::move(*g);
        r->method = qs(methodName(j.plan.methodFor(j.layer.weight->name)));
    }
    req.given = given ? &*given : nullptr;
    auto run = runLayerUnderPlan(j.layer, j.decision, j.act, req);
    if (!run) {
        r->error = qs(run.error().oneLine());
        return r;
    }
    if (run->cancelled) {
        r->error = QStringLiteral("cancelled");
        r->cancelled = true;
        return r;
    }
    r->fp32Seconds = run->fp32Seconds;
    r->int8Seconds = run->quantSeconds;
    r->isa = qs(run->isa);
    r->simulated = run->simulated;
    r->spec = planText(run->spec, j.act) + (r->method == QLatin1String("rtn") ? QString() : QStringLiteral(", ") + r->method);
    r->err = run->err;
    std::vector<float> diff(run->y.size());
    for (size_t i = 0; i < diff.size(); ++i)
        diff[i] = run->y[i] - run->yRef[i];
    const double lim = r->err.maxAbsError > 0 && std::isfinite(r->err.maxAbsError) ? r->err.maxAbsError : 1e-6;
    r->hist = computeHistogram(diff, -lim, lim, kBins);
    return r;
}

QLabel* valueLabel(QWidget* parent, const char* name)
{
    auto* l = new QLabel(QStringLiteral("–"), parent);
    l->setObjectName(QString::fromLatin1(name));
    l->setTextInteractionFlags(Qt::TextSelectableByMouse);
    return l;
}

}  // namespace

RunPanel::RunPanel(QWidget* parent)
    : QWidget(parent)
{
    auto* v = new QVBoxLayout(this);
    v->setContentsMargins(8, 8, 8, 8);
    layerLabel_ = new QLabel(tr("Select a linear layer"), this);
    layerLabel_->setObjectName(QStringLiteral("runLayer"));
    layerLabel_->setWordWrap(true);
    v->addWidget(layerLabel_);

    auto* form = new QFormLayout;
    tokens_ = new QSpinBox(this);
    tokens_->setObjectName(QStringLiteral("runTokens"));
    tokens_->setRange(1, 65536);
    tokens_->setValue(128);
    form->addRow(tr("Tokens (M):"), tokens_);
    act_ = new QComboBox(this);
    act_->setObjectName(QStringLiteral("runActivation"));
    act_->addItem(tr("dynamic per-tensor (PyTorch quantize_dynamic)"));
    act_->addItem(tr("dynamic per-token (one scale per row)"));
    act_->addItem(tr("none: weight-only (llama.cpp, W4A16)"));
    act_->addItem(tr("static: each layer's calibrated range (Activations tab)"));
    act_->setToolTip(tr("The plan's activations, for every layer (model-wide)"));
    form->addRow(tr("Activations (all layers):"), act_);
    weights_ = new QComboBox(this);
    weights_->setObjectName(QStringLiteral("runWeights"));
    weights_->addItem(tr("per-tensor (PyTorch quantize_dynamic)"));
    weights_->addItem(tr("per-channel (per_channel_dynamic_qconfig)"));
    weights_->setToolTip(tr("The plan's model-wide weight granularity; a layer tuned in the Tensor tab keeps its own"));
    form->addRow(tr("Weights (default):"), weights_);
    planLabel_ = new QLabel(this);
    planLabel_->setObjectName(QStringLiteral("runPlan"));
    planLabel_->setWordWrap(true);
    form->addRow(tr("This layer runs:"), planLabel_);
    connect(act_, qOverload<int>(&QComboBox::currentIndexChanged), this, &RunPanel::onBoxesChanged);
    connect(weights_, qOverload<int>(&QComboBox::currentIndexChanged), this, &RunPanel::onBoxesChanged);
    auto* inputRow = new QHBoxLayout;
    randomInput_ = new QRadioButton(tr("Random (N(0,1), seed %1)").arg(kSeed), this);
    randomInput_->setChecked(true);
    fileInput_ = new QRadioButton(tr("File"), this);
    fileInput_->setEnabled(false);  // chosen by loading one
    loadButton_ = new QPushButton(tr("Load .npy…"), this);
    inputRow->addWidget(randomInput_);
    inputRow->addWidget(fileInput_);
    inputRow->addWidget(loadButton_);
    inputRow->addStretch(1);
    form->addRow(tr("Input:"), inputRow);
    inputLabel_ = new QLabel(this);
    inputLabel_->setWordWrap(true);
    form->addRow(QString(), inputLabel_);
    v->addLayout(form);

    runButton_ = new QPushButton(tr("Run"), this);
    runButton_->setObjectName(QStringLiteral("runButton"));
    runButton_->setEnabled(false);
    auto* runRow = new QHBoxLayout;
    runRow->addWidget(runButton_);
    cancelButton_ = new QPushButton(tr("Cancel"), this);
    cancelButton_->setObjectName(QStringLiteral("runCancel"));
    cancelButton_->setEnabled(false);
    runRow->addWidget(cancelButton_);
    status_ = valueLabel(this, "runStatus");
    status_->setText(QString());
    runRow->addWidget(status_, 1);
    v->addLayout(runRow);

    auto* grid = new QGridLayout;
    fp32_ = valueLabel(this, "runFp32");
    int8_ = valueLabel(this, "runInt8");
    speedup_ = valueLabel(this, "runSpeedup");
    isa_ = valueLabel(this, "runIsa");
    sqnr_ = valueLabel(this, "runSqnr");
    maxAbs_ = valueLabel(this, "runMaxAbs");
    const std::pair<QString, QLabel*> rows[] = {
        {tr("fp32 time (OpenBLAS sgemm, 1 thread, median of %1):").arg(kRepeats), fp32_},
        {tr("int8 time (dynamic, median of %1):").arg(kRepeats), int8_},
        {tr("Speed-up:"), speedup_},
        {tr("int8 kernel:"), isa_},
        {tr("Output SQNR (int8 vs fp32):"), sqnr_},
        {tr("Max abs error:"), maxAbs_},
    };
    int row = 0;
    for (const auto& [text, l] : rows) {
        grid->addWidget(new QLabel(text, this), row, 0);
        grid->addWidget(l, row, 1);
        ++row;
    }
    grid->setColumnStretch(1, 1);
    v->addLayout(grid);

    plot_ = new QCustomPlot(this);
    plot_->setObjectName(QStringLiteral("runErrorPlot"));
    plot_->setMinimumHeight(220);
    plot_->xAxis->setLabel(tr("output error y_int8 − y_fp32"));
    plot_->yAxis->setLabel(tr("count"));
    bars_ = new QCPBars(plot_->xAxis, plot_->yAxis);
    bars_->setWidthType(QCPBars::wtPlotCoords);
    bars_->setPen(QPen(QColor(0x2c, 0x6f, 0xbb)));
    bars_->setBrush(QColor(0x2c, 0x6f, 0xbb, 150));
    // Before the first run the axes alone read like a broken plot: say what will be there.
    hint_ = new QCPItemText(plot_);
    hint_->position->setType(QCPItemPosition::ptAxisRectRatio);
    hint_->position->setCoords(0.5, 0.5);
    hint_->setText(tr("Run times this layer in float32 and in int8 on the same input;\n"
                      "the histogram of the int8 output's error appears here."));
    hint_->setColor(palette().color(QPalette::Disabled, QPalette::WindowText));
    hint_->setBrush(Qt::white);
    hint_->setPadding(QMargins(6, 4, 6, 4));
    v->addWidget(plot_, 1);

    watcher_ = new QFutureWatcher<std::shared_ptr<const RunResult>>(this);
    // Connected once, before any setFuture (QFuture::then was unreliable with Qt 6.4 here).
    connect(watcher_, &QFutureWatcherBase::finished, this, [this] {
        const auto r = watcher_->result();
        running_ = false;
        if (watcher_->property("gen").toULongLong() == gen_) {
            if (r->cancelled)
                setStatus(tr("cancelled"));  // the previous figures stay
            else
                applyResult(r);
        }
        runButton_->setEnabled(haveLayer_);
        cancelButton_->setEnabled(false);
        emit finished();
    });
    connect(runButton_, &QPushButton::clicked, this, &RunPanel::run);
    connect(cancelButton_, &QPushButton::clicked, this, &RunPanel::cancel);
    connect(randomInput_, &QRadioButton::toggled, this, [this](bool on) {
        if (on)
            useRandomInput();
    });
    connect(loadButton_, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Input activations"), QString(), tr("NumPy arrays (*.npy)"));
        if (!path.isEmpty())
            loadInput(path);
    });
    useRandomInput();
}

RunPanel::~RunPanel()
{
    // The job holds its own copies and the model; wait so it does not outlive the Qt objects.
    watcher_->waitForFinished();
}

QLabel* RunPanel::label(const QString& key) const
{
    if (key == QLatin1String("fp32"))
        return fp32_;
    if (key == QLatin1String("int8"))
        return int8_;
    if (key == QLatin1String("speedup"))
        return speedup_;
    if (key == QLatin1String("isa"))
        return isa_;
    if (key == QLatin1String("sqnr"))
        return sqnr_;
    if (key == QLatin1String("maxabs"))
        return maxAbs_;
    if (key == QLatin1String("status"))
        return status_;
    if (key == QLatin1String("layer"))
        return layerLabel_;
    return nullptr;
}

void RunPanel::setStatus(const QString& s, bool error)
{
    status_->setText(s);
    status_->setStyleSheet(error ? QStringLiteral("color: #c0392b;") : QString());
}

void RunPanel::setSelection(std::shared_ptr<const Model> model, int tensorIndex)
{
    if (model != model_) {
        model_ = std::move(model);
        layers_ = model_ ? findLinearLayers(*model_) : std::vector<LinearLayer>{};
    }
    haveLayer_ = false;
    if (model_ && tensorIndex >= 0 && size_t(tensorIndex) < model_->tensors.size()) {
        const Tensor* t = &model_->tensors[size_t(tensorIndex)];
        for (const LinearLayer& l : layers_)
            if (l.weight == t || l.bias == t) {
                layer_ = l;
                haveLayer_ = true;
                break;
            }
    }
    ++gen_;  // a result still running belongs to the previous selection
    updateLayerText();
    showPlanForLayer();
    runButton_->setEnabled(haveLayer_ && !running_);
}

void RunPanel::setPlan(const QuantPlan& plan)
{
    const bool wasStale = isStale();
    plan_ = plan;
    {
        const QSignalBlocker a(act_), w(weights_);
        act_->setCurrentIndex(plan_.activations.mode == ActivationMode::DynamicPerToken ? 1
                              : plan_.activations.mode == ActivationMode::None          ? 2
                              : plan_.activations.mode == ActivationMode::Static        ? 3
                                                                                          : 0);
        weights_->setCurrentIndex(plan_.defaultSpec.granularity == Granularity::PerChannel ? 1 : 0);
    }
    showPlanForLayer();
    if (!wasStale && isStale())
        setStatus(tr("Stale: the plan changed since this run (%1). Run again to see the current plan.").arg(result_->spec),
                  true);
}

bool RunPanel::isStale() const
{
    if (!result_ || !result_->error.isEmpty() || !haveLayer_ || qs(layer_.prefix) != result_->layer)
        return false;
    const PlanDecision d = plan_.decide(*layer_.weight);
    return !d.quantize || d.spec != result_->weightSpec || !(plan_.activationsFor(layer_.weight->name) == result_->act) ||
           qs(methodName(plan_.methodFor(layer_.weight->name))) != result_->method;
}

void RunPanel::onBoxesChanged()
{
    plan_.activations.mode = act_->currentIndex() == 1   ? ActivationMode::DynamicPerToken
                             : act_->currentIndex() == 2 ? ActivationMode::None
                             : act_->currentIndex() == 3 ? ActivationMode::Static
                                                         : ActivationMode::DynamicPerTensor;
    plan_.defaultSpec.granularity = weights_->currentIndex() == 1 ? Granularity::PerChannel : Granularity::PerTensor;
    if (plan_.defaultSpec.granularity != Granularity::PerGroup)
        plan_.defaultSpec.groupSize = 0;
    showPlanForLayer();
    emit planEdited(plan_);
}

void RunPanel::showPlanForLayer()
{
    if (!haveLayer_ || !layer_.weight) {
        planLabel_->setText(QStringLiteral("–"));
        return;
    }
    const PlanDecision d = plan_.decide(*layer_.weight);
    if (!d.quantize) {
        planLabel_->setText(tr("float32 (%1)").arg(qs(d.reason)));
        return;
    }
    planLabel_->setText(tr("%1%2 — %3")
                            .arg(planText(d.spec, plan_.activations))
                            .arg(d.tuned ? tr(" (tuned on this layer)") : tr(" (model-wide default)"))
                            .arg(runsOnInt8Kernels(d.spec, plan_.activations)
                                     ? tr("int8 kernels")
                                     : tr("simulated: dequantized weights through the float GEMM")));
}

void RunPanel::updateLayerText()
{
    if (!haveLayer_) {
        layerLabel_->setText(model_ ? tr("The selected tensor is not part of a linear layer: nothing to run.")
                                    : tr("Select a linear layer"));
        return;
    }
    layerLabel_->setText(tr("<b>%1</b>: %2 → %3 features%4")
                             .arg(qs(layer_.prefix).toHtmlEscaped())
                             .arg(layer_.inFeatures)
                             .arg(layer_.outFeatures)
                             .arg(layer_.transposed() ? tr(" (stored [in, out])") : QString()));
    if (input_ && inputCols_ != layer_.inFeatures)
        setStatus(tr("The loaded input has %1 columns; this layer takes %2").arg(inputCols_).arg(layer_.inFeatures), true);
    else
        setStatus(QString());
}

void RunPanel::useRandomInput()
{
    input_.reset();
    inputPath_.clear();
    inputRows_ = inputCols_ = 0;
    tokens_->setEnabled(true);
    if (!randomInput_->isChecked())
        randomInput_->setChecked(true);
    fileInput_->setEnabled(false);
    inputLabel_->setText(tr("A fresh [M, in_features] float32 matrix, the same for every run."));
}

bool RunPanel::loadInput(const QString& path)
{
    auto m = readNpy(path.toStdString());
    QString why;
    if (!m) {
        why = qs(m.error().oneLine());
    } else if (m->tensors.size() != 1) {
        why = tr("%1: expected one array").arg(path);
    } else {
        const Tensor& t = m->tensors.front();
        if (t.dtype != DType::F32 && t.dtype != DType::F64 && t.dtype != DType::F16 && t.dtype != DType::BF16)
            why = tr("%1: the input must be a float array").arg(path);
        else if (t.rank() != 2 || t.shape[0] < 1)
            why = tr("%1: shape %2, expected [M, in_features]").arg(path, formatShape(t.shape));
        else if (haveLayer_ && t.shape[1] != layer_.inFeatures)
            why = tr("%1: shape %2 does not fit the layer: expected [M, %3]").arg(path, formatShape(t.shape)).arg(layer_.inFeatures);
        else if (t.shape[0] > tokens_->maximum())
            why = tr("%1: %2 tokens, at most %3").arg(path).arg(t.shape[0]).arg(tokens_->maximum());
        else {
            auto v = t.toFloat();
            if (!v)
                why = qs(v.error().oneLine());
            else if (!std::all_of(v->begin(), v->end(), [](float x) { return std::isfinite(x); }))
                why = tr("%1: the input holds NaN or infinity").arg(path);
            else {
                input_ = std::make_shared<const std::vector<float>>(std::move(v.value()));
                inputRows_ = t.shape[0];
                inputCols_ = t.shape[1];
            }
        }
    }
    if (!why.isEmpty()) {
        setStatus(why, true);
        return false;
    }
    inputPath_ = path;
    fileInput_->setEnabled(true);
    fileInput_->setChecked(true);
    tokens_->setValue(int(inputRows_));
    tokens_->setEnabled(false);  // M is the file's
    inputLabel_->setText(tr("%1 [%2, %3]").arg(path).arg(inputRows_).arg(inputCols_));
    setStatus(QString());
    return true;
}

void RunPanel::run()
{
    if (!haveLayer_ || running_)
        return;
    RunJob j;
    j.model = model_;
    j.layer = layer_;
    j.decision = plan_.decide(*layer_.weight);
    j.act = plan_.activationsFor(layer_.weight->name);
    j.plan = plan_;
    if (!j.decision.quantize) {
        setStatus(tr("The plan leaves this layer in float32 (%1): nothing to compare").arg(qs(j.decision.reason)), true);
        return;
    }
    if (input_) {
        if (inputCols_ != layer_.inFeatures) {
            setStatus(tr("The loaded input has %1 columns; this layer takes %2").arg(inputCols_).arg(layer_.inFeatures), true);
            return;
        }
        j.input = input_;
        j.tokens = inputRows_;
    } else {
        j.tokens = tokens_->value();
    }
    running_ = true;
    runButton_->setEnabled(false);
    cancel_ = std::make_shared<std::atomic<bool>>(false);
    j.cancel = cancel_;
    cancelButton_->setEnabled(true);
    setStatus(tr("Running %1 tokens…").arg(j.tokens));
    watcher_->setProperty("gen", QVariant::fromValue<qulonglong>(gen_));
    watcher_->setFuture(QtConcurrent::run(workPool(), [j] { return runJob(j); }));
}

void RunPanel::cancel()
{
    if (running_ && cancel_)
        cancel_->store(true);
}

void RunPanel::applyResult(std::shared_ptr<const RunResult> r)
{
    result_ = r;
    if (!r->error.isEmpty()) {
        setStatus(r->error, true);
        return;
    }
    setStatus(tr("%1, %2 tokens, %3 → %4: %5%6")
                  .arg(r->layer)
                  .arg(r->tokens)
                  .arg(r->in)
                  .arg(r->out)
                  .arg(r->spec)
                  .arg(r->simulated ? tr(" (simulated: no int8 kernel for this plan)") : QString()));
    fp32_->setText(tr("%1 µs").arg(r->fp32Seconds * 1e6, 0, 'f', 1));
    int8_->setText(tr("%1 µs").arg(r->int8Seconds * 1e6, 0, 'f', 1));
    speedup_->setText(tr("%1×").arg(r->speedup(), 0, 'f', 2));
    isa_->setText(r->isa);
    sqnr_->setText(formatDb(r->err.sqnrDb));
    maxAbs_->setText(formatNumber(r->err.maxAbsError));

    QVector<double> keys, values;
    for (size_t i = 0; i < r->hist.counts.size(); ++i) {
        keys.push_back(r->hist.binCenter(i));
        values.push_back(double(r->hist.counts[i]));
    }
    hint_->setVisible(false);
    bars_->setWidth(r->hist.binWidth());
    bars_->setData(keys, values, true);
    plot_->xAxis->setRange(r->hist.lo, r->hist.hi);
    const double top = values.isEmpty() ? 1.0 : *std::max_element(values.begin(), values.end());
    plot_->yAxis->setRange(0, top * 1.05 + 1);
    plot_->replot();
}

}  // namespace quantlens::ui
