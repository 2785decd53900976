// Benchmark (not a test): the GUI's per-drag pipeline and every calibrator on a
// 768x3072 float32 matrix, one core, and the drag path also on every core of the work team
// (workteam.h). Targets: histogram(2048) + quantize + dequantize + metrics under 1.5 ms
// (issue #21); each calibrator under 50 ms. Prints the best of N runs.
//
//   bench_quant [runs] [--baseline OLD_BENCH_QUANT]
//
// The drag path is printed once per ISA this CPU runs, side by side: the run re-executes
// itself with QUANTLENS_ISA forced to each (one dispatch per process), as separate passes
// (the old path) and as the one-sweep round trip. --baseline runs another build of this
// benchmark (e.g. main's) in between and puts its figures in the same table.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/quantrun.h"
#include "quant/calibrate.h"
#include "quant/histogram.h"
#include "quant/metrics.h"
#include "quant/quantize.h"
#include "workteam.h"

using namespace quantlens;

namespace {

// Thread CPU time, not wall time: the build machine is shared and often overloaded, and
// a benchmark that counts the time it spent waiting for a core measures the neighbours.
double cpuMs()
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

double bestMs(int runs, const std::function<void()>& fn)
{
    double best = 1e30;
    for (int i = 0; i < runs; ++i) {
        const double t0 = cpuMs();
        fn();
        best = std::min(best, cpuMs() - t0);
    }
    return best;
}

// Wall time (threads' CPU time would add up): the only fair clock for 1 against N threads,
// so both columns of that comparison use it, alternating. At least 40 runs: on a shared
// machine the best of a few rarely finds the second core free.
int wallRuns(int runs) { return std::max(runs, 40); }

void bestWallPair(int runs, const std::function<void()>& fn, double& one, double& all)
{
    runs = wallRuns(runs);
    one = all = 1e30;
    for (int i = 0; i < runs; ++i) {
        for (const int threads : {1, 0}) {
            setTeamThreads(threads);
            const double t0 = wallMs();
            fn();
            (threads == 1 ? one : all) = std::min(threads == 1 ? one : all, wallMs() - t0);
        }
    }
    setTeamThreads(0);
}

volatile double g_sink = 0;

std::string cpuName()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line, name, family, model;
    while (std::getline(in, line)) {
        auto val = [&] { return line.substr(line.find(':') + 2); };
        if (name.empty() && line.rfind("model name", 0) == 0)
            name = val();
        else if (family.empty() && line.rfind("cpu family", 0) == 0)
            family = val();
        else if (model.empty() && line.rfind("model\t", 0) == 0)
            model = val();
    }
    return name + " (family " + family + " model " + model + ", " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN))
           + " cores)";
}

// Runs a command and returns the value printed after `key` on the line that holds it.
double figureFrom(const std::string& cmd, const std::string& key)
{
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p)
        return -1;
    char buf[512];
    double v = -1;
    while (std::fgets(buf, sizeof buf, p))
        if (const char* k = std::strstr(buf, key.c_str()))
            v = std::atof(k + key.size());
    ::pclose(p);
    return v;
}

}  // namespace

