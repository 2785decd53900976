#pragma once
// The "Activations" tab (issue #19): the selected linear layer's input over calibration
// tokens, as the model's own runner computes it. Per input channel the activation absmax
// beside the weight's column absmax (the SmoothQuant picture), outlier channels (|x| > 6,
// LLM.int8's rule) marked, the histogram of every activation value, and a SmoothQuant α
// slider with the layer's W8A8 output SQNR at that α (precomputed over α = 0, 0.05, ..., 1
// in the background, so the slider answers at once). Everything is computed off the GUI
// thread with progress and Cancel; a result for another layer than the selected one is
// shown as stale.
#include <QFutureWatcher>
#include <QString>
#include <QThreadPool>
#include <QWidget>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "model.h"
#include "quant/smoothquant.h"
#include "runner/actstats.h"

class QComboBox;
class QCustomPlot;
class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;

namespace quantlens::ui {

struct ActivationsResult {
    QString layer;            // the runner's layer prefix
    QString error;            // non-empty: nothing else is valid
    LayerActivationStats stats;
    std::vector<float> weightColumnAbsMax;
    std::vector<SmoothQuantPoint> sweep;  // α = 0, 0.05, ..., 1
    double noSmoothingSqnrDb = 0;
    QString fold;             // where 1/s would fold, or why it cannot
    QString input;            // what the calibration input was
    int64_t tokens = 0;
    double seconds = 0;
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

    bool isRunning() const { return running_; }
    bool isStale() const;  // the result is for another layer than the selected one
    const ActivationsResult* result() const { return result_.get(); }
    QString statusText() const;
    QString layerName() const { return layer_; }  // the selected layer's prefix, "" if none

    QPushButton* runButton() const { return runButton_; }
    QPushButton* cancelButton() const { return cancelButton_; }
    QProgressBar* progressBar() const { return progress_; }
    QSpinBox* headsBox() const { return heads_; }  // 0: config.json beside the model, else inferred
    QSlider* alphaSlider() const { return alpha_; }
    QLabel* alphaLabel() const { return alphaLabel_; }
    QCustomPlot* channelPlot() const { return channels_; }
    QCustomPlot* histogramPlot() const { return histogram_; }

signals:
    void finished();

private:
    void updateButtons();
    void showResult();
    void showAlpha();
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
    QCustomPlot* histogram_ = nullptr;
    QSlider* alpha_ = nullptr;
    QLabel* alphaLabel_ = nullptr;
};

}  // namespace quantlens::ui
