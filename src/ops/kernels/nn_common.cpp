#include "ops/kernels/nn_common.h"

#include <algorithm>
#include <cstring>

namespace ember::ops::nn {

Tensor to_f32(const Tensor& t) {
  if (t.dtype() == DType::kFloat32) return t.contiguous();
  Tensor src = t.contiguous();
  Tensor out = Tensor::empty(t.sizes(), DType::kFloat32);
  int64_t n = out.numel();
  float* d = out.data<float>();
  switch (src.dtype()) {
    case DType::kFloat16: {
      const uint16_t* s = src.data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) d[i] = half_to_float(s[i]);
      break;
    }
    case DType::kBFloat16: {
      const uint16_t* s = src.data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_float(s[i]);
      break;
    }
    case DType::kFloat64: {
      const double* s = src.data<double>();
      for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(s[i]);
      break;
    }
    default:
      for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(element_as_double(src, i));
  }
  return out;
}

Tensor make_from_f32(const float* s, const Shape& sizes, DType dtype) {
  Tensor out = Tensor::empty(sizes, dtype);
  int64_t n = out.numel();
  switch (dtype) {
    case DType::kFloat32:
      if (n) std::memcpy(out.raw_data(), s, n * sizeof(float));
      break;
    case DType::kFloat16: {
      uint16_t* d = out.data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_half(s[i]);
      break;
    }
    case DType::kBFloat16: {
      uint16_t* d = out.data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(s[i]);
      break;
    }
    case DType::kFloat64: {
      double* d = out.data<double>();
      for (int64_t i = 0; i < n; ++i) d[i] = s[i];
      break;
    }
    default:
      for (int64_t i = 0; i < n; ++i) set_element_from_double(out, i, s[i]);
  }
  return out;
}

Tensor from_f32(const Tensor& t, DType dtype) {
  if (dtype == DType::kFloat32) return t;
  return make_from_f32(t.data<float>(), t.sizes(), dtype);
}

std::vector<int64_t> expand_param(const OpCall& c, const char* name, std::vector<int64_t> v, size_t n) {
  if (v.size() == 1 && n > 1) v.assign(n, v[0]);
  EMBER_NODE_CHECK(c, v.size() == n, ErrorCode::kInvalidArgument, "argument '", name, "': expected ", n,
                   " values, found ", v.size());
  return v;
}

Shape broadcast_shapes(const OpCall& c, const Shape& a, const Shape& b, const char* what) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (x == 1) {
      out[i] = y;
    } else if (y == 1) {
      out[i] = x;
    } else if (x < 0) {
      out[i] = y;
    } else if (y < 0 || x == y) {
      out[i] = x;
    } else {
      fail_node(c, ErrorCode::kShapeMismatch, what, ": shapes ", shape_str(a), " and ", shape_str(b),
                " are not broadcastable");
    }
  }
  return out;
}

}  // namespace ember::ops::nn
