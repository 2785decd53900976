#pragma once
// The "Activations" tab (issue #19): the selected linear layer's input over calibration
// tokens, as the model's own runner computes it. Per input channel the activation absmax
// beside the weight's column absmax (the SmoothQuant picture), outlier channels (|x| > 6,
// LLM.int8's rule) marked, and below it three pages: the histogram of every activation value
// with the static range (Input range), the SmoothQuant α slider with the smoothed activation
// and weight histograms and the W8A8 output SQNR over α (SmoothQuant, smoothquantview.h; the
// channel plot then also shows the smoothed maxima at the slider's α), and GPTQ's
// before/after. Every α step is precomputed (α = 0, 0.05, ..., 1) with the recording, so the
// slider answers at once. Everything is computed off the GUI thread with progress and Cancel;
// a result for another layer than the selected one is shown as stale.
#include <QFutureWatcher>
#include <QString>
#include <QThreadPool>
#include <QWidget>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "histogramplot.h"
#include "model.h"
#include "plan/quantplan.h"
#include "quant/calibrate.h"
#include "quant/metrics.h"
#include "quant/smoothquant.h"
#include "runner/actstats.h"
#include "smoothquantview.h"

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;
class QTabWidget;

namespace quantlens::ui {

struct ActivationsResult {
    QString layer;            // the runner's layer prefix
    QString error;            // non-empty: nothing else is valid
    LayerActivationStats stats;
    std::vector<float> weightColumnAbsMax;
    std::vector<SmoothQuantPoint> sweep;  // α = 0, 0.05, ..., 1
    double noSmoothingSqnrDb = 0;
    SmoothQuantView::Data smooth;         // the sweep again, and the smoothed operands at each α
    QString fold;             // where 1/s would fold, or why it cannot
    QString input;            // what the calibration input was
    std::vector<std::vector<int64_t>> ids;  // the sequences run: a plan's method calibrates on exactly these
    int64_t tokens = 0;
    double seconds = 0;
    // GPTQ on this layer at the plan's spec for it, vs round to nearest with the same scales:
    // the layer's output SQNR on the calibration inputs, the weights' SQNR, and the weight
    // errors' histograms (counts over `errorEdges`).
    bool gptq = false;
    QString gptqWhy;          // why GPTQ was not run (not quantized by the plan, ...)
    QString gptqSpec;
    double rtnOutputSqnrDb = 0, gptqOutputSqnrDb = 0, rtnWeightSqnrDb = 0, gptqWeightSqnrDb = 0;
    double errorEdge = 0;     // histograms span [-errorEdge, errorEdge]
    std::vector<double> rtnErrors, gptqErrors;
    // The calibrators' ranges for this layer's input (static activations), minmax first.
    std::vector<CalibSuggestion> ranges;
    TensorStats inputStats;
};

// Every layer's static input range, calibrated over the panel's inputs (calibrateAll()).
struct StaticRangesResult {
    QString error;
    std::map<std::string, ActivationRange> ranges;
    CalibrationSource calibration;
};

class ActivationsPanel : public QWidget {
    Q_OBJECT
public:
    enum Input { RandomIds = 0, TokenIds = 1, Text = 2 };

    explicit ActivationsPanel(QWidget* parent = nullptr);
    ~ActivationsPanel() override;  // cancels and waits for the job

    // The model and the selected tensor (its index in model->tensors, -1: none).
    void setSelection(std::shared_ptr<const Model> model, int tensorIndex);
    void setInput(Input kind, const QString& text = {});
    // The input edit's text from a file (the "Open file…" button); random ids switch to text.
    // False, with the reason in the status, when it cannot be read or is over 1 MiB.
    bool loadInputFile(const QString& path);
    void run();     // no-op while running or without a linear layer selected
    void cancel();
    // The plan: GPTQ runs at the spec it gives the layer, and the "In the plan" line says
    // which method it names for the layer.
    void setPlan(const QuantPlan& plan);

    bool isRunning() const { return running_; }
    bool isStale() const;  // the result is for another layer than the selected one
    const ActivationsResult* result() const { return result_.get(); }
    QString statusText() const;
    QString layerName() const { return layer_; }  // the selected layer's prefix, "" if none

