#pragma once
// Reading an export back in tests: its JSON files and a tensor's stored values.
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model.h"

namespace quantlens::test {

inline nlohmann::json readJsonFile(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return nlohmann::json::parse(ss.str());
}

// The tensor's bytes as T, as stored (no conversion).
template <class T>
std::vector<T> storedValues(const Tensor& t)
{
    std::vector<T> v(size_t(t.numel()));
    if (!v.empty())
        std::memcpy(v.data(), t.data.data(), v.size() * sizeof(T));
    return v;
}

}  // namespace quantlens::test
