// ember package MODEL.ep -o MODEL.so [--emit-source DIR] [--cxx COMPILER] [--runtime-dir DIR]
//              [--model NAME] [--quiet]
//
// Packages a compiled program (.ep, or a plain .pt2) as a shared library that needs only
// libember_runtime.so at run time: the archive's entries embedded as data sections, the
// schedule as generated C++, compiled with the system C++ compiler (docs/package.md).
// Prints progress and a report (entries and bytes, steps, compiler and its time, output
// size). The output is written atomically.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "ember/format.h"
#include "package/package.h"

namespace ember::cli {
namespace {

struct PackageCliOptions {
  std::string model;
  std::string output;
  std::string emit_source;
  std::string cxx;
  std::string runtime_dir;
  std::string model_name;
  bool quiet = false;
};

int run_package(const PackageCliOptions& cli) {
  package::PackageOptions options;
  options.cxx = cli.cxx;
  options.runtime_dir = cli.runtime_dir;
  options.emit_source_dir = cli.emit_source;
  options.model_name = cli.model_name;
  if (!cli.quiet) {
    options.progress = [](const std::string& msg) {
      std::printf("[package] %s\n", msg.c_str());
      std::fflush(stdout);
    };
  }
  package::PackageReport report = package::package_program(cli.model, cli.output, options);
  if (!cli.quiet) std::printf("%s", report.to_string().c_str());
  std::printf("wrote %s (%s) in %.2f s\n", cli.output.c_str(), human_bytes(report.output_bytes).c_str(),
              report.total_seconds);
  return 0;
}

}  // namespace

void add_package_command(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<PackageCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "package",
      "Package a compiled program (.ep or .pt2) as a shared library (.so) that needs only libember_runtime.so");
  cmd->add_option("model", o->model, "The .ep (or .pt2) file")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", o->output, "Output shared library (.so)")->required();
  cmd->add_option("--emit-source", o->emit_source,
                  "Keep the generated source, the entry blobs and build.sh (the compile command) in this folder");
  cmd->add_option("--cxx", o->cxx, "C++ compiler (default: $CXX, else c++, g++ or clang++ on PATH)");
  cmd->add_option("--runtime-dir", o->runtime_dir,
                  "Folder holding libember_runtime.so (default: $EMBER_RUNTIME_DIR, else the build or install tree)");
  cmd->add_option("--model", o->model_name, "Model inside the archive (default: the only one, or 'model')");
  cmd->add_flag("-q,--quiet", o->quiet, "Print only the final line");
  cmd->callback([o, exit_code] { *exit_code = run_package(*o); });
}

}  // namespace ember::cli
