// A standalone engine file (model.engine) as a program: one ember::execute_engine node
// between the engine's input and output bindings, so `Program::load` runs .engine files
// through the same validation, execution and reporting as .pt2 / .ep.
#include <set>

#include "engine_node.h"
#include "ember/engine.h"
#include "ember/runtime.h"

namespace ember {
namespace {

std::string leaf_json() { return R"({"type": null, "context": null, "children_spec": []})"; }

std::string tuple_json(size_t leaves) {
  std::string children;
  for (size_t i = 0; i < leaves; ++i) children += (i ? ", " : "") + leaf_json();
  return R"({"type": "builtins.tuple", "context": "null", "children_spec": [)" + children + "]}";
}

// Outputs as a dict keyed by binding name, so results are named like the engine's bindings.
std::string dict_json(const std::vector<std::string>& keys) {
  ir::Json context = ir::Json::array();
  for (const auto& k : keys) context.push_back(k);
  std::string children;
  for (size_t i = 0; i < keys.size(); ++i) children += (i ? ", " : "") + leaf_json();
  return R"({"type": "builtins.dict", "context": )" + ir::Json(context.dump()).dump() + R"(, "children_spec": [)" +
         children + "]}";
}

ir::TensorMeta binding_meta(const EngineIoBinding& b, const std::string& name, ir::ExportedProgram& ep) {
  ir::TensorMeta meta;
  meta.dtype = b.dtype;
  bool dynamic = false;
  for (size_t d = 0; d < b.shape.size(); ++d) {
    const EngineDim& dim = b.shape[d];
    ir::SymInt s;
    if (dim.is_static()) {
      s.value = dim.min;
    } else {
      dynamic = true;
      std::string sym = dim.symbol.empty() ? cat(name, "_dim", d) : dim.symbol;
      s.is_expr = true;
      s.expr.expr_str = sym;
      ir::RangeConstraint& r = ep.range_constraints[sym];
      r.min_val = dim.min;
      if (dim.max != kDimUnbounded) r.max_val = dim.max;
    }
    meta.sizes.push_back(s);
  }
  // Row-major strides; symbolic when any dim is (the interpreter then checks sizes only).
  Shape concrete;
  for (const auto& s : meta.sizes) concrete.push_back(s.is_expr ? 1 : s.value);
  Shape strides = contiguous_strides(concrete);
  for (size_t d = 0; d < strides.size(); ++d) {
    ir::SymInt st;
    if (dynamic) {
      st.is_expr = true;
      st.expr.expr_str = "stride";
    } else {
      st.value = strides[d];
    }
    meta.strides.push_back(st);
  }
  return meta;
}

}  // namespace

Pt2Model model_from_engine(std::shared_ptr<Storage> bytes, const std::string& source) {
  EngineView view = EngineView::parse(bytes, source, EngineVerification::kMinimal);
  const EngineMeta& meta = view.meta();
  Pt2Model model;
  model.name = "model";
  ir::ExportedProgram& ep = model.program;
  ep.schema_version = {8, 17};
  ir::Graph& g = ep.graph_module.graph;

  const std::string engine_value = "c_ember_engine_0";
  ir::InputSpec engine_spec;
  engine_spec.kind = ir::InputKind::kTensorConstant;
  engine_spec.arg = ir::Argument::tensor(engine_value);
  engine_spec.target = "ember_engine_0";
  ep.graph_module.signature.input_specs.push_back(engine_spec);
  g.inputs.push_back(ir::Argument::tensor(engine_value));
  ir::TensorMeta engine_meta;
  engine_meta.dtype = DType::kUInt8;
  engine_meta.sizes = {ir::SymInt{false, static_cast<int64_t>(bytes->nbytes()), {}}};
  engine_meta.strides = {ir::SymInt{false, 1, {}}};
  g.tensor_values[engine_value] = engine_meta;

  std::set<std::string> used = {engine_value};
  auto unique = [&](std::string name) {
    if (name.empty()) name = "value";
    std::string n = name;
    for (int k = 1; used.count(n); ++k) n = cat(name, "_", k);
    used.insert(n);
    return n;
  };
  std::vector<std::string> in_names, out_names, out_keys;
  for (const EngineIoBinding& b : meta.inputs) {
    std::string n = unique(b.name);
    in_names.push_back(n);
    ir::InputSpec spec;
    spec.kind = ir::InputKind::kUserInput;
    spec.arg = ir::Argument::tensor(n);
    ep.graph_module.signature.input_specs.push_back(spec);
    g.inputs.push_back(ir::Argument::tensor(n));
    g.tensor_values[n] = binding_meta(b, n, ep);
  }
  for (const EngineIoBinding& b : meta.outputs) {
    std::string n = unique(b.name);
    out_names.push_back(n);
    out_keys.push_back(b.name.empty() ? n : b.name);
    ir::OutputSpec spec;
    spec.kind = ir::OutputKind::kUserOutput;
    spec.arg = ir::Argument::tensor(n);
    ep.graph_module.signature.output_specs.push_back(spec);
    g.outputs.push_back(ir::Argument::tensor(n));
    g.tensor_values[n] = binding_meta(b, n, ep);
  }

  ir::Node node;
  node.target = kEngineNodeTarget;
  node.name = "execute_engine";
  ir::NamedArgument inputs{"inputs", ir::Argument::tensors(in_names), 1, {}};
  ir::NamedArgument engine{"engine", ir::Argument::tensor(engine_value), 1, {}};
  node.inputs = {inputs, engine};
  node.outputs = {ir::Argument::tensors(out_names)};
  g.nodes.push_back(node);

  ir::ModuleCallEntry root;
  ir::ModuleCallSignature sig;
  sig.in_spec = std::string("[1, ") + R"({"type": "builtins.tuple", "context": "null", "children_spec": [)" +
                tuple_json(in_names.size()) + R"(, {"type": "builtins.dict", "context": "[]", "children_spec": []}]})" +
                "]";
  sig.out_spec = std::string("[1, ") + dict_json(out_keys) + "]";
  sig.forward_arg_names = in_names;
  root.signature = sig;
  ep.graph_module.module_call_graph.push_back(root);

  Pt2TensorEntry entry;
  entry.fqn = "ember_engine_0";
  entry.path_name = "tensor_0";
  entry.meta = engine_meta;
  entry.tensor = Tensor(bytes, DType::kUInt8, {static_cast<int64_t>(bytes->nbytes())}, {1}, 0);
  model.constants.push_back(entry);
  ir::validate(ep, source);
  return model;
}

}  // namespace ember
