#include "ops/arg_convert.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "ember/error.h"

namespace ember::ops {

namespace {

using Json = nlohmann::json;

std::string base_type(const std::string& type) {
  size_t end = 0;
  while (end < type.size() && (std::isalnum(static_cast<unsigned char>(type[end])) || type[end] == '_')) ++end;
  return type.substr(0, end);
}
bool is_list_type(const std::string& type) { return type.find('[') != std::string::npos; }

bool parse_int(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  size_t i = (s[0] == '-') ? 1 : 0;
  if (i == s.size()) return false;
  int64_t v = 0;
  for (; i < s.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[i] - '0', &v)) return false;
  }
  *out = s[0] == '-' ? -v : v;
  return true;
}

bool parse_double(const std::string& s, double* out) {
  if (s == "inf") return *out = INFINITY, true;
  if (s == "-inf") return *out = -INFINITY, true;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

// A JSON float as argument_to_json writes it: a number, or "NaN" / "Infinity" / "-Infinity".
bool json_float(const Json& j, double* out) {
  if (j.is_number()) return *out = j.get<double>(), true;
  if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s == "NaN") return *out = NAN, true;
    if (s == "Infinity") return *out = INFINITY, true;
    if (s == "-Infinity") return *out = -INFINITY, true;
  }
  return false;
}

}  // namespace

