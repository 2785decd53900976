// How long a clamp-line drag takes to show, as the user sees it (issue #6: < 16 ms from
// mouse move to repainted plots on a 768x3072 matrix). The real main window, offscreen:
// press on the upper clamp line of ffn.lin1 (3072x768 = 2.4M values), then for each mouse
// move time
//   lines: the move event handled and the histogram repainted (what follows the mouse),
//   full:  the quantization redone in the background with the new range and the numbers
//          panel, histogram and the three heatmaps repainted with it.
// Usage: bench_drag [moves=60] [--json]. Prints median, 90th percentile and max.
#include <QApplication>
#include <QElapsedTimer>
#include <QMouseEvent>
#include <QThread>

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "allocatortuning.h"
#include "heatmapplot.h"
#include "heatmapview.h"
#include "histogramplot.h"
#include "io/demomodel.h"
#include "kernels/quantrun.h"
#include "mainwindow.h"
#include "numberspanel.h"
#include "quant/metrics.h"
#include "quant/quantize.h"
#include "tensoranalysis.h"
#include "workteam.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

bool waitIdle(MainWindow& w, int ms = 60000)
{
    QElapsedTimer t;
    t.start();
    while (!w.isIdle() && t.elapsed() < ms) {
        QCoreApplication::processEvents(QEventLoop::AllEvents, 5);
        if (!w.isIdle())
            QThread::usleep(200);
    }
    return w.isIdle();
}

double threadMs()
{
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

double wallMs()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

// The background job of one drag step alone, as MainWindow::requestQuantize runs it (a
// manual range, the previous outcome passed for the alternative granularity's reuse):
// thread CPU time, best of `runs`, so other processes on the machine do not count, or
// (clock = wallMs) wall time, for the job split over the work team.
double workerMs(const std::shared_ptr<const MatrixData>& m, QuantSpec spec, int runs, double (*clock)() = threadMs)
{
    spec.calib = CalibMethod::Manual;
    spec.manualLo = -0.3f;
    spec.manualHi = 0.3f;
    auto previous = quantizeMatrix(m, spec, 384, true, false, nullptr);
    if (!previous)
        return -1;
    std::shared_ptr<const QuantOutcome> prev = *previous;
    double best = 1e30;
    for (int i = 0; i < runs; ++i) {
        spec.manualHi = 0.3f - 0.001f * float(i % 7);  // a new range each step, as a drag gives
        const double t0 = clock();
        auto r = quantizeMatrix(m, spec, 384, true, false, prev);
        best = std::min(best, clock() - t0);
        if (r)
            prev = *r;
    }
    return best;
}

// The same step as the window did it before the fused sweeps, from the public functions:
// quantize, dequantize, metrics, the two maps and the row metrics as separate passes.
double separateMs(const std::shared_ptr<const MatrixData>& m, QuantSpec spec, int runs)
{
    spec.calib = CalibMethod::Manual;
    spec.manualLo = -0.3f;
    double best = 1e30;
    for (int i = 0; i < runs; ++i) {
        spec.manualHi = 0.3f - 0.001f * float(i % 7);
        const double t0 = threadMs();
        auto q = quantize(m->values, {m->rows, m->cols}, spec);
        if (!q)
            return -1;
        const std::vector<float> dq = dequantize(*q);
        const Metrics mt = computeMetrics(m->values, dq, q->clampedCount);
        const HeatGrid a = poolMaxAbs(dq.data(), m->rows, m->cols, 384);
        const HeatGrid e = poolMaxAbsDiff(dq.data(), m->values.data(), m->rows, m->cols, 384);
        const auto rm = computeRowMetrics(m->values, dq, m->rows, m->cols);
        best = std::min(best, threadMs() - t0);
        if (mt.count == 0 || a.v.empty() || e.v.empty() || rm.empty())
            return -1;
    }
    return best;
}

struct Stats {
    double median = 0, p90 = 0, max = 0;
};

Stats stats(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    Stats s;
    if (v.empty())
        return s;
    s.median = v[v.size() / 2];
    s.p90 = v[std::min(v.size() - 1, size_t(double(v.size()) * 0.9))];
    s.max = v.back();
    return s;
}

void sendMouse(QWidget* target, QEvent::Type type, QPoint pos, Qt::MouseButtons buttons)
{
    QMouseEvent e(type, QPointF(pos), QPointF(target->mapToGlobal(pos)),
                  type == QEvent::MouseMove ? Qt::NoButton : Qt::LeftButton, buttons, Qt::NoModifier);
    QCoreApplication::sendEvent(target, &e);
}

}  // namespace

