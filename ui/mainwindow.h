#pragma once
#include <QFutureWatcher>
#include <QMainWindow>
#include <QString>
#include <QStringList>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "model.h"
#include "plan/session.h"
#include "tensoranalysis.h"

class QAction;
class QLabel;
class QLineEdit;
class QMenu;
class QMessageBox;
class QProgressBar;
class QSortFilterProxyModel;
class QSplitter;
class QTabWidget;
class QTimer;
class QToolButton;
class QTreeView;
class QUndoStack;

namespace quantlens::ui {

class ChannelPlot;
class ComparePanel;
class ExportDialog;
class HeatmapView;
class HistogramPlot;
class ModelOverview;
class NumbersPanel;
class QuantControls;
class RunPanel;
class SensitivityPanel;
class ActivationsPanel;
class TensorTreeModel;

// The main window. Every expensive step (opening a file, decoding a tensor, quantizing
// it, the whole-model columns) runs in QtConcurrent; results come back as
// shared_ptr<const T> through continuations on this object, tagged with a generation so
// a newer request silently supersedes an older one.
class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    // useSettings=false: no QSettings read or written (screenshots and tests are reproducible).
    explicit MainWindow(QWidget* parent = nullptr, bool useSettings = true);
    ~MainWindow() override;

    void openFile(const QString& path);
    void openDemo();
    // Compares the model on screen with `path` as the reference (the Compare tab, the tree's
    // "vs ref" columns, the Tensor tab's heatmaps); off the UI thread, cancellable.
    void compareWith(const QString& path);
    // Shows an already opened model (tests, embedding); `label` is its file or description.
    void showModel(std::shared_ptr<const Model> model, const QString& label) { setModel(std::move(model), label); }
    // Screenshot / test mode: errors go to lastError() and loadFailed() instead of a dialog.
    void setInteractive(bool on) { interactive_ = on; }

    bool selectTensor(int index);        // false if out of range
    bool selectTensor(const QString& name);
    int currentTensor() const { return current_; }
    bool isIdle() const;                 // nothing loading, decoding, quantizing or summarising
    QString lastError() const { return lastError_; }
    QString sourceLabel() const { return sourceLabel_; }
    std::shared_ptr<const Model> model() const { return model_; }
    std::shared_ptr<const MatrixData> matrix() const { return matrix_; }
    std::shared_ptr<const QuantOutcome> outcome() const { return outcome_; }

    HistogramPlot* histogram() const { return histogram_; }
    HeatmapView* heatmaps() const { return heatmaps_; }
    NumbersPanel* numbers() const { return numbers_; }
    QuantControls* controls() const { return controls_; }
    QTreeView* tree() const { return tree_; }
    TensorTreeModel* treeModel() const { return treeModel_; }
    QSortFilterProxyModel* proxy() const { return proxy_; }
    QLineEdit* filterEdit() const { return filter_; }
    ModelOverview* overview() const { return overview_; }
    ChannelPlot* channels() const { return channels_; }
    RunPanel* runPanel() const { return runPanel_; }
    SensitivityPanel* sensitivityPanel() const { return sensitivity_; }
    ComparePanel* comparePanel() const { return compare_; }
    ActivationsPanel* activationsPanel() const { return activations_; }
    QTabWidget* tabs() const { return tabs_; }
    QToolButton* cancelButton() const { return cancel_; }
    QProgressBar* progressBar() const { return progress_; }
    QMenu* recentMenu() const { return recentMenu_; }

