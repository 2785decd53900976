#include "mainwindow.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPainter>
#include <QPdfWriter>
#include <QProgressBar>
#include <QPromise>
#include <QSettings>
#include <QSortFilterProxyModel>
#include <QSplitter>
#include <QStatusBar>
#include <QTabWidget>
#include <QTimer>
#include <QToolButton>
#include <QTreeView>
#include <QUndoCommand>
#include <QUndoStack>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "contraststyle.h"
#include "qcp.h"

#include <algorithm>
#include <type_traits>

#include "channelplot.h"
#include "comparepanel.h"
#include "exportdialog.h"
#include "filewatch.h"
#include "formatting.h"
#include "heatmapplot.h"
#include "heatmapview.h"
#include "histogramplot.h"
#include "io/demomodel.h"
#include "layers.h"
#include "modeloverview.h"
#include "numberspanel.h"
#include "quantcontrols.h"
#include "runpanel.h"
#include "sensitivitypanel.h"
#include "activationspanel.h"
#include "tasks/modelsummary.h"
#include "tensortreemodel.h"
#include "workpool.h"

namespace quantlens::ui {

namespace {

// Display cells per heatmap side: about the pixels a third of a wide window offers.
constexpr int64_t kMaxCells = 384;
constexpr int kMaxRecent = 8;

struct MatrixJob {
    std::shared_ptr<const MatrixData> matrix;
    QString error;
};
struct QuantJob {
    std::shared_ptr<const QuantOutcome> outcome;
    QString error;
};

// Runs `job` on the thread pool and `done(result)` on ctx's thread. A QFutureWatcher
// connected before setFuture is the documented race-free order; Qt 6.4's
// QFuture::then(context, ...) occasionally dropped the continuation of a job that had
// already finished (a garbage file is rejected in microseconds).
template <class Job, class Done>
void runThen(QObject* ctx, Job&& job, Done&& done)
{
    using T = std::invoke_result_t<Job>;
    auto* watcher = new QFutureWatcher<T>(ctx);
    QObject::connect(watcher, &QFutureWatcherBase::finished, ctx,
                     [watcher, done = std::forward<Done>(done)]() mutable {
                         watcher->deleteLater();
                         done(watcher->result());
                     });
    watcher->setFuture(QtConcurrent::run(workPool(), std::forward<Job>(job)));
}

bool sameModelWide(const QuantSpec& a, const QuantSpec& b)
{
    return a.scheme == b.scheme && a.granularity == b.granularity && a.groupSize == b.groupSize && a.calib == b.calib &&
           a.bits == b.bits && a.isUnsigned == b.isUnsigned && a.reduceRange == b.reduceRange &&
           a.percentile == b.percentile;
}

QColor markerColor(CalibMethod m)
{
    switch (m) {
    case CalibMethod::MinMax: return QColor(0x55, 0x55, 0x55);
    case CalibMethod::Percentile: return QColor(0x94, 0x67, 0xbd);
    case CalibMethod::Mse: return QColor(0x2c, 0xa0, 0x2c);
    case CalibMethod::Entropy: return QColor(0xff, 0x7f, 0x0e);
    case CalibMethod::HistogramL2: return QColor(0x17, 0xbe, 0xcf);
    case CalibMethod::Manual: return QColor(0x8c, 0x56, 0x4b);
    }
    return Qt::black;
}

// One plan edit: the plan before and after. The first redo() is the edit itself, already
// made by the window; later ones, and undo(), write a snapshot back.
class PlanCommand : public QUndoCommand {
public:
    PlanCommand(std::function<void(const Session&)> apply, Session before, Session after, const QString& text,
                QString mergeKey)
        : QUndoCommand(text), apply_(std::move(apply)), before_(std::move(before)), after_(std::move(after)),
          mergeKey_(std::move(mergeKey))
    {
    }
    void undo() override { apply_(before_); }
    void redo() override
    {
        if (first_) {
            first_ = false;
            return;
        }
        apply_(after_);
    }
    int id() const override { return mergeKey_.isEmpty() ? -1 : 1; }
    bool mergeWith(const QUndoCommand* other) override
    {
        const auto* o = static_cast<const PlanCommand*>(other);
        if (o->mergeKey_ != mergeKey_)
            return false;
        after_ = o->after_;
        return true;
    }

private:
    std::function<void(const Session&)> apply_;
    Session before_, after_;
    QString mergeKey_;
    bool first_ = true;
};

bool samePlan(const Session& a, const Session& b)
{
    return a.plan() == b.plan() && a.exportSelection == b.exportSelection;
}

// What the histogram lets a drag do: schemes with zero point 0 clamp at +-absmax, the
// affine one always keeps 0 inside its range.
HistogramPlot::DragRule dragRuleFor(Scheme s)
{
    return s == Scheme::TorchAffine ? HistogramPlot::DragRule::IncludeZero : HistogramPlot::DragRule::Mirror;
}

}  // namespace

MainWindow::MainWindow(QWidget* parent, bool useSettings) : QMainWindow(parent), useSettings_(useSettings)
{
    setAcceptDrops(true);
    setWindowIcon(QIcon(QStringLiteral(":/icons/quantlens.png")));
    summaryWatcher_ = new QFutureWatcher<TensorSummary>(this);
    connect(summaryWatcher_, &QFutureWatcher<TensorSummary>::resultReadyAt, this, [this](int k) {
        const TensorSummary s = summaryWatcher_->resultAt(k);
        auto it = summaryTuned_.find(s.index);
        if ((it == summaryTuned_.end() ? std::string() : it->second) != tunedSpecText(s.index))
            return;  // tuned differently since the job started; applyOutcome has the fresh figures
        treeModel_->setSummary(s);
        overview_->addSummary(s);
    });
    connect(summaryWatcher_, &QFutureWatcher<TensorSummary>::progressValueChanged, this, [this](int v) {
        if (!loading_ && !decoding_)
            progress_->setValue(v);
    });
    connect(summaryWatcher_, &QFutureWatcher<TensorSummary>::finished, this, [this] {
        summaryRunning_ = false;
        emit summariesFinished();
        checkIdle();
    });
    undo_ = new QUndoStack(this);
    buildUi();
    buildMenus();
    new FileWatch(this);  // the bar that offers Reload when the open files change on disk
    // A first start without saved geometry: big enough for the tree and three heatmaps.
    resize(1400, 900);
    mainSplit_->setSizes({570, 830});
    session_.defaultSpec = controls_->spec();
    updateDragRule();
    if (useSettings_)
        loadSettings();
    undo_->clear();  // restoring the last scheme is not an edit
    updateTitle();
    updateStatus();
}

MainWindow::~MainWindow()
{
    // Nothing of ours may run after the window is gone.
    summaryWatcher_->future().cancel();
    summaryWatcher_->waitForFinished();
}

void MainWindow::buildUi()
{
    mainSplit_ = new QSplitter(Qt::Horizontal, this);
    mainSplit_->setObjectName(QStringLiteral("mainSplit"));

    auto* left = new QWidget(mainSplit_);
    left->setMinimumWidth(240);  // the tree must stay readable in a small window
    auto* lv = new QVBoxLayout(left);
    lv->setContentsMargins(4, 4, 0, 4);
    filter_ = new QLineEdit(left);
    filter_->setObjectName(QStringLiteral("filterEdit"));
    filter_->setPlaceholderText(tr("Filter tensors (regular expression, e.g. attention|ffn)"));
    filter_->setClearButtonEnabled(true);
    lv->addWidget(filter_);
    tree_ = new QTreeView(left);
    tree_->setObjectName(QStringLiteral("tensorTree"));
    useContrastingIndicators(tree_);
    treeModel_ = new TensorTreeModel(this);
    proxy_ = new QSortFilterProxyModel(this);
    proxy_->setSourceModel(treeModel_);
    proxy_->setRecursiveFilteringEnabled(true);  // keep the modules above a matching tensor
    proxy_->setFilterRole(TensorTreeModel::FullNameRole);
    proxy_->setFilterCaseSensitivity(Qt::CaseInsensitive);
    proxy_->setSortRole(TensorTreeModel::SortRole);
    tree_->setModel(proxy_);
    tree_->setUniformRowHeights(true);
    tree_->setIndentation(10);  // module paths are deep; keep the columns on screen
    tree_->setAlternatingRowColors(true);
    tree_->header()->setSortIndicator(-1, Qt::AscendingOrder);  // file order until a header is clicked
    tree_->setSortingEnabled(true);
    // Every column fits the pane: the numbers at their width, names elided in the middle
    // (the leaf and the module both stay readable) instead of a horizontal scroll bar.
    tree_->setTextElideMode(Qt::ElideMiddle);
    tree_->header()->setStretchLastSection(false);
    tree_->header()->setMinimumSectionSize(24);
    tree_->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
    tree_->header()->setSectionResizeMode(TensorTreeModel::NameColumn, QHeaderView::Stretch);
    // Parameters, dtype and size repeat what the shape and the status bar say; they are a
    // right-click on the header away, and the others fit beside readable names.
    tree_->setColumnHidden(TensorTreeModel::DTypeColumn, true);
    tree_->setColumnHidden(TensorTreeModel::ParamsColumn, true);
    tree_->setColumnHidden(TensorTreeModel::SizeColumn, true);
    tree_->header()->setContextMenuPolicy(Qt::CustomContextMenu);
    connect(tree_->header(), &QHeaderView::customContextMenuRequested, this, [this](const QPoint& at) {
        QMenu menu(this);
        for (int c = 1; c < TensorTreeModel::ColumnCount; ++c) {
            QAction* a = menu.addAction(treeModel_->headerData(c, Qt::Horizontal).toString());
            a->setCheckable(true);
            a->setChecked(!tree_->isColumnHidden(c));
            connect(a, &QAction::toggled, this, [this, c](bool on) { tree_->setColumnHidden(c, !on); });
        }
        menu.exec(tree_->header()->mapToGlobal(at));
    });
    lv->addWidget(tree_, 1);
    connect(tree_->selectionModel(), &QItemSelectionModel::currentChanged, this,
            [this](const QModelIndex& cur) { onCurrentChanged(cur); });
    connect(filter_, &QLineEdit::textChanged, this, [this](const QString& text) {
        const QRegularExpression re(text, QRegularExpression::CaseInsensitiveOption);
        filter_->setStyleSheet(re.isValid() ? QString() : QStringLiteral("QLineEdit { color: #c0392b; }"));
        filter_->setToolTip(re.isValid() ? QString() : re.errorString());
        if (!re.isValid())
            return;
        proxy_->setFilterRegularExpression(re);
        tree_->expandAll();
    });

    tabs_ = new QTabWidget(mainSplit_);
    tabs_->setObjectName(QStringLiteral("viewTabs"));
    auto* tensorPage = new QWidget(tabs_);
    auto* tv = new QVBoxLayout(tensorPage);
    tv->setContentsMargins(4, 4, 4, 4);
    controls_ = new QuantControls(tensorPage);
    tv->addWidget(controls_);
    rightSplit_ = new QSplitter(Qt::Vertical, tensorPage);
    topSplit_ = new QSplitter(Qt::Horizontal, rightSplit_);
    histogram_ = new HistogramPlot(topSplit_);
    histogram_->setObjectName(QStringLiteral("histogram"));
    numbers_ = new NumbersPanel(topSplit_);
    numbers_->setObjectName(QStringLiteral("numbers"));
    topSplit_->addWidget(histogram_);
    topSplit_->addWidget(numbers_);
    topSplit_->setStretchFactor(0, 3);
    topSplit_->setStretchFactor(1, 1);
    heatmaps_ = new HeatmapView(rightSplit_);
    rightSplit_->addWidget(topSplit_);
    rightSplit_->addWidget(heatmaps_);
    rightSplit_->setStretchFactor(0, 1);
    rightSplit_->setStretchFactor(1, 1);
    tv->addWidget(rightSplit_, 1);
    tabs_->addTab(tensorPage, tr("Tensor"));
    channels_ = new ChannelPlot(tabs_);
    channels_->setObjectName(QStringLiteral("channelPlot"));
    tabs_->addTab(channels_, tr("Per channel"));
    overview_ = new ModelOverview(tabs_);
    tabs_->addTab(overview_, tr("Model overview"));
    runPanel_ = new RunPanel(tabs_);
    runPanel_->setObjectName(QStringLiteral("runPanel"));
    tabs_->addTab(runPanel_, tr("Run"));
    sensitivity_ = new SensitivityPanel(tabs_);
    sensitivity_->setObjectName(QStringLiteral("sensitivityPanel"));
    tabs_->addTab(sensitivity_, tr("Sensitivity"));
    activations_ = new ActivationsPanel(tabs_);
    activations_->setObjectName(QStringLiteral("activationsPanel"));
    tabs_->addTab(activations_, tr("Activations"));
    connect(activations_, &ActivationsPanel::methodChosen, this, &MainWindow::setMethod);
    connect(activations_, &ActivationsPanel::activationRangeChosen, this,
            [this](const QString& tensor, const ActivationRange& r) {
                const Session before = session_;
                session_.activationRanges[tensor.toStdString()] = r;
                pushPlanEdit(before, tr("static input range of %1").arg(tensor), QStringLiteral("actrange:") + tensor);
                pushPlan();
            });
    connect(activations_, &ActivationsPanel::staticRangesChosen, this,
            [this](const std::map<std::string, ActivationRange>& ranges, const CalibrationSource& calibration) {
                const Session before = session_;
                for (const auto& [name, r] : ranges)
                    session_.activationRanges[name] = r;
                session_.activations.mode = ActivationMode::Static;
                if (session_.calibration.empty())
                    session_.calibration = calibration;
                pushPlanEdit(before, tr("static activations, %1 ranges").arg(ranges.size()));
                pushPlan();
            });
    buildCompare();
    connect(sensitivity_, &SensitivityPanel::layerActivated, this, [this](const QString& name) {
        selectTensor(name);
        tabs_->setCurrentIndex(0);
    });
    connect(sensitivity_, &SensitivityPanel::finished, this, [this] {
        // Layers a loaded session keeps in float32 get their ticks once there is a ranking.
        if (!session_.keepFloat.empty() && sensitivity_->keptFloatLayers().isEmpty())
            pushKeptToSensitivity();
    });
    connect(sensitivity_, &SensitivityPanel::keptFloatChanged, this, [this] {
        if (restoringPlan_)
            return;
        const Session before = session_;
        session_.keepFloat.clear();
        for (const QString& n : sensitivity_->keptFloatLayers())
            session_.keepFloat.insert(n.toStdString());
        pushPlanEdit(before, tr("keep layers in float"));
        pushPlan();
    });
    connect(runPanel_, &RunPanel::planEdited, this, [this](const QuantPlan& p) {
        const Session before = session_;
        session_.activations = p.activations;
        if (!(p.defaultSpec == session_.defaultSpec)) {
            session_.defaultSpec = p.defaultSpec;
            if (model_ && current_ >= 0 && !session_.isTuned(model_->tensors[size_t(current_)].name))
                showStoredSpec(current_);  // the controls show the model-wide spec it now follows
            restartSummaries();
        }
        pushPlanEdit(before, tr("activations and default granularity"));
        pushPlan();
    });
    connect(overview_, &ModelOverview::layerActivated, this, [this](int t) {
        selectTensor(t);
        tabs_->setCurrentIndex(0);
    });

    mainSplit_->addWidget(left);
    mainSplit_->addWidget(tabs_);
    mainSplit_->setStretchFactor(0, 0);
    mainSplit_->setStretchFactor(1, 1);
    mainSplit_->setSizes({570, 830});
    topSplit_->setSizes({600, 330});
    setCentralWidget(mainSplit_);

    statusFile_ = new QLabel(this);
    statusInfo_ = new QLabel(this);
    progress_ = new QProgressBar(this);
    progress_->setMaximumWidth(200);
    progress_->setTextVisible(true);
    progress_->hide();
    statusBar()->addWidget(statusFile_, 1);
    statusBar()->addPermanentWidget(statusInfo_);
    statusBar()->addPermanentWidget(progress_);
    cancel_ = new QToolButton(this);
    cancel_->setObjectName(QStringLiteral("cancelButton"));
    cancel_->setText(tr("Cancel"));
    cancel_->setToolTip(tr("Stop opening the file / computing the model statistics (Esc)"));
    cancel_->hide();
    statusBar()->addPermanentWidget(cancel_);
    connect(cancel_, &QToolButton::clicked, this, &MainWindow::cancelBackgroundWork);
    loadPoll_ = new QTimer(this);
    loadPoll_->setInterval(100);
    connect(loadPoll_, &QTimer::timeout, this, [this] {
        const int permille = loadControl_ && loading_ ? loadControl_->permille.load() : -1;
        if (permille < 0)
            return;  // nothing reported: the busy indicator stays
        progress_->setRange(0, 1000);
        progress_->setValue(permille);
        progress_->setFormat(tr("opening… %p%"));
    });
    connect(treeModel_, &TensorTreeModel::checkedChanged, this, [this] {
        if (restoringPlan_)
            return;
        const Session before = session_;
        session_.exportSelection = treeModel_->checkedNames();
        pushPlanEdit(before, tr("export selection"));
    });

    connect(controls_, &QuantControls::specChanged, this, &MainWindow::onSpecChanged);
    connect(controls_, &QuantControls::logScaleToggled, histogram_, &HistogramPlot::setLogScale);
    connect(histogram_, &HistogramPlot::rangeDragged, controls_, &QuantControls::setManualRange);
    connect(histogram_, &HistogramPlot::rangeDragFinished, this, [this](double lo, double hi) {
        // The lines stay where they were dropped: the manual range is what they show.
        controls_->setManualRange(lo, hi);
        ++dragSerial_;  // the next drag is its own undo step
        summaryFromOutcome();  // skipped while dragging; a newer result still on its way calls it again
        if (tunedPending_)
            refreshTuned();
    });
    connect(controls_, &QuantControls::scopeChanged, this, [this](QuantControls::Scope sc) { setScopeForCurrent(int(sc)); });
    connect(controls_, &QuantControls::quantizeAnywayRequested, this, &MainWindow::quantizeCurrentAnyway);
    connect(histogram_, &HistogramPlot::markerClicked, this, [this](int k) {
        if (!outcome_ || k < 0 || size_t(k) >= markerSource_.size())
            return;
        controls_->setManualRange(markerSource_[size_t(k)].lo, markerSource_[size_t(k)].hi);
    });
    connect(heatmaps_, &HeatmapView::hoverChanged, this, [this](const QString& s) { statusBar()->showMessage(s, 4000); });
}

void MainWindow::buildMenus()
{
    QMenu* file = menuBar()->addMenu(tr("&File"));
    QAction* open = file->addAction(tr("&Open…"), this, &MainWindow::showOpenDialog);
    open->setShortcut(QKeySequence::Open);
    file->addAction(tr("Open &demo model"), this, &MainWindow::openDemo);
    recentMenu_ = file->addMenu(tr("Open &recent"));
    file->addAction(tr("Co&mpare with…"), this, &MainWindow::showCompareDialog);
    file->addSeparator();
    QAction* exportAct = file->addAction(tr("&Export quantized…"), this, [this] { openExportDialog(); });
    exportAct->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    file->addAction(tr("Save &session…"), this, &MainWindow::saveSessionDialog);
    file->addAction(tr("&Load session…"), this, &MainWindow::loadSessionDialog);
    file->addSeparator();
    QAction* saveHist = file->addAction(tr("Save &histogram as…"), this, &MainWindow::saveHistogram);
    saveHist->setShortcut(QKeySequence::Save);
    file->addAction(tr("Save heat&maps as…"), this, &MainWindow::saveHeatmaps);
    file->addSeparator();
    QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);