int main(int argc, char** argv)
{
    tuneAllocatorForLiveUpdates();  // as the application does
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
    QApplication app(argc, argv);
    int moves = 60;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--json") == 0)
            json = true;
        else
            moves = std::max(5, std::atoi(argv[i]));
    }

    MainWindow w(nullptr, /*useSettings=*/false);
    w.setInteractive(false);
    w.resize(1400, 900);
    w.show();
    w.showModel(std::make_shared<const Model>(makeDemoModel(2, 768)), QStringLiteral("demo"));
    if (!waitIdle(w))
        return 1;
    const QString name = QStringLiteral("distilbert.transformer.layer.0.ffn.lin1.weight");
    if (!w.selectTensor(name) || !waitIdle(w) || !w.matrix())
        return 1;
    const int64_t rows = w.matrix()->rows, cols = w.matrix()->cols;

    HistogramPlot* h = w.histogram();
    h->replot();
    const int x0 = h->linePixel(1);
    const int y = h->axisRect()->center().y();
    sendMouse(h, QEvent::MouseButtonPress, QPoint(x0 + 2, y), Qt::LeftButton);
    if (!h->isDragging()) {
        std::fprintf(stderr, "bench_drag: the press did not grab the clamp line\n");
        return 1;
    }

    std::vector<double> lines, full, guiCpu;
    rusage before{};
    getrusage(RUSAGE_SELF, &before);
    QElapsedTimer t;
    for (int i = 0; i < moves; ++i) {
        // Inwards and back out over ~60 px, as a user probing the range would.
        const int x = x0 - 4 - (i % 15) * 4;
        t.start();
        const double cpu0 = threadMs();
        sendMouse(h, QEvent::MouseMove, QPoint(x, y), Qt::LeftButton);
        h->repaint();
        lines.push_back(double(t.nsecsElapsed()) / 1e6);
        if (!waitIdle(w))
            return 1;
        h->repaint();
        w.numbers()->repaint();
        w.heatmaps()->before()->repaint();
        w.heatmaps()->after()->repaint();
        w.heatmaps()->error()->repaint();
        full.push_back(double(t.nsecsElapsed()) / 1e6);
        guiCpu.push_back(threadMs() - cpu0);
    }
    sendMouse(h, QEvent::MouseButtonRelease, QPoint(x0 - 10, y), Qt::NoButton);
    rusage after{};
    getrusage(RUSAGE_SELF, &after);
    const double faultsPerMove = double(after.ru_minflt - before.ru_minflt) / moves;

    // One thread's CPU for the job (what it costs), then its wall time on 1 thread and on
    // the whole work team (what the user waits), alternating.
    setTeamThreads(1);
    const double separate = separateMs(w.matrix(), QuantSpec{}, 15);
    const double worker = workerMs(w.matrix(), QuantSpec{}, 15);
    double wall1 = 1e30, wallN = 1e30;
    for (int round = 0; round < 5; ++round) {
        setTeamThreads(1);
        wall1 = std::min(wall1, workerMs(w.matrix(), QuantSpec{}, 5, wallMs));
        setTeamThreads(0);
        wallN = std::min(wallN, workerMs(w.matrix(), QuantSpec{}, 5, wallMs));
    }
    const int team = teamThreads();
    const Stats l = stats(lines), f = stats(full), g = stats(guiCpu);
    const char* isa = quantrun::activeQuant().name;
    if (json) {
        std::printf("{\"matrix\": [%lld, %lld], \"moves\": %d, \"quantize_path\": \"%s\", "
                    "\"lines_ms\": {\"median\": %.3f, \"p90\": %.3f, \"max\": %.3f}, "
                    "\"full_ms\": {\"median\": %.3f, \"p90\": %.3f, \"max\": %.3f}, \"page_faults_per_move\": %.1f, "
                    "\"worker_ms\": %.3f, \"separate_passes_ms\": %.3f, \"gui_thread_cpu_ms\": {\"median\": %.3f, "
                    "\"p90\": %.3f, \"max\": %.3f}, \"worker_wall_ms_1_thread\": %.3f, \"worker_wall_ms_team\": %.3f, "
                    "\"team_threads\": %d}\n",
                    (long long)rows, (long long)cols, moves, isa, l.median, l.p90, l.max, f.median, f.p90, f.max,
                    faultsPerMove, worker, separate, g.median, g.p90, g.max, wall1, wallN, team);
    } else {
        std::printf("clamp-line drag on %s (%lld x %lld), %d mouse moves, quantize path %s, offscreen 1400x900\n",
                    qPrintable(name), (long long)rows, (long long)cols, moves, isa);
        std::printf("%-58s %8s %8s %8s\n", "", "median", "p90", "max");
        std::printf("%-58s %6.2f ms %5.2f ms %5.2f ms\n", "move -> lines + histogram repainted", l.median, l.p90, l.max);
        std::printf("%-58s %6.2f ms %5.2f ms %5.2f ms\n", "move -> requantized, numbers + 3 heatmaps repainted", f.median,
                    f.p90, f.max);
        std::printf("%-58s %6.2f ms (thread CPU, best of 15)\n", "the background requantization alone", worker);
        std::printf("%-58s %6.2f ms (the same work as separate passes)\n", "", separate);
        std::printf("%-58s %6.2f ms 1 thread | %.2f ms %d threads (wall, best of 25)\n",
                    "the background requantization, split over the work team", wall1, wallN, team);
        std::printf("%-58s %6.2f ms %5.2f ms %5.2f ms (thread CPU)\n", "GUI thread's own work per move (events, maps, paint)",
                    g.median, g.p90, g.max);
        std::printf("page faults per move: %.1f (fresh pages the allocator had to map)\n", faultsPerMove);
        std::printf("target: < 16 ms from mouse move to repainted plots\n");
    }
    return 0;
}
