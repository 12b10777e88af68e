// Program: load-time planning and the graph interpreter.
//
// Load: every graph value gets a slot (tensor slots and integer slots for symbolic
// ints/bools). Each node is resolved to an op of the registry (or a builtin: getitem,
// sym_size, arithmetic on symbolic ints, runtime asserts), its named inputs are checked
// against the op schema, defaults are applied and every argument is turned into an ArgPlan:
// a constant OpArg, or slot references filled in at run time. The last use of every tensor
// slot is recorded so the interpreter drops intermediates as soon as they are dead.
//
// Run: inputs are validated and bound, symbols are read off input shapes, nodes run in
// order, outputs are collected and mutations (buffer_mutation / user_input_mutation)
// applied.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "ember/error.h"
#include "ember/package_abi.h"
#include "ember/profile.h"
#include "ember/runtime.h"
#include "engine_node.h"
#include "package_loader.h"
#include "ember/engine.h"
#include "ops/arg_convert.h"
#include "ops/registry.h"

namespace ember {

// ---------------------------------------------------------------- TensorInfo

namespace {

std::string range_str(int64_t lo, int64_t hi) {
  return cat(lo, "..", hi == std::numeric_limits<int64_t>::max() ? std::string("inf") : std::to_string(hi));
}

std::string dim_str(const DimInfo& d) {
  if (!d.is_symbolic) return std::to_string(d.value);
  if (d.is_expression) return d.symbol;
  return cat(d.symbol, " in ", range_str(d.min, d.max));
}

}  // namespace

std::string TensorInfo::to_string() const {
  if (!is_tensor) return "non-tensor";
  std::string s = cat(dtype_name(dtype), " [");
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + dim_str(sizes[i]);
  return s + "]";
}

std::optional<Shape> TensorInfo::static_shape() const {
  Shape out;
  for (const DimInfo& d : sizes) {
    if (d.is_symbolic) return std::nullopt;
    out.push_back(d.value);
  }
  return out;
}

// ---------------------------------------------------------------- plan structures

namespace {

// A symbolic or constant integer argument.
struct SymRef {
  int slot = -1;  // integer slot; -1: constant
  int64_t value = 0;
};

struct ArgPlan {
  // kWrappedNumber: a Python number given for a Tensor argument, held as a 0-d tensor in `constant`.
  enum class Src { kConst, kWrappedNumber, kTensor, kTensorList, kOptTensorList, kSymInt, kSymInts, kSymBool };
  std::string name;
  Src src = Src::kConst;
  ops::OpArg constant;      // kConst
  std::vector<int> slots;   // tensor slots (-1: absent entry of Tensor?[] / None)
  std::vector<SymRef> syms;
};

struct OutPlan {
  enum class Kind { kNone, kTensor, kTensorList, kInt };
  Kind kind = Kind::kNone;
  std::vector<int> slots;  // tensor slots, or one integer slot for kInt
};

// Expected dtype and sizes of a tensor a node produces (-1: symbolic dim).
struct ExpectedMeta {
  DType dtype = DType::kUnknown;
  Shape sizes;
  Shape strides;  // empty unless every size and stride is static
};

// `t` laid out with `strides` (the layout PyTorch recorded for this value), copying when
// the kernel chose another layout: later view ops then see the strides they were exported with.
Tensor with_layout(Tensor t, const Shape& strides) {
  if (strides.size() != t.sizes().size() || t.numel() <= 1) return t;
  bool same = true;
  int64_t span = 1;
  for (size_t d = 0; d < strides.size(); ++d) {
    if (strides[d] < 0) return t;
    if (t.sizes()[d] > 1 && strides[d] != t.strides()[d]) same = false;
    span += (t.sizes()[d] - 1) * strides[d];
  }
  if (same) return t;
  Tensor out(Storage::allocate(static_cast<size_t>(span) * t.itemsize()), t.dtype(), t.sizes(), strides, 0);
  out.copy_from(t);
  return out;
}

enum class Builtin { kNone, kGetItem, kSymSize, kSymNumel, kSymStride, kSymOp, kAssert, kNoOp };

struct NodePlan {
  std::string name;
  std::string target;
  const ops::OpDef* op = nullptr;
  Builtin builtin = Builtin::kNone;
  std::string sym_op;  // kSymOp: "add", "mul", ...
  std::vector<ArgPlan> args;
  std::vector<OutPlan> outputs;
  std::vector<ExpectedMeta> expected;  // per tensor in outputs (flattened), dtype kUnknown: unchecked
  std::vector<int> inplace_slots;      // tensor slots the op writes into
  std::vector<int> release;            // tensor slots dead after this node
  std::shared_ptr<const void> state;   // what the op's prepare() returned at load
};

struct DimCheck {
  bool is_symbolic = false;
  int64_t value = 0;  // constant
  int sym_slot = -1;  // plain symbol; -1 for a compound expression (not checked)
  std::string symbol;
  int64_t min = 0, max = std::numeric_limits<int64_t>::max();
};

struct UserInputPlan {
  enum class Kind { kTensor, kSymInt, kConstant };
  Kind kind = Kind::kTensor;
  int slot = -1;  // tensor slot or integer slot
  DType dtype = DType::kFloat32;
  std::vector<DimCheck> dims;
};

struct OutputBinding {
  enum class Kind { kTensor, kInt, kConstant };
  Kind kind = Kind::kTensor;
  int slot = -1;
  Value constant;
};

struct MutableBuffer {
  std::string fqn;
  int slot = -1;
  int result_slot = -1;  // slot holding the new value after a run (buffer_mutation output or the slot itself)
  Tensor state;          // guarded by Impl::state_mutex
};

// A read-only view of `t` (same data): kernels that write in place copy it first.
Tensor read_only_view(const Tensor& t) {
  if (!t.defined() || !t.writable()) return t;
  auto storage = Storage::borrow(t.storage()->data(), t.storage()->nbytes(), t.storage(), false);
  return Tensor(storage, t.dtype(), t.sizes(), t.strides(), t.storage_offset(), t.device());
}

}  // namespace

struct Program::Impl {
  std::string source;
  ir::ExportedProgram ep;
  ir::TreeSpec in_spec;
  ir::TreeSpec out_spec;
  NamedTupleFields namedtuple_fields;
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;

  std::unordered_map<std::string, int> tensor_slot_of;
  std::unordered_map<std::string, int> int_slot_of;
  std::vector<std::string> tensor_slot_names;
  std::vector<std::string> int_slot_names;

  std::vector<UserInputPlan> user_inputs;
  std::vector<std::pair<int, Tensor>> constants;  // parameters, constant buffers, tensor constants
  std::vector<NodePlan> nodes;
  std::vector<OutputBinding> user_outputs;
  std::vector<std::pair<size_t, int>> user_input_mutations;  // (user input index, slot of the new value)

  mutable std::mutex state_mutex;
  mutable std::vector<MutableBuffer> buffers;

  bool prepare_kernels = true;

  // A packaged model: its generated glue runs the nodes (see include/ember/package_abi.h).
  const ember_package* package = nullptr;
  std::shared_ptr<const void> package_keepalive;  // the loaded library
  std::vector<size_t> glue_nodes;                  // glue node index -> index into `nodes`
  std::vector<int> glue_values;                    // glue value index -> tensor slot

  // Per-run state (local to one run() call).
  struct RunState {
    const std::vector<Value>* flat_inputs = nullptr;
    std::vector<int64_t> ints;
    std::vector<char> known;
    std::vector<Tensor> tensors;
    size_t nodes_run = 0;
  };

  int tensor_slot(const std::string& name, bool create) {
    auto it = tensor_slot_of.find(name);
    if (it != tensor_slot_of.end()) return it->second;
    if (!create) return -1;
    int s = static_cast<int>(tensor_slot_names.size());
    tensor_slot_of.emplace(name, s);
    tensor_slot_names.push_back(name);
    return s;
  }
  int int_slot(const std::string& name) {
    auto it = int_slot_of.find(name);
    if (it != int_slot_of.end()) return it->second;
    int s = static_cast<int>(int_slot_names.size());
    int_slot_of.emplace(name, s);
    int_slot_names.push_back(name);
    return s;
  }

  void build(const Pt2Model& model);
  void plan_node(const ir::Node& node, size_t index, std::vector<std::string>& unsupported);
  ArgPlan plan_arg(const NodePlan& np, const ops::SchemaArg* schema_arg, const std::string& name,
                   const ir::Argument& arg);
  SymRef sym_ref(const NodePlan& np, const ir::SymArg& s);
  void plan_outputs(NodePlan& np, const ir::Node& node);
  void prepare_node(NodePlan& np);

