#include "ops/kernels/ew_common.h"

#include <algorithm>

namespace ember::ops::ew {

std::string where(const OpCall& c) { return cat("node '", c.node(), "' (", c.target(), "): "); }

std::optional<ScalarValue> opt_scalar_value(const OpCall& c, std::string_view name) {
  if (!c.has(name)) return std::nullopt;
  const OpArg& a = c.arg(name);
  ScalarValue v;
  switch (a.kind) {
    case OpArg::Kind::kBool:
      v.kind = ScalarValue::Kind::kBool;
      v.i = a.b ? 1 : 0;
      break;
    case OpArg::Kind::kInt:
      v.kind = ScalarValue::Kind::kInt;
      v.i = a.i;
      break;
    case OpArg::Kind::kFloat:
      v.kind = ScalarValue::Kind::kFloat;
      v.f = a.f;
      break;
    default: c.fail_arg(name, cat("expected a Scalar, found ", arg_kind_name(a.kind)));
  }
  return v;
}

ScalarValue scalar_value(const OpCall& c, std::string_view name) {
  std::optional<ScalarValue> v = opt_scalar_value(c, name);
  if (!v) c.fail_arg(name, "expected a Scalar, found None");
  return *v;
}

Operand operand(const OpCall& c, std::string_view name) {
  const OpArg& a = c.arg(name);
  if (a.kind != OpArg::Kind::kTensor) return scalar_operand(c, name);
  Operand o;
  o.spec = a.spec;
  if (!c.infer_mode()) o.tensor = c.tensor(name);
  return o;
}

Operand scalar_operand(const OpCall& c, std::string_view name) {
  Operand o;
  o.is_scalar = true;
  o.scalar = scalar_value(c, name);
  return o;
}

// ---------------------------------------------------------------- dtypes

bool is_floating(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat64 || t == DType::kFloat16 || t == DType::kBFloat16;
}

bool is_integral_or_bool(DType t) {
  switch (t) {
    case DType::kBool:
    case DType::kUInt8:
    case DType::kInt8:
    case DType::kInt16:
    case DType::kInt32:
    case DType::kInt64: return true;
    default: return false;
  }
}

namespace {

int category(DType t) { return t == DType::kBool ? 0 : is_floating(t) ? 2 : 1; }

int int_rank(DType t) {
  switch (t) {
    case DType::kInt8:
    case DType::kUInt8: return 1;
    case DType::kInt16: return 2;
    case DType::kInt32: return 3;
    default: return 4;
  }
}

int float_rank(DType t) {
  switch (t) {
    case DType::kFloat16:
    case DType::kBFloat16: return 1;
    case DType::kFloat32: return 2;
    default: return 3;
  }
}

// Like promote_types, with kUnknown as "no operand yet".
DType promote_skip_unknown(DType a, DType b) {
  if (a == DType::kUnknown) return b;
  if (b == DType::kUnknown) return a;
  return promote_types(a, b);
}

// c10's combine_categories: a higher-priority group keeps its dtype unless a lower group
// belongs to a higher category.
DType combine_categories(DType higher, DType lower) {
  if (higher == DType::kUnknown) return lower;
  if (lower == DType::kUnknown) return higher;
  if (is_floating(higher)) return higher;
  if (higher == DType::kBool || is_floating(lower)) return promote_skip_unknown(higher, lower);
  return higher;
}

}  // namespace

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  EMBER_CHECK(dtype_size(a) > 0 && dtype_size(b) > 0, ErrorCode::kUnsupported, "cannot promote ", dtype_name(a),
              " with ", dtype_name(b));
  EMBER_CHECK(is_floating(a) || is_integral_or_bool(a), ErrorCode::kUnsupported, "type promotion of ",
              dtype_name(a), " is not supported");
  EMBER_CHECK(is_floating(b) || is_integral_or_bool(b), ErrorCode::kUnsupported, "type promotion of ",
              dtype_name(b), " is not supported");
  int ca = category(a), cb = category(b);
  if (ca != cb) return ca > cb ? a : b;
  if (ca == 2) {
    if (float_rank(a) == 1 && float_rank(b) == 1) return DType::kFloat32;  // half with bfloat16
    return float_rank(a) >= float_rank(b) ? a : b;
  }
  // Integers. uint8 with int8 -> int16; uint8 with a wider signed type -> that type.
  if ((a == DType::kUInt8 && b == DType::kInt8) || (a == DType::kInt8 && b == DType::kUInt8)) return DType::kInt16;
  return int_rank(a) >= int_rank(b) ? a : b;
}

