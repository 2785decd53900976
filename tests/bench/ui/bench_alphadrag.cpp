// How long one step of the Activations tab's SmoothQuant α slider takes to show: the real
// main window offscreen at 1400x900 on the demo's ffn.lin1 (W 3072 x 768, 512 recorded
// tokens), the SmoothQuant page shown, then for each step of a drag time the slider's new
// value handled and every plot that follows it repainted (the channel plot's smoothed
// maxima, the two smoothed histograms, the SQNR curve's marker). The smoothed operands are
// precomputed with the recording, so this is drawing only; the goal is < 16 ms (one frame).
// Usage: bench_alphadrag [steps=60]. Prints median, 90th percentile and max, of the wall
// time and of the GUI thread's CPU time (on a loaded shared machine the wall time mostly
// measures the other processes; the CPU time is what one free core would take).
#include <QApplication>
#include <QElapsedTimer>
#include <QSlider>
#include <QTabWidget>

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "activationspanel.h"
#include "io/demomodel.h"
#include "mainwindow.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

double threadCpuMs()
{
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return double(t.tv_sec) * 1e3 + 1e-6 * double(t.tv_nsec);
}

void print(const char* what, std::vector<double> ms)
{
    std::sort(ms.begin(), ms.end());
    std::printf("%s: median %.2f ms, p90 %.2f ms, max %.2f ms\n", what, ms[ms.size() / 2],
                ms[std::min(ms.size() - 1, size_t(double(ms.size()) * 0.9))], ms.back());
}

}  // namespace

int main(int argc, char** argv)
{
    qputenv("QT_QPA_PLATFORM", "offscreen");
    QApplication app(argc, argv);
    const int steps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 60;
    MainWindow w(nullptr, /*useSettings=*/false);
    w.setInteractive(false);
    w.resize(1400, 900);
    w.show();
    w.showModel(std::make_shared<const Model>(makeDemoModel()), QStringLiteral("demo"));
    QElapsedTimer t;
    t.start();
    while (!w.isIdle() && t.elapsed() < 120000)
        QCoreApplication::processEvents(QEventLoop::AllEvents, 5);
    if (!w.selectTensor(QStringLiteral("distilbert.transformer.layer.0.ffn.lin1.weight"))) {
        std::fprintf(stderr, "no ffn.lin1 in the demo\n");
        return 1;
    }
    ActivationsPanel* p = w.activationsPanel();
    w.tabs()->setCurrentWidget(p);
    p->showSmoothQuantPage();
    p->run();
    t.restart();
    while (p->isRunning() && t.elapsed() < 300000)
        QCoreApplication::processEvents(QEventLoop::AllEvents, 5);
    if (!p->result()) {
        std::fprintf(stderr, "recording failed: %s\n", qPrintable(p->statusText()));
        return 1;
    }
    for (int i = 0; i < 20; ++i)
        QCoreApplication::processEvents();
    std::vector<double> ms, cpu;
    p->alphaSlider()->setSliderDown(true);  // a drag, as the mouse holds the handle
    for (int k = 0; k < steps; ++k) {
        // Back and forth over the whole range, as a drag does.
        const int v = (k / 20) % 2 == 0 ? k % 21 : 20 - k % 21;
        QElapsedTimer e;
        e.start();
        const double c0 = threadCpuMs();
        p->alphaSlider()->setValue(v);
        // The queued replots, then the repaint they ask for.
        for (int i = 0; i < 3; ++i)
            QCoreApplication::processEvents();
        ms.push_back(double(e.nsecsElapsed()) * 1e-6);
        cpu.push_back(threadCpuMs() - c0);
    }
    p->alphaSlider()->setSliderDown(false);
    std::printf("α step drawn (channel plot of 768 channels, two smoothed histograms, SQNR curve), %d steps\n", steps);
    print("  wall", ms);
    print("  GUI thread CPU", cpu);
    return 0;
}