    QMenu* edit = menuBar()->addMenu(tr("&Edit"));
    QAction* undoAct = undo_->createUndoAction(this, tr("&Undo"));
    undoAct->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Z));
    undoAct->setObjectName(QStringLiteral("undoAction"));
    QAction* redoAct = undo_->createRedoAction(this, tr("&Redo"));
    redoAct->setShortcuts({QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_Z), QKeySequence(Qt::CTRL | Qt::Key_Y)});
    redoAct->setObjectName(QStringLiteral("redoAction"));
    edit->addAction(undoAct);
    edit->addAction(redoAct);
    addAction(undoAct);  // shortcuts work without the menu bar (offscreen, tests)
    addAction(redoAct);
    edit->addSeparator();
    QAction* copy = edit->addAction(tr("&Copy numbers"), numbers_, &NumbersPanel::copyToClipboard);
    copy->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_C));
    QAction* find = edit->addAction(tr("&Filter tensors"), this, [this] {
        filter_->setFocus();
        filter_->selectAll();
    });
    find->setShortcut(QKeySequence::Find);

    QAction* tickLinear = edit->addAction(tr("&Tick all layers for export"), this, [this] { treeModel_->checkAllLinear(); });
    tickLinear->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_A));
    edit->addAction(tr("&Untick all"), this, [this] { treeModel_->clearChecks(); });
    edit->addAction(tr("&Forget this layer's tuning"), this, [this] {
        if (!model_ || current_ < 0)
            return;
        const Session before = session_;
        session_.overrides.erase(model_->tensors[size_t(current_)].name);
        showStoredSpec(current_);
        refreshTuned();
        requestQuantize();
        pushPlanEdit(before, tr("forget this layer's tuning"));
    });
    QAction* cancelAct = edit->addAction(tr("&Cancel background work"), this, &MainWindow::cancelBackgroundWork);
    cancelAct->setShortcut(QKeySequence(Qt::Key_Escape));

    QMenu* view = menuBar()->addMenu(tr("&View"));
    nextAction_ = view->addAction(tr("&Next layer"), this, &MainWindow::nextLayer);
    nextAction_->setShortcuts({QKeySequence(Qt::CTRL | Qt::Key_Down), QKeySequence(Qt::Key_F8)});
    prevAction_ = view->addAction(tr("&Previous layer"), this, &MainWindow::previousLayer);
    prevAction_->setShortcuts({QKeySequence(Qt::CTRL | Qt::Key_Up), QKeySequence(Qt::SHIFT | Qt::Key_F8)});
    view->addSeparator();
    QAction* resetZoom = view->addAction(tr("&Reset heatmap zoom"), this, [this] {
        heatmaps_->before()->resetView();
        heatmaps_->before()->replot(QCustomPlot::rpQueuedReplot);
    });
    resetZoom->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_0));
    for (int i = 0; i < tabs_->count(); ++i) {
        QAction* a = view->addAction(tabs_->tabText(i), this, [this, i] { tabs_->setCurrentIndex(i); });
        a->setShortcut(QKeySequence(Qt::ALT | (Qt::Key_1 + i)));
    }
    rebuildRecentMenu();
}

