#pragma once
// The "Compare" tab (issue #20): the model on screen (A) against a reference checkpoint (B).
// Opening B and comparing every paired tensor run off the GUI thread with progress and
// Cancel; the result is a per-layer SQNR bar chart (worst first; a click selects the layer's
// worst tensor), the list of what could not be paired and why, and the error histogram
// (A − B) of the selected tensor. For the Tensor tab it computes, also off the GUI thread,
// the reference / this file / difference grids of the selected tensor.
#include <QString>
#include <QWidget>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>

#include "compare/compare.h"
#include "model.h"
#include "tensoranalysis.h"

class QCPBars;
class QCPItemText;
class QCustomPlot;
class QLabel;
class QProgressBar;
class QPushButton;
class QScrollArea;
class QSplitter;
class QToolButton;
class QTreeWidget;

namespace quantlens::ui {

class HistogramPlot;

// What the Tensor tab shows for a paired tensor: B in "before"'s place, A as "after" and
// A − B as the error, all in the canonical layout the comparison used.
struct PairView {
    int tensor = -1;                          // index into A's tensors
    std::shared_ptr<const MatrixData> reference;
    std::shared_ptr<const QuantOutcome> difference;  // after = A, error = A − B, metrics vs B
    Histogram errorHistogram;
    TensorStats errorStats;
    QString error;                            // non-empty: decoding failed
};

class ComparePanel : public QWidget {
    Q_OBJECT
public:
    explicit ComparePanel(QWidget* parent = nullptr);
    ~ComparePanel() override;

    // The model on screen changed: any comparison belonged to the previous one.
    void setModel(std::shared_ptr<const Model> a);
    // Opens `path` as the reference and compares, in the background.
    void compareWith(const QString& path);
    void cancel();
    // Comparing, or computing a tensor's maps for the Tensor tab.
    bool busy() const { return busy_ || viewJobs_ > 0; }

    std::shared_ptr<const CompareReport> report() const { return report_; }
    QString referencePath() const { return referencePath_; }
    QString lastError() const { return lastError_; }
    // Comparison of A's tensor `index`, or nullptr (unpaired, or no comparison).
    const TensorComparison* comparisonFor(int index) const;
    bool hasPair(int index) const { return pairs_.count(index) != 0; }
    // Computes the PairView of A's tensor `index` in the background; pairViewReady follows.
    void requestPairView(int index, int64_t maxCells);
    QCustomPlot* chart() const { return plot_; }
    HistogramPlot* errorHistogram() const { return histogram_; }

signals:
    void started();
    void finished();               // report() is the new result (null on failure or cancel)
    void tensorActivated(int index);
    void pairViewReady(std::shared_ptr<const PairView> view);  // also for superseded requests: check view->tensor
    void compareRequested();       // the panel's own "Compare with…" button

protected:
    void changeEvent(QEvent* e) override;

private:
    void applyTheme();  // the chart follows the palette (a dark desktop theme)
    void showReport();
    void setBusy(bool on, const QString& what);
    int barAt(double key) const;

    std::shared_ptr<const Model> a_, b_;
    std::shared_ptr<const CompareReport> report_;
    std::map<int, TensorPair> pairs_;   // A's tensor index -> its pair (pointers into a_, b_)
    std::map<std::string, int> indexOfA_;
    std::vector<LayerComparison> layers_;
    std::shared_ptr<std::atomic<bool>> cancel_;
    uint64_t gen_ = 0, viewGen_ = 0;
    int viewJobs_ = 0;
    bool busy_ = false;
    QString referencePath_, lastError_;

    QLabel* summary_ = nullptr;
    QProgressBar* progress_ = nullptr;
    QToolButton* cancelButton_ = nullptr;
    QPushButton* compareButton_ = nullptr;
    QScrollArea* plotScroll_ = nullptr;
    QCustomPlot* plot_ = nullptr;
    QCPBars* bars_ = nullptr;
    QCPBars* exactBars_ = nullptr;
    QCPItemText* chartMessage_ = nullptr;  // why the chart is empty  // layers identical to the reference (+inf dB), grey
    QTreeWidget* unpaired_ = nullptr;
    HistogramPlot* histogram_ = nullptr;
};

}  // namespace quantlens::ui
