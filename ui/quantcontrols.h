#pragma once
#include <QWidget>

#include "quant/quantspec.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QPushButton;

namespace quantlens::ui {

// Scheme chooser and clamp-range editor. It owns the QuantSpec the views show; every
// user change emits specChanged() once (read spec() for the new value). The scope box
// says where a change goes: to every layer (the model-wide default) or to this layer
// only (its own override). A vector the plan leaves in float shows why, and a button to
// quantize it anyway.
//
// The initial spec is symmetric int8 per output channel, what PyTorch, ONNX Runtime and
// llm-compressor use for weights.
class QuantControls : public QWidget {
    Q_OBJECT
public:
    explicit QuantControls(QWidget* parent = nullptr);

    static QuantSpec initialSpec();

    QuantSpec spec() const { return spec_; }
    void setSpec(const QuantSpec& s);       // programmatic; emits specChanged if different
    void setManualRange(double lo, double hi);
    // Shows the range the result really used; leaves a manual request alone.
    void showEffectiveRange(double lo, double hi, double dataSpan);
    bool logScale() const;

    enum class Scope { AllLayers, ThisLayer };
    Scope scope() const;
    void setScope(Scope s);  // programmatic: no scopeChanged
    // reason non-empty: the shown tensor is not quantized by default; the scheme widgets
    // are disabled and the reason is shown beside "Quantize anyway".
    void setNotQuantized(const QString& reason);
    bool notQuantized() const { return !notQuantizedReason_.isEmpty(); }

    QComboBox* schemeBox() const { return scheme_; }
    QComboBox* granularityBox() const { return granularity_; }
    QComboBox* calibBox() const { return calib_; }
    QDoubleSpinBox* loBox() const { return lo_; }
    QDoubleSpinBox* hiBox() const { return hi_; }
    QComboBox* scopeBox() const { return scope_; }
    QPushButton* quantizeAnywayButton() const { return anyway_; }
    QLabel* notQuantizedLabel() const { return floatNote_; }

signals:
    void specChanged();
    void logScaleToggled(bool on);
    void scopeChanged(Scope s);     // the user picked a scope
    void quantizeAnywayRequested();

private:
    void readWidgets();
    void writeWidgets();
    void updateEnabled();

    QuantSpec spec_;
    QComboBox* scheme_ = nullptr;
    QComboBox* granularity_ = nullptr;
    QComboBox* calib_ = nullptr;
    QDoubleSpinBox* lo_ = nullptr;
    QDoubleSpinBox* hi_ = nullptr;
    QCheckBox* log_ = nullptr;
    QPushButton* reset_ = nullptr;
    QComboBox* scope_ = nullptr;
    QLabel* floatNote_ = nullptr;
    QPushButton* anyway_ = nullptr;
    QString notQuantizedReason_;
    bool updating_ = false;
};

}  // namespace quantlens::ui
