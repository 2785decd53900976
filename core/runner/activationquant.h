#pragma once
// Weight quantization that uses calibration activations (issue #19): GPTQ, or SmoothQuant
// smoothing before round-to-nearest, of one linear layer, producing the same ExportEntry
// as quantizeForExport() so the exporters write it unchanged. The per-layer outcome is a
// small struct a plan can keep (scales, fold target, output errors).
#include <cstdint>
#include <string>
#include <vector>

#include "io/exporter.h"
#include "quant/gptq.h"
#include "quant/weightmethod.h"
#include "result.h"
#include "runner/actstats.h"
#include "runner/normfold.h"

namespace quantlens {

struct ActivationQuantResult {
    ExportEntry entry;  // the weights as the file stores them (SmoothQuant: W · s)
    // Output SQNR of the layer (bias excluded) on the calibration inputs, weights quantized
    // and activations float: round-to-nearest and the method. SmoothQuant: W8A8 (int8
    // per-token activations) on the kept rows, without and with smoothing.
    double rtnOutputSqnrDb = 0;
    double outputSqnrDb = 0;
    // GPTQ
    QuantizedTensor outIn;  // the same integers as entry, [out, in] with axis 0: what the runner computes with
    double gptqLoss = 0;
    int64_t deadColumns = 0;
    bool fellBackToRtn = false;
    // SmoothQuant: s per input channel, and where 1/s must be folded (gamma, beta).
    std::vector<float> smoothScales;
    NormFold fold;
};

// Quantizes layer `tensorName` (its ".weight" or prefix) of `m` with `spec` and `method`,
// using the layer's statistics in `rec` (GPTQ needs its Hessian; SmoothQuant its absmax,
// its kept rows for the error, and the siblings' weights sharing the norm).
Result<ActivationQuantResult> quantizeWithActivations(const Model& m, const EncoderConfig& cfg,
                                                      const std::string& tensorName, const QuantSpec& spec,
                                                      const MethodSpec& method, const ActivationRecording& rec);

}  // namespace quantlens
