#include "quantcontrols.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSignalBlocker>

#include <cmath>

#include "formatting.h"

namespace quantlens::ui {

namespace {

struct SchemeEntry {
    Scheme scheme;
    const char* tip;
};
const SchemeEntry kSchemes[] = {
    {Scheme::Seed, "scale = (max − min)/255, zero point 0, [-128, 127] (the seed snippet)"},
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

QuantControls::QuantControls(QWidget* parent) : QWidget(parent)
{
    auto* h = new QHBoxLayout(this);
    h->setContentsMargins(0, 0, 0, 0);
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
    // The ggml schemes fix their own blocks; the granularity box does not apply.
    granularity_->setEnabled(!isGgmlScheme(spec_.scheme));
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
    granularity_->setEnabled(!isGgmlScheme(spec_.scheme));
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
