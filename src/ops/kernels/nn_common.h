// Helpers shared by the nn_* kernels: node-named errors, float dtype handling, shapes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ember/error.h"
#include "ember/tensor.h"
#include "ops/registry.h"

namespace ember::ops::nn {

// Throws `code` with a message that starts with the node and its target.
template <typename... Args>
[[noreturn]] void fail_node(const OpCall& c, ErrorCode code, Args&&... parts) {
  fail(code, "node '", c.node(), "' (", c.target(), "): ", std::forward<Args>(parts)...);
}

#define EMBER_NODE_CHECK(call, cond, code, ...)                            \
  do {                                                                     \
    if (!(cond)) ::ember::ops::nn::fail_node((call), (code), __VA_ARGS__); \
  } while (0)

// float32, float16, bfloat16 and float64 (computed in float32).
inline bool is_float(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kBFloat16 || t == DType::kFloat64;
}

// Throws kDTypeMismatch unless argument `name` has a floating dtype.
inline void check_float(const OpCall& c, const char* name, DType t) {
  EMBER_NODE_CHECK(c, is_float(t), ErrorCode::kDTypeMismatch, "argument '", name,
                   "': expected a floating dtype (float32, float16, bfloat16, float64), found ", dtype_name(t));
}

inline void check_same_dtype(const OpCall& c, const char* name, DType t, DType expected) {
  EMBER_NODE_CHECK(c, t == expected, ErrorCode::kDTypeMismatch, "argument '", name, "': expected dtype ",
                   dtype_name(expected), ", found ", dtype_name(t));
}

inline void check_rank(const OpCall& c, const char* name, const Shape& sizes, std::initializer_list<size_t> ranks) {
  for (size_t r : ranks)
    if (sizes.size() == r) return;
  std::string want;
  for (size_t r : ranks) want += (want.empty() ? "" : " or ") + std::to_string(r);
  fail_node(c, ErrorCode::kShapeMismatch, "argument '", name, "': expected a ", want, "-D tensor, found shape ",
            shape_str(sizes));
}

// A float32 contiguous copy (or the tensor itself when it already is one).
Tensor to_f32(const Tensor& t);
// Converts a contiguous float32 tensor to `dtype` (returns it unchanged for float32).
Tensor from_f32(const Tensor& t, DType dtype);
// Copies a float32 contiguous buffer into a new tensor of `dtype` and `sizes`.
Tensor make_from_f32(const float* data, const Shape& sizes, DType dtype);

// normalize_dim with the node named in the error.
inline int64_t node_dim(const OpCall& c, int64_t dim, int64_t rank) {
  try {
    return normalize_dim(dim, rank, "dim");
  } catch (const Error& e) {
    fail_node(c, e.code(), e.what());
  }
}

// Repeats a 1-element list `v` to `n` entries; checks the length otherwise.
std::vector<int64_t> expand_param(const OpCall& c, const char* name, std::vector<int64_t> v, size_t n);

// Broadcasts two shapes (right-aligned, NumPy rules). Unknown sizes (< 0) broadcast against
// anything; a mismatch throws kShapeMismatch naming `what`.
Shape broadcast_shapes(const OpCall& c, const Shape& a, const Shape& b, const char* what);

// Known sizes multiply; any unknown (< 0) makes the result unknown.
inline int64_t mul_sizes(int64_t a, int64_t b) { return a < 0 || b < 0 ? -1 : a * b; }

}  // namespace ember::ops::nn
