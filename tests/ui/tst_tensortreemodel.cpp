// TensorTreeModel: module tree structure, background columns and the filter proxy.
#include <QAbstractItemModelTester>
#include <QRegularExpression>
#include <QSignalSpy>
#include <QSortFilterProxyModel>
#include <QTest>

#include "io/demomodel.h"
#include "layers.h"
#include "tensortreemodel.h"

using namespace quantlens;
using quantlens::ui::TensorTreeModel;

namespace {

int countLeaves(const QAbstractItemModel& m, const QModelIndex& parent = {})
{
    int n = 0;
    for (int r = 0; r < m.rowCount(parent); ++r) {
        const QModelIndex i = m.index(r, 0, parent);
        if (i.data(TensorTreeModel::TensorIndexRole).toInt() >= 0)
            ++n;
        n += countLeaves(m, i);
    }
    return n;
}

std::shared_ptr<const Model> smallDemo() { return std::make_shared<const Model>(makeDemoModel(1, 64)); }

}  // namespace

class TestTensorTreeModel : public QObject {
    Q_OBJECT
private slots:
    void testerOnResetAndSummaries()
    {
        TensorTreeModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        const auto demo = smallDemo();
        model.reset(demo);
        QCOMPARE(countLeaves(model), int(demo->tensors.size()));
        // Summaries arrive one by one, as from the background job.
        for (size_t i = 0; i < demo->tensors.size(); ++i) {
            ui::TensorSummary s;
            s.index = int(i);
            s.ok = true;
            s.min = -1.0 - double(i);
            s.max = 2.0;
            s.sqnrDb = 30.0 + double(i);
            s.clampedFraction = 0.001;
            model.setSummary(s);
        }
        model.clearSummaries();
        model.reset(nullptr);
        QCOMPARE(model.rowCount(), 0);
        model.reset(demo);
        QVERIFY(model.rowCount() > 0);
    }

    void treeFollowsModulePath()
    {
        TensorTreeModel model;
        const auto demo = smallDemo();
        model.reset(demo);
        // "distilbert.transformer.layer.0.attention.q_lin.weight" -> 7 levels.
        const int qlin = [&] {
            for (size_t i = 0; i < demo->tensors.size(); ++i)
                if (demo->tensors[i].name == "distilbert.transformer.layer.0.attention.q_lin.weight")
                    return int(i);
            return -1;
        }();
        QVERIFY(qlin >= 0);
        QModelIndex idx = model.indexForTensor(qlin);
        QVERIFY(idx.isValid());
        QCOMPARE(idx.data().toString(), QStringLiteral("weight"));
        QCOMPARE(idx.data(TensorTreeModel::FullNameRole).toString(),
                 QStringLiteral("distilbert.transformer.layer.0.attention.q_lin.weight"));
        QCOMPARE(idx.siblingAtColumn(TensorTreeModel::ShapeColumn).data().toString(), QStringLiteral("[64, 64]"));
        QCOMPARE(idx.siblingAtColumn(TensorTreeModel::DTypeColumn).data().toString(), QStringLiteral("F32"));
        QCOMPARE(idx.siblingAtColumn(TensorTreeModel::ParamsColumn).data().toString(), QStringLiteral("4,096"));
        QVERIFY(idx.data(TensorTreeModel::IsLinearRole).toBool());
        QStringList path;
        for (QModelIndex p = idx.parent(); p.isValid(); p = p.parent())
            path.prepend(p.data().toString());
        QCOMPARE(path.join(QLatin1Char('.')), QStringLiteral("distilbert.transformer.layer.0.attention.q_lin"));
        // The module node sums its children's parameters: weight 64*64 + bias 64.
        QCOMPARE(idx.parent().siblingAtColumn(TensorTreeModel::ParamsColumn).data().toString(), QStringLiteral("4,160"));
        // Embeddings are 2-D but not linear layers.
        const QModelIndex emb = model.indexForTensor(0);
        QVERIFY(!emb.data(TensorTreeModel::IsLinearRole).toBool());
        QCOMPARE(int(model.linearTensors().size()), int(findLinearLayers(*demo).size()));
    }

