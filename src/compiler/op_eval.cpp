// Evaluation of single graph nodes with the reference kernels of the op registry: used for
// constant folding at compile time (and by the tests as an oracle for folded weights).
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "compiler/compiler_internal.h"
#include "ember/error.h"

namespace ember::compiler {
namespace {

std::string base_type(const std::string& type) {
  size_t end = 0;
  while (end < type.size() && (std::isalnum(static_cast<unsigned char>(type[end])) || type[end] == '_')) ++end;
  return type.substr(0, end);
}

bool parse_number(const std::string& s, bool* integral, int64_t* i, double* d) {
  if (s.empty()) return false;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (end == s.c_str() + s.size()) {
    *integral = true;
    *i = v;
    *d = static_cast<double>(v);
    return true;
  }
  if (s == "inf" || s == "-inf") {
    *integral = false;
    *d = s[0] == '-' ? -INFINITY : INFINITY;
    return true;
  }
  double f = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return false;
  *integral = false;
  *d = f;
  return true;
}

// A schema default ("None", "1", "[0, 0]", "1e-05", "False", "'none'") as an OpArg.
ops::OpArg default_arg(const std::string& type, const std::string& text) {
  const std::string base = base_type(type);
  const bool list = type.find('[') != std::string::npos;
  if (text == "None") return ops::OpArg::none();
  if (text == "True" || text == "False") return ops::OpArg::of_bool(text == "True");
  if (list && !text.empty() && text.front() == '[') {
    ops::OpArg a;
    a.kind = base == "float" ? ops::OpArg::Kind::kFloatList : ops::OpArg::Kind::kIntList;
    std::string inner = text.substr(1, text.size() - 2);
    size_t start = 0;
    while (start < inner.size()) {
      size_t comma = inner.find(',', start);
      std::string item = inner.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      bool integral = false;
      int64_t i = 0;
      double d = 0;
      if (item == "True" || item == "False") {
        a.kind = ops::OpArg::Kind::kBoolList;
        a.bools.push_back(item == "True");
      } else if (parse_number(item, &integral, &i, &d)) {
        if (a.kind == ops::OpArg::Kind::kFloatList) {
          a.floats.push_back(d);
        } else {
          a.ints.push_back(i);
        }
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return a;
  }
  bool integral = false;
  int64_t i = 0;
  double d = 0;
  if (parse_number(text, &integral, &i, &d)) {
    if (base == "float") return ops::OpArg::of_float(d);
    if (list) return ops::OpArg::of_ints({i});
    return integral ? ops::OpArg::of_int(i) : ops::OpArg::of_float(d);
  }
  if (text.size() >= 2 && (text.front() == '"' || text.front() == '\'') && text.back() == text.front()) {
    ops::OpArg a;
    a.kind = ops::OpArg::Kind::kString;
    a.s = text.substr(1, text.size() - 2);
    return a;
  }
  static const std::map<std::string, int64_t> kEnums = {
      {"contiguous_format", 1}, {"channels_last", 2}, {"preserve_format", 4}, {"strided", 7}, {"Mean", 1}, {"Sum", 2}};
  if (auto it = kEnums.find(text); it != kEnums.end()) return ops::OpArg::of_int(it->second);
  ops::OpArg a;
  a.kind = ops::OpArg::Kind::kString;
  a.s = text;
  return a;
}

ops::OpArg to_op_arg(const ir::Argument& arg, const std::string& type, const std::map<std::string, Tensor>& inputs,
                     const std::string& where) {
  auto tensor = [&](const std::string& name) {
    auto it = inputs.find(name);
    EMBER_CHECK(it != inputs.end(), ErrorCode::kInternal, where, ": tensor '", name, "' has no value");
    return it->second;
  };
  using K = ir::ArgKind;
  const std::string base = base_type(type);
  switch (arg.kind) {
    case K::kNone: return ops::OpArg::none();
    case K::kTensor: return ops::OpArg::of(tensor(arg.name));
    case K::kOptionalTensor: return arg.opt_tensor.present ? ops::OpArg::of(tensor(arg.opt_tensor.name)) : ops::OpArg::none();
    case K::kTensors: {
      std::vector<Tensor> ts;
      for (const auto& n : arg.names) ts.push_back(tensor(n));
      return ops::OpArg::of_list(std::move(ts));
    }
    case K::kOptionalTensors: {
      std::vector<Tensor> ts;
      for (const auto& t : arg.opt_tensors) ts.push_back(t.present ? tensor(t.name) : Tensor());
      ops::OpArg a = ops::OpArg::of_list(std::move(ts));
      a.kind = ops::OpArg::Kind::kOptTensorList;
      return a;
    }
    case K::kInt:
    case K::kMemoryFormat:
    case K::kLayout:
      return base == "float" ? ops::OpArg::of_float(static_cast<double>(arg.i)) : ops::OpArg::of_int(arg.i);
    case K::kScalarType: {
      std::optional<DType> dt = dtype_from_schema(arg.i);
      EMBER_CHECK(dt.has_value(), ErrorCode::kCorrupt, where, ": unknown ScalarType ", arg.i);
      ops::OpArg a;
      a.kind = ops::OpArg::Kind::kDType;
      a.dtype = *dt;
      return a;
    }
    case K::kInts: return ops::OpArg::of_ints(arg.ints);
    case K::kFloat: return ops::OpArg::of_float(arg.f);
    case K::kFloats: {
      ops::OpArg a;
      a.kind = ops::OpArg::Kind::kFloatList;
      a.floats = arg.floats;
      return a;
    }
    case K::kBool: return ops::OpArg::of_bool(arg.b);
    case K::kBools: {
      ops::OpArg a;
      a.kind = ops::OpArg::Kind::kBoolList;
      a.bools = arg.bools;
      return a;
    }
    case K::kString: {
      ops::OpArg a;
      a.kind = ops::OpArg::Kind::kString;
      a.s = arg.s;
      return a;
    }
    case K::kDevice: {
      ops::OpArg a;
      a.kind = ops::OpArg::Kind::kDevice;
      a.device = arg.device;
      return a;
    }
    case K::kSymInt:
      EMBER_CHECK(!arg.sym.is_name, ErrorCode::kUnsupported, where, ": symbolic int argument");
      return ops::OpArg::of_int(arg.sym.i);
    case K::kSymInts: {
      std::vector<int64_t> v;
      for (const auto& s : arg.syms) {
        EMBER_CHECK(!s.is_name, ErrorCode::kUnsupported, where, ": symbolic int argument");
        v.push_back(s.i);
      }
      return ops::OpArg::of_ints(std::move(v));
    }
    case K::kSymBool:
      EMBER_CHECK(!arg.sym.is_name, ErrorCode::kUnsupported, where, ": symbolic bool argument");
      return ops::OpArg::of_bool(arg.sym.b);
    default:
      fail(ErrorCode::kUnsupported, where, ": argument of kind ", ir::arg_kind_key(arg.kind),
           " cannot be evaluated at compile time");
  }
}

}  // namespace

std::map<std::string, Tensor> evaluate_node(const ir::Node& node, const std::map<std::string, Tensor>& inputs,
                                            const std::string& source) {
  const std::string where = cat(source, ": node '", node.name.value_or("?"), "' (", node.target, ")");
  const ops::OpDef* def = ops::Registry::global().find(node.target);
  EMBER_CHECK(def != nullptr, ErrorCode::kUnsupported, where, ": no reference kernel");
  std::map<std::string, ops::OpArg, std::less<>> args;
  for (const ops::SchemaArg& sa : def->schema.args) {
    const ir::Argument* given = node.input(sa.name);
    if (given) {
      args[sa.name] = to_op_arg(*given, sa.type, inputs, where);
    } else if (sa.default_value) {
      args[sa.name] = default_arg(sa.type, *sa.default_value);
    } else {
      fail(ErrorCode::kCorrupt, where, ": required argument '", sa.name, "' is missing");
    }
  }
  ops::OpCall call(node.name.value_or(""), node.target, std::move(args), false);
  std::vector<ops::OpArg> results = def->run(call);
  std::map<std::string, Tensor> out;
  for (size_t k = 0; k < node.outputs.size() && k < results.size(); ++k) {
    const ir::Argument& o = node.outputs[k];
    if (o.kind == ir::ArgKind::kTensor && results[k].kind == ops::OpArg::Kind::kTensor) {
      out[o.name] = results[k].tensor;
    } else if (o.kind == ir::ArgKind::kTensors && results[k].kind == ops::OpArg::Kind::kTensorList) {
      for (size_t j = 0; j < o.names.size() && j < results[k].tensors.size(); ++j) out[o.names[j]] = results[k].tensors[j];
    }
  }
  return out;
}

}  // namespace ember::compiler
