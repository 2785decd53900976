#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "commands.h"
#include "modelarg.h"
#include "quant/metrics.h"
#include "tasks/modelsummary.h"

namespace quantlens::cli {

namespace {

struct InspectOptions {
    std::string model;
    bool json = false;
};

// JSON has no inf/nan: non-finite statistics become null.
nlohmann::json number(double v)
{
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

void runInspect(const InspectOptions& o)
{
    const Model m = loadModelArg(o.model);
    nlohmann::json doc;
    doc["format"] = m.format;
    doc["files"] = m.files;
    if (m.synthetic)
        doc["synthetic"] = true;
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : m.metadata)
        meta[k] = v;
    doc["metadata"] = meta;
    nlohmann::json tensors = nlohmann::json::array();
    const std::vector<TensorFigures> computed = modelStatistics(m);
    for (size_t i = 0; i < m.tensors.size(); ++i) {
        const Tensor& t = m.tensors[i];
        nlohmann::json j;
        j["name"] = t.name;
        j["dtype"] = t.dtype == DType::Opaque || t.dtype == DType::Packed ? t.opaqueType : std::string(dtypeName(t.dtype));
        j["shape"] = t.shape;
        j["numel"] = t.numel();
        if (!t.group.empty())
            j["group"] = t.group;
        if (t.layout == Layout::InOut)
            j["layout"] = "in,out";
        if (!t.note.empty())
            j["note"] = t.note;
        const Status& s = computed[i].status;
        if (s) {
            const TensorStats& st = computed[i].stats;
            j["min"] = number(st.min);
            j["max"] = number(st.max);
            j["mean"] = number(st.mean);
            j["std"] = number(st.std);
        } else {
            j["min"] = j["max"] = j["mean"] = j["std"] = nullptr;
            j["error"] = s.error().message;
        }
        tensors.push_back(std::move(j));
    }
    doc["tensors"] = std::move(tensors);

    if (o.json) {
        std::cout << doc.dump(1) << "\n";
        return;
    }
    std::printf("%s  (%s%s)  %zu tensors, %lld parameters\n", m.files.empty() ? "" : m.files.front().c_str(),
                m.format.c_str(), m.synthetic ? ", synthetic" : "", m.tensors.size(),
                static_cast<long long>(m.parameterCount()));
    for (const auto& [k, v] : m.metadata)
        std::printf("  %s = %s\n", k.c_str(), v.c_str());
    std::printf("%-56s %-9s %-16s %12s %12s %12s %12s\n", "name", "dtype", "shape", "min", "max", "mean", "std");
    for (const auto& j : doc["tensors"]) {
        std::string shape = "[";
        for (size_t i = 0; i < j["shape"].size(); ++i)
            shape += (i ? "," : "") + std::to_string(j["shape"][i].get<int64_t>());
        shape += "]";
        auto f = [&](const char* k) { return j[k].is_null() ? std::string("-") : std::to_string(j[k].get<double>()); };
        std::printf("%-56s %-9s %-16s %12s %12s %12s %12s%s\n", j["name"].get<std::string>().c_str(),
                    j["dtype"].get<std::string>().c_str(), shape.c_str(), f("min").c_str(), f("max").c_str(),
                    f("mean").c_str(), f("std").c_str(), j.contains("note") ? ("  " + j["note"].get<std::string>()).c_str() : "");
    }
}

}  // namespace

void addInspectCommand(CLI::App& app)
{
    auto o = std::make_shared<InspectOptions>();
    auto* cmd = app.add_subcommand("inspect", "List every tensor with dtype, shape and statistics");
    cmd->add_option("MODEL", o->model, "model file or folder, or 'demo'")->required();
    cmd->add_flag("--json", o->json, "print one JSON document on stdout");
    cmd->callback([o] { runInspect(*o); });
}

}  // namespace quantlens::cli