// ---------------------------------------------------------------- loading

void MainWindow::showOpenDialog()
{
    QSettings settings;
    const QString dir = useSettings_ ? settings.value(QStringLiteral("lastDir")).toString() : QString();
    const QString path = QFileDialog::getOpenFileName(
        this, tr("Open model"), dir,
        tr("Model files (*.safetensors *.bin *.pt *.pth *.h5 *.hdf5 *.keras *.gguf *.onnx *.npz *.npy *.json);;All files (*)"));
    if (path.isEmpty())
        return;
    if (useSettings_)
        settings.setValue(QStringLiteral("lastDir"), QFileInfo(path).absolutePath());
    openFile(path);
}

void MainWindow::openFile(const QString& path)
{
    const std::string p = QFile::encodeName(path).toStdString();
    startLoad(path, [p](const OpenProgress& progress) {
        Loaded out;
        auto r = openModel(p, progress);
        if (r)
            out.model = std::make_shared<const Model>(std::move(*r));
        else
            out.error = r.error();
        return out;
    });
}

void MainWindow::openDemo()
{
    startLoad(tr("synthetic demo"), [](const OpenProgress&) {
        Loaded out;
        out.model = std::make_shared<const Model>(makeDemoModel());
        return out;
    });
}

void MainWindow::startLoad(const QString& label, std::function<Loaded(const OpenProgress&)> job)
{
    const uint64_t gen = ++loadGen_;
    endLoadControl(true);  // a superseded open stops reading
    auto control = std::make_shared<LoadControl>();
    loadControl_ = control;
    OpenProgress progress = [control](double f) {
        control->permille = int(std::clamp(f, 0.0, 1.0) * 1000);
        return !control->cancel.load();
    };
    loadPoll_->start();
    loading_ = true;
    cancel_->show();
    progress_->setRange(0, 0);
    progress_->setFormat(tr("opening…"));
    progress_->show();
    statusBar()->showMessage(tr("Opening %1…").arg(label));
    runThen(this, [job = std::move(job), progress = std::move(progress)] { return job(progress); },
            [this, gen, label](Loaded r) {
        if (gen != loadGen_)
            return;  // a newer open superseded this one, or it was cancelled
        loading_ = false;
        endLoadControl(false);
        statusBar()->clearMessage();
        if (!r.model) {
            showError(tr("Cannot open file"), tr("Could not open %1:\n%2").arg(label, qs(r.error.oneLine())),
                      qs(r.error.oneLine()));
            checkIdle();
            return;
        }
        setModel(r.model, label);
    });
}

