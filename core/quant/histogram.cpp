#include "quant/histogram.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

namespace quantlens {

int64_t Histogram::total() const
{
    int64_t t = below + above;
    for (const int64_t c : counts)
        t += c;
    return t;
}

Histogram computeHistogram(std::span<const float> x, double lo, double hi, int bins)
{
    Histogram h;
    h.lo = lo;
    h.hi = hi;
    if (bins < 1 || !std::isfinite(lo) || !std::isfinite(hi) || hi < lo)
        return h;
    h.counts.assign(size_t(bins), 0);
    // Float bounds that give the same answers as comparing against the double bounds:
    // x < lo  <=>  x < loF (loF = smallest float >= lo), x > hi <=> x > hiF.
    float loF = float(lo);
    if (double(loF) < lo)
        loF = std::nextafter(loF, FLT_MAX);
    float hiF = float(hi);
    if (double(hiF) > hi)
        hiF = std::nextafter(hiF, -FLT_MAX);
    const float scale = hi > lo ? float(double(bins) / (hi - lo)) : 0.0f;
    const int32_t last = bins - 1;

    // Indices are computed in a vectorisable pass into a small buffer (see the slot
    // numbering below); the increments go to four interleaved copies of
    // the counts so that runs of equal bins do not serialise on one memory location.
    constexpr int kChunk = 1024;
    int32_t idx[kChunk];
    std::vector<int32_t> sub(size_t(4) * size_t(bins + 2), 0);
    int32_t* s0 = sub.data();
    int32_t* s1 = s0 + bins + 2;
    int32_t* s2 = s1 + bins + 2;
    int32_t* s3 = s2 + bins + 2;
    const size_t n = x.size();
    int64_t sinceFlush = 0;
    auto flush = [&] {
        for (int b = 0; b < bins + 2; ++b) {
            const int64_t c = int64_t(s0[b]) + s1[b] + s2[b] + s3[b];
            if (b == 0)
                h.below += c;
            else if (b <= bins)
                h.counts[size_t(b - 1)] += c;
            else if (b == bins + 1)
                h.above += c;
        }
        std::fill(sub.begin(), sub.end(), 0);
        sinceFlush = 0;
    };
    // Slots are shifted by one: 0 is "below", 1..bins are the bins, bins+1 is "above";
    // NaN gets -1 and is skipped.
    for (size_t start = 0; start < n; start += kChunk) {
        const int m = int(std::min<size_t>(kChunk, n - start));
        const float* p = x.data() + start;
        for (int i = 0; i < m; ++i) {
            const float v = p[i];
            float f = (v - loF) * scale;
            f = f < 0.0f ? 0.0f : f;
            f = f > float(last) ? float(last) : f;
            int32_t b = int32_t(f) + 1;
            b = v < loF ? 0 : b;
            b = v > hiF ? bins + 1 : b;
            b = v != v ? -1 : b;
            idx[i] = b;
        }
        int i = 0;
        for (; i + 4 <= m; i += 4) {
            if (idx[i] >= 0) ++s0[idx[i]];
            if (idx[i + 1] >= 0) ++s1[idx[i + 1]];
            if (idx[i + 2] >= 0) ++s2[idx[i + 2]];
            if (idx[i + 3] >= 0) ++s3[idx[i + 3]];
        }
        for (; i < m; ++i)
            if (idx[i] >= 0)
                ++s0[idx[i]];
        sinceFlush += m;
        if (sinceFlush > (int64_t(1) << 30))  // int32 sub-counts cannot overflow
            flush();
    }
    flush();
    return h;
}

}  // namespace quantlens
