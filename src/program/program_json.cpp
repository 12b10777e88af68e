// models/<name>.json (torch.export schema 8.x) <-> ExportedProgram.
//
// The reader mirrors torch/_export/serde/schema.py: every struct reads its known fields,
// keeps the rest in `unknown`; every union must hold exactly one known tag. The writer emits
// fields in the order PyTorch writes them, then the unknown ones.
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "ember/error.h"
#include "ember/program.h"
#include "program/json_read.h"

namespace ember::ir {

using detail::Where;

namespace {

constexpr std::string_view kArgumentTags =
    "as_none, as_tensor, as_tensors, as_int, as_ints, as_float, as_floats, as_string, as_strings, as_sym_int, "
    "as_sym_ints, as_scalar_type, as_memory_format, as_layout, as_device, as_bool, as_bools, as_sym_bool, "
    "as_sym_bools, as_graph, as_optional_tensors, as_custom_obj, as_operator, as_sym_float, as_sym_floats, "
    "as_optional_tensor, as_complex, as_nested_tensors, as_int_lists, as_string_to_argument";

// ------------------------------------------------------------------ small readers

template <typename T, typename F>
std::vector<T> read_list(const Json& j, const Where& w, F&& read_one) {
  detail::expect_array(j, w);
  std::vector<T> out;
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) out.push_back(read_one(j[i], w.index(i)));
  return out;
}

std::vector<int64_t> read_int_list(const Json& j, const Where& w) {
  if (!j.is_array()) detail::type_error(w, "an integer list", j);
  return read_list<int64_t>(j, w, [](const Json& e, const Where& ew) { return detail::read_int(e, ew); });
}

std::vector<std::string> read_string_list(const Json& j, const Where& w) {
  if (!j.is_array()) detail::type_error(w, "a string list", j);
  return read_list<std::string>(j, w, [](const Json& e, const Where& ew) { return detail::read_string(e, ew); });
}

std::vector<std::pair<std::string, std::string>> read_string_map(const Json& j, const Where& w) {
  if (!j.is_object()) detail::type_error(w, "an object of strings", j);
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(j.size());
  for (const auto& [k, v] : j.items()) out.emplace_back(k, detail::read_string(v, w.field(k)));
  return out;
}

Json string_map_to_json(const std::vector<std::pair<std::string, std::string>>& m) {
  Json out = Json::object();
  for (const auto& [k, v] : m) out[k] = v;
  return out;
}

// The "name" field of a TensorArgument / TokenArgument object.
std::string read_tensor_name(const Json& j, const Where& w, Json* unknown = nullptr) {
  detail::expect_object(j, w);
  std::string name = detail::read_string(detail::require(j, "name", w), w.field("name"));
  if (unknown) *unknown = detail::leftovers(j, {"name"});
  return name;
}

Json tensor_name_json(const std::string& name, const Json& unknown = Json()) {
  Json out = Json::object();
  out["name"] = name;
  detail::append_unknown(out, unknown);
  return out;
}

Device read_device(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  Device d;
  std::string type = detail::read_string(detail::require(j, "type", w), w.field("type"));
  if (type == "cpu") {
    d.type = DeviceType::kCPU;
  } else if (type == "cuda") {
    d.type = DeviceType::kCUDA;
  } else {
    fail(ErrorCode::kUnsupported, w.field("type").str(), ": device type '", type, "' (supported: cpu, cuda)");
  }
  const Json* index = detail::optional(j, "index");
  if (index && !index->is_null()) {
    d.index = detail::read_int32(*index, w.field("index"));
    if (d.index < 0) fail(ErrorCode::kCorrupt, w.field("index").str(), ": negative device index ", d.index);
  }
  return d;
}

Json device_to_json(const Device& d) {
  Json out = Json::object();
  out["type"] = d.type == DeviceType::kCUDA ? "cuda" : "cpu";
  out["index"] = d.index < 0 ? Json(nullptr) : Json(d.index);
  return out;
}

// ------------------------------------------------------------------ symbolic values

SymExpr read_sym_expr(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  SymExpr e;
  e.expr_str = detail::read_string(detail::require(j, "expr_str", w), w.field("expr_str"));
  if (const Json* h = detail::optional(j, "hint"); h && !h->is_null()) {
    Where hw = w.field("hint");
    const std::string& tag = detail::union_tag(*h, hw, "SymExprHint", "as_int, as_bool, as_float");
    const Json& v = h->front();
    SymExprHint hint;
    if (tag == "as_int") {
      hint.kind = SymExprHint::Kind::kInt;
      hint.i = detail::read_int(v, hw.field(tag));
    } else if (tag == "as_bool") {
      hint.kind = SymExprHint::Kind::kBool;
      hint.b = detail::read_bool(v, hw.field(tag));
    } else if (tag == "as_float") {
      hint.kind = SymExprHint::Kind::kFloat;
      hint.f = detail::read_float(v, hw.field(tag));
    } else {
      detail::unknown_tag(hw, "SymExprHint", tag);
    }
    e.hint = hint;
  }
  e.unknown = detail::leftovers(j, {"expr_str", "hint"});
  return e;
}

Json sym_expr_to_json(const SymExpr& e) {
  Json out = Json::object();
  out["expr_str"] = e.expr_str;
  if (e.hint) {
    Json h = Json::object();
    switch (e.hint->kind) {
      case SymExprHint::Kind::kInt: h["as_int"] = e.hint->i; break;
      case SymExprHint::Kind::kBool: h["as_bool"] = e.hint->b; break;
      case SymExprHint::Kind::kFloat: h["as_float"] = detail::float_to_json(e.hint->f); break;
    }
    out["hint"] = std::move(h);
  } else {
    out["hint"] = nullptr;
  }
  detail::append_unknown(out, e.unknown);
  return out;
}

SymInt read_sym_int(const Json& j, const Where& w) {
  const std::string& tag = detail::union_tag(j, w, "SymInt", "as_expr, as_int");
  SymInt s;
  if (tag == "as_int") {
    s.value = detail::read_int(j.front(), w.field(tag));
  } else if (tag == "as_expr") {
    s.is_expr = true;
    s.expr = read_sym_expr(j.front(), w.field(tag));
  } else {
    detail::unknown_tag(w, "SymInt", tag);
  }
  return s;
}

Json sym_int_to_json(const SymInt& s) {
  Json out = Json::object();
  if (s.is_expr) {
    out["as_expr"] = sym_expr_to_json(s.expr);
  } else {
    out["as_int"] = s.value;
  }
  return out;
}

SymFloat read_sym_float(const Json& j, const Where& w) {
  const std::string& tag = detail::union_tag(j, w, "SymFloat", "as_expr, as_float");
  SymFloat s;
  if (tag == "as_float") {
    s.value = detail::read_float(j.front(), w.field(tag));
  } else if (tag == "as_expr") {
    s.is_expr = true;
    s.expr = read_sym_expr(j.front(), w.field(tag));
  } else {
    detail::unknown_tag(w, "SymFloat", tag);
  }
  return s;
}

Json sym_float_to_json(const SymFloat& s) {
  Json out = Json::object();
  if (s.is_expr) {
    out["as_expr"] = sym_expr_to_json(s.expr);
  } else {
    out["as_float"] = detail::float_to_json(s.value);
  }
  return out;
}

SymBool read_sym_bool(const Json& j, const Where& w) {
  const std::string& tag = detail::union_tag(j, w, "SymBool", "as_expr, as_bool");
  SymBool s;
  if (tag == "as_bool") {
    s.value = detail::read_bool(j.front(), w.field(tag));
  } else if (tag == "as_expr") {
    s.is_expr = true;
    s.expr = read_sym_expr(j.front(), w.field(tag));
  } else {
    detail::unknown_tag(w, "SymBool", tag);
  }
  return s;
}

Json sym_bool_to_json(const SymBool& s) {
  Json out = Json::object();
  if (s.is_expr) {
    out["as_expr"] = sym_expr_to_json(s.expr);
  } else {
    out["as_bool"] = s.value;
  }
  return out;
}

// SymIntArgument / SymFloatArgument / SymBoolArgument: {as_name} or a constant under
// `const_tag` ("as_int" / "as_float" / "as_bool").
SymArg read_sym_arg(const Json& j, const Where& w, const char* const_tag, std::string_view what) {
  const std::string& tag = detail::union_tag(j, w, what, cat("as_name, ", const_tag));
  SymArg a;
  const Json& v = j.front();
  Where vw = w.field(tag);
  if (tag == "as_name") {
    a.is_name = true;
    a.name = detail::read_string(v, vw);
  } else if (tag == const_tag) {
    std::string_view c = const_tag;
    if (c == "as_int") {
      a.i = detail::read_int(v, vw);
    } else if (c == "as_float") {
      a.f = detail::read_float(v, vw);
    } else {
      a.b = detail::read_bool(v, vw);
    }
  } else {
    detail::unknown_tag(w, what, tag);
  }
  return a;
}

Json sym_arg_to_json(const SymArg& a, const char* const_tag) {
  Json out = Json::object();
  std::string_view c = const_tag;
  if (a.is_name) {
    out["as_name"] = a.name;
  } else if (c == "as_int") {
    out["as_int"] = a.i;
  } else if (c == "as_float") {
    out["as_float"] = detail::float_to_json(a.f);
  } else {
    out["as_bool"] = a.b;
  }
  return out;
}

OptionalTensorArg read_optional_tensor(const Json& j, const Where& w) {
  const std::string& tag = detail::union_tag(j, w, "OptionalTensorArgument", "as_tensor, as_none");
  OptionalTensorArg o;
  if (tag == "as_tensor") {
    o.present = true;
    o.name = read_tensor_name(j.front(), w.field(tag));
  } else if (tag == "as_none") {
    // PyTorch writes true; older writers an empty list. The value carries nothing.
  } else {
    detail::unknown_tag(w, "OptionalTensorArgument", tag);
  }
  return o;
}

Json optional_tensor_to_json(const OptionalTensorArg& o) {
  Json out = Json::object();
  if (o.present) {
    out["as_tensor"] = tensor_name_json(o.name);
  } else {
    out["as_none"] = true;
  }
  return out;
}

Graph read_graph(const Json& j, const Where& w);
Json graph_to_json(const Graph& g);

}  // namespace

