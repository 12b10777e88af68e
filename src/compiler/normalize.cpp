// Normalization: every node of a pre-dispatch (or core) ATen graph is mapped to what it
// becomes inside an engine — a canonical FusedOp (conv2d, linear, matmul, eltwise, binary,
// pooling, softmax, layer_norm), a BatchNorm to fold, an identity, a constant to fold, a
// "reference" op (any op of the registry, run by the backend with the reference kernel) —
// and the backend is asked whether it supports it. Nodes that cannot go into an engine get
// the reason why.
#include <algorithm>
#include <cmath>
#include <limits>

#include "compiler/compiler_internal.h"
#include "ember/error.h"

namespace ember::compiler {

int GraphAnalysis::id_of(const std::string& name) const {
  auto it = value_ids.find(name);
  return it == value_ids.end() ? -1 : it->second;
}

namespace {

// "torch.ops.aten.relu_.default" -> {"aten", "relu_", "default"}.
struct TargetParts {
  std::string ns, name, overload;
};
TargetParts split_target(const std::string& target) {
  std::string t = target;
  if (t.rfind("torch.ops.", 0) == 0) t = t.substr(10);
  TargetParts p;
  size_t a = t.find('.');
  if (a == std::string::npos) return {t, "", ""};
  p.ns = t.substr(0, a);
  size_t b = t.find('.', a + 1);
  p.name = t.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  if (b != std::string::npos) p.overload = t.substr(b + 1);
  return p;
}

bool is_inplace_name(const std::string& name) {
  return name.size() > 1 && name.back() == '_' && name[name.size() - 2] != '_';
}

std::optional<double> scalar_of(const ir::Argument* a) {
  if (!a) return std::nullopt;
  switch (a->kind) {
    case ir::ArgKind::kInt: return static_cast<double>(a->i);
    case ir::ArgKind::kFloat: return a->f;
    case ir::ArgKind::kBool: return a->b ? 1.0 : 0.0;
    case ir::ArgKind::kSymInt:
      if (!a->sym.is_name) return static_cast<double>(a->sym.i);
      return std::nullopt;
    default: return std::nullopt;
  }
}

std::optional<std::vector<int64_t>> ints_of(const ir::Argument* a) {
  if (!a) return std::nullopt;
  switch (a->kind) {
    case ir::ArgKind::kInts: return a->ints;
    case ir::ArgKind::kInt: return std::vector<int64_t>{a->i};
    case ir::ArgKind::kSymInts: {
      std::vector<int64_t> v;
      for (const auto& s : a->syms) {
        if (s.is_name) return std::nullopt;
        v.push_back(s.i);
      }
      return v;
    }
    default: return std::nullopt;
  }
}

// Name of a tensor argument (as_tensor or a present optional tensor); empty otherwise.
std::string tensor_name(const ir::Argument* a) {
  if (!a) return {};
  if (a->kind == ir::ArgKind::kTensor) return a->name;
  if (a->kind == ir::ArgKind::kOptionalTensor && a->opt_tensor.present) return a->opt_tensor.name;
  return {};
}

bool has_symbolic_arg(const ir::Node& node) {
  for (const auto& in : node.inputs) {
    const ir::Argument& a = in.arg;
    if ((a.kind == ir::ArgKind::kSymInt || a.kind == ir::ArgKind::kSymBool || a.kind == ir::ArgKind::kSymFloat) &&
        a.sym.is_name)
      return true;
    if (a.kind == ir::ArgKind::kSymInts || a.kind == ir::ArgKind::kSymBools || a.kind == ir::ArgKind::kSymFloats)
      for (const auto& s : a.syms)
        if (s.is_name) return true;
  }
  return false;
}

std::vector<int64_t> pair_of(const std::vector<int64_t>& v, int64_t dflt) {
  if (v.empty()) return {dflt, dflt};
  if (v.size() == 1) return {v[0], v[0]};
  return {v[0], v[1]};
}

class Analyzer {
 public:
  Analyzer(GraphAnalysis& g, const AnalyzeOptions& options) : g_(g), options_(options) {
    supports_ = options.supports ? options.supports : SupportFn(cpu::supports);
  }

  void run();

 private:
  const ir::Graph& graph() const { return g_.model->program.graph_module.graph; }
  void build_values();
  void build_ranges();
  void build_constants();
  void classify(NodeInfo& info, const ir::Node& node);
  bool try_fold_constant(NodeInfo& info, const ir::Node& node);
  bool ask(NodeInfo& info, cpu::FusedOp op);
  bool reference(NodeInfo& info, const ir::Node& node, const std::string& target);
  bool used_after(int id, size_t node_index) const;
  int rank_of(int id) const { return id < 0 ? -1 : static_cast<int>(g_.values[id].dims.size()); }

