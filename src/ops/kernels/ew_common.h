// Shared machinery of the element-wise, reduction, shape and creation kernels:
// dtype dispatch, PyTorch type promotion, broadcasting, and a strided N-operand loop.
//
// Kernels compute half and bfloat16 in float ("opmath") and round back once per element,
// like PyTorch's CPU kernels. Every loop visits elements in a fixed order, so results are
// bitwise deterministic.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "ember/error.h"
#include "ember/tensor.h"
#include "ops/registry.h"

namespace ember::ops::ew {

// ---------------------------------------------------------------- element types

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

template <typename T>
struct OpMathT {
  using type = T;
};
template <>
struct OpMathT<Half> {
  using type = float;
};
template <>
struct OpMathT<BFloat16> {
  using type = float;
};
template <typename T>
using opmath_t = typename OpMathT<T>::type;

template <typename T>
inline constexpr bool is_float_v = std::is_floating_point_v<T> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

template <typename T>
inline opmath_t<T> load(T v) {
  return v;
}
inline float load(Half v) { return half_to_float(v.bits); }
inline float load(BFloat16 v) { return bf16_to_float(v.bits); }

// Floating value -> integer without undefined behaviour: NaN gives 0, out-of-range values
// saturate through int64 and then wrap to the narrower type (what x86 conversions produce
// for the common cases).
template <typename I, typename F>
inline I float_to_int(F v) {
  if (!(v == v)) return 0;
  if constexpr (std::is_same_v<I, bool>) {
    return v != 0;
  } else {
    constexpr double lo = -9223372036854775808.0;
    double d = static_cast<double>(v);
    if (d < lo || d >= -lo) return static_cast<I>(std::numeric_limits<int64_t>::min());
    return static_cast<I>(static_cast<int64_t>(d));
  }
}

// Converts a computed value to the storage type T.
template <typename T, typename C>
inline T store(C v) {
  if constexpr (std::is_same_v<T, C>) {
    return v;
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != C(0);
  } else if constexpr (std::is_same_v<T, Half>) {
    return Half{float_to_half(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    return BFloat16{float_to_bf16(static_cast<float>(v))};
  } else if constexpr (std::is_integral_v<T> && std::is_floating_point_v<C>) {
    return float_to_int<T>(v);
  } else {
    return static_cast<T>(v);
  }
}

// Calls f(T{}) with T the C++ element type of `dtype` (Half/BFloat16 for the 16-bit floats).
template <typename F>
decltype(auto) dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32: return f(float{});
    case DType::kFloat64: return f(double{});
    case DType::kFloat16: return f(Half{});
    case DType::kBFloat16: return f(BFloat16{});
    case DType::kInt64: return f(int64_t{});
    case DType::kInt32: return f(int32_t{});
    case DType::kInt16: return f(int16_t{});
    case DType::kInt8: return f(int8_t{});
    case DType::kUInt8: return f(uint8_t{});
    case DType::kBool: return f(bool{});
    default: fail(ErrorCode::kUnsupported, "dtype ", dtype_name(dtype), " is not supported by this kernel");
  }
}

// ---------------------------------------------------------------- call helpers

// "node 'add_3' (torch.ops.aten.add.Tensor): " prefix for messages, as OpCall::fail_arg writes it.
std::string where(const OpCall& c);

template <typename... Args>
[[noreturn]] void fail_node(const OpCall& c, ErrorCode code, Args&&... args) {
  fail(code, where(c), std::forward<Args>(args)...);
}

// A Python scalar (Scalar argument, or a number passed where a Tensor is expected).
struct ScalarValue {
  enum class Kind { kBool, kInt, kFloat } kind = Kind::kInt;
  int64_t i = 0;
  double f = 0.0;
  bool integral() const { return kind != Kind::kFloat; }
  double as_double() const { return kind == Kind::kFloat ? f : static_cast<double>(i); }
  // The dtype PyTorch gives a wrapped number of this kind (before default-dtype mapping).
  DType dtype() const { return kind == Kind::kBool ? DType::kBool : kind == Kind::kInt ? DType::kInt64 : DType::kFloat64; }
  // The value converted to the element type T, or to its opmath type.
  template <typename C>
  C as() const {
    if constexpr (std::is_floating_point_v<C>) return static_cast<C>(as_double());
    else if (kind == Kind::kFloat) return store<C>(f);
    else return static_cast<C>(i);
  }
};

std::optional<ScalarValue> opt_scalar_value(const OpCall& c, std::string_view name);
ScalarValue scalar_value(const OpCall& c, std::string_view name);

// One operand of a binary-like op: a tensor (with its spec) or a wrapped Python scalar.
struct Operand {
  bool is_scalar = false;
  ScalarValue scalar;
  TensorSpec spec;  // tensors only
  Tensor tensor;    // tensors in run mode
};
Operand operand(const OpCall& c, std::string_view name);
Operand scalar_operand(const OpCall& c, std::string_view name);  // a Scalar-typed argument

// ---------------------------------------------------------------- dtypes

bool is_floating(DType t);
bool is_integral_or_bool(DType t);
// torch.promote_types.
DType promote_types(DType a, DType b);
// torch.result_type over tensors and scalars (dimensioned tensors > 0-d tensors > scalars,
// by category bool < integer < floating; a float scalar maps to float32).
DType result_type(const std::vector<const Operand*>& ops);
// Whether `from` may be written into a tensor of dtype `to` by an in-place op.
bool can_cast(DType from, DType to);
// The float dtype an integer/bool input is computed in by float-only ops (float32).
inline DType to_float(DType t) { return is_floating(t) ? t : DType::kFloat32; }

// ---------------------------------------------------------------- shapes

Shape broadcast_shapes(const OpCall& c, const Shape& a, const Shape& b);
// Element strides of `t` broadcast (right-aligned) to `shape`.
Shape broadcast_strides(const Tensor& t, const Shape& shape);
// `t` viewed with sizes `shape` (stride 0 on broadcast dims); shares storage.
Tensor broadcast_to(const Tensor& t, const Shape& shape);
int64_t norm_dim(const OpCall& c, int64_t dim, int64_t rank);
bool sizes_known(const Shape& s);

// ---------------------------------------------------------------- tensors

// A contiguous copy of `t` converted to `dtype`; `t` itself if it already has that dtype
// (any strides).
Tensor cast(const Tensor& t, DType dtype);
// A 0-d tensor of `dtype` holding `s`.
Tensor scalar_tensor(const ScalarValue& s, DType dtype);
// Writes `src` (broadcast to dst's shape, converted to dst's dtype) into `dst`.
void copy_into(const OpCall& c, const Tensor& dst, const Tensor& src);
// Throws kInvalidArgument unless `t` may be written in place.
void check_writable(const OpCall& c, const Tensor& t, std::string_view name);
void fill(const Tensor& t, const ScalarValue& v);

// ---------------------------------------------------------------- the strided loop

// Calls inner(ptrs, byte_strides, n) over runs of the innermost dimension for N operands that
// all have `shape` (operand strides in elements, 0 for broadcast dims). Size-1 dims are dropped
// and dims that are contiguous for every operand merged, so a contiguous tensor is one run.
template <size_t N, typename F>
void strided_loop(const Shape& shape, const std::array<char*, N>& base, const std::array<Shape, N>& strides,
                  const std::array<int64_t, N>& itemsize, F&& inner) {
  for (int64_t s : shape)
    if (s == 0) return;
  // Collapse dims (outer to inner).
  std::vector<int64_t> sizes;
  std::vector<std::array<int64_t, N>> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    std::array<int64_t, N> s{};
    for (size_t k = 0; k < N; ++k) s[k] = strides[k][d] * itemsize[k];
    if (!sizes.empty()) {
      bool merge = true;
      for (size_t k = 0; k < N; ++k) merge = merge && st.back()[k] == s[k] * shape[d];
      if (merge) {
        sizes.back() *= shape[d];
        st.back() = s;
        continue;
      }
    }
    sizes.push_back(shape[d]);
    st.push_back(s);
  }
  std::array<char*, N> p = base;
  if (sizes.empty()) {
    std::array<int64_t, N> zero{};
    inner(p.data(), zero.data(), int64_t{1});
    return;
  }
  const size_t outer = sizes.size() - 1;
  const int64_t n = sizes.back();
  const std::array<int64_t, N> inner_strides = st.back();
  std::vector<int64_t> idx(outer, 0);
  while (true) {
    inner(p.data(), inner_strides.data(), n);
    size_t d = outer;
    while (d > 0) {
      --d;
      if (++idx[d] < sizes[d]) {
        for (size_t k = 0; k < N; ++k) p[k] += st[d][k];
        break;
      }
      for (size_t k = 0; k < N; ++k) p[k] -= st[d][k] * (sizes[d] - 1);
      idx[d] = 0;
      if (d == 0) return;
    }
    if (outer == 0) return;
  }
}

