#pragma once
#include "qcp.h"

#include <QString>

#include "tensoranalysis.h"

namespace quantlens::ui {

// One matrix as a QCPColorMap with its colour scale. Axes are in matrix coordinates
// (column right, row down) whatever the display pooling, so hover positions and zoom
// ranges can be shared between the before/after/error maps.
class HeatmapPlot : public QCustomPlot {
    Q_OBJECT
public:
    explicit HeatmapPlot(QWidget* parent = nullptr);

    // rows/cols: the full matrix; g: its display grid. The colour range is [-range, range].
    void setGrid(const HeatGrid& g, int64_t rows, int64_t cols, double range, const QString& title,
                 const QString& scaleLabel, const QCPColorGradient& gradient);
    void clearGrid(const QString& message);
    void setAxisLabels(const QString& x, const QString& y);
    void resetView();
    bool hasGrid() const { return rows_ > 0; }
    double cellValue(int64_t row, int64_t col) const;  // the display cell holding (row, col)
    QCPColorMap* colorMap() const { return map_; }
    // Pixel of matrix element (row, col); tests hover with it.
    QPoint pixelFor(int64_t row, int64_t col) const;

signals:
    void hovered(qint64 row, qint64 col);  // -1, -1 when the mouse leaves the matrix

protected:
    void mouseMoveEvent(QMouseEvent* e) override;
    void leaveEvent(QEvent* e) override;
    void changeEvent(QEvent* e) override;

private:
    void applyTheme();

    class BlockData;
    QCPColorMap* map_ = nullptr;
    BlockData* data_ = nullptr;  // map_'s data (owned by map_)
    double shownRange_ = 0;
    QCPColorScale* scale_ = nullptr;
    QCPTextElement* title_ = nullptr;
    QCPItemText* message_ = nullptr;
    HeatGrid grid_;
    int64_t rows_ = 0, cols_ = 0;
};

}  // namespace quantlens::ui
