#pragma once
#include <QWidget>

#include <memory>

#include "tensoranalysis.h"

class QLabel;
class QCustomPlot;

namespace quantlens::ui {

class HeatmapPlot;

// "before", "after (dequantized)" and "error" side by side. Before and after share one
// colour range so equal colours mean equal values; the error map has its own symmetric
// range. Zoom and pan are synchronised; hovering shows the element under the mouse.
// A vector (one row) is a strip plot instead: its values against their index, with the
// dequantized values over them once there is a result. A 1-by-n heatmap shows nothing.
class HeatmapView : public QWidget {
    Q_OBJECT
public:
    explicit HeatmapView(QWidget* parent = nullptr);

    void setMatrix(std::shared_ptr<const MatrixData> m);
    void setOutcome(std::shared_ptr<const QuantOutcome> q);
    void clear(const QString& message);
    // Other titles for the three maps (a comparison shows the reference, this file and their
    // difference); empty strings restore the quantization titles.
    void setTitles(const QString& before, const QString& after, const QString& error);

    HeatmapPlot* before() const { return plots_[0]; }
    HeatmapPlot* after() const { return plots_[1]; }
    HeatmapPlot* error() const { return plots_[2]; }
    QCustomPlot* strip() const { return strip_; }
    bool showsStrip() const;
    QString hoverText() const;
    QString describe(qint64 row, qint64 col) const;  // the hover line for one element

signals:
    void hoverChanged(const QString& text);

private:
    void syncRanges(int from);
    void onHover(qint64 row, qint64 col);
    void updateLabels();
    void updateStrip();
    void showStrip(bool on);

    HeatmapPlot* plots_[3] = {nullptr, nullptr, nullptr};
    QLabel* hover_ = nullptr;
    QCustomPlot* strip_ = nullptr;
    std::shared_ptr<const MatrixData> matrix_;
    std::shared_ptr<const QuantOutcome> outcome_;
    bool syncing_ = false;
    QString titles_[3];
};

}  // namespace quantlens::ui