  GraphAnalysis& g_;
  const AnalyzeOptions& options_;
  SupportFn supports_;
};

void Analyzer::build_values() {
  for (const auto& [name, meta] : graph().tensor_values) {
    cpu::EngineValue v;
    v.name = name;
    v.dtype = meta.dtype;
    for (const ir::SymInt& s : meta.sizes) {
      if (s.is_expr) {
        v.dims.push_back(-1);
        std::string sym = ir::symbol_name(s.expr);
        v.symbols.push_back(sym.empty() ? s.expr.expr_str : sym);
      } else {
        v.dims.push_back(s.value);
        v.symbols.emplace_back();
      }
    }
    g_.value_ids[name] = static_cast<int>(g_.values.size());
    g_.values.push_back(std::move(v));
  }
  g_.producer.assign(g_.values.size(), -1);
  g_.users.assign(g_.values.size(), {});
  auto note_outputs = [&](const ir::Argument& a) {
    if (a.kind == ir::ArgKind::kTensor) {
      if (int id = g_.id_of(a.name); id >= 0) g_.graph_outputs.insert(id);
    } else if (a.kind == ir::ArgKind::kTensors) {
      for (const auto& n : a.names)
        if (int id = g_.id_of(n); id >= 0) g_.graph_outputs.insert(id);
    }
  };
  for (const auto& out : graph().outputs) note_outputs(out);
}

void Analyzer::build_ranges() {
  for (const auto& [sym, rc] : g_.model->program.range_constraints) {
    cpu::SymbolRange r;
    r.min = rc.min_val.value_or(0);
    r.max = rc.max_val.value_or(INT64_MAX);
    g_.ranges[sym] = r;
  }
  if (options_.shapes.empty()) return;
  // User inputs by graph value name and by forward argument name.
  const auto& specs = g_.model->program.graph_module.signature.input_specs;
  const ir::ModuleCallSignature* root = g_.model->program.root_call_signature();
  std::map<std::string, std::string> by_name;  // name -> graph value name
  std::vector<std::string> listed;
  size_t user_index = 0;
  for (const auto& spec : specs) {
    if (spec.kind != ir::InputKind::kUserInput) continue;
    if (spec.arg.kind == ir::ArgKind::kTensor) {
      by_name[spec.arg.name] = spec.arg.name;
      listed.push_back(spec.arg.name);
      if (root && root->forward_arg_names && user_index < root->forward_arg_names->size()) {
        const std::string& fwd = (*root->forward_arg_names)[user_index];
        if (!by_name.count(fwd)) {
          by_name[fwd] = spec.arg.name;
          if (fwd != spec.arg.name) listed.push_back(fwd);
        }
      }
    }
    ++user_index;
  }
  std::map<std::string, cpu::SymbolRange> narrowed;
  for (const auto& [name, range] : options_.shapes) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      std::string all;
      for (const auto& n : listed) all += (all.empty() ? "" : ", ") + n;
      fail(ErrorCode::kInvalidArgument, g_.source, ": --shapes names input '", name,
           "', which the program does not have (inputs: ", all, ")");
    }
    const cpu::EngineValue& v = g_.values.at(g_.id_of(it->second));
    const Shape& lo = range.first;
    const Shape& hi = range.second;
    EMBER_CHECK(lo.size() == v.dims.size() && hi.size() == v.dims.size(), ErrorCode::kInvalidArgument, g_.source,
                ": --shapes for input '", name, "': expected ", v.dims.size(), " dims, found ", lo.size(), " and ",
                hi.size());
    for (size_t d = 0; d < v.dims.size(); ++d) {
      EMBER_CHECK(lo[d] <= hi[d], ErrorCode::kInvalidArgument, g_.source, ": --shapes for input '", name, "' dim ", d,
                  ": min ", lo[d], " is larger than max ", hi[d]);
      if (v.dims[d] >= 0) {
        EMBER_CHECK(lo[d] <= v.dims[d] && v.dims[d] <= hi[d], ErrorCode::kInvalidArgument, g_.source,
                    ": --shapes for input '", name, "' dim ", d, ": the program fixes this dim to ", v.dims[d],
                    ", outside the requested range ", lo[d], "..", hi[d]);
        continue;
      }
      const std::string& sym = v.symbols[d];
      auto rit = g_.ranges.find(sym);
      cpu::SymbolRange base = rit == g_.ranges.end() ? cpu::SymbolRange{0, INT64_MAX} : rit->second;
      EMBER_CHECK(lo[d] >= base.min && hi[d] <= base.max, ErrorCode::kInvalidArgument, g_.source,
                  ": --shapes for input '", name, "' dim ", d, " (", sym, "): requested ", lo[d], "..", hi[d],
                  " is outside the program's range ", base.min, "..",
                  base.max == INT64_MAX ? std::string("inf") : std::to_string(base.max));
      cpu::SymbolRange& r = narrowed.try_emplace(sym, base).first->second;
      r.min = std::max(r.min, lo[d]);
      r.max = std::min(r.max, hi[d]);
      EMBER_CHECK(r.min <= r.max, ErrorCode::kInvalidArgument, g_.source, ": --shapes: the ranges given for symbol ",
                  sym, " do not overlap");
    }
  }
  for (const auto& [sym, r] : narrowed) g_.ranges[sym] = r;
}

