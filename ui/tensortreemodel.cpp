#include "tensortreemodel.h"

#include <QBrush>
#include <QColor>
#include <QFont>
#include <QRegularExpression>
#include <QStringList>

#include <algorithm>
#include <unordered_map>

#include "formatting.h"
#include "layers.h"

namespace quantlens::ui {


struct TensorTreeModel::Node {
    QString name;      // one path segment
    QString fullName;  // the full tensor name or module prefix
    int tensor = -1;   // index into Model::tensors for leaves
    int64_t params = 0;
    int64_t bytes = 0;  // stored bytes of the tensors below
    bool linear = false;  // any layer weight (linear, conv, recurrent): findQuantLayers
    LayerKind kind = LayerKind::Linear;
    Node* parent = nullptr;
    int row = 0;
    std::vector<std::unique_ptr<Node>> children;

    Node* childGroup(const QString& segment, const QString& full)
    {
        for (auto& c : children)
            if (c->tensor < 0 && c->name == segment)
                return c.get();
        return add(segment, full, -1);
    }
    Node* add(const QString& segment, const QString& full, int t)
    {
        auto n = std::make_unique<Node>();
        n->name = segment;
        n->fullName = full;
        n->tensor = t;
        n->parent = this;
        n->row = int(children.size());
        children.push_back(std::move(n));
        return children.back().get();
    }
};

TensorTreeModel::TensorTreeModel(QObject* parent) : QAbstractItemModel(parent), root_(std::make_unique<Node>()) {}

TensorTreeModel::~TensorTreeModel() = default;

void TensorTreeModel::reset(std::shared_ptr<const Model> model)
{
    beginResetModel();
    model_ = std::move(model);
    root_ = std::make_unique<Node>();
    leafOf_.clear();
    summary_.clear();
    linear_.clear();
    checked_.clear();
    tuned_.clear();
    if (model_) {
        const size_t n = model_->tensors.size();
        leafOf_.assign(n, nullptr);
        summary_.assign(n, TensorSummary{});
        checked_.assign(n, 0);
        tuned_.clear();
        std::unordered_map<const Tensor*, LayerKind> linearWeights;
        for (const QuantLayer& l : findQuantLayers(*model_))
            linearWeights.emplace(l.weight, l.kind);
        static const QRegularExpression sep(QStringLiteral("[./]"));
        for (size_t i = 0; i < n; ++i) {
            const Tensor& t = model_->tensors[i];
            QString full = qs(t.name);
            if (!t.group.empty())
                full = qs(t.group) + QLatin1Char('/') + full;  // optimizer state etc. under its own root
            QStringList parts = full.split(sep, Qt::SkipEmptyParts);
            if (parts.isEmpty())
                parts << full;
            Node* at = root_.get();
            QString prefix;
            for (qsizetype k = 0; k + 1 < parts.size(); ++k) {
                prefix += (k ? QStringLiteral(".") : QString()) + parts[k];
                at = at->childGroup(parts[k], prefix);
            }
            Node* leaf = at->add(parts.back(), qs(t.name), int(i));
            leaf->params = t.numel();
            leaf->linear = linearWeights.count(&t) > 0;
            if (leaf->linear)
                leaf->kind = linearWeights.at(&t);
            if (leaf->linear)
                linear_.push_back(int(i));
            leaf->bytes = t.storedBytes();
            for (Node* p = at; p; p = p->parent) {
                p->params += t.group.empty() ? t.numel() : 0;
                p->bytes += t.group.empty() ? leaf->bytes : 0;
            }
            leafOf_[i] = leaf;
        }
    }
    endResetModel();
}

void TensorTreeModel::setSummary(const TensorSummary& s)
{
    if (s.index < 0 || size_t(s.index) >= summary_.size())
        return;
    summary_[size_t(s.index)] = s;
    const Node* leaf = leafOf_[size_t(s.index)];
    emit dataChanged(indexOf(leaf, MinColumn), indexOf(leaf, ClampedColumn));
}

void TensorTreeModel::clearSummaries()
{
    bool any = false;
    for (TensorSummary& s : summary_) {
        any = any || s.ok;
        s = TensorSummary{};
    }
    if (any)
        emitLeavesChanged(MinColumn, ClampedColumn);
}

void TensorTreeModel::setComparison(std::vector<RefCells> cells)
{
    ref_ = std::move(cells);
    emitLeavesChanged(RefSqnrColumn, RefBitsColumn);
}

void TensorTreeModel::emitLeavesChanged(int firstColumn, int lastColumn)
{
    // One signal per parent, not per leaf: the view re-measures every row for its
    // resize-to-contents columns on each signal, so per-leaf signals cost rows² (250 ms
    // on the UI thread for 64 tensors, tst_largemodel).
    std::map<const Node*, std::pair<int, int>> rows;
    for (const Node* leaf : leafOf_) {
        auto [it, fresh] = rows.try_emplace(leaf->parent, leaf->row, leaf->row);
        if (!fresh)
            it->second = {std::min(it->second.first, leaf->row), std::max(it->second.second, leaf->row)};
    }
    for (const auto& [parent, range] : rows) {
        const QModelIndex p = indexOf(parent, 0);
        emit dataChanged(index(range.first, firstColumn, p), index(range.second, lastColumn, p));
    }
}

std::set<std::string> TensorTreeModel::checkedNames() const
{
    std::set<std::string> out;
    for (size_t i = 0; i < checked_.size(); ++i)
        if (checked_[i])
            out.insert(model_->tensors[i].name);
    return out;
}

void TensorTreeModel::setCheckedNames(const std::set<std::string>& names)
{
    for (size_t i = 0; i < checked_.size(); ++i) {
        const uint8_t want = names.count(model_->tensors[i].name) && model_->tensors[i].decodable() ? 1 : 0;
        if (checked_[i] != want) {
            checked_[i] = want;
            const QModelIndex idx = indexOf(leafOf_[i], NameColumn);
            emit dataChanged(idx, idx, {Qt::CheckStateRole});
        }
    }
    emit checkedChanged();
}

void TensorTreeModel::checkAllLinear()
{
    std::set<std::string> names = checkedNames();
    for (int t : linear_)
        names.insert(model_->tensors[size_t(t)].name);
    setCheckedNames(names);
}

void TensorTreeModel::clearChecks() { setCheckedNames({}); }

void TensorTreeModel::setTuned(const std::map<std::string, QString>& tuned)
{
    std::map<int, QString> next;
    for (size_t i = 0; model_ && i < model_->tensors.size(); ++i) {
        auto it = tuned.find(model_->tensors[i].name);
        if (it != tuned.end())
            next[int(i)] = it->second;
    }
    // Only the entries whose text changed: each signal makes the view re-measure every row
    // for its resize-to-contents columns.
    std::set<int> touched;
    for (const auto& [t, d] : tuned_)
        if (auto it = next.find(t); it == next.end() || it->second != d)
            touched.insert(t);
    for (const auto& [t, d] : next)
        if (!tuned_.count(t))
            touched.insert(t);
    tuned_ = std::move(next);
    for (int t : touched) {
        const QModelIndex idx = indexOf(leafOf_[size_t(t)], NameColumn);
        emit dataChanged(idx, idx, {Qt::FontRole, Qt::DisplayRole, Qt::ToolTipRole, Qt::BackgroundRole, TunedRole});
    }
}

Qt::ItemFlags TensorTreeModel::flags(const QModelIndex& index) const
{
    Qt::ItemFlags f = QAbstractItemModel::flags(index);
    if (!index.isValid() || index.column() != NameColumn)
        return f;
    const Node* n = nodeFor(index);
    if (n->tensor >= 0 && model_ && model_->tensors[size_t(n->tensor)].decodable())
        f |= Qt::ItemIsUserCheckable;
    return f;
}

bool TensorTreeModel::setData(const QModelIndex& index, const QVariant& value, int role)
{
    if (role != Qt::CheckStateRole || !index.isValid() || index.column() != NameColumn)
        return false;
    const Node* n = nodeFor(index);
    if (n->tensor < 0 || !(flags(index) & Qt::ItemIsUserCheckable))
        return false;
    checked_[size_t(n->tensor)] = value.toInt() == Qt::Checked ? 1 : 0;
    emit dataChanged(index, index, {Qt::CheckStateRole});
    emit checkedChanged();
    return true;
}

QModelIndex TensorTreeModel::indexForTensor(int t) const
{
    if (t < 0 || size_t(t) >= leafOf_.size())
        return {};
    return indexOf(leafOf_[size_t(t)], NameColumn);
}

TensorTreeModel::Node* TensorTreeModel::nodeFor(const QModelIndex& idx) const
{
    return idx.isValid() ? static_cast<Node*>(idx.internalPointer()) : root_.get();
}

QModelIndex TensorTreeModel::indexOf(const Node* n, int column) const
{
    if (!n || n == root_.get())
        return {};
    return createIndex(n->row, column, const_cast<Node*>(n));
}

QModelIndex TensorTreeModel::index(int row, int column, const QModelIndex& parent) const
{
    if (!hasIndex(row, column, parent))
        return {};
    const Node* p = nodeFor(parent);
    return createIndex(row, column, p->children[size_t(row)].get());
}

QModelIndex TensorTreeModel::parent(const QModelIndex& child) const
{
    if (!child.isValid())
        return {};
    const Node* n = nodeFor(child);
    return indexOf(n->parent, NameColumn);
}

int TensorTreeModel::rowCount(const QModelIndex& parent) const
{
    if (parent.column() > 0)
        return 0;
    return int(nodeFor(parent)->children.size());
}

int TensorTreeModel::columnCount(const QModelIndex&) const { return ColumnCount; }

QVariant TensorTreeModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || section < 0 || section >= ColumnCount)
        return {};
    if (role == Qt::DisplayRole) {
        static const char* names[] = {"Name", "Shape", "DType", "Parameters", "Size", "Min", "Max", "SQNR", "Clamped",
                                      "vs ref SQNR", "vs ref max err", "bits/w (ref)"};
        return QString::fromLatin1(names[section]);
    }
    if (role == Qt::ToolTipRole) {
        switch (section) {
        case NameColumn:
            return tr("Bold with a blue mark: a layer weight (linear, convolution, recurrent).\n"
                      "Shaded, italic with \u270E: a layer whose settings deviate from the model-wide default.");
        case SizeColumn: return tr("Bytes as stored in the file");
        case SqnrColumn:
            return tr("Signal-to-quantization-noise ratio under the chosen scheme (computed in the background); "
                      "\"float\": the plan leaves it unquantized");
        case ClampedColumn: return tr("Share of values outside the scheme's clamp range");
        case RefSqnrColumn: return tr("SQNR of this tensor against the reference file (File ▸ Compare with…)");
        case RefMaxErrorColumn: return tr("Largest |this − reference| of the tensor");
        case RefBitsColumn: return tr("Stored bits per weight here, and in the reference");
        default: return {};
        }
    }
    return {};
}

