#pragma once
// One linear layer run in float32 and as the plan quantizes it, on the same input: the Run
// tab and `quantlens-cli run` both call this.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "layers.h"
#include "plan/quantplan.h"
#include "quant/metrics.h"
#include "runner/dynamiclinear.h"
#include "runner/simulatedlinear.h"

namespace quantlens {

// A layer as the plan quantizes it: on the int8 GEMM where the spec allows, else simulated.
class PlannedLinear {
public:
    // `spec` as PlanDecision gives it (axis in the stored layout; the layer is run [out, in]).
    // `given`: integers a method found for this spec ([out, in], axis 0; PreparedPlan's
    // runnerWeights), used instead of rounding to nearest.
    static Result<PlannedLinear> create(const LinearLayer& layer, QuantSpec spec, const ActivationSpec& act,
                                        int threads = 1, const QuantizedTensor* given = nullptr);
    void forward(const float* x, int64_t m, float* y) const;
    bool simulated() const { return sim_ != nullptr; }
    std::string isa() const;  // the GEMM variant, or "simulated (float GEMM)"
    const QuantSpec& spec() const { return spec_; }

private:
    std::shared_ptr<const DynamicLinear> kernel_;
    std::shared_ptr<const SimulatedLinear> sim_;
    QuantSpec spec_;
};

// The random input is the same on every run and machine.
constexpr uint32_t kLayerRunSeed = 12345;

struct LayerRunRequest {
    int64_t tokens = 0;          // rows of a random input (seeded: the same on every machine)
    std::vector<float> input;    // [tokens, in] instead of the random input when not empty
    bool timed = true;           // median times over repeats (else one call each)
    int repeats = 5;
    double minRepeatSeconds = 0.005;  // tiny layers run in microseconds: loop each repeat
    const std::atomic<bool>* cancel = nullptr;
    const QuantizedTensor* given = nullptr;  // a method's integers (PlannedLinear::create)
};

struct LayerRunResult {
    bool cancelled = false;
    int64_t tokens = 0, in = 0, out = 0;
    double fp32Seconds = 0, quantSeconds = 0;  // median over repeats of the mean per call
    std::vector<float> yRef, y;                // [tokens, out]
    Metrics err;                               // y vs yRef
    bool simulated = false;
    std::string isa;
    QuantSpec spec;
    ActivationSpec act;
};

Result<LayerRunResult> runLayerUnderPlan(const LinearLayer& layer, const PlanDecision& d, const ActivationSpec& act,
                                         const LayerRunRequest& req);

}  // namespace quantlens
