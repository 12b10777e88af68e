// Binary element-wise ops with broadcasting and PyTorch type promotion: arithmetic,
// comparisons, logical ops, where and masked_fill, and their in-place variants.
#include <algorithm>
#include <cmath>

#include "ops/kernels/ew_common.h"

namespace ember::ops::ew {
namespace {

template <typename C>
inline constexpr bool is_int_v = std::is_integral_v<C> && !std::is_same_v<C, bool>;

// Two's-complement wrapping arithmetic for integers (no signed-overflow UB), plain for floats.
template <typename C>
C wrap_add(C x, C y) {
  if constexpr (is_int_v<C>) return static_cast<C>(static_cast<uint64_t>(x) + static_cast<uint64_t>(y));
  else if constexpr (std::is_same_v<C, bool>) return x || y;
  else return x + y;
}
template <typename C>
C wrap_mul(C x, C y) {
  if constexpr (is_int_v<C>) return static_cast<C>(static_cast<uint64_t>(x) * static_cast<uint64_t>(y));
  else if constexpr (std::is_same_v<C, bool>) return x && y;
  else return x * y;
}
template <typename C>
C wrap_sub(C x, C y) {
  if constexpr (is_int_v<C>) return static_cast<C>(static_cast<uint64_t>(x) - static_cast<uint64_t>(y));
  else return x - y;
}

[[noreturn]] void zero_division(const OpCall& c) {
  fail_node(c, ErrorCode::kInvalidArgument, "integer division by zero (ZeroDivisionError)");
}

// Integer quotient rounded toward zero; x / -1 wraps like PyTorch instead of trapping.
template <typename C>
C int_div_trunc(const OpCall& c, C x, C y) {
  if (y == 0) zero_division(c);
  if (y == -1) return wrap_sub(C(0), x);
  return x / y;
}
template <typename C>
C int_div_floor(const OpCall& c, C x, C y) {
  C q = int_div_trunc(c, x, y);
  if (y != -1 && (x % y != 0) && ((x < 0) != (y < 0))) --q;
  return q;
}
template <typename C>
C int_mod_floor(const OpCall& c, C x, C y) {
  if (y == 0) zero_division(c);
  if (y == -1) return 0;
  C r = x % y;
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}

// PyTorch's floating floor division (div_floor_floating): exact for representable quotients.
template <typename C>
C float_div_floor(C a, C b) {
  if (b == 0) return a / b;
  C mod = std::fmod(a, b);
  C div = (a - mod) / b;
  if (mod != 0 && ((b < 0) != (mod < 0))) div -= C(1);
  C floordiv;
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > C(0.5)) floordiv += C(1);
  } else {
    floordiv = std::copysign(C(0), a / b);
  }
  return floordiv;
}

template <typename C>
C float_max(C x, C y) {
  if constexpr (std::is_floating_point_v<C>) {
    if (x != x) return x;
    if (y != y) return y;
  }
  return x > y ? x : y;
}
template <typename C>
C float_min(C x, C y) {
  if constexpr (std::is_floating_point_v<C>) {
    if (x != x) return x;
    if (y != y) return y;
  }
  return x < y ? x : y;
}

// Integer power by squaring; negative exponents give 0 except for bases 1 and -1.
template <typename C>
C int_pow(C base, C exp) {
  if constexpr (std::is_same_v<C, bool>) {
    return base || !exp;
  } else {
    if (exp < 0) {
      if (base == 1) return 1;
      if (base == -1) return (exp % 2) ? C(-1) : C(1);
      return 0;
    }
    C result = 1;
    while (exp) {
      if (exp & 1) result = wrap_mul(result, base);
      exp = static_cast<C>(exp >> 1);
      base = wrap_mul(base, base);
    }
    return result;
  }
}

// Float power with the exponent special cases PyTorch's CPU kernel uses.
template <typename C>
C float_pow_scalar(C x, C e) {
  if (e == C(2)) return x * x;
  if (e == C(3)) return x * x * x;
  if (e == C(0.5)) return std::sqrt(x);
  if (e == C(-0.5)) return C(1) / std::sqrt(x);
  if (e == C(-1)) return C(1) / x;
  if (e == C(-2)) return C(1) / (x * x);
  return std::pow(x, e);
}

enum class OutRule {
  kCommon,  // result_type of the operands
  kFloat,   // result_type, integers and bool promoted to float32 (true division)
  kBool,    // comparisons and logical ops
};

