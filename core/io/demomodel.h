#pragma once
#include "model.h"

namespace quantlens {

// The built-in demo: a synthetic DistilBERT-shaped model (embeddings, 2 transformer
// layers with q/k/v/out_lin 768x768 and ffn.lin1/lin2, biases, LayerNorms), generated
// deterministically with heavy-tailed weights (std ~0.04) and a few outliers near +0.74
// and -0.61, as the seed describes for DistilBERT. Model::synthetic is true.
// `layers` and `hidden` shrink it for tests.
Model makeDemoModel(int layers = 2, int hidden = 768);

}  // namespace quantlens