  std::vector<Value> execute(const std::vector<Value>& flat_inputs) const;
  void begin_run(RunState& st, const std::vector<Value>& flat_inputs) const;
  // Runs one node; records it in the active profile (engine nodes record their steps).
  void run_node(RunState& st, const NodePlan& np) const;
  void run_node_body(RunState& st, const NodePlan& np) const;
  std::vector<Value> finish_run(RunState& st) const;
  void run_glue(RunState& st) const;
  void bind_package(const ember_package& pkg);
  void validate(const std::vector<Value>& flat, std::vector<int64_t>* ints, std::vector<char>* known) const;
};

namespace {

// ---------------------------------------------------------------- helpers

std::string base_type(const std::string& type) {
  size_t end = 0;
  while (end < type.size() && (std::isalnum(static_cast<unsigned char>(type[end])) || type[end] == '_')) ++end;
  return type.substr(0, end);
}
bool is_list_type(const std::string& type) { return type.find('[') != std::string::npos; }

const std::set<std::string>& sym_ops() {
  static const std::set<std::string> kOps = {"add", "sub", "mul", "floordiv", "mod", "neg", "eq", "ne", "lt",
                                             "le", "gt", "ge", "and_", "or_", "truediv", "pow", "sym_max",
                                             "sym_min", "sym_not", "sym_float", "sym_int", "sym_ite"};
  return kOps;
}

Builtin builtin_of(const std::string& target, std::string* sym_op) {
  if (target == "_operator.getitem") return Builtin::kGetItem;
  if (target == "torch.ops.aten.sym_size.int") return Builtin::kSymSize;
  if (target == "torch.ops.aten.sym_numel.default") return Builtin::kSymNumel;
  if (target == "torch.ops.aten.sym_stride.int") return Builtin::kSymStride;
  if (target == "torch.ops.aten._assert_scalar.default") return Builtin::kAssert;
  if (target == "torch.ops.aten.sym_constrain_range_for_size.default" ||
      target == "torch.ops.aten.sym_constrain_range.default" ||
      target == "torch.ops.aten._assert_tensor_metadata.default")
    return Builtin::kNoOp;
  for (const char* prefix : {"_operator.", "torch."}) {
    std::string p(prefix);
    if (target.rfind(p, 0) == 0 && sym_ops().count(target.substr(p.size()))) {
      *sym_op = target.substr(p.size());
      return Builtin::kSymOp;
    }
  }
  return Builtin::kNone;
}

// Graph inputs of the signature: user inputs or values bound from the archive.
const Pt2TensorEntry* find_entry(const Pt2Model& model, const ir::InputSpec& spec) {
  const Pt2TensorEntry* e = nullptr;
  switch (spec.kind) {
    case ir::InputKind::kParameter: e = model.find_weight(spec.target); break;
    case ir::InputKind::kBuffer:
      e = model.find_weight(spec.target);
      if (!e) e = model.find_constant(spec.target);  // non-persistent buffers live with the constants
      break;
    case ir::InputKind::kTensorConstant:
      e = model.find_constant(spec.target);
      if (!e) e = model.find_weight(spec.target);
      break;
    default: break;
  }
  return e;
}

DimCheck dim_check(const ir::SymInt& s, const ir::ExportedProgram& ep, DimInfo* info) {
  DimCheck d;
  if (!s.is_expr) {
    d.value = s.value;
    info->value = s.value;
    return d;
  }
  d.is_symbolic = info->is_symbolic = true;
  if (s.expr.hint && s.expr.hint->kind == ir::SymExprHint::Kind::kInt) info->hint = s.expr.hint->i;
  std::string sym = ir::symbol_name(s.expr);
  if (sym.empty()) {
    info->is_expression = true;
    info->symbol = s.expr.expr_str;
    d.symbol = s.expr.expr_str;
    return d;
  }
  d.symbol = info->symbol = sym;
  // Sizes are at least 0 (PyTorch specializes 0 and 1 unless a range says otherwise).
  d.min = 0;
  if (auto it = ep.range_constraints.find(sym); it != ep.range_constraints.end()) {
    if (it->second.min_val) d.min = *it->second.min_val;
    if (it->second.max_val) d.max = *it->second.max_val;
  }
  info->min = d.min;
  info->max = d.max;
  return d;
}

}  // namespace

// ---------------------------------------------------------------- load

SymRef Program::Impl::sym_ref(const NodePlan& np, const ir::SymArg& s) {
  SymRef r;
  if (!s.is_name) {
    r.value = s.i;
    return r;
  }
  auto it = int_slot_of.find(s.name);
  if (it == int_slot_of.end()) {
    // A named symbolic value nothing computes: accept it when the graph records it as a
    // plain input symbol ("s77"), which input shapes bind.
    auto sv = ep.graph_module.graph.sym_int_values.find(s.name);
    std::string sym = sv != ep.graph_module.graph.sym_int_values.end() && sv->second.is_expr
                          ? ir::symbol_name(sv->second.expr)
                          : std::string();
    if (!sym.empty()) {
      r.slot = int_slot(sym);
      return r;
    }
    fail(ErrorCode::kCorrupt, source, ": node '", np.name, "' (", np.target, ") uses symbolic value '", s.name,
         "' that no node or input defines");
  }
  r.slot = it->second;
  return r;
}

ArgPlan Program::Impl::plan_arg(const NodePlan& np, const ops::SchemaArg* schema_arg, const std::string& name,
                                const ir::Argument& arg) {
  ArgPlan a;
  a.name = name;
  auto tensor_ref = [&](const std::string& value) {
    int s = tensor_slot(value, false);
    EMBER_CHECK(s >= 0, ErrorCode::kCorrupt, source, ": node '", np.name, "' (", np.target, "): argument '", name,
                "' uses tensor '", value, "' that is not defined before it");
    return s;
  };
  std::string type = schema_arg ? schema_arg->type : std::string();
  std::string base = base_type(type);
  using K = ir::ArgKind;
  using OK = ops::OpArg::Kind;
  bool tensor_kind = arg.kind == K::kTensor || arg.kind == K::kTensors || arg.kind == K::kOptionalTensor ||
                     arg.kind == K::kOptionalTensors;
  if (schema_arg && base == "Tensor" && !is_list_type(type) &&
      (arg.kind == K::kInt || arg.kind == K::kFloat || arg.kind == K::kBool)) {
    // PyTorch serializes Python numbers passed for a Tensor argument (x * 2 -> mul.Tensor)
    // as scalars; like PyTorch's wrapped numbers they become 0-d tensors of the default
    // dtype of their kind, which never promote a dimensioned operand within its category.
    a.src = ArgPlan::Src::kWrappedNumber;
    a.constant = ops::OpArg::of(arg.kind == K::kInt     ? Tensor::scalar(static_cast<double>(arg.i), DType::kInt64)
                                : arg.kind == K::kFloat ? Tensor::scalar(arg.f, DType::kFloat32)
                                                        : Tensor::scalar(arg.b ? 1.0 : 0.0, DType::kBool));
    a.constant.tensor = read_only_view(a.constant.tensor);
    return a;
  }
  if (schema_arg) {
    bool tensor_type = base == "Tensor";
    EMBER_CHECK(tensor_kind == tensor_type || arg.kind == K::kNone, ErrorCode::kCorrupt, source, ": node '", np.name,
                "' (", np.target, "): argument '", name, "' of type ", type, " is given as ", ir::arg_kind_key(arg.kind));
  }
  switch (arg.kind) {
    case K::kNone: a.constant = ops::OpArg::none(); break;
    case K::kTensor:
      a.src = ArgPlan::Src::kTensor;
      a.slots = {tensor_ref(arg.name)};
      break;
    case K::kOptionalTensor:
      if (arg.opt_tensor.present) {
        a.src = ArgPlan::Src::kTensor;
        a.slots = {tensor_ref(arg.opt_tensor.name)};
      }
      break;
    case K::kTensors:
      a.src = ArgPlan::Src::kTensorList;
      for (const auto& n : arg.names) a.slots.push_back(tensor_ref(n));
      break;
    case K::kOptionalTensors:
      a.src = ArgPlan::Src::kOptTensorList;
      for (const auto& t : arg.opt_tensors) a.slots.push_back(t.present ? tensor_ref(t.name) : -1);
      break;
    case K::kInt:
    case K::kMemoryFormat:
    case K::kLayout:
      a.constant = ops::OpArg::of_int(arg.i);
      if (base == "float") a.constant = ops::OpArg::of_float(static_cast<double>(arg.i));
      break;
    case K::kScalarType: {
      std::optional<DType> dt = dtype_from_schema(arg.i);
      EMBER_CHECK(dt.has_value(), ErrorCode::kCorrupt, source, ": node '", np.name, "' (", np.target,
                  "): argument '", name, "' names unknown ScalarType ", arg.i);
      a.constant.kind = OK::kDType;
      a.constant.dtype = *dt;
      break;
    }
    case K::kInts: a.constant = ops::OpArg::of_ints(arg.ints); break;
    case K::kFloat: a.constant = ops::OpArg::of_float(arg.f); break;
    case K::kFloats:
      a.constant.kind = OK::kFloatList;
      a.constant.floats = arg.floats;
      break;
    case K::kBool: a.constant = ops::OpArg::of_bool(arg.b); break;
    case K::kBools:
      a.constant.kind = OK::kBoolList;
      a.constant.bools = arg.bools;
      break;
    case K::kString:
      a.constant.kind = OK::kString;
      a.constant.s = arg.s;
      break;
    case K::kDevice:
      a.constant.kind = OK::kDevice;
      a.constant.device = arg.device;
      break;
    case K::kSymInt:
      if (arg.sym.is_name) {
        a.src = ArgPlan::Src::kSymInt;
        a.syms = {sym_ref(np, arg.sym)};
      } else {
        a.constant = ops::OpArg::of_int(arg.sym.i);
      }
      break;
    case K::kSymInts:
      a.src = ArgPlan::Src::kSymInts;
      for (const auto& s : arg.syms) a.syms.push_back(sym_ref(np, s));
      break;
    case K::kSymBool:
      if (arg.sym.is_name) {
        a.src = ArgPlan::Src::kSymBool;
        a.syms = {sym_ref(np, arg.sym)};
      } else {
        a.constant = ops::OpArg::of_bool(arg.sym.b);
      }
      break;
    case K::kSymFloat:
      EMBER_CHECK(!arg.sym.is_name, ErrorCode::kUnsupported, source, ": node '", np.name, "' (", np.target,
                  "): argument '", name, "' is a symbolic float, which the interpreter does not support");
      a.constant = ops::OpArg::of_float(arg.sym.f);
      break;
    default:
      fail(ErrorCode::kUnsupported, source, ": node '", np.name, "' (", np.target, "): argument '", name, "' of kind ",
           ir::arg_kind_key(arg.kind), " is not supported by the interpreter");
  }
  return a;
}

void Program::Impl::plan_outputs(NodePlan& np, const ir::Node& node) {
  const auto& metas = ep.graph_module.graph.tensor_values;
  auto expect = [&](const std::string& name) {
    ExpectedMeta m;
    if (auto it = metas.find(name); it != metas.end()) {
      m.dtype = it->second.dtype;
      for (const auto& s : it->second.sizes) m.sizes.push_back(s.is_expr ? -1 : s.value);
      bool static_layout = std::none_of(m.sizes.begin(), m.sizes.end(), [](int64_t v) { return v < 0; });
      for (const auto& s : it->second.strides) {
        if (s.is_expr) static_layout = false;
        m.strides.push_back(s.value);
      }
      if (!static_layout || m.strides.size() != m.sizes.size()) m.strides.clear();
    }
    np.expected.push_back(std::move(m));
  };
  for (const ir::Argument& out : node.outputs) {
    OutPlan o;
    switch (out.kind) {
      case ir::ArgKind::kNone: break;
      case ir::ArgKind::kTensor:
        o.kind = OutPlan::Kind::kTensor;
        EMBER_CHECK(tensor_slot(out.name, false) < 0, ErrorCode::kCorrupt, source, ": node '", np.name,
                    "' redefines tensor '", out.name, "'");
        o.slots = {tensor_slot(out.name, true)};
        expect(out.name);
        break;
      case ir::ArgKind::kTensors:
        o.kind = OutPlan::Kind::kTensorList;
        for (const auto& n : out.names) {
          EMBER_CHECK(tensor_slot(n, false) < 0, ErrorCode::kCorrupt, source, ": node '", np.name,
                      "' redefines tensor '", n, "'");
          o.slots.push_back(tensor_slot(n, true));
          expect(n);
        }
        break;
      case ir::ArgKind::kSymInt:
      case ir::ArgKind::kSymBool:
        if (out.sym.is_name) {
          o.kind = OutPlan::Kind::kInt;
          o.slots = {int_slot(out.sym.name)};
        }
        break;
      default:
        fail(ErrorCode::kUnsupported, source, ": node '", np.name, "' (", np.target, ") has an output of kind ",
             ir::arg_kind_key(out.kind), ", which the interpreter does not support");
    }
    np.outputs.push_back(std::move(o));
  }
}

void Program::Impl::plan_node(const ir::Node& node, size_t index, std::vector<std::string>& unsupported) {
  NodePlan np;
  np.target = node.target;
  np.name = node.name.value_or(cat("node", index));
  np.builtin = builtin_of(node.target, &np.sym_op);
  if (np.builtin == Builtin::kNone) {
    np.op = ops::Registry::global().find(node.target);
    if (!np.op) {
      unsupported.push_back(cat(node.target, " (node '", np.name, "')"));
      return;
    }
  }
  if (np.op) {
    const ops::Schema& schema = np.op->schema;
    for (const ir::NamedArgument& in : node.inputs) {
      bool known = std::any_of(schema.args.begin(), schema.args.end(),
                               [&](const ops::SchemaArg& a) { return a.name == in.name; });
      EMBER_CHECK(known, ErrorCode::kCorrupt, source, ": node '", np.name, "' (", node.target, ") passes argument '",
                  in.name, "', which the schema ", schema.name, ".", schema.overload, " does not have");
    }
    for (const ops::SchemaArg& sa : schema.args) {
      const ir::NamedArgument* given = nullptr;
      for (const auto& in : node.inputs)
        if (in.name == sa.name) given = &in;
      if (given) {
        np.args.push_back(plan_arg(np, &sa, sa.name, given->arg));
      } else if (sa.default_value) {
        ArgPlan a;
        a.name = sa.name;
        a.constant = ops::parse_schema_default(sa.type, *sa.default_value);
        np.args.push_back(std::move(a));
      } else {
        fail(ErrorCode::kCorrupt, source, ": node '", np.name, "' (", node.target, ") does not pass required argument '",
             sa.name, "' (", sa.type, ")");
      }
    }
    // Arguments the op writes: `self` of in-place ops and every Tensor(a!) argument.
    for (size_t k = 0; k < np.args.size(); ++k) {
      const ArgPlan& a = np.args[k];
      bool written = (np.op->inplace && a.name == "self") || schema.args[k].alias.find('!') != std::string::npos;
      if (written && a.src == ArgPlan::Src::kTensor) np.inplace_slots.push_back(a.slots[0]);
    }
  } else {
    // Builtins take their inputs by position (their serialized names vary: "arg0", "a", "self").
    for (const ir::NamedArgument& in : node.inputs) np.args.push_back(plan_arg(np, nullptr, in.name, in.arg));
    auto want = [&](size_t n) {
      EMBER_CHECK(np.args.size() >= n, ErrorCode::kCorrupt, source, ": node '", np.name, "' (", node.target,
                  ") expects ", n, " inputs, found ", np.args.size());
    };
    switch (np.builtin) {
      case Builtin::kGetItem:
        want(2);
        EMBER_CHECK(np.args[0].src == ArgPlan::Src::kTensorList && np.args[1].src == ArgPlan::Src::kConst &&
                        np.args[1].constant.kind == ops::OpArg::Kind::kInt,
                    ErrorCode::kUnsupported, source, ": node '", np.name,
                    "' (getitem): only indexing a tensor list with a constant int is supported");
        {
          int64_t i = np.args[1].constant.i, n = static_cast<int64_t>(np.args[0].slots.size());
          EMBER_CHECK(i >= -n && i < n, ErrorCode::kCorrupt, source, ": node '", np.name, "' (getitem): index ", i,
                      " out of range for a list of ", n, " tensors");
          if (i < 0) np.args[1].constant.i = i + n;
        }
        break;
      case Builtin::kSymSize:
      case Builtin::kSymStride:
        want(2);
        EMBER_CHECK(np.args[0].src == ArgPlan::Src::kTensor, ErrorCode::kCorrupt, source, ": node '", np.name,
                    "' expects a tensor as its first input");
        break;
      case Builtin::kSymNumel:
        want(1);
        EMBER_CHECK(np.args[0].src == ArgPlan::Src::kTensor, ErrorCode::kCorrupt, source, ": node '", np.name,
                    "' expects a tensor as its first input");
        break;
      case Builtin::kAssert:
      case Builtin::kSymOp: want(1); break;
      default: break;
    }
  }
  plan_outputs(np, node);
  if (prepare_kernels && np.op && np.op->prepare) prepare_node(np);
  nodes.push_back(std::move(np));
}

// Runs the op's load-time preparation with the arguments known at load: constants, and
// tensors bound to parameters/buffers/tensor constants. Run-time tensors stay undefined.
void Program::Impl::prepare_node(NodePlan& np) {
  std::unordered_map<int, const Tensor*> bound;
  for (const auto& [slot, t] : constants) bound.emplace(slot, &t);
  std::map<std::string, ops::OpArg, std::less<>> args;
  for (const ArgPlan& a : np.args) {
    ops::OpArg oa = a.constant;
    if (a.src == ArgPlan::Src::kTensor) {
      oa = ops::OpArg();
      oa.kind = ops::OpArg::Kind::kTensor;
      if (auto it = bound.find(a.slots[0]); it != bound.end()) oa = ops::OpArg::of(*it->second);
    } else if (a.src == ArgPlan::Src::kTensorList || a.src == ArgPlan::Src::kOptTensorList) {
      oa = ops::OpArg();
      oa.kind = a.src == ArgPlan::Src::kTensorList ? ops::OpArg::Kind::kTensorList : ops::OpArg::Kind::kOptTensorList;
      for (int slot : a.slots) {
        auto it = slot >= 0 ? bound.find(slot) : bound.end();
        oa.tensors.push_back(it != bound.end() ? *it->second : Tensor());
      }
    }
    args.emplace(a.name, std::move(oa));
  }
  ops::OpCall call(np.name, np.target, std::move(args), false);
  try {
    np.state = np.op->prepare(call);
  } catch (const Error& e) {
    throw Error(e.code(), cat(source, ": node '", np.name, "' (", np.target, "): ", e.what()));
  }
}

void Program::Impl::build(const Pt2Model& model) {
  register_engine_op();
  ep = model.program;
  const ir::GraphModule& gm = ep.graph_module;
  const ir::Graph& graph = gm.graph;
  const ir::GraphSignature& sig = gm.signature;
  namedtuple_fields = gm.treespec_namedtuple_fields;

  EMBER_CHECK(sig.input_specs.size() == graph.inputs.size(), ErrorCode::kCorrupt, source, ": signature has ",
              sig.input_specs.size(), " input specs but the graph has ", graph.inputs.size(), " inputs");
  EMBER_CHECK(sig.output_specs.size() == graph.outputs.size(), ErrorCode::kCorrupt, source, ": signature has ",
              sig.output_specs.size(), " output specs but the graph has ", graph.outputs.size(), " outputs");

  // Buffers the graph mutates: named by buffer_mutation outputs or written in place directly.
  std::map<std::string, std::string> mutated_buffer_result;  // buffer fqn -> graph value holding its new value
  for (size_t i = 0; i < sig.output_specs.size(); ++i) {
    const ir::OutputSpec& os = sig.output_specs[i];
    if (os.kind == ir::OutputKind::kBufferMutation) mutated_buffer_result[os.target] = graph.outputs[i].name;
  }
  std::set<std::string> inplace_targets;
  for (const ir::Node& n : graph.nodes) {
    const ops::OpDef* def = ops::Registry::global().find(n.target);
    if (!def) continue;
    for (const ops::SchemaArg& sa : def->schema.args) {
      if (!((def->inplace && sa.name == "self") || sa.alias.find('!') != std::string::npos)) continue;
      if (const ir::Argument* a = n.input(sa.name); a && a->kind == ir::ArgKind::kTensor) inplace_targets.insert(a->name);
    }
  }

  // ---- graph inputs
  const ir::ModuleCallSignature* root = ep.root_call_signature();
  std::vector<std::string> arg_names;
  if (root && root->forward_arg_names) arg_names = *root->forward_arg_names;
  size_t user_count = 0;
  for (const auto& s : sig.input_specs) user_count += s.kind == ir::InputKind::kUserInput;
  for (size_t i = 0; i < sig.input_specs.size(); ++i) {
    const ir::InputSpec& spec = sig.input_specs[i];
    const ir::Argument& garg = graph.inputs[i];
    switch (spec.kind) {
      case ir::InputKind::kUserInput: {
        UserInputPlan up;
        TensorInfo info;
        size_t index = user_inputs.size();
        if (garg.kind == ir::ArgKind::kTensor) {
          info.graph_name = garg.name;
          up.slot = tensor_slot(garg.name, true);
          auto meta = graph.tensor_values.find(garg.name);
          EMBER_CHECK(meta != graph.tensor_values.end(), ErrorCode::kCorrupt, source, ": input '", garg.name,
                      "' has no tensor meta");
          up.dtype = info.dtype = meta->second.dtype;
          for (const ir::SymInt& s : meta->second.sizes) {
            DimInfo di;
            DimCheck dc = dim_check(s, ep, &di);
            if (dc.is_symbolic && !dc.symbol.empty() && !di.is_expression) dc.sym_slot = int_slot(dc.symbol);
            up.dims.push_back(dc);
            info.sizes.push_back(di);
          }
        } else if (garg.kind == ir::ArgKind::kSymInt && garg.sym.is_name) {
          up.kind = UserInputPlan::Kind::kSymInt;
          up.slot = int_slot(garg.sym.name);
          info.graph_name = garg.sym.name;
          info.is_tensor = false;
        } else {
          up.kind = UserInputPlan::Kind::kConstant;
          info.is_tensor = false;
          info.graph_name = garg.name;
        }
        info.name = (arg_names.size() == user_count && index < arg_names.size()) ? arg_names[index] : info.graph_name;
        if (info.name.empty()) info.name = cat("input", index);
        user_inputs.push_back(std::move(up));
        inputs.push_back(std::move(info));
        break;
      }
      case ir::InputKind::kParameter:
      case ir::InputKind::kBuffer:
      case ir::InputKind::kTensorConstant: {
        EMBER_CHECK(garg.kind == ir::ArgKind::kTensor, ErrorCode::kCorrupt, source, ": input spec for '", spec.target,
                    "' is not a tensor");
        const Pt2TensorEntry* e = find_entry(model, spec);
        EMBER_CHECK(e != nullptr, ErrorCode::kCorrupt, source, ": graph input '", garg.name, "' needs ",
                    ir::input_kind_key(spec.kind), " '", spec.target, "', which the archive does not hold");
        EMBER_CHECK(e->tensor.defined(), ErrorCode::kUnsupported, source, ": ", ir::input_kind_key(spec.kind), " '",
                    spec.target, "' is stored pickled, which Ember does not read");
        if (auto meta = graph.tensor_values.find(garg.name); meta != graph.tensor_values.end()) {
          std::optional<Shape> shape = ir::concrete_sizes(meta->second);
          EMBER_CHECK(meta->second.dtype == e->tensor.dtype() && (!shape || *shape == e->tensor.sizes()),
                      ErrorCode::kCorrupt, source, ": ", ir::input_kind_key(spec.kind), " '", spec.target,
                      "' is stored as ", e->tensor.to_string(), " but the graph expects ",
                      dtype_name(meta->second.dtype), shape ? shape_str(*shape) : std::string("[symbolic]"));
        }
        int slot = tensor_slot(garg.name, true);
        bool mutated = spec.kind == ir::InputKind::kBuffer &&
                       (mutated_buffer_result.count(spec.target) || inplace_targets.count(garg.name));
        if (mutated) {
          MutableBuffer b;
          b.fqn = spec.target;
          b.slot = slot;
          b.state = e->tensor.clone();  // owned: the archive mapping is read-only
          auto it = mutated_buffer_result.find(spec.target);
          b.result_slot = it != mutated_buffer_result.end() ? -2 : slot;  // -2: resolved once nodes are planned
          buffers.push_back(std::move(b));
        } else {
          constants.emplace_back(slot, read_only_view(e->tensor));
        }
        break;
      }
      case ir::InputKind::kConstantInput:
        // A constant the exporter folded into the graph; bind nothing (nodes use the literal).
        break;
      default:
        fail(ErrorCode::kUnsupported, source, ": graph input '", garg.name, "' of kind ", ir::input_kind_key(spec.kind),
             " is not supported by the interpreter");
    }
  }

  // ---- nodes
  std::vector<std::string> unsupported;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!unsupported.empty()) {
      // Keep scanning for more unsupported targets, but skip planning (slots may be missing).
      const ir::Node& n = graph.nodes[i];
      std::string dummy;
      if (builtin_of(n.target, &dummy) == Builtin::kNone && !ops::Registry::global().find(n.target))
        unsupported.push_back(cat(n.target, " (node '", n.name.value_or(cat("node", i)), "')"));
      continue;
    }
    size_t before = unsupported.size();
    plan_node(graph.nodes[i], i, unsupported);
    if (unsupported.size() != before) continue;
  }
  if (!unsupported.empty()) {
    std::string list;
    for (const auto& u : unsupported) list += "\n  " + u;
    fail(ErrorCode::kUnsupported, source, ": ", unsupported.size(), " node(s) use ops Ember does not support:", list);
  }

  // ---- outputs
  auto value_of = [&](const ir::Argument& a, const std::string& what) {
    OutputBinding b;
    switch (a.kind) {
      case ir::ArgKind::kTensor:
        b.slot = tensor_slot(a.name, false);
        EMBER_CHECK(b.slot >= 0, ErrorCode::kCorrupt, source, ": ", what, " '", a.name, "' is not defined");
        break;
      case ir::ArgKind::kSymInt:
      case ir::ArgKind::kSymBool:
        if (a.sym.is_name) {
          b.kind = OutputBinding::Kind::kInt;
          auto it = int_slot_of.find(a.sym.name);
          EMBER_CHECK(it != int_slot_of.end(), ErrorCode::kCorrupt, source, ": ", what, " '", a.sym.name,
                      "' is not defined");
          b.slot = it->second;
        } else {
          b.kind = OutputBinding::Kind::kConstant;
          b.constant = a.kind == ir::ArgKind::kSymInt ? Value::from_int(a.sym.i) : Value::from_bool(a.sym.b);
        }
        break;
      case ir::ArgKind::kNone: b.kind = OutputBinding::Kind::kConstant; break;
      case ir::ArgKind::kInt:
        b.kind = OutputBinding::Kind::kConstant;
        b.constant = Value::from_int(a.i);
        break;
      case ir::ArgKind::kFloat:
        b.kind = OutputBinding::Kind::kConstant;
        b.constant = Value::from_double(a.f);
        break;
      case ir::ArgKind::kBool:
        b.kind = OutputBinding::Kind::kConstant;
        b.constant = Value::from_bool(a.b);
        break;
      case ir::ArgKind::kString:
        b.kind = OutputBinding::Kind::kConstant;
        b.constant = Value::from_string(a.s);
        break;
      default:
        fail(ErrorCode::kUnsupported, source, ": ", what, " of kind ", ir::arg_kind_key(a.kind), " is not supported");
    }
    return b;
  };
  std::vector<int> kept;  // tensor slots that must survive the run
  for (size_t i = 0; i < sig.output_specs.size(); ++i) {
    const ir::OutputSpec& os = sig.output_specs[i];
    const ir::Argument& garg = graph.outputs[i];
    switch (os.kind) {
      case ir::OutputKind::kUserOutput:
      case ir::OutputKind::kLossOutput: {
        OutputBinding b = value_of(garg, "graph output");
        TensorInfo info;
        info.graph_name = info.name = garg.kind == ir::ArgKind::kTensor ? garg.name : garg.sym.name;
        if (b.kind == OutputBinding::Kind::kTensor) {
          kept.push_back(b.slot);
          const auto& meta = graph.tensor_values.find(garg.name);
          if (meta != graph.tensor_values.end()) {
            info.dtype = meta->second.dtype;
            for (const ir::SymInt& s : meta->second.sizes) {
              DimInfo di;
              dim_check(s, ep, &di);
              info.sizes.push_back(di);
            }
          }
        } else {
          info.is_tensor = false;
        }
        user_outputs.push_back(std::move(b));
        outputs.push_back(std::move(info));
        break;
      }
      case ir::OutputKind::kBufferMutation: {
        OutputBinding b = value_of(garg, "buffer mutation");
        kept.push_back(b.slot);
        for (auto& buf : buffers)
          if (buf.fqn == os.target) buf.result_slot = b.slot;
        break;
      }
      case ir::OutputKind::kUserInputMutation: {
        OutputBinding b = value_of(garg, "user input mutation");
        kept.push_back(b.slot);
        size_t idx = inputs.size();
        for (size_t k = 0; k < inputs.size(); ++k)
          if (inputs[k].graph_name == os.target || inputs[k].name == os.target) idx = k;
        EMBER_CHECK(idx < inputs.size(), ErrorCode::kCorrupt, source, ": user input mutation names '", os.target,
                    "', which is not a user input");
        user_input_mutations.emplace_back(idx, b.slot);
        break;
      }
      case ir::OutputKind::kToken: break;
      default:
        fail(ErrorCode::kUnsupported, source, ": graph output '", garg.name, "' of kind ",
             ir::output_kind_key(os.kind), " is not supported by the interpreter");
    }
  }
  for (auto& b : buffers) {
    EMBER_CHECK(b.result_slot >= 0, ErrorCode::kCorrupt, source, ": buffer '", b.fqn, "' has no mutation output");
    kept.push_back(b.slot);
    kept.push_back(b.result_slot);
  }

  // ---- liveness: release every tensor slot after its last reader (or its producer when unread)
  std::vector<int64_t> last(tensor_slot_names.size(), -1);
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const OutPlan& o : nodes[i].outputs)
      if (o.kind == OutPlan::Kind::kTensor || o.kind == OutPlan::Kind::kTensorList)
        for (int s : o.slots) last[s] = static_cast<int64_t>(i);
    for (const ArgPlan& a : nodes[i].args)
      for (int s : a.slots)
        if (s >= 0) last[s] = static_cast<int64_t>(i);
  }
  for (int s : kept)
    if (s >= 0) last[s] = std::numeric_limits<int64_t>::max();
  for (size_t s = 0; s < last.size(); ++s)
    if (last[s] >= 0 && last[s] < static_cast<int64_t>(nodes.size())) nodes[last[s]].release.push_back(static_cast<int>(s));

  // ---- specs
  if (root && !root->in_spec.empty()) {
    in_spec = ir::parse_treespec(root->in_spec, source + ": in_spec");
    out_spec = ir::parse_treespec(root->out_spec, source + ": out_spec");
  } else {
    // No root signature: positional tensors in, a tuple of outputs out.
    ir::TreeSpec args;
    args.kind = ir::TreeSpec::Kind::kTuple;
    args.type = "builtins.tuple";
    args.children.resize(inputs.size());
    ir::TreeSpec kwargs;
    kwargs.kind = ir::TreeSpec::Kind::kDict;
    kwargs.type = "builtins.dict";
    kwargs.context = ir::Json::array();
    in_spec.kind = ir::TreeSpec::Kind::kTuple;
    in_spec.type = "builtins.tuple";
    in_spec.children = {args, kwargs};
    out_spec.kind = ir::TreeSpec::Kind::kTuple;
    out_spec.type = "builtins.tuple";
    out_spec.children.resize(outputs.size());
  }
  EMBER_CHECK(in_spec.num_leaves() == inputs.size(), ErrorCode::kCorrupt, source, ": in_spec has ",
              in_spec.num_leaves(), " leaves but the signature has ", inputs.size(), " user inputs");
  EMBER_CHECK(out_spec.num_leaves() == outputs.size(), ErrorCode::kCorrupt, source, ": out_spec has ",
              out_spec.num_leaves(), " leaves but the signature has ", outputs.size(), " user outputs");
}

