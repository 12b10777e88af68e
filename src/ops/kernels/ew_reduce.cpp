// Reductions: sum, mean, prod, amax/amin, max/min (values + indices), argmax/argmin,
// var/std and any/all. Each output element is reduced sequentially in a fixed
// order (floats accumulate in double), so results are deterministic.
#include <algorithm>
#include <cmath>

#include "ops/kernels/ew_common.h"

namespace ember::ops::ew {
namespace {

// Which dims of a rank-`rank` tensor are reduced; an absent or empty list means all.
std::vector<bool> reduced_dims(const OpCall& c, int64_t rank, const std::optional<std::vector<int64_t>>& dims) {
  std::vector<bool> red(static_cast<size_t>(rank), false);
  if (!dims || dims->empty()) {
    std::fill(red.begin(), red.end(), true);
    return red;
  }
  for (int64_t d : *dims) {
    int64_t n = norm_dim(c, d, rank);
    if (rank == 0) continue;
    if (red[n]) fail_node(c, ErrorCode::kInvalidArgument, "dimension ", n, " appears more than once in the reduction list");
    red[n] = true;
  }
  return red;
}

Shape reduced_shape(const Shape& in, const std::vector<bool>& red, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < in.size(); ++d) {
    if (!red[d]) out.push_back(in[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// The input split into kept (outer) and reduced (inner) dims.
struct Plan {
  Shape outer_sizes, outer_strides, inner_sizes, inner_strides;
  int64_t outer_numel = 1, inner_numel = 1;
};

Plan make_plan(const Tensor& in, const std::vector<bool>& red) {
  Plan p;
  for (int64_t d = 0; d < in.dim(); ++d) {
    if (red[d]) {
      p.inner_sizes.push_back(in.sizes()[d]);
      p.inner_strides.push_back(in.strides()[d]);
      p.inner_numel *= in.sizes()[d];
    } else {
      p.outer_sizes.push_back(in.sizes()[d]);
      p.outer_strides.push_back(in.strides()[d]);
      p.outer_numel *= in.sizes()[d];
    }
  }
  return p;
}

// Calls f(out_index, visit) per output element; visit(g) calls g(element_offset, j) for the
// j-th reduced element in row-major order of the reduced dims.
template <typename F>
void for_each_output(const Tensor& in, const Plan& p, F&& f) {
  OffsetWalker outer(p.outer_sizes, p.outer_strides, in.storage_offset());
  for (int64_t o = 0; o < p.outer_numel; ++o, outer.next()) {
    const int64_t base = outer.offset();
    auto visit = [&](auto&& g) {
      if (p.inner_sizes.size() == 1) {
        const int64_t s = p.inner_strides[0];
        for (int64_t j = 0; j < p.inner_numel; ++j) g(base + j * s, j);
      } else {
        OffsetWalker inner(p.inner_sizes, p.inner_strides, base);
        for (int64_t j = 0; j < p.inner_numel; ++j, inner.next()) g(inner.offset(), j);
      }
    };
    f(o, visit);
  }
}

template <typename T>
const T* base_ptr(const Tensor& t) {
  return reinterpret_cast<const T*>(t.storage()->data());
}

// Accumulator type: double for floats, int64 for integers and bool.
template <typename T>
using acc_t = std::conditional_t<is_float_v<T>, double, int64_t>;

// ---------------------------------------------------------------- sum / prod / mean

enum class Kind { kSum, kProd, kMean };

DType accumulate_out_dtype(const OpCall& c, DType in, Kind kind) {
  if (std::optional<DType> d = c.opt_dtype("dtype")) return *d;
  if (kind == Kind::kMean) {
    if (!is_floating(in))
      fail_node(c, ErrorCode::kDTypeMismatch,
                "mean could not infer the output dtype: the input dtype must be floating point, found ",
                dtype_name(in));
    return in;
  }
  return is_integral_or_bool(in) ? DType::kInt64 : in;
}

std::optional<std::vector<int64_t>> dim_list(const OpCall& c, const char* name) {
  if (!c.has(name)) return std::nullopt;
  return c.int_list(name);
}

struct ReduceSpec {
  std::vector<bool> red;
  Shape out_sizes;
};

ReduceSpec reduce_spec(const OpCall& c, const Shape& in, const std::optional<std::vector<int64_t>>& dims,
                       bool keepdim) {
  ReduceSpec s;
  s.red = reduced_dims(c, static_cast<int64_t>(in.size()), dims);
  s.out_sizes = reduced_shape(in, s.red, keepdim);
  return s;
}

bool keepdim_arg(const OpCall& c) { return c.has("keepdim") && c.bool_arg("keepdim"); }

TensorSpec accumulate_infer(const OpCall& c, Kind kind, bool has_dims) {
  const TensorSpec& in = c.spec("self");
  ReduceSpec s = reduce_spec(c, in.sizes, has_dims ? dim_list(c, "dim") : std::nullopt, has_dims && keepdim_arg(c));
  return {accumulate_out_dtype(c, in.dtype, kind), s.out_sizes};
}

Tensor accumulate_run(const OpCall& c, Kind kind, bool has_dims) {
  const Tensor& self = c.tensor("self");
  DType out_dtype = accumulate_out_dtype(c, self.dtype(), kind);
  ReduceSpec s = reduce_spec(c, self.sizes(), has_dims ? dim_list(c, "dim") : std::nullopt, has_dims && keepdim_arg(c));
  // An explicit dtype casts the input first; integer inputs accumulate in int64.
  Tensor in = cast(self, c.has("dtype") ? out_dtype : self.dtype());
  Tensor out = Tensor::empty(s.out_sizes, out_dtype);
  Plan p = make_plan(in, s.red);
  dispatch(in.dtype(), [&](auto in_tag) {
    using T = decltype(in_tag);
    using A = acc_t<T>;
    dispatch(out_dtype, [&](auto out_tag) {
      using O = decltype(out_tag);
      const T* data = base_ptr<T>(in);
      O* dst = out.data<O>();
      for_each_output(in, p, [&](int64_t o, auto&& visit) {
        A acc = kind == Kind::kProd ? A(1) : A(0);
        if (kind == Kind::kProd) {
          visit([&](int64_t off, int64_t) {
            if constexpr (std::is_same_v<A, int64_t>)
              acc = static_cast<int64_t>(static_cast<uint64_t>(acc) * static_cast<uint64_t>(static_cast<int64_t>(data[off])));
            else acc *= static_cast<A>(load(data[off]));
          });
        } else {
          visit([&](int64_t off, int64_t) {
            if constexpr (std::is_same_v<A, int64_t>)
              acc = static_cast<int64_t>(static_cast<uint64_t>(acc) + static_cast<uint64_t>(static_cast<int64_t>(data[off])));
            else acc += static_cast<A>(load(data[off]));
          });
        }
        if (kind == Kind::kMean) {
          dst[o] = store<O>(static_cast<double>(acc) / static_cast<double>(p.inner_numel));
        } else {
          dst[o] = store<O>(acc);
        }
      });
    });
  });
  return out;
}

// ---------------------------------------------------------------- amax / amin / max / min / arg*

// Whether candidate `x` replaces the current best `best` (NaN wins and sticks; ties keep the first).
template <typename C>
bool better(C x, C best, bool is_max) {
  if constexpr (std::is_floating_point_v<C>) {
    if (best != best) return false;
    if (x != x) return true;
  }
  return is_max ? x > best : x < best;
}

void check_nonempty(const OpCall& c, int64_t inner_numel, const Shape& in) {
  if (inner_numel == 0)
    fail_node(c, ErrorCode::kInvalidArgument, "expected a reduction dim with non-zero size (input shape ",
              shape_str(in), ")");
}

// values (dtype of self) and/or int64 indices of the max/min over the reduced dims.
void extreme_run(const OpCall& c, const Tensor& self, const ReduceSpec& s, bool is_max, Tensor* values,
                 Tensor* indices) {
  Plan p = make_plan(self, s.red);
  if (p.outer_numel > 0) check_nonempty(c, p.inner_numel, self.sizes());
  dispatch(self.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* data = base_ptr<T>(self);
    T* vals = values ? values->data<T>() : nullptr;
    int64_t* idxs = indices ? indices->data<int64_t>() : nullptr;
    for_each_output(self, p, [&](int64_t o, auto&& visit) {
      opmath_t<T> best{};
      T best_raw{};
      int64_t best_j = -1;
      visit([&](int64_t off, int64_t j) {
        auto x = load(data[off]);
        if (best_j < 0 || better(x, best, is_max)) {
          best = x;
          best_raw = data[off];
          best_j = j;
        }
      });
      if (vals) vals[o] = best_raw;
      if (idxs) idxs[o] = best_j;
    });
  });
}

TensorSpec amax_infer(const OpCall& c) {
  const TensorSpec& in = c.spec("self");
  return {in.dtype, reduce_spec(c, in.sizes, dim_list(c, "dim"), keepdim_arg(c)).out_sizes};
}

Tensor amax_run(const OpCall& c, bool is_max) {
  const Tensor& self = c.tensor("self");
  ReduceSpec s = reduce_spec(c, self.sizes(), dim_list(c, "dim"), keepdim_arg(c));
  Tensor out = Tensor::empty(s.out_sizes, self.dtype());
  extreme_run(c, self, s, is_max, &out, nullptr);
  return out;
}

std::vector<TensorSpec> max_dim_infer(const OpCall& c) {
  const TensorSpec& in = c.spec("self");
  Shape out = reduce_spec(c, in.sizes, std::vector<int64_t>{c.int_arg("dim")}, keepdim_arg(c)).out_sizes;
  return {{in.dtype, out}, {DType::kInt64, out}};
}

std::vector<OpArg> max_dim_run(const OpCall& c, bool is_max) {
  const Tensor& self = c.tensor("self");
  ReduceSpec s = reduce_spec(c, self.sizes(), std::vector<int64_t>{c.int_arg("dim")}, keepdim_arg(c));
  Tensor values = Tensor::empty(s.out_sizes, self.dtype());
  Tensor indices = Tensor::empty(s.out_sizes, DType::kInt64);
  extreme_run(c, self, s, is_max, &values, &indices);
  return {OpArg::of(values), OpArg::of(indices)};
}

TensorSpec argmax_infer(const OpCall& c) {
  const TensorSpec& in = c.spec("self");
  std::optional<int64_t> dim = c.opt_int("dim");
  if (!dim) return {DType::kInt64, keepdim_arg(c) ? Shape(in.sizes.size(), 1) : Shape{}};
  return {DType::kInt64, reduce_spec(c, in.sizes, std::vector<int64_t>{*dim}, keepdim_arg(c)).out_sizes};
}

Tensor argmax_run(const OpCall& c, bool is_max) {
  const Tensor& self = c.tensor("self");
  std::optional<int64_t> dim = c.opt_int("dim");
  if (!dim) {
    // Index into the flattened (row-major) tensor.
    Tensor flat = self.contiguous().view({self.numel()});
    ReduceSpec s = reduce_spec(c, flat.sizes(), std::nullopt, false);
    Tensor out = Tensor::empty({}, DType::kInt64);
    if (self.numel() == 0) check_nonempty(c, 0, self.sizes());
    extreme_run(c, flat, s, is_max, nullptr, &out);
    return keepdim_arg(c) ? out.view(Shape(self.sizes().size(), 1)) : out;
  }
  ReduceSpec s = reduce_spec(c, self.sizes(), std::vector<int64_t>{*dim}, keepdim_arg(c));
  Tensor out = Tensor::empty(s.out_sizes, DType::kInt64);
  extreme_run(c, self, s, is_max, nullptr, &out);
  return out;
}

// ---------------------------------------------------------------- var / std

struct VarArgs {
  std::optional<std::vector<int64_t>> dims;
  double correction = 1.0;
  bool keepdim = false;
};

VarArgs var_args(const OpCall& c, bool correction_overload) {
  VarArgs v;
  v.dims = dim_list(c, "dim");
  v.keepdim = keepdim_arg(c);
  if (correction_overload) {
    if (std::optional<ScalarValue> s = opt_scalar_value(c, "correction")) v.correction = s->as_double();
  } else {
    v.correction = (!c.has("unbiased") || c.bool_arg("unbiased")) ? 1.0 : 0.0;
  }
  return v;
}

TensorSpec var_infer(const OpCall& c, bool correction_overload) {
  const TensorSpec& in = c.spec("self");
  if (!is_floating(in.dtype))
    fail_node(c, ErrorCode::kDTypeMismatch, "var/std need a floating-point tensor, found ", dtype_name(in.dtype));
  VarArgs v = var_args(c, correction_overload);
  return {in.dtype, reduce_spec(c, in.sizes, v.dims, v.keepdim).out_sizes};
}

Tensor var_run(const OpCall& c, bool correction_overload, bool take_sqrt) {
  const Tensor& self = c.tensor("self");
  var_infer(c, correction_overload);
  VarArgs v = var_args(c, correction_overload);
  ReduceSpec s = reduce_spec(c, self.sizes(), v.dims, v.keepdim);
  Tensor out = Tensor::empty(s.out_sizes, self.dtype());
  Plan p = make_plan(self, s.red);
  dispatch(self.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (is_float_v<T>) {
      const T* data = base_ptr<T>(self);
      T* dst = out.data<T>();
      for_each_output(self, p, [&](int64_t o, auto&& visit) {
        double sum = 0;
        visit([&](int64_t off, int64_t) { sum += static_cast<double>(load(data[off])); });
        const double mean = sum / static_cast<double>(p.inner_numel);
        double sq = 0;
        visit([&](int64_t off, int64_t) {
          double d = static_cast<double>(load(data[off])) - mean;
          sq += d * d;
        });
        double var = sq / std::max(0.0, static_cast<double>(p.inner_numel) - v.correction);
        dst[o] = store<T>(take_sqrt ? std::sqrt(var) : var);
      });
    }
  });
  return out;
}

// ---------------------------------------------------------------- any / all

DType any_out_dtype(DType in) { return in == DType::kUInt8 ? DType::kUInt8 : DType::kBool; }

TensorSpec any_infer(const OpCall& c, int mode) {  // mode 0: all dims, 1: int dim, 2: int[]? dim
  const TensorSpec& in = c.spec("self");
  std::optional<std::vector<int64_t>> dims;
  if (mode == 1) dims = std::vector<int64_t>{c.int_arg("dim")};
  if (mode == 2) dims = dim_list(c, "dim");
  return {any_out_dtype(in.dtype), reduce_spec(c, in.sizes, dims, mode != 0 && keepdim_arg(c)).out_sizes};
}

Tensor any_run(const OpCall& c, int mode, bool is_any) {
  const Tensor& self = c.tensor("self");
  TensorSpec spec = any_infer(c, mode);
  std::optional<std::vector<int64_t>> dims;
  if (mode == 1) dims = std::vector<int64_t>{c.int_arg("dim")};
  if (mode == 2) dims = dim_list(c, "dim");
  ReduceSpec s = reduce_spec(c, self.sizes(), dims, mode != 0 && keepdim_arg(c));
  Tensor out = Tensor::empty(s.out_sizes, spec.dtype);
  Plan p = make_plan(self, s.red);
  dispatch(self.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* data = base_ptr<T>(self);
    uint8_t* dst = static_cast<uint8_t*>(out.raw_data());
    for_each_output(self, p, [&](int64_t o, auto&& visit) {
      bool acc = !is_any;
      visit([&](int64_t off, int64_t) {
        bool nz = load(data[off]) != opmath_t<T>(0);
        acc = is_any ? (acc || nz) : (acc && nz);
      });
      dst[o] = acc ? 1 : 0;
    });
  });
  return out;
}

template <typename I, typename K>
void reg(Registry& r, const char* target, const char* schema, I infer, K kernel) {
  r.add(
      target, schema, [infer](const OpCall& c) { return std::vector<TensorSpec>{infer(c)}; },
      [kernel](const OpCall& c) { return std::vector<OpArg>{OpArg::of(kernel(c))}; });
}

}  // namespace

EMBER_REGISTER_OPS(ew_reduce) {
  reg(r, "torch.ops.aten.sum.default", "sum(Tensor self, *, ScalarType? dtype=None) -> Tensor",
      [](const OpCall& c) { return accumulate_infer(c, Kind::kSum, false); },
      [](const OpCall& c) { return accumulate_run(c, Kind::kSum, false); });
  reg(r, "torch.ops.aten.sum.dim_IntList",
      "sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
      [](const OpCall& c) { return accumulate_infer(c, Kind::kSum, true); },
      [](const OpCall& c) { return accumulate_run(c, Kind::kSum, true); });
  reg(r, "torch.ops.aten.mean.default", "mean(Tensor self, *, ScalarType? dtype=None) -> Tensor",
      [](const OpCall& c) { return accumulate_infer(c, Kind::kMean, false); },
      [](const OpCall& c) { return accumulate_run(c, Kind::kMean, false); });
  reg(r, "torch.ops.aten.mean.dim",
      "mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
      [](const OpCall& c) { return accumulate_infer(c, Kind::kMean, true); },
      [](const OpCall& c) { return accumulate_run(c, Kind::kMean, true); });
  reg(r, "torch.ops.aten.prod.default", "prod(Tensor self, *, ScalarType? dtype=None) -> Tensor",
      [](const OpCall& c) { return accumulate_infer(c, Kind::kProd, false); },
      [](const OpCall& c) { return accumulate_run(c, Kind::kProd, false); });
  reg(r, "torch.ops.aten.prod.dim_int",
      "prod.dim_int(Tensor self, int dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
      [](const OpCall& c) { return accumulate_infer(c, Kind::kProd, true); },
      [](const OpCall& c) { return accumulate_run(c, Kind::kProd, true); });

  reg(r, "torch.ops.aten.amax.default", "amax(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor", amax_infer,
      [](const OpCall& c) { return amax_run(c, true); });
  reg(r, "torch.ops.aten.amin.default", "amin(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor", amax_infer,
      [](const OpCall& c) { return amax_run(c, false); });
  reg(r, "torch.ops.aten.max.default", "max(Tensor self) -> Tensor", amax_infer,
      [](const OpCall& c) { return amax_run(c, true); });
  reg(r, "torch.ops.aten.min.default", "min(Tensor self) -> Tensor", amax_infer,
      [](const OpCall& c) { return amax_run(c, false); });
  r.add("torch.ops.aten.max.dim", "max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)",
        max_dim_infer, [](const OpCall& c) { return max_dim_run(c, true); });
  r.add("torch.ops.aten.min.dim", "min.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)",
        max_dim_infer, [](const OpCall& c) { return max_dim_run(c, false); });
  reg(r, "torch.ops.aten.argmax.default", "argmax(Tensor self, int? dim=None, bool keepdim=False) -> Tensor",
      argmax_infer, [](const OpCall& c) { return argmax_run(c, true); });
  reg(r, "torch.ops.aten.argmin.default", "argmin(Tensor self, int? dim=None, bool keepdim=False) -> Tensor",
      argmax_infer, [](const OpCall& c) { return argmax_run(c, false); });

  reg(r, "torch.ops.aten.var.correction",
      "var.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> Tensor",
      [](const OpCall& c) { return var_infer(c, true); }, [](const OpCall& c) { return var_run(c, true, false); });
  reg(r, "torch.ops.aten.std.correction",
      "std.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> Tensor",
      [](const OpCall& c) { return var_infer(c, true); }, [](const OpCall& c) { return var_run(c, true, true); });
  reg(r, "torch.ops.aten.var.dim", "var.dim(Tensor self, int[1]? dim, bool unbiased=True, bool keepdim=False) -> Tensor",
      [](const OpCall& c) { return var_infer(c, false); }, [](const OpCall& c) { return var_run(c, false, false); });
  reg(r, "torch.ops.aten.std.dim", "std.dim(Tensor self, int[1]? dim, bool unbiased=True, bool keepdim=False) -> Tensor",
      [](const OpCall& c) { return var_infer(c, false); }, [](const OpCall& c) { return var_run(c, false, true); });

  reg(r, "torch.ops.aten.any.default", "any(Tensor self) -> Tensor", [](const OpCall& c) { return any_infer(c, 0); },
      [](const OpCall& c) { return any_run(c, 0, true); });
  reg(r, "torch.ops.aten.all.default", "all(Tensor self) -> Tensor", [](const OpCall& c) { return any_infer(c, 0); },
      [](const OpCall& c) { return any_run(c, 0, false); });
  reg(r, "torch.ops.aten.any.dim", "any.dim(Tensor self, int dim, bool keepdim=False) -> Tensor",
      [](const OpCall& c) { return any_infer(c, 1); }, [](const OpCall& c) { return any_run(c, 1, true); });
  reg(r, "torch.ops.aten.all.dim", "all.dim(Tensor self, int dim, bool keepdim=False) -> Tensor",
      [](const OpCall& c) { return any_infer(c, 1); }, [](const OpCall& c) { return any_run(c, 1, false); });
  reg(r, "torch.ops.aten.any.dims", "any.dims(Tensor self, int[]? dim=None, bool keepdim=False) -> Tensor",
      [](const OpCall& c) { return any_infer(c, 2); }, [](const OpCall& c) { return any_run(c, 2, true); });
  reg(r, "torch.ops.aten.all.dims", "all.dims(Tensor self, int[]? dim=None, bool keepdim=False) -> Tensor",
      [](const OpCall& c) { return any_infer(c, 2); }, [](const OpCall& c) { return any_run(c, 2, false); });

}

}  // namespace ember::ops::ew
