// Values passed to and returned by a program: PyTorch pytrees.
//
// A Value is a leaf (None, Tensor, int, float, bool, string) or a container (tuple, list,
// dict with string keys in insertion order, namedtuple with a type name and field names).
// flatten()/unflatten() convert between a Value and its leaves in the order PyTorch's
// torch.utils._pytree.tree_flatten uses, guided by a serialized TreeSpec (ir::TreeSpec).
// Copying a Value copies the tree; tensors inside are shared views.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ember/program.h"
#include "ember/tensor.h"

namespace ember {

class Value {
 public:
  enum class Kind { kNone, kTensor, kInt, kDouble, kBool, kString, kTuple, kList, kDict, kNamedTuple };

  Value() = default;  // None
  Value(Tensor t);    // NOLINT(google-explicit-constructor): tensors convert implicitly

  static Value none() { return Value(); }
  static Value from_int(int64_t v);
  static Value from_double(double v);
  static Value from_bool(bool v);
  static Value from_string(std::string v);
  static Value tuple(std::vector<Value> items);
  static Value list(std::vector<Value> items);
  // Keys must be unique (kInvalidArgument otherwise); order is kept.
  static Value dict(std::vector<std::pair<std::string, Value>> items);
  // `fields` names the items; both have the same length.
  static Value named_tuple(std::string type_name, std::vector<std::string> fields, std::vector<Value> items);

  Kind kind() const { return kind_; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_tensor() const { return kind_ == Kind::kTensor; }
  bool is_leaf() const { return kind_ < Kind::kTuple; }
  bool is_container() const { return !is_leaf(); }

  // Typed accessors; each throws kInvalidArgument naming the expected and actual kind.
  const Tensor& tensor() const;
  int64_t to_int() const;     // kInt (and kBool)
  double to_double() const;   // kDouble or kInt
  bool to_bool() const;
  const std::string& str() const;

  // Containers: number of items, item i, items in order.
  size_t size() const;
  const Value& operator[](size_t i) const;
  Value& operator[](size_t i);
  const std::vector<Value>& items() const;
  // dict keys / namedtuple field names (empty for tuple and list).
  const std::vector<std::string>& keys() const;
  // dict value or namedtuple field by name; throws kNotFound naming the key and the keys present.
  const Value& at(std::string_view key) const;
  bool contains(std::string_view key) const;
  const std::string& type_name() const { return type_name_; }  // namedtuple only

  // Same container kinds, lengths, keys and leaf kinds (tensor contents are not compared).
  bool same_structure(const Value& other) const;
  // "{'out': Tensor, 'aux': (Tensor, Tensor)}" (tensors shown as dtype[shape]).
  std::string to_string() const;

 private:
  Kind kind_ = Kind::kNone;
  Tensor tensor_;
  int64_t i_ = 0;
  double d_ = 0.0;
  bool b_ = false;
  std::string s_;
  std::vector<Value> items_;
  std::vector<std::string> keys_;
  std::string type_name_;
};

const char* value_kind_name(Value::Kind k);

// Field names of namedtuple types by serialized type name (GraphModule::treespec_namedtuple_fields).
using NamedTupleFields = std::map<std::string, ir::NamedTupleDef>;

// Leaves of `value` in tree_flatten order, checked against `spec`: container kinds, lengths
// and dict keys must match (dict leaves are taken in the key order the spec records).
// `where` names the value in messages ("inputs of model.pt2"). Throws kInvalidArgument.
std::vector<Value> flatten(const Value& value, const ir::TreeSpec& spec, const std::string& where = "value");
// Builds the pytree described by `spec` from `leaves` (exactly spec.num_leaves() of them).
// Namedtuple field names come from `fields` (keyed by the spec's type context).
Value unflatten(const ir::TreeSpec& spec, std::vector<Value> leaves, const NamedTupleFields& fields = {});
// Leaves of any value in natural order (no spec).
std::vector<Value> tree_leaves(const Value& value);

}  // namespace ember
