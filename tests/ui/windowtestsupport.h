#pragma once
// What the window tests share: waiting for the window's background work, and the usual
// start of a test, a window shown offscreen at 1400x900 with the small demo model open.
#include <QDeadlineTimer>
#include <QSignalSpy>
#include <QTest>

#include <memory>

#include "io/demomodel.h"
#include "mainwindow.h"

namespace quantlens::test {

// True once no background job runs; false when `timeoutMs` passed first.
inline bool waitIdle(ui::MainWindow& w, int timeoutMs)
{
    if (w.isIdle())
        return true;
    QSignalSpy idle(&w, &ui::MainWindow::becameIdle);
    QDeadlineTimer deadline(timeoutMs);
    while (!w.isIdle() && !deadline.hasExpired())
        idle.wait(200);
    return w.isIdle();
}

// A window without the user's settings, shown and exposed, with makeDemoModel(1, 64)
// open and analysed; null when it was not exposed or not idle within `timeoutMs`.
inline std::unique_ptr<ui::MainWindow> openDemoWindow(bool interactive, int timeoutMs)
{
    auto w = std::make_unique<ui::MainWindow>(nullptr, /*useSettings=*/false);
    w->setInteractive(interactive);
    w->resize(1400, 900);
    w->show();
    if (!QTest::qWaitForWindowExposed(w.get()))
        return nullptr;
    w->showModel(std::make_shared<const Model>(makeDemoModel(1, 64)), QStringLiteral("test demo"));
    if (!waitIdle(*w, timeoutMs))
        return nullptr;
    return w;
}

// The same window with the model file `path` opened through MainWindow::openFile (as a user
// would), loaded and idle; null when any of it did not happen within `timeoutMs`.
inline std::unique_ptr<ui::MainWindow> openFileWindow(const QString& path, int timeoutMs)
{
    auto w = std::make_unique<ui::MainWindow>(nullptr, /*useSettings=*/false);
    w->setInteractive(false);
    w->resize(1400, 900);
    w->show();
    if (!QTest::qWaitForWindowExposed(w.get()))
        return nullptr;
    QSignalSpy loaded(w.get(), &ui::MainWindow::modelLoaded);
    w->openFile(path);
    if ((loaded.isEmpty() && !loaded.wait(timeoutMs)) || !waitIdle(*w, timeoutMs))
        return nullptr;
    return w;
}

}  // namespace quantlens::test
