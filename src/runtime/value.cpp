#include "ember/value.h"

#include <algorithm>

#include "ember/error.h"

namespace ember {

const char* value_kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::kNone: return "None";
    case Value::Kind::kTensor: return "Tensor";
    case Value::Kind::kInt: return "int";
    case Value::Kind::kDouble: return "float";
    case Value::Kind::kBool: return "bool";
    case Value::Kind::kString: return "str";
    case Value::Kind::kTuple: return "tuple";
    case Value::Kind::kList: return "list";
    case Value::Kind::kDict: return "dict";
    case Value::Kind::kNamedTuple: return "namedtuple";
  }
  return "?";
}

namespace {

[[noreturn]] void wrong_kind(Value::Kind expected, Value::Kind found) {
  fail(ErrorCode::kInvalidArgument, "expected a ", value_kind_name(expected), " value, found ", value_kind_name(found));
}

}  // namespace

Value::Value(Tensor t) : kind_(Kind::kTensor), tensor_(std::move(t)) {}

Value Value::from_int(int64_t v) {
  Value r;
  r.kind_ = Kind::kInt;
  r.i_ = v;
  return r;
}

Value Value::from_double(double v) {
  Value r;
  r.kind_ = Kind::kDouble;
  r.d_ = v;
  return r;
}

Value Value::from_bool(bool v) {
  Value r;
  r.kind_ = Kind::kBool;
  r.b_ = v;
  return r;
}

Value Value::from_string(std::string v) {
  Value r;
  r.kind_ = Kind::kString;
  r.s_ = std::move(v);
  return r;
}

Value Value::tuple(std::vector<Value> items) {
  Value r;
  r.kind_ = Kind::kTuple;
  r.items_ = std::move(items);
  return r;
}

Value Value::list(std::vector<Value> items) {
  Value r;
  r.kind_ = Kind::kList;
  r.items_ = std::move(items);
  return r;
}

Value Value::dict(std::vector<std::pair<std::string, Value>> items) {
  Value r;
  r.kind_ = Kind::kDict;
  r.keys_.reserve(items.size());
  r.items_.reserve(items.size());
  for (auto& [key, value] : items) {
    EMBER_CHECK(std::find(r.keys_.begin(), r.keys_.end(), key) == r.keys_.end(), ErrorCode::kInvalidArgument,
                "duplicate dict key '", key, "'");
    r.keys_.push_back(key);
    r.items_.push_back(std::move(value));
  }
  return r;
}

Value Value::named_tuple(std::string type_name, std::vector<std::string> fields, std::vector<Value> items) {
  EMBER_CHECK(fields.size() == items.size(), ErrorCode::kInvalidArgument, "namedtuple ", type_name, " has ",
              fields.size(), " field names but ", items.size(), " values");
  Value r;
  r.kind_ = Kind::kNamedTuple;
  r.type_name_ = std::move(type_name);
  r.keys_ = std::move(fields);
  r.items_ = std::move(items);
  return r;
}

const Tensor& Value::tensor() const {
  if (kind_ != Kind::kTensor) wrong_kind(Kind::kTensor, kind_);
  return tensor_;
}

int64_t Value::to_int() const {
  if (kind_ == Kind::kBool) return b_ ? 1 : 0;
  if (kind_ != Kind::kInt) wrong_kind(Kind::kInt, kind_);
  return i_;
}

double Value::to_double() const {
  if (kind_ == Kind::kInt) return static_cast<double>(i_);
  if (kind_ != Kind::kDouble) wrong_kind(Kind::kDouble, kind_);
  return d_;
}

bool Value::to_bool() const {
  if (kind_ != Kind::kBool) wrong_kind(Kind::kBool, kind_);
  return b_;
}

const std::string& Value::str() const {
  if (kind_ != Kind::kString) wrong_kind(Kind::kString, kind_);
  return s_;
}

size_t Value::size() const {
  EMBER_CHECK(is_container(), ErrorCode::kInvalidArgument, "size() of a ", value_kind_name(kind_), " value");
  return items_.size();
}

const Value& Value::operator[](size_t i) const {
  EMBER_CHECK(i < size(), ErrorCode::kInvalidArgument, "index ", i, " out of range for a ", value_kind_name(kind_),
              " of ", items_.size(), " items");
  return items_[i];
}

Value& Value::operator[](size_t i) {
  EMBER_CHECK(i < size(), ErrorCode::kInvalidArgument, "index ", i, " out of range for a ", value_kind_name(kind_),
              " of ", items_.size(), " items");
  return items_[i];
}

const std::vector<Value>& Value::items() const {
  EMBER_CHECK(is_container(), ErrorCode::kInvalidArgument, "items() of a ", value_kind_name(kind_), " value");
  return items_;
}