void MainWindow::endLoadControl(bool stopReader)
{
    if (loadControl_ && stopReader)
        loadControl_->cancel = true;
    loadControl_.reset();
    loadPoll_->stop();
}

void MainWindow::showError(const QString& title, const QString& text, const QString& oneLine)
{
    lastError_ = oneLine.isEmpty() ? QString(text).replace(QLatin1Char('\n'), QLatin1Char(' ')) : oneLine;
    if (interactive_) {
        // Window-modal and non-blocking: the window stays alive behind it and tests can
        // find and close it.
        auto* box = new QMessageBox(QMessageBox::Warning, title, text, QMessageBox::Ok, this);
        box->setObjectName(QStringLiteral("errorBox"));
        box->setAttribute(Qt::WA_DeleteOnClose);
        box->open();
    }
    emit loadFailed(lastError_);
}

void MainWindow::setModel(std::shared_ptr<const Model> model, const QString& label)
{
    model_ = std::move(model);
    sourceLabel_ = model_->synthetic ? tr("synthetic demo") : label;
    {
        // Per-layer choices belong to the model they were made on; the model-wide spec stays.
        Session fresh;
        fresh.defaultSpec = session_.defaultSpec;
        fresh.activations = session_.activations;
        fresh.modelPath = model_->synthetic ? std::string() : QFile::encodeName(label).toStdString();
        fresh.modelTensors = int64_t(model_->tensors.size());
        fresh.modelFingerprint = modelFingerprint(*model_);
        session_ = std::move(fresh);
    }
    undo_->clear();  // the plan of another model cannot be undone into this one
    current_ = -1;
    ++matrixGen_;
    ++quantGen_;
    matrix_.reset();
    outcome_.reset();
    treeModel_->reset(model_);
    compare_->setModel(model_);
    onComparisonFinished();
    runPanel_->setSelection(model_, -1);
    activations_->setSelection(model_, -1);
    sensitivity_->setModel(model_);
    pushPlan();
    tree_->expandAll();
    histogram_->clearHistogram(tr("Select a tensor"));
    heatmaps_->clear(tr("Select a 2-D tensor"));
    numbers_->clear(tr("no tensor selected"));
    channels_->clearData(tr("Select a 2-D tensor"));
    if (!model_->synthetic)
        addRecent(label);
    updateTitle();
    updateStatus();
    restartSummaries();

    // Start on the first linear layer: that is what the tool is for.
    int first = -1;
    if (!treeModel_->linearTensors().empty())
        first = treeModel_->linearTensors().front();
    for (size_t i = 0; first < 0 && i < model_->tensors.size(); ++i)
        if (model_->tensors[i].rank() == 2 && model_->tensors[i].decodable())
            first = int(i);
    if (first < 0 && !model_->tensors.empty())
        first = 0;
    if (first >= 0)
        selectTensor(first);
    emit modelLoaded();
    checkIdle();
}

// ---------------------------------------------------------------- selection

bool MainWindow::selectTensor(int index)
{
    if (!model_ || index < 0 || size_t(index) >= model_->tensors.size())
        return false;
    const QModelIndex src = treeModel_->indexForTensor(index);
    const QModelIndex idx = proxy_->mapFromSource(src);
    if (idx.isValid()) {
        tree_->setCurrentIndex(idx);
        tree_->scrollTo(idx);
    }
    if (current_ != index)
        onCurrentChanged(idx.isValid() ? idx : QModelIndex());
    if (current_ != index) {
        // Filtered out of the tree: show it anyway.
        current_ = -2;
        showTensorAt(index);
    }
    return true;
}

bool MainWindow::selectTensor(const QString& name)
{
    if (!model_)
        return false;
    for (size_t i = 0; i < model_->tensors.size(); ++i)
        if (qs(model_->tensors[i].name) == name)
            return selectTensor(int(i));
    return false;
}

void MainWindow::onCurrentChanged(const QModelIndex& current)
{
    const int t = current.isValid() ? current.data(TensorTreeModel::TensorIndexRole).toInt() : -1;
    if (t < 0)
        return;  // a module node: keep showing the last tensor
    showTensorAt(t);
}

void MainWindow::showTensorAt(int t)
{
    if (t == current_ || !model_)
        return;
    current_ = t;
    runPanel_->setSelection(model_, t);
    activations_->setSelection(model_, t);
    const uint64_t gen = ++matrixGen_;
    ++quantGen_;  // an in-flight result belongs to the previous tensor
    matrix_.reset();
    outcome_.reset();
    showStoredSpec(t);  // a tuned range belongs to the tensor it was tuned on
    const Tensor tensor = model_->tensors[size_t(t)];  // cheap: a view plus keep-alive
    const QString name = qs(tensor.name);
    if (!tensor.decodable()) {
        const QString why = tr("%1: %2 is not decoded%3")
                                .arg(name, qs(tensor.opaqueType), tensor.note.empty() ? QString() : tr(" (%1)").arg(qs(tensor.note)));
        histogram_->clearHistogram(why);
        heatmaps_->clear(why);
        numbers_->clear(why);
        channels_->clearData(why);
        checkIdle();
        return;
    }
    decoding_ = true;
    progress_->setRange(0, 0);
    progress_->setFormat(tr("decoding…"));
    progress_->show();
    histogram_->clearHistogram(tr("decoding %1…").arg(name));
    runThen(this, [tensor] {
        MatrixJob j;
        auto r = loadMatrix(tensor, 256, kMaxCells);
        if (r)
            j.matrix = *r;
        else
            j.error = qs(r.error().oneLine());
        return j;
    }, [this, gen, name](MatrixJob j) {
        if (gen != matrixGen_)
            return;
        decoding_ = false;
        if (!j.matrix) {
            histogram_->clearHistogram(j.error);
            heatmaps_->clear(j.error);
            numbers_->clear(j.error);
            channels_->clearData(j.error);
            checkIdle();
            return;
        }
        matrix_ = j.matrix;
        const MatrixData& m = *matrix_;
        QString title = name + QStringLiteral("  ") + formatShape(m.storedShape);
        if (m.transposed)
            title += tr(" (stored [in, out])");
        histogram_->setMarkers({});
        markerSource_.clear();
        histogram_->setHistogram(m.histogram, m.stats, title);
        histogram_->setLogScale(controls_->logScale());
        if (m.rows > 1 || m.cols > 1)
            heatmaps_->setMatrix(matrix_);
        showPairOnTensorTab(current_);
        numbers_->clear(tr("quantizing…"));
        emit tensorShown(current_);
        requestQuantize();
    });
}

void MainWindow::nextLayer() { selectNeighbourLayer(+1); }
void MainWindow::previousLayer() { selectNeighbourLayer(-1); }

void MainWindow::selectNeighbourLayer(int step)
{
    const std::vector<int>& lin = treeModel_->linearTensors();
    if (lin.empty())
        return;
    int target = -1;
    if (step > 0) {
        for (int t : lin)
            if (t > current_) {
                target = t;
                break;
            }
    } else {
        for (auto it = lin.rbegin(); it != lin.rend(); ++it)
            if (*it < current_ || current_ < 0) {
                target = *it;
                break;
            }
    }
    if (target >= 0)
        selectTensor(target);
}

// ---------------------------------------------------------------- quantization

void MainWindow::onSpecChanged()
{
    updateDragRule();
    if (!applyingSpec_)
        recordSpec();
    requestQuantize();
    if (model_ && (!haveSummarySpec_ || !sameModelWide(modelWideSpec(session_.defaultSpec), summarySpec_)))
        restartSummaries();
}

