// The .ep rewrite: each engine replaces the nodes it absorbed with ONE node
//
//   {"target": "torch.ops.ember.execute_engine.default",
//    "inputs": [{"name": "inputs", "arg": {"as_tensors": [...]}, "kind": 1},
//               {"name": "engine", "arg": {"as_tensor": {"name": "c_ember_engine_0"}}, "kind": 1}],
//    "outputs": [{"as_tensors": [...]}], "name": "execute_engine"}
//
// (the form PyTorch itself serializes for such a custom op: a multi-output node lists its
// outputs directly, no getitem nodes). The engine bytes become a 1-D uint8 tensor constant
// (data/constants/, input spec "tensor_constant", placed after parameters, buffers and other
// constants and before the user inputs, as PyTorch orders them). Parameters, buffers and
// constants that only absorbed nodes read are removed from the signature, the graph inputs,
// tensor_values and the weights/constants configs. Pytree specs, range constraints and the
// module call graph are unchanged. The sample inputs keep their structure (shapes, dtypes)
// but their values become zeros (compact_sample_inputs, sample_inputs.cpp).
#include <algorithm>
#include <queue>

#include "compiler/compiler_internal.h"
#include "ember/error.h"

namespace ember::compiler {
namespace {

// A name not in `taken`: `base`, else base_1, base_2, ...
std::string fresh_name(const std::string& base, const std::set<std::string>& taken, int start = 1) {
  if (!taken.count(base)) return base;
  for (int k = start;; ++k) {
    std::string n = cat(base, "_", k);
    if (!taken.count(n)) return n;
  }
}

ir::NamedArgument named(const std::string& name, ir::Argument arg) {
  ir::NamedArgument a;
  a.name = name;
  a.arg = std::move(arg);
  a.kind = 1;  // POSITIONAL
  return a;
}

}  // namespace

Pt2Model rewrite_model(const GraphAnalysis& g, const std::vector<BuiltEngine>& engines) {
  Pt2Model out = *g.model;
  ir::ExportedProgram& ep = out.program;
  ir::Graph& graph = ep.graph_module.graph;
  const ir::Graph& old_graph = g.model->program.graph_module.graph;
  const size_t n = old_graph.nodes.size();

  // ---- which item (engine or original node) each node belongs to
  std::vector<int> item_of(n);
  for (size_t i = 0; i < n; ++i) item_of[i] = static_cast<int>(i);
  for (size_t e = 0; e < engines.size(); ++e)
    for (size_t m : engines[e].partition->nodes) item_of[m] = static_cast<int>(n + e);
  const size_t items = n + engines.size();
  std::vector<size_t> key(items, SIZE_MAX);  // ordering key: first original node index
  std::vector<bool> present(items, false);
  for (size_t i = 0; i < n; ++i) {
    key[item_of[i]] = std::min(key[item_of[i]], i);
    present[item_of[i]] = true;
  }
  std::vector<std::set<size_t>> succ(items);
  std::vector<int> indeg(items, 0);
  auto edges = node_edges(g);
  for (size_t i = 0; i < n; ++i)
    for (size_t v : edges[i]) {
      size_t a = item_of[i], b = item_of[v];
      if (a != b && succ[a].insert(b).second) ++indeg[b];
    }
  // Kahn's algorithm, smallest original position first (keeps the graph order where it can).
  using Entry = std::pair<size_t, size_t>;  // key, item
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> ready;
  for (size_t it = 0; it < items; ++it)
    if (present[it] && indeg[it] == 0) ready.push({key[it], it});
  std::vector<size_t> order;
  while (!ready.empty()) {
    size_t it = ready.top().second;
    ready.pop();
    order.push_back(it);
    for (size_t s : succ[it])
      if (--indeg[s] == 0) ready.push({key[s], s});
  }
  size_t expected = 0;
  for (size_t it = 0; it < items; ++it) expected += present[it];
  EMBER_CHECK(order.size() == expected, ErrorCode::kInternal, g.source,
              ": the partitioned graph has a cycle (partitioning bug)");

  // ---- names
  std::set<std::string> taken;
  for (const auto& [name, meta] : old_graph.tensor_values) taken.insert(name);
  for (const auto& node : old_graph.nodes)
    if (node.name) taken.insert(*node.name);
  std::set<std::string> taken_fqns, taken_paths;
  for (const auto& c : out.constants) taken_fqns.insert(c.fqn), taken_paths.insert(c.path_name);
  for (const auto& w : out.weights) taken_fqns.insert(w.fqn);

  // ---- new nodes and engine constants
  std::vector<ir::Node> nodes;
  std::vector<ir::InputSpec> new_specs;
  std::vector<ir::Argument> new_inputs;
  int path_counter = 0;
  for (size_t it : order) {
    if (it < n) {
      nodes.push_back(old_graph.nodes[it]);
      continue;
    }
    const BuiltEngine& be = engines[it - n];
    const std::string& ename = be.lowered.graph.name;
    const std::string fqn = fresh_name("ember_" + ename, taken_fqns);
    taken_fqns.insert(fqn);
    const std::string arg_name = fresh_name("c_" + fqn, taken);
    taken.insert(arg_name);
    std::string path;
    do path = cat("tensor_", path_counter++);
    while (taken_paths.count(path));
    taken_paths.insert(path);

    const int64_t nbytes = static_cast<int64_t>(be.bytes->nbytes());
    ir::TensorMeta meta;
    meta.dtype = DType::kUInt8;
    meta.sizes = {ir::SymInt{false, nbytes, {}}};
    meta.strides = {ir::SymInt{false, 1, {}}};
    meta.storage_offset = ir::SymInt{false, 0, {}};
    meta.requires_grad = false;
    meta.device = Device{DeviceType::kCPU, -1};
    graph.tensor_values[arg_name] = meta;

    Pt2TensorEntry entry;
    entry.fqn = fqn;
    entry.path_name = path;
    entry.is_param = false;
    entry.use_pickle = false;
    entry.meta = meta;
    entry.tensor = Tensor(be.bytes, DType::kUInt8, {nbytes}, {1});
    out.constants.push_back(std::move(entry));

    ir::InputSpec spec;
    spec.kind = ir::InputKind::kTensorConstant;
    spec.arg = ir::Argument::tensor(arg_name);
    spec.target = fqn;
    new_specs.push_back(spec);
    new_inputs.push_back(ir::Argument::tensor(arg_name));

    ir::Node node;
    node.target = kExecuteEngineTarget;
    node.inputs.push_back(named("inputs", ir::Argument::tensors(be.lowered.input_names)));
    node.inputs.push_back(named("engine", ir::Argument::tensor(arg_name)));
    node.outputs.push_back(ir::Argument::tensors(be.lowered.output_names));
    const std::string node_name = fresh_name("execute_engine", taken);
    taken.insert(node_name);
    node.name = node_name;
    // Metadata: the module stack of the first absorbed node that has one.
    for (size_t m : be.partition->nodes) {
      bool found = false;
      for (const auto& [k, v] : old_graph.nodes[m].metadata)
        if (k == "nn_module_stack") node.metadata.push_back({k, v}), found = true;
      if (found) break;
    }
    nodes.push_back(std::move(node));
  }
  graph.nodes = std::move(nodes);

  // ---- signature: engine constants before the first user input
  auto& specs = ep.graph_module.signature.input_specs;
  EMBER_CHECK(graph.inputs.size() == specs.size(), ErrorCode::kUnsupported, g.source, ": the graph has ",
              graph.inputs.size(), " inputs but the signature ", specs.size(), " input specs");
  size_t pos = specs.size();
  for (size_t k = 0; k < specs.size(); ++k)
    if (specs[k].kind == ir::InputKind::kUserInput) {
      pos = k;
      break;
    }
  specs.insert(specs.begin() + static_cast<std::ptrdiff_t>(pos), new_specs.begin(), new_specs.end());
  graph.inputs.insert(graph.inputs.begin() + static_cast<std::ptrdiff_t>(pos), new_inputs.begin(), new_inputs.end());

  // ---- drop weights, buffers and constants nothing reads any more
  std::set<std::string> read;
  auto note = [&](const ir::Argument& a) {
    switch (a.kind) {
      case ir::ArgKind::kTensor: read.insert(a.name); break;
      case ir::ArgKind::kTensors:
        for (const auto& x : a.names) read.insert(x);
        break;
      case ir::ArgKind::kOptionalTensor:
        if (a.opt_tensor.present) read.insert(a.opt_tensor.name);
        break;
      case ir::ArgKind::kOptionalTensors:
        for (const auto& t : a.opt_tensors)
          if (t.present) read.insert(t.name);
        break;
      default: break;
    }
  };
  for (const auto& node : graph.nodes)
    for (const auto& in : node.inputs) note(in.arg);
  for (const auto& o : graph.outputs) note(o);
  std::set<std::string> kept_targets;  // fqns still named by the signature
  for (const auto& o : ep.graph_module.signature.output_specs) kept_targets.insert(o.target);
  std::set<std::string> removed_targets;
  for (size_t k = specs.size(); k-- > 0;) {
    const ir::InputSpec& s = specs[k];
    bool weightlike = s.kind == ir::InputKind::kParameter || s.kind == ir::InputKind::kBuffer ||
                      s.kind == ir::InputKind::kTensorConstant;
    if (!weightlike || s.arg.kind != ir::ArgKind::kTensor || read.count(s.arg.name) ||
        kept_targets.count(s.target))
      continue;
    removed_targets.insert(s.target);
    specs.erase(specs.begin() + static_cast<std::ptrdiff_t>(k));
    graph.inputs.erase(graph.inputs.begin() + static_cast<std::ptrdiff_t>(k));
  }
  for (const auto& s : specs) removed_targets.erase(s.target);  // another spec still names it
  auto drop = [&](std::vector<Pt2TensorEntry>& v) {
    v.erase(std::remove_if(v.begin(), v.end(), [&](const Pt2TensorEntry& e) { return removed_targets.count(e.fqn); }),
            v.end());
  };
  drop(out.weights);
  drop(out.constants);

  // ---- tensor_values: only values that still exist
  std::set<std::string> defined;
  auto define = [&](const ir::Argument& a) {
    if (a.kind == ir::ArgKind::kTensor) defined.insert(a.name);
    if (a.kind == ir::ArgKind::kTensors) defined.insert(a.names.begin(), a.names.end());
  };
  for (const auto& a : graph.inputs) define(a);
  for (const auto& node : graph.nodes)
    for (const auto& o : node.outputs) define(o);
  for (auto it = graph.tensor_values.begin(); it != graph.tensor_values.end();)
    it = defined.count(it->first) ? std::next(it) : graph.tensor_values.erase(it);

  // ---- sample inputs: PyTorch's loader needs the entry; the values are not needed
  if (out.sample_inputs) out.sample_inputs = compact_sample_inputs(*out.sample_inputs, g.source);
  return out;
}

}  // namespace ember::compiler
