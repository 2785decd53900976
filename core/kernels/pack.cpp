#include <cstdlib>
#include <cstring>

#include "alignedarray.h"
#include "kernels/gemm.h"

namespace quantlens::kernels {

int64_t PackedWeights::panelWidth(int64_t p) const
{
    const int64_t rest = n - p * kPanel;
    if (rest >= kPanel)
        return kPanel;
    return (rest + 15) / 16 * 16;
}

PackedWeights packWeights(const int8_t* w, int64_t n, int64_t k, int64_t ldw)
{
    PackedWeights pw;
    pw.n = n;
    pw.k = k;
    pw.k4 = paddedK(k);
    pw.panels = (n + PackedWeights::kPanel - 1) / PackedWeights::kPanel;
    // Every panel gets a full kPanel*k4 slot so panel(p) is a multiply; the unused tail of the
    // last slot stays zero. 64-byte alignment lets the kernels use aligned zmm loads.
    const size_t bytes = size_t(std::max<int64_t>(pw.bytes(), 64));
    AlignedArray<int8_t> raw = makeAlignedArray<int8_t>(bytes);
    std::memset(raw.get(), 0, bytes);
    pw.data = std::move(raw);
    pw.colSum.assign(size_t(pw.panels * PackedWeights::kPanel), 0);

    for (int64_t p = 0; p < pw.panels; ++p) {
        const int64_t width = pw.panelWidth(p);
        int8_t* dst = pw.data.get() + p * PackedWeights::kPanel * pw.k4;
        for (int64_t c = 0; c < width; ++c) {
            const int64_t j = p * PackedWeights::kPanel + c;
            if (j >= n)
                break;
            int32_t sum = 0;
            for (int64_t kk = 0; kk < k; ++kk) {
                const int8_t v = w[j * ldw + kk];
                dst[(kk / 4) * width * 4 + c * 4 + (kk % 4)] = v;
                sum += v;
            }
            pw.colSum[size_t(j)] = sum;
        }
    }
    return pw;
}

}  // namespace quantlens::kernels
