#include "runner/onednnmatmul.h"

#include <dlfcn.h>

#include <vector>

#ifdef QUANTLENS_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace quantlens {

#ifdef QUANTLENS_HAVE_ONEDNN

struct OnednnInt8Matmul::Impl {
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    dnnl::stream strm{eng};
    dnnl::matmul prim;
    dnnl::memory weights, bias;
    dnnl::memory::desc aDesc, yDesc;
};

bool OnednnInt8Matmul::available() { return true; }

Result<OnednnInt8Matmul> OnednnInt8Matmul::create(int64_t m, int64_t n, int64_t k, const int8_t* wq, float aScale,
                                                  int32_t aZero, float wScale, const float* bias)
{
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    try {
        OnednnInt8Matmul r;
        Impl& d = *r.d_;
        d.aDesc = dnnl::memory::desc({m, k}, dt::u8, tag::ab);
        d.yDesc = dnnl::memory::desc({m, n}, dt::f32, tag::ab);
        const dnnl::memory::desc wAny({k, n}, dt::s8, tag::any);
        const dnnl::memory::desc bDesc({1, n}, dt::f32, tag::ab);
        const float scale = aScale * wScale;
        dnnl::primitive_attr attr;
        attr.set_output_scales(0, {scale});
        attr.set_zero_points(DNNL_ARG_SRC, 0, {aZero});
        const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(d.aDesc, wAny, bDesc, d.yDesc), attr, d.eng);
        d.prim = dnnl::matmul(pd);
        // Our [n, k] rows are oneDNN's [k, n] in 'ba' order; reorder once into its blocked
        // layout, as PyTorch's onednn backend prepacks weights.
        dnnl::memory wUser({{k, n}, dt::s8, tag::ba}, d.eng, const_cast<int8_t*>(wq));
        d.weights = dnnl::memory(pd.weights_desc(), d.eng);
        dnnl::reorder(wUser, d.weights).execute(d.strm, wUser, d.weights);
        // oneDNN 2.x applies the output scale after the bias: pass bias/scale so y = scale*acc + bias.
        d.bias = dnnl::memory(bDesc, d.eng);
        auto* bp = static_cast<float*>(d.bias.get_data_handle());
        for (int64_t j = 0; j < n; ++j)
            bp[j] = bias ? bias[j] / scale : 0.0f;
        d.strm.wait();
        return r;
    } catch (const dnnl::error& e) {
        return makeError("onednn", std::string("oneDNN matmul: ") + e.what());
    }
}

void OnednnInt8Matmul::run(const uint8_t* a, float* y) const
{
    dnnl::memory am(d_->aDesc, d_->eng, const_cast<uint8_t*>(a));
    dnnl::memory ym(d_->yDesc, d_->eng, y);
    d_->prim.execute(d_->strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, d_->weights}, {DNNL_ARG_BIAS, d_->bias},
                                {DNNL_ARG_DST, ym}});
    d_->strm.wait();
}

#else

struct OnednnInt8Matmul::Impl {};
bool OnednnInt8Matmul::available() { return false; }
Result<OnednnInt8Matmul> OnednnInt8Matmul::create(int64_t, int64_t, int64_t, const int8_t*, float, int32_t, float,
                                                  const float*)
{
    return makeError("unsupported", "built without oneDNN");
}
void OnednnInt8Matmul::run(const uint8_t*, float*) const {}

#endif

void OnednnInt8Matmul::setThreads(int threads)
{
    // libdnnl uses OpenMP; its runtime read OMP_NUM_THREADS when it was loaded, so set the
    // count through the runtime itself, found at run time to avoid linking OpenMP here.
    using SetFn = void (*)(int);
    if (auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads")))
        fn(threads < 1 ? 1 : threads);
}

OnednnInt8Matmul::OnednnInt8Matmul() : d_(std::make_unique<Impl>()) {}
OnednnInt8Matmul::OnednnInt8Matmul(OnednnInt8Matmul&&) noexcept = default;
OnednnInt8Matmul& OnednnInt8Matmul::operator=(OnednnInt8Matmul&&) noexcept = default;
OnednnInt8Matmul::~OnednnInt8Matmul() = default;

}  // namespace quantlens