QVariant TensorTreeModel::data(const QModelIndex& index, int role) const
{
    if (!index.isValid() || !hasIndex(index.row(), index.column(), index.parent()))
        return {};
    const Node* n = nodeFor(index);
    const Tensor* t = (n->tensor >= 0 && model_) ? &model_->tensors[size_t(n->tensor)] : nullptr;
    const TensorSummary* s = t ? &summary_[size_t(n->tensor)] : nullptr;
    const bool haveSummary = s && s->ok;
    const bool keptFloat = haveSummary && s->keptFloat;
    const bool tuned = n->tensor >= 0 && tuned_.count(n->tensor) > 0;
    const int col = index.column();
    const RefCells* rc = t && size_t(n->tensor) < ref_.size() && ref_[size_t(n->tensor)].ok ? &ref_[size_t(n->tensor)] : nullptr;

    switch (role) {
    case TensorIndexRole: return n->tensor;
    case FullNameRole: return n->fullName;
    case IsLinearRole: return n->linear;
    case TunedRole: return n->tensor >= 0 && tuned_.count(n->tensor) > 0;
    case Qt::CheckStateRole:
        if (col == NameColumn && t && t->decodable())
            return checked_[size_t(n->tensor)] ? Qt::Checked : Qt::Unchecked;
        return {};
    case Qt::TextAlignmentRole:
        if (col >= ParamsColumn)
            return QVariant::fromValue(Qt::AlignRight | Qt::AlignVCenter);
        return {};
    case Qt::FontRole:
        if ((n->linear || tuned_.count(n->tensor)) && col == NameColumn) {
            QFont f;
            f.setBold(n->linear);
            f.setItalic(n->tensor >= 0 && tuned_.count(n->tensor) > 0);
            return f;
        }
        return {};
    case Qt::BackgroundRole:
        if (tuned && col == NameColumn)
            return QColor(0xf3, 0x9c, 0x12, 70);  // the deviations stand out in a long tree
        return {};
    case Qt::ForegroundRole:
        if (keptFloat && (col == SqnrColumn || col == ClampedColumn))
            return QColor(0x80, 0x80, 0x80);
        return {};
    case Qt::DecorationRole:
        if (n->linear && col == NameColumn)
            return QColor(0x2b, 0x7b, 0xb9);  // the "linear layer" marker; legend in the tooltip
        return {};
    case Qt::ToolTipRole:
        if (col == NameColumn) {
            QString tip = n->fullName;
            if (n->linear) {
                const QString kind = n->kind == LayerKind::Conv ? tr("convolution")
                                     : n->kind == LayerKind::Recurrent ? tr("recurrent (gate matrices)")
                                                                       : tr("linear layer");
                tip += t && t->layout == Layout::InOut
                           ? tr("\n%1 weight, output channels on the last axis; shown with them first").arg(kind)
                           : tr("\n%1 weight, output channels on axis 0").arg(kind);
            }
            if (t && !quantizedByDefault(*t))
                tip += tr("\nnot quantized by default: %1").arg(qs(notQuantizedReason(*t)));
            if (t && !t->note.empty())
                tip += QLatin1Char('\n') + qs(t->note);
            if (auto it = tuned_.find(n->tensor); n->tensor >= 0 && it != tuned_.end())
                tip += tr("\ndeviates from the default: %1").arg(it->second);
            if (s && !s->ok && !s->error.empty())
                tip += QLatin1Char('\n') + qs(s->error);
            return tip;
        }
        return {};
    case SortRole:
        switch (col) {
        case NameColumn: return n->name;
        case ShapeColumn: return t ? double(t->numel()) : 0.0;
        case DTypeColumn: return t ? qs(std::string(dtypeName(t->dtype))) : QString();
        case ParamsColumn: return double(n->params);
        case SizeColumn: return double(t ? t->storedBytes() : n->bytes);
        case MinColumn: return haveSummary ? s->min : 0.0;
        case MaxColumn: return haveSummary ? s->max : 0.0;
        case SqnrColumn: return !haveSummary ? 0.0 : keptFloat ? 1e9 : s->sqnrDb;  // float sorts as lossless
        case ClampedColumn: return haveSummary ? s->clampedFraction : 0.0;
        case RefSqnrColumn: return rc ? rc->sqnrDb : 0.0;
        case RefMaxErrorColumn: return rc ? rc->maxAbsError : 0.0;
        case RefBitsColumn: return rc ? rc->bits : 0.0;
        default: return {};
        }
    case Qt::DisplayRole:
        switch (col) {
        case NameColumn:
            return n->tensor >= 0 && tuned_.count(n->tensor) ? n->name + QStringLiteral(" \u270E") : n->name;
        case ShapeColumn: return t ? formatShape(t->shape) : QString();
        case DTypeColumn:
            if (!t)
                return QString();
            return t->dtype == DType::Opaque || t->dtype == DType::Packed ? qs(t->opaqueType) : qs(std::string(dtypeName(t->dtype)));
        case ParamsColumn: return formatCount(n->params);
        case SizeColumn: return formatBytes(t ? t->storedBytes() : n->bytes);
        case MinColumn: return haveSummary ? formatNumber(s->min, 4) : QString();
        case MaxColumn: return haveSummary ? formatNumber(s->max, 4) : QString();
        case SqnrColumn: return keptFloat ? tr("float") : haveSummary ? formatDb(s->sqnrDb) : QString();
        case ClampedColumn:
            return keptFloat     ? QStringLiteral("\u2014")
                   : haveSummary ? QStringLiteral("%1 %").arg(s->clampedFraction * 100.0, 0, 'f', 3)
                                 : QString();
        case RefSqnrColumn: return rc ? formatDb(rc->sqnrDb) : QString();
        case RefMaxErrorColumn: return rc ? formatNumber(rc->maxAbsError, 4) : QString();
        case RefBitsColumn:
            return rc ? QStringLiteral("%1 (%2)").arg(formatNumber(rc->bits, 3), formatNumber(rc->refBits, 3)) : QString();
        default: return {};
        }
    default: return {};
    }
}

}  // namespace quantlens::ui
