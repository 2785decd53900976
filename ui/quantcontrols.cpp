#include "quantcontrols.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSignalBlocker>
#include <QVBoxLayout>

#include <cmath>

#include "formatting.h"

namespace quantlens::ui {

namespace {

struct SchemeEntry {
    Scheme scheme;
    const char* tip;
};
const SchemeEntry kSchemes[] = {
    {Scheme::Seed, "The seed snippet: scale (max−min)/255, zero point 0: clips asymmetric tensors"},
    {Scheme::TorchSymmetric, "PyTorch qint8 symmetric, the quantize_dynamic default: absmax/127.5, [-128, 127]"},
    {Scheme::TorchAffine, "PyTorch MinMaxObserver affine: range widened to include 0, zero point clamped"},
    {Scheme::NarrowSymmetric, "ONNX Runtime / TensorRT: absmax/127, [-127, 127]"},
    {Scheme::Q8_0, "ggml Q8_0: blocks of 32 along rows, fp16 scale absmax/127"},
    {Scheme::Q4_0, "ggml Q4_0: blocks of 32, fp16 scale max/-8, 4-bit codes (ggml's reference quantizer, bit for bit)"},
    {Scheme::Q4_1, "ggml Q4_1: blocks of 32, fp16 scale and min, 4-bit codes"},
    {Scheme::Q5_0, "ggml Q5_0: blocks of 32, fp16 scale max/-16, 5-bit codes"},
    {Scheme::Q5_1, "ggml Q5_1: blocks of 32, fp16 scale and min, 5-bit codes"},
    {Scheme::Q4_K, "ggml Q4_K: super-blocks of 256, 6-bit scales and mins per 32, 4-bit codes (rows of 256 only)"},
    {Scheme::Q5_K, "ggml Q5_K: super-blocks of 256, 6-bit scales and mins per 32, 5-bit codes (rows of 256 only)"},
    {Scheme::Q6_K, "ggml Q6_K: super-blocks of 256, 8-bit scales per 16, 6-bit codes (rows of 256 only)"},
    {Scheme::F16, "IEEE half, round to nearest even (ggml's F16)"},
    {Scheme::BF16, "bfloat16, round to nearest even (ggml's BF16)"},
    {Scheme::F32, "float32 unchanged"},
};

struct CalibEntry {
    CalibMethod method;
    const char* label;
};
const CalibEntry kCalibs[] = {
    {CalibMethod::MinMax, "min/max"},
    {CalibMethod::Percentile, "percentile 99.99"},
    {CalibMethod::Mse, "MSE-optimal"},
    {CalibMethod::Entropy, "entropy (KL)"},
    {CalibMethod::HistogramL2, "histogram L2"},
    {CalibMethod::Manual, "manual"},
};

}  // namespace

QuantSpec QuantControls::initialSpec()
{
    QuantSpec s;
    s.scheme = Scheme::TorchSymmetric;
    s.granularity = Granularity::PerChannel;
    return s;
}

QuantControls::QuantControls(QWidget* parent) : QWidget(parent), spec_(initialSpec())
{
    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(0, 0, 0, 0);
    outer->setSpacing(2);
    auto* h = new QHBoxLayout;
    h->setContentsMargins(0, 0, 0, 0);
    outer->addLayout(h);
    scheme_ = new QComboBox(this);
    scheme_->setObjectName(QStringLiteral("schemeBox"));
    for (const SchemeEntry& e : kSchemes) {
        scheme_->addItem(qs(schemeName(e.scheme)), int(e.scheme));
        scheme_->setItemData(scheme_->count() - 1, QString::fromUtf8(e.tip), Qt::ToolTipRole);
    }
    granularity_ = new QComboBox(this);
    granularity_->setObjectName(QStringLiteral("granularityBox"));
    granularity_->addItem(tr("per tensor"), 0);
    granularity_->addItem(tr("per channel"), -1);
    for (int g : {32, 64, 128})
        granularity_->addItem(tr("per group of %1").arg(g), g);
    calib_ = new QComboBox(this);
    calib_->setObjectName(QStringLiteral("calibBox"));
    for (const CalibEntry& e : kCalibs)
        calib_->addItem(QString::fromUtf8(e.label), int(e.method));
    lo_ = new QDoubleSpinBox(this);
    hi_ = new QDoubleSpinBox(this);
    lo_->setObjectName(QStringLiteral("loBox"));
    hi_->setObjectName(QStringLiteral("hiBox"));
    for (QDoubleSpinBox* b : {lo_, hi_}) {
        b->setDecimals(6);
        b->setRange(-1e9, 1e9);
        b->setKeyboardTracking(false);  // one update per finished number, not per keystroke
        b->setMinimumWidth(95);
    }
    lo_->setToolTip(tr("Lower clamp value; editing it switches to a manual range"));
    hi_->setToolTip(tr("Upper clamp value; editing it switches to a manual range"));
    reset_ = new QPushButton(tr("Reset range"), this);
    reset_->setToolTip(tr("Back to the scheme's own min/max range"));
    log_ = new QCheckBox(tr("log counts"), this);
    log_->setChecked(true);

    scope_ = new QComboBox(this);
    scope_->setObjectName(QStringLiteral("scopeBox"));
    scope_->addItem(tr("all layers"), int(Scope::AllLayers));
    scope_->addItem(tr("this layer only"), int(Scope::ThisLayer));
    scope_->setItemData(0, tr("Scheme, granularity and calibrator set the model-wide default; this layer follows it"),
                        Qt::ToolTipRole);
    scope_->setItemData(1, tr("This layer keeps its own settings (a dragged range is always this layer's own)"),
                        Qt::ToolTipRole);
    scope_->setToolTip(tr("Where a change applies: every layer that follows the default, or only this layer"));
    h->addWidget(new QLabel(tr("Scheme"), this));
    h->addWidget(scheme_);
    h->addWidget(granularity_);
    h->addWidget(new QLabel(tr("Range"), this));
    h->addWidget(calib_);
    h->addWidget(lo_);
    h->addWidget(hi_);
    h->addWidget(reset_);
    h->addWidget(log_);
    h->addStretch(1);

    // Second row: where a change goes, and for a tensor the plan leaves in float, why.
    auto* fl = new QHBoxLayout;
    fl->setContentsMargins(0, 0, 0, 0);
    fl->addWidget(new QLabel(tr("Applies to"), this));
    fl->addWidget(scope_);
    fl->addSpacing(12);
    floatNote_ = new QLabel(this);
    floatNote_->setObjectName(QStringLiteral("notQuantizedLabel"));
    anyway_ = new QPushButton(tr("Quantize anyway"), this);
    anyway_->setObjectName(QStringLiteral("quantizeAnywayButton"));
    anyway_->setToolTip(tr("Quantize this tensor with the settings above, as this layer's own choice"));
    fl->addWidget(floatNote_);
    fl->addWidget(anyway_);
    fl->addStretch(1);
    outer->addLayout(fl);
    floatNote_->hide();
    anyway_->hide();
    connect(anyway_, &QPushButton::clicked, this, &QuantControls::quantizeAnywayRequested);
    connect(scope_, &QComboBox::currentIndexChanged, this, [this] {
        if (!updating_)
            emit scopeChanged(scope());
    });

    auto changed = [this] {
        if (updating_)
            return;
        readWidgets();
        emit specChanged();
    };
    connect(scheme_, &QComboBox::currentIndexChanged, this, changed);
    connect(granularity_, &QComboBox::currentIndexChanged, this, changed);
    connect(calib_, &QComboBox::currentIndexChanged, this, changed);
    auto spinChanged = [this] {
        if (updating_)
            return;
        setManualRange(lo_->value(), hi_->value());
    };
    connect(lo_, &QDoubleSpinBox::valueChanged, this, spinChanged);
    connect(hi_, &QDoubleSpinBox::valueChanged, this, spinChanged);
    connect(reset_, &QPushButton::clicked, this, [this] {
        QuantSpec s = spec_;
        s.calib = CalibMethod::MinMax;
        setSpec(s);
    });
    connect(log_, &QCheckBox::toggled, this, &QuantControls::logScaleToggled);
    writeWidgets();
}

bool QuantControls::logScale() const { return log_->isChecked(); }

void QuantControls::readWidgets()
{
    spec_.scheme = Scheme(scheme_->currentData().toInt());
    const int g = granularity_->currentData().toInt();
    spec_.granularity = g == 0 ? Granularity::PerTensor : g < 0 ? Granularity::PerChannel : Granularity::PerGroup;
    spec_.groupSize = g > 0 ? g : 0;
    spec_.calib = CalibMethod(calib_->currentData().toInt());
    if (spec_.calib == CalibMethod::Manual) {
        spec_.manualLo = float(lo_->value());
        spec_.manualHi = float(hi_->value());
    }
    updateEnabled();
}

void QuantControls::updateEnabled()
{
    const bool on = notQuantizedReason_.isEmpty();
    for (QWidget* w : std::initializer_list<QWidget*>{scheme_, calib_, lo_, hi_, reset_, scope_})
        w->setEnabled(on);
    // The ggml schemes fix their own blocks; the granularity box does not apply.
    granularity_->setEnabled(on && !isGgmlScheme(spec_.scheme));
}

QuantControls::Scope QuantControls::scope() const { return Scope(scope_->currentData().toInt()); }

void QuantControls::setScope(Scope sc)
{
    updating_ = true;
    scope_->setCurrentIndex(std::max(0, scope_->findData(int(sc))));
    updating_ = false;
}

void QuantControls::setNotQuantized(const QString& reason)
{
    notQuantizedReason_ = reason;
    floatNote_->setText(tr("Not quantized by default: %1.").arg(reason));
    floatNote_->setVisible(!reason.isEmpty());
    anyway_->setVisible(!reason.isEmpty());
    updateEnabled();
}

void QuantControls::writeWidgets()
{
    updating_ = true;
    scheme_->setCurrentIndex(std::max(0, scheme_->findData(int(spec_.scheme))));
    const int g = spec_.granularity == Granularity::PerTensor ? 0
                  : spec_.granularity == Granularity::PerChannel ? -1 : int(spec_.groupSize);
    const int gi = granularity_->findData(g);
    if (gi < 0 && g > 0) {
        granularity_->addItem(tr("per group of %1").arg(g), g);
        granularity_->setCurrentIndex(granularity_->count() - 1);
    } else {
        granularity_->setCurrentIndex(std::max(0, gi));
    }
    calib_->setCurrentIndex(std::max(0, calib_->findData(int(spec_.calib))));
    if (spec_.calib == CalibMethod::Manual) {
        lo_->setValue(spec_.manualLo);
        hi_->setValue(spec_.manualHi);
    }
    updateEnabled();
    updating_ = false;
}

void QuantControls::setSpec(const QuantSpec& s)
{
    const bool same = s.scheme == spec_.scheme && s.granularity == spec_.granularity && s.groupSize == spec_.groupSize &&
                      s.calib == spec_.calib && s.manualLo == spec_.manualLo && s.manualHi == spec_.manualHi &&
                      s.bits == spec_.bits && s.isUnsigned == spec_.isUnsigned;
    spec_ = s;
    writeWidgets();
    if (!same)
        emit specChanged();
}

void QuantControls::setManualRange(double lo, double hi)
{
    if (lo > hi)
        std::swap(lo, hi);
    QuantSpec s = spec_;
    s.calib = CalibMethod::Manual;
    s.manualLo = float(lo);
    s.manualHi = float(hi);
    setSpec(s);
}

void QuantControls::showEffectiveRange(double lo, double hi, double dataSpan)
{
    if (!std::isfinite(lo) || !std::isfinite(hi))
        return;
    updating_ = true;
    const double step = dataSpan > 0 ? std::pow(10.0, std::floor(std::log10(dataSpan / 100.0))) : 0.001;
    lo_->setSingleStep(step);
    hi_->setSingleStep(step);
    if (spec_.calib != CalibMethod::Manual) {
        lo_->setValue(lo);
        hi_->setValue(hi);
    }
    updating_ = false;
}

}  // namespace quantlens::ui
