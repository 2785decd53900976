#include "modelarg.h"

#include "commands.h"
#include "io/demomodel.h"

namespace quantlens::cli {

Model loadModelArg(const std::string& arg)
{
    if (arg == "demo")
        return makeDemoModel();
    auto m = openModel(arg);
    if (!m)
        throw Failure{m.error().oneLine()};
    return std::move(m).value();
}

}  // namespace quantlens::cli
