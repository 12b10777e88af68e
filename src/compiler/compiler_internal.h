// Internal stages of the compiler (include/ember/compiler.h), exposed for the tests.
//
//   analyze()    (normalize.cpp)  graph -> GraphAnalysis: every tensor value with its meta,
//                                 the constants, and per node its canonical form and
//                                 whether the backend supports it
//   partition()  (partition.cpp)  supported nodes -> acyclic partitions >= min_block_size
//   lower()      (passes.cpp)     one partition -> cpu::EngineGraph (constant folding, BN
//                                 folding, identity removal, fusion, DCE)
//   rewrite_model() (ep_writer.cpp) engines -> the .ep form of the model
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "ember/compiler.h"
#include "ember/program.h"
#include "ember/pt2.h"
#include "ops/registry.h"

namespace ember::compiler {

// What a node becomes inside an engine.
enum class NodeKind {
  kFallback,   // stays outside (unsupported, forced, or not a tensor op)
  kConstant,   // every tensor input is a constant: evaluated at compile time
  kIdentity,   // dropout(eval), contiguous, clone, alias, detach: output = input
  kBatchNorm,  // eval BatchNorm: folded into the preceding conv, else a reference op
  kFused,      // a canonical FusedOp (conv2d, linear, eltwise, ...) or a reference op
};

struct NodeInfo {
  size_t index = 0;
  std::string name;
  std::string target;
  NodeKind kind = NodeKind::kFallback;
  bool supported = false;
  std::string reason;                 // why not supported (fallback reason)
  cpu::FusedOp op;                    // kFused / kBatchNorm (reference form for BN): ids are global value ids
  std::vector<int> tensor_inputs;     // global ids of runtime-or-constant tensors read (deduplicated)
  std::vector<int> tensor_outputs;    // global ids of tensors written (unused outputs included)
  // kBatchNorm: value ids of input and constants (weight, bias, mean, var may be -1), eps.
  int bn_input = -1;
  std::vector<Tensor> bn_params;      // gamma?, beta?, mean, var (undefined when absent)
  double bn_eps = 1e-5;
};

struct GraphAnalysis {
  const Pt2Model* model = nullptr;
  std::string source;                      // for messages: "model.pt2:model"
  std::vector<cpu::EngineValue> values;    // every tensor value of the graph
  std::map<std::string, int> value_ids;    // name -> id
  std::vector<int> producer;               // value id -> node index, -1 for graph inputs
  std::vector<std::vector<size_t>> users;  // value id -> node indices reading it
  std::set<int> graph_outputs;             // value ids read by graph outputs / output specs
  std::map<int, Tensor> constants;         // value id -> tensor (weights, buffers, constants, folded)
  std::set<int> archive_constants;         // value ids bound from the archive (graph inputs)
  std::vector<NodeInfo> nodes;
  std::map<std::string, cpu::SymbolRange> ranges;  // shape symbol -> range (narrowed by options.shapes)

  int id_of(const std::string& name) const;
  bool is_constant(int id) const { return constants.count(id) != 0; }
};

using SupportFn = std::function<bool(const cpu::FusedOp&, const std::vector<cpu::EngineValue>&, std::string*)>;

struct AnalyzeOptions {
  std::vector<std::string> torch_executed_ops;
  std::map<std::string, std::pair<Shape, Shape>> shapes;
  SupportFn supports;  // empty: cpu::supports
};

GraphAnalysis analyze(const Pt2Model& model, const std::string& source, const AnalyzeOptions& options);

// The "reference" FusedOp of a node (global value ids; constants inline as "$k").
cpu::FusedOp make_reference_op(const GraphAnalysis& g, const ir::Node& node, const std::string& target,
                               const std::vector<int>& outputs);

// Whether `target` ("torch.ops.aten.softmax.int") matches an entry of torch_executed_ops
// ("aten.softmax.int", "torch.ops.aten.softmax.int", "aten.softmax").
bool matches_op_list(const std::string& target, const std::vector<std::string>& ops);

// ---------------------------------------------------------------- partitioning

struct Partition {
  std::vector<size_t> nodes;  // node indices, in graph order
};

struct PartitionResult {
  std::vector<Partition> partitions;               // in order of their first node
  std::map<size_t, std::string> fallback_reasons;  // node index -> reason, for every node outside
};

// `supported[i]`: node i may go into an engine. `edges[i]`: nodes that read an output of i.
// `reasons[i]`: why an unsupported node is unsupported. Blocks smaller than min_block_size
// dissolve into fallback nodes. single_block: every supported node must end in one block
// (standalone), ignoring min_block_size.
PartitionResult partition_graph(const std::vector<bool>& supported, const std::vector<std::vector<size_t>>& edges,
                                 const std::vector<std::string>& reasons, int min_block_size);

// Takes out of each partition the constant-folded nodes whose values are read outside it
// (they stay in the graph, evaluated by the interpreter) and dissolves partitions that
// become smaller than min_block_size.
void prune_constant_outputs(const GraphAnalysis& g, PartitionResult& result, int min_block_size);

// Graph edges of an analysis (producer node -> consumer nodes).
std::vector<std::vector<size_t>> node_edges(const GraphAnalysis& g);

// ---------------------------------------------------------------- lowering

struct LoweredEngine {
  cpu::EngineGraph graph;
  std::vector<std::string> input_names;   // graph value names, engine input order
  std::vector<std::string> output_names;  // graph value names, engine output order
  std::set<int> absorbed_constants;       // archive constants read inside the engine
  std::vector<std::string> fused_descriptions;
};

// Builds the engine graph of a partition. `outputs`: the values the engine returns, in order
// (global ids). `fixed_inputs`: values bound to the first engine inputs, in order, even if
// unused (standalone: the user inputs); the other inputs follow in order of first use.
LoweredEngine lower(const GraphAnalysis& g, const Partition& part, const std::string& engine_name,
                    const std::vector<int>& outputs, const std::vector<int>& fixed_inputs = {});

// Values produced inside `part` and read outside it (by other nodes or the graph outputs),
// in production order.
std::vector<int> values_needed_outside(const GraphAnalysis& g, const Partition& part);

// Evaluates one node with the reference kernels; `inputs` maps value names to tensors.
// Returns the node's tensor outputs in order (value name -> tensor).
std::map<std::string, Tensor> evaluate_node(const ir::Node& node, const std::map<std::string, Tensor>& inputs,
                                            const std::string& source);

// Folds an eval BatchNorm into conv constants (weight [O, ...], bias [O] or undefined).
// Returns the new {weight, bias}.
std::pair<Tensor, Tensor> fold_batch_norm(const Tensor& weight, const Tensor& bias, const Tensor& gamma,
                                          const Tensor& beta, const Tensor& mean, const Tensor& var, double eps);

// ---------------------------------------------------------------- .ep rewrite

struct BuiltEngine {
  LoweredEngine lowered;
  const Partition* partition = nullptr;
  std::shared_ptr<Storage> bytes;
};

// Returns the .ep form of `model`: partition nodes replaced by execute_engine nodes,
// engine constants added, absorbed weights removed.
Pt2Model rewrite_model(const GraphAnalysis& g, const std::vector<BuiltEngine>& engines);

// (sample_inputs.cpp) The model's sample inputs (a torch.save archive) rebuilt with the same
// entries in the same order, the pickle byte for byte (same shapes, dtypes, strides) and every
// tensor storage zeroed and deflated: a few KB instead of the inputs' size. Returns the blob
// unchanged when it holds no storage or is not a zip archive Ember can read.
Blob compact_sample_inputs(const Blob& sample_inputs, const std::string& source);

}  // namespace ember::compiler
