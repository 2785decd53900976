// quantlens-cli compare: pairs the tensors of two checkpoints by name (across Hugging Face and
// GGUF naming) and reports per tensor how far A is from the reference B, worst first.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "compare/compare.h"
#include "modelarg.h"

namespace quantlens::cli {

namespace {

struct CompareOptions {
    std::string a, b;
    bool json = false;
};

using ojson = nlohmann::ordered_json;

ojson number(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }

ojson unpairedJson(const std::vector<Unpaired>& v)
{
    ojson out = ojson::array();
    for (const Unpaired& u : v)
        out.push_back({{"name", u.name}, {"reason", u.reason}});
    return out;
}

void printTable(const CompareReport& r)
{
    std::vector<const TensorComparison*> order;
    for (const TensorComparison& c : r.matched)
        order.push_back(&c);
    std::stable_sort(order.begin(), order.end(), [](const TensorComparison* x, const TensorComparison* y) {
        return x->metrics.sqnrDb < y->metrics.sqnrDb;
    });
    size_t w = 6;
    for (const TensorComparison* c : order)
        w = std::max(w, c->aName.size());
    std::printf("%-*s  %-14s %9s %10s %11s %10s %7s %7s  %s\n", int(w), "tensor (A)", "shape", "SQNR dB", "cosine",
                "max err", "rel frob", "A bpw", "B bpw", "B name");
    for (const TensorComparison* c : order) {
        char sqnr[32];
        if (std::isinf(c->metrics.sqnrDb))
            std::snprintf(sqnr, sizeof sqnr, "%s", c->metrics.sqnrDb > 0 ? "exact" : "-inf");
        else
            std::snprintf(sqnr, sizeof sqnr, "%.2f", c->metrics.sqnrDb);
        std::printf("%-*s  %-14s %9s %10.6f %11.4g %10.4g %7.3g %7.3g  %s\n", int(w), c->aName.c_str(),
                    shapeString(c->shape).c_str(), sqnr, c->metrics.cosine, c->metrics.maxAbsError, c->relFrobenius,
                    c->aBitsPerWeight, c->bBitsPerWeight, c->bName == c->aName ? "(same)" : c->bName.c_str());
    }
    for (const ShapeMismatch& m : r.mismatched)
        std::printf("mismatch: %s %s vs %s %s: %s\n", m.aName.c_str(), shapeString(m.aShape).c_str(), m.bName.c_str(),
                    shapeString(m.bShape).c_str(), m.reason.c_str());
    for (const Unpaired& u : r.unmatchedA)
        std::printf("only in A: %s: %s\n", u.name.c_str(), u.reason.c_str());
    for (const Unpaired& u : r.unmatchedB)
        std::printf("only in B: %s: %s\n", u.name.c_str(), u.reason.c_str());
    std::printf("%zu matched, %zu shape mismatches, %zu only in A, %zu only in B\n", r.matched.size(),
                r.mismatched.size(), r.unmatchedA.size(), r.unmatchedB.size());
}

void runCompare(const CompareOptions& o)
{
    const Model a = loadModelArg(o.a);
    const Model b = loadModelArg(o.b);
    auto r = compareModels(a, b, [](int64_t done, int64_t total, const std::string& name) {
        if (done < total)
            std::fprintf(stderr, "[%lld/%lld] comparing %s\n", (long long)done + 1, (long long)total, name.c_str());
        return true;
    });
    if (!r)
        throw Failure{r.error().oneLine()};
    if (!o.json) {
        printTable(*r);
        return;
    }
    ojson doc;
    doc["a"] = o.a;
    doc["b"] = o.b;
    ojson matched = ojson::array();
    for (const TensorComparison& c : r->matched) {
        ojson j;
        j["a_name"] = c.aName;
        j["b_name"] = c.bName;
        j["shape"] = c.shape;
        j["sqnr_db"] = number(c.metrics.sqnrDb);  // null when A equals B exactly (inf)
        j["cosine"] = number(c.metrics.cosine);
        j["max_abs_error"] = number(c.metrics.maxAbsError);
        j["rel_frobenius"] = number(c.relFrobenius);
        j["a_bits_per_weight"] = number(c.aBitsPerWeight);
        j["b_bits_per_weight"] = number(c.bBitsPerWeight);
        j["paired_by"] = c.how;
        matched.push_back(std::move(j));
    }
    doc["matched"] = std::move(matched);
    doc["unmatched_a"] = unpairedJson(r->unmatchedA);
    doc["unmatched_b"] = unpairedJson(r->unmatchedB);
    ojson mismatched = ojson::array();
    for (const ShapeMismatch& m : r->mismatched)
        mismatched.push_back({{"a_name", m.aName}, {"b_name", m.bName}, {"a_shape", m.aShape}, {"b_shape", m.bShape},
                              {"reason", m.reason}});
    doc["mismatched"] = std::move(mismatched);
    std::cout << doc.dump(2) << std::endl;
}

}  // namespace

void addCompareCommand(CLI::App& app)
{
    auto o = std::make_shared<CompareOptions>();
    auto* cmd = app.add_subcommand("compare", "compare two checkpoints tensor by tensor (B is the reference)");
    cmd->add_option("A", o->a, "model file or folder (e.g. the quantized one); 'demo' is the built-in demo model")
        ->required();
    cmd->add_option("B", o->b, "the reference model: SQNR's signal and the relative error's denominator")->required();
    cmd->add_flag("--json", o->json, "print one JSON document on stdout");
    cmd->callback([o] { runCompare(*o); });
}

}  // namespace quantlens::cli
