#pragma once
// Paths for tests: fixtures in tests/data, real models in ../shared/models.
#include <QDir>
#include <QFileInfo>
#include <QString>
#include <QTest>

namespace quantlens::test {

inline QString dataPath(const QString& rel) { return QStringLiteral(QUANTLENS_TEST_DATA "/") + rel; }

// A user's clone has no ../shared: tests that need it skip with this message.
// CI (.ci/run) checks the folder exists, so there they always run.
inline QString sharedModel(const QString& file) { return QStringLiteral(QUANTLENS_SHARED_MODELS "/") + file; }
inline bool haveSharedModels() { return QFileInfo::exists(QStringLiteral(QUANTLENS_SHARED_MODELS "/SOURCES.md")); }

}  // namespace quantlens::test

#define QL_REQUIRE_SHARED_MODELS()                                                                 \
    do {                                                                                           \
        if (!quantlens::test::haveSharedModels())                                                  \
            QSKIP("../shared/models is not present (only in the project's CI); real-model test skipped"); \
    } while (0)
