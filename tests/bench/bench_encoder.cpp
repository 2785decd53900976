// End-to-end encoder latency, float32 (OpenBLAS sgemm) vs every linear layer in int8
// (DynamicLinear), on a DistilBERT-sized model: 6 layers, hidden 768, FFN 3072, 12 heads,
// one sequence of 128 tokens, one thread. tests/scripts/bench_torch_encoder.py times the
// same-shaped model in PyTorch (fp32 and quantize_dynamic on onednn) for comparison.
//
//   bench_encoder [--layers N] [--hidden H] [--tokens T] [--repeats R]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "io/demomodel.h"
#include "runner/encoder.h"
#include "runner/fp32linear.h"

using namespace quantlens;

namespace {

double medianSeconds(const EncoderRunner& r, const EncoderInput& in, int repeats)
{
    std::vector<double> t;
    for (int i = 0; i < repeats + 2; ++i) {
        const auto a = std::chrono::steady_clock::now();
        auto y = r.forward(in);
        const auto b = std::chrono::steady_clock::now();
        if (!y) {
            std::fprintf(stderr, "forward failed: %s\n", y.error().oneLine().c_str());
            std::exit(1);
        }
        if (i >= 2)  // the first two warm caches and page in the weights
            t.push_back(std::chrono::duration<double>(b - a).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv)
{
    int layers = 6, hidden = 768, tokens = 128, repeats = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        const int v = std::atoi(argv[i + 1]);
        if (k == "--layers") layers = v;
        else if (k == "--hidden") hidden = v;
        else if (k == "--tokens") tokens = v;
        else if (k == "--repeats") repeats = v;
    }
    setBlasThreads(1);
    const Model m = makeDemoModel(layers, hidden);
    auto r = EncoderRunner::create(m);
    if (!r) {
        std::fprintf(stderr, "%s\n", r.error().oneLine().c_str());
        return 1;
    }
    const EncoderInput in = randomEncoderInput(1, tokens, r->config().vocab);
    std::printf("model: demo DistilBERT-shaped, %d layers, hidden %d, FFN %lld, %lld heads; %d tokens, 1 thread\n",
                layers, hidden, (long long)r->config().intermediate, (long long)r->config().heads, tokens);
    std::printf("OpenBLAS core: %s (OPENBLAS_CORETYPE=%s)\n", blasCoreName().c_str(),
                std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "unset");

    auto ref = r->forward(in);
    const double fp32 = medianSeconds(*r, in, repeats);
    if (auto s = r->setAllQuantized(true); !s) {
        std::fprintf(stderr, "%s\n", s.error().oneLine().c_str());
        return 1;
    }
    auto q = r->forward(in);
    const double int8 = medianSeconds(*r, in, repeats);
    const HiddenComparison c = compareHidden(*ref, *q, in, r->config().hidden);
    std::printf("fp32  end to end: %8.2f ms\n", fp32 * 1e3);
    std::printf("int8  end to end: %8.2f ms   speed-up %.2fx\n", int8 * 1e3, fp32 / int8);
    std::printf("int8 vs fp32 last hidden state: cosine %.6f, min token cosine %.6f, SQNR %.2f dB, max abs error %.4g\n",
                c.cosine, c.minTokenCosine, c.sqnrDb, c.maxAbsError);
    return 0;
}
