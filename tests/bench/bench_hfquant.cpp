// Benchmark (not a test): decoding one packed Linear weight of a quantized Hugging Face
// checkpoint to float, the work `compare`, `inspect` and the window do per tensor:
// a 4096x4096 weight as compressed-tensors W4A16 group 128 (float16 scales, so every
// value is rounded to float16 as the reference does), compressed-tensors W8A8 per channel
// (bfloat16 scales), and GPTQ int4 group 128 with an activation-order g_idx (float32
// results). Prints the best of N runs in thread CPU time, and ns per weight.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "halffloat.h"
#include "packedweight.h"

using namespace quantlens;

namespace {

double cpuMs()
{
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

double bestMs(int runs, const std::function<void()>& fn)
{
    double best = 1e30;
    for (int i = 0; i < runs; ++i) {
        const double t0 = cpuMs();
        fn();
        best = std::min(best, cpuMs() - t0);
    }
    return best;
}

template <class T>
Tensor owned(const char* name, DType d, std::vector<int64_t> shape, const std::vector<T>& v)
{
    std::vector<std::byte> b(v.size() * sizeof(T));
    std::memcpy(b.data(), v.data(), b.size());
    return makeOwnedTensor(name, d, std::move(shape), std::move(b));
}

}  // namespace

int main()
{
    constexpr int64_t kOut = 4096, kIn = 4096, kGroup = 128, kG = kIn / kGroup;
    std::mt19937 rng(1);
    std::vector<uint32_t> words(size_t(kOut * kIn / 8));
    for (auto& w : words)
        w = rng();
    std::vector<uint16_t> f16Scales(size_t(kOut * kG));
    for (auto& s : f16Scales)
        s = floatToHalf(0.001f + float(rng() % 1000) * 1e-5f);

    PackedWeight ct4;
    ct4.out = kOut;
    ct4.in = kIn;
    ct4.bits = 4;
    ct4.codes = PackedWeight::Codes::PackedRows;
    ct4.q = owned("w.weight_packed", DType::I32, {kOut, kIn / 8}, words);
    ct4.scale = owned("w.weight_scale", DType::F16, {kOut, kG}, f16Scales);
    ct4.scaleRows = kOut;
    ct4.groups = kG;
    ct4.roundTo = DType::F16;

    PackedWeight ct8;
    ct8.out = kOut;
    ct8.in = kIn;
    ct8.bits = 8;
    std::vector<int8_t> codes(size_t(kOut * kIn));
    for (auto& c : codes)
        c = int8_t(rng());
    ct8.q = owned("w.weight", DType::I8, {kOut, kIn}, codes);
    std::vector<uint16_t> bf16(size_t(kOut), 0x3b80);  // 2^-8
    ct8.scale = owned("w.weight_scale", DType::BF16, {kOut, 1}, bf16);
    ct8.scaleRows = kOut;
    ct8.groups = 1;
    ct8.roundTo = DType::BF16;

    PackedWeight gptq;
    gptq.out = kOut;
    gptq.in = kIn;
    gptq.bits = 4;
    gptq.codes = PackedWeight::Codes::PackedCols;
    gptq.q = owned("w.qweight", DType::I32, {kIn / 8, kOut}, words);
    std::vector<uint16_t> gScales(size_t(kG * kOut));
    for (auto& s : gScales)
        s = floatToHalf(0.001f + float(rng() % 1000) * 1e-5f);
    gptq.scale = owned("w.scales", DType::F16, {kG, kOut}, gScales);
    gptq.scaleGroupsMajor = true;
    gptq.scaleRows = kOut;
    gptq.groups = kG;
    gptq.zeros = PackedWeight::Zeros::GptqPacked;
    gptq.zeroOffset = 1;
    gptq.zero = owned("w.qzeros", DType::I32, {kG, kOut / 8}, std::vector<uint32_t>(size_t(kG * kOut / 8), 0x77777777u));
    std::vector<int32_t> gIdx(static_cast<size_t>(kIn));
    for (int64_t i = 0; i < kIn; ++i)
        gIdx[size_t(i)] = int32_t(i / kGroup);
    std::shuffle(gIdx.begin(), gIdx.end(), rng);
    gptq.gIdx = owned("w.g_idx", DType::I32, {kIn}, gIdx);

    std::vector<float> y(size_t(kOut * kIn));
    std::printf("decode of one %lldx%lld weight, best of 5, one thread (thread CPU time)\n", (long long)kOut, (long long)kIn);
    for (const auto& item : {std::pair<const char*, const PackedWeight*>{"ct W4A16 g128, F16 scales", &ct4},
                             {"ct W8A8 channel, BF16 scales", &ct8},
                             {"gptq int4 g128 act-order", &gptq}}) {
        // Not a structured binding: clang 14 cannot capture one in the lambda below.
        const char* name = item.first;
        const PackedWeight* pw = item.second;
        if (Status s = pw->check("w.weight"); !s) {
            std::printf("%s: %s\n", name, s.error().oneLine().c_str());
            return 1;
        }
        const double ms = bestMs(5, [&] { (void)pw->decode(y, "w.weight"); });
        std::printf("  %-30s %8.1f ms  %5.2f ns/weight\n", name, ms, ms * 1e6 / double(kOut * kIn));
    }
    return 0;
}
