// `ember package`: turns a compiled program (.ep, or a plain .pt2) into a self-contained
// shared library that needs only libember_runtime.so at run time.
//
//   ember::package::PackageOptions options;
//   ember::package::PackageReport report = ember::package::package_program("model.ep", "model.so", options);
//
// The library embeds every archive entry the runtime reads (the program JSON, weight and
// constant configs, engine bytes, fallback weights; not the sample inputs) as read-only
// data sections, and carries the program's schedule as generated code: one call per graph
// node in execution order, each followed by the releases of the values that die there.
// The contract between the generated code and the runtime is include/ember/package_abi.h;
// docs/package.md describes the generated source and the compile command.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ember/runtime.h"

namespace ember::package {

struct PackageOptions {
  // Model inside the archive; empty: "model", or the only model there is.
  std::string model_name;
  // C++ compiler (a path or a name looked up on PATH). Empty: $CXX, else the first of c++,
  // g++, clang++ on PATH.
  std::string cxx;
  // Folder holding libember_runtime.so. Empty: $EMBER_RUNTIME_DIR, else the build tree's
  // runtime folder, else ../lib next to the running executable.
  std::string runtime_dir;
  // Folder holding ember/package_abi.h and ember/ember.h. Empty: the source tree's include
  // folder, else ../include next to the running executable.
  std::string include_dir;
  // Non-empty: keep the generated source, the entry blobs and a build.sh with the exact
  // compile command in this folder (created when missing). Empty: a temporary folder that
  // is removed afterwards.
  std::string emit_source_dir;
  // Progress messages ("embedding 24 entries (44.6 MiB)", "compiling with g++ ...").
  std::function<void(const std::string&)> progress;
};

struct PackageReport {
  std::string input;           // the .ep / .pt2
  std::string output;          // the .so
  size_t entries = 0;          // embedded archive entries
  uint64_t entry_bytes = 0;    // their (uncompressed) bytes
  size_t skipped_entries = 0;  // left out (sample inputs, directory entries)
  uint64_t skipped_bytes = 0;
  size_t steps = 0;                          // plan steps = graph nodes
  size_t engine_steps = 0;                   // of which engine calls
  size_t released_values = 0;                // distinct values the glue releases
  std::string compiler;                      // the compiler as run ("/usr/bin/g++")
  std::string compiler_version;              // first line of `<cxx> --version`
  std::vector<std::string> compile_command;  // argv
  double compile_seconds = 0;
  double total_seconds = 0;
  uint64_t output_bytes = 0;
  std::string runtime_dir;  // where libember_runtime.so was found (also an rpath)
  std::string source_dir;   // the --emit-source folder, when kept
  // Multi-line summary for the CLI.
  std::string to_string() const;
};

// What the generated source is made from (package_program fills it from the archive and
// the program's plan; tests build it by hand).
struct GlueEntry {
  std::string name;       // path inside the archive root ("models/model.json")
  std::string blob_path;  // absolute path of the file holding its bytes (for .incbin)
  uint64_t size = 0;
};
struct GlueSpec {
  std::string ember_version;  // the packaging Ember's version
  std::string source;         // the .ep file name (no folders)
  std::string archive_root;
  std::string model_name;
  std::vector<GlueEntry> entries;
  std::vector<PlanStep> plan;
};

// The generated C++ source (no standard library use; includes only ember/package_abi.h).
// Node i of the descriptor's node_names is plan step i; values are numbered in the order
// the plan first releases them.
std::string generate_glue_source(const GlueSpec& spec);

// The compile command for `source` -> `output` (argv; argv[0] is the compiler).
std::vector<std::string> glue_compile_command(const std::vector<std::string>& cxx, const std::string& source,
                                              const std::string& output, const std::vector<std::string>& include_dirs,
                                              const std::string& runtime_dir);

// The compiler to use: `requested` (a path or a name on PATH), else $CXX, else c++, g++,
// clang++ on PATH. Returns argv (a $CXX such as "ccache g++" gives several words). Throws
// kNotFound naming everything tried.
std::vector<std::string> find_cxx(const std::string& requested);

// Packages `ep_path` into `so_path` (written atomically: on failure the destination is
// untouched and no partial file is left). Throws ember::Error: kIo / kCorrupt for unreadable
// or malformed inputs, kNotFound when no compiler or no libember_runtime.so is found,
// kIo with the command and the tail of the compiler's output when compiling fails.
PackageReport package_program(const std::string& ep_path, const std::string& so_path, const PackageOptions& options);

}  // namespace ember::package
