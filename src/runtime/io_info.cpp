// Describing a program's user inputs and outputs from its IR alone (no op resolution), for
// Program::inputs()/outputs() and `ember inspect`.
#include <limits>

#include "ember/runtime.h"

namespace ember {

DimInfo describe_dim(const ir::SymInt& s, const ir::ExportedProgram& ep) {
  DimInfo info;
  if (!s.is_expr) {
    info.value = s.value;
    return info;
  }
  info.is_symbolic = true;
  if (s.expr.hint && s.expr.hint->kind == ir::SymExprHint::Kind::kInt) info.hint = s.expr.hint->i;
  std::string sym = ir::symbol_name(s.expr);
  if (sym.empty()) {
    info.is_expression = true;
    info.symbol = s.expr.expr_str;
    return info;
  }
  info.symbol = sym;
  // Sizes are at least 0 (PyTorch specializes 0 and 1 unless a range says otherwise).
  info.min = 0;
  info.max = std::numeric_limits<int64_t>::max();
  if (auto it = ep.range_constraints.find(sym); it != ep.range_constraints.end()) {
    if (it->second.min_val) info.min = *it->second.min_val;
    if (it->second.max_val) info.max = *it->second.max_val;
  }
  return info;
}

namespace {

TensorInfo describe_value(const ir::Argument& arg, const ir::ExportedProgram& ep) {
  TensorInfo info;
  const ir::Graph& graph = ep.graph_module.graph;
  if (arg.kind == ir::ArgKind::kTensor) {
    info.graph_name = info.name = arg.name;
    if (auto meta = graph.tensor_values.find(arg.name); meta != graph.tensor_values.end()) {
      info.dtype = meta->second.dtype;
      for (const ir::SymInt& s : meta->second.sizes) info.sizes.push_back(describe_dim(s, ep));
    }
  } else {
    info.is_tensor = false;
    info.graph_name = info.name = arg.kind == ir::ArgKind::kSymInt || arg.kind == ir::ArgKind::kSymBool ||
                                          arg.kind == ir::ArgKind::kSymFloat
                                      ? arg.sym.name
                                      : arg.name;
  }
  return info;
}

// Appends the Python-style access path of every leaf below `spec` ("logits", "aux[0]",
// "[1].first") to `out`, in tree_flatten order.
void leaf_paths(const ir::TreeSpec& spec, const ir::ExportedProgram& ep, const std::string& prefix,
                std::vector<std::string>& out) {
  using Kind = ir::TreeSpec::Kind;
  if (spec.kind == Kind::kLeaf) {
    out.push_back(prefix);
    return;
  }
  for (size_t i = 0; i < spec.children.size(); ++i) {
    std::string step = cat("[", i, "]");
    if ((spec.kind == Kind::kDict || spec.kind == Kind::kOrderedDict) && spec.context.is_array() &&
        i < spec.context.size()) {
      const ir::Json& key = spec.context[i];
      std::string k = key.is_string() ? key.get<std::string>() : key.dump();
      step = prefix.empty() ? k : "." + k;
    } else if (spec.kind == Kind::kNamedTuple && spec.context.is_string()) {
      auto it = ep.graph_module.treespec_namedtuple_fields.find(spec.context.get<std::string>());
      if (it != ep.graph_module.treespec_namedtuple_fields.end() && i < it->second.field_names.size())
        step = (prefix.empty() ? "" : ".") + it->second.field_names[i];
    }
    leaf_paths(spec.children[i], ep, prefix + step, out);
  }
}

}  // namespace

std::vector<std::string> output_leaf_paths(const ir::ExportedProgram& ep) {
  std::vector<std::string> paths;
  const ir::ModuleCallSignature* root = ep.root_call_signature();
  if (!root) return paths;
  ir::TreeSpec spec = ir::parse_treespec(root->out_spec, "out_spec");
  leaf_paths(spec, ep, "", paths);
  for (std::string& p : paths) {
    if (p.empty()) p = "output";
    else if (p[0] == '[') p = "output" + p;
  }
  return paths;
}

ProgramIo describe_io(const ir::ExportedProgram& ep) {
  ProgramIo io;
  const ir::Graph& graph = ep.graph_module.graph;
  const ir::GraphSignature& sig = ep.graph_module.signature;
  const ir::ModuleCallSignature* root = ep.root_call_signature();
  size_t user_count = 0;
  for (const auto& s : sig.input_specs) user_count += s.kind == ir::InputKind::kUserInput;
  const std::vector<std::string>* names =
      root && root->forward_arg_names && root->forward_arg_names->size() == user_count ? &*root->forward_arg_names
                                                                                         : nullptr;
  for (size_t i = 0; i < sig.input_specs.size() && i < graph.inputs.size(); ++i) {
    if (sig.input_specs[i].kind != ir::InputKind::kUserInput) continue;
    TensorInfo info = describe_value(graph.inputs[i], ep);
    if (names) info.name = (*names)[io.inputs.size()];
    if (info.name.empty()) info.name = cat("input", io.inputs.size());
    io.inputs.push_back(std::move(info));
  }
  for (size_t i = 0; i < sig.output_specs.size() && i < graph.outputs.size(); ++i) {
    auto kind = sig.output_specs[i].kind;
    if (kind != ir::OutputKind::kUserOutput && kind != ir::OutputKind::kLossOutput) continue;
    io.outputs.push_back(describe_value(graph.outputs[i], ep));
    if (graph.outputs[i].kind == ir::ArgKind::kNone) io.outputs.back().name = io.outputs.back().graph_name = "None";
  }
  // Name outputs by their place in the output pytree when the spec matches the graph.
  std::vector<std::string> paths = output_leaf_paths(ep);
  if (paths.size() == io.outputs.size())
    for (size_t i = 0; i < paths.size(); ++i) io.outputs[i].name = paths[i];
  return io;
}

}  // namespace ember
