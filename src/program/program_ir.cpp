// IR helpers: names of kinds, Argument comparison, lookups, and the structural checks of
// validate().
#include <cctype>
#include <cmath>
#include <string>
#include <unordered_map>
#include <vector>

#include "ember/error.h"
#include "ember/program.h"

namespace ember::ir {

const char* arg_kind_key(ArgKind k) {
  switch (k) {
    case ArgKind::kNone: return "as_none";
    case ArgKind::kTensor: return "as_tensor";
    case ArgKind::kTensors: return "as_tensors";
    case ArgKind::kInt: return "as_int";
    case ArgKind::kInts: return "as_ints";
    case ArgKind::kFloat: return "as_float";
    case ArgKind::kFloats: return "as_floats";
    case ArgKind::kString: return "as_string";
    case ArgKind::kStrings: return "as_strings";
    case ArgKind::kSymInt: return "as_sym_int";
    case ArgKind::kSymInts: return "as_sym_ints";
    case ArgKind::kScalarType: return "as_scalar_type";
    case ArgKind::kMemoryFormat: return "as_memory_format";
    case ArgKind::kLayout: return "as_layout";
    case ArgKind::kDevice: return "as_device";
    case ArgKind::kBool: return "as_bool";
    case ArgKind::kBools: return "as_bools";
    case ArgKind::kSymBool: return "as_sym_bool";
    case ArgKind::kSymBools: return "as_sym_bools";
    case ArgKind::kGraph: return "as_graph";
    case ArgKind::kOptionalTensors: return "as_optional_tensors";
    case ArgKind::kCustomObj: return "as_custom_obj";
    case ArgKind::kOperator: return "as_operator";
    case ArgKind::kSymFloat: return "as_sym_float";
    case ArgKind::kSymFloats: return "as_sym_floats";
    case ArgKind::kOptionalTensor: return "as_optional_tensor";
    case ArgKind::kComplex: return "as_complex";
    case ArgKind::kIntLists: return "as_int_lists";
    case ArgKind::kStringToArgument: return "as_string_to_argument";
    case ArgKind::kNestedTensors: return "as_nested_tensors";
  }
  return "as_unknown";
}

const char* input_kind_key(InputKind k) {
  switch (k) {
    case InputKind::kUserInput: return "user_input";
    case InputKind::kParameter: return "parameter";
    case InputKind::kBuffer: return "buffer";
    case InputKind::kTensorConstant: return "tensor_constant";
    case InputKind::kCustomObj: return "custom_obj";
    case InputKind::kToken: return "token";
    case InputKind::kConstantInput: return "constant_input";
  }
  return "unknown";
}

const char* output_kind_key(OutputKind k) {
  switch (k) {
    case OutputKind::kUserOutput: return "user_output";
    case OutputKind::kLossOutput: return "loss_output";
    case OutputKind::kBufferMutation: return "buffer_mutation";
    case OutputKind::kGradientToParameter: return "gradient_to_parameter";
    case OutputKind::kGradientToUserInput: return "gradient_to_user_input";
    case OutputKind::kUserInputMutation: return "user_input_mutation";
    case OutputKind::kToken: return "token";
    case OutputKind::kParameterMutation: return "parameter_mutation";
  }
  return "unknown";
}

Argument::Argument() = default;
Argument::~Argument() = default;
Argument::Argument(const Argument&) = default;
Argument::Argument(Argument&&) noexcept = default;
Argument& Argument::operator=(const Argument&) = default;
Argument& Argument::operator=(Argument&&) noexcept = default;

Argument Argument::tensor(std::string name) {
  Argument a;
  a.kind = ArgKind::kTensor;
  a.name = std::move(name);
  return a;
}

Argument Argument::tensors(std::vector<std::string> names) {
  Argument a;
  a.kind = ArgKind::kTensors;
  a.names = std::move(names);
  return a;
}

namespace {

// Floats compare equal when both are NaN, so that a program holding NaN equals its re-read.
bool same_float(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

bool same_floats(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!same_float(a[i], b[i])) return false;
  return true;
}

bool same_sym(const SymArg& a, const SymArg& b, ArgKind k) {
  if (a.is_name != b.is_name) return false;
  if (a.is_name) return a.name == b.name;
  switch (k) {
    case ArgKind::kSymInt:
    case ArgKind::kSymInts: return a.i == b.i;
    case ArgKind::kSymFloat:
    case ArgKind::kSymFloats: return same_float(a.f, b.f);
    default: return a.b == b.b;
  }
}

}  // namespace

bool Argument::operator==(const Argument& o) const {
  if (kind != o.kind) return false;
  switch (kind) {
    case ArgKind::kNone: return true;
    case ArgKind::kTensor: return name == o.name && unknown == o.unknown;
    case ArgKind::kTensors:
    case ArgKind::kStrings: return names == o.names;
    case ArgKind::kInt:
    case ArgKind::kScalarType:
    case ArgKind::kMemoryFormat:
    case ArgKind::kLayout: return i == o.i;
    case ArgKind::kInts: return ints == o.ints;
    case ArgKind::kFloat: return same_float(f, o.f);
    case ArgKind::kFloats: return same_floats(floats, o.floats);
    case ArgKind::kString:
    case ArgKind::kOperator: return s == o.s;
    case ArgKind::kSymInt:
    case ArgKind::kSymBool:
    case ArgKind::kSymFloat: return same_sym(sym, o.sym, kind);
    case ArgKind::kSymInts:
    case ArgKind::kSymBools:
    case ArgKind::kSymFloats: {
      if (syms.size() != o.syms.size()) return false;
      for (size_t k = 0; k < syms.size(); ++k)
        if (!same_sym(syms[k], o.syms[k], kind)) return false;
      return true;
    }
    case ArgKind::kDevice: return device == o.device && unknown == o.unknown;
    case ArgKind::kBool: return b == o.b;
    case ArgKind::kBools: return bools == o.bools;
    case ArgKind::kGraph: return graph == o.graph && unknown == o.unknown;
    case ArgKind::kOptionalTensors: return opt_tensors == o.opt_tensors;
    case ArgKind::kCustomObj: return name == o.name && class_fqn == o.class_fqn && unknown == o.unknown;
    case ArgKind::kOptionalTensor: return opt_tensor == o.opt_tensor;
    case ArgKind::kComplex: return same_float(f, o.f) && same_float(f_imag, o.f_imag) && unknown == o.unknown;
    case ArgKind::kIntLists: return int_lists == o.int_lists;
    case ArgKind::kStringToArgument: return string_to_arg == o.string_to_arg;
    case ArgKind::kNestedTensors: return nested_names == o.nested_names;
  }
  return false;
}

bool GraphArgument::operator==(const GraphArgument& o) const {
  if (name != o.name) return false;
  if (graph == o.graph) return true;
  if (!graph || !o.graph) return false;
  return *graph == *o.graph;
}

const Argument* Node::input(std::string_view arg_name) const {
  for (const auto& in : inputs)
    if (in.name == arg_name) return &in.arg;
  return nullptr;
}

const ModuleCallSignature* ExportedProgram::root_call_signature() const {
  for (const auto& e : graph_module.module_call_graph)
    if (e.fqn.empty()) return e.signature ? &*e.signature : nullptr;
  return nullptr;
}

std::optional<Shape> concrete_sizes(const TensorMeta& meta) {
  Shape shape;
  shape.reserve(meta.sizes.size());
  for (const auto& s : meta.sizes) {
    if (s.is_expr) return std::nullopt;
    shape.push_back(s.value);
  }
  return shape;
}

namespace {

bool is_identifier(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

}  // namespace

std::string symbol_name(const SymExpr& e) {
  std::string_view s = e.expr_str;
  if (is_identifier(s)) return std::string(s);
  constexpr std::string_view kPrefix = "Symbol('";
  if (s.substr(0, kPrefix.size()) != kPrefix || s.empty() || s.back() != ')') return "";
  std::string_view rest = s.substr(kPrefix.size());
  size_t quote = rest.find('\'');
  if (quote == std::string_view::npos) return "";
  std::string_view name = rest.substr(0, quote);
  std::string_view tail = rest.substr(quote + 1);
  // Only keyword assumptions may follow: ", positive=True, integer=True)".
  if (tail != ")" && (tail.substr(0, 2) != ", " || tail.find('(') != std::string_view::npos)) return "";
  return is_identifier(name) ? std::string(name) : "";
}

// ------------------------------------------------------------------ validate

namespace {

// Value names an argument refers to (tensors, named symbols, custom objects). Graph
// arguments are not descended into: a subgraph has its own scope.
void collect_names(const Argument& a, std::vector<std::string>& out) {
  switch (a.kind) {
    case ArgKind::kTensor:
    case ArgKind::kCustomObj: out.push_back(a.name); break;
    case ArgKind::kTensors: out.insert(out.end(), a.names.begin(), a.names.end()); break;
    case ArgKind::kSymInt:
    case ArgKind::kSymBool:
    case ArgKind::kSymFloat:
      if (a.sym.is_name) out.push_back(a.sym.name);
      break;
    case ArgKind::kSymInts:
    case ArgKind::kSymBools:
    case ArgKind::kSymFloats:
      for (const auto& s : a.syms)
        if (s.is_name) out.push_back(s.name);
      break;
    case ArgKind::kOptionalTensor:
      if (a.opt_tensor.present) out.push_back(a.opt_tensor.name);
      break;
    case ArgKind::kOptionalTensors:
      for (const auto& o : a.opt_tensors)
        if (o.present) out.push_back(o.name);
      break;
    case ArgKind::kNestedTensors:
      for (const auto& l : a.nested_names) out.insert(out.end(), l.begin(), l.end());
      break;
    case ArgKind::kStringToArgument:
      for (const auto& [k, v] : a.string_to_arg) collect_names(v, out);
      break;
    default: break;
  }
}

std::vector<std::string> names_of(const Argument& a) {
  std::vector<std::string> out;
  collect_names(a, out);
  return out;
}

// Tensor names an argument defines (for the tensor_values check).
void collect_tensor_names(const Argument& a, std::vector<std::string>& out) {
  switch (a.kind) {
    case ArgKind::kTensor: out.push_back(a.name); break;
    case ArgKind::kTensors: out.insert(out.end(), a.names.begin(), a.names.end()); break;
    case ArgKind::kOptionalTensor:
      if (a.opt_tensor.present) out.push_back(a.opt_tensor.name);
      break;
    case ArgKind::kOptionalTensors:
      for (const auto& o : a.opt_tensors)
        if (o.present) out.push_back(o.name);
      break;
    case ArgKind::kNestedTensors:
      for (const auto& l : a.nested_names) out.insert(out.end(), l.begin(), l.end());
      break;
    default: break;
  }
}

std::string node_label(const Node& n, size_t index) {
  return n.name ? cat("node ", index, " '", *n.name, "' (", n.target, ")") : cat("node ", index, " (", n.target, ")");
}

void validate_graph(const Graph& g, const std::string& where, int depth) {
  EMBER_CHECK(depth < 64, ErrorCode::kLimitExceeded, where, ": subgraphs nested deeper than 64 levels");
  // value name -> who defined it
  std::unordered_map<std::string, std::string> defined;
  std::vector<std::string> tensor_defs;
  auto define = [&](const std::string& name, const std::string& by) {
    auto [it, inserted] = defined.emplace(name, by);
    if (!inserted) fail(ErrorCode::kCorrupt, where, ": value '", name, "' defined twice: by ", it->second, " and by ", by);
  };

  for (size_t i = 0; i < g.inputs.size(); ++i) {
    for (const auto& n : names_of(g.inputs[i])) define(n, cat("graph input ", i));
    collect_tensor_names(g.inputs[i], tensor_defs);
  }
  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    const Node& node = g.nodes[ni];
    for (const auto& in : node.inputs) {
      for (const auto& n : names_of(in.arg)) {
        if (!defined.count(n))
          fail(ErrorCode::kCorrupt, where, ": ", node_label(node, ni), ": input '", in.name, "' uses undefined value '",
               n, "'");
      }
      if (in.arg.kind == ArgKind::kGraph && in.arg.graph.graph)
        validate_graph(*in.arg.graph.graph, cat(where, ": ", node_label(node, ni), ": subgraph '", in.arg.graph.name, "'"),
                       depth + 1);
    }
    for (const auto& out : node.outputs) {
      for (const auto& n : names_of(out)) define(n, node_label(node, ni));
      collect_tensor_names(out, tensor_defs);
    }
  }
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    for (const auto& n : names_of(g.outputs[i]))
      if (!defined.count(n)) fail(ErrorCode::kCorrupt, where, ": graph output ", i, " uses undefined value '", n, "'");
  }
  for (const auto& t : tensor_defs) {
    if (!g.tensor_values.count(t))
      fail(ErrorCode::kCorrupt, where, ": tensor '", t, "' (defined by ", defined[t], ") has no entry in tensor_values");
  }
  for (const auto& [name, meta] : g.tensor_values) {
    for (size_t d = 0; d < meta.sizes.size(); ++d) {
      const SymInt& s = meta.sizes[d];
      if (!s.is_expr && s.value < 0)
        fail(ErrorCode::kCorrupt, where, ": tensor_values['", name, "'].sizes[", d, "]: negative size ", s.value);
      if (s.is_expr && s.expr.hint && s.expr.hint->kind == SymExprHint::Kind::kInt && s.expr.hint->i < 0)
        fail(ErrorCode::kCorrupt, where, ": tensor_values['", name, "'].sizes[", d, "]: negative size hint ",
             s.expr.hint->i);
    }
  }
}

std::string join(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", '" : "'") + v[i] + "'";
  return out + "]";
}

}  // namespace