// ------------------------------------------------------------------ TensorMeta

namespace {

TensorMeta read_tensor_meta(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  TensorMeta m;
  Where dw = w.field("dtype");
  int64_t dtype = detail::read_int(detail::require(j, "dtype", w), dw, "an integer dtype");
  auto dt = dtype_from_schema(dtype);
  if (!dt) fail(ErrorCode::kCorrupt, dw.str(), ": unknown dtype value ", dtype, " (not a schema ScalarType)");
  m.dtype = *dt;
  m.sizes = read_list<SymInt>(detail::require(j, "sizes", w), w.field("sizes"), read_sym_int);
  m.requires_grad = detail::read_bool(detail::require(j, "requires_grad", w), w.field("requires_grad"));
  m.device = read_device(detail::require(j, "device", w), w.field("device"));
  m.strides = read_list<SymInt>(detail::require(j, "strides", w), w.field("strides"), read_sym_int);
  m.storage_offset = read_sym_int(detail::require(j, "storage_offset", w), w.field("storage_offset"));
  m.layout = detail::read_int32(detail::require(j, "layout", w), w.field("layout"));
  m.unknown = detail::leftovers(
      j, {"dtype", "sizes", "requires_grad", "device", "strides", "storage_offset", "layout"});
  return m;
}

}  // namespace