void Analyzer::build_constants() {
  const auto& sig = g_.model->program.graph_module.signature;
  std::set<std::string> mutated;
  for (const auto& o : sig.output_specs)
    if (o.kind == ir::OutputKind::kBufferMutation || o.kind == ir::OutputKind::kParameterMutation) mutated.insert(o.target);
  for (const auto& spec : sig.input_specs) {
    if (spec.arg.kind != ir::ArgKind::kTensor) continue;
    const Pt2TensorEntry* e = nullptr;
    switch (spec.kind) {
      case ir::InputKind::kParameter: e = g_.model->find_weight(spec.target); break;
      case ir::InputKind::kBuffer:
        e = g_.model->find_weight(spec.target);
        if (!e) e = g_.model->find_constant(spec.target);
        break;
      case ir::InputKind::kTensorConstant: e = g_.model->find_constant(spec.target); break;
      default: break;
    }
    if (!e || !e->tensor.defined() || mutated.count(spec.target)) continue;
    int id = g_.id_of(spec.arg.name);
    if (id < 0) continue;
    g_.constants[id] = e->tensor;
    g_.archive_constants.insert(id);
  }
}

bool Analyzer::used_after(int id, size_t node_index) const {
  if (g_.graph_outputs.count(id)) return true;
  for (size_t u : g_.users[id])
    if (u > node_index) return true;
  return false;
}

bool Analyzer::ask(NodeInfo& info, cpu::FusedOp op) {
  std::string why;
  op.name = info.name;
  if (supports_(op, g_.values, &why)) {
    info.op = std::move(op);
    info.supported = true;
    info.reason.clear();
    return true;
  }
  if (info.reason.empty()) info.reason = why.empty() ? cat("the CPU backend does not support ", op.op) : why;
  return false;
}

// A "reference" FusedOp: the backend runs the registry kernel of `target`.
bool Analyzer::reference(NodeInfo& info, const ir::Node& node, const std::string& target) {
  if (!ops::Registry::global().find(target)) {
    if (info.reason.empty()) info.reason = cat("no kernel for ", target);
    return false;
  }
  cpu::FusedOp op = make_reference_op(g_, node, target, info.tensor_outputs);
  info.kind = NodeKind::kFused;
  return ask(info, std::move(op));
}

bool Analyzer::try_fold_constant(NodeInfo& info, const ir::Node& node) {
  for (int id : info.tensor_inputs)
    if (!g_.is_constant(id)) return false;
  const std::string& t = node.target;
  for (const char* bad : {"rand", "bernoulli", "normal", "uniform", "empty", "dropout", "_assert"})
    if (t.find(bad) != std::string::npos) return false;
  const ops::OpDef* def = ops::Registry::global().find(t);
  if (!def || def->inplace || info.tensor_outputs.empty()) return false;
  for (const auto& o : node.outputs)
    if (o.kind != ir::ArgKind::kTensor && o.kind != ir::ArgKind::kTensors) return false;
  size_t in_bytes = 0;
  std::map<std::string, Tensor> inputs;
  for (int id : info.tensor_inputs) {
    inputs[g_.values[id].name] = g_.constants.at(id);
    in_bytes += g_.constants.at(id).nbytes();
  }
  std::map<std::string, Tensor> out;
  try {
    out = evaluate_node(node, inputs, g_.source);
  } catch (const Error&) {
    return false;  // left to the engine / interpreter
  }
  size_t out_bytes = 0;
  for (const auto& [name, tensor] : out) out_bytes += tensor.nbytes();
  if (out_bytes > std::max<size_t>(size_t{1} << 20, 2 * in_bytes)) return false;  // would bloat the engine
  if (out.size() != info.tensor_outputs.size()) return false;
  for (const auto& [name, tensor] : out) g_.constants[g_.id_of(name)] = tensor;
  info.kind = NodeKind::kConstant;
  info.supported = true;
  return true;
}

