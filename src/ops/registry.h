// The ATen op registry: for every supported op overload, its PyTorch schema, an
// output-spec (shape/dtype) function and a reference CPU kernel.
//
// The interpreter resolves a node's named inputs into OpArgs (checking them against the
// parsed schema and filling defaults at load time), then calls `infer` at load time where
// shapes are static and `run` at run time. Kernels favour clarity; they are the oracle
// for engines and the fallback for nodes that stay outside engines.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ember/tensor.h"

namespace ember::ops {

// dtype + sizes of a tensor, without data. Sizes < 0 are unknown (symbolic).
struct TensorSpec {
  DType dtype = DType::kFloat32;
  Shape sizes;
  bool operator==(const TensorSpec&) const = default;
};

// One resolved argument (a node input, or an output of a kernel).
struct OpArg {
  enum class Kind {
    kNone,
    kTensor,
    kTensorList,
    kOptTensorList,  // Tensor?[] (e.g. index.Tensor); absent entries are undefined Tensors
    kInt,            // also SymInt, MemoryFormat and Layout (as their schema integers)
    kIntList,
    kFloat,
    kFloatList,
    kBool,
    kBoolList,
    kString,
    kDType,
    kDevice,
  };
  Kind kind = Kind::kNone;
  Tensor tensor;                  // kTensor (undefined in infer mode)
  TensorSpec spec;                // kTensor: always filled
  std::vector<Tensor> tensors;    // kTensorList / kOptTensorList (undefined entries in infer mode)
  std::vector<TensorSpec> specs;  // kTensorList / kOptTensorList: always filled (absent: dtype kUnknown)
  int64_t i = 0;
  double f = 0.0;
  bool b = false;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<bool> bools;
  std::string s;
  DType dtype = DType::kUnknown;
  Device device;

  static OpArg none() { return {}; }
  static OpArg of(Tensor t);
  static OpArg of_list(std::vector<Tensor> ts);
  static OpArg of_int(int64_t v);
  static OpArg of_float(double v);
  static OpArg of_bool(bool v);
  static OpArg of_ints(std::vector<int64_t> v);
  static OpArg of_spec(TensorSpec spec);  // a tensor argument in infer mode
};

// "Tensor", "int[]", "None", ... (for error messages).
const char* arg_kind_name(OpArg::Kind kind);

// A call of one op on one node: named arguments, with schema defaults already applied.
class OpCall {
 public:
  OpCall(std::string node_name, std::string target, std::map<std::string, OpArg, std::less<>> args, bool infer_mode);

  const std::string& node() const { return node_; }
  const std::string& target() const { return target_; }
  bool infer_mode() const { return infer_mode_; }
  // What the op's prepare function returned for this node at load (nullptr if none).
  const std::shared_ptr<const void>& state() const { return state_; }
  void set_state(std::shared_ptr<const void> state) { state_ = std::move(state); }

  bool has(std::string_view name) const;  // present and not None
  const OpArg& arg(std::string_view name) const;  // throws kInvalidArgument naming the node if absent

  // Typed accessors; each throws kInvalidArgument naming the node, argument, expected
  // and found kind on a mismatch.
  const Tensor& tensor(std::string_view name) const;  // run mode only
  std::optional<Tensor> opt_tensor(std::string_view name) const;
  const TensorSpec& spec(std::string_view name) const;  // both modes
  std::optional<TensorSpec> opt_spec(std::string_view name) const;
  const std::vector<Tensor>& tensor_list(std::string_view name) const;
  const std::vector<TensorSpec>& spec_list(std::string_view name) const;
  int64_t int_arg(std::string_view name) const;
  std::optional<int64_t> opt_int(std::string_view name) const;
  double float_arg(std::string_view name) const;  // accepts kInt too
  bool bool_arg(std::string_view name) const;
  std::vector<int64_t> int_list(std::string_view name) const;  // a single int is broadcast by the caller
  std::optional<std::vector<int64_t>> opt_int_list(std::string_view name) const;
  const std::string& string_arg(std::string_view name) const;
  std::optional<DType> opt_dtype(std::string_view name) const;
  // A Scalar argument: the value, and whether it was written as an integer/bool.
  double scalar(std::string_view name, bool* is_integral = nullptr) const;