void MainWindow::recordSpec()
{
    const Session before = session_;
    const QuantSpec s = controls_->spec();
    const bool onTensor = model_ && current_ >= 0 && size_t(current_) < model_->tensors.size();
    QString text;
    QString mergeKey;
    if (onTensor && (s.calib == CalibMethod::Manual || controls_->scope() == QuantControls::Scope::ThisLayer)) {
        // A range belongs to the tensor it was set on, whatever the scope said: the scope
        // box follows, so the user sees that this layer now has its own settings.
        const std::string& name = model_->tensors[size_t(current_)].name;
        session_.overrides[name] = s;
        controls_->setScope(QuantControls::Scope::ThisLayer);
        text = s.calib == CalibMethod::Manual ? tr("range of %1").arg(qs(name)) : tr("settings of %1").arg(qs(name));
        if (histogram_->isDragging())
            mergeKey = QStringLiteral("drag %1").arg(dragSerial_);
    } else {
        session_.defaultSpec = modelWideSpec(s);
        text = tr("model-wide %1, %2, %3").arg(qs(schemeName(s.scheme)), qs(granularityName(s)), qs(calibName(s)));
    }
    refreshTuned();
    pushPlanEdit(before, text, mergeKey);
}

void MainWindow::setScopeForCurrent(int scope)
{
    if (!model_ || current_ < 0 || size_t(current_) >= model_->tensors.size())
        return;
    const Session before = session_;
    const std::string& name = model_->tensors[size_t(current_)].name;
    if (QuantControls::Scope(scope) == QuantControls::Scope::ThisLayer)
        session_.overrides[name] = controls_->spec();
    else
        session_.overrides.erase(name);  // back to the model-wide default
    showStoredSpec(current_);
    refreshTuned();
    requestQuantize();
    pushPlanEdit(before, QuantControls::Scope(scope) == QuantControls::Scope::ThisLayer
                             ? tr("own settings for %1").arg(qs(name))
                             : tr("%1 follows the default").arg(qs(name)));
}

void MainWindow::quantizeCurrentAnyway()
{
    if (!model_ || current_ < 0 || size_t(current_) >= model_->tensors.size())
        return;
    const Session before = session_;
    const Tensor& t = model_->tensors[size_t(current_)];
    QuantSpec s = controls_->spec();
    if (t.rank() < 2 && s.granularity != Granularity::PerTensor) {
        s.granularity = Granularity::PerTensor;  // a vector is one channel
        s.groupSize = 0;
    }
    session_.overrides[t.name] = s;
    showStoredSpec(current_);
    refreshTuned();
    requestQuantize();
    pushPlanEdit(before, tr("quantize %1").arg(qs(t.name)));
}

bool MainWindow::isQuantized(int index) const
{
    if (!model_ || index < 0 || size_t(index) >= model_->tensors.size())
        return false;
    const Tensor& t = model_->tensors[size_t(index)];
    return quantizedByDefault(t) || session_.overrides.count(t.name) > 0;
}

void MainWindow::updateDragRule() { histogram_->setDragRule(dragRuleFor(controls_->spec().scheme)); }

void MainWindow::pushPlanEdit(const Session& before, const QString& text, const QString& mergeKey)
{
    if (restoringPlan_ || samePlan(before, session_))
        return;
    undo_->push(new PlanCommand([this](const Session& p) { restorePlan(p); }, before, session_, text, mergeKey));
}

void MainWindow::setMethod(const QString& tensor, const MethodSpec& method, const CalibrationSource& calibration)
{
    const Session before = session_;
    if (tensor.isEmpty()) {
        session_.defaultMethod = method;
        session_.methods.clear();
    } else if (method == session_.defaultMethod) {
        session_.methods.erase(tensor.toStdString());
    } else {
        session_.methods[tensor.toStdString()] = method;
    }
    if (method.needsCalibration())
        session_.calibration = calibration;
    pushPlanEdit(before, tensor.isEmpty() ? tr("%1 on every layer").arg(qs(methodName(method)))
                                          : tr("%1 on %2").arg(qs(methodName(method)), tensor));
    refreshTuned();  // pushes the plan to every view; results under the old one turn stale
}

void MainWindow::restorePlan(const Session& plan)
{
    restoringPlan_ = true;
    session_.plan() = plan.plan();
    session_.exportSelection = plan.exportSelection;
    treeModel_->setCheckedNames(session_.exportSelection);
    pushKeptToSensitivity();
    refreshTuned();
    if (model_ && current_ >= 0 && size_t(current_) < model_->tensors.size()) {
        showStoredSpec(current_);
    } else {
        applyingSpec_ = true;
        controls_->setSpec(session_.defaultSpec);
        applyingSpec_ = false;
    }
    requestQuantize();
    restartSummaries();
    restoringPlan_ = false;
}

bool MainWindow::hasUnsavedTuning() const { return !undo_->isClean(); }

void MainWindow::showStoredSpec(int tensor)
{
    // The controls show what the session holds for this tensor (its tuning or the
    // model-wide spec); that is not a new user choice, so recordSpec() must not see it.
    const Tensor& t = model_->tensors[size_t(tensor)];
    const bool own = session_.overrides.count(t.name) > 0;
    controls_->setScope(own ? QuantControls::Scope::ThisLayer : QuantControls::Scope::AllLayers);
    controls_->setNotQuantized(own ? QString() : qs(notQuantizedReason(t)));
    applyingSpec_ = true;
    controls_->setSpec(session_.specFor(t.name));
    applyingSpec_ = false;
}

void MainWindow::pushKeptToSensitivity()
{
    QStringList kept;
    for (const std::string& n : session_.keepFloat)
        kept << qs(n);
    sensitivity_->setKeptFloatLayers(kept);
}

std::string MainWindow::tunedSpecText(int tensor) const
{
    if (!model_ || tensor < 0 || size_t(tensor) >= model_->tensors.size())
        return {};
    auto it = session_.overrides.find(model_->tensors[size_t(tensor)].name);
    return it == session_.overrides.end() ? std::string() : specToJsonText(it->second);
}

// The shown tensor's tree row and overview bar from the result just computed, when that
// result used the spec the summary column stands for (its tuning, or the model-wide spec):
// a range tuned by dragging shows up in the SQNR column without another pass over the data.
void MainWindow::summaryFromOutcome()
{
    if (!outcome_ || !matrix_ || current_ < 0 || matrix_->rows <= 1)
        return;
    // Not on every drag step: the tree's resize-to-contents columns re-measure every row on
    // each change (half of the GUI thread's time per step in bench_drag); the drop does it.
    if (histogram_->isDragging())
        return;
    QuantSpec expected = session_.overrides.count(model_->tensors[size_t(current_)].name)
                             ? session_.specFor(model_->tensors[size_t(current_)].name)
                             : modelWideSpec(session_.defaultSpec);
    expected.axis = outcome_->spec.axis;
    if (expected != outcome_->spec)
        return;
    TensorSummary s;
    s.index = current_;
    s.ok = true;
    s.min = matrix_->stats.min;
    s.max = matrix_->stats.max;
    s.sqnrDb = outcome_->metrics.sqnrDb;
    s.clampedFraction = outcome_->metrics.clampedFraction;
    s.bytesBefore = outcome_->bytesBefore;
    s.bytesAfter = outcome_->bytesAfter;
    treeModel_->setSummary(s);
    overview_->addSummary(s);
}

void MainWindow::refreshTuned()
{
    // How each layer with its own settings deviates from the default, in words.
    std::map<std::string, QString> tuned;
    const QuantSpec& d = session_.defaultSpec;
    for (const auto& [name, spec] : session_.overrides) {
        QStringList how;
        const Tensor* t = model_ ? model_->find(name) : nullptr;
        if (t && !quantizedByDefault(*t))
            how << tr("quantized, though %1 stays float by default").arg(qs(notQuantizedReason(*t)));
        if (spec.scheme != d.scheme)
            how << tr("scheme %1 (default %2)").arg(qs(schemeName(spec.scheme)), qs(schemeName(d.scheme)));
        if (granularityName(spec) != granularityName(d) && !(t && t->rank() < 2))
            how << tr("per %1 (default per %2)").arg(qs(granularityName(spec)), qs(granularityName(d)));
        if (spec.bits != d.bits)
            how << tr("%1 bits (default %2)").arg(spec.bits).arg(d.bits);
        if (spec.calib == CalibMethod::Manual)
            how << tr("own range [%1, %2]").arg(formatNumber(spec.manualLo, 4), formatNumber(spec.manualHi, 4));
        else if (calibName(spec) != calibName(d))
            how << tr("range by %1 (default %2)").arg(qs(calibName(spec)), qs(calibName(d)));
        if (how.isEmpty())
            how << tr("own settings, equal to the default for now");
        tuned[name] = how.join(QStringLiteral("; "));
    }
    // Not on every drag step (the dragged range is in the text, and each change re-measures
    // the tree's rows): the drop brings the tree up to date.
    tunedPending_ = histogram_->isDragging();
    if (!tunedPending_)
        treeModel_->setTuned(tuned);
    pushPlan();
}

