#include "tasks/modelsummary.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <new>
#include <numeric>
#include <thread>

#include <sys/resource.h>

#include "io/mappedfile.h"
#include "quant/quantize.h"
#include "scratchbuffer.h"
#include "workteam.h"

namespace quantlens {

namespace {

struct Worker {
    ScratchBuffer<float> stored, view;
    QuantizedTensor q;  // its buffers are reused from tensor to tensor

    TensorFigures run(const Tensor& t, const std::optional<QuantSpec>& specIn)
    {
        TensorFigures f;
        if (!t.decodable()) {
            f.status = makeError("not-decoded", "not decoded");
            return f;
        }
        const std::span<float> x = stored.get(size_t(t.numel()));
        f.status = t.toFloat(x);
        releaseMappedPages(t.data);
        if (!f.status)
            return f;
        f.stats = computeStats(x);
        if (!specIn || x.empty())
            return f;
        const MatrixView v = matrixView(t);
        std::span<const float> values = x;
        if (v.transposed) {
            const std::span<float> y = view.get(x.size());
            copyAsView(v, x, y);
            values = y;
        }
        QuantSpec spec = *specIn;
        spec.axis = 0;
        if (v.rows <= 1 && spec.granularity == Granularity::PerChannel)
            spec.granularity = Granularity::PerTensor;  // a vector has one channel
        if (Status s = quantizeInto(values, {v.rows, v.cols}, spec, q); !s) {
            f.status = s;
            return f;
        }
        f.metrics = quantizationMetrics(values, q);
        f.bytesAfter = q.bytesAfter();
        f.quantized = true;
        return f;
    }
};

}  // namespace

void summarizeModel(const Model& m, const ModelSummaryJob& job)
{
    std::vector<size_t> order = job.order;
    if (order.empty()) {
        order.resize(m.tensors.size());
        std::iota(order.begin(), order.end(), size_t(0));
    }
    std::atomic<size_t> next{0};
    std::mutex report;
    auto work = [&] {
        if (job.lowPriority)
            (void)::setpriority(PRIO_PROCESS, 0, 19);  // this thread only (Linux); advice, ignore failure
        // One tensor per worker already fills the cores; the work team (workteam.h), whose
        // threads are not niced, stays free for the window's drag step.
        const TeamOptOut ownTensorOnly;
        Worker w;
        for (size_t k; (k = next.fetch_add(1)) < order.size();) {
            if (job.cancelled && job.cancelled())
                return;
            const size_t i = order[k];
            if (i >= m.tensors.size())
                continue;
            TensorFigures f;
            try {
                f = w.run(m.tensors[i], job.specFor ? job.specFor(i) : std::nullopt);
            } catch (const std::bad_alloc&) {
                f.status = makeError("out-of-memory", "not enough memory for its float copy");
            }
            if (job.done) {
                std::lock_guard lock(report);
                job.done(i, std::move(f));
            }
        }
    };
    const size_t cores = std::max<size_t>(1, std::thread::hardware_concurrency());
    const size_t workers = std::clamp<size_t>(job.workers ? job.workers : std::min<size_t>(cores, 4), 1, std::max<size_t>(1, order.size()));
    std::vector<std::thread> pool;
    // The caller's thread works too, unless that would leave it at low priority.
    for (size_t i = job.lowPriority ? 0 : 1; i < workers; ++i)
        pool.emplace_back(work);
    if (!job.lowPriority)
        work();
    for (auto& th : pool)
        th.join();
}

std::vector<TensorFigures> modelStatistics(const Model& m)
{
    std::vector<TensorFigures> out(m.tensors.size());
    summarizeModel(m, {.done = [&](size_t i, TensorFigures&& f) { out[i] = std::move(f); }});
    return out;
}

}  // namespace quantlens