  [[noreturn]] void fail_arg(std::string_view name, const std::string& what) const;

 private:
  std::string node_;
  std::string target_;
  std::map<std::string, OpArg, std::less<>> args_;
  bool infer_mode_;
  std::shared_ptr<const void> state_;
};

// One formal parameter of a parsed schema.
struct SchemaArg {
  std::string name;
  std::string type;                  // "Tensor", "Tensor?", "int[]", "SymInt[2]", "Scalar", "ScalarType?", ...
  std::optional<std::string> default_value;  // as written in the schema ("None", "1", "[0, 0]", "False")
  bool kwarg_only = false;
  std::string alias;  // alias annotation without parentheses: "a!" for "Tensor(a!)", else empty
};
struct Schema {
  std::string name;       // "aten::conv2d"
  std::string overload;   // "default", "Tensor", ...
  std::vector<SchemaArg> args;
  std::vector<std::string> returns;  // types, e.g. {"Tensor", "Tensor"} or {"Tensor[]"}
};
// Parses "conv2d(Tensor input, Tensor weight, Tensor? bias=None, ...) -> Tensor".
Schema parse_schema(std::string_view text);

using InferFn = std::function<std::vector<TensorSpec>(const OpCall&)>;
// Returns one OpArg per serialized node output (kTensor, kTensorList for Tensor[] returns,
// kInt for SymInt returns).
using KernelFn = std::function<std::vector<OpArg>(const OpCall&)>;

// Optional load-time preparation, called once per node when a program is loaded: the call
// holds the node's arguments with tensors bound to constants (weights, tensor constants)
// filled and run-time tensors undefined. What it returns reaches every run of that node
// through OpCall::state(). execute_engine uses it to parse and check its engine at load.
using PrepareFn = std::function<std::shared_ptr<const void>(const OpCall&)>;

struct OpDef {
  std::string target;  // serialized target, e.g. "torch.ops.aten.conv2d.default"
  Schema schema;
  InferFn infer;       // output tensor specs (flattened), from input specs + args
  KernelFn run;
  bool inplace = false;  // writes into its `self` argument (relu_, add_, ...)
  PrepareFn prepare;     // optional
};

class Registry {
 public:
  static Registry& global();
  // `schema_text` is PyTorch's schema without namespace, e.g.
  // "relu(Tensor self) -> Tensor". Throws kInternal on a duplicate target.
  void add(std::string target, std::string_view schema_text, InferFn infer, KernelFn run, bool inplace = false);
  // Attaches a load-time preparation to an op already added (throws kInternal if absent).
  void set_prepare(std::string_view target, PrepareFn prepare);
  const OpDef* find(std::string_view target) const;
  std::vector<std::string> targets() const;

 private:
  std::map<std::string, OpDef, std::less<>> ops_;
};

// Registration from a kernel file:  EMBER_REGISTER_OPS(elementwise) { r.add(...); }
// Each file's block runs once, before main, via a static initializer; the library is
// linked whole (see src/ops/CMakeLists.txt) so no registration is dropped.
#define EMBER_REGISTER_OPS(tag)                                          \
  static void ember_register_ops_##tag(::ember::ops::Registry& r);       \
  namespace {                                                            \
  const bool ember_ops_registered_##tag = [] {                           \
    ember_register_ops_##tag(::ember::ops::Registry::global());          \
    return true;                                                         \
  }();                                                                   \
  }                                                                      \
  static void ember_register_ops_##tag(::ember::ops::Registry& r)

}  // namespace ember::ops
