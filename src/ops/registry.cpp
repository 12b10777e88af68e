#include "ops/registry.h"

#include <cctype>
#include <utility>

#include "ember/error.h"

namespace ember::ops {

// ---------------------------------------------------------------- OpArg factories

OpArg OpArg::of(Tensor t) {
  OpArg a;
  a.kind = Kind::kTensor;
  if (t.defined()) a.spec = TensorSpec{t.dtype(), t.sizes()};
  a.tensor = std::move(t);
  return a;
}

OpArg OpArg::of_list(std::vector<Tensor> ts) {
  OpArg a;
  a.kind = Kind::kTensorList;
  a.specs.reserve(ts.size());
  for (const Tensor& t : ts)
    a.specs.push_back(t.defined() ? TensorSpec{t.dtype(), t.sizes()} : TensorSpec{DType::kUnknown, {}});
  a.tensors = std::move(ts);
  return a;
}

OpArg OpArg::of_int(int64_t v) {
  OpArg a;
  a.kind = Kind::kInt;
  a.i = v;
  return a;
}

OpArg OpArg::of_float(double v) {
  OpArg a;
  a.kind = Kind::kFloat;
  a.f = v;
  return a;
}

OpArg OpArg::of_bool(bool v) {
  OpArg a;
  a.kind = Kind::kBool;
  a.b = v;
  return a;
}

OpArg OpArg::of_ints(std::vector<int64_t> v) {
  OpArg a;
  a.kind = Kind::kIntList;
  a.ints = std::move(v);
  return a;
}

OpArg OpArg::of_spec(TensorSpec spec) {
  OpArg a;
  a.kind = Kind::kTensor;
  a.spec = std::move(spec);
  return a;
}

const char* arg_kind_name(OpArg::Kind k) {
  switch (k) {
    case OpArg::Kind::kNone:
      return "None";
    case OpArg::Kind::kTensor:
      return "Tensor";
    case OpArg::Kind::kTensorList:
      return "Tensor[]";
    case OpArg::Kind::kOptTensorList:
      return "Tensor?[]";
    case OpArg::Kind::kInt:
      return "int";
    case OpArg::Kind::kIntList:
      return "int[]";
    case OpArg::Kind::kFloat:
      return "float";
    case OpArg::Kind::kFloatList:
      return "float[]";
    case OpArg::Kind::kBool:
      return "bool";
    case OpArg::Kind::kBoolList:
      return "bool[]";
    case OpArg::Kind::kString:
      return "str";
    case OpArg::Kind::kDType:
      return "ScalarType";
    case OpArg::Kind::kDevice:
      return "Device";
  }
  return "?";
}

// ---------------------------------------------------------------- OpCall

OpCall::OpCall(std::string node_name, std::string target, std::map<std::string, OpArg, std::less<>> args,
               bool infer_mode)
    : node_(std::move(node_name)), target_(std::move(target)), args_(std::move(args)), infer_mode_(infer_mode) {}

bool OpCall::has(std::string_view name) const {
  auto it = args_.find(name);
  return it != args_.end() && it->second.kind != OpArg::Kind::kNone;
}

void OpCall::fail_arg(std::string_view name, const std::string& what) const {
  fail(ErrorCode::kInvalidArgument, "node '", node_, "' (", target_, "): argument '", name, "': ", what);
}

const OpArg& OpCall::arg(std::string_view name) const {
  auto it = args_.find(name);
  if (it == args_.end()) fail_arg(name, "missing (no value and no schema default)");
  return it->second;
}

namespace {

// Throws unless `a` has one of the `ok` kinds.
void expect_kind(const OpCall& c, std::string_view name, const OpArg& a, std::initializer_list<OpArg::Kind> ok,
                 const char* expected) {
  for (OpArg::Kind k : ok)
    if (a.kind == k) return;
  c.fail_arg(name, cat("expected ", expected, ", found ", arg_kind_name(a.kind)));
}

}  // namespace

const Tensor& OpCall::tensor(std::string_view name) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kTensor}, "Tensor");
  if (!a.tensor.defined()) {
    if (infer_mode_)
      fail(ErrorCode::kInternal, "node '", node_, "' (", target_, "): argument '", name,
           "': tensor data requested while inferring output specs");
    fail_arg(name, "expected a defined Tensor, found an undefined one");
  }
  return a.tensor;
}