DType out_dtype(OutRule rule, DType common) {
  switch (rule) {
    case OutRule::kCommon: return common;
    case OutRule::kFloat: return to_float(common);
    case OutRule::kBool: return DType::kBool;
  }
  return common;
}

// Fills `out` (whose dtype is `compute`, or bool when kBoolOut) with f(a, b) computed in
// `compute`'s opmath type. At least one operand is a tensor.
template <bool kBoolOut, typename F>
void binary_apply(const Tensor& out, const Operand& a, const Operand& b, DType compute, const F& f) {
  dispatch(compute, [&](auto tag) {
    using T = decltype(tag);
    using C = opmath_t<T>;
    using O = std::conditional_t<kBoolOut, bool, T>;
    if (b.is_scalar) {
      const C y = b.scalar.as<C>();
      map1<O, T>(out, cast(a.tensor, compute), [&](C x) { return f(x, y); });
    } else if (a.is_scalar) {
      const C x = a.scalar.as<C>();
      map1<O, T>(out, cast(b.tensor, compute), [&](C y) { return f(x, y); });
    } else {
      map2<O, T, T>(out, cast(a.tensor, compute), cast(b.tensor, compute), [&](C x, C y) { return f(x, y); });
    }
  });
}

Shape operand_shape(const Operand& o) { return o.is_scalar ? Shape{} : o.spec.sizes; }

struct BinarySetup {
  Operand a, b;
  DType common, compute, out;
  Shape shape;
};

BinarySetup setup(const OpCall& c, const char* a_name, const char* b_name, OutRule rule) {
  BinarySetup s;
  s.a = operand(c, a_name);
  s.b = operand(c, b_name);
  if (s.a.is_scalar && s.b.is_scalar) fail_node(c, ErrorCode::kInvalidArgument, "expected at least one tensor operand");
  s.common = result_type({&s.a, &s.b});
  s.out = out_dtype(rule, s.common);
  s.compute = rule == OutRule::kFloat ? s.out : s.common;
  s.shape = broadcast_shapes(c, operand_shape(s.a), operand_shape(s.b));
  return s;
}

// Runs a binary op; in-place ops write into `self` (checking shape, dtype and writability).
// kBoolOut: the op always returns bool (comparisons, logical ops); fixed at compile time so
// each op instantiates only the loops it can use.
template <bool kBoolOut, typename MakeF>
Tensor binary_run(const OpCall& c, const char* a_name, const char* b_name, OutRule rule, bool inplace,
                  const MakeF& make) {
  BinarySetup s = setup(c, a_name, b_name, rule);
  auto f = make(c, s);
  auto compute_into = [&](const Tensor& out) { binary_apply<kBoolOut>(out, s.a, s.b, s.compute, f); };
  if (!inplace) {
    Tensor out = Tensor::empty(s.shape, s.out);
    compute_into(out);
    return out;
  }
  const Tensor& self = s.a.tensor;
  check_writable(c, self, a_name);
  if (s.shape != self.sizes())
    fail_node(c, ErrorCode::kInvalidArgument, "in-place result of shape ", shape_str(s.shape),
              " does not match self's shape ", shape_str(self.sizes()));
  if (!can_cast(s.out, self.dtype()))
    fail_node(c, ErrorCode::kDTypeMismatch, "result type ", dtype_name(s.out),
              " can't be cast to the desired output type ", dtype_name(self.dtype()));
  const bool overlap = !s.b.is_scalar && s.b.tensor.storage() == self.storage();
  if (s.out == self.dtype() && !overlap) {
    compute_into(self);
  } else {
    Tensor tmp = Tensor::empty(s.shape, s.out);
    compute_into(tmp);
    copy_into(c, self, tmp);
  }
  return self;
}

TensorSpec binary_infer(const OpCall& c, const char* a_name, const char* b_name, OutRule rule, bool inplace) {
  BinarySetup s = setup(c, a_name, b_name, rule);
  if (inplace) return s.a.spec;
  return {s.out, s.shape};
}