int main(int argc, char** argv)
{
    const int64_t rows = 768, cols = 3072;
    int runs = 7;
    bool dragOnly = false;
    std::string baseline;
    for (int a = 1; a < argc; ++a) {
        if (!std::strcmp(argv[a], "--drag-only"))
            dragOnly = true;
        else if (!std::strcmp(argv[a], "--baseline") && a + 1 < argc)
            baseline = argv[++a];
        else
            runs = std::max(1, std::atoi(argv[a]));
    }
    std::mt19937 rng(42);
    std::student_t_distribution<float> t3(3.0f);
    std::vector<float> x(size_t(rows * cols));
    for (auto& v : x)
        v = t3(rng) * 0.023f;  // std ~0.04 for df=3
    x[1000] = 0.74f;
    x[200000] = -0.61f;
    const std::vector<int64_t> shape{rows, cols};
    std::vector<float> xhat(x.size());
    QuantizedTensor qt;
    Histogram h;
    Metrics m;
    const Range mm = minMaxRange(x);
    QuantSpec sym;
    sym.scheme = Scheme::TorchSymmetric;

    // The drag path's parts, then the whole as separate passes and as one sweep.
    auto dragFigures = [&] {
        (void)quantizeManualInto(x, shape, sym, -0.3f, 0.3f, qt);
        const double hist = bestMs(runs, [&] { h = computeHistogram(x, mm.lo, mm.hi, 2048); });
        const double quant = bestMs(runs, [&] { (void)quantizeManualInto(x, shape, sym, -0.3f, 0.3f, qt); });
        const double deq = bestMs(runs, [&] { dequantize(qt, xhat); });
        const double met = bestMs(runs, [&] { m = computeMetrics(x, xhat, qt.clampedCount); });
        const double separate = bestMs(runs, [&] {
            h = computeHistogram(x, mm.lo, mm.hi, 2048);
            (void)quantizeManualInto(x, shape, sym, -0.3f, 0.3f, qt);
            dequantize(qt, xhat);
            m = computeMetrics(x, xhat, qt.clampedCount);
        });
        const double sweep = bestMs(runs, [&] { m = *quantizeManualRoundTrip(x, shape, sym, -0.3f, 0.3f, qt, xhat); });
        const double fused = bestMs(runs, [&] {
            h = computeHistogram(x, mm.lo, mm.hi, 2048);
            m = *quantizeManualRoundTrip(x, shape, sym, -0.3f, 0.3f, qt, xhat);
        });
        std::printf("isa %s histogram= %.3f quantize= %.3f dequantize= %.3f metrics= %.3f separate= %.3f sweep= %.3f "
                    "drag= %.3f\n",
                    quantrun::activeQuant().name, hist, quant, deq, met, separate, sweep, fused);
    };
    // The drag path on one thread and on the whole work team (workteam.h), wall time.
    auto threadFigures = [&] {
        double hist1, histN, sweep1, sweepN, drag1, dragN;
        bestWallPair(runs, [&] { h = computeHistogram(x, mm.lo, mm.hi, 2048); }, hist1, histN);
        bestWallPair(runs, [&] { m = *quantizeManualRoundTrip(x, shape, sym, -0.3f, 0.3f, qt, xhat); }, sweep1, sweepN);
        bestWallPair(runs, [&] {
            h = computeHistogram(x, mm.lo, mm.hi, 2048);
            m = *quantizeManualRoundTrip(x, shape, sym, -0.3f, 0.3f, qt, xhat);
        }, drag1, dragN);
        std::printf("threads %s 1 histogram= %.3f sweep= %.3f drag= %.3f %d histogram= %.3f sweep= %.3f drag= %.3f\n",
                    quantrun::activeQuant().name, hist1, sweep1, drag1, teamThreads(), histN, sweepN, dragN);
    };
    if (dragOnly) {
        setTeamThreads(1);  // the per-ISA table is single-threaded (thread CPU time)
        dragFigures();
        setTeamThreads(0);
        threadFigures();
        return 0;
    }
    setTeamThreads(1);  // the figures below are one thread's unless said otherwise
    std::printf("bench_quant on %s\n  %lldx%lld float32 (%.1f MB), best of %d runs, one thread (the work team "
                "limited to 1), thread CPU time, active ISA %s\n",
                cpuName().c_str(), (long long)rows, (long long)cols, double(x.size()) * 4 / 1e6, runs,
                quantrun::activeQuant().name);

    struct Row {
        std::string name;
        double ms;
    };
    std::vector<Row> rowsOut;
    auto add = [&](const std::string& n, double ms) {
        rowsOut.push_back({n, ms});
        std::printf("  %-52s %8.3f ms\n", n.c_str(), ms);
    };

    add("minmax", bestMs(runs, [&] { g_sink = minMaxRange(x).hi; }));
    add("histogram 2048 bins", bestMs(runs, [&] { h = computeHistogram(x, mm.lo, mm.hi, 2048); }));
    for (const char* scheme : {"seed", "torch-symmetric", "torch-affine", "narrow-symmetric", "q8_0"}) {
        QuantSpec spec;
        spec.scheme = *parseScheme(scheme);
        add(std::string("quantize ") + scheme + " per tensor (minmax)",
            bestMs(runs, [&] { (void)quantizeInto(x, shape, spec, qt); }));
    }
    {
        QuantSpec spec;
        spec.scheme = Scheme::TorchSymmetric;
        spec.granularity = Granularity::PerChannel;
        add("quantize torch-symmetric per channel", bestMs(runs, [&] { (void)quantizeInto(x, shape, spec, qt); }));
        spec.granularity = Granularity::PerGroup;
        spec.groupSize = 128;
        add("quantize torch-symmetric group:128", bestMs(runs, [&] { (void)quantizeInto(x, shape, spec, qt); }));
    }
    QuantSpec seed;
    (void)quantizeInto(x, shape, seed, qt);
    add("dequantize", bestMs(runs, [&] { dequantize(qt, xhat); }));
    add("computeMetrics", bestMs(runs, [&] { m = computeMetrics(x, xhat, qt.clampedCount); }));
    add("computeRowMetrics (768 rows)", bestMs(runs, [&] { g_sink = computeRowMetrics(x, xhat, rows, cols).size(); }));
    add("computeStats", bestMs(runs, [&] { g_sink = computeStats(x).std; }));

    const double pipeline = bestMs(runs, [&] {
        h = computeHistogram(x, mm.lo, mm.hi, 2048);
        (void)quantizeManualInto(x, shape, sym, -0.3f, 0.3f, qt);
        dequantize(qt, xhat);
        m = computeMetrics(x, xhat, qt.clampedCount);
    });
    add("GUI drag: histogram + manual quantize + dequantize + metrics", pipeline);
    std::printf("    (SQNR %.2f dB, clamped %.4f%%)\n", m.sqnrDb, 100 * m.clampedFraction);
    add("GUI drag, one sweep: histogram + quantizeManualRoundTrip", bestMs(runs, [&] {
            h = computeHistogram(x, mm.lo, mm.hi, 2048);
            m = *quantizeManualRoundTrip(x, shape, sym, -0.3f, 0.3f, qt, xhat);
        }));
    {
        double one = 0, all = 0;
        bestWallPair(runs, [&] {
            h = computeHistogram(x, mm.lo, mm.hi, 2048);
            m = *quantizeManualRoundTrip(x, shape, sym, -0.3f, 0.3f, qt, xhat);
        }, one, all);
        setTeamThreads(1);
        std::printf("  %-52s %8.3f ms | %d threads %.3f ms (wall time, best of %d)\n", "GUI drag, one sweep, 1 thread",
                    one, teamThreads() == 1 ? int(std::max(1u, std::thread::hardware_concurrency())) : teamThreads(), all,
                    wallRuns(runs));
    }

    // Every ISA side by side (and the baseline build), each in its own process.
    std::printf("\nGUI drag path per ISA (ms, best of %d; 'separate' = the four calls, 'drag' = histogram + one-sweep "
                "round trip):\n",
                runs);
    std::printf("  %-22s %9s %9s %9s %9s %9s %9s %9s\n", "build / ISA", "histogram", "quantize", "dequant", "metrics",
                "separate", "sweep", "drag");
    char self[4096] = {};
    const ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
    const std::string me = len > 0 ? std::string(self, size_t(len)) : std::string(argv[0]);
    const std::string r = std::to_string(runs);
    std::vector<std::string> threadLines;
    for (int round = 0; round < 2; ++round) {  // twice, interleaved, to see the machine's drift
        if (!baseline.empty()) {
            const double old = figureFrom(baseline + " " + r + " 2>&1", "dequantize + metrics");
            std::printf("  %-22s %9s %9s %9s %9s %9.3f %9s %9s\n", "baseline (its own ISA)", "", "", "", "", old, "-", "-");
        }
        for (const quantrun::QuantKernels* k : quantrun::availableQuant()) {
            const std::string isa = std::string(k->name) == "avx512" ? "avx512vnni" : k->name;
            FILE* p = ::popen(("QUANTLENS_ISA=" + isa + " " + me + " " + r + " --drag-only").c_str(), "r");
            char buf[512] = {};
            char name[32] = {};
            double f[7] = {};
            if (p && std::fgets(buf, sizeof buf, p)
                && std::sscanf(buf, "isa %31s histogram= %lf quantize= %lf dequantize= %lf metrics= %lf separate= %lf "
                                    "sweep= %lf drag= %lf",
                               name, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]) == 8)
                std::printf("  %-22s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, f[0], f[1], f[2], f[3], f[4], f[5],
                            f[6]);
            double t[6] = {};
            int all = 0;
            if (p && std::fgets(buf, sizeof buf, p)
                && std::sscanf(buf, "threads %31s 1 histogram= %lf sweep= %lf drag= %lf %d histogram= %lf sweep= %lf drag= %lf",
                               name, &t[0], &t[1], &t[2], &all, &t[3], &t[4], &t[5]) == 8) {
                char line[256];
                std::snprintf(line, sizeof line, "  %-22s %9.3f %9.3f %9.3f | %2d %9.3f %9.3f %9.3f", name, t[0], t[1], t[2],
                              all, t[3], t[4], t[5]);
                threadLines.push_back(line);
            }
            if (p)
                ::pclose(p);
        }
    }
    std::printf("\nGUI drag path, 1 thread | all threads of the work team (ms, wall time, best of %d, alternating):\n",
                wallRuns(runs));
    std::printf("  %-22s %9s %9s %9s | %2s %9s %9s %9s\n", "ISA", "histogram", "sweep", "drag", "n", "histogram", "sweep",
                "drag");
    for (const std::string& l : threadLines)
        std::printf("%s\n", l.c_str());
    std::printf("\n");

    for (const char* c : {"percentile:99.99", "mse", "entropy", "hist-l2"}) {
        for (const char* scheme : {"torch-symmetric", "torch-affine"}) {
            QuantSpec spec;
            spec.scheme = *parseScheme(scheme);
            (void)parseCalib(c, spec);
            Range r;
            const double ms = bestMs(std::min(runs, 3), [&] { r = *calibrateRange(x, spec); });
            char label[128];
            std::snprintf(label, sizeof label, "calibrate %s (%s) -> [%.4f, %.4f]", c, scheme, double(r.lo), double(r.hi));
            add(label, ms);
        }
    }
    add("suggestRanges (all calibrators)", bestMs(std::min(runs, 3), [&] { g_sink = suggestRanges(x, sym).size(); }));
    return 0;
}