void Analyzer::classify(NodeInfo& info, const ir::Node& node) {
  const std::string& target = node.target;
  if (matches_op_list(target, options_.torch_executed_ops)) {
    info.reason = "listed in torch_executed_ops";
    return;
  }
  if (node.outputs.empty()) {
    info.reason = "produces no tensor";
    return;
  }
  for (const auto& o : node.outputs) {
    if (o.kind != ir::ArgKind::kTensor && o.kind != ir::ArgKind::kTensors) {
      info.reason = cat("has a ", ir::arg_kind_key(o.kind), " output (engines produce tensors only)");
      return;
    }
  }
  if (target.rfind("torch.ops.", 0) != 0) {
    info.reason = cat(target, " is not an ATen op");
    return;
  }
  if (has_symbolic_arg(node)) {
    info.reason = "takes a symbolic int argument computed outside the engine";
    return;
  }
  if (try_fold_constant(info, node)) return;

  TargetParts parts = split_target(target);
  std::string fname = parts.name;  // functional name
  if (is_inplace_name(parts.name)) {
    const std::string self = tensor_name(node.input("self"));
    int id = g_.id_of(self);
    if (id < 0 || g_.producer[id] < 0 || g_.is_constant(id) || used_after(id, info.index)) {
      info.reason = cat("in-place op writes '", self, "', which is an input, a constant or read again later");
      return;
    }
    fname = parts.name.substr(0, parts.name.size() - 1);
  }
  const std::string key = parts.ns == "aten" ? fname + "." + parts.overload : std::string();
  const std::string functional_target = cat("torch.ops.", parts.ns, ".", fname, ".", parts.overload);
  auto id_of = [&](const char* arg) { return g_.id_of(tensor_name(node.input(arg))); };
  auto is_runtime = [&](int id) { return id >= 0 && !g_.is_constant(id); };
  auto out0 = info.tensor_outputs.empty() ? -1 : info.tensor_outputs[0];
  auto unused = [&](int id) { return id < 0 || (g_.users[id].empty() && !g_.graph_outputs.count(id)); };

  cpu::FusedOp op;
  // ---- convolution
  if (key == "conv2d.default" || key == "convolution.default") {
    int x = id_of("input"), w = id_of("weight"), b = id_of("bias");
    const ir::Argument* pad = node.input("padding");
    const ir::Argument* tr = node.input("transposed");
    bool ok = is_runtime(x) && g_.is_constant(w) && (b < 0 || g_.is_constant(b)) && rank_of(w) == 4 &&
              rank_of(x) == 4 && !(tr && tr->kind == ir::ArgKind::kBool && tr->b) &&
              (!pad || pad->kind != ir::ArgKind::kString);
    if (ok) {
      op.op = "conv2d";
      op.inputs = {x};
      op.outputs = {out0};
      op.constants = {g_.constants.at(w)};
      if (b >= 0) op.constants.push_back(g_.constants.at(b));
      op.attrs["stride"] = pair_of(ints_of(node.input("stride")).value_or(std::vector<int64_t>{1}), 1);
      op.attrs["padding"] = pair_of(ints_of(node.input("padding")).value_or(std::vector<int64_t>{0}), 0);
      op.attrs["dilation"] = pair_of(ints_of(node.input("dilation")).value_or(std::vector<int64_t>{1}), 1);
      op.attrs["groups"] = static_cast<int64_t>(scalar_of(node.input("groups")).value_or(1));
      info.kind = NodeKind::kFused;
      if (ask(info, op)) return;
    }
    reference(info, node, functional_target);
    return;
  }
  // ---- linear / matmul family
  auto linear_op = [&](int x, const Tensor& weight_t, int bias) {
    // weight_t: [in, out] (transposed weight) -> linear wants [out, in].
    op.op = "linear";
    op.inputs = {x};
    op.outputs = {out0};
    Tensor w = Tensor::empty({weight_t.size(1), weight_t.size(0)}, weight_t.dtype());
    w.copy_from(weight_t.as_strided({weight_t.size(1), weight_t.size(0)}, {weight_t.stride(1), weight_t.stride(0)},
                                    weight_t.storage_offset()));
    op.constants = {w};
    if (bias >= 0) op.constants.push_back(g_.constants.at(bias));
    info.kind = NodeKind::kFused;
    return ask(info, op);
  };
  if (key == "linear.default") {
    int x = id_of("input"), w = id_of("weight"), b = id_of("bias");
    if (is_runtime(x) && g_.is_constant(w) && rank_of(w) == 2 && (b < 0 || g_.is_constant(b))) {
      op.op = "linear";
      op.inputs = {x};
      op.outputs = {out0};
      op.constants = {g_.constants.at(w)};
      if (b >= 0) op.constants.push_back(g_.constants.at(b));
      info.kind = NodeKind::kFused;
      if (ask(info, op)) return;
    }
    reference(info, node, functional_target);
    return;
  }
  if (key == "addmm.default") {
    int bias = id_of("self"), a = id_of("mat1"), m = id_of("mat2");
    bool unit = scalar_of(node.input("beta")).value_or(1) == 1 && scalar_of(node.input("alpha")).value_or(1) == 1;
    if (unit && is_runtime(a) && g_.is_constant(m) && rank_of(m) == 2 && g_.is_constant(bias) && rank_of(bias) == 1) {
      if (linear_op(a, g_.constants.at(m), bias)) return;
    }
    reference(info, node, functional_target);
    return;
  }
  if (key == "mm.default" || key == "matmul.default" || key == "bmm.default") {
    int a = id_of("self"), m = id_of(key == "matmul.default" ? "other" : "mat2");
    if (key != "bmm.default" && is_runtime(a) && g_.is_constant(m) && rank_of(m) == 2) {
      if (linear_op(a, g_.constants.at(m), -1)) return;
    } else if (is_runtime(a) && is_runtime(m)) {
      op.op = "matmul";
      op.inputs = {a, m};
      op.outputs = {out0};
      info.kind = NodeKind::kFused;
      if (ask(info, op)) return;
    }
    reference(info, node, functional_target);
    return;
  }
  // ---- BatchNorm (eval)
  if (key == "batch_norm.default" || key == "_native_batch_norm_legit_no_training.default") {
    const ir::Argument* training = node.input("training");
    bool eval = !(training && training->kind == ir::ArgKind::kBool && training->b);
    int x = id_of("input"), gm = id_of("weight"), bt = id_of("bias"), mean = id_of("running_mean"),
        var = id_of("running_var");
    bool extra_unused = true;
    for (size_t k = 1; k < info.tensor_outputs.size(); ++k) extra_unused = extra_unused && unused(info.tensor_outputs[k]);
    bool foldable = eval && extra_unused && is_runtime(x) && g_.is_constant(mean) && g_.is_constant(var) &&
                    (gm < 0 || g_.is_constant(gm)) && (bt < 0 || g_.is_constant(bt));
    bool ref_ok = reference(info, node, functional_target);
    if (foldable) {
      info.kind = NodeKind::kBatchNorm;
      info.bn_input = x;
      info.bn_params = {gm >= 0 ? g_.constants.at(gm) : Tensor(), bt >= 0 ? g_.constants.at(bt) : Tensor(),
                        g_.constants.at(mean), g_.constants.at(var)};
      info.bn_eps = scalar_of(node.input("eps")).value_or(1e-5);
      // Foldable into the conv that produces its input (the conv's only user).
      int p = g_.producer[x];
      bool after_conv = p >= 0 && g_.nodes[p].kind == NodeKind::kFused && g_.nodes[p].op.op == "conv2d" &&
                        g_.users[x].size() == 1 && !g_.graph_outputs.count(x);
      if (after_conv || ref_ok) {
        info.supported = true;
        info.reason.clear();
      }
    }
    return;
  }
  // ---- identities
  if (key == "dropout.default" || key == "contiguous.default" || key == "clone.default" || key == "alias.default" ||
      key == "detach.default" || key == "lift_fresh_copy.default" || key == "feature_dropout.default") {
    const ir::Argument* train = node.input("train");
    int x = id_of(key == "dropout.default" || key == "feature_dropout.default" ? "input" : "self");
    if (!(train && train->kind == ir::ArgKind::kBool && train->b) && x >= 0 && info.tensor_outputs.size() == 1) {
      info.kind = NodeKind::kIdentity;
      info.op = cpu::FusedOp{};
      info.op.op = "identity";
      info.op.inputs = {x};
      info.op.outputs = {out0};
      info.supported = true;
      return;
    }
    reference(info, node, functional_target);
    return;
  }
  // ---- element-wise activations
  static const std::map<std::string, std::string> kEltwise = {
      {"relu.default", "relu"},       {"silu.default", "silu"},
      {"sigmoid.default", "sigmoid"}, {"tanh.default", "tanh"},
      {"hardswish.default", "hardswish"}, {"hardsigmoid.default", "hardsigmoid"}};
  if (auto it = kEltwise.find(key); it != kEltwise.end() || key == "gelu.default" || key == "hardtanh.default" ||
                                    key == "clamp.default" || key == "relu6.default") {
    int x = id_of("self");
    if (is_runtime(x)) {
      op.op = "eltwise";
      op.inputs = {x};
      op.outputs = {out0};
      float alpha = 0.f, beta = 0.f;
      std::string alg;
      bool ok = true;
      if (it != kEltwise.end()) {
        alg = it->second;
      } else if (key == "gelu.default") {
        const ir::Argument* ap = node.input("approximate");
        alg = (ap && ap->kind == ir::ArgKind::kString && ap->s == "tanh") ? "gelu_tanh" : "gelu_erf";
      } else if (key == "relu6.default") {
        alg = "clip", alpha = 0.f, beta = 6.f;
      } else if (key == "hardtanh.default") {
        alg = "clip";
        alpha = static_cast<float>(scalar_of(node.input("min_val")).value_or(-1.0));
        beta = static_cast<float>(scalar_of(node.input("max_val")).value_or(1.0));
      } else {  // clamp(self, min?, max?)
        alg = "clip";
        const ir::Argument* mn = node.input("min");
        const ir::Argument* mx = node.input("max");
        auto lo = scalar_of(mn), hi = scalar_of(mx);
        ok = (!mn || mn->kind == ir::ArgKind::kNone || lo) && (!mx || mx->kind == ir::ArgKind::kNone || hi);
        alpha = lo ? static_cast<float>(*lo) : -std::numeric_limits<float>::max();
        beta = hi ? static_cast<float>(*hi) : std::numeric_limits<float>::max();
      }
      if (ok) {
        op.attrs = {{"alg", alg}, {"alpha", alpha}, {"beta", beta}};
        info.kind = NodeKind::kFused;
        if (ask(info, op)) return;
      }
    }
    reference(info, node, functional_target);
    return;
  }
  // ---- binary
  if (key == "add.Tensor" || key == "sub.Tensor" || key == "mul.Tensor" || key == "div.Tensor" ||
      key == "add.Scalar" || key == "sub.Scalar" || key == "mul.Scalar" || key == "div.Scalar") {
    std::string alg = fname;
    int a = id_of("self"), b = id_of("other");
    double alpha = scalar_of(node.input("alpha")).value_or(1.0);
    std::optional<double> other_scalar = scalar_of(node.input("other"));
    if (is_runtime(a) && is_runtime(b) && alpha == 1.0) {
      op.op = "binary";
      op.inputs = {a, b};
      op.outputs = {out0};
      op.attrs = {{"alg", alg}};
      info.kind = NodeKind::kFused;
      if (ask(info, op)) return;
    } else if (is_runtime(a) && other_scalar && dtype_is_floating(g_.values[a].dtype)) {
      // x op c as the eltwise "linear" (alpha * x + beta).
      double c = *other_scalar * (alg == "add" || alg == "sub" ? alpha : 1.0);
      float lin_a = 1.f, lin_b = 0.f;
      if (alg == "add") lin_b = static_cast<float>(c);
      if (alg == "sub") lin_b = static_cast<float>(-c);
      if (alg == "mul") lin_a = static_cast<float>(c);
      if (alg == "div") lin_a = static_cast<float>(1.0 / c);
      op.op = "eltwise";
      op.inputs = {a};
      op.outputs = {out0};
      op.attrs = {{"alg", "linear"}, {"alpha", lin_a}, {"beta", lin_b}};
      info.kind = NodeKind::kFused;
      if (c != 0.0 || alg != "div") {
        if (ask(info, op)) return;
      }
    }
    reference(info, node, functional_target);
    return;
  }
  // ---- pooling
  if (key == "max_pool2d.default" || key == "max_pool2d_with_indices.default") {
    int x = id_of("self");
    bool indices_unused = info.tensor_outputs.size() < 2 || unused(info.tensor_outputs[1]);
    auto kernel = ints_of(node.input("kernel_size"));
    if (is_runtime(x) && rank_of(x) == 4 && indices_unused && kernel) {
      op.op = "max_pool2d";
      op.inputs = {x};
      op.outputs = {out0};
      std::vector<int64_t> k = pair_of(*kernel, 1);
      std::vector<int64_t> s = ints_of(node.input("stride")).value_or(std::vector<int64_t>{});
      op.attrs["kernel"] = k;
      op.attrs["stride"] = s.empty() ? k : pair_of(s, 1);
      op.attrs["padding"] = pair_of(ints_of(node.input("padding")).value_or(std::vector<int64_t>{0}), 0);
      op.attrs["dilation"] = pair_of(ints_of(node.input("dilation")).value_or(std::vector<int64_t>{1}), 1);
      op.attrs["ceil_mode"] = scalar_of(node.input("ceil_mode")).value_or(0) != 0;
      info.kind = NodeKind::kFused;
      if (ask(info, op)) return;
    }
    reference(info, node, functional_target);
    return;
  }
  if (key == "avg_pool2d.default") {
    int x = id_of("self");
    auto kernel = ints_of(node.input("kernel_size"));
    const ir::Argument* div = node.input("divisor_override");
    if (is_runtime(x) && rank_of(x) == 4 && kernel && (!div || div->kind == ir::ArgKind::kNone)) {
      op.op = "avg_pool2d";
      op.inputs = {x};
      op.outputs = {out0};
      std::vector<int64_t> k = pair_of(*kernel, 1);
      std::vector<int64_t> s = ints_of(node.input("stride")).value_or(std::vector<int64_t>{});
      op.attrs["kernel"] = k;
      op.attrs["stride"] = s.empty() ? k : pair_of(s, 1);
      op.attrs["padding"] = pair_of(ints_of(node.input("padding")).value_or(std::vector<int64_t>{0}), 0);
      op.attrs["ceil_mode"] = scalar_of(node.input("ceil_mode")).value_or(0) != 0;
      op.attrs["count_include_pad"] = scalar_of(node.input("count_include_pad")).value_or(1) != 0;
      info.kind = NodeKind::kFused;
      if (ask(info, op)) return;
    }
    reference(info, node, functional_target);
    return;
  }
  if (key == "adaptive_avg_pool2d.default" || key == "mean.dim") {
    int x = id_of("self");
    bool ok = is_runtime(x) && rank_of(x) == 4;
    std::vector<int64_t> out_size{1, 1};
    if (ok && key == "mean.dim") {
      auto dims = ints_of(node.input("dim"));
      const ir::Argument* dt = node.input("dtype");
      bool keep = scalar_of(node.input("keepdim")).value_or(0) != 0;
      std::set<int64_t> ds;
      if (dims)
        for (int64_t d : *dims) ds.insert(d < 0 ? d + 4 : d);
      ok = keep && ds == std::set<int64_t>{2, 3} && (!dt || dt->kind == ir::ArgKind::kNone);
    } else if (ok) {
      auto os = ints_of(node.input("output_size"));
      ok = os.has_value();
      if (ok) out_size = pair_of(*os, 1);
    }
    if (ok) {
      op.op = "adaptive_avg_pool2d";
      op.inputs = {x};
      op.outputs = {out0};
      op.attrs["output_size"] = out_size;
      info.kind = NodeKind::kFused;
      if (ask(info, op)) return;
    }
    reference(info, node, functional_target);
    return;
  }
  // ---- softmax
  if (key == "softmax.int" || key == "_softmax.default" || key == "log_softmax.int" || key == "_log_softmax.default") {
    int x = id_of("self");
    const ir::Argument* dt = node.input("dtype");
    const ir::Argument* h2f = node.input("half_to_float");
    bool ok = is_runtime(x) && (!dt || dt->kind == ir::ArgKind::kNone) &&
              !(h2f && h2f->kind == ir::ArgKind::kBool && h2f->b);
    if (ok) {
      int64_t dim = static_cast<int64_t>(scalar_of(node.input("dim")).value_or(-1));
      int r = rank_of(x);
      if (dim < 0) dim += r;
      op.op = fname.find("log") != std::string::npos ? "log_softmax" : "softmax";
      op.inputs = {x};
      op.outputs = {out0};
      op.attrs["dim"] = dim;
      info.kind = NodeKind::kFused;
      if (ask(info, op)) return;
    }
    reference(info, node, functional_target);
    return;
  }
  // ---- layer_norm
  if (key == "layer_norm.default" || key == "native_layer_norm.default") {
    int x = id_of("input"), w = id_of("weight"), b = id_of("bias");
    bool extra_unused = true;
    for (size_t k = 1; k < info.tensor_outputs.size(); ++k) extra_unused = extra_unused && unused(info.tensor_outputs[k]);
    auto shape = ints_of(node.input("normalized_shape"));
    if (is_runtime(x) && extra_unused && shape && (w < 0 || g_.is_constant(w)) && (b < 0 || g_.is_constant(b))) {
      op.op = "layer_norm";
      op.inputs = {x};
      op.outputs = {out0};
      if (w >= 0) op.constants.push_back(g_.constants.at(w));
      if (b >= 0) op.constants.push_back(g_.constants.at(b));
      op.attrs["normalized_shape"] = *shape;
      op.attrs["eps"] = scalar_of(node.input("eps")).value_or(1e-5);
      op.attrs["has_weight"] = w >= 0;
      op.attrs["has_bias"] = b >= 0;
      info.kind = NodeKind::kFused;
      if (ask(info, op)) return;
    }
    reference(info, node, functional_target);
    return;
  }
  // ---- everything else the registry knows
  reference(info, node, functional_target);
}

