#pragma once
// What the GUI's export dialog writes: which tensors, each with its own spec (the
// model-wide choice or what the user tuned on that layer), the bytes before and after,
// and the quantize-then-write job with progress and cancel.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/exporter.h"
#include "io/ggufmix.h"
#include "model.h"
#include "quant/quantspec.h"
#include "result.h"
#include "plan/session.h"
#include "tasks/methodprep.h"

namespace quantlens {

enum class ExportChoice {
    AllLinear,  // every linear layer's weight (findLinearLayers: the CLI's --all-linear)
    AllLayers,  // every quantizable layer's weight (findQuantLayers: linear, conv, recurrent)
    Selected,   // the session's exportSelection
    Named,      // ExportPlanOptions::tensors (names or linear-layer prefixes)
};

struct ExportPlanItem {
    std::string tensor;
    QuantSpec spec;
    bool tuned = false;  // spec comes from the session's per-layer override
    std::string why;     // a mix's rule for this tensor ("" otherwise)
    std::optional<ActivationRange> inputRange;  // the plan's static range for this layer's input, if any
};

struct ExportPlan {
    std::vector<ExportPlanItem> items;
    std::vector<std::string> keptFloat;  // linear weights left in float32 on purpose
    std::vector<std::string> skipped;    // chosen but not quantizable (not decodable, rank 0), or unknown names
    std::vector<std::string> skipReasons;  // one per skipped name
    std::optional<GgufMix> mix;            // the tensors and types are llama-quantize's mix (GGUF only)
    ActivationSpec activations;            // the plan's (Static: the items carry their ranges)
};

struct ExportPlanOptions {
    ExportChoice choice = ExportChoice::AllLinear;
    bool useOverrides = true;   // per-layer tuned specs; false: the default spec everywhere
    bool honourKeepFloat = true;  // drop session.keepFloat from the plan
    std::vector<std::string> tensors;  // ExportChoice::Named
    // A llama-quantize mix (GGUF): the mix picks the tensors and each one's type, replacing
    // `choice` and the default spec's scheme (its calibrator still clips); a tensor tuned in
    // the window keeps its own spec (mapped to the nearest ggml type by the writer).
    std::optional<GgufMix> mix;
};

// Each chosen tensor with the spec the plan gives it (PlanDecision). A 1-D tensor chosen by
// name is quantized: choosing it is asking for it.
ExportPlan planExport(const Model& m, const Session& session, const ExportPlanOptions& opt);

// Sizes for the dialog's summary. `quantized*` cover the plan's tensors; the model totals
// count every other tensor at its stored size.
struct ExportSizes {
    int64_t quantizedBefore = 0;  // the planned tensors as stored
    int64_t quantizedAfter = 0;   // their integer payload + scales + zero points
    int64_t modelBefore = 0;
    int64_t modelAfter = 0;
    double ratio() const { return quantizedAfter > 0 ? double(quantizedBefore) / double(quantizedAfter) : 0.0; }
};
ExportSizes estimateExportSizes(const Model& m, const ExportPlan& plan);


// Quantizes every item (first half of the progress) and writes them (second half).
// Cancelling leaves nothing under opts.outPath. With `prep` (the plan's methods, run by
// preparePlan) the export writes its model (smoothed weights and norms) and GPTQ's integers.
Result<ExportReport> runExportPlan(const Model& m, const ExportPlan& plan, const ExportOptions& opts,
                                   const ExportProgress& progress = {}, const PreparedPlan* prep = nullptr);

// Why `prep` cannot be written as `f` ("" when it can): GGUF is written by ggml's own
// quantizers from the source file, and the Quantlens layouts hold only the quantized
// weights, not the norms SmoothQuant changed.
std::string preparedExportProblem(const PreparedPlan& prep, ExportFormat f);
// The same, asked of the plan before its methods run (so nothing is computed in vain).
std::string planMethodsExportProblem(const QuantPlan& plan, ExportFormat f);

// Why a static plan's activation ranges cannot be written as `f` ("" when they can, or the
// activations are not static): GGUF and ONNX QDQ hold no activation quantization here, and
// compressed-tensors needs a range for every quantized Linear. The plain layouts (HDF5,
// safetensors, npy) record the ranges a layer has; the fake-quant copy is weights only.
std::string staticRangesExportProblem(const ExportPlan& plan, ExportFormat f);
// The plan's activation mode as the exporters see it (compressed-tensors writes it as the
// scheme's input_activations).
ExportActivations exportActivationsFor(ActivationMode mode);
// Sets e.staticInput from the item's range under a static plan: the scale and zero point the
// runner quantizes that layer's input with (runner/simulatedlinear.h staticActivationParams).
void attachStaticInput(const ExportPlan& plan, const ExportPlanItem& item, ExportEntry& e);

}  // namespace quantlens