    void summaryFillsColumns()
    {
        TensorTreeModel model;
        model.reset(smallDemo());
        const int t = model.linearTensors().front();
        const QModelIndex sq = model.indexForTensor(t).siblingAtColumn(TensorTreeModel::SqnrColumn);
        QCOMPARE(sq.data().toString(), QString());
        QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
        ui::TensorSummary s;
        s.index = t;
        s.ok = true;
        s.min = -0.61;
        s.max = 0.74;
        s.sqnrDb = 28.25;
        s.clampedFraction = 0.0005;
        model.setSummary(s);
        QCOMPARE(changed.count(), 1);
        QCOMPARE(sq.data().toString(), QStringLiteral("28.25 dB"));
        QCOMPARE(sq.siblingAtColumn(TensorTreeModel::ClampedColumn).data().toString(), QStringLiteral("0.050 %"));
        QCOMPARE(sq.siblingAtColumn(TensorTreeModel::MaxColumn).data().toString(), QStringLiteral("0.74"));
        QCOMPARE(sq.data(TensorTreeModel::SortRole).toDouble(), 28.25);
        model.clearSummaries();
        QCOMPARE(sq.data().toString(), QString());
    }

    void filterKeepsMatchingTensors_data()
    {
        QTest::addColumn<QString>("pattern");
        QTest::addColumn<int>("tensors");
        // makeDemoModel(1, 64): 4 embedding tensors, 4 attention linears (w+b), 2 LN,
        // 2 ffn linears (w+b), 2 LN = 4 + 8 + 2 + 4 + 2 = 20.
        QTest::newRow("everything") << QString() << 20;
        QTest::newRow("attention projections") << QStringLiteral("attention") << 8;
        QTest::newRow("weights of q or k") << QStringLiteral("(q|k)_lin\\.weight$") << 2;
        QTest::newRow("case-insensitive LayerNorm") << QStringLiteral("layernorm") << 2;
        QTest::newRow("no match") << QStringLiteral("conv2d") << 0;
    }

    void filterKeepsMatchingTensors()
    {
        QFETCH(QString, pattern);
        QFETCH(int, tensors);
        TensorTreeModel model;
        model.reset(smallDemo());
        QSortFilterProxyModel proxy;
        proxy.setSourceModel(&model);
        proxy.setRecursiveFilteringEnabled(true);
        proxy.setFilterRole(TensorTreeModel::FullNameRole);
        proxy.setFilterCaseSensitivity(Qt::CaseInsensitive);
        proxy.setSortRole(TensorTreeModel::SortRole);
        QAbstractItemModelTester tester(&proxy, QAbstractItemModelTester::FailureReportingMode::QtTest);
        proxy.setFilterRegularExpression(QRegularExpression(pattern, QRegularExpression::CaseInsensitiveOption));
        QCOMPARE(countLeaves(proxy), tensors);
        proxy.sort(TensorTreeModel::ParamsColumn, Qt::DescendingOrder);
        QCOMPARE(countLeaves(proxy), tensors);
    }

    void sortByNumbersNotText()
    {
        TensorTreeModel model;
        model.reset(smallDemo());
        QSortFilterProxyModel proxy;
        proxy.setSourceModel(&model);
        proxy.setSortRole(TensorTreeModel::SortRole);
        proxy.sort(TensorTreeModel::ParamsColumn, Qt::DescendingOrder);
        // Under distilbert.embeddings: word/position embeddings (512*64 = 32768) before the
        // LayerNorm module (64 + 64 = 128): numeric, not "128" > "32,768" as text.
        QModelIndex emb;
        const QModelIndex root = proxy.index(0, 0);
        for (int r = 0; r < proxy.rowCount(root); ++r)
            if (proxy.index(r, 0, root).data().toString() == QStringLiteral("embeddings"))
                emb = proxy.index(r, 0, root);
        QVERIFY(emb.isValid());
        double last = 1e300;
        for (int r = 0; r < proxy.rowCount(emb); ++r) {
            const double v = proxy.index(r, TensorTreeModel::ParamsColumn, emb).data(TensorTreeModel::SortRole).toDouble();
            QVERIFY2(v <= last, "parameters not sorted descending");
            last = v;
        }
    }
};

QTEST_MAIN(TestTensorTreeModel)
#include "tst_tensortreemodel.moc"
