#include "io/demomodel.h"

#include <cmath>
#include <cstdint>
#include <string>

namespace quantlens {

namespace {

// splitmix64: tiny, fast and identical on every platform, so the demo is reproducible.
struct Rng {
    uint64_t s;
    uint64_t next()
    {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
};

// Student-t with 4 degrees of freedom: heavy tails like trained transformer weights.
// t4 = z / sqrt(chi2_4 / 4) with chi2_4 = -2 ln(u1 u2) (a sum of two exponentials), so
// each value costs one normal (half a Box-Muller pair) and one log: ~15M values in well
// under a second.
struct StudentT4 {
    Rng& r;
    double spare = 0;
    bool haveSpare = false;
    double normal()
    {
        if (haveSpare) {
            haveSpare = false;
            return spare;
        }
        const double u1 = 1.0 - r.uniform();
        const double u2 = r.uniform();
        const double rad = std::sqrt(-2.0 * std::log(u1));
        spare = rad * std::sin(6.283185307179586 * u2);
        haveSpare = true;
        return rad * std::cos(6.283185307179586 * u2);
    }
    float operator()(float stddev)
    {
        const double chi2 = -2.0 * std::log((1.0 - r.uniform()) * (1.0 - r.uniform()));
        const double t = normal() / std::sqrt(chi2 / 4.0);
        // Var(t4) = 4/(4-2) = 2: scale so the matrix std is ~stddev.
        return float(t * stddev / std::sqrt(2.0));
    }
};

// The bulk stays within +-0.4 so the planted outliers below set each matrix's extremes,
// as in DistilBERT (max ~+0.74, min ~-0.61): the seed's (max-min)/255 scale is then
// ~0.0053 and its [-128, 127]*scale range clips the positive outliers.
float bulkWeight(StudentT4& t, float stddev)
{
    for (;;) {
        const float w = t(stddev);
        if (std::fabs(w) < 0.4f)
            return w;
    }
}

Tensor matrix(const std::string& name, int64_t rows, int64_t cols, uint64_t seed, bool outliers)
{
    Rng r{seed};
    StudentT4 t{r};
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (float& x : v)
        x = outliers ? bulkWeight(t, 0.04f) : t(0.04f);
    if (outliers) {
        // A handful of large weights, as in DistilBERT's attention projections: the
        // positive extreme ~+0.74 and the negative ~-0.61 make the seed's range asymmetric.
        const int64_t n = int64_t(v.size());
        v[size_t(r.next() % uint64_t(n))] = 0.7412f;
        v[size_t(r.next() % uint64_t(n))] = 0.6837f;
        v[size_t(r.next() % uint64_t(n))] = -0.6104f;
        v[size_t(r.next() % uint64_t(n))] = -0.5521f;
        for (int i = 0; i < 12; ++i)
            v[size_t(r.next() % uint64_t(n))] = float((r.uniform() < 0.5 ? -1 : 1) * (0.25 + 0.2 * r.uniform()));
    }
    return makeFloatTensor(name, {rows, cols}, std::move(v));
}

Tensor vec1d(const std::string& name, int64_t n, uint64_t seed, float center, float spread)
{
    Rng r{seed};
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v)
        x = center + spread * float(2.0 * r.uniform() - 1.0);
    return makeFloatTensor(name, {n}, std::move(v));
}

}  // namespace

Model makeDemoModel(int layers, int hidden)
{
    Model m;
    m.format = "demo";
    m.files = {"(built-in demo)"};
    m.synthetic = true;
    m.metadata = {{"description", "synthetic DistilBERT-shaped weights (not a trained model)"},
                  {"generator", "heavy-tailed Student-t(4), std ~0.04, outliers near +0.74 / -0.61"}};
    const int64_t h = hidden, ffn = 4 * int64_t(hidden);
    uint64_t seed = 1;
    m.tensors.push_back(matrix("distilbert.embeddings.word_embeddings.weight", 512, h, seed++, false));
    m.tensors.push_back(matrix("distilbert.embeddings.position_embeddings.weight", 512, h, seed++, false));
    m.tensors.push_back(vec1d("distilbert.embeddings.LayerNorm.weight", h, seed++, 1.0f, 0.1f));
    m.tensors.push_back(vec1d("distilbert.embeddings.LayerNorm.bias", h, seed++, 0.0f, 0.05f));
    for (int l = 0; l < layers; ++l) {
        const std::string p = "distilbert.transformer.layer." + std::to_string(l) + ".";
        for (const char* lin : {"q_lin", "k_lin", "v_lin", "out_lin"}) {
            m.tensors.push_back(matrix(p + "attention." + lin + ".weight", h, h, seed++, true));
            m.tensors.push_back(vec1d(p + "attention." + lin + ".bias", h, seed++, 0.0f, 0.05f));
        }
        m.tensors.push_back(vec1d(p + "sa_layer_norm.weight", h, seed++, 1.0f, 0.1f));
        m.tensors.push_back(vec1d(p + "sa_layer_norm.bias", h, seed++, 0.0f, 0.05f));
        m.tensors.push_back(matrix(p + "ffn.lin1.weight", ffn, h, seed++, true));
        m.tensors.push_back(vec1d(p + "ffn.lin1.bias", ffn, seed++, 0.0f, 0.05f));
        m.tensors.push_back(matrix(p + "ffn.lin2.weight", h, ffn, seed++, true));
        m.tensors.push_back(vec1d(p + "ffn.lin2.bias", h, seed++, 0.0f, 0.05f));
        m.tensors.push_back(vec1d(p + "output_layer_norm.weight", h, seed++, 1.0f, 0.1f));
        m.tensors.push_back(vec1d(p + "output_layer_norm.bias", h, seed++, 0.0f, 0.05f));
    }
    return m;
}

}  // namespace quantlens
