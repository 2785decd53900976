#include "numberspanel.h"

#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QHeaderView>
#include <QPushButton>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>

#include "formatting.h"

namespace quantlens::ui {

NumbersPanel::NumbersPanel(QWidget* parent) : QWidget(parent)
{
    auto* v = new QVBoxLayout(this);
    v->setContentsMargins(0, 0, 0, 0);
    table_ = new QTableWidget(0, 2, this);
    table_->setObjectName(QStringLiteral("numbersTable"));
    table_->setHorizontalHeaderLabels({tr("quantity"), tr("value")});
    table_->horizontalHeader()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
    table_->horizontalHeader()->setStretchLastSection(true);
    table_->verticalHeader()->setVisible(false);
    table_->verticalHeader()->setDefaultSectionSize(table_->fontMetrics().height() + 4);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->setSelectionMode(QAbstractItemView::ExtendedSelection);
    table_->setAlternatingRowColors(true);
    auto* copy = new QAction(tr("Copy numbers"), table_);
    copy->setShortcut(QKeySequence::Copy);
    copy->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    connect(copy, &QAction::triggered, this, &NumbersPanel::copyToClipboard);
    table_->addAction(copy);
    table_->setContextMenuPolicy(Qt::ActionsContextMenu);
    v->addWidget(table_, 1);
    auto* button = new QPushButton(tr("Copy all"), this);
    button->setToolTip(tr("Copy every number as tab-separated text"));
    connect(button, &QPushButton::clicked, this, &NumbersPanel::copyToClipboard);
    v->addWidget(button, 0, Qt::AlignRight);
    clear(tr("no tensor selected"));
}

void NumbersPanel::addRow(const QString& name, const QString& value, const QString& tip)
{
    const int r = table_->rowCount();
    table_->insertRow(r);
    auto* a = new QTableWidgetItem(name);
    auto* b = new QTableWidgetItem(value);
    a->setToolTip(tip.isEmpty() ? name : tip);
    b->setToolTip(tip.isEmpty() ? value : value + QLatin1Char('\n') + tip);
    table_->setItem(r, 0, a);
    table_->setItem(r, 1, b);
}

void NumbersPanel::clear(const QString& message)
{
    table_->setRowCount(0);
    addRow(tr("status"), message);
}

void NumbersPanel::setResult(const MatrixData& m, const QuantOutcome& q)
{
    table_->setRowCount(0);
    const QuantParams& p = q.qt.params;
    addRow(tr("tensor"), qs(m.name));
    addRow(tr("shape"), formatShape(m.storedShape) + (m.transposed ? tr(" (stored [in, out])") : QString()));
    addRow(tr("dtype"), qs(std::string(dtypeName(m.dtype))));
    addRow(tr("scheme"), qs(schemeName(q.spec.scheme)));
    addRow(tr("granularity"), qs(granularityName(q.spec)));
    addRow(tr("calibration"), qs(calibName(q.spec)));
    if (p.scale.size() == 1) {
        addRow(tr("scale"), formatNumber(p.scale[0], 7));
        addRow(tr("zero point"), QString::number(p.zeroPoint.empty() ? 0 : p.zeroPoint[0]));
    } else if (!p.scale.empty()) {
        const auto [smin, smax] = std::minmax_element(p.scale.begin(), p.scale.end());
        addRow(tr("scale"), tr("%1 scales, %2 … %3").arg(p.scale.size()).arg(formatNumber(*smin, 4), formatNumber(*smax, 4)));
        const auto [zmin, zmax] = std::minmax_element(p.zeroPoint.begin(), p.zeroPoint.end());
        addRow(tr("zero point"), p.zeroPoint.empty() ? QStringLiteral("0")
                                                     : (*zmin == *zmax ? QString::number(*zmin)
                                                                       : tr("%1 … %2").arg(*zmin).arg(*zmax)));
    }
    addRow(tr("qmin / qmax"), tr("%1 / %2").arg(p.qmin).arg(p.qmax));
    addRow(tr("range"), tr("[%1, %2]").arg(formatNumber(q.effLo, 6), formatNumber(q.effHi, 6)),
           tr("The clamp range the scheme applies: [(qmin − zp)·scale, (qmax − zp)·scale]"));
    if (q.spec.calib == CalibMethod::Manual)
        addRow(tr("requested range"), tr("[%1, %2]").arg(formatNumber(q.spec.manualLo, 6), formatNumber(q.spec.manualHi, 6)));
    addRow(tr("data min / max"), tr("%1 / %2").arg(formatNumber(m.stats.min, 6), formatNumber(m.stats.max, 6)));
    const Metrics& mt = q.metrics;
    addRow(tr("MSE"), formatNumber(mt.mse, 5));
    addRow(tr("SQNR"), formatDb(mt.sqnrDb), tr("10·log10(Σx² / Σ(x − x̂)²)"));
    addRow(tr("cosine"), QString::number(mt.cosine, 'f', 7));
    addRow(tr("max abs error"), formatNumber(mt.maxAbsError, 5));
    addRow(tr("clamped"), tr("%1 % (%2 values)").arg(mt.clampedFraction * 100.0, 0, 'f', 4).arg(formatCount(q.qt.clampedCount)));
    addRow(tr("bytes before"), tr("%1 (%2)").arg(formatCount(q.bytesBefore), formatBytes(q.bytesBefore)));
    addRow(tr("bytes after"), tr("%1 (%2)").arg(formatCount(q.bytesAfter), formatBytes(q.bytesAfter)));
    if (q.bytesAfter > 0)
        addRow(tr("compression"), tr("%1×").arg(double(q.bytesBefore) / double(q.bytesAfter), 0, 'f', 4));
}

QString NumbersPanel::value(const QString& name) const
{
    for (int r = 0; r < table_->rowCount(); ++r)
        if (table_->item(r, 0)->text() == name)
            return table_->item(r, 1)->text();
    return {};
}

QString NumbersPanel::toText() const
{
    QString out;
    for (int r = 0; r < table_->rowCount(); ++r)
        out += table_->item(r, 0)->text() + QLatin1Char('\t') + table_->item(r, 1)->text() + QLatin1Char('\n');
    return out;
}

void NumbersPanel::copyToClipboard() const
{
    if (QClipboard* cb = QApplication::clipboard())
        cb->setText(toText());
}

}  // namespace quantlens::ui