// ---------------------------------------------------------------- validation

void Program::Impl::validate(const std::vector<Value>& flat, std::vector<int64_t>* ints,
                             std::vector<char>* known) const {
  if (flat.size() != user_inputs.size()) {
    std::string names;
    for (const auto& i : inputs) names += (names.empty() ? "" : ", ") + i.name;
    fail(ErrorCode::kInvalidArgument, source, ": expected ", user_inputs.size(), " inputs (", names, "), got ",
         flat.size());
  }
  // symbol slot -> (value, input index, dim) of its first binding
  std::map<int, std::tuple<int64_t, size_t, size_t>> bound;
  for (size_t i = 0; i < flat.size(); ++i) {
    const UserInputPlan& up = user_inputs[i];
    const TensorInfo& info = inputs[i];
    const Value& v = flat[i];
    std::string who = cat(source, ": input '", info.name, "' (#", i, ")");
    if (up.kind == UserInputPlan::Kind::kSymInt) {
      EMBER_CHECK(v.kind() == Value::Kind::kInt, ErrorCode::kInvalidArgument, who, ": expected an int, got ",
                  value_kind_name(v.kind()));
      (*ints)[up.slot] = v.to_int();
      (*known)[up.slot] = 1;
      continue;
    }
    if (up.kind == UserInputPlan::Kind::kConstant) continue;
    EMBER_CHECK(v.is_tensor() && v.tensor().defined(), ErrorCode::kInvalidArgument, who, ": expected a tensor ",
                info.to_string(), ", got ", v.is_tensor() ? std::string("an undefined tensor") : value_kind_name(v.kind()));
    const Tensor& t = v.tensor();
    EMBER_CHECK(t.dtype() == up.dtype, ErrorCode::kDTypeMismatch, who, ": expected ", info.to_string(), ", got ",
                dtype_name(t.dtype()), " ", shape_str(t.sizes()), " (dtype differs)");
    EMBER_CHECK(t.dim() == static_cast<int64_t>(up.dims.size()), ErrorCode::kShapeMismatch, who, ": expected ",
                info.to_string(), ", got ", dtype_name(t.dtype()), " ", shape_str(t.sizes()), " (rank ", t.dim(),
                ", expected ", up.dims.size(), ")");
    for (size_t d = 0; d < up.dims.size(); ++d) {
      const DimCheck& dc = up.dims[d];
      int64_t got = t.sizes()[d];
      auto mismatch = [&](const std::string& why) {
        fail(ErrorCode::kShapeMismatch, who, ": expected ", info.to_string(), ", got ", dtype_name(t.dtype()), " ",
             shape_str(t.sizes()), " (dimension ", d, " ", why, ")");
      };
      if (!dc.is_symbolic) {
        if (got != dc.value) mismatch(cat("is ", got, ", expected ", dc.value));
        continue;
      }
      if (dc.sym_slot < 0) continue;  // compound expression: not checked
      if (got < dc.min || got > dc.max)
        mismatch(cat("(", dc.symbol, ") is ", got, ", outside the allowed range ", range_str(dc.min, dc.max)));
      auto [it, fresh] = bound.emplace(dc.sym_slot, std::make_tuple(got, i, d));
      if (!fresh && std::get<0>(it->second) != got) {
        size_t oi = std::get<1>(it->second);
        mismatch(cat("(", dc.symbol, ") is ", got, " but input '", inputs[oi].name, "' dimension ",
                     std::get<2>(it->second), " binds ", dc.symbol, " to ", std::get<0>(it->second)));
      }
      (*ints)[dc.sym_slot] = got;
      (*known)[dc.sym_slot] = 1;
    }
  }
}

