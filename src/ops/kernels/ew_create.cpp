// Conversions and copies (_to_copy, to.*, type_as, clone, contiguous, alias, detach,
// lift_fresh_copy, copy_, copy), creation ops (arange, full, zeros, ones, empty, *_like,
// new_*, scalar_tensor) and size queries (sym_size, sym_numel, sym_stride, numel).
#include <cmath>

#include "ops/kernels/ew_common.h"

namespace ember::ops::ew {
namespace {

// Only CPU tensors exist in the reference kernels.
void check_device(const OpCall& c, const char* name = "device") {
  if (!c.has(name)) return;
  const OpArg& a = c.arg(name);
  if (a.kind == OpArg::Kind::kDevice && a.device.type != DeviceType::kCPU)
    fail_node(c, ErrorCode::kUnsupported, "device ", device_str(a.device),
              " is not supported by the reference kernels (expected cpu)");
}

template <typename I, typename K>
void reg(Registry& r, const char* target, const char* schema, I infer, K kernel) {
  r.add(
      target, schema, [infer](const OpCall& c) { return std::vector<TensorSpec>{infer(c)}; },
      [kernel](const OpCall& c) { return std::vector<OpArg>{OpArg::of(kernel(c))}; });
}

// A new tensor holding a converted copy of `t`.
Tensor copy_as(const Tensor& t, DType dtype) {
  Tensor out = Tensor::empty(t.sizes(), dtype);
  if (t.dtype() == dtype) out.copy_from(t);
  else out.copy_from(cast(t, dtype));
  return out;
}

// A view of `t` that shares its storage (alias / detach / no-op conversions).
Tensor alias_of(const Tensor& t) { return t.as_strided(t.sizes(), t.strides(), t.storage_offset()); }

bool copy_flag(const OpCall& c) { return c.has("copy") && c.bool_arg("copy"); }

// to.*: returns self when nothing changes and no copy was asked for, like PyTorch.
Tensor to_run(const OpCall& c, DType dtype) {
  check_device(c);
  const Tensor& self = c.tensor("self");
  if (dtype == self.dtype() && !copy_flag(c)) return self;
  return copy_as(self, dtype);
}

// ---------------------------------------------------------------- creation

DType fill_dtype(const OpCall& c, const ScalarValue& v) {
  if (std::optional<DType> d = c.opt_dtype("dtype")) return *d;
  switch (v.kind) {
    case ScalarValue::Kind::kBool: return DType::kBool;
    case ScalarValue::Kind::kInt: return DType::kInt64;
    case ScalarValue::Kind::kFloat: return DType::kFloat32;
  }
  return DType::kFloat32;
}

Shape size_list(const OpCall& c, const char* name) {
  Shape s = c.int_list(name);
  if (!c.infer_mode())
    for (int64_t v : s)
      if (v < 0) c.fail_arg(name, cat("expected non-negative sizes, found ", shape_str(s)));
  return s;
}

Tensor filled(const OpCall& c, const Shape& sizes, DType dtype, const ScalarValue& v) {
  check_device(c);
  Tensor t = Tensor::empty(sizes, dtype);
  fill(t, v);
  return t;
}

ScalarValue int_value(int64_t i) { return ScalarValue{ScalarValue::Kind::kInt, i, 0.0}; }

struct ArangeArgs {
  ScalarValue start, end, step;
  DType dtype;
  int64_t length;
};

ArangeArgs arange_args(const OpCall& c) {
  ArangeArgs a;
  a.start = c.has("start") ? scalar_value(c, "start") : int_value(0);
  a.end = scalar_value(c, "end");
  a.step = c.has("step") ? scalar_value(c, "step") : int_value(1);
  const bool all_int = a.start.integral() && a.end.integral() && a.step.integral();
  a.dtype = c.opt_dtype("dtype").value_or(all_int ? DType::kInt64 : DType::kFloat32);
  const double s = a.start.as_double(), e = a.end.as_double(), st = a.step.as_double();
  if (st == 0) fail_node(c, ErrorCode::kInvalidArgument, "arange: step must be nonzero");
  if (!std::isfinite(s) || !std::isfinite(e))
    fail_node(c, ErrorCode::kInvalidArgument, "arange: unsupported range ", s, " -> ", e);
  if ((st > 0 && e < s) || (st < 0 && e > s))
    fail_node(c, ErrorCode::kInvalidArgument, "arange: upper bound and larger bound inconsistent with step sign");
  double n;
  if (all_int && is_integral_or_bool(a.dtype)) {
    // Exact integer arithmetic: ceil((end - start) / step).
    const int64_t di = a.end.i - a.start.i, si = a.step.i;
    int64_t q = di / si;
    if (di % si != 0) ++q;
    n = static_cast<double>(q);
  } else {
    n = std::ceil((e - s) / st);
  }
  if (n > static_cast<double>(int64_t{1} << 40))
    fail_node(c, ErrorCode::kLimitExceeded, "arange: ", n, " elements is too many");
  a.length = static_cast<int64_t>(n);
  return a;
}

Tensor arange_run(const OpCall& c) {
  check_device(c);
  ArangeArgs a = arange_args(c);
  Tensor out = Tensor::empty({a.length}, a.dtype);
  dispatch(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* d = out.data<T>();
    if constexpr (is_float_v<T>) {
      const double s = a.start.as_double(), st = a.step.as_double();
      for (int64_t i = 0; i < a.length; ++i) d[i] = store<T>(s + st * static_cast<double>(i));
    } else if (a.start.integral() && a.step.integral()) {
      for (int64_t i = 0; i < a.length; ++i)
        d[i] = static_cast<T>(static_cast<int64_t>(static_cast<uint64_t>(a.start.i) +
                                                   static_cast<uint64_t>(a.step.i) * static_cast<uint64_t>(i)));
    } else {
      const double s = a.start.as_double(), st = a.step.as_double();
      for (int64_t i = 0; i < a.length; ++i) d[i] = store<T>(s + st * static_cast<double>(i));
    }
  });
  return out;
}

// ---------------------------------------------------------------- size queries

// Index of dimension `dim` of `self` (a 0-d tensor has no sizes to query).
int64_t query_dim(const OpCall& c, const Tensor& self) {
  if (self.dim() == 0) fail_node(c, ErrorCode::kInvalidArgument, "cannot query a dimension of a 0-d tensor");
  return norm_dim(c, c.int_arg("dim"), self.dim());
}

std::vector<OpArg> sym_size_run(const OpCall& c) {
  const Tensor& self = c.tensor("self");
  return {OpArg::of_int(self.sizes()[query_dim(c, self)])};
}

}  // namespace