TensorMeta parse_tensor_meta(const Json& j, const std::string& where) {
  return read_tensor_meta(j, Where{&where, ""});
}

Json tensor_meta_to_json(const TensorMeta& m) {
  Json out = Json::object();
  out["dtype"] = static_cast<int64_t>(m.dtype);
  Json sizes = Json::array();
  for (const auto& s : m.sizes) sizes.push_back(sym_int_to_json(s));
  out["sizes"] = std::move(sizes);
  out["requires_grad"] = m.requires_grad;
  out["device"] = device_to_json(m.device);
  Json strides = Json::array();
  for (const auto& s : m.strides) strides.push_back(sym_int_to_json(s));
  out["strides"] = std::move(strides);
  out["storage_offset"] = sym_int_to_json(m.storage_offset);
  out["layout"] = m.layout;
  detail::append_unknown(out, m.unknown);
  return out;
}

// ------------------------------------------------------------------ Argument

namespace {

Argument read_argument(const Json& j, const Where& w) {
  const std::string& tag = detail::union_tag(j, w, "Argument", kArgumentTags);
  const Json& v = j.front();
  const Where vw = w.field(tag);
  Argument a;
  if (tag == "as_none") {
    a.kind = ArgKind::kNone;
    if (!v.is_boolean() && !v.is_null() && !(v.is_array() && v.empty())) detail::type_error(vw, "true", v);
  } else if (tag == "as_tensor") {
    a.kind = ArgKind::kTensor;
    a.name = read_tensor_name(v, vw, &a.unknown);
  } else if (tag == "as_tensors") {
    a.kind = ArgKind::kTensors;
    if (!v.is_array()) detail::type_error(vw, "a tensor list for as_tensors", v);
    a.names = read_list<std::string>(v, vw, [](const Json& e, const Where& ew) { return read_tensor_name(e, ew); });
  } else if (tag == "as_int") {
    a.kind = ArgKind::kInt;
    a.i = detail::read_int(v, vw, "an integer for as_int");
  } else if (tag == "as_ints") {
    a.kind = ArgKind::kInts;
    if (!v.is_array()) detail::type_error(vw, "an integer list for as_ints", v);
    a.ints = read_int_list(v, vw);
  } else if (tag == "as_float") {
    a.kind = ArgKind::kFloat;
    a.f = detail::read_float(v, vw);
  } else if (tag == "as_floats") {
    a.kind = ArgKind::kFloats;
    if (!v.is_array()) detail::type_error(vw, "a float list for as_floats", v);
    a.floats = read_list<double>(v, vw, detail::read_float);
  } else if (tag == "as_string") {
    a.kind = ArgKind::kString;
    a.s = detail::read_string(v, vw);
  } else if (tag == "as_strings") {
    a.kind = ArgKind::kStrings;
    a.names = read_string_list(v, vw);
  } else if (tag == "as_sym_int") {
    a.kind = ArgKind::kSymInt;
    a.sym = read_sym_arg(v, vw, "as_int", "SymIntArgument");
  } else if (tag == "as_sym_ints") {
    a.kind = ArgKind::kSymInts;
    a.syms = read_list<SymArg>(
        v, vw, [](const Json& e, const Where& ew) { return read_sym_arg(e, ew, "as_int", "SymIntArgument"); });
  } else if (tag == "as_scalar_type") {
    a.kind = ArgKind::kScalarType;
    a.i = detail::read_int(v, vw, "an integer ScalarType");
    if (!dtype_from_schema(a.i)) fail(ErrorCode::kCorrupt, vw.str(), ": unknown dtype value ", a.i);
  } else if (tag == "as_memory_format") {
    a.kind = ArgKind::kMemoryFormat;
    a.i = detail::read_int(v, vw, "an integer MemoryFormat");
  } else if (tag == "as_layout") {
    a.kind = ArgKind::kLayout;
    a.i = detail::read_int(v, vw, "an integer Layout");
  } else if (tag == "as_device") {
    a.kind = ArgKind::kDevice;
    a.device = read_device(v, vw);
    a.unknown = detail::leftovers(v, {"type", "index"});
  } else if (tag == "as_bool") {
    a.kind = ArgKind::kBool;
    a.b = detail::read_bool(v, vw);
  } else if (tag == "as_bools") {
    a.kind = ArgKind::kBools;
    if (!v.is_array()) detail::type_error(vw, "a boolean list for as_bools", v);
    a.bools.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) a.bools.push_back(detail::read_bool(v[i], vw.index(i)));
  } else if (tag == "as_sym_bool") {
    a.kind = ArgKind::kSymBool;
    a.sym = read_sym_arg(v, vw, "as_bool", "SymBoolArgument");
  } else if (tag == "as_sym_bools") {
    a.kind = ArgKind::kSymBools;
    a.syms = read_list<SymArg>(
        v, vw, [](const Json& e, const Where& ew) { return read_sym_arg(e, ew, "as_bool", "SymBoolArgument"); });
  } else if (tag == "as_graph") {
    a.kind = ArgKind::kGraph;
    detail::expect_object(v, vw);
    a.graph.name = detail::read_string(detail::require(v, "name", vw), vw.field("name"));
    a.graph.graph = std::make_shared<Graph>(read_graph(detail::require(v, "graph", vw), vw.field("graph")));
    a.unknown = detail::leftovers(v, {"name", "graph"});
  } else if (tag == "as_optional_tensors") {
    a.kind = ArgKind::kOptionalTensors;
    a.opt_tensors = read_list<OptionalTensorArg>(v, vw, read_optional_tensor);
  } else if (tag == "as_custom_obj") {
    a.kind = ArgKind::kCustomObj;
    detail::expect_object(v, vw);
    a.name = detail::read_string(detail::require(v, "name", vw), vw.field("name"));
    a.class_fqn = detail::read_string(detail::require(v, "class_fqn", vw), vw.field("class_fqn"));
    a.unknown = detail::leftovers(v, {"name", "class_fqn"});
  } else if (tag == "as_operator") {
    a.kind = ArgKind::kOperator;
    a.s = detail::read_string(v, vw);
  } else if (tag == "as_sym_float") {
    a.kind = ArgKind::kSymFloat;
    a.sym = read_sym_arg(v, vw, "as_float", "SymFloatArgument");
  } else if (tag == "as_sym_floats") {
    a.kind = ArgKind::kSymFloats;
    a.syms = read_list<SymArg>(
        v, vw, [](const Json& e, const Where& ew) { return read_sym_arg(e, ew, "as_float", "SymFloatArgument"); });
  } else if (tag == "as_optional_tensor") {
    a.kind = ArgKind::kOptionalTensor;
    a.opt_tensor = read_optional_tensor(v, vw);
  } else if (tag == "as_complex") {
    a.kind = ArgKind::kComplex;
    detail::expect_object(v, vw);
    a.f = detail::read_float(detail::require(v, "real", vw), vw.field("real"));
    a.f_imag = detail::read_float(detail::require(v, "imag", vw), vw.field("imag"));
    a.unknown = detail::leftovers(v, {"real", "imag"});
  } else if (tag == "as_nested_tensors") {
    a.kind = ArgKind::kNestedTensors;
    a.nested_names = read_list<std::vector<std::string>>(v, vw, [](const Json& e, const Where& ew) {
      return read_list<std::string>(e, ew, [](const Json& t, const Where& tw) { return read_tensor_name(t, tw); });
    });
  } else if (tag == "as_int_lists") {
    a.kind = ArgKind::kIntLists;
    a.int_lists = read_list<std::vector<int64_t>>(v, vw, read_int_list);
  } else if (tag == "as_string_to_argument") {
    a.kind = ArgKind::kStringToArgument;
    if (!v.is_object()) detail::type_error(vw, "an object for as_string_to_argument", v);
    a.string_to_arg.reserve(v.size());
    for (const auto& [k, e] : v.items()) a.string_to_arg.emplace_back(k, read_argument(e, vw.field(k)));
  } else {
    detail::unknown_tag(w, "Argument", tag);
  }
  return a;
}

}  // namespace