OpArg parse_schema_default(const std::string& type, const std::string& text) {
  std::string base = base_type(type);
  if (text == "None") return OpArg::none();
  if (text == "True" || text == "False") return OpArg::of_bool(text == "True");
  if (is_list_type(type) && text.size() >= 2 && text.front() == '[') {
    std::string inner = text.substr(1, text.size() - 2);
    OpArg a;
    bool floats = base == "float";
    a.kind = floats ? OpArg::Kind::kFloatList : OpArg::Kind::kIntList;
    size_t start = 0;
    while (start < inner.size()) {
      size_t comma = inner.find(',', start);
      std::string item = inner.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      if (!item.empty()) {
        if (floats) {
          double d = 0;
          parse_double(item, &d);
          a.floats.push_back(d);
        } else if (item == "True" || item == "False") {
          a.kind = OpArg::Kind::kBoolList;
          a.bools.push_back(item == "True");
        } else {
          int64_t v = 0;
          parse_int(item, &v);
          a.ints.push_back(v);
        }
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return a;
  }
  int64_t i = 0;
  if (parse_int(text, &i)) {
    if (base == "float") return OpArg::of_float(static_cast<double>(i));
    if (is_list_type(type)) return OpArg::of_ints({i});  // "int[2] stride=1": broadcast by the kernel
    return OpArg::of_int(i);
  }
  double d = 0;
  if (parse_double(text, &d)) return OpArg::of_float(d);
  OpArg a;
  a.kind = OpArg::Kind::kString;
  if (text.size() >= 2 && (text.front() == '"' || text.front() == '\'') && text.back() == text.front()) {
    a.s = text.substr(1, text.size() - 2);
    return a;
  }
  static const std::map<std::string, int64_t> kEnums = {
      {"contiguous_format", 1}, {"channels_last", 2}, {"channels_last_3d", 3}, {"preserve_format", 4},
      {"strided", 7},           {"Mean", 1},          {"Sum", 2},
  };
  if (auto it = kEnums.find(text); it != kEnums.end()) return OpArg::of_int(it->second);
  if (base == "ScalarType") {
    if (auto dt = dtype_from_name(text)) {
      OpArg t;
      t.kind = OpArg::Kind::kDType;
      t.dtype = *dt;
      return t;
    }
  }
  a.s = text;  // unknown spelling: passed through as text
  return a;
}

const OpDef& require_op(std::string_view target) {
  const OpDef* def = Registry::global().find(target);
  EMBER_CHECK(def != nullptr, ErrorCode::kUnsupported, "op '", target, "' is not in the op registry");
  return *def;
}

OpCall make_call(const OpDef& def, const std::string& node, std::map<std::string, OpArg, std::less<>> given,
                 bool infer_mode) {
  for (const auto& [name, arg] : given) {
    bool known = false;
    for (const SchemaArg& sa : def.schema.args) known = known || sa.name == name;
    EMBER_CHECK(known, ErrorCode::kCorrupt, node, " (", def.target, "): no argument named '", name, "' in the schema");
  }
  for (const SchemaArg& sa : def.schema.args) {
    if (given.count(sa.name)) continue;
    EMBER_CHECK(sa.default_value.has_value(), ErrorCode::kCorrupt, node, " (", def.target,
                "): required argument '", sa.name, "' (", sa.type, ") is missing");
    given.emplace(sa.name, parse_schema_default(sa.type, *sa.default_value));
  }
  return OpCall(node, def.target, std::move(given), infer_mode);
}

OpCall make_call_from_json(const OpDef& def, const std::string& node, const nlohmann::json& args,
                           const ArgResolver& resolver, bool infer_mode) {
  auto bad = [&](const std::string& name, const std::string& what) -> void {
    fail(ErrorCode::kCorrupt, node, " (", def.target, "): argument '", name, "': ", what);
  };
  EMBER_CHECK(args.is_array(), ErrorCode::kCorrupt, node, " (", def.target, "): args must be a JSON array");
  std::map<std::string, OpArg, std::less<>> given;
  for (const Json& entry : args) {
    if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() || !entry.contains("arg") ||
        !entry["arg"].is_object() || entry["arg"].size() != 1)
      fail(ErrorCode::kCorrupt, node, " (", def.target, "): each argument must be {\"name\": str, \"arg\": {one as_* key}}");
    const std::string& name = entry["name"].get_ref<const std::string&>();
    const SchemaArg* sa = nullptr;
    for (const SchemaArg& s : def.schema.args)
      if (s.name == name) sa = &s;
    if (!sa) bad(name, "not in the schema");
    if (given.count(name)) bad(name, "given twice");
    std::string base = base_type(sa->type);
    auto arg_it = entry["arg"].begin();
    const std::string tag = arg_it.key();
    const Json& v = arg_it.value();
    auto tensor_arg = [&](const Json& t) {
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string()) bad(name, "tensor must be {\"name\": str}");
      const std::string& tn = t["name"].get_ref<const std::string&>();
      if (infer_mode) return OpArg::of_spec(resolver.spec(tn));
      return OpArg::of(resolver.tensor(tn));
    };
    auto sym_int = [&](const Json& s) -> int64_t {
      if (s.is_object() && s.size() == 1 && s.contains("as_int") && s["as_int"].is_number_integer())
        return s["as_int"].get<int64_t>();
      if (s.is_object() && s.size() == 1 && s.contains("as_name") && s["as_name"].is_string()) {
        if (!resolver.symbol) bad(name, "symbolic value without a symbol resolver");
        return resolver.symbol(s["as_name"].get<std::string>());
      }
      bad(name, "a SymInt must be {\"as_int\": int} or {\"as_name\": str}");
      return 0;
    };
    OpArg a;
    if (tag == "as_none") {
      a = OpArg::none();
    } else if (tag == "as_tensor") {
      a = tensor_arg(v);
    } else if (tag == "as_optional_tensor") {
      if (v.is_object() && v.contains("as_tensor")) a = tensor_arg(v["as_tensor"]);
    } else if (tag == "as_tensors") {
      if (!v.is_array()) bad(name, "as_tensors must be an array");
      std::vector<Tensor> ts;
      std::vector<TensorSpec> specs;
      for (const Json& t : v) {
        OpArg one = tensor_arg(t);
        ts.push_back(one.tensor);
        specs.push_back(one.spec);
      }
      a = OpArg::of_list(std::move(ts));
      a.specs = std::move(specs);
    } else if (tag == "as_int" || tag == "as_memory_format" || tag == "as_layout") {
      if (!v.is_number_integer()) bad(name, cat(tag, " must be an integer"));
      a = base == "float" ? OpArg::of_float(static_cast<double>(v.get<int64_t>())) : OpArg::of_int(v.get<int64_t>());
    } else if (tag == "as_scalar_type") {
      if (!v.is_number_integer()) bad(name, "as_scalar_type must be an integer");
      auto dt = dtype_from_schema(v.get<int64_t>());
      if (!dt) bad(name, cat("unknown ScalarType ", v.get<int64_t>()));
      a.kind = OpArg::Kind::kDType;
      a.dtype = *dt;
    } else if (tag == "as_ints") {
      if (!v.is_array()) bad(name, "as_ints must be an array");
      std::vector<int64_t> ints;
      for (const Json& x : v) {
        if (!x.is_number_integer()) bad(name, "as_ints holds a non-integer");
        ints.push_back(x.get<int64_t>());
      }
      a = OpArg::of_ints(std::move(ints));
    } else if (tag == "as_float") {
      double d = 0;
      if (!json_float(v, &d)) bad(name, "as_float must be a number");
      a = OpArg::of_float(d);
    } else if (tag == "as_floats") {
      if (!v.is_array()) bad(name, "as_floats must be an array");
      a.kind = OpArg::Kind::kFloatList;
      for (const Json& x : v) {
        double d = 0;
        if (!json_float(x, &d)) bad(name, "as_floats holds a non-number");
        a.floats.push_back(d);
      }
    } else if (tag == "as_bool") {
      if (!v.is_boolean()) bad(name, "as_bool must be a boolean");
      a = OpArg::of_bool(v.get<bool>());
    } else if (tag == "as_bools") {
      if (!v.is_array()) bad(name, "as_bools must be an array");
      a.kind = OpArg::Kind::kBoolList;
      for (const Json& x : v) {
        if (!x.is_boolean()) bad(name, "as_bools holds a non-boolean");
        a.bools.push_back(x.get<bool>());
      }
    } else if (tag == "as_string") {
      if (!v.is_string()) bad(name, "as_string must be a string");
      a.kind = OpArg::Kind::kString;
      a.s = v.get<std::string>();
    } else if (tag == "as_sym_int") {
      a = OpArg::of_int(sym_int(v));
    } else if (tag == "as_sym_ints") {
      if (!v.is_array()) bad(name, "as_sym_ints must be an array");
      std::vector<int64_t> ints;
      for (const Json& x : v) ints.push_back(sym_int(x));
      a = OpArg::of_ints(std::move(ints));
    } else {
      fail(ErrorCode::kUnsupported, node, " (", def.target, "): argument '", name, "' of kind ", tag,
           " is not supported here");
    }
    given.emplace(name, std::move(a));
  }
  return make_call(def, node, std::move(given), infer_mode);
}

}  // namespace ember::ops
