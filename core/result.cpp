#include "result.h"

namespace quantlens {

std::string Error::oneLine() const
{
    std::string s;
    if (!path.empty())
        s += path + ": ";
    if (!tensor.empty())
        s += "tensor '" + tensor + "': ";
    s += message;
    if (offset >= 0)
        s += " (at byte " + std::to_string(offset) + ")";
    for (char& c : s)
        if (c == '\n' || c == '\r')
            c = ' ';
    return s;
}

Error makeError(std::string code, std::string message, std::string path, int64_t offset,
                std::string tensor)
{
    return Error{std::move(code), std::move(message), std::move(path), offset, std::move(tensor)};
}

}  // namespace quantlens