Argument parse_argument(const Json& j, const std::string& where) { return read_argument(j, Where{&where, ""}); }

Json argument_to_json(const Argument& a) {
  Json v;
  switch (a.kind) {
    case ArgKind::kNone: v = true; break;
    case ArgKind::kTensor: v = tensor_name_json(a.name, a.unknown); break;
    case ArgKind::kTensors:
      v = Json::array();
      for (const auto& n : a.names) v.push_back(tensor_name_json(n));
      break;
    case ArgKind::kInt:
    case ArgKind::kScalarType:
    case ArgKind::kMemoryFormat:
    case ArgKind::kLayout: v = a.i; break;
    case ArgKind::kInts: v = a.ints; break;
    case ArgKind::kFloat: v = detail::float_to_json(a.f); break;
    case ArgKind::kFloats:
      v = Json::array();
      for (double f : a.floats) v.push_back(detail::float_to_json(f));
      break;
    case ArgKind::kString:
    case ArgKind::kOperator: v = a.s; break;
    case ArgKind::kStrings: v = a.names; break;
    case ArgKind::kSymInt: v = sym_arg_to_json(a.sym, "as_int"); break;
    case ArgKind::kSymBool: v = sym_arg_to_json(a.sym, "as_bool"); break;
    case ArgKind::kSymFloat: v = sym_arg_to_json(a.sym, "as_float"); break;
    case ArgKind::kSymInts:
    case ArgKind::kSymBools:
    case ArgKind::kSymFloats: {
      const char* tag = a.kind == ArgKind::kSymInts ? "as_int" : a.kind == ArgKind::kSymBools ? "as_bool" : "as_float";
      v = Json::array();
      for (const auto& s : a.syms) v.push_back(sym_arg_to_json(s, tag));
      break;
    }
    case ArgKind::kDevice:
      v = device_to_json(a.device);
      detail::append_unknown(v, a.unknown);
      break;
    case ArgKind::kBool: v = a.b; break;
    case ArgKind::kBools:
      v = Json::array();
      for (bool b : a.bools) v.push_back(b);
      break;
    case ArgKind::kGraph:
      v = Json::object();
      v["name"] = a.graph.name;
      v["graph"] = a.graph.graph ? graph_to_json(*a.graph.graph) : graph_to_json(Graph{});
      detail::append_unknown(v, a.unknown);
      break;
    case ArgKind::kOptionalTensors:
      v = Json::array();
      for (const auto& o : a.opt_tensors) v.push_back(optional_tensor_to_json(o));
      break;
    case ArgKind::kCustomObj:
      v = Json::object();
      v["name"] = a.name;
      v["class_fqn"] = a.class_fqn;
      detail::append_unknown(v, a.unknown);
      break;
    case ArgKind::kOptionalTensor: v = optional_tensor_to_json(a.opt_tensor); break;
    case ArgKind::kComplex:
      v = Json::object();
      v["real"] = detail::float_to_json(a.f);
      v["imag"] = detail::float_to_json(a.f_imag);
      detail::append_unknown(v, a.unknown);
      break;
    case ArgKind::kIntLists: v = a.int_lists; break;
    case ArgKind::kStringToArgument:
      v = Json::object();
      for (const auto& [k, e] : a.string_to_arg) v[k] = argument_to_json(e);
      break;
    case ArgKind::kNestedTensors:
      v = Json::array();
      for (const auto& list : a.nested_names) {
        Json inner = Json::array();
        for (const auto& n : list) inner.push_back(tensor_name_json(n));
        v.push_back(std::move(inner));
      }
      break;
  }
  Json out = Json::object();
  out[arg_kind_key(a.kind)] = std::move(v);
  return out;
}

