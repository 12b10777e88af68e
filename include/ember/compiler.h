// The compiler: turns a torch.export program (.pt2) into a compiled program (.ep) whose
// supported subgraphs run as engines, or into one standalone engine.
//
//   ember::Pt2Archive pt2 = ember::read_pt2("model.pt2");
//   ember::CompileOptions options;
//   ember::CompileReport report;
//   ember::Pt2Archive ep = ember::compile_program(pt2, options, &report);
//   ember::write_pt2(ep, "model.ep");
//
// Pipeline (docs/compiler.md): normalize (pre-dispatch ATen -> canonical engine ops, asking
// the backend what it supports), partition (capability based: maximal acyclic subgraphs of
// supported nodes with at least min_block_size nodes), passes on each partition (constant
// folding, BatchNorm folding, conv/linear/matmul + activation + residual-add fusion, dead
// code elimination), engine build, and the .ep rewrite (one
// torch.ops.ember.execute_engine.default node per engine, engine bytes as a uint8 tensor
// constant, absorbed weights removed).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ember/pt2.h"
#include "ember/tensor.h"
#include "backends/cpu/cpu_backend.h"

namespace ember {

// Target of the engine node in .ep graphs; its schema is
// ember::execute_engine(Tensor[] inputs, Tensor engine) -> Tensor[].
inline constexpr const char* kExecuteEngineTarget = "torch.ops.ember.execute_engine.default";

struct CompileOptions {
  std::string device = "cpu";  // only "cpu" for now
  // Smallest subgraph turned into an engine, counted in original graph nodes (view-like
  // and identity nodes such as view, permute, dropout(eval) and contiguous count too).
  // 5 is TensorRT's / Torch-TensorRT's default.
  int min_block_size = 5;
  // Ops that always stay outside engines, run by the interpreter: "aten.softmax.int" or
  // "torch.ops.aten.softmax.int"; an overload-less name ("aten.softmax") matches every
  // overload.
  std::vector<std::string> torch_executed_ops;
  // User input name -> (min dims, max dims). Narrows the dynamic ranges the engines are
  // built for; a range outside the program's own range constraints is an error.
  std::map<std::string, std::pair<Shape, Shape>> shapes;
  // compile_standalone() instead of compile_program() (used by the CLI).
  bool standalone = false;
  cpu::BuildOptions build;
  // Progress messages (partitioning summary, per-engine build progress, tactic choices).
  std::function<void(const std::string&)> progress;
};

struct CompileReport {
  struct EngineInfo {
    std::string name;                     // "engine_0"
    std::string model;                    // model of the archive it belongs to ("model")
    std::vector<std::string> nodes;       // names of the original nodes it absorbed
    std::map<std::string, int> op_histogram;  // original targets ("aten.conv2d.default") -> count
    std::vector<std::string> fused_ops;   // the fused ops handed to the backend ("conv2d+relu", ...)
    std::vector<std::string> inputs;      // graph value names bound to the engine inputs
    std::vector<std::string> outputs;     // graph value names it produces
    double build_seconds = 0.0;
    size_t engine_bytes = 0;
  };
  struct FallbackNode {
    std::string model;
    std::string node;    // node name
    std::string target;  // "torch.ops.aten.sum.dim_IntList"
    std::string reason;  // why it stayed outside every engine
  };
  std::vector<EngineInfo> engines;
  std::vector<FallbackNode> fallback;
  size_t total_nodes = 0;        // original graph nodes
  size_t absorbed_nodes = 0;     // of which inside engines
  size_t weight_bytes_in = 0;    // weights + constants of the input
  size_t weight_bytes_out = 0;   // weights + constants kept outside engines
  size_t engine_bytes = 0;       // all engines together
  double total_seconds = 0.0;

  // Multi-line human-readable summary (what `ember compile` prints at the end).
  std::string to_string() const;
};

// Compiles every model of `input` into the .ep form (same archive layout; write it with
// write_pt2). Throws kUnsupported (device other than "cpu", ...), kInvalidArgument (bad
// options: shapes outside the program's ranges, unknown input names), and whatever the
// backend throws when an engine cannot be built.
Pt2Archive compile_program(const Pt2Archive& input, const CompileOptions& options, CompileReport* report = nullptr);

// Compiles the whole graph of the archive's model into one engine (an engine file's bytes,
// engine.h container). Throws kUnsupported listing every node that cannot go into the
// engine, with the reason each cannot.
std::shared_ptr<Storage> compile_standalone(const Pt2Archive& input, const CompileOptions& options,
                                            CompileReport* report = nullptr);

// The engines of an .ep model: (engine name, engine bytes) of each execute_engine node, in
// graph order. The bytes are zero-copy views into the archive's storage. The name is the
// engine constant's name without its "ember_" prefix ("engine_0").
std::vector<std::pair<std::string, std::shared_ptr<Storage>>> list_engines(const Pt2Model& model);

// Writes engine bytes (from compile_standalone or list_engines) to `path` atomically
// (temporary file in the same folder, fsync, rename). Throws kIo.
void write_engine_file(const std::string& path, const Storage& bytes);

}  // namespace ember
