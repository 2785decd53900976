#pragma once
// The Activations tab's SmoothQuant page (issue #19): the α slider, and at the slider's α
// the histograms of the smoothed activations X / s and weights W · diag(s) with the int8
// ranges the W8A8 run gives them (the widest and the typical token's / output row's), and
// the layer's W8A8 output SQNR over α with the slider's α marked. Every α step is computed
// with the recording (quant/smoothedoperands.h), so moving the slider only redraws.
#include <QString>
#include <QWidget>

#include <vector>

#include "quant/smoothedoperands.h"
#include "quant/smoothquant.h"

class QCPBars;
class QCPGraph;
class QCPItemStraightLine;
class QCPTextElement;
class QCustomPlot;
class QLabel;
class QSlider;

namespace quantlens::ui {

class SmoothQuantView : public QWidget {
    Q_OBJECT
public:
    static constexpr int kSteps = 20;  // α = k / 20

    struct Data {
        std::vector<SmoothQuantPoint> sweep;  // one per step
        std::vector<SmoothedOperands> steps;  // one per step
        SmoothedOperands none;                // s = 1: the operands as recorded
        double noSmoothingSqnrDb = 0;
        int64_t rows = 0;                     // input rows the activation histogram counts
    };

    explicit SmoothQuantView(QWidget* parent = nullptr);

    void setData(const Data* d);  // null: nothing recorded; the pointer must outlive its use
    // Non-empty: the data are for another layer than the selected one; the α line says so.
    void setStaleNote(const QString& note);
    int step() const;
    double alpha() const { return double(step()) / kSteps; }
    const SmoothedOperands* current() const;  // at the slider's α, null without data

    QSlider* slider() const { return slider_; }
    QLabel* label() const { return label_; }
    QCustomPlot* weightPlot() const { return weights_.plot; }
    QCustomPlot* activationPlot() const { return activations_.plot; }
    QCustomPlot* sqnrPlot() const { return sqnr_; }

signals:
    void alphaChanged(int step);

public:
    // What a smoothed histogram plot shows (tests read it): the bars' bins and the pixel-free
    // positions of its range lines, widest then typical, + side.
    int barCount(const QCustomPlot* plot) const;
    double rangeLine(const QCustomPlot* plot, int which) const;

private:
    // A histogram of one smoothed operand (log counts) with its two int8 ranges as lines.
    struct HistPlot {
        QCustomPlot* plot = nullptr;
        QCPTextElement* title = nullptr;
        QCPBars* bars = nullptr;
        QCPItemStraightLine* lines[4] = {};  // -widest, +widest, -typical, +typical
        QCPGraph* keys[2] = {};              // their legend entries
    };
    HistPlot makeHistPlot(const QString& what);
    void showHist(HistPlot& h, const Histogram* hist, double widest, double typical, double widestBefore,
                  double typicalBefore, const QString& title, const QString& unit);
    const HistPlot* find(const QCustomPlot* plot) const;
    void show();

    const Data* data_ = nullptr;
    QString stale_;
    QSlider* slider_ = nullptr;
    QLabel* label_ = nullptr;
    HistPlot weights_, activations_;
    QCustomPlot* sqnr_ = nullptr;
    QCPGraph* sqnrCurve_ = nullptr;
    QCPGraph* sqnrNone_ = nullptr;
    QCPGraph* sqnrAt_ = nullptr;
};

}  // namespace quantlens::ui