// ------------------------------------------------------------------ Graph

namespace {

NamedArgument read_named_argument(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  NamedArgument n;
  n.name = detail::read_string(detail::require(j, "name", w), w.field("name"));
  n.arg = read_argument(detail::require(j, "arg", w), w.field("arg"));
  if (const Json* k = detail::optional(j, "kind"); k && !k->is_null()) n.kind = detail::read_int32(*k, w.field("kind"));
  n.unknown = detail::leftovers(j, {"name", "arg", "kind"});
  return n;
}

Node read_node(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  Node n;
  n.target = detail::read_string(detail::require(j, "target", w), w.field("target"));
  n.inputs = read_list<NamedArgument>(detail::require(j, "inputs", w), w.field("inputs"), read_named_argument);
  n.outputs = read_list<Argument>(detail::require(j, "outputs", w), w.field("outputs"), read_argument);
  n.metadata = read_string_map(detail::require(j, "metadata", w), w.field("metadata"));
  if (const Json* h = detail::optional(j, "is_hop_single_tensor_return"); h && !h->is_null())
    n.is_hop_single_tensor_return = detail::read_bool(*h, w.field("is_hop_single_tensor_return"));
  if (const Json* nm = detail::optional(j, "name"); nm && !nm->is_null())
    n.name = detail::read_string(*nm, w.field("name"));
  n.unknown = detail::leftovers(j, {"target", "inputs", "outputs", "metadata", "is_hop_single_tensor_return", "name"});
  return n;
}

Json node_to_json(const Node& n) {
  Json out = Json::object();
  out["target"] = n.target;
  Json inputs = Json::array();
  for (const auto& in : n.inputs) {
    Json a = Json::object();
    a["name"] = in.name;
    a["arg"] = argument_to_json(in.arg);
    a["kind"] = in.kind ? Json(*in.kind) : Json(nullptr);
    detail::append_unknown(a, in.unknown);
    inputs.push_back(std::move(a));
  }
  out["inputs"] = std::move(inputs);
  Json outputs = Json::array();
  for (const auto& o : n.outputs) outputs.push_back(argument_to_json(o));
  out["outputs"] = std::move(outputs);
  out["metadata"] = string_map_to_json(n.metadata);
  out["is_hop_single_tensor_return"] =
      n.is_hop_single_tensor_return ? Json(*n.is_hop_single_tensor_return) : Json(nullptr);
  out["name"] = n.name ? Json(*n.name) : Json(nullptr);
  detail::append_unknown(out, n.unknown);
  return out;
}

template <typename T, typename F>
std::map<std::string, T> read_table(const Json& j, const Where& w, F&& read_one) {
  if (!j.is_object()) detail::type_error(w, "an object keyed by value name", j);
  std::map<std::string, T> out;
  for (const auto& [k, v] : j.items()) out.emplace(k, read_one(v, w.field(k)));
  return out;
}

template <typename T, typename F>
Json table_to_json(const std::map<std::string, T>& m, F&& to_json) {
  Json out = Json::object();
  for (const auto& [k, v] : m) out[k] = to_json(v);
  return out;
}

CustomObjArgument read_custom_obj(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  CustomObjArgument c;
  c.name = detail::read_string(detail::require(j, "name", w), w.field("name"));
  c.class_fqn = detail::read_string(detail::require(j, "class_fqn", w), w.field("class_fqn"));
  return c;
}

Graph read_graph(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  Graph g;
  g.inputs = read_list<Argument>(detail::require(j, "inputs", w), w.field("inputs"), read_argument);
  g.outputs = read_list<Argument>(detail::require(j, "outputs", w), w.field("outputs"), read_argument);
  g.nodes = read_list<Node>(detail::require(j, "nodes", w), w.field("nodes"), read_node);
  g.tensor_values =
      read_table<TensorMeta>(detail::require(j, "tensor_values", w), w.field("tensor_values"), read_tensor_meta);
  g.sym_int_values =
      read_table<SymInt>(detail::require(j, "sym_int_values", w), w.field("sym_int_values"), read_sym_int);
  g.sym_bool_values =
      read_table<SymBool>(detail::require(j, "sym_bool_values", w), w.field("sym_bool_values"), read_sym_bool);
  if (const Json* s = detail::optional(j, "is_single_tensor_return"))
    g.is_single_tensor_return = detail::read_bool(*s, w.field("is_single_tensor_return"));
  if (const Json* c = detail::optional(j, "custom_obj_values"))
    g.custom_obj_values = read_table<CustomObjArgument>(*c, w.field("custom_obj_values"), read_custom_obj);
  if (const Json* f = detail::optional(j, "sym_float_values"))
    g.sym_float_values = read_table<SymFloat>(*f, w.field("sym_float_values"), read_sym_float);
  g.unknown = detail::leftovers(j, {"inputs", "outputs", "nodes", "tensor_values", "sym_int_values", "sym_bool_values",
                                    "is_single_tensor_return", "custom_obj_values", "sym_float_values"});
  return g;
}

Json graph_to_json(const Graph& g) {
  Json out = Json::object();
  Json inputs = Json::array();
  for (const auto& a : g.inputs) inputs.push_back(argument_to_json(a));
  out["inputs"] = std::move(inputs);
  Json outputs = Json::array();
  for (const auto& a : g.outputs) outputs.push_back(argument_to_json(a));
  out["outputs"] = std::move(outputs);
  Json nodes = Json::array();
  for (const auto& n : g.nodes) nodes.push_back(node_to_json(n));
  out["nodes"] = std::move(nodes);
  out["tensor_values"] = table_to_json(g.tensor_values, tensor_meta_to_json);
  out["sym_int_values"] = table_to_json(g.sym_int_values, sym_int_to_json);
  out["sym_bool_values"] = table_to_json(g.sym_bool_values, sym_bool_to_json);
  out["is_single_tensor_return"] = g.is_single_tensor_return;
  out["custom_obj_values"] = table_to_json(g.custom_obj_values, [](const CustomObjArgument& c) {
    Json o = Json::object();
    o["name"] = c.name;
    o["class_fqn"] = c.class_fqn;
    return o;
  });
  out["sym_float_values"] = table_to_json(g.sym_float_values, sym_float_to_json);
  detail::append_unknown(out, g.unknown);
  return out;
}

// ------------------------------------------------------------------ signature

constexpr std::string_view kInputSpecTags =
    "user_input, parameter, buffer, tensor_constant, custom_obj, token, constant_input";
constexpr std::string_view kOutputSpecTags =
    "user_output, loss_output, buffer_mutation, gradient_to_parameter, gradient_to_user_input, "
    "user_input_mutation, token, parameter_mutation";

Argument read_tensor_arg(const Json& payload, const Where& w) {
  Where aw = w.field("arg");
  Argument a = Argument::tensor(read_tensor_name(detail::require(payload, "arg", w), aw));
  return a;
}

// ConstantValue: {as_none | as_int | as_float | as_string | as_bool}.
Argument read_constant_value(const Json& j, const Where& w) {
  const std::string& tag =
      detail::union_tag(j, w, "ConstantValue", "as_none, as_int, as_float, as_string, as_bool");
  const std::string_view t = tag;
  if (t != "as_none" && t != "as_int" && t != "as_float" && t != "as_string" && t != "as_bool")
    detail::unknown_tag(w, "ConstantValue", tag);
  return read_argument(j, w);
}

InputSpec read_input_spec(const Json& j, const Where& w) {
  const std::string& tag = detail::union_tag(j, w, "InputSpec", kInputSpecTags);
  const Json& p = detail::expect_object(j.front(), w.field(tag));
  const Where pw = w.field(tag);
  InputSpec s;
  auto target = [&](const char* key) { return detail::read_string(detail::require(p, key, pw), pw.field(key)); };
  if (tag == "user_input") {
    s.kind = InputKind::kUserInput;
    s.arg = read_argument(detail::require(p, "arg", pw), pw.field("arg"));
    s.unknown = detail::leftovers(p, {"arg"});
  } else if (tag == "parameter") {
    s.kind = InputKind::kParameter;
    s.arg = read_tensor_arg(p, pw);
    s.target = target("parameter_name");
    s.unknown = detail::leftovers(p, {"arg", "parameter_name"});
  } else if (tag == "buffer") {
    s.kind = InputKind::kBuffer;
    s.arg = read_tensor_arg(p, pw);
    s.target = target("buffer_name");
    if (const Json* per = detail::optional(p, "persistent"); per && !per->is_null())
      s.persistent = detail::read_bool(*per, pw.field("persistent"));
    s.unknown = detail::leftovers(p, {"arg", "buffer_name", "persistent"});
  } else if (tag == "tensor_constant") {
    s.kind = InputKind::kTensorConstant;
    s.arg = read_tensor_arg(p, pw);
    s.target = target("tensor_constant_name");
    s.unknown = detail::leftovers(p, {"arg", "tensor_constant_name"});
  } else if (tag == "custom_obj") {
    s.kind = InputKind::kCustomObj;
    CustomObjArgument c = read_custom_obj(detail::require(p, "arg", pw), pw.field("arg"));
    s.arg.kind = ArgKind::kCustomObj;
    s.arg.name = c.name;
    s.arg.class_fqn = c.class_fqn;
    s.target = target("custom_obj_name");
    s.unknown = detail::leftovers(p, {"arg", "custom_obj_name"});
  } else if (tag == "token") {
    s.kind = InputKind::kToken;
    s.arg = read_tensor_arg(p, pw);
    s.unknown = detail::leftovers(p, {"arg"});
  } else if (tag == "constant_input") {
    s.kind = InputKind::kConstantInput;
    s.target = target("name");
    s.arg = read_constant_value(detail::require(p, "value", pw), pw.field("value"));
    s.unknown = detail::leftovers(p, {"name", "value"});
  } else {
    detail::unknown_tag(w, "InputSpec", tag);
  }
  return s;
}

Json input_spec_to_json(const InputSpec& s) {
  Json p = Json::object();
  switch (s.kind) {
    case InputKind::kUserInput: p["arg"] = argument_to_json(s.arg); break;
    case InputKind::kParameter:
      p["arg"] = tensor_name_json(s.arg.name);
      p["parameter_name"] = s.target;
      break;
    case InputKind::kBuffer:
      p["arg"] = tensor_name_json(s.arg.name);
      p["buffer_name"] = s.target;
      p["persistent"] = s.persistent ? Json(*s.persistent) : Json(nullptr);
      break;
    case InputKind::kTensorConstant:
      p["arg"] = tensor_name_json(s.arg.name);
      p["tensor_constant_name"] = s.target;
      break;
    case InputKind::kCustomObj:
      p["arg"] = Json::object();
      p["arg"]["name"] = s.arg.name;
      p["arg"]["class_fqn"] = s.arg.class_fqn;
      p["custom_obj_name"] = s.target;
      break;
    case InputKind::kToken: p["arg"] = tensor_name_json(s.arg.name); break;
    case InputKind::kConstantInput:
      p["name"] = s.target;
      p["value"] = argument_to_json(s.arg);
      break;
  }
  detail::append_unknown(p, s.unknown);
  Json out = Json::object();
  out[input_kind_key(s.kind)] = std::move(p);
  return out;
}

OutputSpec read_output_spec(const Json& j, const Where& w) {
  const std::string& tag = detail::union_tag(j, w, "OutputSpec", kOutputSpecTags);
  const Json& p = detail::expect_object(j.front(), w.field(tag));
  const Where pw = w.field(tag);
  OutputSpec s;
  const char* target_key = nullptr;
  if (tag == "user_output") {
    s.kind = OutputKind::kUserOutput;
    s.arg = read_argument(detail::require(p, "arg", pw), pw.field("arg"));
  } else {
    if (tag == "loss_output") {
      s.kind = OutputKind::kLossOutput;
    } else if (tag == "buffer_mutation") {
      s.kind = OutputKind::kBufferMutation;
      target_key = "buffer_name";
    } else if (tag == "gradient_to_parameter") {
      s.kind = OutputKind::kGradientToParameter;
      target_key = "parameter_name";
    } else if (tag == "gradient_to_user_input") {
      s.kind = OutputKind::kGradientToUserInput;
      target_key = "user_input_name";
    } else if (tag == "user_input_mutation") {
      s.kind = OutputKind::kUserInputMutation;
      target_key = "user_input_name";
    } else if (tag == "token") {
      s.kind = OutputKind::kToken;
    } else if (tag == "parameter_mutation") {
      s.kind = OutputKind::kParameterMutation;
      target_key = "parameter_name";
    } else {
      detail::unknown_tag(w, "OutputSpec", tag);
    }
    s.arg = read_tensor_arg(p, pw);
    if (target_key) s.target = detail::read_string(detail::require(p, target_key, pw), pw.field(target_key));
  }
  s.unknown = target_key ? detail::leftovers(p, {"arg", target_key}) : detail::leftovers(p, {"arg"});
  return s;
}

const char* output_target_key(OutputKind k) {
  switch (k) {
    case OutputKind::kBufferMutation: return "buffer_name";
    case OutputKind::kGradientToParameter:
    case OutputKind::kParameterMutation: return "parameter_name";
    case OutputKind::kGradientToUserInput:
    case OutputKind::kUserInputMutation: return "user_input_name";
    default: return nullptr;
  }
}

Json output_spec_to_json(const OutputSpec& s) {
  Json p = Json::object();
  if (s.kind == OutputKind::kUserOutput) {
    p["arg"] = argument_to_json(s.arg);
  } else {
    p["arg"] = tensor_name_json(s.arg.name);
    if (const char* key = output_target_key(s.kind)) p[key] = s.target;
  }
  detail::append_unknown(p, s.unknown);
  Json out = Json::object();
  out[output_kind_key(s.kind)] = std::move(p);
  return out;
}

GraphSignature read_signature(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  GraphSignature s;
  s.input_specs = read_list<InputSpec>(detail::require(j, "input_specs", w), w.field("input_specs"), read_input_spec);
  s.output_specs =
      read_list<OutputSpec>(detail::require(j, "output_specs", w), w.field("output_specs"), read_output_spec);
  s.unknown = detail::leftovers(j, {"input_specs", "output_specs"});
  return s;
}

// ------------------------------------------------------------------ module call graph

ModuleCallSignature read_call_signature(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  ModuleCallSignature s;
  s.inputs = read_list<Argument>(detail::require(j, "inputs", w), w.field("inputs"), read_argument);
  s.outputs = read_list<Argument>(detail::require(j, "outputs", w), w.field("outputs"), read_argument);
  s.in_spec = detail::read_string(detail::require(j, "in_spec", w), w.field("in_spec"));
  s.out_spec = detail::read_string(detail::require(j, "out_spec", w), w.field("out_spec"));
  if (const Json* f = detail::optional(j, "forward_arg_names"); f && !f->is_null())
    s.forward_arg_names = read_string_list(*f, w.field("forward_arg_names"));
  s.unknown = detail::leftovers(j, {"inputs", "outputs", "in_spec", "out_spec", "forward_arg_names"});
  return s;
}

ModuleCallEntry read_call_entry(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  ModuleCallEntry e;
  e.fqn = detail::read_string(detail::require(j, "fqn", w), w.field("fqn"));
  if (const Json* s = detail::optional(j, "signature"); s && !s->is_null())
    e.signature = read_call_signature(*s, w.field("signature"));
  e.unknown = detail::leftovers(j, {"fqn", "signature"});
  return e;
}

Json call_entry_to_json(const ModuleCallEntry& e) {
  Json out = Json::object();
  out["fqn"] = e.fqn;
  if (e.signature) {
    const ModuleCallSignature& s = *e.signature;
    Json sig = Json::object();
    Json inputs = Json::array();
    for (const auto& a : s.inputs) inputs.push_back(argument_to_json(a));
    sig["inputs"] = std::move(inputs);
    Json outputs = Json::array();
    for (const auto& a : s.outputs) outputs.push_back(argument_to_json(a));
    sig["outputs"] = std::move(outputs);
    sig["in_spec"] = s.in_spec;
    sig["out_spec"] = s.out_spec;
    sig["forward_arg_names"] = s.forward_arg_names ? Json(*s.forward_arg_names) : Json(nullptr);
    detail::append_unknown(sig, s.unknown);
    out["signature"] = std::move(sig);
  } else {
    out["signature"] = nullptr;
  }
  detail::append_unknown(out, e.unknown);
  return out;
}

// ------------------------------------------------------------------ top level

// Range bounds: null (unbounded), an integer, or something PyTorch never writes for a
// finite bound (an integer beyond 64 bits, a float, "Infinity"): all read as unbounded.
std::optional<int64_t> read_bound(const Json& j, const Where& w) {
  if (j.is_null()) return std::nullopt;
  if (j.is_number_integer() && !j.is_number_unsigned()) return j.get<int64_t>();
  if (j.is_number_unsigned()) {
    uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (j.is_number_float()) {
    double d = j.get<double>();
    if (std::isinf(d) || std::fabs(d) >= 9.2e18) return std::nullopt;
    fail(ErrorCode::kCorrupt, w.str(), ": expected an integer bound or null, found float ", d);
  }
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == "Infinity" || s == "-Infinity" || s == "inf" || s == "-inf" || s == "oo" || s == "-oo" ||
        s == "int_oo" || s == "-int_oo")
      return std::nullopt;
  }
  detail::type_error(w, "an integer bound or null", j);
}

