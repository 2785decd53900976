#include "exportdialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMetaObject>
#include <QPointer>
#include <QProgressBar>
#include <QPushButton>
#include <QRadioButton>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "formatting.h"
#include "layers.h"
#include "workpool.h"

namespace quantlens::ui {

namespace {

struct FormatEntry {
    ExportFormat format;
    const char* label;
    const char* suffix;  // "" = a folder
};
const FormatEntry kFormats[] = {
    {ExportFormat::Hdf5, "HDF5 (int8 + scales per tensor, h5py/h5dump)", ".h5"},
    {ExportFormat::SafetensorsInt8, "safetensors, int8 + scale + zero point", ".safetensors"},
    {ExportFormat::SafetensorsFakeQuant, "safetensors, fake-quant float32 (drop-in model)", "-fakequant.safetensors"},
    {ExportFormat::NpyFolder, "folder of .npy + manifest.json", ""},
    {ExportFormat::OnnxQdq, "ONNX QDQ for ONNX Runtime (from an ONNX model)", ".onnx"},
    {ExportFormat::CompressedTensors, "compressed-tensors folder for vLLM (from a Hugging Face checkpoint)", "-ct"},
    // Last, so the indexes above stay those of the combo box when it is left out.
    {ExportFormat::Gguf, "GGUF for llama.cpp (whole model, ggml types)", ".gguf"},
};

const CalibMethod kCalibs[] = {CalibMethod::MinMax, CalibMethod::Percentile, CalibMethod::Mse, CalibMethod::Entropy,
                               CalibMethod::HistogramL2};

QString calibLabel(CalibMethod m)
{
    switch (m) {
    case CalibMethod::MinMax: return QObject::tr("min/max");
    case CalibMethod::Percentile: return QObject::tr("percentile 99.99");
    case CalibMethod::Mse: return QObject::tr("MSE-optimal");
    case CalibMethod::Entropy: return QObject::tr("entropy (KL)");
    case CalibMethod::HistogramL2: return QObject::tr("histogram L2");
    case CalibMethod::Manual: return QObject::tr("manual");
    }
    return {};
}

}  // namespace

ExportDialog::ExportDialog(std::shared_ptr<const Model> model, const Session& session, const QString& modelPath,
                           QWidget* parent)
    : QDialog(parent), model_(std::move(model)), session_(session), modelPath_(modelPath)
{
    setWindowTitle(tr("Export quantized layers"));
    setObjectName(QStringLiteral("exportDialog"));
    auto* v = new QVBoxLayout(this);

    const size_t linearCount = model_ ? findQuantLayers(*model_).size() : 0;  // linear, conv and recurrent
    auto* which = new QGroupBox(tr("Layers"), this);
    auto* wl = new QVBoxLayout(which);
    allLinear_ = new QRadioButton(tr("All layers (%1)").arg(linearCount), which);
    selected_ = new QRadioButton(tr("Tensors ticked in the tree (%1)").arg(session_.exportSelection.size()), which);
    selected_->setEnabled(!session_.exportSelection.empty());
    (session_.exportSelection.empty() ? allLinear_ : selected_)->setChecked(true);
    useTuning_ = new QCheckBox(tr("Use my per-layer tuning (%1 layers with their own range or scheme)")
                                   .arg(session_.overrides.size()),
                               which);
    useTuning_->setChecked(true);
    useTuning_->setEnabled(!session_.overrides.empty());
    keepFloat_ = new QCheckBox(tr("Leave the %1 layers marked \"keep float32\" unquantized").arg(session_.keepFloat.size()),
                               which);
    keepFloat_->setChecked(true);
    keepFloat_->setEnabled(!session_.keepFloat.empty());
    for (QWidget* w : {static_cast<QWidget*>(allLinear_), static_cast<QWidget*>(selected_),
                       static_cast<QWidget*>(useTuning_), static_cast<QWidget*>(keepFloat_)})
        wl->addWidget(w);
    v->addWidget(which);

    auto* how = new QGroupBox(tr("Quantization (every layer without its own tuning)"), this);
    auto* hf = new QFormLayout(how);
    scheme_ = new QComboBox(how);
    for (Scheme s : allSchemes())  // q4_0 ... f32 are written only as GGUF (the export says so otherwise)
        scheme_->addItem(qs(schemeName(s)), int(s));
    if (model_ && model_->format == "gguf")  // llama-quantize's mixes: every tensor's type, as it picks them
        for (GgufMix m : allGgufMixes())
            scheme_->addItem(tr("%1 (llama-quantize mix)").arg(qs(ggufMixName(m))), kMixData + int(m));
    granularity_ = new QComboBox(how);
    granularity_->addItem(tr("per tensor"), 0);
    granularity_->addItem(tr("per channel"), -1);
    for (int g : {32, 64, 128})
        granularity_->addItem(tr("per group of %1").arg(g), g);
    calib_ = new QComboBox(how);
    for (CalibMethod m : kCalibs)
        calib_->addItem(calibLabel(m), int(m));
    hf->addRow(tr("Scheme"), scheme_);
    hf->addRow(tr("Granularity"), granularity_);
    hf->addRow(tr("Calibrator"), calib_);
    v->addWidget(how);

    const QuantSpec& d = session_.defaultSpec;
    scheme_->setCurrentIndex(std::max(0, scheme_->findData(int(d.scheme))));
    const int g = d.granularity == Granularity::PerTensor ? 0 : d.granularity == Granularity::PerChannel ? -1 : int(d.groupSize);
    granularity_->setCurrentIndex(std::max(0, granularity_->findData(g)));
    // A manual range belongs to one tensor; model-wide it means the scheme's own min/max.
    calib_->setCurrentIndex(std::max(0, calib_->findData(int(d.calib == CalibMethod::Manual ? CalibMethod::MinMax : d.calib))));

    auto* where = new QGroupBox(tr("Output"), this);
    auto* of = new QFormLayout(where);
    format_ = new QComboBox(where);
    for (const FormatEntry& f : kFormats)
        if (f.format != ExportFormat::Gguf || (model_ && model_->format == "gguf"))  // GGUF only from GGUF
            format_->addItem(tr(f.label), int(f.format));
    auto* pathRow = new QHBoxLayout;
    path_ = new QLineEdit(where);
    path_->setObjectName(QStringLiteral("exportPath"));
    browse_ = new QPushButton(tr("Browse…"), where);
    pathRow->addWidget(path_, 1);
    pathRow->addWidget(browse_);
    of->addRow(tr("Format"), format_);
    of->addRow(tr("File or folder"), pathRow);
    v->addWidget(where);

    summary_ = new QLabel(this);
    summary_->setObjectName(QStringLiteral("exportSummary"));
    summary_->setWordWrap(true);
    summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    v->addWidget(summary_);
    progress_ = new QProgressBar(this);
    progress_->setRange(0, 1000);
    progress_->setTextVisible(true);
    progress_->hide();
    v->addWidget(progress_);
    status_ = new QLabel(this);
    status_->setObjectName(QStringLiteral("exportStatus"));
    status_->setWordWrap(true);
    status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    v->addWidget(status_);

    buttons_ = new QDialogButtonBox(this);
    exportButton_ = buttons_->addButton(tr("Export"), QDialogButtonBox::AcceptRole);
    cancelButton_ = buttons_->addButton(tr("Cancel export"), QDialogButtonBox::ActionRole);
    cancelButton_->setEnabled(false);
    QPushButton* close = buttons_->addButton(QDialogButtonBox::Close);
    v->addWidget(buttons_);

    watcher_ = new QFutureWatcher<std::shared_ptr<const ExportOutcome>>(this);
    connect(watcher_, &QFutureWatcherBase::finished, this, [this] {
        outcome_ = watcher_->result();
        setRunning(false);
        const ExportOutcome& o = *outcome_;
        if (o.cancelled) {
            status_->setText(tr("Cancelled; nothing was written under %1.").arg(o.path));
        } else if (!o.error.isEmpty()) {
            status_->setText(tr("<b>Export failed:</b> %1").arg(o.error.toHtmlEscaped()));
        } else {
            QString text = tr("Wrote %1 (%2).").arg(o.path.toHtmlEscaped(), formatBytes(o.bytes));
            for (const QString& w : o.warnings)
                text += QStringLiteral("<br>") + tr("warning: %1").arg(w.toHtmlEscaped());
            status_->setText(text);
        }
        emit exportFinished(!o.cancelled && o.error.isEmpty());
    });

    connect(exportButton_, &QPushButton::clicked, this, &ExportDialog::startExport);
    connect(cancelButton_, &QPushButton::clicked, this, &ExportDialog::cancelExport);
    connect(close, &QPushButton::clicked, this, &ExportDialog::reject);
    connect(browse_, &QPushButton::clicked, this, &ExportDialog::browse);
    connect(path_, &QLineEdit::textEdited, this, [this] { pathEdited_ = true; });
    connect(format_, &QComboBox::currentIndexChanged, this, [this] {
        suggestPath();
        updateSummary();
    });
    for (QComboBox* c : {scheme_, granularity_, calib_})
        connect(c, &QComboBox::currentIndexChanged, this, &ExportDialog::updateSummary);
    for (QRadioButton* r : {allLinear_, selected_})
        connect(r, &QRadioButton::toggled, this, &ExportDialog::updateSummary);
    for (QCheckBox* c : {useTuning_, keepFloat_})
        connect(c, &QCheckBox::toggled, this, &ExportDialog::updateSummary);

    suggestPath();
    updateSummary();
    resize(620, sizeHint().height());
}

ExportDialog::~ExportDialog()
{
    if (cancel_)
        cancel_->store(true);
    watcher_->waitForFinished();
}

QuantSpec ExportDialog::chosenSpec() const
{
    QuantSpec s = session_.defaultSpec;
    s.scheme = chosenMix() ? Scheme::Q4_K : Scheme(scheme_->currentData().toInt());  // a mix sets each type itself
    const int g = granularity_->currentData().toInt();
    s.granularity = g == 0 ? Granularity::PerTensor : g < 0 ? Granularity::PerChannel : Granularity::PerGroup;
    s.groupSize = g > 0 ? g : 0;
    if (s.scheme == Scheme::Q8_0) {
        // ggml's blocks are 32 values along a row by definition.
        s.granularity = Granularity::PerGroup;
        s.groupSize = 32;
        s.isUnsigned = false;
        s.bits = 8;
    } else if (isGgmlBlockScheme(s.scheme)) {
        s.granularity = Granularity::PerTensor;  // ggml's blocks decide
        s.isUnsigned = false;
        s.reduceRange = false;
        s.bits = 8;
    }
    s.calib = CalibMethod(calib_->currentData().toInt());
    return s;
}

std::optional<GgufMix> ExportDialog::chosenMix() const
{
    const int d = scheme_->currentData().toInt();
    return d >= kMixData ? std::optional<GgufMix>(GgufMix(d - kMixData)) : std::nullopt;
}

ExportPlan ExportDialog::plan() const
{
    if (!model_)
        return {};
    Session s = session_;
    s.defaultSpec = chosenSpec();
    ExportPlanOptions o;
    if (chosenMix() && format() != ExportFormat::Gguf)
        return {};  // a mix is GGUF types only: the summary says so
    o.mix = chosenMix();
    o.choice = selected_->isChecked() ? ExportChoice::Selected : ExportChoice::AllLayers;
    o.useOverrides = useTuning_->isChecked();
    o.honourKeepFloat = keepFloat_->isChecked();
    return planExport(*model_, s, o);
}

ExportSizes ExportDialog::sizes() const { return model_ ? estimateExportSizes(*model_, plan()) : ExportSizes{}; }

ExportFormat ExportDialog::format() const { return ExportFormat(format_->currentData().toInt()); }

QString ExportDialog::outputPath() const { return path_->text().trimmed(); }

void ExportDialog::setOutputPath(const QString& path)
{
    path_->setText(path);
    pathEdited_ = true;
}

void ExportDialog::suggestPath()
{
    if (pathEdited_)
        return;
    QString dir = QDir::homePath(), base = QStringLiteral("demo");
    if (!modelPath_.isEmpty()) {
        const QFileInfo fi(modelPath_);
        dir = fi.absolutePath();
        base = fi.completeBaseName();
    }
    const FormatEntry& f = kFormats[std::max(0, format_->currentIndex())];
    const QString suffix = QString::fromLatin1(f.suffix);
    path_->setText(QDir(dir).filePath(base + QStringLiteral("-int8") + (suffix.isEmpty() ? QStringLiteral("-npy") : suffix)));
}

void ExportDialog::browse()
{
    QString chosen;
    if (format() == ExportFormat::NpyFolder || format() == ExportFormat::CompressedTensors)
        chosen = QFileDialog::getExistingDirectory(this, tr("Export into folder"), QFileInfo(outputPath()).absolutePath());
    else
        chosen = QFileDialog::getSaveFileName(this, tr("Export to"), outputPath());
    if (!chosen.isEmpty())
        setOutputPath(chosen);
}

void ExportDialog::updateSummary()
{
    const ExportPlan p = plan();
    const ExportSizes s = model_ ? estimateExportSizes(*model_, p) : ExportSizes{};
    int tuned = 0;
    for (const ExportPlanItem& it : p.items)
        tuned += it.tuned ? 1 : 0;
    QString text;
    if (chosenMix() && format() != ExportFormat::Gguf) {
        text = tr("<b>%1 is llama-quantize's type mix</b>: choose the GGUF format.").arg(qs(ggufMixName(*chosenMix())));
    } else if (p.items.empty()) {
        text = tr("<b>Nothing to export</b> with these choices.");
    } else {
        text = tr("<b>%1 tensors</b> (%2 with their own tuning): %3 → %4 (%5×).<br>Whole model: %6 → %7.")
                   .arg(p.items.size())
                   .arg(tuned)
                   .arg(formatBytes(s.quantizedBefore), formatBytes(s.quantizedAfter))
                   .arg(s.ratio(), 0, 'f', 2)
                   .arg(formatBytes(s.modelBefore), formatBytes(s.modelAfter));
    }
    if (p.mix)
        text += tr("<br>Each tensor's type as llama-quantize's %1 picks it (general.file_type %2); tuned layers keep "
                   "their spec, mapped to the nearest ggml type.")
                    .arg(qs(ggufMixName(*p.mix)))
                    .arg(ggufMixFileType(*p.mix));
    if (!p.keptFloat.empty())
        text += tr("<br>Kept in float32: %1 layers.").arg(p.keptFloat.size());
    if (!p.skipped.empty())
        text += tr("<br>Skipped (not decodable or not in the model): %1.").arg(p.skipped.size());
    summary_->setText(text);
    exportButton_->setEnabled(!running_ && !p.items.empty());
}

void ExportDialog::setRunning(bool on)
{
    running_ = on;
    progress_->setVisible(on);
    cancelButton_->setEnabled(on);
    for (QWidget* w : {static_cast<QWidget*>(allLinear_), static_cast<QWidget*>(selected_),
                       static_cast<QWidget*>(useTuning_), static_cast<QWidget*>(keepFloat_),
                       static_cast<QWidget*>(scheme_), static_cast<QWidget*>(granularity_),
                       static_cast<QWidget*>(calib_), static_cast<QWidget*>(format_), static_cast<QWidget*>(path_),
                       static_cast<QWidget*>(browse_)})
        w->setEnabled(!on);
    selected_->setEnabled(!on && !session_.exportSelection.empty());
    useTuning_->setEnabled(!on && !session_.overrides.empty());
    keepFloat_->setEnabled(!on && !session_.keepFloat.empty());
    exportButton_->setEnabled(!on && !plan().items.empty());
}

void ExportDialog::startExport()
{
    if (running_ || !model_)
        return;
    const QString path = outputPath();
    if (path.isEmpty()) {
        status_->setText(tr("Choose a file or folder to export to."));
        return;
    }
    const ExportPlan p = plan();
    if (p.items.empty())
        return;
    ExportOptions opts;
    opts.format = format();
    opts.outPath = QFile::encodeName(path).toStdString();
    cancel_ = std::make_shared<std::atomic<bool>>(false);
    outcome_.reset();
    status_->setText(tr("Exporting…"));
    progress_->setValue(0);
    setRunning(true);
    const std::shared_ptr<const Model> model = model_;
    const std::shared_ptr<std::atomic<bool>> cancel = cancel_;
    QPointer<QProgressBar> bar = progress_;
    watcher_->setFuture(QtConcurrent::run(workPool(), [model, p, opts, cancel, bar, path] {
        auto out = std::make_shared<ExportOutcome>();
        out->path = path;
        auto r = runExportPlan(*model, p, opts, [cancel, bar](double f, const std::string& what) {
            const int v = int(f * 1000.0);
            const QString text = QString::fromStdString(what);
            QMetaObject::invokeMethod(
                bar, [bar, v, text] {
                    if (bar) {
                        bar->setValue(v);
                        bar->setFormat(text.size() > 60 ? QStringLiteral("…") + text.right(59) : text);
                    }
                },
                Qt::QueuedConnection);
            return !cancel->load();
        });
        if (r) {
            out->bytes = r->bytesWritten;
            for (const std::string& f : r->files)
                out->files << QString::fromStdString(f);
            for (const std::string& w : r->warnings)
                out->warnings << QString::fromStdString(w);
        } else if (r.error().code == "cancelled") {
            out->cancelled = true;
        } else {
            out->error = QString::fromStdString(r.error().oneLine());
        }
        return std::shared_ptr<const ExportOutcome>(out);
    }));
}

void ExportDialog::cancelExport()
{
    if (cancel_)
        cancel_->store(true);
}

void ExportDialog::reject()
{
    if (running_) {
        cancelExport();
        return;  // the dialog stays until the job has stopped and said so
    }
    QDialog::reject();
}

}  // namespace quantlens::ui
