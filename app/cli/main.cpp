#include <cstdio>
#include <exception>

#include "commands.h"

int main(int argc, char** argv)
{
    CLI::App app{"quantlens-cli: inspect, quantize, run and benchmark neural-network weights in int8"};
    app.require_subcommand(1);
    quantlens::cli::addInspectCommand(app);
    quantlens::cli::addQuantizeCommand(app);
    quantlens::cli::addRunCommand(app);
    quantlens::cli::addBenchCommand(app);
    quantlens::cli::addSensitivityCommand(app);
    quantlens::cli::addCompareCommand(app);
    quantlens::cli::addActivationsCommand(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;
    } catch (const quantlens::cli::Failure& f) {
        std::fprintf(stderr, "quantlens-cli: %s\n", f.reason.c_str());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "quantlens-cli: %s\n", e.what());
        return 1;
    }
    return 0;
}
