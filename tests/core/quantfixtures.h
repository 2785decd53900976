#pragma once
// Loader for tests/data/quant/fixtures.{json,bin} (written by tests/scripts/make_quant_fixtures.py).
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "halffloat.h"
#include "quant/quantspec.h"
#include "testsupport.h"

namespace quantlens::test {

struct QuantFixtures {
    nlohmann::json manifest;
    std::vector<char> blob;
    bool ok = false;

    bool load()
    {
        std::ifstream j(dataPath(QStringLiteral("quant/fixtures.json")).toStdString());
        std::ifstream b(dataPath(QStringLiteral("quant/fixtures.bin")).toStdString(), std::ios::binary);
        if (!j || !b)
            return false;
        manifest = nlohmann::json::parse(j, nullptr, false);
        blob.assign(std::istreambuf_iterator<char>(b), {});
        ok = !manifest.is_discarded();
        return ok;
    }

    template <class T>
    std::vector<T> array(const nlohmann::json& ref) const
    {
        const size_t off = ref.at("offset").get<size_t>();
        const size_t n = ref.at("count").get<size_t>();
        std::vector<T> v(n);
        if (off + n * sizeof(T) <= blob.size())
            std::memcpy(v.data(), blob.data() + off, n * sizeof(T));
        return v;
    }

    // The input as float32, upcasting F16/BF16 sources the way the readers do.
    std::vector<float> input(const std::string& name, std::vector<int64_t>* shape = nullptr) const
    {
        const auto& in = manifest.at("inputs").at(name);
        if (shape)
            *shape = in.at("shape").get<std::vector<int64_t>>();
        const std::string src = in.at("source_dtype");
        if (src == "F32")
            return array<float>(in.at("data"));
        const auto raw = array<uint16_t>(in.at("data"));
        std::vector<float> x(raw.size());
        for (size_t i = 0; i < raw.size(); ++i)
            x[i] = src == "F16" ? halfToFloat(raw[i]) : bf16ToFloat(raw[i]);
        return x;
    }
};

inline float floatFromBits(uint32_t b)
{
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

inline uint32_t bitsOf(float f)
{
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

}  // namespace quantlens::test
