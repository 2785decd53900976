#pragma once
#include <QAbstractItemModel>
#include <QString>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "model.h"
#include "tensoranalysis.h"

namespace quantlens::ui {

// The model's tensors as a module tree: names split on "." and "/" (HDF5/Keras), one
// leaf per tensor. A thin adapter over core::Model; the statistics columns start empty
// and are filled by setSummary() as the background job delivers them.
class TensorTreeModel : public QAbstractItemModel {
    Q_OBJECT
public:
    enum Column { NameColumn, ShapeColumn, DTypeColumn, ParamsColumn, SizeColumn, MinColumn, MaxColumn, SqnrColumn, ClampedColumn,
                  RefSqnrColumn, RefMaxErrorColumn, RefBitsColumn, ColumnCount };  // Ref*: vs the compared file
    enum Role {
        TensorIndexRole = Qt::UserRole + 1,  // int, -1 for module nodes
        FullNameRole,                        // QString, the tensor's or module's full path
        SortRole,                            // numbers as double, text as QString
        IsLinearRole,                        // bool
        TunedRole,                           // bool: the user tuned this tensor's own spec
    };

    explicit TensorTreeModel(QObject* parent = nullptr);
    ~TensorTreeModel() override;

    void reset(std::shared_ptr<const Model> model);
    void setSummary(const TensorSummary& s);
    void clearSummaries();  // the scheme changed: the SQNR/clamped columns are stale
    // The comparison with a reference file, per tensor index (ok=false: not paired); an empty
    // vector clears the Ref* columns.
    struct RefCells {
        bool ok = false;
        double sqnrDb = 0, cosine = 0, maxAbsError = 0, bits = 0, refBits = 0;
    };
    void setComparison(std::vector<RefCells> cells);

    // Export selection: a check box on every decodable tensor (Name column).
    std::set<std::string> checkedNames() const;
    void setCheckedNames(const std::set<std::string>& names);  // emits checkedChanged once
    void checkAllLinear();
    void clearChecks();
    // Tensors with their own tuned spec (name -> one-line description for the tooltip),
    // shown in italics with a pencil.
    void setTuned(const std::map<std::string, QString>& tuned);

    QModelIndex indexForTensor(int tensorIndex) const;
    static int tensorIndex(const QModelIndex& idx) { return idx.isValid() ? idx.data(TensorIndexRole).toInt() : -1; }
    const std::vector<int>& linearTensors() const { return linear_; }  // file order

    QModelIndex index(int row, int column, const QModelIndex& parent = {}) const override;
    QModelIndex parent(const QModelIndex& child) const override;
    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;
    bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;

signals:
    void checkedChanged();

private:
    struct Node;
    Node* nodeFor(const QModelIndex& idx) const;
    QModelIndex indexOf(const Node* n, int column) const;
    void emitLeavesChanged(int firstColumn, int lastColumn);

    std::shared_ptr<const Model> model_;
    std::unique_ptr<Node> root_;
    std::vector<Node*> leafOf_;          // tensor index -> leaf
    std::vector<TensorSummary> summary_;  // tensor index -> summary (ok=false: not yet)
    std::vector<RefCells> ref_;           // tensor index -> comparison; empty: none
    std::vector<int> linear_;
    std::vector<uint8_t> checked_;          // tensor index -> ticked for export
    std::map<int, QString> tuned_;          // tensor index -> description
};

}  // namespace quantlens::ui