void Analyzer::run() {
  build_values();
  build_ranges();
  build_constants();
  const ir::Graph& gr = graph();
  g_.nodes.resize(gr.nodes.size());
  // Producers and users first (in-place safety and BN folding look ahead).
  for (size_t i = 0; i < gr.nodes.size(); ++i) {
    const ir::Node& node = gr.nodes[i];
    NodeInfo& info = g_.nodes[i];
    info.index = i;
    info.name = node.name.value_or(cat("node", i));
    info.target = node.target;
    auto note_input = [&](const std::string& name) {
      int id = g_.id_of(name);
      if (id < 0) return;
      if (std::find(info.tensor_inputs.begin(), info.tensor_inputs.end(), id) == info.tensor_inputs.end()) {
        info.tensor_inputs.push_back(id);
        g_.users[id].push_back(i);
      }
    };
    for (const auto& in : node.inputs) {
      const ir::Argument& a = in.arg;
      switch (a.kind) {
        case ir::ArgKind::kTensor: note_input(a.name); break;
        case ir::ArgKind::kOptionalTensor:
          if (a.opt_tensor.present) note_input(a.opt_tensor.name);
          break;
        case ir::ArgKind::kTensors:
          for (const auto& n : a.names) note_input(n);
          break;
        case ir::ArgKind::kOptionalTensors:
          for (const auto& t : a.opt_tensors)
            if (t.present) note_input(t.name);
          break;
        default: break;
      }
    }
    for (const auto& o : node.outputs) {
      std::vector<std::string> names;
      if (o.kind == ir::ArgKind::kTensor) names = {o.name};
      if (o.kind == ir::ArgKind::kTensors) names = o.names;
      for (const auto& n : names) {
        int id = g_.id_of(n);
        if (id < 0) continue;
        info.tensor_outputs.push_back(id);
        g_.producer[id] = static_cast<int>(i);
      }
    }
  }
  for (size_t i = 0; i < gr.nodes.size(); ++i) classify(g_.nodes[i], gr.nodes[i]);
}

}  // namespace

