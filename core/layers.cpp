#include "layers.h"

#include <algorithm>
#include <regex>
#include <unordered_map>

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

}  // namespace quantlens
