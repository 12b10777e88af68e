// Loading and running exported programs.
//
//   ember::Program p = ember::Program::load("model.pt2");
//   ember::Value out = p.run(ember::Value::tuple({x, y}));   // PyTorch-style pytree in and out
//   std::vector<ember::Tensor> flat = p.run_flat({x, y});      // flattened user outputs
//
// load() resolves every graph node against the op registry (all unsupported ops are
// reported at once), checks node arguments against the op schemas, binds parameters,
// buffers and constants from the archive and precomputes an execution plan (value slots,
// last uses so dead intermediates are freed as soon as possible). run() validates the
// user inputs (count, dtype, rank, static dims, symbolic dims within their ranges and
// consistent across inputs) before any kernel runs.
//
// Thread safety: a Program is an immutable, shared handle; run() and run_flat() may be
// called concurrently (all per-run state is local to the call). Buffer mutations (a graph
// that updates a buffer, e.g. BatchNorm running stats in training mode) are committed at the
// end of each run under a lock, so each run sees a consistent snapshot.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ember/program.h"
#include "ember/pt2.h"
#include "ember/tensor.h"
#include "ember/value.h"

namespace ember {

struct LoadOptions {
  // Model inside the archive; empty: "model", or the only model there is.
  std::string model_name;
  bool verify_crc = false;
  // false: resolve and plan the graph without preparing kernels (no engine is created, so
  // a program compiled for another target can still be planned, e.g. to package it).
  bool prepare_kernels = true;
};

// One step of a program's execution plan: a graph node, and the tensor values that are
// dead once it has run (the plan frees them there).
struct PlanStep {
  std::string node;    // graph node name
  std::string target;  // "torch.ops.aten.relu.default", "torch.ops.ember.execute_engine.default", ...
  std::vector<std::string> release;
};

// One dimension of a user input/output: a constant, or a symbol with its range.
struct DimInfo {
  bool is_symbolic = false;
  int64_t value = 0;        // constant size, when !is_symbolic
  std::string symbol;       // "s77"; for compound expressions the expression text ("2*s77")
  bool is_expression = false;  // symbolic but not a plain symbol (not checked against a range)
  int64_t min = 0;          // range from range_constraints (inclusive); max may be INT64_MAX
  int64_t max = INT64_MAX;
  std::optional<int64_t> hint;  // example value recorded at export time
};

struct TensorInfo {
  std::string name;          // forward argument name for inputs when known, else the graph value name
  std::string graph_name;    // the graph value name ("x", "add", ...)
  bool is_tensor = true;     // false: a non-tensor leaf (int, float, bool, None, string)
  DType dtype = DType::kFloat32;
  std::vector<DimInfo> sizes;
  // "float32 [s77 in 1..64, 32]"
  std::string to_string() const;
  // Concrete sizes when no dim is symbolic.
  std::optional<Shape> static_shape() const;
};

// The user inputs and outputs of a program, read from its IR alone (no op is resolved, so
// this works for programs the interpreter cannot run). Input names are the forward
// argument names when the root call signature records them.
struct ProgramIo {
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
};
ProgramIo describe_io(const ir::ExportedProgram& program);
// Access paths of the output pytree's leaves in flatten order: "logits", "aux[0]",
// "output[1].first"; "output" for a single tensor.
std::vector<std::string> output_leaf_paths(const ir::ExportedProgram& program);
// One dimension: a constant, or a symbol with its range from range_constraints.
DimInfo describe_dim(const ir::SymInt& size, const ir::ExportedProgram& program);

// The archive a packaged model (.so made by `ember package`) embeds, read in place: its
// tensors are views of the loaded library's data sections and keep it loaded. Errors as
// for Program::load of a .so (kIo, kNotAModel, kVersionMismatch, kCorrupt).
Pt2Archive read_package(const std::string& path);
// read_package for a shared library, read_pt2 for anything else (.pt2 / .ep).
Pt2Archive read_archive_or_package(const std::string& path);

class Program {
 public:
  // Reads a .pt2 / .ep archive, a standalone .engine or a packaged model .so, and prepares
  // `options.model_name` (archives with several models).
  static Program load(const std::string& path, const LoadOptions& options = {});
  // Prepares a model of an archive already in memory (the archive's tensors stay shared).
  static Program from_archive(const Pt2Archive& archive, const LoadOptions& options = {});
  // Prepares one model; `source` names it in messages ("model.pt2:model").
  static Program from_model(const Pt2Model& model, const std::string& source,
                            const LoadOptions& options = {});
  // A packaged model: `package` is the descriptor a model .so exports (include/ember/
  // package_abi.h); `keepalive` keeps its data (the loaded library) alive. load() calls
  // this for .so paths.
  static Program from_package(const void* package, std::shared_ptr<const void> keepalive, const std::string& source);

  // Flattened user inputs / outputs in pytree order.
  const std::vector<TensorInfo>& inputs() const;
  const std::vector<TensorInfo>& outputs() const;
  // The root call signature's specs: in_spec = (args tuple, kwargs dict).
  const ir::TreeSpec& in_spec() const;
  const ir::TreeSpec& out_spec() const;
  const ir::ExportedProgram& exported_program() const;
  const std::string& source() const;
  size_t num_nodes() const;
  // The execution plan: every graph node in the order run() executes them.
  std::vector<PlanStep> plan() const;

  // `args`: the positional arguments as a tuple; when the program takes keyword
  // arguments, the pair (args tuple, kwargs dict) like PyTorch's in_spec. Returns the
  // output pytree built from out_spec.
  Value run(const Value& args) const;
  // Flattened user inputs -> flattened user outputs (non-tensor outputs as 0-d tensors).
  std::vector<Tensor> run_flat(const std::vector<Tensor>& user_inputs) const;
  // The checks run() does first; throws kInvalidArgument / kShapeMismatch / kDTypeMismatch.
  void validate_inputs(const std::vector<Value>& flat_inputs) const;

  struct Impl;

 private:
  explicit Program(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace ember
