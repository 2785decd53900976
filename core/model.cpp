#include "model.h"

namespace quantlens {

const Tensor* Model::find(std::string_view name) const
{
    for (const Tensor& t : tensors)
        if (t.name == name)
            return &t;
    return nullptr;
}

int64_t Model::parameterCount() const
{
    int64_t n = 0;
    for (const Tensor& t : tensors)
        if (t.group.empty())
            n += t.numel();
    return n;
}

int64_t Model::byteCount() const
{
    int64_t n = 0;
    for (const Tensor& t : tensors)
        if (t.group.empty())
            n += t.storedBytes();
    return n;
}

}  // namespace quantlens
