// ember check FILE [--host DESCRIPTION] [--json]
//
// Grades the engines in FILE against a host (this machine, or a described one) without
// building any kernel: every section checksum is verified, then the compatibility policy
// is applied. Exit status: 0 compatible (warnings allowed), 1 incompatible, 2 unreadable
// (corrupted, truncated, not an engine).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "ember/compiler.h"
#include "ember/engine.h"
#include "ember/pt2.h"
#include "ember/runtime.h"
#include "ember/target.h"

namespace ember::cli {
namespace {

struct CheckOptions {
  std::string file;
  std::string host;
  bool json = false;
};

// The engines a file holds: one for a standalone engine (magic EMBERENG); for an .ep
// archive, one per execute_engine constant of each model, as zero-copy slices of the
// archive mapping.
std::vector<EngineSource> engines_in_file(const std::string& path) {
  std::shared_ptr<Storage> bytes = map_file_readonly(path);
  std::span<const uint8_t> head(bytes->data(), std::min<size_t>(bytes->nbytes(), 8));
  static const uint8_t kZipMagic[4] = {'P', 'K', 3, 4};
  static const uint8_t kElfMagic[4] = {0x7f, 'E', 'L', 'F'};
  const bool is_archive = head.size() >= 4 && (std::memcmp(head.data(), kZipMagic, 4) == 0 ||
                                            std::memcmp(head.data(), kElfMagic, 4) == 0);  // .pt2/.ep or packaged .so
  if (!is_archive) return {EngineSource{"", path, std::move(bytes)}};
  Pt2Archive archive = read_archive_or_package(path);
  std::vector<EngineSource> sources;
  for (const Pt2Model& model : archive.models) {
    for (auto& [name, engine] : list_engines(model)) {
      std::string label = archive.models.size() == 1 ? name : model.name + "/" + name;
      sources.push_back(EngineSource{label, cat(path, ":", label), std::move(engine)});
    }
  }
  EMBER_CHECK(!sources.empty(), ErrorCode::kNotFound, path,
              ": the archive holds no ember::execute_engine node (nothing to check; `ember inspect` shows its ops)");
  return sources;
}

int run_check(const CheckOptions& opt) {
  const TargetDescriptor host = opt.host.empty() ? host_target() : parse_target_description(opt.host);
  std::vector<EngineCheckResult> results = check_engines(engines_in_file(opt.file), host);

  int exit_code = 0;
  for (const auto& r : results) {
    if (!r.readable) {
      exit_code = 2;
    } else if (!r.report.compatible() && exit_code == 0) {
      exit_code = 1;
    }
  }
  if (opt.json) {
    nlohmann::json out;
    out["file"] = opt.file;
    out["host"] = host;
    out["engines"] = nlohmann::json::array();
    for (const auto& r : results) {
      nlohmann::json e;
      if (r.readable) {
        e = report_to_json(r.report);
        e["status"] = r.report.compatible() ? "compatible" : "incompatible";
      } else {
        e = {{"source", r.source},
             {"engine", r.name},
             {"status", "unreadable"},
             {"error", {{"code", error_code_name(r.error_code)}, {"message", r.error_message}}}};
      }
      out["engines"].push_back(std::move(e));
    }
    out["result"] = exit_code == 0 ? "compatible" : exit_code == 1 ? "incompatible" : "unreadable";
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    for (const auto& r : results) {
      if (r.readable) {
        std::printf("%s", format_report(r.report).c_str());
      } else {
        std::printf("%s: ERROR (%s): %s\n", r.source.c_str(), error_code_name(r.error_code), r.error_message.c_str());
      }
    }
  }
  std::fflush(stdout);
  return exit_code;
}

}  // namespace

void add_check_command(CLI::App& app, int* exit_code) {
  auto opt = std::make_shared<CheckOptions>();
  CLI::App* cmd = app.add_subcommand("check",
                                     "Check that the engines in a file can run on a host, without building kernels "
                                     "(exit 0: compatible, 1: incompatible, 2: unreadable or corrupted)");
  cmd->add_option("file", opt->file, "engine file (.engine), compiled program (.ep) or packaged model (.so)")->required();
  cmd->add_option("--host", opt->host,
                  "describe the host instead of detecting it, e.g. \"x86_64 without avx512\", "
                  "\"x86_64 with avx2,fma\", \"aarch64\", \"host without avx512f\"");
  cmd->add_flag("--json", opt->json, "print the report as JSON");
  cmd->callback([opt, exit_code]() { *exit_code = run_check(*opt); });
}

}  // namespace ember::cli