    // The user's per-layer choices: the model-wide spec, what was tuned on each tensor
    // (a manual range, with the scheme it was tuned under), the tensors ticked for export.
    const Session& session() const { return session_; }
    bool saveSessionTo(const QString& path);    // false: lastError() says why
    // Puts back a plan taken from session() on the model now open (FileWatch's Reload).
    void restoreSession(const Session& s);
    bool loadSessionFrom(const QString& path);  // applies it to the open model; asks first over unsaved tuning
    // Every plan edit (default spec, a layer's own spec, keep-float, export ticks) is one
    // undoable command; consecutive moves of one drag are one.
    QUndoStack* undoStack() const { return undo_; }
    // Puts a weight method into the plan (the Activations tab's "Use for this layer / all
    // layers"): `tensor` "" sets the model-wide default and drops the layers' own methods.
    // A method that calibrates takes `calibration` as the plan's. One undoable edit.
    void setMethod(const QString& tensor, const MethodSpec& method, const CalibrationSource& calibration);
    bool hasUnsavedTuning() const;
    // Without a user to ask (setInteractive(false)), the answer to "discard unsaved tuning?".
    void setDiscardUnsavedAnswer(bool yes) { discardAnswer_ = yes; }
    // Whether the plan quantizes tensor `index` (vectors only when the user asked).
    bool isQuantized(int index) const;
    // File ▸ Export quantized…; the dialog is window-modal and deletes itself on close.
    ExportDialog* openExportDialog();
    bool saveHistogramTo(const QString& path);  // .pdf or an image format by suffix
    bool saveHeatmapsTo(const QString& path);

public slots:
    void nextLayer();
    void previousLayer();
    void showOpenDialog();
    void showCompareDialog();
    // Stops what the status bar's progress shows: an open in progress is abandoned (the
    // window goes back to the previous model at once), the whole-model statistics stop.
    void cancelBackgroundWork();

signals:
    void modelLoaded();
    void loadFailed(const QString& reason);
    void tensorShown(int index);           // decoded and drawn (before quantization)
    void quantizationUpdated();            // numbers, lines and heatmaps show a new result
    void summariesFinished();
    void becameIdle();

protected:
    void dragEnterEvent(QDragEnterEvent* e) override;
    void dropEvent(QDropEvent* e) override;
    void closeEvent(QCloseEvent* e) override;

private:
    struct Loaded {
        std::shared_ptr<const Model> model;
        Error error;
    };
    void buildUi();
    void buildMenus();
    void startLoad(const QString& label, std::function<Loaded(const OpenProgress&)> job);
    // Drops the current open's progress state; stopReader also tells its reader to stop.
    void endLoadControl(bool stopReader);
    void setModel(std::shared_ptr<const Model> model, const QString& label);
    void showError(const QString& title, const QString& text, const QString& oneLine = {});
    void onCurrentChanged(const QModelIndex& current);
    void showTensorAt(int index);
    void onSpecChanged();
    void requestQuantize();
    void applyOutcome(std::shared_ptr<const QuantOutcome> q);
    void restartSummaries();
    void selectNeighbourLayer(int step);
    void checkIdle();
    void updateStatus();
    void updateTitle();
    void addRecent(const QString& path);
    void rebuildRecentMenu();
    void saveHistogram();
    void saveHeatmaps();
    void saveSessionDialog();
    void loadSessionDialog();
    void recordSpec();
    void setScopeForCurrent(int scope);  // QuantControls::Scope
    void quantizeCurrentAnyway();
    void updateDragRule();
    void pushPlanEdit(const Session& before, const QString& text, const QString& mergeKey = {});
    void restorePlan(const Session& plan);
    void refreshTuned();
    void showStoredSpec(int tensor);
    void pushKeptToSensitivity();
    void pushPlan();
    std::string tunedSpecText(int tensor) const;  // "" when the tensor follows the model-wide spec
    void summaryFromOutcome();
    void loadSettings();
    void buildCompare();
    void onComparisonFinished();
    void showPairOnTensorTab(int tensor);
    void saveSettings() const;

    // Views
    QTreeView* tree_ = nullptr;
    TensorTreeModel* treeModel_ = nullptr;
    QSortFilterProxyModel* proxy_ = nullptr;
    QLineEdit* filter_ = nullptr;
    QTabWidget* tabs_ = nullptr;
    QuantControls* controls_ = nullptr;
    HistogramPlot* histogram_ = nullptr;
    NumbersPanel* numbers_ = nullptr;
    HeatmapView* heatmaps_ = nullptr;
    ChannelPlot* channels_ = nullptr;
    ModelOverview* overview_ = nullptr;
    RunPanel* runPanel_ = nullptr;
    SensitivityPanel* sensitivity_ = nullptr;
    ComparePanel* compare_ = nullptr;
    ActivationsPanel* activations_ = nullptr;
    QSplitter* mainSplit_ = nullptr;
    QSplitter* rightSplit_ = nullptr;
    QSplitter* topSplit_ = nullptr;
    QLabel* statusFile_ = nullptr;
    QLabel* statusInfo_ = nullptr;
    QProgressBar* progress_ = nullptr;
    QToolButton* cancel_ = nullptr;
    QMenu* recentMenu_ = nullptr;
    QAction* nextAction_ = nullptr;
    QAction* prevAction_ = nullptr;

    // State (GUI thread only)
    std::shared_ptr<const Model> model_;
    QString sourceLabel_;   // file path or "synthetic demo"
    QString lastError_;
    std::shared_ptr<const MatrixData> matrix_;
    std::shared_ptr<const QuantOutcome> outcome_;
    int current_ = -1;
    bool tunedPending_ = false;  // the tree's "tuned" texts wait for the end of a drag
    bool interactive_ = true;

    // Shared with the opening thread, which publishes how far it got (HDF5 copies its data
    // out; the other formats map theirs and open at once) and stops between datasets when
    // asked. The GUI reads it on a timer rather than receiving calls from that thread.
    struct LoadControl {
        std::atomic<int> permille{-1};
        std::atomic<bool> cancel{false};
    };
    std::shared_ptr<LoadControl> loadControl_;
    QTimer* loadPoll_ = nullptr;

    uint64_t loadGen_ = 0, matrixGen_ = 0, quantGen_ = 0;
    bool loading_ = false, decoding_ = false, quantBusy_ = false, quantPending_ = false;
    uint64_t suggestionsGen_ = 0;  // the matrix generation the markers were computed for
    Scheme suggestionsScheme_ = Scheme::Seed;
    std::vector<CalibSuggestion> markerSource_;  // the histogram's markers, same order
    bool summaryRunning_ = false;
    bool useSettings_ = true;
    QuantSpec summarySpec_;
    bool haveSummarySpec_ = false;
    QFutureWatcher<TensorSummary>* summaryWatcher_ = nullptr;
    QStringList recent_;
    Session session_;
    // Tuned tensors' specs (specToJsonText) when the running summary job started: a result
    // computed with a tuning the user has since changed is dropped.
    std::map<int, std::string> summaryTuned_;
    bool applyingSpec_ = false;  // controls_ shows a stored spec: not a user choice
    QUndoStack* undo_ = nullptr;
    bool restoringPlan_ = false;  // undo/redo is writing the plan: not a new edit
    int dragSerial_ = 0;          // one undo step per drag
    bool discardAnswer_ = true;
};

}  // namespace quantlens::ui
