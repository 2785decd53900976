#include "filewatch.h"

#include <QAction>
#include <QFileInfo>
#include <QFileSystemWatcher>
#include <QLabel>
#include <QTabWidget>
#include <QTimer>

#include "mainwindow.h"

namespace quantlens::ui {

FileWatch::FileWatch(MainWindow* w)
    : QToolBar(tr("File changed on disk"), w), window_(w), watcher_(new QFileSystemWatcher(this)),
      settle_(new QTimer(this)), text_(new QLabel(this))
{
    setObjectName(QStringLiteral("fileWatchBar"));
    setMovable(false);
    setFloatable(false);
    addWidget(text_);
    QAction* reloadAct = addAction(tr("&Reload"), this, &FileWatch::reload);
    reloadAct->setObjectName(QStringLiteral("reloadAction"));
    reloadAct->setToolTip(tr("Open the file again, keeping the plan, the selected tensor and the tab"));
    addAction(tr("Dismiss"), this, &FileWatch::dismiss);
    hide();
    w->addToolBar(Qt::TopToolBarArea, this);

    settle_->setSingleShot(true);
    settle_->setInterval(300);
    connect(settle_, &QTimer::timeout, this, &FileWatch::announce);
    connect(watcher_, &QFileSystemWatcher::fileChanged, this, &FileWatch::onPathEvent);
    connect(w, &MainWindow::modelLoaded, this, &FileWatch::onModelLoaded);
    connect(w, &MainWindow::loadFailed, this, [this](const QString& reason) {
        if (!restore_)
            return;
        restore_.reset();
        text_->setText(tr("Reload failed: %1").arg(reason));
        show();
    });
}

QStringList FileWatch::watchedFiles() const { return watcher_->files(); }

QString FileWatch::message() const { return isVisible() ? text_->text() : QString(); }

void FileWatch::onModelLoaded()
{
    if (!watcher_->files().isEmpty())
        watcher_->removePaths(watcher_->files());
    files_.clear();
    changed_.clear();
    pending_ = false;
    settle_->stop();
    const auto m = window_->model();
    if (m && !m->synthetic)
        for (const std::string& f : m->files)
            files_ << QFile::decodeName(QByteArray::fromStdString(f));
    if (!files_.isEmpty())
        watcher_->addPaths(files_);

    if (restore_) {
        // Same path, maybe other contents: the plan is re-applied by tensor name.
        const std::unique_ptr<Restore> r = std::move(restore_);
        window_->restoreSession(r->session);
        if (!r->tensor.isEmpty())
            window_->selectTensor(r->tensor);
        if (r->tab >= 0)
            window_->tabs()->setCurrentIndex(r->tab);
        hide();
        emit reloaded();
        return;
    }
    hide();
}

void FileWatch::onPathEvent(const QString& path)
{
    if (!changed_.contains(path))
        changed_ << path;
    // A file replaced by rename (how safetensors and torch.save write) leaves the watch
    // list; watch the new file under the same name once it exists.
    if (QFileInfo::exists(path) && !watcher_->files().contains(path))
        watcher_->addPath(path);
    settle_->start();
}

void FileWatch::announce()
{
    if (changed_.isEmpty())
        return;
    pending_ = true;
    QStringList names;
    bool gone = false;
    for (const QString& p : changed_) {
        names << QFileInfo(p).fileName();
        if (!QFileInfo::exists(p)) {
            gone = true;
        } else if (!watcher_->files().contains(p)) {
            watcher_->addPath(p);  // it came back after a replace
        }
    }
    text_->setText(gone ? tr("%1 was deleted or is being replaced on disk.").arg(names.join(QStringLiteral(", ")))
                        : tr("%1 changed on disk: what is shown may be out of date.").arg(names.join(QStringLiteral(", "))));
    show();
    emit changeDetected(changed_.front());
}

void FileWatch::reload()
{
    const auto m = window_->model();
    if (!m || m->synthetic || window_->sourceLabel().isEmpty())
        return;
    auto r = std::make_unique<Restore>();
    r->session = window_->session();
    const int cur = window_->currentTensor();
    if (cur >= 0 && size_t(cur) < m->tensors.size())
        r->tensor = QString::fromStdString(m->tensors[size_t(cur)].name);
    r->tab = window_->tabs()->currentIndex();
    restore_ = std::move(r);
    text_->setText(tr("Reloading…"));
    window_->openFile(window_->sourceLabel());
}

void FileWatch::dismiss()
{
    pending_ = false;
    changed_.clear();
    hide();
}

}  // namespace quantlens::ui