std::optional<Tensor> OpCall::opt_tensor(std::string_view name) const {
  if (!has(name)) return std::nullopt;
  return tensor(name);
}

const TensorSpec& OpCall::spec(std::string_view name) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kTensor}, "Tensor");
  return a.spec;
}

std::optional<TensorSpec> OpCall::opt_spec(std::string_view name) const {
  if (!has(name)) return std::nullopt;
  return spec(name);
}

const std::vector<Tensor>& OpCall::tensor_list(std::string_view name) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kTensorList, OpArg::Kind::kOptTensorList}, "Tensor[]");
  return a.tensors;
}

const std::vector<TensorSpec>& OpCall::spec_list(std::string_view name) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kTensorList, OpArg::Kind::kOptTensorList}, "Tensor[]");
  return a.specs;
}

int64_t OpCall::int_arg(std::string_view name) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kInt, OpArg::Kind::kBool}, "int");
  return a.kind == OpArg::Kind::kBool ? int64_t{a.b} : a.i;
}

std::optional<int64_t> OpCall::opt_int(std::string_view name) const {
  if (!has(name)) return std::nullopt;
  return int_arg(name);
}

double OpCall::float_arg(std::string_view name) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kFloat, OpArg::Kind::kInt}, "float");
  return a.kind == OpArg::Kind::kInt ? static_cast<double>(a.i) : a.f;
}

bool OpCall::bool_arg(std::string_view name) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kBool}, "bool");
  return a.b;
}

std::vector<int64_t> OpCall::int_list(std::string_view name) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kIntList, OpArg::Kind::kInt}, "int[]");
  if (a.kind == OpArg::Kind::kInt) return {a.i};
  return a.ints;
}

std::optional<std::vector<int64_t>> OpCall::opt_int_list(std::string_view name) const {
  if (!has(name)) return std::nullopt;
  return int_list(name);
}

const std::string& OpCall::string_arg(std::string_view name) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kString}, "str");
  return a.s;
}

std::optional<DType> OpCall::opt_dtype(std::string_view name) const {
  if (!has(name)) return std::nullopt;
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kDType, OpArg::Kind::kInt}, "ScalarType");
  if (a.kind == OpArg::Kind::kDType) {
    if (dtype_size(a.dtype) == 0) fail_arg(name, cat("expected a known ScalarType, found ", static_cast<int>(a.dtype)));
    return a.dtype;
  }
  std::optional<DType> d = dtype_from_schema(a.i);
  if (!d || dtype_size(*d) == 0) fail_arg(name, cat("expected a known ScalarType, found ", a.i));
  return d;
}

double OpCall::scalar(std::string_view name, bool* is_integral) const {
  const OpArg& a = arg(name);
  expect_kind(*this, name, a, {OpArg::Kind::kInt, OpArg::Kind::kFloat, OpArg::Kind::kBool}, "Scalar");
  if (is_integral) *is_integral = a.kind != OpArg::Kind::kFloat;
  switch (a.kind) {
    case OpArg::Kind::kInt:
      return static_cast<double>(a.i);
    case OpArg::Kind::kBool:
      return a.b ? 1.0 : 0.0;
    default:
      return a.f;
  }
}

// ---------------------------------------------------------------- schema parsing

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

[[noreturn]] void bad_schema(std::string_view text, const std::string& what) {
  fail(ErrorCode::kInvalidArgument, "malformed op schema '", text, "': ", what);
}

// Splits `s` at top-level commas (outside (), [] and quotes).
std::vector<std::string_view> split_top_level(std::string_view text, std::string_view s) {
  std::vector<std::string_view> parts;
  int depth = 0;
  char quote = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '(' || c == '[') {
      ++depth;
    } else if (c == ')' || c == ']') {
      if (--depth < 0) bad_schema(text, "unbalanced brackets");
    } else if (c == ',' && depth == 0) {
      parts.push_back(trim(s.substr(start, i - start)));
      start = i + 1;
    }
  }
  if (depth != 0 || quote) bad_schema(text, "unbalanced brackets or quotes");
  std::string_view last = trim(s.substr(start));
  if (!last.empty() || !parts.empty()) parts.push_back(last);
  return parts;
}

