// The window watches the open model's files: a rewrite on disk is announced, and Reload
// brings the new contents back with the plan, the selected tensor and the tab kept.
#include <QSignalSpy>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTest>

#include <cstdio>
#include <unistd.h>

#include "filewatch.h"
#include "io/safetensorswriter.h"
#include "mainwindow.h"
#include "numberspanel.h"
#include "plan/session.h"

using namespace quantlens;
using namespace quantlens::ui;

namespace {

constexpr int kWaitMs = 15000;

bool waitIdle(MainWindow& w)
{
    QDeadlineTimer deadline(kWaitMs);
    while (!w.isIdle() && !deadline.hasExpired())
        QTest::qWait(20);
    return w.isIdle();
}

// Three linear layers whose values are scaled by `gain`, written by temp + rename like
// a training run saving a checkpoint.
bool writeModel(const std::string& path, float gain)
{
    std::vector<Tensor> ts;
    for (int k = 0; k < 3; ++k) {
        std::vector<float> v(64 * 32);
        for (size_t i = 0; i < v.size(); ++i)
            v[i] = gain * float(int(i % 97) - 48) * 0.01f * float(k + 1);
        ts.push_back(makeFloatTensor("layer" + std::to_string(k) + ".weight", {64, 32}, v));
    }
    std::vector<SafetensorsItem> items;
    for (const Tensor& t : ts)
        items.push_back({t.name, DType::F32, t.shape, [t](AtomicFile& f) { return writeTensorBytes(f, t); }});
    const std::string tmp = path + ".tmp";
    return writeSafetensors(tmp, items, {}, {}).ok() && std::rename(tmp.c_str(), path.c_str()) == 0;
}

float firstValue(const MainWindow& w, const char* name)
{
    const Tensor* t = w.model()->find(name);
    auto v = t ? t->toFloat() : Result<std::vector<float>>(makeError("x", "missing"));
    return v ? (*v)[1] : -1.0f;
}

}  // namespace

class TestFileWatch : public QObject {
    Q_OBJECT
private slots:
    void reloadKeepsPlanTensorAndTab();
};

void TestFileWatch::reloadKeepsPlanTensorAndTab()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.filePath("model.safetensors").toStdString();
    QVERIFY(writeModel(path, 1.0f));

    MainWindow w(nullptr, /*useSettings=*/false);
    w.setInteractive(false);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    auto* watch = w.findChild<FileWatch*>();
    QVERIFY(watch);
    QSignalSpy loaded(&w, &MainWindow::modelLoaded);
    w.openFile(QString::fromStdString(path));
    QVERIFY(loaded.wait(kWaitMs));
    QVERIFY(waitIdle(w));
    QCOMPARE(watch->watchedFiles(), QStringList{QString::fromStdString(path)});
    QVERIFY(!watch->isVisible());

    // A plan: layer1 tuned to a manual range, layer0 and layer2 ticked, layer2 kept in float.
    Session plan = w.session();
    QuantSpec tuned;
    tuned.calib = CalibMethod::Manual;
    tuned.manualLo = -0.25f;
    tuned.manualHi = 0.5f;
    plan.overrides["layer1.weight"] = tuned;
    plan.exportSelection = {"layer0.weight", "layer2.weight"};
    plan.keepFloat = {"layer2.weight"};
    const QString sessionPath = dir.filePath("plan.json");
    QVERIFY(saveSession(sessionPath.toStdString(), plan).ok());
    QVERIFY2(w.loadSessionFrom(sessionPath), qPrintable(w.lastError()));
    QVERIFY(w.selectTensor(QStringLiteral("layer1.weight")));
    w.tabs()->setCurrentIndex(w.tabs()->count() - 1);
    const int tab = w.tabs()->currentIndex();
    QVERIFY(waitIdle(w));
    const std::string before = sessionToJson(w.session());
    const float oldValue = firstValue(w, "layer1.weight");

    // The checkpoint is rewritten: the bar says so.
    QSignalSpy detected(watch, &FileWatch::changeDetected);
    QVERIFY(writeModel(path, 2.0f));
    QVERIFY(detected.wait(kWaitMs));
    QVERIFY(watch->isVisible());
    QVERIFY2(watch->message().contains(QStringLiteral("model.safetensors")), qPrintable(watch->message()));

    QSignalSpy reloaded(watch, &FileWatch::reloaded);
    watch->reload();
    QVERIFY(reloaded.wait(kWaitMs));
    QVERIFY(waitIdle(w));
    QVERIFY(!watch->isVisible());
    QCOMPARE(firstValue(w, "layer1.weight"), 2.0f * oldValue);  // the new contents
    QCOMPARE(sessionToJson(w.session()), before);                // the same plan
    QCOMPARE(w.session().overrides.at("layer1.weight").manualHi, 0.5f);
    QCOMPARE(QString::fromStdString(w.model()->tensors[size_t(w.currentTensor())].name), QStringLiteral("layer1.weight"));
    QCOMPARE(w.tabs()->currentIndex(), tab);

    // Cut in place, under the open window (this is the inode it maps, so no pages are
    // left behind the mapping): the next decode reads past the end of the file; the
    // window says why and lives on, and the bar reports the change.
    QSignalSpy cut(watch, &FileWatch::changeDetected);
    QVERIFY(::truncate(path.c_str(), 0) == 0);
    QVERIFY(w.selectTensor(QStringLiteral("layer2.weight")));
    QVERIFY(waitIdle(w));
    QVERIFY2(w.numbers()->toText().contains(QStringLiteral("file changed while reading")), qPrintable(w.numbers()->toText()));
    QVERIFY(cut.count() >= 1 || cut.wait(kWaitMs));

    // Still watching after a replace: a later rewrite is noticed too.
    watch->dismiss();
    QSignalSpy again(watch, &FileWatch::changeDetected);
    QVERIFY(writeModel(path, 3.0f));
    QVERIFY(again.wait(kWaitMs));
}

QTEST_MAIN(TestFileWatch)
#include "tst_filewatch.moc"
