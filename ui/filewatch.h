#pragma once
// Watches the files of the open model. When one is rewritten, replaced or deleted on disk
// (a training run saving its checkpoint), a bar says so and offers Reload, which opens
// the same path again and puts back the plan (MainWindow::session()), the selected tensor
// and the tab. A reading that raced the change already failed with "file changed while
// reading" (core/io/truncationguard.h); this is how the user gets back to work.
#include <QString>
#include <QStringList>
#include <QToolBar>

#include <memory>

#include "plan/session.h"

class QFileSystemWatcher;
class QLabel;
class QTimer;

namespace quantlens::ui {

class MainWindow;

class FileWatch : public QToolBar {
    Q_OBJECT
public:
    // Adds itself to `w` as a hidden tool bar and follows w's modelLoaded.
    explicit FileWatch(MainWindow* w);

    QStringList watchedFiles() const;
    QString message() const;          // what the bar says; empty while hidden
    bool changePending() const { return pending_; }

public slots:
    void reload();                    // re-open, keeping plan, tensor and tab
    void dismiss();

signals:
    void changeDetected(const QString& path);
    void reloaded();                  // the model is back with the plan applied

private:
    void onModelLoaded();
    void onPathEvent(const QString& path);
    void announce();

    MainWindow* window_;
    QFileSystemWatcher* watcher_;
    QTimer* settle_;                  // a rewrite is many events: report once it settles
    QLabel* text_;
    QStringList files_;
    QStringList changed_;
    bool pending_ = false;

    // Filled by reload() and applied when the re-opened model arrives.
    struct Restore {
        Session session;
        QString tensor;
        int tab = -1;
    };
    std::unique_ptr<Restore> restore_;
};

}  // namespace quantlens::ui
