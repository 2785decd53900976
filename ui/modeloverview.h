#pragma once
#include <QWidget>

#include <memory>
#include <vector>

#include "model.h"
#include "tensoranalysis.h"

class QLabel;
class QCustomPlot;
class QCPBars;

namespace quantlens::ui {

// The whole model under the current scheme: SQNR of every layer (linear, convolution,
// recurrent: findQuantLayers) as a bar chart and the size before/after quantizing them. Bars appear as the
// background summaries arrive.
class ModelOverview : public QWidget {
    Q_OBJECT
public:
    explicit ModelOverview(QWidget* parent = nullptr);

    void reset(std::shared_ptr<const Model> model, const std::vector<int>& linearTensors, const QString& schemeLabel);
    void addSummary(const TensorSummary& s);
    QString sizeText() const;
    int barCount() const;
    QCustomPlot* plot() const { return plot_; }

signals:
    void layerActivated(int tensorIndex);  // a bar was clicked

private:
    void refresh();

    std::shared_ptr<const Model> model_;
    std::vector<int> linear_;           // tensor indices, file order
    std::vector<TensorSummary> got_;    // per linear_ entry (ok=false until it arrives)
    QString scheme_;
    QLabel* sizes_ = nullptr;
    QCustomPlot* plot_ = nullptr;
    QCPBars* bars_ = nullptr;
};

}  // namespace quantlens::ui
