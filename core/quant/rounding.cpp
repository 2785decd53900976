#include "quant/rounding.h"

namespace quantlens {

using quantrun::Kernel;

Kernel roundingKernel(Scheme s)
{
    switch (s) {
    case Scheme::Seed:
    case Scheme::NarrowSymmetric: return Kernel::DivHalfEven;
    case Scheme::TorchSymmetric:
    case Scheme::TorchAffine: return Kernel::MulInvHalfEven;
    case Scheme::Q8_0: return Kernel::MulInvHalfAway;
    default: break;
    }
    return Kernel::DivHalfEven;
}

}  // namespace quantlens