// ---------------------------------------------------------------- execution

namespace {

int64_t sym_value(const std::vector<int64_t>& ints, const std::vector<char>& known, const SymRef& r,
                  const std::vector<std::string>& names, const NodePlan& np) {
  if (r.slot < 0) return r.value;
  EMBER_CHECK(known[r.slot], ErrorCode::kInvalidArgument, "node '", np.name, "' (", np.target,
              "): symbolic value '", names[r.slot], "' has no value at run time (no input shape or node defines it)");
  return ints[r.slot];
}

int64_t floordiv(int64_t a, int64_t b) {
  EMBER_CHECK(b != 0, ErrorCode::kInvalidArgument, "symbolic integer division by zero");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

std::vector<Value> Program::Impl::execute(const std::vector<Value>& flat_inputs) const {
  RunState st;
  begin_run(st, flat_inputs);
  if (package) {
    run_glue(st);
  } else {
    for (const NodePlan& np : nodes) {
      run_node(st, np);
      for (int s : np.release) st.tensors[s] = Tensor();
    }
  }
  return finish_run(st);
}

void Program::Impl::begin_run(RunState& st, const std::vector<Value>& flat_inputs) const {
  st.flat_inputs = &flat_inputs;
  st.ints.assign(int_slot_names.size(), 0);
  st.known.assign(int_slot_names.size(), 0);
  validate(flat_inputs, &st.ints, &st.known);

  std::vector<Tensor>& tensors = st.tensors;
  tensors.assign(tensor_slot_names.size(), Tensor());
  for (const auto& [slot, t] : constants) tensors[slot] = t;
  {
    std::lock_guard<std::mutex> lock(state_mutex);
    for (const MutableBuffer& b : buffers) tensors[b.slot] = read_only_view(b.state);
  }
  for (size_t i = 0; i < user_inputs.size(); ++i) {
    if (user_inputs[i].kind != UserInputPlan::Kind::kTensor) continue;
    // Kernels get contiguous, read-only inputs; the caller's tensors are never written
    // except through an explicit user_input_mutation.
    tensors[user_inputs[i].slot] = read_only_view(flat_inputs[i].tensor().contiguous());
  }
}

void Program::Impl::run_node(RunState& st, const NodePlan& np) const {
  Profile* profile = ProfileScope::active();
  if (!profile || np.target == kEngineNodeTarget) {
    run_node_body(st, np);
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  run_node_body(st, np);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  profile->entries.push_back({"", np.name, np.target, "interpreter", ms});
}

void Program::Impl::run_node_body(RunState& st, const NodePlan& np) const {
  std::vector<Tensor>& tensors = st.tensors;
  std::vector<int64_t>& ints = st.ints;
  std::vector<char>& known = st.known;
  ++st.nodes_run;
  {
    auto tensor_at = [&](int slot) -> const Tensor& {
      const Tensor& t = tensors[slot];
      if (!t.defined())
        fail(ErrorCode::kInternal, "node '", np.name, "' (", np.target, "): tensor '", tensor_slot_names[slot],
             "' has no value (released too early or never computed)");
      return t;
    };
    try {
      // In-place ops may not write into read-only tensors (weights, inputs, shared buffers):
      // copy first and rebind the slot, so later readers of the same value see the write.
      for (int s : np.inplace_slots)
        if (!tensor_at(s).writable()) tensors[s] = tensors[s].clone();

      if (np.op) {
        std::map<std::string, ops::OpArg, std::less<>> args;
        for (const ArgPlan& a : np.args) {
          switch (a.src) {
            case ArgPlan::Src::kConst:
            case ArgPlan::Src::kWrappedNumber: args.emplace(a.name, a.constant); break;
            case ArgPlan::Src::kTensor: args.emplace(a.name, ops::OpArg::of(tensor_at(a.slots[0]))); break;
            case ArgPlan::Src::kTensorList:
            case ArgPlan::Src::kOptTensorList: {
              std::vector<Tensor> list;
              list.reserve(a.slots.size());
              for (int s : a.slots) list.push_back(s >= 0 ? tensor_at(s) : Tensor());
              ops::OpArg oa = ops::OpArg::of_list(std::move(list));
              if (a.src == ArgPlan::Src::kOptTensorList) oa.kind = ops::OpArg::Kind::kOptTensorList;
              args.emplace(a.name, std::move(oa));
              break;
            }
            case ArgPlan::Src::kSymInt:
              args.emplace(a.name, ops::OpArg::of_int(sym_value(ints, known, a.syms[0], int_slot_names, np)));
              break;
            case ArgPlan::Src::kSymBool:
              args.emplace(a.name, ops::OpArg::of_bool(sym_value(ints, known, a.syms[0], int_slot_names, np) != 0));
              break;
            case ArgPlan::Src::kSymInts: {
              std::vector<int64_t> v;
              for (const SymRef& r : a.syms) v.push_back(sym_value(ints, known, r, int_slot_names, np));
              args.emplace(a.name, ops::OpArg::of_ints(std::move(v)));
              break;
            }
          }
        }
        ops::OpCall call(np.name, np.target, std::move(args), false);
        call.set_state(np.state);
        std::vector<ops::OpArg> results = np.op->run(call);
        EMBER_CHECK(results.size() == np.outputs.size(), ErrorCode::kInternal, "kernel returned ", results.size(),
                    " outputs, the node has ", np.outputs.size());
        size_t meta_index = 0;
        for (size_t k = 0; k < results.size(); ++k) {
          const OutPlan& o = np.outputs[k];
          ops::OpArg& r = results[k];
          auto store = [&](int slot, Tensor t) {
            const ExpectedMeta& m = np.expected[meta_index++];
            EMBER_CHECK(t.defined(), ErrorCode::kInternal, "kernel returned no tensor for output '",
                        tensor_slot_names[slot], "'");
            if (m.dtype != DType::kUnknown) {
              bool ok = t.dtype() == m.dtype && t.dim() == static_cast<int64_t>(m.sizes.size());
              for (size_t d = 0; ok && d < m.sizes.size(); ++d) ok = m.sizes[d] < 0 || m.sizes[d] == t.sizes()[d];
              if (!ok) {
                std::string want = cat(dtype_name(m.dtype), " [");
                for (size_t d = 0; d < m.sizes.size(); ++d)
                  want += (d ? ", " : "") + (m.sizes[d] < 0 ? std::string("?") : std::to_string(m.sizes[d]));
                fail(ErrorCode::kInternal, "kernel produced ", t.to_string(), " for output '", tensor_slot_names[slot],
                     "', the exported program records ", want, "]");
              }
            }
            tensors[slot] = m.strides.empty() ? std::move(t) : with_layout(std::move(t), m.strides);
          };
          switch (o.kind) {
            case OutPlan::Kind::kNone: break;
            case OutPlan::Kind::kTensor:
              EMBER_CHECK(r.kind == ops::OpArg::Kind::kTensor, ErrorCode::kInternal, "kernel output ", k,
                          " is not a tensor");
              store(o.slots[0], std::move(r.tensor));
              break;
            case OutPlan::Kind::kTensorList:
              EMBER_CHECK(r.kind == ops::OpArg::Kind::kTensorList && r.tensors.size() == o.slots.size(),
                          ErrorCode::kInternal, "kernel output ", k, " is not a list of ", o.slots.size(), " tensors");
              for (size_t j = 0; j < o.slots.size(); ++j) store(o.slots[j], std::move(r.tensors[j]));
              break;
            case OutPlan::Kind::kInt:
              EMBER_CHECK(r.kind == ops::OpArg::Kind::kInt || r.kind == ops::OpArg::Kind::kBool, ErrorCode::kInternal,
                          "kernel output ", k, " is not an int");
              ints[o.slots[0]] = r.kind == ops::OpArg::Kind::kBool ? r.b : r.i;
              known[o.slots[0]] = 1;
              break;
          }
        }
      } else {
        auto int_arg = [&](size_t i) -> int64_t {
          const ArgPlan& a = np.args.at(i);
          if (a.src == ArgPlan::Src::kSymInt || a.src == ArgPlan::Src::kSymBool)
            return sym_value(ints, known, a.syms[0], int_slot_names, np);
          switch (a.constant.kind) {
            case ops::OpArg::Kind::kInt: return a.constant.i;
            case ops::OpArg::Kind::kBool: return a.constant.b;
            case ops::OpArg::Kind::kFloat: return static_cast<int64_t>(a.constant.f);
            default: fail(ErrorCode::kInvalidArgument, "input ", i, " is not an integer");
          }
        };
        auto set_int = [&](int64_t v) {
          for (const OutPlan& o : np.outputs)
            if (o.kind == OutPlan::Kind::kInt) {
              ints[o.slots[0]] = v;
              known[o.slots[0]] = 1;
            }
        };
        switch (np.builtin) {
          case Builtin::kGetItem: {
            const Tensor& t = tensor_at(np.args[0].slots[static_cast<size_t>(np.args[1].constant.i)]);
            for (const OutPlan& o : np.outputs)
              if (o.kind == OutPlan::Kind::kTensor) tensors[o.slots[0]] = t;
            break;
          }
          case Builtin::kSymSize: {
            const Tensor& t = tensor_at(np.args[0].slots[0]);
            set_int(t.size(int_arg(1)));
            break;
          }
          case Builtin::kSymStride: {
            const Tensor& t = tensor_at(np.args[0].slots[0]);
            set_int(t.stride(int_arg(1)));
            break;
          }
          case Builtin::kSymNumel: set_int(tensor_at(np.args[0].slots[0]).numel()); break;
          case Builtin::kAssert: {
            if (int_arg(0) == 0) {
              std::string msg;
              for (const ArgPlan& a : np.args)
                if (a.constant.kind == ops::OpArg::Kind::kString) msg = a.constant.s;
              fail(ErrorCode::kInvalidArgument, "runtime assertion failed", msg.empty() ? "" : ": ", msg);
            }
            break;
          }
          case Builtin::kNoOp: break;
          case Builtin::kSymOp: {
            const std::string& op = np.sym_op;
            int64_t a = int_arg(0);
            if (op == "neg") {
              set_int(-a);
            } else if (op == "sym_not") {
              set_int(a == 0);
            } else if (op == "sym_int" || op == "sym_float") {
              set_int(a);
            } else if (op == "sym_ite") {
              set_int(a ? int_arg(1) : int_arg(2));
            } else {
              int64_t b = int_arg(1);
              int64_t r = 0;
              if (op == "add") r = a + b;
              else if (op == "sub") r = a - b;
              else if (op == "mul") r = a * b;
              else if (op == "floordiv") r = floordiv(a, b);
              else if (op == "truediv") r = floordiv(a, b);
              else if (op == "mod") r = a - floordiv(a, b) * b;
              else if (op == "pow") r = static_cast<int64_t>(std::pow(static_cast<double>(a), static_cast<double>(b)));
              else if (op == "eq") r = a == b;
              else if (op == "ne") r = a != b;
              else if (op == "lt") r = a < b;
              else if (op == "le") r = a <= b;
              else if (op == "gt") r = a > b;
              else if (op == "ge") r = a >= b;
              else if (op == "and_") r = a && b;
              else if (op == "or_") r = a || b;
              else if (op == "sym_max") r = std::max(a, b);
              else if (op == "sym_min") r = std::min(a, b);
              set_int(r);
            }
            break;
          }
          case Builtin::kNone: break;
        }
      }
    } catch (const Error& e) {
      std::string prefix = cat("node '", np.name, "'");
      std::string msg = e.what();
      if (msg.rfind(prefix, 0) == 0) throw;
      throw Error(e.code(), cat(prefix, " (", np.target, "): ", msg));
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kInternal, cat("node '", np.name, "' (", np.target, "): ", e.what()));
    }
  }
}

std::vector<Value> Program::Impl::finish_run(RunState& st) const {
  const std::vector<Value>& flat_inputs = *st.flat_inputs;
  std::vector<Tensor>& tensors = st.tensors;
  std::vector<int64_t>& ints = st.ints;
  std::vector<char>& known = st.known;
  std::vector<Value> out;
  out.reserve(user_outputs.size());
  for (const OutputBinding& b : user_outputs) {
    switch (b.kind) {
      case OutputBinding::Kind::kTensor: out.emplace_back(tensors[b.slot]); break;
      case OutputBinding::Kind::kInt:
        EMBER_CHECK(known[b.slot], ErrorCode::kInternal, source, ": output '", int_slot_names[b.slot],
                    "' has no value");
        out.push_back(Value::from_int(ints[b.slot]));
        break;
      case OutputBinding::Kind::kConstant: out.push_back(b.constant); break;
    }
  }
  // Mutations, applied like PyTorch: user inputs are updated in place, buffers replaced.
  for (const auto& [idx, slot] : user_input_mutations) {
    const Tensor& dst = flat_inputs[idx].tensor();
    const Tensor& src = tensors[slot];
    if (dst.storage() == src.storage() && dst.raw_data() == src.raw_data()) continue;
    EMBER_CHECK(dst.writable(), ErrorCode::kInvalidArgument, source, ": the program mutates input '",
                inputs[idx].name, "' but the tensor passed for it is read-only");
    Tensor(dst).copy_from(src);
  }
  if (!buffers.empty()) {
    std::lock_guard<std::mutex> lock(state_mutex);
    for (MutableBuffer& b : buffers) {
      const Tensor& t = tensors[b.result_slot];
      if (t.defined()) b.state = t.writable() ? t : t.clone();
    }
  }
  return out;
}

// ---------------------------------------------------------------- packaged glue

}  // namespace ember

// The runtime's side of one run of a packaged model's glue. Exceptions never cross into the
// generated code: each call stores the error and returns non-zero, and the glue returns it.
struct ember_glue_context {
  const ember::Program::Impl* impl = nullptr;
  ember::Program::Impl::RunState* st = nullptr;
  std::exception_ptr error;
};

namespace ember {
namespace {

int glue_run_node(ember_glue_context* c, uint32_t node) {
  try {
    const Program::Impl& impl = *c->impl;
    EMBER_CHECK(node < impl.glue_nodes.size(), ErrorCode::kCorrupt, impl.source, ": the package glue runs node #",
                node, ", but it names only ", impl.glue_nodes.size(), " nodes");
    impl.run_node(*c->st, impl.nodes[impl.glue_nodes[node]]);
    return 0;
  } catch (...) {
    c->error = std::current_exception();
    return 1;
  }
}

int glue_release(ember_glue_context* c, uint32_t value) {
  try {
    const Program::Impl& impl = *c->impl;
    EMBER_CHECK(value < impl.glue_values.size(), ErrorCode::kCorrupt, impl.source,
                ": the package glue releases value #", value, ", but it names only ", impl.glue_values.size(),
                " values");
    c->st->tensors[impl.glue_values[value]] = Tensor();
    return 0;
  } catch (...) {
    c->error = std::current_exception();
    return 1;
  }
}

}  // namespace

void Program::Impl::run_glue(RunState& st) const {
  static const ember_glue_api api = {EMBER_PACKAGE_ABI_VERSION, &glue_run_node, &glue_release};
  ember_glue_context ctx;
  ctx.impl = this;
  ctx.st = &st;
  int rc = package->run(&api, &ctx);
  if (ctx.error) std::rethrow_exception(ctx.error);
  EMBER_CHECK(rc == 0, ErrorCode::kInternal, source, ": the package glue failed with status ", rc);
  EMBER_CHECK(st.nodes_run == nodes.size(), ErrorCode::kCorrupt, source, ": the package glue ran ", st.nodes_run,
              " node(s), the program has ", nodes.size());
}

void Program::Impl::bind_package(const ember_package& pkg) {
  std::unordered_map<std::string_view, size_t> node_index;
  for (size_t i = 0; i < nodes.size(); ++i) node_index.emplace(nodes[i].name, i);
  EMBER_CHECK(pkg.num_nodes == nodes.size(), ErrorCode::kCorrupt, source, ": the package glue names ", pkg.num_nodes,
              " node(s), the embedded program has ", nodes.size());
  EMBER_CHECK(pkg.run != nullptr && (pkg.num_nodes == 0 || pkg.node_names != nullptr) &&
                  (pkg.num_values == 0 || pkg.value_names != nullptr),
              ErrorCode::kCorrupt, source, ": the package descriptor has no run function or name tables");
  std::vector<char> seen(nodes.size(), 0);
  for (uint32_t i = 0; i < pkg.num_nodes; ++i) {
    const char* name = pkg.node_names[i];
    auto it = name ? node_index.find(name) : node_index.end();
    EMBER_CHECK(it != node_index.end(), ErrorCode::kCorrupt, source, ": the package glue names node '",
                name ? name : "(null)", "', which the embedded program does not have");
    EMBER_CHECK(!seen[it->second], ErrorCode::kCorrupt, source, ": the package glue names node '", name, "' twice");
    seen[it->second] = 1;
    glue_nodes.push_back(it->second);
  }
  for (uint32_t i = 0; i < pkg.num_values; ++i) {
    const char* name = pkg.value_names[i];
    auto it = name ? tensor_slot_of.find(name) : tensor_slot_of.end();
    EMBER_CHECK(it != tensor_slot_of.end(), ErrorCode::kCorrupt, source, ": the package glue releases value '",
                name ? name : "(null)", "', which the embedded program does not have");
    glue_values.push_back(it->second);
  }
  package = &pkg;
}

// ---------------------------------------------------------------- Program

Program Program::from_package(const void* descriptor, std::shared_ptr<const void> keepalive,
                              const std::string& source) {
  Pt2Archive archive = package_archive(descriptor, keepalive, source);  // checks magic and ABI version first
  const auto* pkg = static_cast<const ember_package*>(descriptor);
  const Pt2Model* model = archive.find_model(pkg->model_name);
  EMBER_CHECK(model != nullptr, ErrorCode::kCorrupt, source, ": the package has no model named '", pkg->model_name,
              "'");
  Program p = from_model(*model, source);
  p.impl_->package_keepalive = std::move(keepalive);
  p.impl_->bind_package(*pkg);
  return p;
}

Program Program::from_model(const Pt2Model& model, const std::string& source, const LoadOptions& options) {
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  impl->prepare_kernels = options.prepare_kernels;
  impl->build(model);
  // Name outputs by their place in the output pytree ("logits", "aux[0]"), as `ember inspect` does.
  std::vector<std::string> paths = output_leaf_paths(impl->ep);
  if (paths.size() == impl->outputs.size())
    for (size_t i = 0; i < paths.size(); ++i) impl->outputs[i].name = paths[i];
  return Program(std::move(impl));
}

Program Program::from_archive(const Pt2Archive& archive, const LoadOptions& options) {
  const Pt2Model* model = nullptr;
  std::string names;
  for (const auto& m : archive.models) names += (names.empty() ? "" : ", ") + m.name;
  if (!options.model_name.empty()) {
    model = archive.find_model(options.model_name);
    EMBER_CHECK(model != nullptr, ErrorCode::kNotFound, archive.root, ": no model named '", options.model_name,
                "' (models: ", names.empty() ? "none" : names, ")");
  } else {
    model = archive.find_model("model");
    if (!model && archive.models.size() == 1) model = &archive.models[0];
    EMBER_CHECK(model != nullptr, ErrorCode::kNotFound, archive.root, ": no model named 'model' and ",
                archive.models.size(), " models to choose from (", names.empty() ? "none" : names,
                "); pick one by name");
  }
  return from_model(*model, cat(archive.root.empty() ? std::string("archive") : archive.root, ":", model->name),
                    options);
}

Program Program::load(const std::string& path, const LoadOptions& options) {
  // One mapping of the file serves the sniffing and the archive reader.
  std::shared_ptr<Storage> bytes = map_file_readonly(path);
  // A standalone engine file runs as a one-node program.
  if (is_engine_bytes({bytes->data(), bytes->nbytes()}))
    return from_model(model_from_engine(bytes, path), path, options);
  // A packaged model (ELF shared library).
  if (is_shared_library(*bytes)) return load_package(path);
  Pt2ReadOptions ro;
  ro.verify_crc = options.verify_crc;
  Pt2Archive archive = read_pt2_from_memory(std::move(bytes), path, ro);
  const Pt2Model* model = nullptr;
  if (!options.model_name.empty()) {
    model = archive.find_model(options.model_name);
  } else {
    model = archive.find_model("model");
    if (!model && archive.models.size() == 1) model = &archive.models[0];
  }
  if (!model) return from_archive(archive, options);  // reports the error
  return from_model(*model, cat(path, archive.models.size() > 1 ? ":" + model->name : std::string()), options);
}

const std::vector<TensorInfo>& Program::inputs() const { return impl_->inputs; }
const std::vector<TensorInfo>& Program::outputs() const { return impl_->outputs; }
const ir::TreeSpec& Program::in_spec() const { return impl_->in_spec; }
const ir::TreeSpec& Program::out_spec() const { return impl_->out_spec; }
const ir::ExportedProgram& Program::exported_program() const { return impl_->ep; }
const std::string& Program::source() const { return impl_->source; }
size_t Program::num_nodes() const { return impl_->nodes.size(); }

std::vector<PlanStep> Program::plan() const {
  std::vector<PlanStep> steps;
  steps.reserve(impl_->nodes.size());
  for (const NodePlan& np : impl_->nodes) {
    PlanStep step{np.name, np.target, {}};
    for (int s : np.release) step.release.push_back(impl_->tensor_slot_names[s]);
    steps.push_back(std::move(step));
  }
  return steps;
}

void Program::validate_inputs(const std::vector<Value>& flat_inputs) const {
  std::vector<int64_t> ints(impl_->int_slot_names.size(), 0);
  std::vector<char> known(impl_->int_slot_names.size(), 0);
  impl_->validate(flat_inputs, &ints, &known);
}

Value Program::run(const Value& args) const {
  const ir::TreeSpec& spec = impl_->in_spec;
  Value full = args;
  bool args_kwargs_spec = spec.kind == ir::TreeSpec::Kind::kTuple && spec.children.size() == 2 &&
                          spec.children[1].kind == ir::TreeSpec::Kind::kDict;
  if (args_kwargs_spec) {
    bool has_kwargs = !spec.children[1].children.empty();
    size_t positional = spec.children[0].children.size();
    bool looks_full = args.kind() == Value::Kind::kTuple && args.size() == 2 &&
                      args[0].kind() == Value::Kind::kTuple && args[1].kind() == Value::Kind::kDict;
    bool full_form = false;
    if (looks_full) {
      // ((args...), {kwargs}) as PyTorch's in_spec has it; used when it fits the spec.
      try {
        flatten(args, spec, impl_->source + ": inputs");
        full_form = true;
      } catch (const Error&) {
      }
    }
    if (!has_kwargs && !full_form) {
      Value positional_args = args;
      if (args.is_leaf() && positional == 1) positional_args = Value::tuple({args});
      full = Value::tuple({positional_args, Value::dict({})});
    }
  }
  std::vector<Value> flat = flatten(full, spec, impl_->source + ": inputs");
  std::vector<Value> out = impl_->execute(flat);
  return unflatten(impl_->out_spec, std::move(out), impl_->namedtuple_fields);
}

std::vector<Tensor> Program::run_flat(const std::vector<Tensor>& user_inputs) const {
  std::vector<Value> flat;
  flat.reserve(user_inputs.size());
  for (const Tensor& t : user_inputs) flat.emplace_back(t);
  std::vector<Value> out = impl_->execute(flat);
  std::vector<Tensor> tensors;
  tensors.reserve(out.size());
  for (const Value& v : out) {
    switch (v.kind()) {
      case Value::Kind::kTensor: tensors.push_back(v.tensor()); break;
      case Value::Kind::kInt: tensors.push_back(Tensor::scalar(static_cast<double>(v.to_int()), DType::kInt64)); break;
      case Value::Kind::kBool: tensors.push_back(Tensor::scalar(v.to_bool(), DType::kBool)); break;
      case Value::Kind::kDouble: tensors.push_back(Tensor::scalar(v.to_double(), DType::kFloat64)); break;
      default: tensors.emplace_back(); break;
    }
  }
  return tensors;
}

}  // namespace ember
