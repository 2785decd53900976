#include "contraststyle.h"

#include <QPainter>
#include <QStyleOption>
#include <QWidget>

namespace quantlens::ui {

void IndicatorContrastStyle::drawPrimitive(PrimitiveElement pe, const QStyleOption* option, QPainter* painter,
                                           const QWidget* widget) const
{
    QProxyStyle::drawPrimitive(pe, option, painter, widget);
    // Fusion draws the item-view check through PE_IndicatorCheckBox, so that is the one to mark.
    if (pe != PE_IndicatorCheckBox || !option || option->palette.base().color().lightness() >= 128)
        return;
    QColor edge = option->palette.text().color();
    edge.setAlphaF(0.6f);
    painter->save();
    painter->setRenderHint(QPainter::Antialiasing, false);
    painter->setPen(edge);
    painter->setBrush(Qt::NoBrush);
    painter->drawRect(option->rect.adjusted(1, 1, -2, -2));
    painter->restore();
}

void useContrastingIndicators(QWidget* w)
{
    auto* s = new IndicatorContrastStyle;
    s->setParent(w);
    w->setStyle(s);
}

}  // namespace quantlens::ui