const std::vector<std::string>& Value::keys() const { return keys_; }

bool Value::contains(std::string_view key) const {
  return std::find(keys_.begin(), keys_.end(), key) != keys_.end();
}

const Value& Value::at(std::string_view key) const {
  EMBER_CHECK(kind_ == Kind::kDict || kind_ == Kind::kNamedTuple, ErrorCode::kInvalidArgument, "lookup of key '", key,
              "' in a ", value_kind_name(kind_), " value");
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it == keys_.end()) {
    std::string present;
    for (const auto& k : keys_) present += (present.empty() ? "'" : ", '") + k + "'";
    fail(ErrorCode::kNotFound, "key '", key, "' not found (keys: ", present.empty() ? "none" : present, ")");
  }
  return items_[static_cast<size_t>(it - keys_.begin())];
}

bool Value::same_structure(const Value& other) const {
  if (kind_ != other.kind_) return false;
  if (is_leaf()) return true;
  if (items_.size() != other.items_.size() || keys_ != other.keys_ || type_name_ != other.type_name_) return false;
  for (size_t i = 0; i < items_.size(); ++i)
    if (!items_[i].same_structure(other.items_[i])) return false;
  return true;
}

std::string Value::to_string() const {
  switch (kind_) {
    case Kind::kNone: return "None";
    case Kind::kTensor: return tensor_.to_string();
    case Kind::kInt: return std::to_string(i_);
    case Kind::kDouble: return cat(d_);
    case Kind::kBool: return b_ ? "True" : "False";
    case Kind::kString: return "'" + s_ + "'";
    default: break;
  }
  std::string out;
  const char* open = kind_ == Kind::kList ? "[" : kind_ == Kind::kDict ? "{" : "(";
  const char* close = kind_ == Kind::kList ? "]" : kind_ == Kind::kDict ? "}" : ")";
  if (kind_ == Kind::kNamedTuple) out += type_name_;
  out += open;
  for (size_t i = 0; i < items_.size(); ++i) {
    if (i) out += ", ";
    if (kind_ == Kind::kDict) out += "'" + keys_[i] + "': ";
    if (kind_ == Kind::kNamedTuple) out += keys_[i] + "=";
    out += items_[i].to_string();
  }
  if (kind_ == Kind::kTuple && items_.size() == 1) out += ",";
  return out + close;
}

// ---------------------------------------------------------------- pytree

