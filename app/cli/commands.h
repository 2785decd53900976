#pragma once
// quantlens-cli subcommands: each file adds one subcommand to the app and runs core code.
// Exit codes (DESIGN.md): 0 success, 2 usage error, 1 any other failure with a one-line reason.
#include <CLI/CLI.hpp>

namespace quantlens::cli {

void addInspectCommand(CLI::App& app);
void addQuantizeCommand(CLI::App& app);
void addRunCommand(CLI::App& app);
void addBenchCommand(CLI::App& app);
void addSensitivityCommand(CLI::App& app);
void addCompareCommand(CLI::App& app);
void addActivationsCommand(CLI::App& app);

// Thrown by a command to end with exit code 1 and a one-line reason on stderr.
struct Failure {
    std::string reason;
};

}  // namespace quantlens::cli
