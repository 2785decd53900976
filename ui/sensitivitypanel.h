#pragma once
// The "Sensitivity" tab (issue #8): which linear layers of a BERT-family encoder break the
// model's output when quantized to int8. Runs computeSensitivity off the GUI thread (the
// EncoderRunner, which materialises every weight as float32, is built there as well),
// shows the ranking as a sorted horizontal bar chart and a table, and lets the user keep
// layers in float32: every change of that set recomputes, in the background, the
// end-to-end error and the linear-weight size of "every linear layer int8 except the kept
// ones" against the float32 reference of the last run.
#include <QFutureWatcher>
#include <QPoint>
#include <QString>
#include <QStringList>
#include <QThreadPool>
#include <QWidget>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model.h"
#include "quant/quantspec.h"
#include "runner/encoder.h"
#include "plan/quantplan.h"
#include "runner/sensitivity.h"

class QCheckBox;
class QComboBox;
class QCPBars;
class QCPItemStraightLine;
class QCustomPlot;
class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QRadioButton;
class QScrollArea;
class QSpinBox;
class QSplitter;
class QTableWidget;

namespace quantlens::ui {

// "Every linear layer int8 except the kept ones" vs the float32 reference of the last run.
struct KeptComparison {
    QString error;                   // non-empty: nothing else is valid
    QStringList kept;                // weight tensor names kept in float32
    HiddenComparison cmp;            // last hidden state vs float32, real tokens only
    // Linear weights only: 4 bytes per value for every layer before; after, 4 per value for
    // kept layers and 1 per value plus one float32 scale per tensor (or per output row,
    // per-channel specs) for int8 layers.
    int64_t bytesBefore = 0, bytesAfter = 0;
};

struct SensitivityJobState;  // shared with the background jobs (sensitivitypanel.cpp)
struct SensitivityRunOutcome;
struct SensitivityBaseline;

class SensitivityPanel : public QWidget {
    Q_OBJECT
public:
    explicit SensitivityPanel(QWidget* parent = nullptr);
    ~SensitivityPanel() override;  // cancels a running analysis and waits for the jobs

    // Infers the encoder configuration from the tensor shapes (cheap, on the GUI thread; a
    // config.json beside the file supplies the head count). A model that is not a BERT /
    // DistilBERT / RoBERTa encoder, or whose heads cannot be inferred, disables Run with a
    // one-line reason (configText()). Passing a different model drops the result.
    void setModel(std::shared_ptr<const Model> model);

    // The quantization plan every run evaluates (each layer's spec, the activations, the
    // layers kept in float32): the same plan the Run tab and the exports use. Until one is
    // set, quantize_dynamic's. A finished result made under another plan, or other heads or
    // tokens, is marked stale (isStale(), the status line and the summary say so).
    void setPlan(const QuantPlan& plan);
    const QuantPlan& plan() const { return plan_; }
    bool isStale() const;

    // Inputs: random ids (deterministic, seed 1, as randomEncoderInput(1, length, vocab)) or
    // typed token ids, one sequence per line (parseTokenText, padded by makeEncoderInput).
    void useRandomInput(int length);
    void setTokenText(const QString& text);  // also selects the typed input

    void run();     // no-op while running or when Run is disabled
    void cancel();  // the run ends with "cancelled" and the previous result stays

    // Weight tensor names (prefix + ".weight") of the layers ticked "keep float32", in the
    // encoder's execution order. setKeptFloatLayers ticks exactly these (others are unticked;
    // names not in the current result are ignored).
    QStringList keptFloatLayers() const;
    void setKeptFloatLayers(const QStringList& weightNames);

    bool canRun() const;             // a model that is an encoder
    bool isRunning() const { return running_; }
    bool isComparingKept() const;    // the kept-set comparison is (re)computing
    const SensitivityReport* lastReport() const;
    const KeptComparison* keptResult() const { return kept_.get(); }
    QString statusText() const;      // "cancelled", errors, progress, the finished run
    QString configText() const;      // the inferred configuration, or why Run is disabled
    QStringList barLayers() const;   // weight names of the bars, top (most sensitive) first

