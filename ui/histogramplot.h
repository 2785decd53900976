#pragma once
#include "qcp.h"

#include <QString>
#include <QVector>

#include "quant/histogram.h"
#include "quant/metrics.h"

namespace quantlens::ui {

// Histogram of one tensor's values with the two clamp lines of the quantization range.
// Values beyond the lines (clamped by the scheme) are drawn in a second colour over a
// shaded band, so outliers that the range cuts off are visible even as single counts.
// Either line can be dragged (press/move/release, nearest line within kGrabPixels);
// the drag reports the new [lo, hi] live and once more on release. The drag rule keeps
// the lines where the scheme can put them: mirrored about 0 for schemes with zero point
// 0, each on its own side of 0 for affine ones (which widen the range to include 0).
// Until the range of a newly shown tensor is known the lines are hidden and a pending
// note says what is being computed. Double-click resets pan and zoom.
class HistogramPlot : public QCustomPlot {
    Q_OBJECT
public:
    static constexpr int kGrabPixels = 8;

    struct Marker {
        QString name;   // "percentile 99.99", "MSE", ...
        double lo = 0, hi = 0;
        QColor color;
    };

    enum class DragRule { Free, Mirror, IncludeZero };

    explicit HistogramPlot(QWidget* parent = nullptr);

    void setHistogram(const Histogram& h, const TensorStats& stats, const QString& title);
    void clearHistogram(const QString& message);
    void setClampRange(double lo, double hi);  // the effective range of the current result
    void setMarkers(const QVector<Marker>& markers);
    void setLogScale(bool on);
    void setDragRule(DragRule r) { rule_ = r; }
    DragRule dragRule() const { return rule_; }
    // Hides the lines and says what is being computed, until setClampRange().
    void showPending(const QString& what);
    QString pendingText() const;  // "" when the lines are current
    bool linesVisible() const;
    void resetView();             // what a double-click does
    bool logScale() const { return log_; }

    double clampLo() const { return lo_; }
    double clampHi() const { return hi_; }
    bool isDragging() const { return dragging_ >= 0; }
    // Pixel x of a clamp line (0 = lo, 1 = hi); tests drive drags with it.
    int linePixel(int which) const;
    int clampedBars() const { return clamped_->data()->size(); }  // bins drawn as clamped
    int keptBars() const { return inside_->data()->size(); }
    int markerCount() const { return int(markers_.size()); }
    int markerPixel(int index, bool hiSide) const;

signals:
    void rangeDragged(double lo, double hi);   // live, while the mouse moves
    void rangeDragFinished(double lo, double hi);
    void markerClicked(int index);             // snap the range to markers()[index]

protected:
    void mousePressEvent(QMouseEvent* e) override;
    void mouseMoveEvent(QMouseEvent* e) override;
    void mouseReleaseEvent(QMouseEvent* e) override;
    void mouseDoubleClickEvent(QMouseEvent* e) override;
    void changeEvent(QEvent* e) override;

private:
    void rebuildBars();
    void rescale();
    void placeLines();
    void applyTheme();
    int nearestLine(double px) const;
    int nearestMarker(double px) const;

    Histogram hist_;
    TensorStats stats_;
    bool haveData_ = false;
    bool log_ = true;
    double lo_ = 0, hi_ = 0;
    int dragging_ = -1;
    bool haveRange_ = false;  // lo_/hi_ belong to the shown tensor
    DragRule rule_ = DragRule::Free;
    QCPItemText* pending_ = nullptr;

    QCPBars* inside_ = nullptr;
    QCPBars* clamped_ = nullptr;
    QCPGraph* clampedDots_ = nullptr;
    QCPItemStraightLine* lines_[2] = {nullptr, nullptr};
    QCPItemRect* bands_[2] = {nullptr, nullptr};
    QCPItemText* labels_[2] = {nullptr, nullptr};
    QCPItemText* message_ = nullptr;
    QCPTextElement* title_ = nullptr;
    QVector<Marker> markers_;
    QVector<QCPItemStraightLine*> markerLines_;
    QVector<QCPItemText*> markerLabels_;
};

}  // namespace quantlens::ui
