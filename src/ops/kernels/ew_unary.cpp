// Unary element-wise ops and activations (and clamp), with their in-place variants.
#include <cmath>

#include "ops/kernels/ew_common.h"

namespace ember::ops::ew {
namespace {

enum class UnaryRule {
  kSame,        // output dtype = input dtype, integers allowed (relu, neg, abs, ...)
  kToFloat,     // integer/bool inputs computed and returned as float32 (exp, sqrt, sigmoid, ...)
  kFloatOnly,   // floating inputs only (gelu, silu, hardswish, ...)
  kBool,        // output bool (logical_not, isnan)
  kSameNoBool,  // like kSame, but bool inputs are rejected (neg)
};

DType unary_out(const OpCall& c, UnaryRule rule, DType in) {
  switch (rule) {
    case UnaryRule::kSame: return in;
    case UnaryRule::kSameNoBool:
      if (in == DType::kBool) fail_node(c, ErrorCode::kDTypeMismatch, "this op does not support bool tensors");
      return in;
    case UnaryRule::kToFloat: return to_float(in);
    case UnaryRule::kFloatOnly:
      if (!is_floating(in))
        fail_node(c, ErrorCode::kDTypeMismatch, "expected a floating-point tensor, found ", dtype_name(in));
      return in;
    case UnaryRule::kBool: return DType::kBool;
  }
  return in;
}

// Applies f (a generic lambda over the opmath type) to `self`; in-place writes into self.
template <typename F>
Tensor unary_run(const OpCall& c, UnaryRule rule, bool inplace, const F& f) {
  const Tensor& self = c.tensor("self");
  DType out_dtype = unary_out(c, rule, self.dtype());
  DType compute = rule == UnaryRule::kBool ? self.dtype() : out_dtype;
  Tensor out;
  if (inplace) {
    check_writable(c, self, "self");
    if (out_dtype != self.dtype())
      fail_node(c, ErrorCode::kDTypeMismatch, "result type ", dtype_name(out_dtype),
                " can't be cast to the desired output type ", dtype_name(self.dtype()));
    out = self;
  } else {
    out = Tensor::empty(self.sizes(), out_dtype);
  }
  Tensor in = cast(self, compute);
  dispatch(compute, [&](auto tag) {
    using T = decltype(tag);
    if (out_dtype == DType::kBool && compute != DType::kBool) map1<bool, T>(out, in, f);
    else map1<T, T>(out, in, f);
  });
  return out;
}

template <typename MakeF>
void add_unary(Registry& r, const std::string& target, const std::string& schema, UnaryRule rule, MakeF make,
               bool inplace = false) {
  r.add(
      target, schema,
      [rule, inplace](const OpCall& c) {
        const TensorSpec& s = c.spec("self");
        DType out = unary_out(c, rule, s.dtype);
        if (inplace && out != s.dtype)
          fail_node(c, ErrorCode::kDTypeMismatch, "result type ", dtype_name(out),
                    " can't be cast to the desired output type ", dtype_name(s.dtype));
        return std::vector<TensorSpec>{{out, s.sizes}};
      },
      [rule, inplace, make](const OpCall& c) {
        return std::vector<OpArg>{OpArg::of(unary_run(c, rule, inplace, make(c)))};
      },
      inplace);
}

// Wraps a generic per-element lambda that needs no arguments from the call.
template <typename F>
auto plain(F f) {
  return [f](const OpCall&) { return f; };
}

template <typename C>
inline constexpr bool is_fp_v = std::is_floating_point_v<C>;

// Float-only math applied to a value that is float in every instantiation that runs; integer
// instantiations (never reached at run time for float-only ops) return the input.
#define EMBER_FLOAT_ONLY(expr)           \
  [](auto x) {                           \
    using C = decltype(x);               \
    if constexpr (is_fp_v<C>) {          \
      return static_cast<C>(expr);       \
    } else {                             \
      return x;                          \
    }                                    \
  }

template <typename C>
C gelu_erf(C x) {
  const C inv_sqrt2 = static_cast<C>(0.70710678118654752440);
  return C(0.5) * x * (C(1) + std::erf(x * inv_sqrt2));
}
template <typename C>
C gelu_tanh(C x) {
  const C k_beta = static_cast<C>(0.79788456080286535588);  // sqrt(2 / pi)
  const C k_kappa = static_cast<C>(0.044715);
  C inner = k_beta * (x + k_kappa * x * x * x);
  return C(0.5) * x * (C(1) + std::tanh(inner));
}

auto make_gelu() {
  return [](const OpCall& c) {
    std::string approx = c.has("approximate") ? c.string_arg("approximate") : "none";
    if (approx != "none" && approx != "tanh")
      c.fail_arg("approximate", cat("expected 'none' or 'tanh', found '", approx, "'"));
    const bool use_tanh = approx == "tanh";
    return [use_tanh](auto x) {
      using C = decltype(x);
      if constexpr (is_fp_v<C>) return use_tanh ? gelu_tanh(x) : gelu_erf(x);
      else return x;
    };
  };
}

// clamp(x, lo, hi) with NaN propagation; absent bounds are skipped.
template <typename C>
C clamp_value(C x, bool has_lo, C lo, bool has_hi, C hi) {
  if constexpr (is_fp_v<C>) {
    if (x != x) return x;
  }
  if (has_lo && x < lo) x = lo;
  if (has_hi && x > hi) x = hi;
  return x;
}

auto make_hardtanh(double lo_default, double hi_default, bool read_args) {
  return [=](const OpCall& c) {
    double lo = read_args ? scalar_value(c, "min_val").as_double() : lo_default;
    double hi = read_args ? scalar_value(c, "max_val").as_double() : hi_default;
    return [lo, hi](auto x) {
      using C = decltype(x);
      if constexpr (std::is_same_v<C, bool>) {
        return x;
      } else {
        // Clamp in the compute type; NaN stays NaN.
        if constexpr (is_fp_v<C>) {
          if (x != x) return x;
        }
        const C l = static_cast<C>(lo), h = static_cast<C>(hi);
        return x < l ? l : (x > h ? h : x);
      }
    };
  };
}

// ---------------------------------------------------------------- clamp (with promotion)

struct ClampSetup {
  Operand self;
  std::optional<Operand> lo, hi;
  DType out;
};

ClampSetup clamp_setup(const OpCall& c, const char* lo_name, const char* hi_name) {
  ClampSetup s;
  s.self = operand(c, "self");
  std::vector<const Operand*> ops{&s.self};
  if (lo_name && c.has(lo_name)) {
    s.lo = scalar_operand(c, lo_name);
    ops.push_back(&*s.lo);
  }
  if (hi_name && c.has(hi_name)) {
    s.hi = scalar_operand(c, hi_name);
    ops.push_back(&*s.hi);
  }
  if (!s.lo && !s.hi) fail_node(c, ErrorCode::kInvalidArgument, "at least one of 'min' or 'max' must not be None");
  s.out = result_type(ops);
  if (s.out == DType::kBool) fail_node(c, ErrorCode::kDTypeMismatch, "clamp is not supported for bool tensors");
  return s;
}

Tensor clamp_run(const OpCall& c, const char* lo_name, const char* hi_name, bool inplace) {
  ClampSetup s = clamp_setup(c, lo_name, hi_name);
  const Tensor& self = s.self.tensor;
  if (inplace) {
    check_writable(c, self, "self");
    if (!can_cast(s.out, self.dtype()))
      fail_node(c, ErrorCode::kDTypeMismatch, "result type ", dtype_name(s.out),
                " can't be cast to the desired output type ", dtype_name(self.dtype()));
  }
  Tensor result = inplace && s.out == self.dtype() ? self : Tensor::empty(self.sizes(), s.out);
  Tensor in = cast(self, s.out);
  dispatch(s.out, [&](auto tag) {
    using T = decltype(tag);
    using C = opmath_t<T>;
    const bool has_lo = s.lo.has_value(), has_hi = s.hi.has_value();
    const C lo = has_lo ? s.lo->scalar.as<C>() : C(0);
    const C hi = has_hi ? s.hi->scalar.as<C>() : C(0);
    map1<T, T>(result, in, [&](C x) { return clamp_value(x, has_lo, lo, has_hi, hi); });
  });
  if (inplace && result.storage() != self.storage()) copy_into(c, self, result);
  return inplace ? self : result;
}

void add_clamp(Registry& r, const char* target, const char* schema, const char* lo, const char* hi,
               bool inplace = false) {
  r.add(
      target, schema,
      [=](const OpCall& c) {
        ClampSetup s = clamp_setup(c, lo, hi);
        return std::vector<TensorSpec>{{inplace ? s.self.spec.dtype : s.out, s.self.spec.sizes}};
      },
      [=](const OpCall& c) { return std::vector<OpArg>{OpArg::of(clamp_run(c, lo, hi, inplace))}; }, inplace);
}

}  // namespace

EMBER_REGISTER_OPS(ew_unary) {
  using U = UnaryRule;
  const std::string p = "torch.ops.aten.";

  auto relu = plain([](auto x) {
    using C = decltype(x);
    if constexpr (is_fp_v<C>) return (x > C(0) || x != x) ? x : C(0);
    else if constexpr (std::is_same_v<C, bool>) return x;
    else return x > C(0) ? x : C(0);
  });
  add_unary(r, p + "relu.default", "relu(Tensor self) -> Tensor", U::kSame, relu);
  add_unary(r, p + "relu_.default", "relu_(Tensor(a!) self) -> Tensor(a!)", U::kSame, relu, true);
  add_unary(r, p + "gelu.default", "gelu(Tensor self, *, str approximate=\"none\") -> Tensor", U::kFloatOnly,
            make_gelu());
  add_unary(r, p + "gelu_.default", "gelu_(Tensor(a!) self, *, str approximate=\"none\") -> Tensor(a!)",
            U::kFloatOnly, make_gelu(), true);
  auto silu = plain(EMBER_FLOAT_ONLY(x / (C(1) + std::exp(-x))));
  add_unary(r, p + "silu.default", "silu(Tensor self) -> Tensor", U::kFloatOnly, silu);
  add_unary(r, p + "silu_.default", "silu_(Tensor(a!) self) -> Tensor(a!)", U::kFloatOnly, silu, true);
  auto sigmoid = plain(EMBER_FLOAT_ONLY(C(1) / (C(1) + std::exp(-x))));
  add_unary(r, p + "sigmoid.default", "sigmoid(Tensor self) -> Tensor", U::kToFloat, sigmoid);
  add_unary(r, p + "sigmoid_.default", "sigmoid_(Tensor(a!) self) -> Tensor(a!)", U::kFloatOnly, sigmoid, true);
  auto tanh_f = plain(EMBER_FLOAT_ONLY(std::tanh(x)));
  add_unary(r, p + "tanh.default", "tanh(Tensor self) -> Tensor", U::kToFloat, tanh_f);
  add_unary(r, p + "tanh_.default", "tanh_(Tensor(a!) self) -> Tensor(a!)", U::kFloatOnly, tanh_f, true);
  auto hardswish = plain(EMBER_FLOAT_ONLY(x * std::min(std::max(x + C(3), C(0)), C(6)) / C(6)));
  add_unary(r, p + "hardswish.default", "hardswish(Tensor self) -> Tensor", U::kFloatOnly, hardswish);
  add_unary(r, p + "hardswish_.default", "hardswish_(Tensor(a!) self) -> Tensor(a!)", U::kFloatOnly, hardswish, true);
  add_unary(r, p + "hardsigmoid.default", "hardsigmoid(Tensor self) -> Tensor", U::kFloatOnly,
            plain(EMBER_FLOAT_ONLY(std::min(std::max(x + C(3), C(0)), C(6)) / C(6))));
  add_unary(r, p + "hardtanh.default", "hardtanh(Tensor self, Scalar min_val=-1, Scalar max_val=1) -> Tensor",
            U::kSameNoBool, make_hardtanh(-1, 1, true));
  add_unary(r, p + "hardtanh_.default",
            "hardtanh_(Tensor(a!) self, Scalar min_val=-1, Scalar max_val=1) -> Tensor(a!)", U::kSameNoBool,
            make_hardtanh(-1, 1, true), true);
  add_unary(r, p + "relu6.default", "relu6(Tensor self) -> Tensor", U::kSameNoBool, make_hardtanh(0, 6, false));
  auto leaky = [](const OpCall& c) {
    const double slope = scalar_value(c, "negative_slope").as_double();
    return [slope](auto x) {
      using C = decltype(x);
      if constexpr (is_fp_v<C>) return x > C(0) ? x : x * static_cast<C>(slope);
      else return x;
    };
  };
  add_unary(r, p + "leaky_relu.default", "leaky_relu(Tensor self, Scalar negative_slope=0.01) -> Tensor",
            U::kFloatOnly, leaky);
  add_unary(r, p + "leaky_relu_.default", "leaky_relu_(Tensor(a!) self, Scalar negative_slope=0.01) -> Tensor(a!)",
            U::kFloatOnly, leaky, true);
  add_unary(r, p + "elu.default",
            "elu(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1) -> Tensor", U::kFloatOnly,
            [](const OpCall& c) {
              const double neg = scalar_value(c, "alpha").as_double() * scalar_value(c, "scale").as_double();
              const double pos = scalar_value(c, "scale").as_double();
              const double in = scalar_value(c, "input_scale").as_double();
              return [=](auto x) {
                using C = decltype(x);
                if constexpr (is_fp_v<C>)
                  return x <= C(0) ? (std::exp(x * static_cast<C>(in)) - C(1)) * static_cast<C>(neg)
                                   : x * static_cast<C>(pos);
                else return x;
              };
            });
  add_unary(r, p + "neg.default", "neg(Tensor self) -> Tensor", U::kSameNoBool, plain([](auto x) {
              using C = decltype(x);
              if constexpr (std::is_integral_v<C> && !std::is_same_v<C, bool>)
                return static_cast<C>(uint64_t{0} - static_cast<uint64_t>(x));
              else if constexpr (std::is_same_v<C, bool>) return x;
              else return -x;
            }));
  add_unary(r, p + "abs.default", "abs(Tensor self) -> Tensor", U::kSame, plain([](auto x) {
              using C = decltype(x);
              if constexpr (is_fp_v<C>) return std::fabs(x);
              else if constexpr (std::is_same_v<C, bool> || std::is_unsigned_v<C>) return x;
              else return x < 0 ? static_cast<C>(uint64_t{0} - static_cast<uint64_t>(x)) : x;
            }));
  add_unary(r, p + "sign.default", "sign(Tensor self) -> Tensor", U::kSame, plain([](auto x) {
              using C = decltype(x);
              if constexpr (std::is_same_v<C, bool>) return x;
              else return static_cast<C>((C(0) < x) - (x < C(0)));
            }));
  add_unary(r, p + "exp.default", "exp(Tensor self) -> Tensor", U::kToFloat, plain(EMBER_FLOAT_ONLY(std::exp(x))));
  add_unary(r, p + "log.default", "log(Tensor self) -> Tensor", U::kToFloat, plain(EMBER_FLOAT_ONLY(std::log(x))));
  add_unary(r, p + "log1p.default", "log1p(Tensor self) -> Tensor", U::kToFloat,
            plain(EMBER_FLOAT_ONLY(std::log1p(x))));
  add_unary(r, p + "expm1.default", "expm1(Tensor self) -> Tensor", U::kToFloat,
            plain(EMBER_FLOAT_ONLY(std::expm1(x))));
  add_unary(r, p + "sqrt.default", "sqrt(Tensor self) -> Tensor", U::kToFloat, plain(EMBER_FLOAT_ONLY(std::sqrt(x))));
  add_unary(r, p + "rsqrt.default", "rsqrt(Tensor self) -> Tensor", U::kToFloat,
            plain(EMBER_FLOAT_ONLY(C(1) / std::sqrt(x))));
  add_unary(r, p + "reciprocal.default", "reciprocal(Tensor self) -> Tensor", U::kToFloat,
            plain(EMBER_FLOAT_ONLY(C(1) / x)));
  add_unary(r, p + "erf.default", "erf(Tensor self) -> Tensor", U::kToFloat, plain(EMBER_FLOAT_ONLY(std::erf(x))));
  add_unary(r, p + "sin.default", "sin(Tensor self) -> Tensor", U::kToFloat, plain(EMBER_FLOAT_ONLY(std::sin(x))));
  add_unary(r, p + "cos.default", "cos(Tensor self) -> Tensor", U::kToFloat, plain(EMBER_FLOAT_ONLY(std::cos(x))));
  // Rounding: identity on integers.
  add_unary(r, p + "floor.default", "floor(Tensor self) -> Tensor", U::kSameNoBool,
            plain(EMBER_FLOAT_ONLY(std::floor(x))));
  add_unary(r, p + "ceil.default", "ceil(Tensor self) -> Tensor", U::kSameNoBool, plain(EMBER_FLOAT_ONLY(std::ceil(x))));
  add_unary(r, p + "round.default", "round(Tensor self) -> Tensor", U::kSameNoBool,
            plain(EMBER_FLOAT_ONLY(std::nearbyint(x))));  // half to even under the default rounding mode
  add_unary(r, p + "trunc.default", "trunc(Tensor self) -> Tensor", U::kSameNoBool,
            plain(EMBER_FLOAT_ONLY(std::trunc(x))));
  add_unary(r, p + "logical_not.default", "logical_not(Tensor self) -> Tensor", U::kBool, plain([](auto x) -> bool {
              using C = decltype(x);
              return x == C(0);
            }));
  add_unary(r, p + "isnan.default", "isnan(Tensor self) -> Tensor", U::kBool, plain([](auto x) -> bool {
              return x != x;
            }));
  add_unary(r, p + "bitwise_not.default", "bitwise_not(Tensor self) -> Tensor", U::kSame, [](const OpCall& c) {
    if (is_floating(c.spec("self").dtype))
      fail_node(c, ErrorCode::kDTypeMismatch, "bitwise_not needs an integer or bool tensor, found ",
                dtype_name(c.spec("self").dtype));
    return [](auto x) {
      using C = decltype(x);
      if constexpr (std::is_same_v<C, bool>) return !x;
      else if constexpr (is_fp_v<C>) return x;
      else return static_cast<C>(~x);
    };
  });

  add_clamp(r, "torch.ops.aten.clamp.default", "clamp(Tensor self, Scalar? min=None, Scalar? max=None) -> Tensor",
            "min", "max");
  add_clamp(r, "torch.ops.aten.clamp_.default",
            "clamp_(Tensor(a!) self, Scalar? min=None, Scalar? max=None) -> Tensor(a!)", "min", "max", true);
  add_clamp(r, "torch.ops.aten.clamp_min.default", "clamp_min(Tensor self, Scalar min) -> Tensor", "min", nullptr);
  add_clamp(r, "torch.ops.aten.clamp_max.default", "clamp_max(Tensor self, Scalar max) -> Tensor", nullptr, "max");
}

}  // namespace ember::ops::ew