template <typename MakeF>
void add_binary(Registry& r, const char* target, const char* schema, OutRule rule, MakeF make, bool inplace = false,
                const char* a_name = "self", const char* b_name = "other") {
  constexpr bool kNoBool = false;
  EMBER_CHECK(rule != OutRule::kBool, ErrorCode::kInternal, target, ": bool-valued ops register with add_predicate");
  r.add(
      target, schema,
      [=](const OpCall& c) { return std::vector<TensorSpec>{binary_infer(c, a_name, b_name, rule, inplace)}; },
      [=](const OpCall& c) {
        return std::vector<OpArg>{OpArg::of(binary_run<kNoBool>(c, a_name, b_name, rule, inplace, make))};
      },
      inplace);
}

// Comparisons and logical ops: bool results.
template <typename MakeF>
void add_predicate(Registry& r, const std::string& target, const std::string& schema, MakeF make) {
  r.add(
      target, schema,
      [](const OpCall& c) { return std::vector<TensorSpec>{binary_infer(c, "self", "other", OutRule::kBool, false)}; },
      [make](const OpCall& c) {
        return std::vector<OpArg>{OpArg::of(binary_run<true>(c, "self", "other", OutRule::kBool, false, make))};
      });
}

// ---------------------------------------------------------------- functor factories

// self + alpha * other (sign = -1 for sub).
auto make_add(int sign) {
  return [sign](const OpCall& c, const BinarySetup& s) {
    ScalarValue alpha = c.has("alpha") ? scalar_value(c, "alpha") : ScalarValue{ScalarValue::Kind::kInt, 1, 0.0};
    if (is_integral_or_bool(s.compute) && !alpha.integral())
      fail_node(c, ErrorCode::kInvalidArgument, "for integral input tensors, argument alpha must not be a floating point number");
    if (s.compute == DType::kBool && sign < 0)
      fail_node(c, ErrorCode::kInvalidArgument,
                "subtraction, the `-` operator, with two bool tensors is not supported; use logical_xor instead");
    const bool unit = alpha.as_double() == 1.0;
    return [alpha, unit, sign](auto x, auto y) {
      using C = decltype(x);
      if constexpr (std::is_same_v<C, bool>) {
        return static_cast<bool>(x || (alpha.i && y));
      } else {
        if (unit) return sign > 0 ? wrap_add(x, y) : wrap_sub(x, y);
        C a = alpha.as<C>();
        return sign > 0 ? wrap_add(x, wrap_mul(a, y)) : wrap_sub(x, wrap_mul(a, y));
      }
    };
  };
}

// other - alpha * self (rsub).
auto make_rsub() {
  return [](const OpCall& c, const BinarySetup& s) {
    ScalarValue alpha = scalar_value(c, "alpha");
    if (s.compute == DType::kBool) fail_node(c, ErrorCode::kInvalidArgument, "rsub of bool tensors is not supported");
    if (is_integral_or_bool(s.compute) && !alpha.integral())
      fail_node(c, ErrorCode::kInvalidArgument, "for integral input tensors, argument alpha must not be a floating point number");
    return [alpha](auto x, auto y) {
      using C = decltype(x);
      if constexpr (std::is_same_v<C, bool>) return x;
      else return wrap_sub(y, wrap_mul(alpha.as<C>(), x));
    };
  };
}

auto make_mul() {
  return [](const OpCall&, const BinarySetup&) { return [](auto x, auto y) { return wrap_mul(x, y); }; };
}

// Division; mode "" is true division (computed in float), else "trunc" / "floor".
auto make_div(bool read_mode) {
  return [read_mode](const OpCall& c, const BinarySetup& s) {
    std::string mode;
    if (read_mode && c.has("rounding_mode")) mode = c.string_arg("rounding_mode");
    if (!mode.empty() && mode != "trunc" && mode != "floor")
      c.fail_arg("rounding_mode", cat("expected 'trunc', 'floor' or None, found '", mode, "'"));
    if (!mode.empty() && s.compute == DType::kBool)
      fail_node(c, ErrorCode::kDTypeMismatch, "division with rounding_mode of bool tensors is not supported");
    const bool floor_mode = mode == "floor", trunc_mode = mode == "trunc";
    return [&c, floor_mode, trunc_mode](auto x, auto y) {
      using C = decltype(x);
      if constexpr (std::is_same_v<C, bool>) {
        return x;  // unreachable: true division computes in float, modes reject bool
      } else if constexpr (std::is_floating_point_v<C>) {
        if (floor_mode) return float_div_floor(x, y);
        if (trunc_mode) return static_cast<C>(std::trunc(x / y));
        return static_cast<C>(x / y);
      } else {
        if (floor_mode) return int_div_floor(c, x, y);
        return int_div_trunc(c, x, y);
      }
    };
  };
}