cpu::FusedOp make_reference_op(const GraphAnalysis& g, const ir::Node& node, const std::string& target,
                               const std::vector<int>& outputs) {
  cpu::FusedOp op;
  op.op = "reference";
  op.name = node.name.value_or("");
  op.attrs["target"] = target;
  nlohmann::json args = nlohmann::json::array();
  auto rename = [&](const std::string& name) -> std::string {
    int id = g.id_of(name);
    if (g.is_constant(id)) {
      op.constants.push_back(g.constants.at(id));
      return cat("$", op.constants.size() - 1);
    }
    if (std::find(op.inputs.begin(), op.inputs.end(), id) == op.inputs.end()) op.inputs.push_back(id);
    return cat("%", id);
  };
  for (const ir::NamedArgument& in : node.inputs) {
    ir::Argument a = in.arg;
    switch (a.kind) {
      case ir::ArgKind::kTensor: a.name = rename(a.name); break;
      case ir::ArgKind::kOptionalTensor:
        if (a.opt_tensor.present) a.opt_tensor.name = rename(a.opt_tensor.name);
        break;
      case ir::ArgKind::kTensors:
        for (auto& n : a.names) n = rename(n);
        break;
      case ir::ArgKind::kOptionalTensors:
        for (auto& t : a.opt_tensors)
          if (t.present) t.name = rename(t.name);
        break;
      default: break;
    }
    args.push_back({{"name", in.name}, {"arg", nlohmann::json::parse(ir::argument_to_json(a).dump())}});
  }
  op.attrs["args"] = std::move(args);
  op.outputs = outputs;
  return op;
}