EMBER_REGISTER_OPS(ew_create) {
  auto same_spec = [](const OpCall& c) { return c.spec("self"); };
  auto dtype_or_self = [](const OpCall& c) {
    return TensorSpec{c.opt_dtype("dtype").value_or(c.spec("self").dtype), c.spec("self").sizes};
  };

  // Conversions and copies.
  reg(r, "torch.ops.aten._to_copy.default",
      "_to_copy(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? "
      "pin_memory=None, bool non_blocking=False, MemoryFormat? memory_format=None) -> Tensor",
      dtype_or_self, [](const OpCall& c) {
        check_device(c);
        const Tensor& self = c.tensor("self");
        return copy_as(self, c.opt_dtype("dtype").value_or(self.dtype()));
      });
  reg(r, "torch.ops.aten.to.dtype",
      "to.dtype(Tensor(a) self, ScalarType dtype, bool non_blocking=False, bool copy=False, MemoryFormat? "
      "memory_format=None) -> Tensor(a)",
      dtype_or_self, [](const OpCall& c) { return to_run(c, *c.opt_dtype("dtype")); });
  reg(r, "torch.ops.aten.to.dtype_layout",
      "to.dtype_layout(Tensor(a) self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? "
      "pin_memory=None, bool non_blocking=False, bool copy=False, MemoryFormat? memory_format=None) -> Tensor(a)",
      dtype_or_self,
      [](const OpCall& c) { return to_run(c, c.opt_dtype("dtype").value_or(c.tensor("self").dtype())); });
  reg(r, "torch.ops.aten.to.device",
      "to.device(Tensor(a) self, Device device, ScalarType dtype, bool non_blocking=False, bool copy=False, "
      "MemoryFormat? memory_format=None) -> Tensor(a)",
      dtype_or_self, [](const OpCall& c) { return to_run(c, *c.opt_dtype("dtype")); });
  reg(r, "torch.ops.aten.type_as.default", "type_as(Tensor self, Tensor other) -> Tensor",
      [](const OpCall& c) { return TensorSpec{c.spec("other").dtype, c.spec("self").sizes}; },
      [](const OpCall& c) {
        const Tensor& self = c.tensor("self");
        DType d = c.spec("other").dtype;
        return d == self.dtype() ? self : copy_as(self, d);
      });
  reg(r, "torch.ops.aten.clone.default", "clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor",
      same_spec, [](const OpCall& c) { return c.tensor("self").clone(); });
  reg(r, "torch.ops.aten.contiguous.default",
      "contiguous(Tensor(a) self, *, MemoryFormat memory_format=contiguous_format) -> Tensor(a)", same_spec,
      [](const OpCall& c) { return c.tensor("self").contiguous(); });
  reg(r, "torch.ops.aten.alias.default", "alias(Tensor(a) self) -> Tensor(a)", same_spec,
      [](const OpCall& c) { return alias_of(c.tensor("self")); });
  reg(r, "torch.ops.aten.detach.default", "detach(Tensor(a) self) -> Tensor(a)", same_spec,
      [](const OpCall& c) { return alias_of(c.tensor("self")); });
  reg(r, "torch.ops.aten.lift_fresh_copy.default", "lift_fresh_copy(Tensor self) -> Tensor", same_spec,
      [](const OpCall& c) { return c.tensor("self").clone(); });
  auto copy_infer = [](const OpCall& c) {
    const TensorSpec& self = c.spec("self");
    Shape b = broadcast_shapes(c, self.sizes, c.spec("src").sizes);
    if (b != self.sizes)
      fail_node(c, ErrorCode::kShapeMismatch, "cannot copy a tensor of shape ", shape_str(c.spec("src").sizes),
                " into one of shape ", shape_str(self.sizes));
    return self;
  };
  r.add(
      "torch.ops.aten.copy_.default", "copy_(Tensor(a!) self, Tensor src, bool non_blocking=False) -> Tensor(a!)",
      [copy_infer](const OpCall& c) { return std::vector<TensorSpec>{copy_infer(c)}; },
      [](const OpCall& c) {
        const Tensor& self = c.tensor("self");
        check_writable(c, self, "self");
        copy_into(c, self, c.tensor("src"));
        return std::vector<OpArg>{OpArg::of(self)};
      },
      true);
  reg(r, "torch.ops.aten.copy.default", "copy(Tensor self, Tensor src, bool non_blocking=False) -> Tensor", copy_infer,
      [](const OpCall& c) {
        const Tensor& self = c.tensor("self");
        Tensor out = Tensor::empty(self.sizes(), self.dtype());
        copy_into(c, out, c.tensor("src"));
        return out;
      });

  // Creation.
  const char* kFactoryKw = "*, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None";
  reg(r, "torch.ops.aten.arange.default", cat("arange(Scalar end, ", kFactoryKw, ") -> Tensor").c_str(),
      [](const OpCall& c) {
        ArangeArgs a = arange_args(c);
        return TensorSpec{a.dtype, {a.length}};
      },
      arange_run);
  reg(r, "torch.ops.aten.arange.start", cat("arange.start(Scalar start, Scalar end, ", kFactoryKw, ") -> Tensor").c_str(),
      [](const OpCall& c) {
        ArangeArgs a = arange_args(c);
        return TensorSpec{a.dtype, {a.length}};
      },
      arange_run);
  reg(r, "torch.ops.aten.arange.start_step",
      cat("arange.start_step(Scalar start, Scalar end, Scalar step=1, ", kFactoryKw, ") -> Tensor").c_str(),
      [](const OpCall& c) {
        ArangeArgs a = arange_args(c);
        return TensorSpec{a.dtype, {a.length}};
      },
      arange_run);
  reg(r, "torch.ops.aten.full.default", cat("full(SymInt[] size, Scalar fill_value, ", kFactoryKw, ") -> Tensor").c_str(),
      [](const OpCall& c) {
        return TensorSpec{fill_dtype(c, scalar_value(c, "fill_value")), size_list(c, "size")};
      },
      [](const OpCall& c) {
        ScalarValue v = scalar_value(c, "fill_value");
        return filled(c, size_list(c, "size"), fill_dtype(c, v), v);
      });
  for (const auto& [name, value] : {std::pair{"zeros", 0}, std::pair{"ones", 1}}) {
    const int64_t v = value;
    reg(r, cat("torch.ops.aten.", name, ".default").c_str(),
        cat(name, "(SymInt[] size, ", kFactoryKw, ") -> Tensor").c_str(),
        [](const OpCall& c) {
          return TensorSpec{c.opt_dtype("dtype").value_or(DType::kFloat32), size_list(c, "size")};
        },
        [v](const OpCall& c) {
          return filled(c, size_list(c, "size"), c.opt_dtype("dtype").value_or(DType::kFloat32), int_value(v));
        });
    reg(r, cat("torch.ops.aten.", name, "_like.default").c_str(),
        cat(name, "_like(Tensor self, ", kFactoryKw, ", MemoryFormat? memory_format=None) -> Tensor").c_str(),
        dtype_or_self, [v](const OpCall& c) {
          const Tensor& self = c.tensor("self");
          return filled(c, self.sizes(), c.opt_dtype("dtype").value_or(self.dtype()), int_value(v));
        });
    reg(r, cat("torch.ops.aten.new_", name, ".default").c_str(),
        cat("new_", name, "(Tensor self, SymInt[] size, ", kFactoryKw, ") -> Tensor").c_str(),
        [](const OpCall& c) {
          return TensorSpec{c.opt_dtype("dtype").value_or(c.spec("self").dtype), size_list(c, "size")};
        },
        [v](const OpCall& c) {
          return filled(c, size_list(c, "size"), c.opt_dtype("dtype").value_or(c.tensor("self").dtype()),
                        int_value(v));
        });
  }
  // Uninitialized memory would make results depend on the allocator: empty tensors are zeroed.
  reg(r, "torch.ops.aten.empty.memory_format",
      cat("empty.memory_format(SymInt[] size, ", kFactoryKw, ", MemoryFormat? memory_format=None) -> Tensor").c_str(),
      [](const OpCall& c) {
        return TensorSpec{c.opt_dtype("dtype").value_or(DType::kFloat32), size_list(c, "size")};
      },
      [](const OpCall& c) {
        return filled(c, size_list(c, "size"), c.opt_dtype("dtype").value_or(DType::kFloat32), int_value(0));
      });
  reg(r, "torch.ops.aten.empty_like.default",
      cat("empty_like(Tensor self, ", kFactoryKw, ", MemoryFormat? memory_format=None) -> Tensor").c_str(),
      dtype_or_self, [](const OpCall& c) {
        const Tensor& self = c.tensor("self");
        return filled(c, self.sizes(), c.opt_dtype("dtype").value_or(self.dtype()), int_value(0));
      });
  reg(r, "torch.ops.aten.new_empty.default", cat("new_empty(Tensor self, SymInt[] size, ", kFactoryKw, ") -> Tensor").c_str(),
      [](const OpCall& c) {
        return TensorSpec{c.opt_dtype("dtype").value_or(c.spec("self").dtype), size_list(c, "size")};
      },
      [](const OpCall& c) {
        return filled(c, size_list(c, "size"), c.opt_dtype("dtype").value_or(c.tensor("self").dtype()), int_value(0));
      });
  reg(r, "torch.ops.aten.full_like.default",
      cat("full_like(Tensor self, Scalar fill_value, ", kFactoryKw, ", MemoryFormat? memory_format=None) -> Tensor")
          .c_str(),
      dtype_or_self, [](const OpCall& c) {
        const Tensor& self = c.tensor("self");
        return filled(c, self.sizes(), c.opt_dtype("dtype").value_or(self.dtype()), scalar_value(c, "fill_value"));
      });
  reg(r, "torch.ops.aten.new_full.default",
      cat("new_full(Tensor self, SymInt[] size, Scalar fill_value, ", kFactoryKw, ") -> Tensor").c_str(),
      [](const OpCall& c) {
        return TensorSpec{c.opt_dtype("dtype").value_or(c.spec("self").dtype), size_list(c, "size")};
      },
      [](const OpCall& c) {
        return filled(c, size_list(c, "size"), c.opt_dtype("dtype").value_or(c.tensor("self").dtype()),
                      scalar_value(c, "fill_value"));
      });
  reg(r, "torch.ops.aten.scalar_tensor.default", cat("scalar_tensor(Scalar s, ", kFactoryKw, ") -> Tensor").c_str(),
      [](const OpCall& c) { return TensorSpec{c.opt_dtype("dtype").value_or(DType::kFloat32), {}}; },
      [](const OpCall& c) {
        return filled(c, {}, c.opt_dtype("dtype").value_or(DType::kFloat32), scalar_value(c, "s"));
      });

  // Size queries: one int output, no tensor specs.
  auto no_specs = [](const OpCall& c) {
    c.spec("self");
    return std::vector<TensorSpec>{};
  };
  r.add("torch.ops.aten.sym_size.int", "sym_size.int(Tensor self, int dim) -> SymInt", no_specs, sym_size_run);
  r.add("torch.ops.aten.sym_stride.int", "sym_stride.int(Tensor self, int dim) -> SymInt", no_specs,
        [](const OpCall& c) {
          const Tensor& self = c.tensor("self");
          return std::vector<OpArg>{OpArg::of_int(self.strides()[query_dim(c, self)])};
        });
  r.add("torch.ops.aten.sym_numel.default", "sym_numel(Tensor self) -> SymInt", no_specs,
        [](const OpCall& c) { return std::vector<OpArg>{OpArg::of_int(c.tensor("self").numel())}; });
  r.add("torch.ops.aten.numel.default", "numel(Tensor self) -> int", no_specs,
        [](const OpCall& c) { return std::vector<OpArg>{OpArg::of_int(c.tensor("self").numel())}; });
}

}  // namespace ember::ops::ew
