#include "heatmapplot.h"

#include <QMouseEvent>

#include <algorithm>
#include <cmath>

namespace quantlens::ui {

// QCPColorMapData with a whole-block setter. QCP 2.1's only cell setter is setCell (a
// bounds check and a data-bounds update per cell: 147K calls per map on every drag step);
// its storage is row-major by value index, which is HeatGrid's [row][col], so one copy does
// it. The protected members are QCP's extension point for this.
class HeatmapPlot::BlockData : public QCPColorMapData {
public:
    BlockData() : QCPColorMapData(0, 0, QCPRange(0, 1), QCPRange(0, 1)) {}
    void setBlock(const HeatGrid& g)
    {
        setSize(int(g.cols), int(g.rows));
        if (isEmpty())
            return;
        std::copy(g.v.begin(), g.v.begin() + ptrdiff_t(g.rows * g.cols), mData);
        // Only rescaleDataRange reads the bounds, and the maps set their range themselves:
        // the grid's max |cell| bounds every cell (a pass for the exact ones cost as much as
        // the copy).
        mDataBounds = QCPRange(-g.absMax, g.absMax);
        mDataModified = true;
    }
};

HeatmapPlot::HeatmapPlot(QWidget* parent) : QCustomPlot(parent)
{
    setMouseTracking(true);
    setMinimumSize(220, 200);
    setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    plotLayout()->insertRow(0);
    title_ = new QCPTextElement(this, QString(), QFont(font().family(), font().pointSize(), QFont::Bold));
    plotLayout()->addElement(0, 0, title_);

    map_ = new QCPColorMap(xAxis, yAxis);
    data_ = new BlockData;
    map_->setData(data_, false);  // the map owns it
    map_->setInterpolate(false);  // one cell is one (pooled) weight; smoothing would invent values
    map_->setTightBoundary(false);
    scale_ = new QCPColorScale(this);
    scale_->setType(QCPAxis::atRight);
    scale_->setBarWidth(10);
    plotLayout()->addElement(1, 1, scale_);
    map_->setColorScale(scale_);
    // Keep the map's and the scale's vertical extent aligned.
    auto* group = new QCPMarginGroup(this);
    axisRect()->setMarginGroup(QCP::msTop | QCP::msBottom, group);
    scale_->setMarginGroup(QCP::msTop | QCP::msBottom, group);

    yAxis->setRangeReversed(true);  // row 0 at the top, as matrices are written
    xAxis->setLabel(tr("column"));
    yAxis->setLabel(tr("row"));
    QFont small = font();
    small.setPointSizeF(small.pointSizeF() * 0.85);
    for (QCPAxis* a : {xAxis, yAxis, scale_->axis()}) {
        a->setTickLabelFont(small);
        a->setLabelFont(small);
    }
    message_ = new QCPItemText(this);
    message_->position->setType(QCPItemPosition::ptAxisRectRatio);
    message_->position->setCoords(0.5, 0.5);
    message_->setVisible(false);
    applyTheme();
    clearGrid(QString());
}

void HeatmapPlot::setAxisLabels(const QString& x, const QString& y)
{
    xAxis->setLabel(x);
    yAxis->setLabel(y);
}

void HeatmapPlot::setGrid(const HeatGrid& g, int64_t rows, int64_t cols, double range, const QString& title,
                          const QString& scaleLabel, const QCPColorGradient& gradient)
{
    const bool sameShape = rows == rows_ && cols == cols_ && g.rows == grid_.rows && g.cols == grid_.cols;
    if (!(range > 0))
        range = 1;
    // Every drag step hands over all three maps; the "before" one has not changed, and
    // re-setting it re-coloured and redrew it each time.
    if (sameShape && g.poolRows == grid_.poolRows && g.poolCols == grid_.poolCols && map_->visible()
        && !message_->visible() && range == shownRange_ && title == title_->text()
        && scaleLabel == scale_->axis()->label() && gradient == map_->gradient() && g.v == grid_.v)
        return;
    grid_ = g;
    rows_ = rows;
    cols_ = cols;
    shownRange_ = range;
    message_->setVisible(false);
    title_->setText(title);
    // Cell centres in matrix coordinates: cell k covers [k*pool, (k+1)*pool).
    const double c0 = 0.5 * double(g.poolCols) - 0.5;
    const double r0 = 0.5 * double(g.poolRows) - 0.5;
    data_->setBlock(g);
    data_->setRange(QCPRange(c0, c0 + double(g.poolCols) * double(std::max<int64_t>(g.cols - 1, 0)) + 1e-9),
                    QCPRange(r0, r0 + double(g.poolRows) * double(std::max<int64_t>(g.rows - 1, 0)) + 1e-9));
    map_->setGradient(gradient);
    scale_->setGradient(gradient);  // the scale does not always follow the map's gradient
    map_->setDataRange(QCPRange(-range, range));
    scale_->axis()->setLabel(scaleLabel);
    map_->setVisible(true);
    if (!sameShape)
        resetView();
    replot(QCustomPlot::rpQueuedReplot);
}

void HeatmapPlot::clearGrid(const QString& message)
{
    rows_ = cols_ = 0;
    grid_ = {};
    data_->setSize(0, 0);
    map_->setVisible(false);
    title_->setText(QString());
    message_->setText(message);
    message_->setVisible(!message.isEmpty());
    replot(QCustomPlot::rpQueuedReplot);
}

void HeatmapPlot::resetView()
{
    if (rows_ <= 0)
        return;
    xAxis->setRange(-0.5, double(cols_) - 0.5);
    yAxis->setRange(-0.5, double(rows_) - 0.5);
}

double HeatmapPlot::cellValue(int64_t row, int64_t col) const
{
    if (row < 0 || col < 0 || row >= rows_ || col >= cols_)
        return 0;
    const int64_t r = row / grid_.poolRows, c = col / grid_.poolCols;
    return grid_.v[size_t(r * grid_.cols + c)];
}

QPoint HeatmapPlot::pixelFor(int64_t row, int64_t col) const
{
    return QPoint(int(std::lround(xAxis->coordToPixel(double(col)))), int(std::lround(yAxis->coordToPixel(double(row)))));
}

void HeatmapPlot::mouseMoveEvent(QMouseEvent* e)
{
    QCustomPlot::mouseMoveEvent(e);
    if (rows_ <= 0 || !axisRect()->rect().contains(e->pos())) {
        emit hovered(-1, -1);
        return;
    }
    const double x = xAxis->pixelToCoord(e->position().x());
    const double y = yAxis->pixelToCoord(e->position().y());
    const int64_t col = int64_t(std::floor(x + 0.5)), row = int64_t(std::floor(y + 0.5));
    if (row < 0 || col < 0 || row >= rows_ || col >= cols_)
        emit hovered(-1, -1);
    else
        emit hovered(row, col);
}

void HeatmapPlot::leaveEvent(QEvent* e)
{
    QCustomPlot::leaveEvent(e);
    emit hovered(-1, -1);
}

void HeatmapPlot::changeEvent(QEvent* e)
{
    QCustomPlot::changeEvent(e);
    if (e->type() == QEvent::PaletteChange)
        applyTheme();
}

void HeatmapPlot::applyTheme()
{
    const QPalette pal = palette();
    setBackground(pal.brush(QPalette::Base));
    axisRect()->setBackground(QColor(0x80, 0x80, 0x80));  // outside the matrix: neutral, not "zero"
    const QColor fg = pal.color(QPalette::Text);
    for (QCPAxis* a : {xAxis, yAxis, scale_->axis()}) {
        a->setBasePen(QPen(fg));
        a->setTickPen(QPen(fg));
        a->setSubTickPen(QPen(fg));
        a->setTickLabelColor(fg);
        a->setLabelColor(fg);
    }
    title_->setTextColor(fg);
    message_->setColor(fg);
    replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace quantlens::ui