void validate(const ExportedProgram& program, const std::string& source) {
  const Graph& g = program.graph_module.graph;
  validate_graph(g, source, 0);

  const GraphSignature& sig = program.graph_module.signature;
  if (sig.input_specs.size() != g.inputs.size())
    fail(ErrorCode::kCorrupt, source, ": signature has ", sig.input_specs.size(), " input specs but the graph has ",
         g.inputs.size(), " inputs");
  for (size_t i = 0; i < sig.input_specs.size(); ++i) {
    const InputSpec& s = sig.input_specs[i];
    auto spec_names = names_of(s.arg);
    auto graph_names = names_of(g.inputs[i]);
    if (s.kind != InputKind::kConstantInput && spec_names != graph_names)
      fail(ErrorCode::kCorrupt, source, ": input_specs[", i, "] (", input_kind_key(s.kind), ") names ",
           join(spec_names), " but graph input ", i, " is ", join(graph_names));
  }
  if (sig.output_specs.size() != g.outputs.size())
    fail(ErrorCode::kCorrupt, source, ": signature has ", sig.output_specs.size(), " output specs but the graph has ",
         g.outputs.size(), " outputs");
  for (size_t i = 0; i < sig.output_specs.size(); ++i) {
    const OutputSpec& s = sig.output_specs[i];
    auto spec_names = names_of(s.arg);
    auto graph_names = names_of(g.outputs[i]);
    if (spec_names != graph_names)
      fail(ErrorCode::kCorrupt, source, ": output_specs[", i, "] (", output_kind_key(s.kind), ") names ",
           join(spec_names), " but graph output ", i, " is ", join(graph_names));
  }
}

}  // namespace ember::ir
