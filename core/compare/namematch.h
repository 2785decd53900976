#pragma once
// Pairing the tensors of two checkpoints by name, across the naming schemes Quantlens reads:
// identical names first, then Hugging Face Llama/Mistral/Qwen2 names against llama.cpp's GGUF
// names (model.layers.N.self_attn.q_proj.weight <-> blk.N.attn_q.weight). Each side says how
// its stored floats become the canonical ([out, in], Hugging Face row order) array, so that
// nothing is compared in a different order than the model uses it. Anything that cannot be
// paired with certainty is left unpaired with the reason, never guessed.
#include <cstdint>
#include <string>
#include <vector>

#include "model.h"

namespace quantlens {

// How one side's decoded floats (row-major, stored shape) become the canonical array.
struct SideTransform {
    bool transpose = false;    // stored [in, out] (Tensor::Layout::InOut): swap the two axes
    int64_t unpermuteHeads = 0;  // > 0: llama.cpp's q/k row permutation over this many heads, undone
    std::vector<int64_t> canonicalShape;
};

struct TensorPair {
    const Tensor* a = nullptr;
    const Tensor* b = nullptr;
    SideTransform aSide, bSide;
    std::string how;  // "same name", "gguf<->hf", "gguf<->hf, q/k rows un-permuted (8 heads)", ...
};

struct Unpaired {
    std::string name;
    std::string reason;
};

// Paired by name, but the canonical shapes differ (or a side cannot be decoded).
struct ShapeMismatch {
    std::string aName, bName;
    std::vector<int64_t> aShape, bShape;  // canonical shapes
    std::string reason;
};

struct MatchPlan {
    std::vector<TensorPair> pairs;       // in a's file order
    std::vector<Unpaired> unpairedA, unpairedB;
    std::vector<ShapeMismatch> mismatched;
};

// Cheap: looks at names, shapes, layouts and metadata only; nothing is decoded.
MatchPlan matchTensors(const Model& a, const Model& b);

// A llama.cpp GGUF name for a Hugging Face Llama-family name ("model.layers.3.mlp.up_proj.weight"
// -> "blk.3.ffn_up.weight"), or "" when the name is not one of them.
std::string ggufNameForHf(const std::string& hfName);

// Applies t to v (row-major, of the tensor's stored shape) in place; no second copy is made.
void applySideTransform(const SideTransform& t, const std::vector<int64_t>& storedShape, std::vector<float>& v);

}  // namespace quantlens