// true_div for div.Tensor / div.Scalar.
auto make_true_div() { return make_div(false); }

auto make_floor_divide() {
  return [](const OpCall& c, const BinarySetup& s) {
    if (s.compute == DType::kBool) fail_node(c, ErrorCode::kDTypeMismatch, "floor_divide of bool tensors is not supported");
    return [&c](auto x, auto y) {
      using C = decltype(x);
      if constexpr (std::is_same_v<C, bool>) return x;
      else if constexpr (std::is_floating_point_v<C>) return float_div_floor(x, y);
      else return int_div_floor(c, x, y);
    };
  };
}

auto make_remainder(bool python_mod) {
  return [python_mod](const OpCall& c, const BinarySetup& s) {
    if (s.compute == DType::kBool) fail_node(c, ErrorCode::kDTypeMismatch, "remainder of bool tensors is not supported");
    return [&c, python_mod](auto x, auto y) {
      using C = decltype(x);
      if constexpr (std::is_same_v<C, bool>) {
        return x;
      } else if constexpr (std::is_floating_point_v<C>) {
        C m = std::fmod(x, y);
        if (python_mod && m != 0 && ((y < 0) != (m < 0))) m += y;
        return m;
      } else {
        if (python_mod) return int_mod_floor(c, x, y);
        if (y == 0) zero_division(c);
        return y == -1 ? C(0) : static_cast<C>(x % y);
      }
    };
  };
}

auto make_pow(bool scalar_exponent) {
  return [scalar_exponent](const OpCall& c, const BinarySetup& s) {
    if (scalar_exponent && is_integral_or_bool(s.compute) && s.b.is_scalar && s.b.scalar.integral() && s.b.scalar.i < 0)
      fail_node(c, ErrorCode::kInvalidArgument, "integers to negative integer powers are not allowed");
    return [scalar_exponent](auto x, auto y) {
      using C = decltype(x);
      if constexpr (std::is_floating_point_v<C>) return scalar_exponent ? float_pow_scalar(x, y) : std::pow(x, y);
      else return int_pow(x, y);
    };
  };
}

auto make_max(bool is_max) {
  return [is_max](const OpCall&, const BinarySetup&) {
    return [is_max](auto x, auto y) { return is_max ? float_max(x, y) : float_min(x, y); };
  };
}

enum class Cmp { kEq, kNe, kLt, kLe, kGt, kGe };
auto make_cmp(Cmp op) {
  return [op](const OpCall&, const BinarySetup&) {
    return [op](auto x, auto y) -> bool {
      switch (op) {
        case Cmp::kEq: return x == y;
        case Cmp::kNe: return x != y;
        case Cmp::kLt: return x < y;
        case Cmp::kLe: return x <= y;
        case Cmp::kGt: return x > y;
        case Cmp::kGe: return x >= y;
      }
      return false;
    };
  };
}

enum class Logic { kAnd, kOr, kXor };
auto make_logical(Logic op) {
  return [op](const OpCall&, const BinarySetup&) {
    return [op](auto x, auto y) -> bool {
      using C = decltype(x);
      bool p = x != C(0), q = y != C(0);
      return op == Logic::kAnd ? (p && q) : op == Logic::kOr ? (p || q) : (p != q);
    };
  };
}

auto make_bitwise(Logic op) {
  return [op](const OpCall& c, const BinarySetup& s) {
    if (!is_integral_or_bool(s.compute))
      fail_node(c, ErrorCode::kDTypeMismatch, "bitwise ops need integer or bool tensors, found ", dtype_name(s.compute));
    return [op](auto x, auto y) {
      using C = decltype(x);
      if constexpr (std::is_floating_point_v<C>) {
        return x;  // unreachable
      } else {
        return static_cast<C>(op == Logic::kAnd ? (x & y) : op == Logic::kOr ? (x | y) : (x ^ y));
      }
    };
  };
}

// ---------------------------------------------------------------- where / masked_fill

Shape shape_of(const Operand& o) { return o.is_scalar ? Shape{} : o.spec.sizes; }

void check_mask_dtype(const OpCall& c, DType t, const char* name) {
  if (t != DType::kBool && t != DType::kUInt8)
    c.fail_arg(name, cat("expected a bool tensor, found ", dtype_name(t)));
}

struct WhereSetup {
  Operand cond, a, b;
  DType out;
  Shape shape;
};

