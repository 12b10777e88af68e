// The ExportedProgram IR: an in-memory form of torch.export's serialized program
// (models/<name>.json, schema 8.x, as written by PyTorch 2.8-2.11).
//
// Every struct mirrors one dataclass of torch/_export/serde/schema.py. Fields Ember does
// not know are kept verbatim in `unknown` and written back, so a read -> write -> read
// round trip loses nothing. Name-keyed tables use std::map (lookups by value name).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ember/dtype.h"
#include "ember/tensor.h"

namespace ember::ir {

using Json = nlohmann::ordered_json;

// ---------------------------------------------------------------- symbolic values

// SymExprHint / SymExpr: a sympy expression string with an optional concrete hint.
struct SymExprHint {
  enum class Kind { kInt, kBool, kFloat } kind = Kind::kInt;
  int64_t i = 0;
  bool b = false;
  double f = 0.0;
  bool operator==(const SymExprHint&) const = default;
};
struct SymExpr {
  std::string expr_str;  // e.g. "Symbol('s77', positive=True, integer=True)" or "s77"
  std::optional<SymExprHint> hint;
  Json unknown;
  bool operator==(const SymExpr&) const = default;
};

// schema.SymInt / SymFloat / SymBool: a constant or an expression (used in TensorMeta and
// the graph's sym_*_values tables).
struct SymInt {
  bool is_expr = false;
  int64_t value = 0;  // when !is_expr
  SymExpr expr;       // when is_expr
  bool operator==(const SymInt&) const = default;
};
struct SymFloat {
  bool is_expr = false;
  double value = 0.0;
  SymExpr expr;
  bool operator==(const SymFloat&) const = default;
};
struct SymBool {
  bool is_expr = false;
  bool value = false;
  SymExpr expr;
  bool operator==(const SymBool&) const = default;
};

struct TensorMeta {
  DType dtype = DType::kFloat32;
  std::vector<SymInt> sizes;
  bool requires_grad = false;
  Device device;
  std::vector<SymInt> strides;
  SymInt storage_offset;
  int32_t layout = 7;  // schema.Layout: 7 = Strided
  Json unknown;
  bool operator==(const TensorMeta&) const = default;
};

// ---------------------------------------------------------------- arguments

// SymIntArgument / SymBoolArgument / SymFloatArgument: a reference to a named symbolic
// value, or a constant.
struct SymArg {
  bool is_name = false;
  std::string name;  // when is_name
  int64_t i = 0;     // constant (SymInt)
  double f = 0.0;    // constant (SymFloat)
  bool b = false;    // constant (SymBool)
  bool operator==(const SymArg&) const = default;
};

struct OptionalTensorArg {
  bool present = false;  // false: as_none
  std::string name;
  bool operator==(const OptionalTensorArg&) const = default;
};

struct Graph;
struct GraphArgument {
  std::string name;
  std::shared_ptr<Graph> graph;
  bool operator==(const GraphArgument& o) const;
};

enum class ArgKind {
  kNone,
  kTensor,
  kTensors,
  kInt,
  kInts,
  kFloat,
  kFloats,
  kString,
  kStrings,
  kSymInt,
  kSymInts,
  kScalarType,
  kMemoryFormat,
  kLayout,
  kDevice,
  kBool,
  kBools,
  kSymBool,
  kSymBools,
  kGraph,
  kOptionalTensors,
  kCustomObj,
  kOperator,
  kSymFloat,
  kSymFloats,
  kOptionalTensor,
  kComplex,
  kIntLists,
  kStringToArgument,
  kNestedTensors,  // as_nested_tensors (list of tensor lists); added after the others
};
// The JSON key of a kind: "as_tensor", "as_ints", ...
const char* arg_kind_key(ArgKind k);

// schema.Argument: a tagged union. Only the fields of `kind` are meaningful:
//   kTensor: name            kTensors: names          kOptionalTensor: opt_tensor
//   kOptionalTensors: opt_tensors
//   kInt/kScalarType/kMemoryFormat/kLayout: i          kInts: ints
//   kFloat: f                kFloats: floats          kBool: b      kBools: bools
//   kString/kOperator: s     kStrings: names
//   kSymInt/kSymBool/kSymFloat: sym                    kSym*s: syms
//   kDevice: device          kCustomObj: name + class_fqn
//   kGraph: graph            kComplex: f (real) + f_imag   kIntLists: int_lists
//   kStringToArgument: string_to_arg                   kNestedTensors: nested_names
// `unknown` keeps fields Ember does not know of the payload object of kTensor, kCustomObj,
// kGraph, kComplex and kDevice (the other payloads are scalars or lists).
struct Argument {
  // Declared here, defined out of line: Argument holds a vector of pairs of itself, and
  // clang + libstdc++ cannot check pair<string, Argument> while Argument's implicit
  // members are being generated.
  Argument();
  ~Argument();
  Argument(const Argument&);
  Argument(Argument&&) noexcept;
  Argument& operator=(const Argument&);
  Argument& operator=(Argument&&) noexcept;