RangeConstraint read_range(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  RangeConstraint r;
  r.min_val = read_bound(detail::require(j, "min_val", w), w.field("min_val"));
  r.max_val = read_bound(detail::require(j, "max_val", w), w.field("max_val"));
  r.unknown = detail::leftovers(j, {"min_val", "max_val"});
  return r;
}

NamedTupleDef read_namedtuple_def(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  NamedTupleDef d;
  d.field_names = read_string_list(detail::require(j, "field_names", w), w.field("field_names"));
  d.unknown = detail::leftovers(j, {"field_names"});
  return d;
}

GraphModule read_graph_module(const Json& j, const Where& w) {
  detail::expect_object(j, w);
  GraphModule m;
  m.graph = read_graph(detail::require(j, "graph", w), w.field("graph"));
  m.signature = read_signature(detail::require(j, "signature", w), w.field("signature"));
  m.module_call_graph = read_list<ModuleCallEntry>(detail::require(j, "module_call_graph", w),
                                                   w.field("module_call_graph"), read_call_entry);
  if (const Json* md = detail::optional(j, "metadata")) m.metadata = read_string_map(*md, w.field("metadata"));
  if (const Json* nt = detail::optional(j, "treespec_namedtuple_fields"))
    m.treespec_namedtuple_fields =
        read_table<NamedTupleDef>(*nt, w.field("treespec_namedtuple_fields"), read_namedtuple_def);
  m.unknown =
      detail::leftovers(j, {"graph", "signature", "module_call_graph", "metadata", "treespec_namedtuple_fields"});
  return m;
}

}  // namespace