    QPushButton* runButton() const { return runButton_; }
    QPushButton* cancelButton() const { return cancelButton_; }
    QProgressBar* progressBar() const { return progress_; }
    QCustomPlot* plot() const { return plot_; }
    QTableWidget* table() const { return table_; }
    QLabel* summaryLabel() const { return summary_; }  // the all-layers-int8 figure
    QLabel* keptLabel() const { return keptLabel_; }   // "int8 except N kept layers: ..."
    QSpinBox* headsBox() const { return heads_; }      // 0 = infer
    QSpinBox* lengthBox() const { return length_; }    // random input length
    QComboBox* viewBox() const { return view_; }       // 0 only this layer int8, 1 all but this layer
    QComboBox* rankByBox() const { return rankBy_; }   // 0 1 - cosine, 1 SQNR
    QRadioButton* randomInputButton() const { return randomInput_; }
    QRadioButton* tokenInputButton() const { return tokenInput_; }
    QPlainTextEdit* tokenEdit() const { return tokenEdit_; }

    static constexpr int kKeepColumn = 5;  // the table's "keep float32" check boxes

signals:
    void finished();                                     // a run ended (result, error or cancelled)
    void layerActivated(const QString& weightTensorName);  // a bar or its label clicked, a row double-clicked
    void keptFloatChanged();                             // the "keep float32" set changed
    void keptComparisonFinished();                       // keptResult() is up to date

private:
    void inferConfig();
    void updateButtons();
    void setStatus(const QString& s, bool error = false);
    void onProgress(uint64_t gen, int64_t done, int64_t total);
    void applyOutcome(const SensitivityRunOutcome& o);
    void showReport();
    void startKeptComparison();
    void applyKept(std::shared_ptr<const KeptComparison> k);
    void onKeepToggled();
    void updateStale();
    QString inputKey() const;  // heads + tokens of the next run, to tell a stale result
    void showBarTip(int row, const QPoint& globalPos);
    void refreshTicks();  // short names, kept layers marked
    int rowAt(const QPoint& pos) const;  // the layer row under a plot position, or -1
    bool checkKept(const QStringList& weightNames);  // true when the set changed; no signal

    std::shared_ptr<const Model> model_;
    bool configOk_ = false;
    EncoderConfig config_;
    std::shared_ptr<SensitivityJobState> state_;       // runner for (model_, heads)
    QuantPlan plan_ = QuantPlan::quantizeDynamicPreset();
    QuantPlan reportPlan_;   // the plan report_ was made under
    QString reportInput_;    // inputKey() of report_
    QuantPlan pendingPlan_;  // of the run in flight
    QString pendingInput_;

    bool running_ = false;
    uint64_t runGen_ = 0;
    std::shared_ptr<std::atomic<bool>> cancel_;
    std::shared_ptr<const SensitivityReport> report_;
    std::shared_ptr<const SensitivityBaseline> baseline_;  // the run report_ came from
    std::vector<QString> barNames_;                        // weight names, bar order
    std::vector<QString> shortLabels_;                     // their tick labels
    QPoint pressPos_;

    uint64_t keptGen_ = 0;
    bool keptRunning_ = false;  // a comparison job is out
    bool keptPending_ = false;  // the kept set changed while it was out
    std::shared_ptr<const KeptComparison> kept_;

    QThreadPool pool_;  // one thread: the jobs share one runner and run in order
    QFutureWatcher<std::shared_ptr<const SensitivityRunOutcome>>* runWatcher_ = nullptr;
    QFutureWatcher<std::shared_ptr<const KeptComparison>>* keptWatcher_ = nullptr;

    QLabel* configLabel_ = nullptr;
    QSpinBox* heads_ = nullptr;
    QRadioButton* randomInput_ = nullptr;
    QRadioButton* tokenInput_ = nullptr;
    QSpinBox* length_ = nullptr;
    QPlainTextEdit* tokenEdit_ = nullptr;
    QComboBox* view_ = nullptr;
    QComboBox* rankBy_ = nullptr;
    QPushButton* runButton_ = nullptr;
    QPushButton* cancelButton_ = nullptr;
    QProgressBar* progress_ = nullptr;
    QLabel* status_ = nullptr;
    QLabel* summary_ = nullptr;
    QSplitter* split_ = nullptr;
    QLabel* placeholder_ = nullptr;  // stands in for the chart and table until a ranking exists
    int splitRows_ = -1;  // bar count the splitter was last sized for
    QScrollArea* plotScroll_ = nullptr;
    QCustomPlot* plot_ = nullptr;
    QCPBars* bars_ = nullptr;
    QCPItemStraightLine* allLine_ = nullptr;  // the all-layers-int8 figure
    QTableWidget* table_ = nullptr;
    QLabel* keptLabel_ = nullptr;
};

}  // namespace quantlens::ui
