// How soon the window shows a model (issue #21: a 1.1B-parameter bf16 Llama's first picture
// within 2 s, the tree's statistics filled in the background, RSS not above the file size
// plus one tensor's float copy). The real main window, offscreen, opens MODEL and times,
// from the openFile() call:
//   loaded:  the tensor list is in the tree (modelLoaded);
//   first picture: the first tensor decoded and its histogram and heatmaps drawn (tensorShown);
//   quantized: its quantization numbers and lines shown (quantizationUpdated);
//   all statistics: every tensor's row in the tree filled (summariesFinished).
// Prints one line per event and the process's peak RSS. bench_bigmodel runs it on the model it
// writes; on its own: bench_firstpicture MODEL.
#include <QApplication>
#include <QElapsedTimer>
#include <QTimer>

#include <sys/resource.h>

#include <cstdio>

#include "allocatortuning.h"
#include "mainwindow.h"

using namespace quantlens::ui;

int main(int argc, char** argv)
{
    quantlens::ui::tuneAllocatorForLiveUpdates();  // as the application does
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
    QApplication app(argc, argv);
    if (argc != 2) {
        std::fprintf(stderr, "usage: bench_firstpicture MODEL\n");
        return 2;
    }
    MainWindow w(nullptr, /*useSettings=*/false);
    w.setInteractive(false);
    w.resize(1400, 900);
    w.show();
    QCoreApplication::processEvents();

    QElapsedTimer t;
    double loaded = -1, shown = -1, quantized = -1, stats = -1;
    auto done = [&] {
        if (shown >= 0 && quantized >= 0 && stats >= 0)
            QTimer::singleShot(0, &app, [] { QCoreApplication::exit(0); });
    };
    QObject::connect(&w, &MainWindow::modelLoaded, &app, [&] { loaded = double(t.nsecsElapsed()) / 1e9; });
    QObject::connect(&w, &MainWindow::tensorShown, &app, [&] {
        if (shown < 0)
            shown = double(t.nsecsElapsed()) / 1e9;
        done();
    });
    QObject::connect(&w, &MainWindow::quantizationUpdated, &app, [&] {
        if (quantized < 0)
            quantized = double(t.nsecsElapsed()) / 1e9;
        done();
    });
    QObject::connect(&w, &MainWindow::summariesFinished, &app, [&] {
        if (stats < 0)
            stats = double(t.nsecsElapsed()) / 1e9;
        done();
    });
    QObject::connect(&w, &MainWindow::loadFailed, &app, [](const QString& why) {
        std::fprintf(stderr, "bench_firstpicture: %s\n", qPrintable(why));
        QCoreApplication::exit(1);
    });
    QTimer::singleShot(120000, &app, [] {
        std::fprintf(stderr, "bench_firstpicture: timed out after 120 s\n");
        QCoreApplication::exit(1);
    });
    t.start();
    w.openFile(QString::fromLocal8Bit(argv[1]));
    const int rc = app.exec();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf("window: tensor list %.2f s, first picture %.2f s, quantized %.2f s, all statistics %.2f s, "
                "peak RSS %.0f MB\n",
                loaded, shown, quantized, stats, double(ru.ru_maxrss) * 1024.0 / 1e6);
    return rc;
}