    QPushButton* runButton() const { return runButton_; }
    QPushButton* cancelButton() const { return cancelButton_; }
    QProgressBar* progressBar() const { return progress_; }
    QSpinBox* headsBox() const { return heads_; }  // 0: config.json beside the model, else inferred
    QSlider* alphaSlider() const { return sq_->slider(); }
    QLabel* alphaLabel() const { return sq_->label(); }
    SmoothQuantView* smoothQuantView() const { return sq_; }
    QTabWidget* sections() const { return sections_; }  // Input range, SmoothQuant, GPTQ
    void showSmoothQuantPage();
    // The channel plot: graphs 0-2 as recorded (activation absmax, weight column absmax,
    // outliers), 3-4 the same maxima smoothed at the slider's α (shown when the box is ticked).
    QCustomPlot* channelPlot() const { return channels_; }
    QCheckBox* smoothedChannelsBox() const { return smoothedChannels_; }
    QCustomPlot* histogramPlot() const { return histogram_; }
    HistogramPlot* rangePlot() const { return histogram_; }  // the input histogram, its clamp lines = the static range
    QComboBox* calibratorBox() const { return calibrator_; }
    QPushButton* useRangeButton() const { return useRange_; }
    QPushButton* calibrateAllButton() const { return calibrateAll_; }
    // Every layer's range with the chosen calibrator over this panel's inputs, in the
    // background; on success emits staticRangesChosen.
    void calibrateAll();
    QCustomPlot* errorPlot() const { return errors_; }
    QComboBox* methodBox() const { return method_; }
    QPushButton* applyLayerButton() const { return applyLayer_; }
    QPushButton* applyAllButton() const { return applyAll_; }
    QLabel* planLabel() const { return planLabel_; }
    QLabel* gptqLabel() const { return gptqLabel_; }
    // The method the combo box and α slider name (rtn, gptq, gptq:actorder, smoothquant:α).
    MethodSpec chosenMethod() const;

signals:
    void finished();
    // The user puts `method` in the plan for `tensor` ("" = every layer: the model-wide
    // default), calibrated on `calibration` (the ids of the result shown).
    void methodChosen(const QString& tensor, const MethodSpec& method, const CalibrationSource& calibration);
    // A static input range for `tensor`'s layer (dragged, a calibrator's, or "Use this range").
    void activationRangeChosen(const QString& tensor, const ActivationRange& range);
    // Every layer's range, and static activations for the plan.
    void staticRangesChosen(const std::map<std::string, ActivationRange>& ranges, const CalibrationSource& calibration);

private:
    void updateButtons();
    void showResult();
    void showAlpha();
    void showChannels();
    void showSmoothedChannels(bool replotNow);
    void showGptq();
    void showPlanLine();
    void choose(bool allLayers);
    void setStatus(const QString& s, bool error = false);

    std::shared_ptr<const Model> model_;
    QString layer_;
    bool running_ = false;
    uint64_t gen_ = 0;
    std::shared_ptr<std::atomic<bool>> cancel_;
    std::shared_ptr<const ActivationsResult> result_;
    QThreadPool pool_;
    QFutureWatcher<std::shared_ptr<const ActivationsResult>>* watcher_ = nullptr;

    QLabel* layerLabel_ = nullptr;
    QComboBox* inputKind_ = nullptr;
    QPlainTextEdit* inputEdit_ = nullptr;
    QPushButton* loadButton_ = nullptr;
    QSpinBox* heads_ = nullptr;
    QPushButton* runButton_ = nullptr;
    QPushButton* cancelButton_ = nullptr;
    QProgressBar* progress_ = nullptr;
    QLabel* status_ = nullptr;
    QCustomPlot* channels_ = nullptr;
    HistogramPlot* histogram_ = nullptr;
    QComboBox* calibrator_ = nullptr;
    QPushButton* useRange_ = nullptr;
    QPushButton* calibrateAll_ = nullptr;
    QFutureWatcher<std::shared_ptr<const StaticRangesResult>>* rangesWatcher_ = nullptr;
    bool calibrating_ = false;
    void showRange();
    SmoothQuantView* sq_ = nullptr;
    QTabWidget* sections_ = nullptr;
    QCheckBox* smoothedChannels_ = nullptr;
    QCustomPlot* errors_ = nullptr;
    QLabel* gptqLabel_ = nullptr;
    QComboBox* method_ = nullptr;
    QPushButton* applyLayer_ = nullptr;
    QPushButton* applyAll_ = nullptr;
    QLabel* planLabel_ = nullptr;
    QuantPlan plan_;
};

}  // namespace quantlens::ui