WhereSetup where_setup(const OpCall& c) {
  WhereSetup w;
  w.cond = operand(c, "condition");
  if (w.cond.is_scalar) c.fail_arg("condition", "expected a Tensor");
  check_mask_dtype(c, w.cond.spec.dtype, "condition");
  w.a = operand(c, "self");
  w.b = operand(c, "other");
  w.out = result_type({&w.a, &w.b});
  w.shape = broadcast_shapes(c, broadcast_shapes(c, w.cond.spec.sizes, shape_of(w.a)), shape_of(w.b));
  return w;
}

Tensor as_tensor(const Operand& o, DType dtype) {
  return o.is_scalar ? scalar_tensor(o.scalar, dtype) : cast(o.tensor, dtype);
}

Tensor where_run(const OpCall& c) {
  WhereSetup w = where_setup(c);
  Tensor out = Tensor::empty(w.shape, w.out);
  Tensor cond = cast(w.cond.tensor, DType::kBool);
  Tensor a = as_tensor(w.a, w.out), b = as_tensor(w.b, w.out);
  dispatch(w.out, [&](auto tag) {
    using T = decltype(tag);
    map3<T, bool, T, T>(out, cond, a, b, [](bool m, auto x, auto y) { return m ? x : y; });
  });
  return out;
}

struct MaskedFillSetup {
  Operand self, mask;
  Shape shape;
};

MaskedFillSetup masked_fill_setup(const OpCall& c, bool inplace) {
  MaskedFillSetup m;
  m.self = operand(c, "self");
  m.mask = operand(c, "mask");
  if (m.self.is_scalar || m.mask.is_scalar) fail_node(c, ErrorCode::kInvalidArgument, "expected tensor self and mask");
  check_mask_dtype(c, m.mask.spec.dtype, "mask");
  m.shape = broadcast_shapes(c, m.self.spec.sizes, m.mask.spec.sizes);
  if (inplace && m.shape != m.self.spec.sizes)
    fail_node(c, ErrorCode::kShapeMismatch, "mask of shape ", shape_str(m.mask.spec.sizes),
              " does not broadcast to self's shape ", shape_str(m.self.spec.sizes));
  return m;
}

Tensor masked_fill_run(const OpCall& c, bool inplace) {
  MaskedFillSetup m = masked_fill_setup(c, inplace);
  const Tensor& self = m.self.tensor;
  Tensor value;
  const OpArg& v = c.arg("value");
  if (v.kind == OpArg::Kind::kTensor) {
    if (c.tensor("value").dim() != 0)
      c.fail_arg("value", cat("expected a 0-dimensional tensor, found ", c.tensor("value").to_string()));
    value = cast(c.tensor("value"), self.dtype());
  } else {
    value = scalar_tensor(scalar_value(c, "value"), self.dtype());
  }
  Tensor mask = cast(m.mask.tensor, DType::kBool);
  Tensor out;
  if (inplace) {
    check_writable(c, self, "self");
    out = self;
  } else {
    out = Tensor::empty(m.shape, self.dtype());
  }
  dispatch(self.dtype(), [&](auto tag) {
    using T = decltype(tag);
    map3<T, T, bool, T>(out, self, mask, value, [](auto x, bool mk, auto y) { return mk ? y : x; });
  });
  return out;
}

}  // namespace

