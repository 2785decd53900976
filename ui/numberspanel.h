#pragma once
#include <QWidget>

#include <memory>

#include "tensoranalysis.h"

class QTableWidget;

namespace quantlens::ui {

// The numbers of the current quantization as a two-column table. Everything is
// selectable; Ctrl+C or the Copy button puts "name<TAB>value" lines on the clipboard.
class NumbersPanel : public QWidget {
    Q_OBJECT
public:
    explicit NumbersPanel(QWidget* parent = nullptr);

    void setResult(const MatrixData& m, const QuantOutcome& q);
    void clear(const QString& message);
    QString value(const QString& name) const;  // the shown text of one row, "" if absent
    QString toText() const;

public slots:
    void copyToClipboard() const;

private:
    void addRow(const QString& name, const QString& value, const QString& tip = {});
    QTableWidget* table_ = nullptr;
};

}  // namespace quantlens::ui
