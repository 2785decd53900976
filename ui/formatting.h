#pragma once
// Shared text formatting for the views, so the tree, the numbers panel and the status
// bar spell sizes and numbers the same way.
#include <QString>

#include <cstdint>
#include <string>
#include <vector>

namespace quantlens::ui {

inline QString qs(const std::string& s) { return QString::fromStdString(s); }
QString formatBytes(int64_t bytes);       // "2.25 MiB"
QString formatCount(int64_t n);           // "589,824"
QString formatShape(const std::vector<int64_t>& shape);  // "[768, 768]"
QString formatNumber(double v, int precision = 5);      // compact, "inf" aware
QString formatDb(double db);              // "28.21 dB"
// Layer names for chart tick labels: the prefix all share ("distilbert.transformer.") and a
// ".weight" suffix go; a remainder that would start with a layer number keeps the word
// before it ("layer.0.ffn.lin1", not "0.ffn.lin1").
std::vector<QString> shortLayerNames(const std::vector<QString>& names);

}  // namespace quantlens::ui
