#pragma once
class QThreadPool;

namespace quantlens::ui {

// The thread pool for Quantlens' own background jobs (opening, decoding, quantizing, the
// whole-model statistics, export, the Run tab). Never QThreadPool::globalInstance(): Qt
// 6.4's raster paint engine splits fills and line drawing across that pool and waits for
// it on the GUI thread, so a long job there froze painting until the job ended (800 ms
// while summarising a 2 GiB model, tst_largemodel). Owned by the application object.
QThreadPool* workPool();

}  // namespace quantlens::ui
