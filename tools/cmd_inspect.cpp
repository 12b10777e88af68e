#include "commands.h"

namespace ember::cli {
void add_inspect_command(CLI::App& app, int* exit_code) {}  // implemented with the pt2 reader
}  // namespace ember::cli
