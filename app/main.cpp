// quantlens: the GUI. Thin main: command line, platform choice, screenshot mode.
//   quantlens [MODEL]                       (no MODEL: the built-in synthetic demo)
//   quantlens --screenshot OUT.png [MODEL]  render offscreen, save, exit 0 (1 on failure)
//   quantlens --tab NAME ...                 start on that tab (also for screenshots)
//   quantlens MODEL --compare REF            compare MODEL with the reference checkpoint REF
//   quantlens --tensor NAME ...              show that tensor first
//   quantlens --record [--alpha A] ...       record the selected layer's activations (Activations tab)
//   MODEL "demo" is the built-in demo, as for quantlens-cli
#include <QApplication>
#include <QCommandLineParser>
#include <QIcon>
#include <QTabWidget>
#include <QTimer>

#include <QSlider>

#include "activationspanel.h"
#include "comparepanel.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <cmath>
#include <cstring>

#include "allocatortuning.h"
#include "mainwindow.h"

namespace {

bool envSet(const char* name)
{
    const char* v = std::getenv(name);
    return v && *v;
}

bool argsAskForScreenshot(int argc, char** argv)
{
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--screenshot") == 0 || std::strncmp(argv[i], "--screenshot=", 13) == 0)
            return true;
    return false;
}

}  // namespace