DType result_type(const std::vector<const Operand*>& ops) {
  DType dim_result = DType::kUnknown, zero_result = DType::kUnknown, wrapped_result = DType::kUnknown;
  for (const Operand* o : ops) {
    if (o->is_scalar) {
      DType t = o->scalar.dtype();
      if (t == DType::kFloat64) t = DType::kFloat32;  // default dtype
      wrapped_result = promote_skip_unknown(wrapped_result, t);
    } else if (o->spec.sizes.empty()) {
      zero_result = promote_skip_unknown(zero_result, o->spec.dtype);
    } else {
      dim_result = promote_skip_unknown(dim_result, o->spec.dtype);
    }
  }
  return combine_categories(dim_result, combine_categories(zero_result, wrapped_result));
}

bool can_cast(DType from, DType to) {
  if (is_floating(from) && !is_floating(to)) return false;
  if (from != DType::kBool && to == DType::kBool) return false;
  return true;
}

// ---------------------------------------------------------------- shapes

Shape broadcast_shapes(const OpCall& c, const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (x == y || y == 1) {
      out[i] = x;
    } else if (x == 1) {
      out[i] = y;
    } else if (x < 0) {
      out[i] = y;  // unknown vs known: must be the known size
    } else if (y < 0) {
      out[i] = x;
    } else {
      fail_node(c, ErrorCode::kShapeMismatch, "cannot broadcast ", shape_str(a), " with ", shape_str(b));
    }
  }
  return out;
}

Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape st(shape.size(), 0);
  size_t off = shape.size() - t.sizes().size();
  for (size_t i = 0; i < t.sizes().size(); ++i)
    st[off + i] = t.sizes()[i] == 1 && shape[off + i] != 1 ? 0 : t.strides()[i];
  return st;
}

Tensor broadcast_to(const Tensor& t, const Shape& shape) {
  return t.as_strided(shape, broadcast_strides(t, shape), t.storage_offset());
}

int64_t norm_dim(const OpCall& c, int64_t dim, int64_t rank) {
  int64_t r = std::max<int64_t>(rank, 1);
  if (dim < -r || dim >= r)
    fail_node(c, ErrorCode::kInvalidArgument, "dimension ", dim, " is out of range for a tensor of rank ", rank,
              " (expected in [", -r, ", ", r - 1, "])");
  return dim < 0 ? dim + r : dim;
}

bool sizes_known(const Shape& s) {
  return std::all_of(s.begin(), s.end(), [](int64_t v) { return v >= 0; });
}

// ---------------------------------------------------------------- tensors

Tensor cast(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  Tensor out = Tensor::empty(t.sizes(), dtype);
  dispatch(t.dtype(), [&](auto src_tag) {
    using S = decltype(src_tag);
    dispatch(dtype, [&](auto dst_tag) {
      using D = decltype(dst_tag);
      map1<D, S>(out, t, [](auto v) { return v; });
    });
  });
  return out;
}

Tensor scalar_tensor(const ScalarValue& s, DType dtype) {
  Tensor t = Tensor::empty({}, dtype);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (is_float_v<T>) {
      *t.data<T>() = store<T>(s.as_double());
    } else {
      *t.data<T>() = s.as<T>();
    }
  });
  return t;
}

void check_writable(const OpCall& c, const Tensor& t, std::string_view name) {
  if (!t.writable())
    fail_node(c, ErrorCode::kInvalidArgument, "argument '", name, "' (", t.to_string(),
              ") is read-only and cannot be written in place");
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.strides()[d] == 0 && t.sizes()[d] > 1)
      fail_node(c, ErrorCode::kInvalidArgument, "argument '", name, "' (", t.to_string(),
                ") has several elements sharing one memory location (an expanded view) and cannot be written in "
                "place");
}

void copy_into(const OpCall& c, const Tensor& dst, const Tensor& src) {
  Shape b = broadcast_shapes(c, dst.sizes(), src.sizes());
  if (b != dst.sizes())
    fail_node(c, ErrorCode::kShapeMismatch, "cannot copy a tensor of shape ", shape_str(src.sizes()),
              " into one of shape ", shape_str(dst.sizes()));
  Tensor s = src;
  if (src.storage() == dst.storage()) s = src.clone();  // the regions may overlap
  dispatch(s.dtype(), [&](auto src_tag) {
    using S = decltype(src_tag);
    dispatch(dst.dtype(), [&](auto dst_tag) {
      using D = decltype(dst_tag);
      map1<D, S>(dst, s, [](auto v) { return v; });
    });
  });
}

void fill(const Tensor& t, const ScalarValue& v) {
  if (t.numel() == 0) return;
  Tensor s = scalar_tensor(v, t.dtype());
  dispatch(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T value = *s.data<T>();
    strided_loop<1>(t.sizes(), {ptr(t)}, {t.strides()}, {int64_t{sizeof(T)}},
                    [&](char** p, const int64_t* st, int64_t n) {
                      for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * st[0]) = value;
                    });
  });
}

}  // namespace ember::ops::ew
