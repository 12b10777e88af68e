// Subcommands of the `ember` CLI. Each lives in its own cmd_<name>.cpp and registers
// itself on the app; errors propagate as ember::Error and are printed by main.
#pragma once

#include <CLI/CLI.hpp>

namespace ember::cli {

// Each adds its subcommand to `app`. The callback runs the command and stores its exit
// code in `*exit_code`.
void add_inspect_command(CLI::App& app, int* exit_code);
void add_run_command(CLI::App& app, int* exit_code);
void add_check_command(CLI::App& app, int* exit_code);
void add_compile_command(CLI::App& app, int* exit_code);
void add_extract_command(CLI::App& app, int* exit_code);
void add_package_command(CLI::App& app, int* exit_code);

}  // namespace ember::cli
