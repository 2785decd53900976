// Names and parsers of QuantSpec: every spelling the CLI accepts round-trips.
#include <QTest>

#include "quant/quantspec.h"

using namespace quantlens;

class TstQuantSpec : public QObject {
    Q_OBJECT
private slots:
    void schemeRoundTrip_data()
    {
        QTest::addColumn<QString>("name");
        for (const char* n : {"seed", "torch-symmetric", "torch-affine", "narrow-symmetric", "q8_0"})
            QTest::newRow(n) << QString::fromLatin1(n);
    }
    void schemeRoundTrip()
    {
        QFETCH(QString, name);
        auto s = parseScheme(name.toStdString());
        QVERIFY(s.ok());
        QCOMPARE(QString::fromStdString(schemeName(*s)), name);
    }
    void badScheme() { QVERIFY(!parseScheme("int8").ok()); }

    void granularity_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<bool>("ok");
        QTest::newRow("tensor") << "tensor" << true;
        QTest::newRow("channel") << "channel" << true;
        QTest::newRow("group128") << "group:128" << true;
        QTest::newRow("group0") << "group:0" << false;
        QTest::newRow("groupNeg") << "group:-4" << false;
        QTest::newRow("groupJunk") << "group:12x" << false;
        QTest::newRow("groupEmpty") << "group:" << false;
        QTest::newRow("row") << "row" << false;
    }
    void granularity()
    {
        QFETCH(QString, text);
        QFETCH(bool, ok);
        QuantSpec s;
        const auto st = parseGranularity(text.toStdString(), s);
        QCOMPARE(st.ok(), ok);
        if (ok)
            QCOMPARE(QString::fromStdString(granularityName(s)), text);
    }

    void calib_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<bool>("ok");
        QTest::newRow("minmax") << "minmax" << true;
        QTest::newRow("mse") << "mse" << true;
        QTest::newRow("entropy") << "entropy" << true;
        QTest::newRow("hist-l2") << "hist-l2" << true;
        QTest::newRow("percentile") << "percentile:99.99" << true;
        QTest::newRow("percentile100") << "percentile:100" << true;
        QTest::newRow("percentile0") << "percentile:0" << false;
        QTest::newRow("percentile101") << "percentile:101" << false;
        QTest::newRow("manual") << "manual:-0.1,0.2" << true;
        QTest::newRow("manualReversed") << "manual:0.2,-0.1" << false;
        QTest::newRow("manualOne") << "manual:0.2" << false;
        QTest::newRow("manualNan") << "manual:nan,1" << false;
        QTest::newRow("kl") << "kl" << false;
    }
    void calib()
    {
        QFETCH(QString, text);
        QFETCH(bool, ok);
        QuantSpec s;
        const auto st = parseCalib(text.toStdString(), s);
        QCOMPARE(st.ok(), ok);
        if (ok)
            QCOMPARE(QString::fromStdString(calibName(s)), text);
    }

    void integerRanges_data()
    {
        QTest::addColumn<QString>("scheme");
        QTest::addColumn<int>("bits");
        QTest::addColumn<bool>("isUnsigned");
        QTest::addColumn<bool>("reduce");
        QTest::addColumn<int>("qmin");
        QTest::addColumn<int>("qmax");
        QTest::newRow("seed int8") << "seed" << 8 << false << false << -128 << 127;
        QTest::newRow("torch qint8") << "torch-symmetric" << 8 << false << false << -128 << 127;
        QTest::newRow("torch qint8 reduce") << "torch-symmetric" << 8 << false << true << -64 << 63;
        QTest::newRow("torch quint8") << "torch-affine" << 8 << true << false << 0 << 255;
        QTest::newRow("torch quint8 reduce") << "torch-affine" << 8 << true << true << 0 << 127;
        QTest::newRow("torch int4") << "torch-affine" << 4 << false << false << -8 << 7;
        QTest::newRow("torch int4 reduce") << "torch-affine" << 4 << false << true << -4 << 3;
        QTest::newRow("narrow int8") << "narrow-symmetric" << 8 << false << false << -127 << 127;
        QTest::newRow("narrow int8 reduce (ORT table)") << "narrow-symmetric" << 8 << false << true << -64 << 64;
        QTest::newRow("narrow uint8") << "narrow-symmetric" << 8 << true << false << 0 << 255;
        QTest::newRow("narrow int2") << "narrow-symmetric" << 2 << false << false << -1 << 1;
        QTest::newRow("q8_0") << "q8_0" << 8 << false << false << -127 << 127;
    }
    void integerRanges()
    {
        QFETCH(QString, scheme);
        QFETCH(int, bits);
        QFETCH(bool, isUnsigned);
        QFETCH(bool, reduce);
        QFETCH(int, qmin);
        QFETCH(int, qmax);
        QuantSpec s;
        s.scheme = *parseScheme(scheme.toStdString());
        s.bits = bits;
        s.isUnsigned = isUnsigned;
        s.reduceRange = reduce;
        int32_t lo = 0, hi = 0;
        integerRange(s, lo, hi);
        QCOMPARE(lo, qmin);
        QCOMPARE(hi, qmax);
    }
};

QTEST_GUILESS_MAIN(TstQuantSpec)
#include "tst_quantspec.moc"