  ArgKind kind = ArgKind::kNone;
  std::string name;
  std::vector<std::string> names;
  std::string s;
  int64_t i = 0;
  double f = 0.0;
  double f_imag = 0.0;
  bool b = false;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<bool> bools;
  SymArg sym;
  std::vector<SymArg> syms;
  OptionalTensorArg opt_tensor;
  std::vector<OptionalTensorArg> opt_tensors;
  Device device;
  std::string class_fqn;
  GraphArgument graph;
  std::vector<std::vector<int64_t>> int_lists;
  std::vector<std::pair<std::string, Argument>> string_to_arg;
  std::vector<std::vector<std::string>> nested_names;
  Json unknown;

  static Argument tensor(std::string name);
  static Argument tensors(std::vector<std::string> names);
  bool operator==(const Argument&) const;
};

struct NamedArgument {
  std::string name;
  Argument arg;
  std::optional<int32_t> kind;  // schema.ArgumentKind: 1 POSITIONAL, 2 KEYWORD
  Json unknown;
  bool operator==(const NamedArgument&) const = default;
};

// ---------------------------------------------------------------- graph

struct Node {
  std::string target;  // "torch.ops.aten.conv2d.default", "_operator.getitem", ...
  std::vector<NamedArgument> inputs;
  std::vector<Argument> outputs;
  std::vector<std::pair<std::string, std::string>> metadata;  // in file order
  std::optional<bool> is_hop_single_tensor_return;
  std::optional<std::string> name;  // present in schema >= 8.x writers
  Json unknown;

  // The input named `arg_name`, or nullptr.
  const Argument* input(std::string_view arg_name) const;
  bool operator==(const Node&) const = default;
};

struct CustomObjArgument {
  std::string name;
  std::string class_fqn;
  bool operator==(const CustomObjArgument&) const = default;
};

struct Graph {
  std::vector<Argument> inputs;
  std::vector<Argument> outputs;
  std::vector<Node> nodes;
  std::map<std::string, TensorMeta> tensor_values;
  std::map<std::string, SymInt> sym_int_values;
  std::map<std::string, SymBool> sym_bool_values;
  std::map<std::string, SymFloat> sym_float_values;
  std::map<std::string, CustomObjArgument> custom_obj_values;
  bool is_single_tensor_return = false;
  Json unknown;
  bool operator==(const Graph&) const = default;
};

// ---------------------------------------------------------------- signature

enum class InputKind { kUserInput, kParameter, kBuffer, kTensorConstant, kCustomObj, kToken, kConstantInput };
const char* input_kind_key(InputKind k);  // "user_input", "parameter", ...

struct InputSpec {
  InputKind kind = InputKind::kUserInput;
  // user_input: any Argument. parameter/buffer/tensor_constant: kTensor.
  // custom_obj: kCustomObj. token: kTensor holding the token name.
  // constant_input: `arg` holds the ConstantValue as an Argument-like value
  //   (kNone/kInt/kFloat/kString/kBool) and `target` the input name.
  Argument arg;
  std::string target;               // parameter_name / buffer_name / tensor_constant_name / custom_obj_name
  std::optional<bool> persistent;   // buffer only
  Json unknown;
  bool operator==(const InputSpec&) const = default;
};

enum class OutputKind {
  kUserOutput,
  kLossOutput,
  kBufferMutation,
  kGradientToParameter,
  kGradientToUserInput,
  kUserInputMutation,
  kToken,
  kParameterMutation,
};
const char* output_kind_key(OutputKind k);  // "user_output", ...

struct OutputSpec {
  OutputKind kind = OutputKind::kUserOutput;
  Argument arg;        // user_output: any Argument; the others: kTensor
  std::string target;  // buffer_name / parameter_name / user_input_name
  Json unknown;
  bool operator==(const OutputSpec&) const = default;
};

struct GraphSignature {
  std::vector<InputSpec> input_specs;
  std::vector<OutputSpec> output_specs;
  Json unknown;
  bool operator==(const GraphSignature&) const = default;
};

// ---------------------------------------------------------------- pytree specs

// A parsed pytree TreeSpec (torch.utils._pytree, serialized protocol 1).
struct TreeSpec {
  enum class Kind { kLeaf, kNone, kTuple, kList, kDict, kNamedTuple, kOrderedDict, kDefaultDict, kOther };
  Kind kind = Kind::kLeaf;
  std::string type;  // "builtins.tuple", ... ; empty for leaves
  Json context;      // decoded context (dict: array of keys; namedtuple: the class name)
  std::vector<TreeSpec> children;