inline char* ptr(const Tensor& t) { return static_cast<char*>(t.raw_data()); }

// out[i] = store<O>(f(load(a[i]))), `a` broadcast to out's shape.
template <typename O, typename A, typename F>
void map1(const Tensor& out, const Tensor& a, F&& f) {
  const Shape& shape = out.sizes();
  strided_loop<2>(shape, {ptr(out), ptr(a)}, {out.strides(), broadcast_strides(a, shape)},
                  {int64_t{sizeof(O)}, int64_t{sizeof(A)}}, [&](char** p, const int64_t* s, int64_t n) {
                    if (s[0] == sizeof(O) && s[1] == sizeof(A)) {
                      O* __restrict o = reinterpret_cast<O*>(p[0]);
                      const A* __restrict x = reinterpret_cast<const A*>(p[1]);
                      for (int64_t i = 0; i < n; ++i) o[i] = store<O>(f(load(x[i])));
                    } else {
                      for (int64_t i = 0; i < n; ++i)
                        *reinterpret_cast<O*>(p[0] + i * s[0]) =
                            store<O>(f(load(*reinterpret_cast<const A*>(p[1] + i * s[1]))));
                    }
                  });
}

// out[i] = store<O>(f(load(a[i]), load(b[i]))), inputs broadcast to out's shape.
template <typename O, typename A, typename B, typename F>
void map2(const Tensor& out, const Tensor& a, const Tensor& b, F&& f) {
  const Shape& shape = out.sizes();
  strided_loop<3>(shape, {ptr(out), ptr(a), ptr(b)},
                  {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape)},
                  {int64_t{sizeof(O)}, int64_t{sizeof(A)}, int64_t{sizeof(B)}},
                  [&](char** p, const int64_t* s, int64_t n) {
                    if (s[0] == sizeof(O) && s[1] == sizeof(A) && s[2] == sizeof(B)) {
                      O* __restrict o = reinterpret_cast<O*>(p[0]);
                      const A* __restrict x = reinterpret_cast<const A*>(p[1]);
                      const B* __restrict y = reinterpret_cast<const B*>(p[2]);
                      for (int64_t i = 0; i < n; ++i) o[i] = store<O>(f(load(x[i]), load(y[i])));
                    } else if (s[0] == sizeof(O) && s[1] == sizeof(A) && s[2] == 0) {
                      O* __restrict o = reinterpret_cast<O*>(p[0]);
                      const A* __restrict x = reinterpret_cast<const A*>(p[1]);
                      const auto y = load(*reinterpret_cast<const B*>(p[2]));
                      for (int64_t i = 0; i < n; ++i) o[i] = store<O>(f(load(x[i]), y));
                    } else {
                      for (int64_t i = 0; i < n; ++i)
                        *reinterpret_cast<O*>(p[0] + i * s[0]) =
                            store<O>(f(load(*reinterpret_cast<const A*>(p[1] + i * s[1])),
                                       load(*reinterpret_cast<const B*>(p[2] + i * s[2]))));
                    }
                  });
}

