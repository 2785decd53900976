#pragma once
// The "Run" tab: the selected linear layer run in float32 (OpenBLAS) and as the quantization
// plan has it (the int8 kernels where its spec allows, else simulated) on the same input,
// off the GUI thread (tasks/layerrun.h, as `quantlens-cli run`). Shows both median times,
// the speed-up, the kernel variant and the output error against float32 (SQNR, max abs
// error and a histogram of y_quantized - y_fp32). A result made under an older plan is
// marked stale.
#include <QFutureWatcher>
#include <QString>
#include <QWidget>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "layers.h"
#include "model.h"
#include "plan/quantplan.h"
#include "quant/histogram.h"
#include "quant/metrics.h"

class QComboBox;
class QCustomPlot;
class QCPBars;
class QCPItemText;
class QLabel;
class QPushButton;
class QRadioButton;
class QSpinBox;

namespace quantlens::ui {

struct RunResult {
    QString error;  // non-empty: nothing else is valid
    QString layer;
    int64_t tokens = 0, in = 0, out = 0;
    double fp32Seconds = 0, int8Seconds = 0;  // median of the repeats
    QString isa;
    Metrics err;      // int8 output vs float32 output
    Histogram hist;   // of y_int8 - y_fp32
    bool cancelled = false;
    bool simulated = false;
    QString spec;     // the layer's plan, as run ("torch-symmetric, channel, 8-bit; per-tensor activations")
    QuantSpec weightSpec;
    ActivationSpec act;
    QString method = QStringLiteral("rtn");  // how the layer's integers were found
    double speedup() const { return int8Seconds > 0 ? fp32Seconds / int8Seconds : 0; }
};

class RunPanel : public QWidget {
    Q_OBJECT
public:
    explicit RunPanel(QWidget* parent = nullptr);
    ~RunPanel() override;

    // The tensor selected in the main window; the panel finds the linear layer it belongs to
    // (weight or bias). A null model or a tensor outside every linear layer disables Run.
    void setSelection(std::shared_ptr<const Model> model, int tensorIndex);
    // The plan every run executes (the window's; until one is set, quantize_dynamic's). The
    // activation and weight boxes show it and edit its activations and its model-wide
    // granularity (planEdited). A finished result made under another plan becomes stale.
    void setPlan(const QuantPlan& plan);
    const QuantPlan& plan() const { return plan_; }
    bool isStale() const;
    // Uses the float .npy at `path` ([M, in_features]) as the input; false (and the reason in
    // the status line) when it cannot be read or has the wrong shape.
    bool loadInput(const QString& path);
    void useRandomInput();
    void run();
    void cancel();  // the run stops after the current call; the previous figures stay

    bool hasLayer() const { return haveLayer_; }
    bool isRunning() const { return running_; }
    const RunResult* lastResult() const { return result_.get(); }
    QPushButton* runButton() const { return runButton_; }
    QPushButton* cancelButton() const { return cancelButton_; }
    QSpinBox* tokensBox() const { return tokens_; }
    QComboBox* activationBox() const { return act_; }
    QComboBox* weightsBox() const { return weights_; }
    QLabel* label(const QString& key) const;  // "fp32", "int8", "speedup", "isa", "sqnr", "maxabs", "status", "layer"
    QCustomPlot* plot() const { return plot_; }

signals:
    void finished();  // a run ended (result or error)
    void planEdited(const quantlens::QuantPlan& plan);  // the user changed the activations or the default granularity

private:
    void updateLayerText();
    void applyResult(std::shared_ptr<const RunResult> r);
    void setStatus(const QString& s, bool error = false);
    void showPlanForLayer();
    void onBoxesChanged();

    std::shared_ptr<const Model> model_;
    std::vector<LinearLayer> layers_;  // of model_
    LinearLayer layer_;
    bool haveLayer_ = false;
    bool running_ = false;
    uint64_t gen_ = 0;
    std::shared_ptr<const std::vector<float>> input_;  // loaded .npy, or null for random
    int64_t inputRows_ = 0, inputCols_ = 0;
    QString inputPath_;
    std::shared_ptr<const RunResult> result_;
    QuantPlan plan_ = QuantPlan::quantizeDynamicPreset();
    QLabel* planLabel_ = nullptr;

    QLabel* layerLabel_ = nullptr;
    QSpinBox* tokens_ = nullptr;
    QComboBox* act_ = nullptr;
    QComboBox* weights_ = nullptr;
    QRadioButton* randomInput_ = nullptr;
    QRadioButton* fileInput_ = nullptr;
    QPushButton* loadButton_ = nullptr;
    QLabel* inputLabel_ = nullptr;
    QPushButton* runButton_ = nullptr;
    QPushButton* cancelButton_ = nullptr;
    std::shared_ptr<std::atomic<bool>> cancel_;
    QLabel* fp32_ = nullptr;
    QLabel* int8_ = nullptr;
    QLabel* speedup_ = nullptr;
    QLabel* isa_ = nullptr;
    QLabel* sqnr_ = nullptr;
    QLabel* maxAbs_ = nullptr;
    QLabel* status_ = nullptr;
    QCustomPlot* plot_ = nullptr;
    QCPBars* bars_ = nullptr;
    QCPItemText* hint_ = nullptr;  // shown until the first result
    QFutureWatcher<std::shared_ptr<const RunResult>>* watcher_ = nullptr;
};

}  // namespace quantlens::ui
