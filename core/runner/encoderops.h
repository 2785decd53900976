#pragma once
// The non-GEMM work of the transformer runners (BERT family, GPT-2, Llama): activations,
// softmax, norms, rotary embeddings and one attention head. Left scalar, GELU over 128x3072
// values per layer or softmax over 128x128 scores per head would cost as much as the int8
// GEMMs; they run on vec8.h's 8-float vectors, in a baseline and an AVX2 variant (kernels/eltwise.h).
#include <cblas.h>

#include <cstdint>
#include <vector>

namespace quantlens::encoderops {

void gelu(float* x, int64_t n);      // exact erf form: BERT, RoBERTa, DistilBERT
void geluTanh(float* x, int64_t n);  // GPT-2's gelu_new
// gate[i] = silu(gate[i]) * up[i] (Llama's MLP: down_proj(silu(gate_proj(x)) * up_proj(x)))
void siluMul(float* gate, const float* up, int64_t n);
void addInPlace(float* x, const float* y, int64_t n);  // x += y

// Row softmax over n scores where keep[j] is 1 for a real key and 0 for padding: masked keys
// get probability 0, as masked_fill(finfo.min) does whenever at least one key is real (the
// caller passes all ones when none is, where torch ends up uniform over all keys).
void maskedSoftmax(float* s, int64_t n, const float* keep);

// The keys each query of one causal sequence attends to (GPT-2, Llama): query t sees keys
// j <= t that the padding mask marks real, and with a sliding window W (Mistral) only those
// with j > t - W (transformers >= 4.45's mask; older releases and the flash-attention path
// differ by one key). A query that sees no real key falls back to all keys of its range,
// where torch's softmax over all-masked scores is uniform.
class CausalKeys {
public:
    explicit CausalKeys(int64_t T, int64_t window = 0)
        : T_(T), window_(window), keep_(size_t(T)), ones_(size_t(T), 1.0f), realBefore_(size_t(T) + 1)
    {
    }
    void setSequence(const uint8_t* mask);  // T entries, nonzero = real token
    // Softmax of row t's scores over its key range under the mask; the rest of the row becomes 0.
    void softmaxRow(int64_t t, float* row) const;

private:
    int64_t T_, window_;
    std::vector<float> keep_, ones_;
    std::vector<int64_t> realBefore_;  // real tokens among keys 0..j-1
};

// torch.nn.LayerNorm over the last dimension of rows x n values (biased variance).
void layerNorm(float* x, int64_t rows, int64_t n, const std::vector<float>& g, const std::vector<float>& b, double eps);
// Llama's RMSNorm: x * rsqrt(mean(x^2) + eps) * g, row by row; writes y (which may be x).
void rmsNorm(const float* x, float* y, int64_t rows, int64_t n, const std::vector<float>& g, double eps);

// One attention head of one sequence: scores = alpha q k^T over its T tokens, row t then
// normalised in place by softmaxRow(t, row), ctx = scores v. q rows are ldq floats apart,
// k and v rows ldkv (H for separate projections, 3H for GPT-2's fused c_attn, kv_heads * d
// for grouped-query attention), ctx rows ldc.
template <class SoftmaxRow>
void attendHead(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv, int64_t T, int64_t d,
                float alpha, float* scores, float* ctx, int64_t ldc, const SoftmaxRow& softmaxRow)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(T), blasint(T), blasint(d), alpha, q, blasint(ldq), k,
                blasint(ldkv), 0.0f, scores, blasint(T));
    for (int64_t t = 0; t < T; ++t)
        softmaxRow(t, scores + t * T);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(T), blasint(d), blasint(T), 1.0f, scores, blasint(T),
                v, blasint(ldkv), 0.0f, ctx, blasint(ldc));
}

}  // namespace quantlens::encoderops
