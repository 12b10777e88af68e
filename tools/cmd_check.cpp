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
#include "ember/engine.h"
#include "ember/target.h"

namespace ember::cli {
namespace {

struct CheckOptions {
  std::string file;
  std::string host;
  bool json = false;
};

// The engines a file holds. A standalone engine (magic EMBERENG) holds one. Other
// containers (.ep archives: one engine per execute_engine constant) are listed here by
// their own reader, which returns one EngineSource per engine (zero-copy slices welcome).
std::vector<EngineSource> engines_in_file(const std::string& path) {
  std::shared_ptr<Storage> bytes = map_file_readonly(path);
  std::span<const uint8_t> head(bytes->data(), std::min<size_t>(bytes->nbytes(), 8));
  static const uint8_t kZipMagic[4] = {'P', 'K', 3, 4};
  if (head.size() >= 4 && std::memcmp(head.data(), kZipMagic, 4) == 0) {
    fail(ErrorCode::kUnsupported, path,
         ": is a zip archive; checking the engines inside .ep archives is not supported by this build");
  }
  return {EngineSource{"", path, std::move(bytes)}};
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
  cmd->add_option("file", opt->file, "engine file (.engine)")->required();
  cmd->add_option("--host", opt->host,
                  "describe the host instead of detecting it, e.g. \"x86_64 without avx512\", "
                  "\"x86_64 with avx2,fma\", \"aarch64\", \"host without avx512f\"");
  cmd->add_flag("--json", opt->json, "print the report as JSON");
  cmd->callback([opt, exit_code]() { *exit_code = run_check(*opt); });
}

}  // namespace ember::cli