bool is_identifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

// "Tensor(a!)" -> type "Tensor", alias "a!"; "Tensor(a)[]" -> "Tensor[]", "a"; "int[2]?" stays.
std::string strip_alias(std::string_view text, std::string_view type, std::string* alias) {
  size_t open = type.find('(');
  if (open == std::string_view::npos) return std::string(type);
  size_t close = type.find(')', open);
  if (close == std::string_view::npos) bad_schema(text, cat("unclosed alias annotation in type '", type, "'"));
  if (alias) *alias = std::string(type.substr(open + 1, close - open - 1));
  return std::string(type.substr(0, open)) + std::string(type.substr(close + 1));
}

// Checks a type: a base name, optional "[N]" / "[]" list suffix, optional "?" (in either order
// PyTorch writes them: "Tensor?[]", "int[1]?").
void check_type(std::string_view text, std::string_view type) {
  std::string_view t = type;
  size_t base_end = 0;
  while (base_end < t.size() && (std::isalnum(static_cast<unsigned char>(t[base_end])) || t[base_end] == '_'))
    ++base_end;
  if (base_end == 0) bad_schema(text, cat("bad type '", type, "'"));
  std::string_view rest = t.substr(base_end);
  while (!rest.empty()) {
    if (rest[0] == '?') {
      rest.remove_prefix(1);
    } else if (rest[0] == '[') {
      size_t close = rest.find(']');
      if (close == std::string_view::npos) bad_schema(text, cat("bad type '", type, "'"));
      for (char c : rest.substr(1, close - 1))
        if (!std::isdigit(static_cast<unsigned char>(c))) bad_schema(text, cat("bad list size in type '", type, "'"));
      rest.remove_prefix(close + 1);
    } else {
      bad_schema(text, cat("bad type '", type, "'"));
    }
  }
}

}  // namespace

Schema parse_schema(std::string_view text) {
  std::string_view s = trim(text);
  size_t open = s.find('(');
  if (open == std::string_view::npos) bad_schema(text, "expected '(' after the op name");
  std::string_view full_name = trim(s.substr(0, open));

  // Find the matching ')' of the argument list.
  int depth = 0;
  char quote = 0;
  size_t close = std::string_view::npos;
  for (size_t i = open; i < s.size(); ++i) {
    char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')' && --depth == 0) {
      close = i;
      break;
    }
  }
  if (close == std::string_view::npos) bad_schema(text, "unclosed argument list");

  Schema schema;
  std::string_view ns = "aten";
  size_t colons = full_name.find("::");
  if (colons != std::string_view::npos) {
    ns = full_name.substr(0, colons);
    full_name = full_name.substr(colons + 2);
  }
  size_t dot = full_name.find('.');
  std::string_view base = full_name.substr(0, dot);
  schema.overload = dot == std::string_view::npos ? "default" : std::string(full_name.substr(dot + 1));
  if (!is_identifier(ns) || !is_identifier(base) || !is_identifier(schema.overload))
    bad_schema(text, cat("bad op name '", trim(s.substr(0, open)), "'"));
  schema.name = cat(ns, "::", base);

  bool kwarg_only = false;
  for (std::string_view part : split_top_level(text, s.substr(open + 1, close - open - 1))) {
    if (part.empty()) bad_schema(text, "empty argument");
    if (part == "*") {
      if (kwarg_only) bad_schema(text, "more than one '*'");
      kwarg_only = true;
      continue;
    }
    SchemaArg arg;
    arg.kwarg_only = kwarg_only;
    std::string_view decl = part;
    // A default follows the first '=' outside quotes (types and names never hold one).
    size_t eq = part.find('=');
    if (eq != std::string_view::npos) {
      std::string_view def = trim(part.substr(eq + 1));
      if (def.empty()) bad_schema(text, cat("empty default in '", part, "'"));
      arg.default_value = std::string(def);
      decl = trim(part.substr(0, eq));
    }
    size_t space = decl.find_last_of(" \t");
    if (space == std::string_view::npos) bad_schema(text, cat("argument '", part, "' needs a type and a name"));
    std::string_view name = trim(decl.substr(space + 1));
    std::string_view type = trim(decl.substr(0, space));
    if (!is_identifier(name)) bad_schema(text, cat("bad argument name '", name, "'"));
    arg.name = std::string(name);
    arg.type = strip_alias(text, type, &arg.alias);
    check_type(text, arg.type);
    for (const SchemaArg& prev : schema.args)
      if (prev.name == arg.name) bad_schema(text, cat("duplicate argument '", arg.name, "'"));
    schema.args.push_back(std::move(arg));
  }

  std::string_view after = trim(s.substr(close + 1));
  if (after.substr(0, 2) != "->") bad_schema(text, "expected '->' after the argument list");
  std::string_view ret = trim(after.substr(2));
  if (ret.empty()) bad_schema(text, "missing return type");
  std::vector<std::string_view> ret_parts;
  if (ret.front() == '(') {
    if (ret.back() != ')') bad_schema(text, "unclosed return tuple");
    ret_parts = split_top_level(text, ret.substr(1, ret.size() - 2));
  } else {
    ret_parts = split_top_level(text, ret);
  }
  for (std::string_view r : ret_parts) {
    if (r.empty()) bad_schema(text, "empty return type");
    // Returns may be named: "Tensor values", "Tensor(a!) out".
    size_t space = r.find_last_of(" \t");
    std::string_view type = space == std::string_view::npos ? r : trim(r.substr(0, space));
    if (space != std::string_view::npos && !is_identifier(trim(r.substr(space + 1))))
      bad_schema(text, cat("bad return '", r, "'"));
    std::string t = strip_alias(text, type, nullptr);
    check_type(text, t);
    schema.returns.push_back(std::move(t));
  }
  return schema;
}

