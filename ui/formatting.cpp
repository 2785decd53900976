#include "formatting.h"

#include <QLocale>
#include <QStringList>

#include <cmath>

namespace quantlens::ui {

QString formatBytes(int64_t bytes)
{
    const double b = double(bytes);
    if (bytes < 1024)
        return QStringLiteral("%1 B").arg(bytes);
    if (b < 1024.0 * 1024.0)
        return QStringLiteral("%1 KiB").arg(b / 1024.0, 0, 'f', 1);
    if (b < 1024.0 * 1024.0 * 1024.0)
        return QStringLiteral("%1 MiB").arg(b / (1024.0 * 1024.0), 0, 'f', 2);
    return QStringLiteral("%1 GiB").arg(b / (1024.0 * 1024.0 * 1024.0), 0, 'f', 2);
}

QString formatCount(int64_t n)
{
    // The C locale groups nothing; en_US gives the familiar 589,824 everywhere.
    return QLocale(QLocale::English, QLocale::UnitedStates).toString(qlonglong(n));
}

QString formatShape(const std::vector<int64_t>& shape)
{
    QStringList parts;
    for (int64_t d : shape)
        parts << QString::number(d);
    return QLatin1Char('[') + parts.join(QStringLiteral(", ")) + QLatin1Char(']');
}

QString formatNumber(double v, int precision)
{
    if (std::isnan(v))
        return QStringLiteral("nan");
    if (std::isinf(v))
        return v > 0 ? QStringLiteral("inf") : QStringLiteral("-inf");
    return QString::number(v, 'g', precision);
}

QString formatDb(double db)
{
    if (std::isinf(db))
        return db > 0 ? QStringLiteral("inf (exact)") : QStringLiteral("-inf");
    return QStringLiteral("%1 dB").arg(db, 0, 'f', 2);
}

std::vector<QString> shortLayerNames(const std::vector<QString>& names)
{
    std::vector<QString> out;
    qsizetype cut = 0;
    if (names.size() >= 2) {
        qsizetype common = names[0].size();
        for (const QString& n : names) {
            qsizetype k = 0;
            while (k < common && k < n.size() && n[k] == names[0][k])
                ++k;
            common = k;
        }
        cut = names[0].left(common).lastIndexOf(QLatin1Char('.')) + 1;
        if (cut > 0 && cut < names[0].size() && names[0][cut].isDigit())
            cut = names[0].left(cut - 1).lastIndexOf(QLatin1Char('.')) + 1;
    }
    static const QString kWeight = QStringLiteral(".weight");
    for (const QString& n : names) {
        QString s = n.mid(cut);
        if (s.endsWith(kWeight) && s.size() > kWeight.size())
            s.chop(kWeight.size());
        out.push_back(s);
    }
    return out;
}

}  // namespace quantlens::ui
