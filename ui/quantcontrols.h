#pragma once
#include <QWidget>

#include "quant/quantspec.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QPushButton;

namespace quantlens::ui {

// Scheme chooser and clamp-range editor. It owns the QuantSpec the views show; every
// user change emits specChanged() once (read spec() for the new value).
class QuantControls : public QWidget {
    Q_OBJECT
public:
    explicit QuantControls(QWidget* parent = nullptr);

    QuantSpec spec() const { return spec_; }
    void setSpec(const QuantSpec& s);       // programmatic; emits specChanged if different
    void setManualRange(double lo, double hi);
    // Shows the range the result really used; leaves a manual request alone.
    void showEffectiveRange(double lo, double hi, double dataSpan);
    bool logScale() const;

    QComboBox* schemeBox() const { return scheme_; }
    QComboBox* granularityBox() const { return granularity_; }
    QComboBox* calibBox() const { return calib_; }
    QDoubleSpinBox* loBox() const { return lo_; }
    QDoubleSpinBox* hiBox() const { return hi_; }

signals:
    void specChanged();
    void logScaleToggled(bool on);

private:
    void readWidgets();
    void writeWidgets();

    QuantSpec spec_;
    QComboBox* scheme_ = nullptr;
    QComboBox* granularity_ = nullptr;
    QComboBox* calib_ = nullptr;
    QDoubleSpinBox* lo_ = nullptr;
    QDoubleSpinBox* hi_ = nullptr;
    QCheckBox* log_ = nullptr;
    QPushButton* reset_ = nullptr;
    bool updating_ = false;
};

}  // namespace quantlens::ui
