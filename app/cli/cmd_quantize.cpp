#include "commands.h"

namespace quantlens::cli {

// TEMPORARY until its issue lands: the subcommand exists and says it is not available.
void addQuantizeCommand(CLI::App& app)
{
    auto* cmd = app.add_subcommand("quantize", "not available yet");
    cmd->allow_extras();
    cmd->callback([] { throw Failure{"'quantize' is not implemented yet"}; });
}

}  // namespace quantlens::cli