ExportedProgram parse_exported_program(std::string_view json_text, const std::string& source) {
  Json root = parse_json(json_text, source);
  const Where w{&source, ""};
  detail::expect_object(root, w);

  // The version first: a different major may have a different layout altogether.
  const Where vw = w.field("schema_version");
  const Json& v = detail::expect_object(detail::require(root, "schema_version", w), vw);
  ExportedProgram p;
  p.schema_version.major = detail::read_int(detail::require(v, "major", vw), vw.field("major"));
  p.schema_version.minor = detail::read_int(detail::require(v, "minor", vw), vw.field("minor"));
  if (p.schema_version.major != 8)
    fail(ErrorCode::kVersionMismatch, source, ": expected schema 8.x, found ", p.schema_version.major, ".",
         p.schema_version.minor);

  p.graph_module = read_graph_module(detail::require(root, "graph_module", w), w.field("graph_module"));
  p.opset_version = read_table<int64_t>(detail::require(root, "opset_version", w), w.field("opset_version"),
                                        [](const Json& e, const Where& ew) { return detail::read_int(e, ew); });
  p.range_constraints =
      read_table<RangeConstraint>(detail::require(root, "range_constraints", w), w.field("range_constraints"), read_range);
  if (const Json* vf = detail::optional(root, "verifiers"); vf && !vf->is_null())
    p.verifiers = read_string_list(*vf, w.field("verifiers"));
  p.torch_version = "<=2.4";  // schema default
  if (const Json* tv = detail::optional(root, "torch_version"); tv && !tv->is_null())
    p.torch_version = detail::read_string(*tv, w.field("torch_version"));
  if (const Json* gc = detail::optional(root, "guards_code"); gc && !gc->is_null())
    p.guards_code = read_string_list(*gc, w.field("guards_code"));
  p.unknown = detail::leftovers(root, {"graph_module", "opset_version", "range_constraints", "schema_version",
                                       "verifiers", "torch_version", "guards_code"});
  return p;
}

