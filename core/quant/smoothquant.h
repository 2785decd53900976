#pragma once
// SmoothQuant (Xiao et al. 2023): migrate activation outliers into the weights with a
// per-input-channel scale s_j = max|X_j|^α / max|W_j|^(1−α); the layer computes
// (X / s)(W · s)ᵀ = X Wᵀ, and 1/s folds into the norm before the layer (runner/normfold.h).
// Clamps as the authors' smooth_ln_fcs: weight maxima and scales at least 1e-5.
#include <cstdint>
#include <span>
#include <vector>

#include "result.h"

namespace quantlens {

// max_i |W[i, j]| over one or more [out_k, in] weights that read the same input.
std::vector<float> weightColumnAbsMax(const std::vector<std::span<const float>>& weights, int64_t in);

std::vector<float> smoothQuantScales(std::span<const float> actAbsMax, std::span<const float> weightAbsMax, double alpha);

// W[:, j] *= s_j for [out, in] row-major; the norm's gamma_j and beta_j /= s_j.
void scaleWeightColumns(std::span<float> w, int64_t out, int64_t in, std::span<const float> s);
void divideByScales(std::span<float> v, std::span<const float> s);

struct W8A8Options {
    bool perTokenActivations = true;  // dynamic per-token scale; false: one per-tensor scale over the rows (static)
    bool perChannelWeights = true;    // else one per-tensor weight scale
};

// The layer run with int8 weights and int8 activations (torch-symmetric, 8 bits, both)
// against float, over rows x [n, in]: output SQNR in dB (bias excluded; it cancels in
// the error). With scales s (else empty) the activations are x / s and the weights W · s.
Result<double> w8a8OutputSqnrDb(std::span<const float> x, int64_t n, std::span<const float> w, int64_t out, int64_t in,
                                std::span<const float> s, const W8A8Options& opt = {});

struct SmoothQuantPoint {
    double alpha = 0;
    double sqnrDb = 0;
};
// w8a8OutputSqnrDb at each α, with the scales from actAbsMax and the layer's own weights.
Result<std::vector<SmoothQuantPoint>> smoothQuantSweep(std::span<const float> x, int64_t n, std::span<const float> w,
                                                       int64_t out, int64_t in, std::span<const float> actAbsMax,
                                                       const std::vector<double>& alphas, const W8A8Options& opt = {});

}  // namespace quantlens
