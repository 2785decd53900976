#pragma once
// File ▸ Export quantized…: which layers (every linear layer or the ones ticked in the
// tree), the model-wide scheme, granularity and calibrator, whether the per-layer tuning
// and the "keep float32" choices apply, the format and the output path; a live summary of
// the bytes before and after; the export itself runs off the GUI thread with a progress
// bar and Cancel (nothing is left under the final name when cancelled).
#include <QDialog>
#include <QFutureWatcher>
#include <QString>

#include <atomic>
#include <memory>

#include "tasks/exportplan.h"
#include "model.h"
#include "plan/session.h"

class QCheckBox;
class QComboBox;
class QDialogButtonBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QRadioButton;

namespace quantlens::ui {

struct ExportOutcome {
    QString error;  // empty: success
    QString path;
    qint64 bytes = 0;
    QStringList files, warnings;
    bool cancelled = false;
};

class ExportDialog : public QDialog {
    Q_OBJECT
public:
    // `modelPath` suggests the output name; empty for the built-in demo.
    ExportDialog(std::shared_ptr<const Model> model, const Session& session, const QString& modelPath,
                 QWidget* parent = nullptr);
    ~ExportDialog() override;

    ExportPlan plan() const;           // what Export would write now
    ExportSizes sizes() const;
    ExportFormat format() const;
    QString outputPath() const;
    void setOutputPath(const QString& path);
    void startExport();                // the Export button
    void cancelExport();
    bool isExporting() const { return running_; }
    const ExportOutcome* lastOutcome() const { return outcome_.get(); }

    QRadioButton* allLinearButton() const { return allLinear_; }
    QRadioButton* selectedButton() const { return selected_; }
    QCheckBox* tuningBox() const { return useTuning_; }
    QCheckBox* keepFloatBox() const { return keepFloat_; }
    QComboBox* schemeBox() const { return scheme_; }
    QComboBox* granularityBox() const { return granularity_; }
    QComboBox* calibBox() const { return calib_; }
    QComboBox* formatBox() const { return format_; }
    QLabel* summaryLabel() const { return summary_; }
    QLabel* statusLabel() const { return status_; }
    QPushButton* exportButton() const { return exportButton_; }
    QPushButton* cancelButton() const { return cancelButton_; }
    QProgressBar* progressBar() const { return progress_; }

signals:
    void exportFinished(bool ok);

protected:
    void reject() override;  // Escape/Close while exporting cancels first

private:
    static constexpr int kMixData = 1000;  // scheme box data of a llama-quantize mix: kMixData + GgufMix
    QuantSpec chosenSpec() const;
    std::optional<GgufMix> chosenMix() const;
    void updateSummary();
    void suggestPath();
    void browse();
    void setRunning(bool on);

    std::shared_ptr<const Model> model_;
    Session session_;
    QString modelPath_;
    bool running_ = false;
    bool pathEdited_ = false;
    std::shared_ptr<std::atomic<bool>> cancel_;
    std::shared_ptr<const ExportOutcome> outcome_;
    QFutureWatcher<std::shared_ptr<const ExportOutcome>>* watcher_ = nullptr;

    QRadioButton* allLinear_ = nullptr;
    QRadioButton* selected_ = nullptr;
    QCheckBox* useTuning_ = nullptr;
    QCheckBox* keepFloat_ = nullptr;
    QComboBox* scheme_ = nullptr;
    QComboBox* granularity_ = nullptr;
    QComboBox* calib_ = nullptr;
    QComboBox* format_ = nullptr;
    QLineEdit* path_ = nullptr;
    QPushButton* browse_ = nullptr;
    QLabel* summary_ = nullptr;
    QLabel* status_ = nullptr;
    QProgressBar* progress_ = nullptr;
    QPushButton* exportButton_ = nullptr;
    QPushButton* cancelButton_ = nullptr;
    QDialogButtonBox* buttons_ = nullptr;
};

}  // namespace quantlens::ui
