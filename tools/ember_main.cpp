// ember: the command-line tool (inspect, run; later compile, check, extract, package).
#include <cstdio>
#include <exception>

#include "commands.h"
#include "ember/error.h"
#include "ember/version.h"

int main(int argc, char** argv) {
  CLI::App app{"Ember: compile, save and run PyTorch exported programs (version " EMBER_VERSION_STRING ")",
               "ember"};
  app.set_version_flag("--version", EMBER_VERSION_STRING);
  app.require_subcommand(1);
  int exit_code = 0;
  ember::cli::add_inspect_command(app, &exit_code);
  ember::cli::add_run_command(app, &exit_code);
  ember::cli::add_check_command(app, &exit_code);
  ember::cli::add_package_command(app, &exit_code);
#ifdef EMBER_HAVE_COMPILER
  ember::cli::add_compile_command(app, &exit_code);
  ember::cli::add_extract_command(app, &exit_code);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ember::Error& e) {
    std::fprintf(stderr, "ember: error (%s): %s\n", ember::error_code_name(e.code()), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember: internal error: %s\n", e.what());
    return 3;
  }
  return exit_code;
}
