#pragma once
// Result<T>: a value or an Error that says what, where and why.
// (std::expected is C++23; this is the small equivalent STYLE.md asks for.)
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace quantlens {

struct Error {
    std::string code;     // short machine-readable kind: "truncated", "bad-json", ...
    std::string message;  // human sentence, no trailing newline
    std::string path;     // file involved, if any
    int64_t offset = -1;  // byte offset in the file, if relevant
    std::string tensor;   // tensor involved, if any

    // One line for stderr and message boxes: "path: tensor 'x': message (at byte N)".
    std::string oneLine() const;
};

Error makeError(std::string code, std::string message, std::string path = {},
                int64_t offset = -1, std::string tensor = {});

template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T* operator->() { return &std::get<0>(v_); }
    const T* operator->() const { return &std::get<0>(v_); }
    T& operator*() & { return std::get<0>(v_); }
    const T& operator*() const& { return std::get<0>(v_); }
    const Error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, Error> v_;
};

// For operations that return nothing but may fail.
struct Ok {};
using Status = Result<Ok>;

}  // namespace quantlens
