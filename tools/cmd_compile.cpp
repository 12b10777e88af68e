// ember compile MODEL.pt2 -o MODEL.ep [--device cpu] [--min-block-size N]
//              [--torch-executed-ops OP,...] [--shapes NAME:MINxDIMS..MAXxDIMS]
//              [--standalone] [--no-timing] [--threads N] [--max-weight-growth F]
//              [--timing-rounds N] [--keep-sample-inputs] [--quiet]
//
// Compiles a torch.export archive into an .ep (engines inside the exported program) or,
// with --standalone, into one .engine file. Prints the partitioning summary, per-engine
// build progress and tactic choices, and a final report (engines, fallback nodes and why,
// sizes, compile time). The output is written atomically. The .ep's sample inputs keep
// their shapes and dtypes but hold zeros, unless --keep-sample-inputs (docs/compiler.md).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "ember/format.h"
#include "ember/compiler.h"
#include "ember/engine.h"
#include "ember/error.h"
#include "ember/pt2.h"

namespace ember::cli {
namespace {

struct CompileCliOptions {
  std::string model;
  std::string output;
  std::string device = "cpu";
  int min_block_size = 5;
  std::vector<std::string> torch_executed_ops;
  std::vector<std::string> shapes;
  bool standalone = false;
  bool no_timing = false;
  double max_weight_growth = 0.01;
  int timing_rounds = -1;  // -1: BuildOptions' default
  bool keep_sample_inputs = false;
  bool quiet = false;
  int threads = 0;
};

Shape parse_dims(const std::string& text, const std::string& spec) {
  Shape dims;
  size_t start = 0;
  while (true) {
    size_t x = text.find('x', start);
    std::string part = text.substr(start, x == std::string::npos ? std::string::npos : x - start);
    EMBER_CHECK(!part.empty() && part.find_first_not_of("0123456789") == std::string::npos && part.size() < 18,
                ErrorCode::kInvalidArgument, "--shapes ", spec, ": expected dims like 1x32, found '", text, "'");
    dims.push_back(std::stoll(part));
    if (x == std::string::npos) break;
    start = x + 1;
  }
  return dims;
}

// "x:1x32..16x32" -> ("x", ([1, 32], [16, 32])); "x:4x32" fixes the shape.
std::pair<std::string, std::pair<Shape, Shape>> parse_shape_spec(const std::string& spec) {
  size_t colon = spec.rfind(':');
  EMBER_CHECK(colon != std::string::npos && colon > 0, ErrorCode::kInvalidArgument, "--shapes ", spec,
              ": expected NAME:MINxDIMS..MAXxDIMS (e.g. x:1x32..16x32)");
  std::string name = spec.substr(0, colon), range = spec.substr(colon + 1);
  size_t dots = range.find("..");
  Shape lo = parse_dims(range.substr(0, dots), spec);
  Shape hi = dots == std::string::npos ? lo : parse_dims(range.substr(dots + 2), spec);
  EMBER_CHECK(lo.size() == hi.size(), ErrorCode::kInvalidArgument, "--shapes ", spec,
              ": min and max have different ranks");
  return {name, {lo, hi}};
}

int run_compile(const CompileCliOptions& cli) {
  CompileOptions options;
  options.device = cli.device;
  options.min_block_size = cli.min_block_size;
  for (const auto& list : cli.torch_executed_ops) {
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      std::string op = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!op.empty()) options.torch_executed_ops.push_back(op);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  for (const auto& s : cli.shapes) {
    auto [name, range] = parse_shape_spec(s);
    options.shapes[name] = range;
  }
  options.standalone = cli.standalone;
  options.build.time_tactics = !cli.no_timing;
  options.build.max_weight_growth = cli.max_weight_growth;
  if (cli.timing_rounds > 0) options.build.timing_rounds = cli.timing_rounds;
  options.build.threads = cli.threads;
  if (!cli.quiet) {
    options.progress = [](const std::string& msg) {
      std::printf("[compile] %s\n", msg.c_str());
      std::fflush(stdout);
    };
  }
  auto t0 = std::chrono::steady_clock::now();
  Pt2Archive input = read_pt2(cli.model);
  CompileReport report;
  if (cli.standalone) {
    std::shared_ptr<Storage> bytes = compile_standalone(input, options, &report);
    // Check before writing: what goes to disk must be a valid engine.
    EngineView::parse(bytes, cli.output, EngineVerification::kFull);
    write_engine_file(cli.output, *bytes);
  } else {
    Pt2Archive ep = compile_program(input, options, &report);
    if (cli.keep_sample_inputs)  // the compiler zeroes them; put the original bytes back
      for (size_t i = 0; i < ep.models.size() && i < input.models.size(); ++i)
        ep.models[i].sample_inputs = input.models[i].sample_inputs;
    write_pt2(ep, cli.output);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!cli.quiet) std::printf("%s", report.to_string().c_str());
  std::printf("wrote %s (%s) in %.2f s\n", cli.output.c_str(), human_bytes(std::filesystem::file_size(cli.output)).c_str(),
              secs);
  return 0;
}

}  // namespace

void add_compile_command(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<CompileCliOptions>();
  CLI::App* cmd = app.add_subcommand("compile", "Compile a .pt2 program into an .ep (or a standalone .engine)");
  cmd->add_option("model", o->model, "The .pt2 file")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", o->output, "Output file (.ep, or .engine with --standalone)")->required();
  cmd->add_option("--device", o->device, "Target device (default: cpu)");
  cmd->add_option("--min-block-size", o->min_block_size,
                  "Smallest subgraph (in graph nodes) turned into an engine (default 5)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--torch-executed-ops", o->torch_executed_ops,
                  "Ops kept outside engines, comma separated (e.g. aten.softmax.int,aten.gelu)");
  cmd->add_option("--shapes", o->shapes,
                  "Input shape ranges the engines are built for: NAME:MINxDIMS..MAXxDIMS (e.g. x:1x32..16x32)");
  cmd->add_flag("--standalone", o->standalone, "Compile the whole graph into one engine (error if it cannot)");
  cmd->add_flag("--no-timing", o->no_timing, "Do not time tactics: take the first implementation (faster builds)");
  cmd->add_option("--max-weight-growth", o->max_weight_growth,
                  "How much faster kernels may grow the stored weights, as a fraction of them (default 0.01; "
                  "e.g. 1 lets every Winograd convolution in: fastest engine, larger file)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--timing-rounds", o->timing_rounds,
                  "Rounds of tactic timing (candidates interleaved, each keeps its fastest run; default 3): more "
                  "rounds make the picks hold on a busy build machine, at the cost of build time")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--threads", o->threads, "Threads for tactic timing (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--keep-sample-inputs", o->keep_sample_inputs,
                "Keep the example inputs' values in the .ep byte for byte (default: zeros of the same shapes)");
  cmd->add_flag("-q,--quiet", o->quiet, "Print only the final line");
  cmd->callback([o, exit_code] { *exit_code = run_compile(*o); });
}

}  // namespace ember::cli