namespace {

// Dict keys recorded in a spec's context (a JSON array); non-string keys are rendered as JSON.
std::vector<std::string> spec_keys(const ir::TreeSpec& spec, const std::string& where) {
  std::vector<std::string> keys;
  if (spec.context.is_array()) {
    for (const auto& k : spec.context) keys.push_back(k.is_string() ? k.get<std::string>() : k.dump());
  }
  EMBER_CHECK(keys.size() == spec.children.size(), ErrorCode::kInvalidArgument, where, ": dict spec has ",
              keys.size(), " keys but ", spec.children.size(), " children");
  return keys;
}

std::string spec_type_name(const ir::TreeSpec& spec) {
  if (spec.context.is_string()) return spec.context.get<std::string>();
  return spec.type;
}

const char* spec_kind_name(ir::TreeSpec::Kind k) {
  switch (k) {
    case ir::TreeSpec::Kind::kLeaf: return "leaf";
    case ir::TreeSpec::Kind::kNone: return "None";
    case ir::TreeSpec::Kind::kTuple: return "tuple";
    case ir::TreeSpec::Kind::kList: return "list";
    case ir::TreeSpec::Kind::kDict: return "dict";
    case ir::TreeSpec::Kind::kNamedTuple: return "namedtuple";
    case ir::TreeSpec::Kind::kOrderedDict: return "OrderedDict";
    case ir::TreeSpec::Kind::kDefaultDict: return "defaultdict";
    case ir::TreeSpec::Kind::kOther: return "custom node";
  }
  return "?";
}

void flatten_into(const Value& v, const ir::TreeSpec& spec, const std::string& path, std::vector<Value>& out) {
  using K = ir::TreeSpec::Kind;
  switch (spec.kind) {
    case K::kLeaf: out.push_back(v); return;
    case K::kNone:
      EMBER_CHECK(v.is_none(), ErrorCode::kInvalidArgument, path, ": expected None, found ", value_kind_name(v.kind()));
      return;
    case K::kTuple:
    case K::kList:
    case K::kNamedTuple: {
      // A namedtuple is accepted where a tuple is expected and vice versa (PyTorch compares
      // structures by type, but callers building Values by hand rarely know the type name).
      bool ok = v.kind() == Value::Kind::kTuple || v.kind() == Value::Kind::kNamedTuple ||
                (spec.kind == K::kList && v.kind() == Value::Kind::kList);
      EMBER_CHECK(ok, ErrorCode::kInvalidArgument, path, ": expected a ", spec_kind_name(spec.kind), " of ",
                  spec.children.size(), " items, found ", value_kind_name(v.kind()));
      EMBER_CHECK(v.size() == spec.children.size(), ErrorCode::kInvalidArgument, path, ": expected a ",
                  spec_kind_name(spec.kind), " of ", spec.children.size(), " items, found ", v.size());
      for (size_t i = 0; i < spec.children.size(); ++i)
        flatten_into(v[i], spec.children[i], cat(path, "[", i, "]"), out);
      return;
    }
    case K::kDict:
    case K::kOrderedDict:
    case K::kDefaultDict: {
      EMBER_CHECK(v.kind() == Value::Kind::kDict, ErrorCode::kInvalidArgument, path, ": expected a dict of ",
                  spec.children.size(), " keys, found ", value_kind_name(v.kind()));
      std::vector<std::string> keys = spec_keys(spec, path);
      EMBER_CHECK(v.size() == keys.size(), ErrorCode::kInvalidArgument, path, ": expected a dict of ", keys.size(),
                  " keys, found ", v.size(), " keys");
      for (size_t i = 0; i < keys.size(); ++i) {
        EMBER_CHECK(v.contains(keys[i]), ErrorCode::kInvalidArgument, path, ": dict key '", keys[i], "' is missing");
        flatten_into(v.at(keys[i]), spec.children[i], cat(path, "['", keys[i], "']"), out);
      }
      return;
    }
    case K::kOther: fail(ErrorCode::kUnsupported, path, ": pytree node type '", spec.type, "' is not supported");
  }
}

Value unflatten_from(const ir::TreeSpec& spec, std::vector<Value>& leaves, size_t& next,
                     const NamedTupleFields& fields) {
  using K = ir::TreeSpec::Kind;
  auto children = [&] {
    std::vector<Value> items;
    items.reserve(spec.children.size());
    for (const auto& c : spec.children) items.push_back(unflatten_from(c, leaves, next, fields));
    return items;
  };
  switch (spec.kind) {
    case K::kLeaf:
      EMBER_CHECK(next < leaves.size(), ErrorCode::kInvalidArgument, "pytree spec needs more than ", leaves.size(),
                  " leaves");
      return std::move(leaves[next++]);
    case K::kNone: return Value::none();
    case K::kTuple: return Value::tuple(children());
    case K::kList: return Value::list(children());
    case K::kNamedTuple: {
      std::string type = spec_type_name(spec);
      std::vector<Value> items = children();
      std::vector<std::string> names;
      auto it = fields.find(type);
      if (it != fields.end() && it->second.field_names.size() == items.size()) {
        names = it->second.field_names;
      } else {
        for (size_t i = 0; i < items.size(); ++i) names.push_back(cat("_", i));
      }
      return Value::named_tuple(type, std::move(names), std::move(items));
    }
    case K::kDict:
    case K::kOrderedDict:
    case K::kDefaultDict: {
      std::vector<std::string> keys = spec_keys(spec, "output");
      std::vector<Value> items = children();
      std::vector<std::pair<std::string, Value>> kv;
      for (size_t i = 0; i < keys.size(); ++i) kv.emplace_back(keys[i], std::move(items[i]));
      return Value::dict(std::move(kv));
    }
    case K::kOther: fail(ErrorCode::kUnsupported, "pytree node type '", spec.type, "' is not supported");
  }
  return Value::none();
}

void leaves_into(const Value& v, std::vector<Value>& out) {
  if (v.is_leaf()) {
    if (!v.is_none()) out.push_back(v);
    return;
  }
  for (const Value& item : v.items()) leaves_into(item, out);
}

}  // namespace

std::vector<Value> flatten(const Value& value, const ir::TreeSpec& spec, const std::string& where) {
  std::vector<Value> out;
  out.reserve(spec.num_leaves());
  flatten_into(value, spec, where, out);
  return out;
}

Value unflatten(const ir::TreeSpec& spec, std::vector<Value> leaves, const NamedTupleFields& fields) {
  size_t next = 0;
  Value v = unflatten_from(spec, leaves, next, fields);
  EMBER_CHECK(next == leaves.size(), ErrorCode::kInvalidArgument, "pytree spec has ", next, " leaves but ",
              leaves.size(), " values were given");
  return v;
}

std::vector<Value> tree_leaves(const Value& value) {
  std::vector<Value> out;
  leaves_into(value, out);
  return out;
}

}  // namespace ember