  // Number of leaves below this node.
  size_t num_leaves() const;
  bool operator==(const TreeSpec&) const = default;
};

// Parses the string stored in in_spec/out_spec ("[1, {...}]"). `where` names the field
// for error messages. Throws kCorrupt / kUnsupported (protocol other than 1).
TreeSpec parse_treespec(std::string_view text, const std::string& where);
std::string serialize_treespec(const TreeSpec& spec);
// "({'out': *, 'aux': (*, *)})"-style rendering used by `ember inspect`.
std::string treespec_str(const TreeSpec& spec);

struct ModuleCallSignature {
  std::vector<Argument> inputs;
  std::vector<Argument> outputs;
  std::string in_spec;   // raw text, as stored
  std::string out_spec;  // raw text, as stored
  std::optional<std::vector<std::string>> forward_arg_names;
  Json unknown;
  bool operator==(const ModuleCallSignature&) const = default;
};

struct ModuleCallEntry {
  std::string fqn;
  std::optional<ModuleCallSignature> signature;
  Json unknown;
  bool operator==(const ModuleCallEntry&) const = default;
};

struct NamedTupleDef {
  std::vector<std::string> field_names;
  Json unknown;
  bool operator==(const NamedTupleDef&) const = default;
};

struct GraphModule {
  Graph graph;
  GraphSignature signature;
  std::vector<ModuleCallEntry> module_call_graph;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::map<std::string, NamedTupleDef> treespec_namedtuple_fields;
  Json unknown;
  bool operator==(const GraphModule&) const = default;
};

struct RangeConstraint {
  std::optional<int64_t> min_val;  // nullopt: unbounded (JSON null)
  std::optional<int64_t> max_val;
  Json unknown;
  bool operator==(const RangeConstraint&) const = default;
};

struct SchemaVersion {
  int64_t major = 8;
  int64_t minor = 0;
  bool operator==(const SchemaVersion&) const = default;
};

struct ExportedProgram {
  GraphModule graph_module;
  std::map<std::string, int64_t> opset_version;
  std::map<std::string, RangeConstraint> range_constraints;
  SchemaVersion schema_version;
  std::vector<std::string> verifiers;
  std::string torch_version;
  std::vector<std::string> guards_code;
  Json unknown;
  bool operator==(const ExportedProgram&) const = default;

  // The root entry's (fqn "") signature, or nullptr when absent.
  const ModuleCallSignature* root_call_signature() const;
};

// ---------------------------------------------------------------- JSON in and out

// Parses models/<name>.json. `source` (e.g. "resnet18.pt2:resnet18/models/model.json")
// prefixes every error. Throws kCorrupt for malformed JSON or fields of the wrong type,
// kVersionMismatch when schema_version.major != 8.
ExportedProgram parse_exported_program(std::string_view json_text, const std::string& source);
std::string serialize_exported_program(const ExportedProgram& program);

// The same for the pieces the archive's weights/constants configs embed.
TensorMeta parse_tensor_meta(const Json& j, const std::string& where);
Json tensor_meta_to_json(const TensorMeta& meta);
Json argument_to_json(const Argument& arg);
Argument parse_argument(const Json& j, const std::string& where);

// JSON text -> Json, keeping key order, rejecting duplicate keys and nesting deeper than
// kMaxJsonDepth. Errors (kCorrupt / kLimitExceeded) name `source` and the byte offset.
inline constexpr int kMaxJsonDepth = 256;
Json parse_json(std::string_view text, const std::string& source);
// Json -> text the way Python's json.dumps writes it by default (", " / ": " separators,
// non-ASCII escaped, non-finite floats as NaN / Infinity): used for pytree contexts.
std::string python_json_dumps(const Json& j);

// Structural checks beyond the schema: every value a node, a graph output or the
// signature names is defined exactly once before use; signature args are graph inputs;
// tensor_values has an entry for every tensor. Throws kCorrupt naming the node and field.
void validate(const ExportedProgram& program, const std::string& source);

// Concrete sizes of a tensor meta, or nullopt when any is symbolic.
std::optional<Shape> concrete_sizes(const TensorMeta& meta);

// Symbol name of a size expression: "Symbol('s77', positive=True, integer=True)" -> "s77",
// "s77" -> "s77"; empty when the expression is not a plain symbol.
std::string symbol_name(const SymExpr& e);

}  // namespace ember::ir