bool matches_op_list(const std::string& target, const std::vector<std::string>& ops) {
  std::string t = target.rfind("torch.ops.", 0) == 0 ? target.substr(10) : target;
  for (std::string o : ops) {
    if (o.rfind("torch.ops.", 0) == 0) o = o.substr(10);
    if (o.empty()) continue;
    if (t == o) return true;
    // "aten.softmax" matches every overload of aten.softmax.
    if (std::count(o.begin(), o.end(), '.') == 1 && t.rfind(o + ".", 0) == 0 &&
        t.find('.', o.size() + 1) == std::string::npos)
      return true;
  }
  return false;
}

GraphAnalysis analyze(const Pt2Model& model, const std::string& source, const AnalyzeOptions& options) {
  GraphAnalysis g;
  g.model = &model;
  g.source = source;
  Analyzer(g, options).run();
  return g;
}

std::vector<std::vector<size_t>> node_edges(const GraphAnalysis& g) {
  std::vector<std::vector<size_t>> edges(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int id : g.nodes[i].tensor_outputs)
      for (size_t u : g.users[id])
        if (std::find(edges[i].begin(), edges[i].end(), u) == edges[i].end()) edges[i].push_back(u);
  }
  // Symbolic values (sym_size -> view(..., [s0, 32])) order nodes too.
  const ir::Graph& gr = g.model->program.graph_module.graph;
  std::map<std::string, size_t> sym_producer;
  for (size_t i = 0; i < gr.nodes.size(); ++i) {
    for (const auto& in : gr.nodes[i].inputs) {
      std::vector<const ir::SymArg*> syms;
      if (in.arg.kind == ir::ArgKind::kSymInt || in.arg.kind == ir::ArgKind::kSymBool ||
          in.arg.kind == ir::ArgKind::kSymFloat)
        syms.push_back(&in.arg.sym);
      for (const auto& s : in.arg.syms) syms.push_back(&s);
      for (const ir::SymArg* s : syms) {
        if (!s->is_name) continue;
        auto it = sym_producer.find(s->name);
        if (it != sym_producer.end() &&
            std::find(edges[it->second].begin(), edges[it->second].end(), i) == edges[it->second].end())
          edges[it->second].push_back(i);
      }
    }
    for (const auto& o : gr.nodes[i].outputs)
      if ((o.kind == ir::ArgKind::kSymInt || o.kind == ir::ArgKind::kSymBool || o.kind == ir::ArgKind::kSymFloat) &&
          o.sym.is_name)
        sym_producer[o.sym.name] = i;
  }
  return edges;
}

}  // namespace ember::compiler