// ---------------------------------------------------------------- Registry

Registry& Registry::global() {
  static Registry registry;
  return registry;
}

void Registry::add(std::string target, std::string_view schema_text, InferFn infer, KernelFn run, bool inplace) {
  EMBER_CHECK(!target.empty(), ErrorCode::kInternal, "op registered with an empty target");
  EMBER_CHECK(ops_.find(target) == ops_.end(), ErrorCode::kInternal, "op ", target, " registered twice");
  EMBER_CHECK(infer && run, ErrorCode::kInternal, "op ", target, " registered without an infer or a run function");
  Schema schema = parse_schema(schema_text);
  // The target must be torch.ops.<ns>.<name>.<overload> of the schema's name and overload.
  // Schema text without a namespace belongs to whatever namespace the target names.
  size_t colons = schema.name.find("::");
  std::string ns = schema.name.substr(0, colons);
  std::string base = schema.name.substr(colons + 2);
  if (schema_text.find("::") == std::string_view::npos && target.rfind("torch.ops.", 0) == 0) {
    std::string_view rest = std::string_view(target).substr(10);
    size_t d = rest.find('.');
    if (d != std::string_view::npos) ns = std::string(rest.substr(0, d));
  }
  schema.name = cat(ns, "::", base);
  std::string expected = cat("torch.ops.", ns, ".", base, ".", schema.overload);
  EMBER_CHECK(target == expected, ErrorCode::kInternal, "op target ", target, " does not match its schema '",
              schema_text, "' (expected target ", expected, ")");
  OpDef def;
  def.target = target;
  def.schema = std::move(schema);
  def.infer = std::move(infer);
  def.run = std::move(run);
  def.inplace = inplace;
  ops_.emplace(std::move(target), std::move(def));
}

void Registry::set_prepare(std::string_view target, PrepareFn prepare) {
  auto it = ops_.find(target);
  EMBER_CHECK(it != ops_.end(), ErrorCode::kInternal, "set_prepare for unregistered op ", target);
  it->second.prepare = std::move(prepare);
}

const OpDef* Registry::find(std::string_view target) const {
  auto it = ops_.find(target);
  return it == ops_.end() ? nullptr : &it->second;
}

std::vector<std::string> Registry::targets() const {
  std::vector<std::string> out;
  out.reserve(ops_.size());
  for (const auto& [target, def] : ops_) out.push_back(target);
  return out;
}

}  // namespace ember::ops