void MainWindow::pushPlan()
{
    // One plan for every view that runs the model: results under an older one turn stale.
    runPanel_->setPlan(session_.plan());
    sensitivity_->setPlan(session_.plan());
    activations_->setPlan(session_.plan());
}

void MainWindow::requestQuantize()
{
    if (!matrix_)
        return;
    if (!isQuantized(current_)) {
        // The plan keeps this tensor in float: show its values, and say so where the
        // quantization figures would be.
        ++quantGen_;
        outcome_.reset();
        const QString why = tr("not quantized by default: %1").arg(qs(notQuantizedReason(model_->tensors[size_t(current_)])));
        histogram_->showPending(why);
        numbers_->clear(why + tr("\n(Quantize anyway: the button above)"));
        heatmaps_->setOutcome(nullptr);
        channels_->clearData(why);
        emit quantizationUpdated();
        checkIdle();
        return;
    }
    {
        // A calibrator's search takes a while; the lines of the last result (or of the
        // previous tensor) would otherwise stand for a range that is not this one.
        const QuantSpec want = controls_->spec();
        const bool search = want.calib != CalibMethod::MinMax && want.calib != CalibMethod::Manual;
        if (!histogram_->isDragging() && (search || !outcome_))
            histogram_->showPending(search ? tr("computing the %1 range…").arg(qs(calibName(want)))
                                           : tr("quantizing…"));
    }
    if (quantBusy_) {
        // Coalesce: while one job runs, remember only that the spec moved on.
        quantPending_ = true;
        return;
    }
    quantBusy_ = true;
    const uint64_t gen = ++quantGen_;
    const QuantSpec spec = controls_->spec();
    const std::shared_ptr<const MatrixData> m = matrix_;
    const bool withSuggestions = suggestionsGen_ != matrixGen_ || suggestionsScheme_ != spec.scheme;
    const uint64_t mgen = matrixGen_;
    const std::shared_ptr<const QuantOutcome> previous = outcome_;  // of matrix_: reset with it
    runThen(this, [m, spec, withSuggestions, previous] {
        QuantJob j;
        auto r = quantizeMatrix(m, spec, kMaxCells, true, withSuggestions, previous);
        if (r)
            j.outcome = *r;
        else
            j.error = qs(r.error().oneLine());
        return j;
    }, [this, gen, m, mgen](QuantJob j) {
        quantBusy_ = false;
        if (gen == quantGen_ && m == matrix_) {
            if (j.outcome) {
                if (j.outcome->haveSuggestions) {
                    suggestionsGen_ = mgen;
                    suggestionsScheme_ = j.outcome->spec.scheme;
                }
                applyOutcome(j.outcome);
            } else {
                outcome_.reset();
                numbers_->clear(j.error);
                heatmaps_->setOutcome(nullptr);
                heatmaps_->after()->clearGrid(j.error);
                heatmaps_->error()->clearGrid(QString());
                channels_->clearData(j.error);
                emit quantizationUpdated();
            }
        }
        if (quantPending_) {
            quantPending_ = false;
            requestQuantize();
        }
        checkIdle();
    });
}

void MainWindow::applyOutcome(std::shared_ptr<const QuantOutcome> q)
{
    outcome_ = std::move(q);
    const QuantOutcome& o = *outcome_;
    const MatrixData& m = *matrix_;
    if (o.haveSuggestions) {
        markerSource_.clear();
        QVector<HistogramPlot::Marker> markers;
        for (const CalibSuggestion& s : o.suggestions) {
            if (s.method == CalibMethod::MinMax || s.method == CalibMethod::Manual)
                continue;  // min/max is the data range itself; manual is the lines
            markers.push_back({qs(s.label), double(s.lo), double(s.hi), markerColor(s.method)});
            markerSource_.push_back(s);
        }
        histogram_->setMarkers(markers);
    }
    // A manual range stays where the user put it; otherwise the lines show what the
    // scheme applies.
    if (o.spec.calib == CalibMethod::Manual)
        histogram_->setClampRange(o.spec.manualLo, o.spec.manualHi);
    else
        histogram_->setClampRange(o.effLo, o.effHi);
    numbers_->setResult(m, o);
    if ((m.rows > 1 || m.cols > 1) && !compare_->hasPair(current_))  // else the maps show the reference
        heatmaps_->setOutcome(outcome_);
    controls_->showEffectiveRange(o.effLo, o.effHi, m.stats.max - m.stats.min);
    channels_->setData(m, o);
    summaryFromOutcome();
    emit quantizationUpdated();
}

void MainWindow::restartSummaries()
{
    summaryWatcher_->future().cancel();
    const QuantSpec spec = modelWideSpec(session_.defaultSpec);
    summarySpec_ = spec;
    haveSummarySpec_ = true;
    treeModel_->clearSummaries();
    overview_->reset(model_, treeModel_->linearTensors(),
                     qs(schemeName(spec.scheme)) + QStringLiteral(", ") + qs(granularityName(spec)) +
                         QStringLiteral(", ") + qs(calibName(spec)));
    if (!model_) {
        summaryRunning_ = false;
        return;
    }
    const std::shared_ptr<const Model> model = model_;
    // Tensors with their own tuning are summarised with it, so sorting the tree by SQNR
    // finds the layers that are worst as the user has set them up.
    std::map<int, QuantSpec> tuned;
    summaryTuned_.clear();
    for (const auto& [name, s] : session_.overrides)
        if (const Tensor* t = model->find(name)) {
            const int idx = int(t - model->tensors.data());
            tuned[idx] = s;
            summaryTuned_[idx] = specToJsonText(s);
        }
    // Linear layers first: they are what the overview and the SQNR column are about.
    std::vector<int> order = treeModel_->linearTensors();
    for (size_t i = 0; i < model->tensors.size(); ++i)
        if (std::find(order.begin(), order.end(), int(i)) == order.end())
            order.push_back(int(i));
    summaryRunning_ = true;
    progress_->setRange(0, int(order.size()));
    progress_->setValue(0);
    progress_->setFormat(tr("model stats %v/%m"));
    progress_->show();
    QFuture<TensorSummary> f = QtConcurrent::run(workPool(), [model, spec, order, tuned](QPromise<TensorSummary>& promise) {
        promise.setProgressRange(0, int(order.size()));
        int done = 0;
        ModelSummaryJob job;
        job.order.assign(order.begin(), order.end());
        // A tensor the plan keeps float gets its min/max only: the figures of a
        // quantization it does not get do not belong in the tree.
        job.specFor = [&](size_t i) -> std::optional<QuantSpec> {
            if (auto it = tuned.find(int(i)); it != tuned.end())
                return it->second;
            return quantizedByDefault(model->tensors[i]) ? std::optional<QuantSpec>(spec) : std::nullopt;
        };
        job.done = [&](size_t i, TensorFigures&& fig) {
            promise.addResult(tensorSummary(model->tensors[i], int(i), fig));
            promise.setProgressValue(++done);
        };
        job.cancelled = [&] { return promise.isCanceled(); };
        job.lowPriority = true;  // the tensor on screen is quantized first
        summarizeModel(*model, job);
    });
    summaryWatcher_->setFuture(f);
}

// ---------------------------------------------------------------- state

bool MainWindow::isIdle() const
{
    return !loading_ && !decoding_ && !quantBusy_ && !quantPending_ && !summaryRunning_ && !compare_->busy();
}

void MainWindow::checkIdle()
{
    if (loading_ || decoding_) {
        progress_->setRange(0, 0);
        progress_->show();
    } else if (summaryRunning_) {
        progress_->setRange(0, summaryWatcher_->progressMaximum());
        progress_->setValue(summaryWatcher_->progressValue());
        progress_->setFormat(tr("model stats %v/%m"));
        progress_->show();
    } else {
        progress_->hide();
    }
    cancel_->setVisible(loading_ || summaryRunning_);
    if (isIdle())
        emit becameIdle();
}