std::string serialize_exported_program(const ExportedProgram& p) {
  Json root = Json::object();
  const GraphModule& m = p.graph_module;
  Json gm = Json::object();
  gm["graph"] = graph_to_json(m.graph);
  Json sig = Json::object();
  Json ins = Json::array();
  for (const auto& s : m.signature.input_specs) ins.push_back(input_spec_to_json(s));
  sig["input_specs"] = std::move(ins);
  Json outs = Json::array();
  for (const auto& s : m.signature.output_specs) outs.push_back(output_spec_to_json(s));
  sig["output_specs"] = std::move(outs);
  detail::append_unknown(sig, m.signature.unknown);
  gm["signature"] = std::move(sig);
  Json calls = Json::array();
  for (const auto& e : m.module_call_graph) calls.push_back(call_entry_to_json(e));
  gm["module_call_graph"] = std::move(calls);
  gm["metadata"] = string_map_to_json(m.metadata);
  gm["treespec_namedtuple_fields"] = table_to_json(m.treespec_namedtuple_fields, [](const NamedTupleDef& d) {
    Json o = Json::object();
    o["field_names"] = d.field_names;
    detail::append_unknown(o, d.unknown);
    return o;
  });
  detail::append_unknown(gm, m.unknown);
  root["graph_module"] = std::move(gm);

  root["opset_version"] = table_to_json(p.opset_version, [](int64_t v) { return Json(v); });
  root["range_constraints"] = table_to_json(p.range_constraints, [](const RangeConstraint& r) {
    Json o = Json::object();
    o["min_val"] = r.min_val ? Json(*r.min_val) : Json(nullptr);
    o["max_val"] = r.max_val ? Json(*r.max_val) : Json(nullptr);
    detail::append_unknown(o, r.unknown);
    return o;
  });
  Json version = Json::object();
  version["major"] = p.schema_version.major;
  version["minor"] = p.schema_version.minor;
  root["schema_version"] = std::move(version);
  root["verifiers"] = p.verifiers;
  root["torch_version"] = p.torch_version;
  root["guards_code"] = p.guards_code;
  detail::append_unknown(root, p.unknown);
  return root.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

}  // namespace ember::ir
