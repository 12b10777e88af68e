// compile_program / compile_standalone / list_engines: the pipeline of
// include/ember/compiler.h put together.
#include "ember/format.h"
#include "ember/compiler.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "compiler/compiler_internal.h"
#include "ember/error.h"

namespace ember {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string short_target(const std::string& t) { return t.rfind("torch.ops.", 0) == 0 ? t.substr(10) : t; }

size_t entries_bytes(const Pt2Model& m) {
  size_t n = 0;
  for (const auto& e : m.weights) n += e.tensor.defined() ? e.tensor.nbytes() : e.blob.size();
  for (const auto& e : m.constants) n += e.tensor.defined() ? e.tensor.nbytes() : e.blob.size();
  return n;
}

void check_options(const CompileOptions& options) {
  EMBER_CHECK(options.device == "cpu", ErrorCode::kUnsupported, "compile: device '", options.device,
              "' is not supported (supported: cpu)");
  EMBER_CHECK(options.min_block_size >= 1, ErrorCode::kInvalidArgument, "compile: min_block_size must be >= 1, found ",
              options.min_block_size);
}

void progress(const CompileOptions& options, const std::string& msg) {
  if (options.progress) options.progress(msg);
}

compiler::AnalyzeOptions analyze_options(const CompileOptions& options) {
  compiler::AnalyzeOptions a;
  a.torch_executed_ops = options.torch_executed_ops;
  a.shapes = options.shapes;
  return a;
}

CompileReport::EngineInfo engine_info(const compiler::GraphAnalysis& g, const compiler::Partition& part,
                                      const compiler::LoweredEngine& le, const std::string& model) {
  CompileReport::EngineInfo info;
  info.name = le.graph.name;
  info.model = model;
  for (size_t n : part.nodes) {
    info.nodes.push_back(g.nodes[n].name);
    info.op_histogram[short_target(g.nodes[n].target)]++;
  }
  info.fused_ops = le.fused_descriptions;
  info.inputs = le.input_names;
  info.outputs = le.output_names;
  return info;
}

std::shared_ptr<Storage> build(const compiler::LoweredEngine& le, const CompileOptions& options,
                               CompileReport::EngineInfo* info) {
  progress(options, cat(le.graph.name, ": building ", le.graph.ops.size(), " fused ops (", info->nodes.size(),
                        " graph nodes), inputs [", [&] {
                          std::string s;
                          for (const auto& n : le.input_names) s += (s.empty() ? "" : ", ") + n;
                          return s;
                        }(), "]"));
  cpu::BuildOptions bo = options.build;
  if (!bo.progress && options.progress) bo.progress = options.progress;
  auto t0 = Clock::now();
  std::shared_ptr<Storage> bytes = cpu::build_engine(le.graph, bo);
  info->build_seconds = seconds_since(t0);
  info->engine_bytes = bytes->nbytes();
  progress(options, cat(le.graph.name, ": built in ", info->build_seconds, " s, ", human_bytes(bytes->nbytes())));
  return bytes;
}

}  // namespace

std::string CompileReport::to_string() const {
  std::ostringstream os;
  os << "engines: " << engines.size() << ", nodes in engines: " << absorbed_nodes << " of " << total_nodes
     << ", fallback nodes: " << fallback.size() << "\n";
  for (const auto& e : engines) {
    os << "  " << e.name << ": " << e.nodes.size() << " nodes -> " << e.fused_ops.size() << " fused ops, "
       << e.inputs.size() << " inputs, " << e.outputs.size() << " outputs, " << human_bytes(e.engine_bytes)
       << ", built in " << e.build_seconds << " s\n    ops:";
    for (const auto& [op, count] : e.op_histogram) os << " " << op << " x" << count;
    os << "\n";
  }
  if (!fallback.empty()) {
    os << "fallback nodes (run by the interpreter):\n";
    for (const auto& f : fallback)
      os << "  " << f.node << " (" << short_target(f.target) << "): " << f.reason << "\n";
  }
  os << "weights: " << human_bytes(weight_bytes_in) << " in, " << human_bytes(weight_bytes_out)
     << " kept outside engines; engines: " << human_bytes(engine_bytes) << "\n";
  os << "compile time: " << total_seconds << " s\n";
  return os.str();
}