int main(int argc, char** argv)
{
    quantlens::ui::tuneAllocatorForLiveUpdates();
    // The platform must be chosen before QApplication exists. Without a display the
    // xcb plugin would abort; offscreen renders the same widgets into memory.
    const bool screenshotRequested = argsAskForScreenshot(argc, argv);
    const bool haveDisplay = envSet("DISPLAY") || envSet("WAYLAND_DISPLAY");
    bool noDisplayFallback = false;
    if (!haveDisplay && !envSet("QT_QPA_PLATFORM")) {
        qputenv("QT_QPA_PLATFORM", "offscreen");
        noDisplayFallback = !screenshotRequested;
    }

    QApplication app(argc, argv);
    QApplication::setOrganizationName(QStringLiteral("quantlens"));
    QApplication::setApplicationName(QStringLiteral("quantlens"));
    QApplication::setApplicationVersion(QStringLiteral("0.1.0"));
    QApplication::setWindowIcon(QIcon(QStringLiteral(":/icons/quantlens.png")));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral("Inspect neural-network weights and quantize them to int8."));
    parser.addHelpOption();
    parser.addVersionOption();
    const QCommandLineOption shotOpt(QStringLiteral("screenshot"),
                                     QStringLiteral("Render the main window offscreen, save it as PNG and exit."),
                                     QStringLiteral("OUT.png"));
    parser.addOption(shotOpt);
    const QCommandLineOption tabOpt(QStringLiteral("tab"),
                                    QStringLiteral("Show this tab first: tensor, channel, overview, run, sensitivity, activations or compare "
                                                   "(any start of its title)."),
                                    QStringLiteral("NAME"));
    parser.addOption(tabOpt);
    const QCommandLineOption compareOpt(QStringLiteral("compare"),
                                        QStringLiteral("Compare MODEL with this reference checkpoint, tensor by tensor."),
                                        QStringLiteral("REF"));
    parser.addOption(compareOpt);
    const QCommandLineOption tensorOpt(QStringLiteral("tensor"), QStringLiteral("Show this tensor first (its full name)."),
                                       QStringLiteral("NAME"));
    parser.addOption(tensorOpt);
    const QCommandLineOption recordOpt(QStringLiteral("record"),
                                       QStringLiteral("Record the selected layer's activations (the Activations tab's "
                                                      "\"Record activations\", random ids) once the model is open; a "
                                                      "screenshot waits for it."));
    parser.addOption(recordOpt);
    const QCommandLineOption alphaOpt(QStringLiteral("alpha"),
                                      QStringLiteral("The Activations tab's SmoothQuant α, 0 to 1 in steps of 0.05; "
                                                     "shows its SmoothQuant page."),
                                      QStringLiteral("A"));
    parser.addOption(alphaOpt);
    parser.addPositionalArgument(QStringLiteral("MODEL"), QStringLiteral("Model file to open (default: the built-in demo)."),
                                 QStringLiteral("[MODEL]"));
    if (!parser.parse(QApplication::arguments())) {
        std::fprintf(stderr, "quantlens: %s\n", qPrintable(parser.errorText()));
        return 2;
    }
    if (parser.isSet(QStringLiteral("help")))
        parser.showHelp(0);
    if (parser.isSet(QStringLiteral("version")))
        parser.showVersion();
    const QStringList pos = parser.positionalArguments();
    if (pos.size() > 1) {
        std::fprintf(stderr, "quantlens: expected at most one MODEL argument\n");
        return 2;
    }

    QString shot = parser.value(shotOpt);
    if (noDisplayFallback) {
        shot = QStringLiteral("quantlens-screenshot.png");
        std::fprintf(stderr,
                     "quantlens: no display (DISPLAY and WAYLAND_DISPLAY are unset); rendering offscreen and "
                     "writing a screenshot to ./quantlens-screenshot.png instead\n");
    }
    const bool screenshotMode = !shot.isEmpty();
    const bool record = parser.isSet(recordOpt);
    int alphaStep = -1;
    if (parser.isSet(alphaOpt)) {
        bool ok = false;
        const double a = parser.value(alphaOpt).toDouble(&ok);
        if (!ok || !(a >= 0.0 && a <= 1.0)) {
            std::fprintf(stderr, "quantlens: --alpha takes a number from 0 to 1\n");
            return 2;
        }
        alphaStep = int(std::lround(a * 20));
    }

    quantlens::ui::MainWindow w(nullptr, /*useSettings=*/!screenshotMode);
    if (parser.isSet(tabOpt)) {
        const QString want = parser.value(tabOpt).trimmed();
        QTabWidget* tabs = w.tabs();
        int found = -1;
        for (int i = 0; i < tabs->count() && found < 0; ++i) {
            const QString title = tabs->tabText(i).remove(QLatin1Char('&'));
            if (!want.isEmpty() && (title.startsWith(want, Qt::CaseInsensitive) ||
                                    title.section(QLatin1Char(' '), -1).startsWith(want, Qt::CaseInsensitive)))
                found = i;
        }
        if (found < 0) {
            QStringList names;
            for (int i = 0; i < tabs->count(); ++i)
                names << tabs->tabText(i).remove(QLatin1Char('&'));
            std::fprintf(stderr, "quantlens: no tab '%s' (tabs: %s)\n", qPrintable(want), qPrintable(names.join(QStringLiteral(", "))));
            return 2;
        }
        tabs->setCurrentIndex(found);
    }
    if (screenshotMode) {
        w.setInteractive(false);
        w.resize(1400, 900);
        QObject::connect(&w, &quantlens::ui::MainWindow::loadFailed, &app, [](const QString& reason) {
            std::fprintf(stderr, "quantlens: %s\n", qPrintable(reason));
            QCoreApplication::exit(1);
        });
        auto taken = std::make_shared<bool>(false);  // idle and the recording's end may both ask
        auto shoot = [&w, shot, record, taken] {
            // Idle between steps (e.g. before the first tensor is decoded) does not count; a
            // tensor the plan leaves in float has no quantization result to wait for.
            if (!w.model() || !w.matrix() || (!w.outcome() && w.isQuantized(w.currentTensor())))
                return;
            const quantlens::ui::ActivationsPanel* a = w.activationsPanel();
            if (*taken || (record && (a->isRunning() || !a->result())))
                return;
            *taken = true;
            // One more turn of the event loop so queued replots have painted.
            QTimer::singleShot(100, &w, [&w, shot] {
                if (!w.grab().save(shot, "PNG")) {
                    std::fprintf(stderr, "quantlens: cannot write %s\n", qPrintable(shot));
                    QCoreApplication::exit(1);
                    return;
                }
                std::fprintf(stderr, "quantlens: wrote %s\n", qPrintable(shot));
                QCoreApplication::exit(0);
            });
        };
        QObject::connect(&w, &quantlens::ui::MainWindow::becameIdle, &app, shoot);
        if (record)
            QObject::connect(w.activationsPanel(), &quantlens::ui::ActivationsPanel::finished, &app, [&w, shoot] {
                if (!w.activationsPanel()->result()) {
                    std::fprintf(stderr, "quantlens: activations: %s\n", qPrintable(w.activationsPanel()->statusText()));
                    QCoreApplication::exit(1);
                    return;
                }
                if (w.isIdle())
                    shoot();
            });
        QTimer::singleShot(300000, &app, [] {
            std::fprintf(stderr, "quantlens: timed out waiting for the background work\n");
            QCoreApplication::exit(1);
        });
    }
    if (parser.isSet(compareOpt)) {
        // Once, for the model given on the command line: a model opened later is compared anew
        // only when the user asks.
        const QString ref = parser.value(compareOpt);
        auto once = std::make_shared<QMetaObject::Connection>();
        *once = QObject::connect(&w, &quantlens::ui::MainWindow::modelLoaded, &w, [&w, ref, once] {
            QObject::disconnect(*once);
            w.compareWith(ref);
        });
        if (screenshotMode)
            QObject::connect(w.comparePanel(), &quantlens::ui::ComparePanel::finished, &app, [&w] {
                if (w.comparePanel()->report())
                    return;
                std::fprintf(stderr, "quantlens: compare: %s\n", qPrintable(w.comparePanel()->lastError()));
                QCoreApplication::exit(1);
            });
    }
    if (parser.isSet(tensorOpt)) {
        const QString want = parser.value(tensorOpt);
        QObject::connect(&w, &quantlens::ui::MainWindow::modelLoaded, &w, [&w, want] {
            if (!w.selectTensor(want)) {
                std::fprintf(stderr, "quantlens: the model has no tensor '%s'\n", qPrintable(want));
                QCoreApplication::exit(2);
            }
        });
    }
    if (alphaStep >= 0) {
        w.activationsPanel()->alphaSlider()->setValue(alphaStep);
        w.activationsPanel()->showSmoothQuantPage();
    }
    if (record) {
        // After --tensor's selection (connected above, so it runs first).
        QObject::connect(&w, &quantlens::ui::MainWindow::modelLoaded, &w, [&w] {
            if (w.activationsPanel()->layerName().isEmpty()) {
                std::fprintf(stderr, "quantlens: --record needs a linear layer's weight selected (--tensor NAME.weight)\n");
                QCoreApplication::exit(2);
                return;
            }
            w.activationsPanel()->run();
        });
    }
    w.show();
    if (pos.isEmpty() || pos.front() == QStringLiteral("demo"))
        w.openDemo();
    else
        w.openFile(pos.front());
    return app.exec();
}