EMBER_REGISTER_OPS(ew_binary) {
  using R = OutRule;
  add_binary(r, "torch.ops.aten.add.Tensor", "add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
             R::kCommon, make_add(1));
  add_binary(r, "torch.ops.aten.add.Scalar", "add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
             R::kCommon, make_add(1));
  add_binary(r, "torch.ops.aten.sub.Tensor", "sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
             R::kCommon, make_add(-1));
  add_binary(r, "torch.ops.aten.sub.Scalar", "sub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
             R::kCommon, make_add(-1));
  add_binary(r, "torch.ops.aten.rsub.Scalar", "rsub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
             R::kCommon, make_rsub());
  add_binary(r, "torch.ops.aten.rsub.Tensor", "rsub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
             R::kCommon, make_rsub());
  add_binary(r, "torch.ops.aten.mul.Tensor", "mul.Tensor(Tensor self, Tensor other) -> Tensor", R::kCommon, make_mul());
  add_binary(r, "torch.ops.aten.mul.Scalar", "mul.Scalar(Tensor self, Scalar other) -> Tensor", R::kCommon, make_mul());
  add_binary(r, "torch.ops.aten.div.Tensor", "div.Tensor(Tensor self, Tensor other) -> Tensor", R::kFloat,
             make_true_div());
  add_binary(r, "torch.ops.aten.div.Scalar", "div.Scalar(Tensor self, Scalar other) -> Tensor", R::kFloat,
             make_true_div());
  // With a rounding mode the result keeps the common dtype; without one it is true division.
  for (const auto& [target, schema] :
       {std::pair{"torch.ops.aten.div.Tensor_mode",
                  "div.Tensor_mode(Tensor self, Tensor other, *, str? rounding_mode) -> Tensor"},
        std::pair{"torch.ops.aten.div.Scalar_mode",
                  "div.Scalar_mode(Tensor self, Scalar other, *, str? rounding_mode) -> Tensor"}}) {
    auto rule = [](const OpCall& c) { return c.has("rounding_mode") ? R::kCommon : R::kFloat; };
    r.add(
        target, schema,
        [rule](const OpCall& c) {
          return std::vector<TensorSpec>{binary_infer(c, "self", "other", rule(c), false)};
        },
        [rule](const OpCall& c) {
          return std::vector<OpArg>{OpArg::of(binary_run<false>(c, "self", "other", rule(c), false, make_div(true)))};
        });
  }
  add_binary(r, "torch.ops.aten.pow.Tensor_Scalar", "pow.Tensor_Scalar(Tensor self, Scalar exponent) -> Tensor",
             R::kCommon, make_pow(true), false, "self", "exponent");
  add_binary(r, "torch.ops.aten.pow.Tensor_Tensor", "pow.Tensor_Tensor(Tensor self, Tensor exponent) -> Tensor",
             R::kCommon, make_pow(false), false, "self", "exponent");
  add_binary(r, "torch.ops.aten.pow.Scalar", "pow.Scalar(Scalar self, Tensor exponent) -> Tensor", R::kCommon,
             make_pow(false), false, "self", "exponent");
  add_binary(r, "torch.ops.aten.maximum.default", "maximum(Tensor self, Tensor other) -> Tensor", R::kCommon,
             make_max(true));
  add_binary(r, "torch.ops.aten.minimum.default", "minimum(Tensor self, Tensor other) -> Tensor", R::kCommon,
             make_max(false));
  add_binary(r, "torch.ops.aten.remainder.Tensor", "remainder.Tensor(Tensor self, Tensor other) -> Tensor",
             R::kCommon, make_remainder(true));
  add_binary(r, "torch.ops.aten.remainder.Scalar", "remainder.Scalar(Tensor self, Scalar other) -> Tensor",
             R::kCommon, make_remainder(true));
  add_binary(r, "torch.ops.aten.fmod.Tensor", "fmod.Tensor(Tensor self, Tensor other) -> Tensor", R::kCommon,
             make_remainder(false));
  add_binary(r, "torch.ops.aten.fmod.Scalar", "fmod.Scalar(Tensor self, Scalar other) -> Tensor", R::kCommon,
             make_remainder(false));
  add_binary(r, "torch.ops.aten.floor_divide.default", "floor_divide(Tensor self, Tensor other) -> Tensor",
             R::kCommon, make_floor_divide());
  add_binary(r, "torch.ops.aten.floor_divide.Scalar", "floor_divide.Scalar(Tensor self, Scalar other) -> Tensor",
             R::kCommon, make_floor_divide());

  // In-place arithmetic.
  add_binary(r, "torch.ops.aten.add_.Tensor",
             "add_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)", R::kCommon, make_add(1),
             true);
  add_binary(r, "torch.ops.aten.add_.Scalar",
             "add_.Scalar(Tensor(a!) self, Scalar other, Scalar alpha=1) -> Tensor(a!)", R::kCommon, make_add(1), true);
  add_binary(r, "torch.ops.aten.sub_.Tensor",
             "sub_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)", R::kCommon, make_add(-1),
             true);
  add_binary(r, "torch.ops.aten.mul_.Tensor", "mul_.Tensor(Tensor(a!) self, Tensor other) -> Tensor(a!)", R::kCommon,
             make_mul(), true);
  add_binary(r, "torch.ops.aten.mul_.Scalar", "mul_.Scalar(Tensor(a!) self, Scalar other) -> Tensor(a!)", R::kCommon,
             make_mul(), true);
  add_binary(r, "torch.ops.aten.div_.Tensor", "div_.Tensor(Tensor(a!) self, Tensor other) -> Tensor(a!)", R::kFloat,
             make_true_div(), true);

  // Comparisons.
  const std::pair<const char*, Cmp> cmps[] = {{"eq", Cmp::kEq}, {"ne", Cmp::kNe}, {"lt", Cmp::kLt},
                                              {"le", Cmp::kLe}, {"gt", Cmp::kGt}, {"ge", Cmp::kGe}};
  for (const auto& [name, op] : cmps) {
    add_predicate(r, cat("torch.ops.aten.", name, ".Tensor"), cat(name, ".Tensor(Tensor self, Tensor other) -> Tensor"),
                  make_cmp(op));
    add_predicate(r, cat("torch.ops.aten.", name, ".Scalar"), cat(name, ".Scalar(Tensor self, Scalar other) -> Tensor"),
                  make_cmp(op));
  }

  // Logical and bitwise.
  add_predicate(r, "torch.ops.aten.logical_and.default", "logical_and(Tensor self, Tensor other) -> Tensor",
                make_logical(Logic::kAnd));
  add_predicate(r, "torch.ops.aten.logical_or.default", "logical_or(Tensor self, Tensor other) -> Tensor",
                make_logical(Logic::kOr));
  add_predicate(r, "torch.ops.aten.logical_xor.default", "logical_xor(Tensor self, Tensor other) -> Tensor",
                make_logical(Logic::kXor));
  add_binary(r, "torch.ops.aten.bitwise_and.Tensor", "bitwise_and.Tensor(Tensor self, Tensor other) -> Tensor",
             R::kCommon, make_bitwise(Logic::kAnd));
  add_binary(r, "torch.ops.aten.bitwise_or.Tensor", "bitwise_or.Tensor(Tensor self, Tensor other) -> Tensor",
             R::kCommon, make_bitwise(Logic::kOr));
  add_binary(r, "torch.ops.aten.bitwise_xor.Tensor", "bitwise_xor.Tensor(Tensor self, Tensor other) -> Tensor",
             R::kCommon, make_bitwise(Logic::kXor));

  // where: every overload reads condition/self/other, each a tensor or a scalar.
  auto where_infer = [](const OpCall& c) {
    WhereSetup w = where_setup(c);
    return std::vector<TensorSpec>{{w.out, w.shape}};
  };
  auto where_kernel = [](const OpCall& c) { return std::vector<OpArg>{OpArg::of(where_run(c))}; };
  r.add("torch.ops.aten.where.self", "where.self(Tensor condition, Tensor self, Tensor other) -> Tensor", where_infer,
        where_kernel);
  r.add("torch.ops.aten.where.ScalarOther", "where.ScalarOther(Tensor condition, Tensor self, Scalar other) -> Tensor",
        where_infer, where_kernel);
  r.add("torch.ops.aten.where.ScalarSelf", "where.ScalarSelf(Tensor condition, Scalar self, Tensor other) -> Tensor",
        where_infer, where_kernel);
  r.add("torch.ops.aten.where.Scalar", "where.Scalar(Tensor condition, Scalar self, Scalar other) -> Tensor",
        where_infer, where_kernel);

  auto mf_infer = [](bool inplace) {
    return [inplace](const OpCall& c) {
      MaskedFillSetup m = masked_fill_setup(c, inplace);
      return std::vector<TensorSpec>{{m.self.spec.dtype, m.shape}};
    };
  };
  auto mf_kernel = [](bool inplace) {
    return [inplace](const OpCall& c) { return std::vector<OpArg>{OpArg::of(masked_fill_run(c, inplace))}; };
  };
  r.add("torch.ops.aten.masked_fill.Scalar", "masked_fill.Scalar(Tensor self, Tensor mask, Scalar value) -> Tensor",
        mf_infer(false), mf_kernel(false));
  r.add("torch.ops.aten.masked_fill.Tensor", "masked_fill.Tensor(Tensor self, Tensor mask, Tensor value) -> Tensor",
        mf_infer(false), mf_kernel(false));
  r.add("torch.ops.aten.masked_fill_.Scalar",
        "masked_fill_.Scalar(Tensor(a!) self, Tensor mask, Scalar value) -> Tensor(a!)", mf_infer(true), mf_kernel(true),
        true);
}

}  // namespace ember::ops::ew
