#pragma once
// PyTorch's quantize_dynamic for one nn.Linear, x86 (FBGEMM) semantics, docs/kernels.md:
//   weights once:   per-tensor (or per-channel) symmetric qint8, scale absmax/127.5
//   every call:     activations per-tensor affine quint8 from this call's min/max (extended
//                   to include 0), reduce_range 0..127, ChooseQuantizationParams nudging
//   output:         y = float(acc - z_a*colsum_w) * float(s_a*s_w) + bias
// Per-row activation quantization (one scale/zero point per token) is offered as a more
// accurate variant that PyTorch's quantize_dynamic does not have.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "layers.h"
#include "quant/quantize.h"
#include "result.h"

namespace quantlens {

enum class ActQuant { PerTensor, PerRow };

struct DynamicLinearOptions {
    Granularity weightGranularity = Granularity::PerTensor;  // PerTensor (torch default) or PerChannel
    ActQuant act = ActQuant::PerTensor;
    bool reduceRange = true;  // PyTorch passes reduce_range=True on x86
    int threads = 1;          // output panels split across this many threads for large calls
    const kernels::GemmKernels* kernels = nullptr;  // nullptr: kernels::activeKernels()
    // One of those kernels' blockings (all give the same output); nullptr: the one chosen for
    // this CPU (kernels::activeBlocking, which may measure once at first use).
    const kernels::GemmBlocking* blocking = nullptr;
};

// Activation quantization parameters as PyTorch's quant_utils::ChooseQuantizationParams
// computes them (preserve_sparsity and force_scale_power_of_two off).
struct ActParams {
    float scale = 1.0f;
    int32_t zeroPoint = 0;
};
ActParams chooseQuantizationParams(float min, float max, int32_t qmin, int32_t qmax, bool reduceRange);

class DynamicLinear {
public:
    // `weight` holds out*in floats: [out, in] for Layout::Plain, [in, out] for Layout::InOut
    // (Keras Dense, GPT-2 Conv1D), which is transposed once here. `bias` is empty or out floats.
    static Result<DynamicLinear> create(std::span<const float> weight, int64_t outFeatures, int64_t inFeatures,
                                        Layout layout, std::span<const float> bias,
                                        const DynamicLinearOptions& options = {});
    static Result<DynamicLinear> fromLayer(const LinearLayer& layer, const DynamicLinearOptions& options = {});
    // Runs integers someone else chose (a quantization plan's): `qw` is [out, in], signed
    // 8-bit with zero point 0, one scale or one per output row. options.weightGranularity
    // is taken from `qw`.
    static Result<DynamicLinear> fromQuantized(QuantizedTensor qw, std::span<const float> bias,
                                               const DynamicLinearOptions& options = {});

    // y[m, out] = the int8 linear of x[m, in], both row-major. A call whose activations are
    // not all finite cannot be quantized (PyTorch gives garbage there): its output is NaN
    // (per row in ActQuant::PerRow). Thread-safe: scratch memory is per thread.
    void forward(const float* x, int64_t m, float* y) const;

    // The GEMM + epilogue stage alone, on activations already quantized with `p` (rows of
    // kernels::paddedK(in) bytes, per-tensor): forward() minus the quantization (benchmarks).
    void forwardQuantized(const uint8_t* qa, int64_t m, const ActParams& p, float* y) const;

    int64_t inFeatures() const { return in_; }
    int64_t outFeatures() const { return out_; }
    const QuantizedTensor& weight() const { return qw_; }  // [out, in], torch-symmetric
    const std::vector<float>& bias() const { return bias_; }
    const DynamicLinearOptions& options() const { return opt_; }
    const char* isa() const { return kr_->name; }
    const kernels::GemmKernels& gemmKernels() const { return *kr_; }
    const kernels::GemmBlocking& gemmBlocking() const { return *bl_; }
    const kernels::PackedWeights& packedWeights() const { return packed_; }
    void setThreads(int t) { opt_.threads = t < 1 ? 1 : t; }
    // int8 weights + scales + zero points + float32 bias, as a packed torch module keeps them.
    int64_t bytesAfter() const;

    // The activation parameters of the last per-tensor call on this thread (tests, UI).
    static ActParams lastActParams();

private:
    DynamicLinear() = default;
    int64_t in_ = 0, out_ = 0;
    QuantizedTensor qw_;
    std::vector<float> bias_;
    std::vector<float> wScale_;  // one value (per tensor) or out values
    kernels::PackedWeights packed_;
    DynamicLinearOptions opt_;
    const kernels::GemmKernels* kr_ = nullptr;
    const kernels::GemmBlocking* bl_ = nullptr;
};

}  // namespace quantlens
