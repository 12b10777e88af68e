#include "commands.h"

namespace ember::cli {
void add_run_command(CLI::App& app, int* exit_code) {}  // implemented with the interpreter
}  // namespace ember::cli