void MainWindow::updateTitle()
{
    QString what = tr("no model");
    if (model_)
        what = model_->synthetic ? tr("synthetic demo") : QFileInfo(sourceLabel_).fileName();
    setWindowTitle(tr("%1 — Quantlens").arg(what));
}

void MainWindow::updateStatus()
{
    if (!model_) {
        statusFile_->setText(tr("No model — File ▸ Open (Ctrl+O) or drop a file here"));
        statusInfo_->clear();
        return;
    }
    statusFile_->setText(model_->synthetic ? tr("synthetic demo (generated, not a trained model)") : sourceLabel_);
    statusInfo_->setText(tr("%1 · %2 tensors · %3 parameters · %4")
                             .arg(qs(model_->format))
                             .arg(model_->tensors.size())
                             .arg(formatCount(model_->parameterCount()))
                             .arg(formatBytes(model_->byteCount())));
}

// ---------------------------------------------------------------- files, settings

void MainWindow::addRecent(const QString& path)
{
    const QString abs = QFileInfo(path).absoluteFilePath();
    recent_.removeAll(abs);
    recent_.prepend(abs);
    while (recent_.size() > kMaxRecent)
        recent_.removeLast();
    rebuildRecentMenu();
    if (useSettings_)
        QSettings().setValue(QStringLiteral("recentFiles"), recent_);
}

void MainWindow::rebuildRecentMenu()
{
    recentMenu_->clear();
    for (const QString& p : std::as_const(recent_))
        recentMenu_->addAction(QFileInfo(p).fileName(), this, [this, p] { openFile(p); })->setToolTip(p);
    recentMenu_->setEnabled(!recent_.isEmpty());
}

void MainWindow::saveHistogram()
{
    const QString path = QFileDialog::getSaveFileName(this, tr("Save histogram"), QStringLiteral("histogram.png"),
                                                      tr("PNG image (*.png);;PDF (*.pdf)"));
    if (!path.isEmpty())
        saveHistogramTo(path);
}

bool MainWindow::saveHistogramTo(const QString& path)
{
    const bool ok = path.endsWith(QStringLiteral(".pdf"), Qt::CaseInsensitive) ? histogram_->savePdf(path)
                                                                                : histogram_->savePng(path);
    if (!ok)
        showError(tr("Cannot save"), tr("Could not write %1").arg(path));
    return ok;
}

void MainWindow::saveHeatmaps()
{
    const QString path = QFileDialog::getSaveFileName(this, tr("Save heatmaps"), QStringLiteral("heatmaps.png"),
                                                      tr("PNG image (*.png);;PDF (*.pdf)"));
    if (!path.isEmpty())
        saveHeatmapsTo(path);
}

bool MainWindow::saveHeatmapsTo(const QString& path)
{
    bool ok = false;
    if (path.endsWith(QStringLiteral(".pdf"), Qt::CaseInsensitive)) {
        QPdfWriter pdf(path);
        pdf.setPageSize(QPageSize(QSizeF(heatmaps_->width(), heatmaps_->height()), QPageSize::Point));
        pdf.setPageMargins({});
        pdf.setResolution(72);
        QPainter p(&pdf);
        heatmaps_->render(&p);
        ok = p.end();
    } else {
        ok = heatmaps_->grab().save(path);
    }
    if (!ok)
        showError(tr("Cannot save"), tr("Could not write %1").arg(path));
    return ok;
}

// ---------------------------------------------------------------- sessions, export

void MainWindow::saveSessionDialog()
{
    if (!model_)
        return;
    QString suggestion = QStringLiteral("quantlens-session.json");
    if (!model_->synthetic)
        suggestion = QFileInfo(sourceLabel_).absolutePath() + QLatin1Char('/') + QFileInfo(sourceLabel_).completeBaseName() +
                     QStringLiteral(".quantlens.json");
    const QString path = QFileDialog::getSaveFileName(this, tr("Save session"), suggestion, tr("Quantlens session (*.json)"));
    if (!path.isEmpty() && saveSessionTo(path))
        statusBar()->showMessage(tr("Session saved to %1").arg(path), 5000);
}

void MainWindow::loadSessionDialog()
{
    if (!model_)
        return;
    const QString path = QFileDialog::getOpenFileName(this, tr("Load session"), QString(), tr("Quantlens session (*.json);;All files (*)"));
    if (!path.isEmpty())
        loadSessionFrom(path);
}

bool MainWindow::saveSessionTo(const QString& path)
{
    if (!model_) {
        showError(tr("Cannot save session"), tr("Open a model first."));
        return false;
    }
    session_.exportSelection = treeModel_->checkedNames();
    if (Status st = saveSession(QFile::encodeName(path).toStdString(), session_); !st) {
        showError(tr("Cannot save session"), tr("Could not save %1:\n%2").arg(path, qs(st.error().oneLine())),
                  qs(st.error().oneLine()));
        return false;
    }
    undo_->setClean();
    return true;
}

void MainWindow::restoreSession(const Session& s)
{
    if (!model_)
        return;
    SessionApplied a = applySession(s, *model_);
    a.session.modelPath = session_.modelPath;
    a.session.modelTensors = session_.modelTensors;
    a.session.modelFingerprint = session_.modelFingerprint;
    session_ = a.session;
    treeModel_->setCheckedNames(session_.exportSelection);
    pushKeptToSensitivity();
    refreshTuned();
    if (current_ >= 0) {
        showStoredSpec(current_);
        requestQuantize();
    }
    restartSummaries();
}

bool MainWindow::loadSessionFrom(const QString& path)
{
    if (!model_) {
        showError(tr("Cannot load session"), tr("Open the model the session belongs to first."));
        return false;
    }
    if (hasUnsavedTuning()) {
        bool go = discardAnswer_;
        if (interactive_) {
            QMessageBox ask(QMessageBox::Question, tr("Load session"),
                            tr("The tuning made since the last save (%1 edits) will be replaced by %2.\n"
                               "It can be brought back with Undo (Ctrl+Z).")
                                .arg(undo_->index() - std::max(0, undo_->cleanIndex()))
                                .arg(QFileInfo(path).fileName()),
                            QMessageBox::Discard | QMessageBox::Cancel, this);
            ask.setObjectName(QStringLiteral("discardTuningBox"));
            ask.setDefaultButton(QMessageBox::Cancel);
            go = ask.exec() == QMessageBox::Discard;
        }
        if (!go) {
            lastError_ = tr("loading %1 cancelled: unsaved tuning kept").arg(QFileInfo(path).fileName());
            return false;
        }
    }
    auto loaded = loadSession(QFile::encodeName(path).toStdString());
    if (!loaded) {
        showError(tr("Cannot load session"), tr("Could not load %1:\n%2").arg(path, qs(loaded.error().oneLine())),
                  qs(loaded.error().oneLine()));
        return false;
    }
    SessionApplied a = applySession(*loaded, *model_);
    // The session describes choices; the identity of the open model stays.
    a.session.modelPath = session_.modelPath;
    a.session.modelTensors = session_.modelTensors;
    a.session.modelFingerprint = session_.modelFingerprint;
    const Session before = session_;
    restorePlan(a.session);  // loading is one undoable edit like any other
    pushPlanEdit(before, tr("load session %1").arg(QFileInfo(path).fileName()));
    undo_->setClean();
    QString msg = tr("Session applied: %1 tuned layers, %2 ticked for export").arg(session_.overrides.size()).arg(session_.exportSelection.size());
    if (!a.missing.empty())
        msg += tr("; %1 names are not in this model").arg(a.missing.size());
    statusBar()->showMessage(msg, 8000);
    if (!a.sameModel || !a.missing.empty()) {
        QStringList names;
        for (size_t i = 0; i < a.missing.size() && i < 10; ++i)
            names << qs(a.missing[i]);
        if (a.missing.size() > 10)
            names << tr("… and %1 more").arg(a.missing.size() - 10);
        lastError_ = msg;
        if (interactive_) {
            auto* box = new QMessageBox(QMessageBox::Information, tr("Session made on another model"),
                                        tr("%1 was saved for a model with different tensors (%2).\n%3%4")
                                            .arg(QFileInfo(path).fileName(), qs(loaded->modelPath.empty() ? std::string("unknown file") : loaded->modelPath), msg,
                                                 names.isEmpty() ? QString() : QStringLiteral(":\n") + names.join(QLatin1Char('\n'))),
                                        QMessageBox::Ok, this);
            box->setObjectName(QStringLiteral("sessionWarning"));
            box->setAttribute(Qt::WA_DeleteOnClose);
            box->open();
        }
    }
    return true;
}

