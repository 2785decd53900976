#pragma once
// Where SmoothQuant's 1/s can go: the norm right before a linear layer, when that norm's
// output feeds nothing but the layers reading it (pre-norm blocks: GPT-2's ln_1 / ln_2,
// Llama's input / post-attention RMSNorm). Post-norm encoders (BERT, RoBERTa, DistilBERT)
// also add the norm's output to the residual stream, so there it cannot be folded.
#include <string>
#include <vector>

#include "result.h"
#include "runner/encoder.h"

namespace quantlens {

struct NormFold {
    std::string gamma;                  // tensor divided by s
    std::string beta;                   // LayerNorm's bias, also divided by s; "" for RMSNorm
    std::vector<std::string> siblings;  // every layer reading that norm's output (one s for all), the layer included
};

// An error with the reason when `layer` (a runner layer prefix) has no foldable norm.
Result<NormFold> precedingNorm(const EncoderConfig& c, const std::string& layer);

}  // namespace quantlens
