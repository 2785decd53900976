#pragma once
// Check boxes that stay visible under a dark palette. Fusion draws an item view's check
// indicator as a Base-coloured square with an outline darker than the window, which on a
// dark palette is dark on dark: the export ticks in the tensor tree and the "keep float32"
// boxes in the Sensitivity table all but vanished. This proxy adds a Text-coloured outline
// when the palette is dark and changes nothing on a light one.
#include <QProxyStyle>

class QWidget;

namespace quantlens::ui {

class IndicatorContrastStyle : public QProxyStyle {
    Q_OBJECT
public:
    using QProxyStyle::QProxyStyle;
    void drawPrimitive(PrimitiveElement pe, const QStyleOption* option, QPainter* painter,
                       const QWidget* widget = nullptr) const override;
};

// Gives `w` (an item view) that style; the style is owned by `w`.
void useContrastingIndicators(QWidget* w);

}  // namespace quantlens::ui
