#pragma once
#include "qcp.h"

#include "tensoranalysis.h"

namespace quantlens::ui {

// Per-output-channel view: each channel's min/max (top) and its SQNR under per-tensor
// and under per-channel scales (bottom). Channels whose range is far wider than the rest
// are the ones a per-tensor scale serves badly; the gap between the two SQNR curves shows
// what per-channel scales buy.
class ChannelPlot : public QCustomPlot {
    Q_OBJECT
public:
    explicit ChannelPlot(QWidget* parent = nullptr);
    void setData(const MatrixData& m, const QuantOutcome& q);
    void clearData(const QString& message);
    int channelCount() const { return channels_; }

private:
    QCPAxisRect* rangeRect_ = nullptr;
    QCPAxisRect* sqnrRect_ = nullptr;
    QCPGraph* min_ = nullptr;
    QCPGraph* max_ = nullptr;
    QCPGraph* sqnrTensor_ = nullptr;
    QCPGraph* sqnrChannel_ = nullptr;
    QCPTextElement* title_ = nullptr;
    QCPLegend* sqnrLegend_ = nullptr;
    int channels_ = 0;
};

}  // namespace quantlens::ui
