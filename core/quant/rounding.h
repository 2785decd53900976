#pragma once
// How each scheme rounds a float to its integer: which loop of kernels/quantrun.h and what
// it multiplies by. quantize() and GPTQ's column-by-column rounding both take it from here,
// so a GPTQ'd tensor rounds exactly as quantize() would have.
#include "kernels/quantrun.h"
#include "quant/quantspec.h"

namespace quantlens {

// The ggml block schemes do not use these loops (DivHalfEven is returned for them).
quantrun::Kernel roundingKernel(Scheme s);
// What the loop takes as `s`: the scale itself for true division (torch's seed snippet and
// numpy divide), 1/scale for torch's quantize_val (nearbyint(x * (1.0f / scale))), and
// ggml's id = d ? 1/d : 0.
// Inline: quantize() calls it once per slice, in the loop the GUI runs while a line is dragged.
inline float roundingMultiplier(quantrun::Kernel k, float scale)
{
    if (k == quantrun::Kernel::MulInvHalfEven)
        return 1.0f / scale;
    if (k == quantrun::Kernel::MulInvHalfAway)
        return scale != 0.0f ? 1.0f / scale : 0.0f;
    return scale;
}

}  // namespace quantlens