Pt2Archive compile_program(const Pt2Archive& input, const CompileOptions& options, CompileReport* report) {
  check_options(options);
  auto t0 = Clock::now();
  CompileReport local;
  CompileReport& rep = report ? *report : local;
  rep = CompileReport{};
  Pt2Archive output = input;
  int engine_counter = 0;
  for (size_t mi = 0; mi < input.models.size(); ++mi) {
    const Pt2Model& model = input.models[mi];
    const std::string source = cat(input.root, ":", model.name);
    rep.weight_bytes_in += entries_bytes(model);
    compiler::GraphAnalysis g = compiler::analyze(model, source, analyze_options(options));
    std::vector<bool> supported;
    std::vector<std::string> reasons;
    for (const auto& n : g.nodes) {
      supported.push_back(n.supported);
      reasons.push_back(n.reason);
    }
    compiler::PartitionResult pr =
        compiler::partition_graph(supported, compiler::node_edges(g), reasons, options.min_block_size);
    compiler::prune_constant_outputs(g, pr, options.min_block_size);
    size_t in_engines = 0;
    for (const auto& p : pr.partitions) in_engines += p.nodes.size();
    progress(options, cat(source, ": ", g.nodes.size(), " nodes, ", pr.partitions.size(), " engine",
                          pr.partitions.size() == 1 ? "" : "s", " covering ", in_engines, " nodes, ",
                          pr.fallback_reasons.size(), " fallback node", pr.fallback_reasons.size() == 1 ? "" : "s"));
    rep.total_nodes += g.nodes.size();
    rep.absorbed_nodes += in_engines;
    for (const auto& [idx, why] : pr.fallback_reasons)
      rep.fallback.push_back({model.name, g.nodes[idx].name, g.nodes[idx].target, why});

    std::vector<compiler::BuiltEngine> built;
    built.reserve(pr.partitions.size());
    for (const auto& part : pr.partitions) {
      compiler::BuiltEngine be;
      be.partition = &part;
      be.lowered = compiler::lower(g, part, cat("engine_", engine_counter++), compiler::values_needed_outside(g, part));
      CompileReport::EngineInfo info = engine_info(g, part, be.lowered, model.name);
      be.bytes = build(be.lowered, options, &info);
      rep.engine_bytes += info.engine_bytes;
      rep.engines.push_back(std::move(info));
      built.push_back(std::move(be));
    }
    Pt2Model rewritten = compiler::rewrite_model(g, built);
    ir::validate(rewritten.program, source + " (compiled)");
    size_t kept = entries_bytes(rewritten);
    for (const auto& b : built) kept -= b.bytes->nbytes();
    rep.weight_bytes_out += kept;
    output.models[mi] = std::move(rewritten);
  }
  rep.total_seconds = seconds_since(t0);
  return output;
}

std::shared_ptr<Storage> compile_standalone(const Pt2Archive& input, const CompileOptions& options,
                                            CompileReport* report) {
  check_options(options);
  auto t0 = Clock::now();
  const Pt2Model* model = input.find_model("model");
  if (!model) {
    EMBER_CHECK(input.models.size() == 1, ErrorCode::kUnsupported, input.root, ": holds ", input.models.size(),
                " models; a standalone engine is built from exactly one");
    model = &input.models[0];
  }
  const std::string source = cat(input.root, ":", model->name);
  compiler::GraphAnalysis g = compiler::analyze(*model, source, analyze_options(options));
  const ir::ExportedProgram& ep = model->program;

  std::vector<std::string> problems;
  for (const auto& n : g.nodes)
    if (!n.supported) problems.push_back(cat("node '", n.name, "' (", short_target(n.target), "): ", n.reason));
  std::vector<int> user_inputs, user_outputs;
  for (const auto& spec : ep.graph_module.signature.input_specs) {
    if (spec.kind == ir::InputKind::kUserInput) {
      if (spec.arg.kind == ir::ArgKind::kTensor) {
        user_inputs.push_back(g.id_of(spec.arg.name));
      } else {
        problems.push_back(cat("user input of kind ", ir::arg_kind_key(spec.arg.kind), ": engines take tensors only"));
      }
    } else if (spec.kind != ir::InputKind::kParameter && spec.kind != ir::InputKind::kBuffer &&
               spec.kind != ir::InputKind::kTensorConstant) {
      problems.push_back(cat("input spec of kind ", ir::input_kind_key(spec.kind), " is not supported in an engine"));
    } else if (spec.arg.kind == ir::ArgKind::kTensor && !g.is_constant(g.id_of(spec.arg.name))) {
      problems.push_back(cat("buffer '", spec.target, "' is mutated by the program"));
    }
  }
  for (const auto& spec : ep.graph_module.signature.output_specs) {
    if (spec.kind != ir::OutputKind::kUserOutput) {
      problems.push_back(cat("output spec of kind ", ir::output_kind_key(spec.kind), " (", spec.target,
                             ") is not supported in an engine"));
    } else if (spec.arg.kind != ir::ArgKind::kTensor) {
      problems.push_back(cat("user output of kind ", ir::arg_kind_key(spec.arg.kind), ": engines return tensors only"));
    } else {
      user_outputs.push_back(g.id_of(spec.arg.name));
    }
  }
  if (!problems.empty()) {
    std::string msg = cat(source, ": cannot build one standalone engine; ", problems.size(), " problem",
                          problems.size() == 1 ? "" : "s", ":");
    for (const auto& p : problems) msg += "\n  " + p;
    fail(ErrorCode::kUnsupported, msg);
  }
  compiler::Partition part;
  for (size_t i = 0; i < g.nodes.size(); ++i) part.nodes.push_back(i);
  progress(options, cat(source, ": ", g.nodes.size(), " nodes, all supported: one standalone engine"));
  compiler::LoweredEngine le = compiler::lower(g, part, model->name, user_outputs, user_inputs);
  CompileReport local;
  CompileReport& rep = report ? *report : local;
  rep = CompileReport{};
  CompileReport::EngineInfo info = engine_info(g, part, le, model->name);
  std::shared_ptr<Storage> bytes = build(le, options, &info);
  rep.total_nodes = rep.absorbed_nodes = g.nodes.size();
  rep.weight_bytes_in = entries_bytes(*model);
  rep.engine_bytes = bytes->nbytes();
  rep.engines.push_back(std::move(info));
  rep.total_seconds = seconds_since(t0);
  return bytes;
}