// out[i] = store<O>(f(load(a[i]), load(b[i]), load(c[i]))).
template <typename O, typename A, typename B, typename C, typename F>
void map3(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& c, F&& f) {
  const Shape& shape = out.sizes();
  strided_loop<4>(shape, {ptr(out), ptr(a), ptr(b), ptr(c)},
                  {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape), broadcast_strides(c, shape)},
                  {int64_t{sizeof(O)}, int64_t{sizeof(A)}, int64_t{sizeof(B)}, int64_t{sizeof(C)}},
                  [&](char** p, const int64_t* s, int64_t n) {
                    for (int64_t i = 0; i < n; ++i)
                      *reinterpret_cast<O*>(p[0] + i * s[0]) =
                          store<O>(f(load(*reinterpret_cast<const A*>(p[1] + i * s[1])),
                                     load(*reinterpret_cast<const B*>(p[2] + i * s[2])),
                                     load(*reinterpret_cast<const C*>(p[3] + i * s[3]))));
                  });
}

// Walks the element offsets (in elements) of a strided shape in row-major order.
class OffsetWalker {
 public:
  OffsetWalker(const Shape& sizes, const Shape& strides, int64_t base)
      : sizes_(sizes), strides_(strides), idx_(sizes.size(), 0), off_(base) {}
  int64_t offset() const { return off_; }
  void next() {
    for (size_t d = sizes_.size(); d-- > 0;) {
      if (++idx_[d] < sizes_[d]) {
        off_ += strides_[d];
        return;
      }
      off_ -= strides_[d] * (sizes_[d] - 1);
      idx_[d] = 0;
    }
  }

 private:
  Shape sizes_, strides_;
  std::vector<int64_t> idx_;
  int64_t off_;
};

// Registration helpers: InferFn/KernelFn wrappers for ops with one tensor output.
using SpecFn = TensorSpec (*)(const OpCall&);
using TensorFn = Tensor (*)(const OpCall&);

}  // namespace ember::ops::ew
