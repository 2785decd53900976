#include "layers.h"

#include <algorithm>
#include <regex>
#include <unordered_map>
#include <unordered_set>

namespace quantlens {

namespace {

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

bool isEmbedding(const std::string& n)
{
    std::string l = n;
    std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return contains(l, "embed") || contains(l, "wte.") || contains(l, "wpe.") || contains(l, "embd") ||
           contains(l, "position_ids");
}

// Splits "a.b.weight" into ("a.b", "weight"); Keras "dense_1/dense_1/kernel:0" into ("dense_1/dense_1", "kernel").
bool splitName(const std::string& n, std::string& prefix, std::string& leaf)
{
    const size_t cut = n.find_last_of("./");
    if (cut == std::string::npos)
        return false;
    prefix = n.substr(0, cut);
    leaf = n.substr(cut + 1);
    if (const size_t colon = leaf.find(':'); colon != std::string::npos)
        leaf = leaf.substr(0, colon);
    return true;
}

}  // namespace

std::vector<LinearLayer> findLinearLayers(const Model& m)
{
    std::unordered_map<std::string, const Tensor*> biases;
    for (const Tensor& t : m.tensors) {
        std::string p, leaf;
        if (t.group.empty() && t.rank() == 1 && splitName(t.name, p, leaf) && leaf == "bias")
            biases.emplace(p, &t);
    }
    std::vector<LinearLayer> out;
    for (const Tensor& t : m.tensors) {
        std::string p, leaf;
        if (!t.group.empty() || t.rank() != 2 || !t.decodable())
            continue;
        const bool named = splitName(t.name, p, leaf) && (leaf == "weight" || leaf == "kernel");
        if (!named && t.note == kOnnxLinearNote)
            p = t.name;  // known from the graph, not the name: the layer is the tensor itself
        else if (!named || isEmbedding(t.name))
            continue;
        LinearLayer l;
        l.prefix = p;
        l.weight = &t;
        const bool inOut = t.layout == Layout::InOut;
        l.inFeatures = inOut ? t.shape[0] : t.shape[1];
        l.outFeatures = inOut ? t.shape[1] : t.shape[0];
        if (auto it = biases.find(p); it != biases.end() && it->second->shape[0] == l.outFeatures)
            l.bias = it->second;
        out.push_back(l);
    }
    return out;
}

int outputChannelAxis(const Tensor& t)
{
    return t.layout == Layout::InOut && t.rank() >= 2 ? int(t.rank() - 1) : 0;
}

std::string layerKindName(LayerKind k)
{
    switch (k) {
    case LayerKind::Linear: return "linear";
    case LayerKind::Conv: return "conv";
    case LayerKind::Recurrent: return "recurrent";
    }
    return "linear";
}

namespace {

bool startsWith(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

std::string lower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}


}  // namespace

std::vector<QuantLayer> findQuantLayers(const Model& m)
{
    std::unordered_map<std::string, const Tensor*> vectors;  // "prefix/leaf" -> 1-D tensor
    for (const Tensor& t : m.tensors) {
        std::string p, leaf;
        if (t.group.empty() && t.rank() == 1 && splitName(t.name, p, leaf))
            vectors.emplace(p + '\n' + leaf, &t);
    }
    auto vectorNamed = [&](const std::string& p, const std::string& leaf, int64_t n) -> const Tensor* {
        auto it = vectors.find(p + '\n' + leaf);
        return it != vectors.end() && it->second->shape[0] == n ? it->second : nullptr;
    };
    // Keras names a recurrent layer's input kernel plain "kernel", like a Dense one; a
    // recurrent_kernel beside it is what says so (layer names say nothing reliable:
    // hls4ml's "rnn_densef" is a Dense layer).
    std::unordered_set<std::string> recurrentPrefixes;
    for (const Tensor& t : m.tensors) {
        std::string p, leaf;
        if (t.group.empty() && splitName(t.name, p, leaf) && leaf == "recurrent_kernel")
            recurrentPrefixes.insert(p);
    }
    std::vector<QuantLayer> out;
    for (const Tensor& t : m.tensors) {
        if (!t.group.empty() || t.rank() < 2 || t.rank() > 5 || !t.decodable() || t.numel() <= 0)
            continue;
        std::string p, leaf;
        if (!splitName(t.name, p, leaf)) {
            p = t.name;
            leaf.clear();
        }
        QuantLayer l;
        l.prefix = p;
        l.weight = &t;
        l.outAxis = outputChannelAxis(t);
        l.outChannels = t.shape[size_t(l.outAxis)];
        std::string biasLeaf = "bias";
        if (t.role == WeightRole::Conv) {
            l.kind = LayerKind::Conv;
        } else if (t.role == WeightRole::Linear && t.rank() == 2) {
            l.kind = LayerKind::Linear;
        } else if (t.rank() == 2 && (startsWith(leaf, "weight_ih") || startsWith(leaf, "weight_hh"))) {
            l.kind = LayerKind::Recurrent;  // PyTorch LSTM/GRU/RNN, LSTMCell: weight_ih_l0, weight_hh_l0_reverse
            biasLeaf = "bias_" + leaf.substr(7);
        } else if (t.rank() == 2 && leaf == "recurrent_kernel") {
            l.kind = LayerKind::Recurrent;
            biasLeaf.clear();  // Keras keeps one bias for both kernels, on the input side
        } else if (leaf == "weight" || leaf == "kernel") {
            if (t.rank() == 2 && isEmbedding(t.name))
                continue;
            l.kind = t.rank() > 2 ? LayerKind::Conv
                     : leaf == "kernel" && recurrentPrefixes.count(p) ? LayerKind::Recurrent
                                                                : LayerKind::Linear;
        } else {
            continue;
        }
        if (!biasLeaf.empty())
            l.bias = vectorNamed(p, biasLeaf, l.outChannels);
        out.push_back(l);
    }
    return out;
}

bool quantizedByDefault(const Tensor& t) { return t.rank() >= 2; }

std::string notQuantizedReason(const Tensor& t)
{
    if (quantizedByDefault(t))
        return {};
    if (t.rank() == 0)
        return "a scalar";
    std::string p, leaf;
    if (!splitName(t.name, p, leaf))
        leaf = t.name;
    const std::string l = lower(leaf);
    const std::string what = l == "bias" || startsWith(l, "bias_") ? "bias"
                             : l == "weight" || l == "gamma" || l == "scale" ? "norm gain"
                             : l == "beta" ? "norm shift"
                             : contains(l, "running_") || contains(l, "moving_") ? "running statistic"
                                                                                  : "";
    return what.empty() ? "a 1-D vector" : "a 1-D vector (" + what + ")";
}

const LinearLayer* findLinearLayer(const std::vector<LinearLayer>& layers, const std::string& prefix)
{
    for (const LinearLayer& l : layers)
        if (l.prefix == prefix || l.weight->name == prefix)
            return &l;
    return nullptr;
}

void markConv1DLayouts(Model& m)
{
    static const std::regex conv1d(R"((^|\.)h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$)");
    for (Tensor& t : m.tensors)
        if (t.rank() == 2 && std::regex_search(t.name, conv1d))
            t.layout = Layout::InOut;
}

std::string layerPrefix(const std::string& weightName)
{
    constexpr std::string_view kSuffix = ".weight";
    if (weightName.size() > kSuffix.size() && weightName.ends_with(kSuffix))
        return weightName.substr(0, weightName.size() - kSuffix.size());
    return weightName;
}

bool namesLayer(const std::string& name, const std::string& prefix) { return layerPrefix(name) == prefix || name == prefix; }

}  // namespace quantlens
