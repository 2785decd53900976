#include "commands.h"

namespace quantlens::cli {

// TEMPORARY until its issue lands: the subcommand exists and says it is not available.
void addInspectCommand(CLI::App& app)
{
    auto* cmd = app.add_subcommand("inspect", "not available yet");
    cmd->allow_extras();
    cmd->callback([] { throw Failure{"'inspect' is not implemented yet"}; });
}

}  // namespace quantlens::cli
