#pragma once
// Shared bits of the reader tests (tst_gguf, tst_onnx, tst_hdf5reader, tst_npy, tst_safetensors): JSON fixtures
// written by the tests/scripts/make_*_fixtures.py scripts, and float64 statistics that
// follow numpy's definitions (population std, ddof = 0).
#include <cmath>
#include <fstream>
#include <limits>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "model.h"
#include "testsupport.h"

namespace quantlens::test {

inline nlohmann::json loadJson(const QString& path)
{
    std::ifstream in(path.toStdString());
    if (!in)
        return nlohmann::json();
    return nlohmann::json::parse(in, nullptr, false);
}

// The malformed corpus of one format: tests/data/malformed/FMT/expected.json maps each
// file to the error code its reader must give. Call from FMT's malformed_data() and
// malformed() (a data-driven Qt test).
inline void addMalformedRows(const QString& fmt, size_t atLeast)
{
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("code");
    const auto e = loadJson(dataPath(QStringLiteral("malformed/") + fmt + QStringLiteral("/expected.json")));
    QVERIFY2(e.is_object() && e.size() >= atLeast, "expected.json is missing or has too few rows");
    for (const auto& [file, code] : e.items())
        QTest::newRow(file.c_str()) << QString::fromStdString(file) << QString::fromStdString(code.get<std::string>());
}

// openModel refuses the file with the expected code and one line that starts with its path.
inline void checkMalformedRow(const QString& fmt)
{
    QFETCH(QString, file);
    QFETCH(QString, code);
    const std::string path = dataPath(QStringLiteral("malformed/") + fmt + QStringLiteral("/") + file).toStdString();
    auto m = openModel(path);
    QVERIFY2(!m.ok(), "a malformed file was accepted");
    const std::string line = m.error().oneLine();
    QCOMPARE(QString::fromStdString(m.error().code), code);
    QVERIFY2(line.find(path) == 0, line.c_str());
    QVERIFY(line.find('\n') == std::string::npos);
    qDebug("%s", line.c_str());
}

struct Stats {
    double min = 0, max = 0, mean = 0, std = 0;
    int64_t nonFinite = 0;
};

inline Stats statsOf(std::span<const float> v)
{
    Stats s;
    if (v.empty())
        return s;
    s.min = std::numeric_limits<double>::infinity();
    s.max = -s.min;
    double sum = 0;
    for (float f : v) {
        s.nonFinite += std::isfinite(f) ? 0 : 1;
        s.min = std::min(s.min, double(f));
        s.max = std::max(s.max, double(f));
        sum += f;
    }
    s.mean = sum / double(v.size());
    double sq = 0;
    for (float f : v)
        sq += (double(f) - s.mean) * (double(f) - s.mean);
    s.std = std::sqrt(sq / double(v.size()));
    return s;
}

// numpy sums pairwise, we sum in order: agree to ~1e-12 relative; 1e-9 leaves room.
inline bool closeRel(double a, double b, double rel = 1e-9, double abs = 1e-12)
{
    return std::abs(a - b) <= abs + rel * std::max(std::abs(a), std::abs(b));
}

inline std::string metaValue(const Model& m, const std::string& key)
{
    for (const auto& [k, v] : m.metadata)
        if (k == key)
            return v;
    return "<missing " + key + ">";
}

}  // namespace quantlens::test
