#include "quant/weightmethod.h"

#include <charconv>
#include <cstdio>

namespace quantlens {

Result<MethodSpec> parseMethod(const std::string& s)
{
    MethodSpec m;
    if (s == "rtn")
        return m;
    if (s == "gptq" || s == "gptq:actorder") {
        m.method = WeightMethod::Gptq;
        m.gptq.actOrder = s != "gptq";
        return m;
    }
    static constexpr std::string_view kSq = "smoothquant:";
    if (s.starts_with(kSq)) {
        const std::string v = s.substr(kSq.size());
        double a = -1;
        const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), a);
        if (ec == std::errc() && p == v.data() + v.size() && a >= 0 && a <= 1) {
            m.method = WeightMethod::SmoothQuant;
            m.alpha = a;
            return m;
        }
        return makeError("bad-method", "smoothquant:ALPHA needs ALPHA in [0, 1], got '" + v + "'");
    }
    return makeError("bad-method", "method must be rtn, gptq, gptq:actorder or smoothquant:ALPHA, got '" + s + "'");
}

std::string methodName(const MethodSpec& m)
{
    switch (m.method) {
    case WeightMethod::Rtn: return "rtn";
    case WeightMethod::Gptq: return m.gptq.actOrder ? "gptq:actorder" : "gptq";
    case WeightMethod::SmoothQuant: {
        char b[48];
        std::snprintf(b, sizeof b, "smoothquant:%g", m.alpha);
        return b;
    }
    }
    return "?";
}

}  // namespace quantlens
