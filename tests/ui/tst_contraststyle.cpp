// IndicatorContrastStyle: a check box drawn under a dark palette gets a visible outline,
// and under a light palette it is drawn exactly as the application style draws it.
#include <QApplication>
#include <QImage>
#include <QPainter>
#include <QStyleOptionButton>
#include <QTest>

#include "contraststyle.h"
#include "darkpalette.h"

using namespace quantlens::ui;

namespace {

QImage drawCheck(const QStyle& style, const QPalette& pal, QColor background)
{
    QImage img(20, 20, QImage::Format_ARGB32);
    img.fill(background);
    QStyleOptionButton o;
    o.rect = QRect(2, 2, 16, 16);
    o.palette = pal;
    o.state = QStyle::State_Enabled | QStyle::State_Off;
    QPainter painter(&img);
    style.drawPrimitive(QStyle::PE_IndicatorCheckBox, &o, &painter, nullptr);
    return img;
}

int brightestGray(const QImage& img)
{
    int best = 0;
    for (int y = 0; y < img.height(); ++y)
        for (int x = 0; x < img.width(); ++x)
            best = std::max(best, qGray(img.pixel(x, y)));
    return best;
}

}  // namespace

class TestContrastStyle : public QObject {
    Q_OBJECT
private slots:
    void darkPaletteGetsAVisibleOutline()
    {
        IndicatorContrastStyle s;
        const QPalette dark = quantlens::test::darkPalette();
        const QImage plain = drawCheck(*QApplication::style(), dark, dark.color(QPalette::Base));
        const QImage ours = drawCheck(s, dark, dark.color(QPalette::Base));
        qDebug("brightest pixel: application style %d, with the outline %d", brightestGray(plain), brightestGray(ours));
        QVERIFY(brightestGray(ours) >= 110);
        QVERIFY(brightestGray(ours) > brightestGray(plain) + 30);
    }

    void lightPaletteIsUnchanged()
    {
        IndicatorContrastStyle s;
        const QPalette light = QApplication::palette();
        QVERIFY(light.base().color().lightness() >= 128);
        QCOMPARE(drawCheck(s, light, Qt::white), drawCheck(*QApplication::style(), light, Qt::white));
    }
};

QTEST_MAIN(TestContrastStyle)
#include "tst_contraststyle.moc"