std::vector<std::pair<std::string, std::shared_ptr<Storage>>> list_engines(const Pt2Model& model) {
  std::vector<std::pair<std::string, std::shared_ptr<Storage>>> result;
  const auto& specs = model.program.graph_module.signature.input_specs;
  for (const auto& node : model.program.graph_module.graph.nodes) {
    if (node.target != kExecuteEngineTarget) continue;
    const std::string where = cat(model.name, ": node '", node.name.value_or("?"), "'");
    const ir::Argument* engine = node.input("engine");
    EMBER_CHECK(engine && engine->kind == ir::ArgKind::kTensor, ErrorCode::kCorrupt, where,
                ": execute_engine has no tensor argument 'engine'");
    const ir::InputSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.arg.kind == ir::ArgKind::kTensor && s.arg.name == engine->name) spec = &s;
    EMBER_CHECK(spec && (spec->kind == ir::InputKind::kTensorConstant || spec->kind == ir::InputKind::kBuffer),
                ErrorCode::kCorrupt, where, ": engine operand '", engine->name,
                "' is not a tensor constant or buffer of the signature");
    const Pt2TensorEntry* e = model.find_constant(spec->target);
    if (!e) e = model.find_weight(spec->target);
    EMBER_CHECK(e && e->tensor.defined(), ErrorCode::kCorrupt, where, ": engine constant '", spec->target,
                "' is missing from the archive");
    EMBER_CHECK(e->tensor.dtype() == DType::kUInt8 && e->tensor.dim() == 1 && e->tensor.is_contiguous(),
                ErrorCode::kCorrupt, where, ": engine constant '", spec->target, "' must be a contiguous 1-D uint8 tensor, found ",
                e->tensor.to_string());
    std::string name = spec->target.rfind("ember_", 0) == 0 ? spec->target.substr(6) : spec->target;
    result.emplace_back(name, Storage::borrow(e->tensor.raw_data(), e->tensor.nbytes(), e->tensor.storage()));
  }
  return result;
}

void write_engine_file(const std::string& path, const Storage& bytes) {
  std::filesystem::path target(path);
  std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::string tmpl = (dir / ("." + target.filename().string() + ".XXXXXX")).string();
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = mkstemp(name.data());
  EMBER_CHECK(fd >= 0, ErrorCode::kIo, path, ": cannot create a temporary file in ", dir.string(), ": ",
              std::strerror(errno));
  const uint8_t* p = bytes.data();
  size_t left = bytes.nbytes();
  bool ok = true;
  while (left > 0 && ok) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) p += w, left -= static_cast<size_t>(w);
  }
  int err = ok ? 0 : errno;
  if (ok && ::fsync(fd) != 0) ok = false, err = errno;
  ::fchmod(fd, 0644);
  ::close(fd);
  if (ok && std::rename(name.data(), path.c_str()) != 0) ok = false, err = errno;
  if (!ok) {
    std::remove(name.data());
    fail(ErrorCode::kIo, path, ": cannot write: ", std::strerror(err));
  }
}

}  // namespace ember
