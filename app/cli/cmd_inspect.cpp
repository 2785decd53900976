#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "commands.h"
#include "io/mappedfile.h"
#include "modelarg.h"
#include "quant/metrics.h"

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

struct Computed {
    Status status = Ok{};
    TensorStats stats;
};

// One worker's float buffer: uninitialised (std::vector's zero fill is overwritten at once),
// 2 MB aligned and in transparent huge pages where the kernel allows (THP "madvise" mode).
// Touching fresh 4 KB pages costs a fault each, and on a 1 GB bf16 file under a hypervisor
// those faults (in the zero fill) took more CPU than conversion and statistics together.
class FloatBuffer {
public:
    FloatBuffer() = default;
    FloatBuffer(const FloatBuffer&) = delete;
    FloatBuffer& operator=(const FloatBuffer&) = delete;
    ~FloatBuffer() { std::free(p_); }
    std::span<float> get(size_t n)
    {
        if (n > cap_) {
            constexpr size_t kHuge = size_t(2) << 20;
            const size_t bytes = (n * sizeof(float) + kHuge - 1) / kHuge * kHuge;
            std::free(p_);
            p_ = static_cast<float*>(std::aligned_alloc(kHuge, bytes));
            cap_ = p_ ? bytes / sizeof(float) : 0;
            if (!p_)
                throw std::bad_alloc();
            (void)::madvise(p_, bytes, MADV_HUGEPAGE);  // advice only: 4 KB pages otherwise
        }
        return {p_, n};
    }

private:
    float* p_ = nullptr;
    size_t cap_ = 0;
};

// Every tensor's statistics, on all cores (the data is gigabytes; one core cannot keep up
// with memory). Each worker owns one float buffer, and hands each tensor's mapped pages
// back once done, so the resident set stays near (workers x largest tensor) however
// large the file.
std::vector<Computed> computeAll(const Model& m)
{
    std::vector<Computed> out(m.tensors.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
        FloatBuffer buf;
        for (size_t i; (i = next.fetch_add(1)) < m.tensors.size();) {
            const Tensor& t = m.tensors[i];
            if (!t.decodable()) {
                out[i].status = makeError("not-decoded", "not decoded");
                continue;
            }
            const std::span<float> x = buf.get(static_cast<size_t>(t.numel()));
            out[i].status = t.toFloat(x);
            if (out[i].status)
                out[i].stats = computeStats(x);
            releaseMappedPages(t.data);
        }
    };
    const size_t workers = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, std::min<size_t>(4, m.tensors.size() + 1));
    std::vector<std::thread> pool;
    for (size_t w = 1; w < workers; ++w)
        pool.emplace_back(work);
    work();
    for (auto& th : pool)
        th.join();
    return out;
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
    const std::vector<Computed> computed = computeAll(m);
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