ExportDialog* MainWindow::openExportDialog()
{
    if (!model_) {
        showError(tr("Nothing to export"), tr("Open a model first."));
        return nullptr;
    }
    session_.exportSelection = treeModel_->checkedNames();
    auto* d = new ExportDialog(model_, session_, model_->synthetic ? QString() : sourceLabel_, this);
    d->setAttribute(Qt::WA_DeleteOnClose);
    d->setWindowModality(Qt::WindowModal);
    connect(d, &ExportDialog::exportFinished, this, [this, d](bool ok) {
        if (ok && d->lastOutcome())
            statusBar()->showMessage(tr("Exported %1").arg(d->lastOutcome()->path), 8000);
    });
    d->show();
    return d;
}

void MainWindow::cancelBackgroundWork()
{
    if (loading_) {
        ++loadGen_;  // the reader's result, when it comes, is dropped
        endLoadControl(true);  // and an HDF5 reader stops at its next dataset
        loading_ = false;
        statusBar()->showMessage(tr("Opening cancelled"), 5000);
    }
    if (summaryRunning_)
        summaryWatcher_->future().cancel();
    compare_->cancel();
    checkIdle();
}

void MainWindow::loadSettings()
{
    QSettings s;
    restoreGeometry(s.value(QStringLiteral("geometry")).toByteArray());
    restoreState(s.value(QStringLiteral("windowState")).toByteArray());
    mainSplit_->restoreState(s.value(QStringLiteral("mainSplit")).toByteArray());
    rightSplit_->restoreState(s.value(QStringLiteral("rightSplit")).toByteArray());
    topSplit_->restoreState(s.value(QStringLiteral("topSplit")).toByteArray());
    recent_ = s.value(QStringLiteral("recentFiles")).toStringList();
    QuantSpec spec = controls_->spec();
    if (auto sc = parseScheme(s.value(QStringLiteral("scheme"), QStringLiteral("seed")).toString().toStdString()))
        spec.scheme = *sc;
    QuantSpec g = spec;
    if (parseGranularity(s.value(QStringLiteral("granularity"), QStringLiteral("tensor")).toString().toStdString(), g).ok())
        spec = g;
    controls_->setSpec(spec);
    rebuildRecentMenu();
}

void MainWindow::saveSettings() const
{
    QSettings s;
    s.setValue(QStringLiteral("geometry"), saveGeometry());
    s.setValue(QStringLiteral("windowState"), saveState());
    s.setValue(QStringLiteral("mainSplit"), mainSplit_->saveState());
    s.setValue(QStringLiteral("rightSplit"), rightSplit_->saveState());
    s.setValue(QStringLiteral("topSplit"), topSplit_->saveState());
    s.setValue(QStringLiteral("recentFiles"), recent_);
    s.setValue(QStringLiteral("scheme"), qs(schemeName(session_.defaultSpec.scheme)));
    s.setValue(QStringLiteral("granularity"), qs(granularityName(session_.defaultSpec)));
}

void MainWindow::closeEvent(QCloseEvent* e)
{
    if (useSettings_)
        saveSettings();
    QMainWindow::closeEvent(e);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e)
{
    const QMimeData* md = e->mimeData();
    if (md->hasUrls() && !md->urls().isEmpty() && md->urls().front().isLocalFile())
        e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e)
{
    const QMimeData* md = e->mimeData();
    if (!md->hasUrls() || md->urls().isEmpty() || !md->urls().front().isLocalFile())
        return;
    e->acceptProposedAction();
    // Shift-drop: the file becomes the reference of the model on screen.
    if ((e->modifiers() & Qt::ShiftModifier) && model_)
        compareWith(md->urls().front().toLocalFile());
    else
        openFile(md->urls().front().toLocalFile());
}

// ---------------------------------------------------------------- comparison (issue #20)

void MainWindow::buildCompare()
{
    compare_ = new ComparePanel(tabs_);
    compare_->setObjectName(QStringLiteral("comparePanel"));
    tabs_->addTab(compare_, tr("Compare"));
    connect(compare_, &ComparePanel::compareRequested, this, &MainWindow::showCompareDialog);
    connect(compare_, &ComparePanel::finished, this, &MainWindow::onComparisonFinished);
    connect(compare_, &ComparePanel::tensorActivated, this, [this](int t) {
        selectTensor(t);
        tabs_->setCurrentIndex(0);
    });
    connect(compare_, &ComparePanel::pairViewReady, this, [this](std::shared_ptr<const PairView> v) {
        if (v->tensor == current_ && v->reference && v->difference && matrix_) {
            const QString ref = QFileInfo(compare_->referencePath()).fileName();
            heatmaps_->setTitles(tr("reference (%1)").arg(ref), tr("this file"), tr("difference (this − reference)"));
            heatmaps_->setMatrix(v->reference);
            heatmaps_->setOutcome(v->difference);
        }
        checkIdle();
    });
    // Beside the name and shape, where a narrow tree still shows them; hidden until a comparison.
    for (int c = TensorTreeModel::RefSqnrColumn; c <= TensorTreeModel::RefBitsColumn; ++c) {
        tree_->header()->moveSection(tree_->header()->visualIndex(c), 2 + c - TensorTreeModel::RefSqnrColumn);
        tree_->setColumnHidden(c, true);
    }
}

void MainWindow::showCompareDialog()
{
    if (!model_)
        return;
    const QString path = QFileDialog::getOpenFileName(
        this, tr("Compare with (reference)"), QFileInfo(sourceLabel_).absolutePath(),
        tr("Model files (*.safetensors *.bin *.pt *.pth *.h5 *.hdf5 *.keras *.gguf *.onnx *.npz *.npy *.json);;All files (*)"));
    if (!path.isEmpty())
        compareWith(path);
}

void MainWindow::compareWith(const QString& path)
{
    if (!model_)
        return;
    compare_->compareWith(path);
    statusBar()->showMessage(tr("Comparing with %1… (Compare tab: progress and Cancel)").arg(path), 4000);
}

void MainWindow::onComparisonFinished()
{
    const auto report = compare_->report();
    std::vector<TensorTreeModel::RefCells> cells;
    if (report && model_) {
        cells.resize(model_->tensors.size());
        for (size_t i = 0; i < cells.size(); ++i)
            if (const TensorComparison* c = compare_->comparisonFor(int(i)))
                cells[i] = {true, c->metrics.sqnrDb, c->metrics.cosine, c->metrics.maxAbsError, c->aBitsPerWeight,
                            c->bBitsPerWeight};
    }
    treeModel_->setComparison(std::move(cells));
    for (int c = TensorTreeModel::RefSqnrColumn; c <= TensorTreeModel::RefBitsColumn; ++c) {
        tree_->setColumnHidden(c, !report);
        if (report)
            tree_->resizeColumnToContents(c);
    }
    if (report && !compare_->lastError().isEmpty())
        statusBar()->showMessage(compare_->lastError(), 6000);
    if (!report && !compare_->lastError().isEmpty())
        statusBar()->showMessage(tr("Compare: %1").arg(compare_->lastError()), 6000);
    showPairOnTensorTab(current_);
    checkIdle();
}

// With a reference, the Tensor tab's maps are reference / this file / difference, computed in
// the background; without one they are the quantization's before / after / error again.
void MainWindow::showPairOnTensorTab(int tensor)
{
    if (tensor >= 0 && matrix_ && compare_->hasPair(tensor)) {
        compare_->requestPairView(tensor, kMaxCells);
        return;
    }
    heatmaps_->setTitles({}, {}, {});
    if (matrix_ && (matrix_->rows > 1 || matrix_->cols > 1)) {
        heatmaps_->setMatrix(matrix_);
        if (outcome_)
            heatmaps_->setOutcome(outcome_);
    }
}

}  // namespace quantlens::ui
