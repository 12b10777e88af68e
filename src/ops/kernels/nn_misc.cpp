// aten.embedding, dropout, native_dropout (inference forms), topk, cumsum.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/parallel.h"

namespace ember::ops::nn {
namespace {

// Reads element i of a contiguous integral tensor exactly.
int64_t read_int(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kInt64:
      return t.data<int64_t>()[i];
    case DType::kInt32:
      return t.data<int32_t>()[i];
    case DType::kInt16:
      return t.data<int16_t>()[i];
    case DType::kInt8:
      return t.data<int8_t>()[i];
    case DType::kUInt8:
      return t.data<uint8_t>()[i];
    case DType::kBool:
      return t.data<uint8_t>()[i] != 0;
    default:
      return static_cast<int64_t>(element_as_double(t, i));
  }
}

// ---------------------------------------------------------------- embedding

std::vector<TensorSpec> embedding_infer(const OpCall& c) {
  const TensorSpec& w = c.spec("weight");
  const TensorSpec& idx = c.spec("indices");
  check_rank(c, "weight", w.sizes, {2});
  EMBER_NODE_CHECK(c, idx.dtype == DType::kInt64 || idx.dtype == DType::kInt32, ErrorCode::kDTypeMismatch,
                   "indices: expected int64 or int32, found ", dtype_name(idx.dtype));
  Shape out = idx.sizes;
  out.push_back(w.sizes[1]);
  return {TensorSpec{w.dtype, out}};
}

std::vector<OpArg> embedding_run(const OpCall& c) {
  TensorSpec spec = embedding_infer(c)[0];
  Tensor w = c.tensor("weight").contiguous();
  Tensor idx = c.tensor("indices").contiguous();
  int64_t V = w.size(0), D = w.size(1), n = idx.numel();
  Tensor out = Tensor::empty(spec.sizes, w.dtype());
  size_t row_bytes = static_cast<size_t>(D) * w.itemsize();
  const uint8_t* src = static_cast<const uint8_t*>(w.raw_data());
  uint8_t* dst = static_cast<uint8_t*>(out.raw_data());
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = read_int(idx, i);
    EMBER_NODE_CHECK(c, r >= 0 && r < V, ErrorCode::kInvalidArgument, "index ", r, " at position ", i,
                     " of indices is out of range for an embedding table of ", V, " rows");
    if (row_bytes) std::memcpy(dst + i * row_bytes, src + r * row_bytes, row_bytes);
  }
  return {OpArg::of(out)};
}

// ---------------------------------------------------------------- dropout

// Inference dropout: only train=False (or p=0) is deterministic.
void check_dropout(const OpCall& c, bool train) {
  double p = c.float_arg("p");
  EMBER_NODE_CHECK(c, p >= 0.0 && p <= 1.0, ErrorCode::kInvalidArgument,
                   "dropout probability must be in [0, 1], found ", p);
  EMBER_NODE_CHECK(c, !train || p == 0.0, ErrorCode::kUnsupported, "dropout in training mode (train=True, p=", p,
                   ") is random and not supported at inference");
}

// ---------------------------------------------------------------- topk

std::vector<TensorSpec> topk_infer(const OpCall& c) {
  const TensorSpec& in = c.spec("self");
  int64_t rank = static_cast<int64_t>(in.sizes.size());
  int64_t dim = node_dim(c, c.int_arg("dim"), rank);
  int64_t k = c.int_arg("k");
  int64_t size = rank == 0 ? 1 : in.sizes[dim];
  EMBER_NODE_CHECK(c, k >= 0 && (size < 0 || k <= size), ErrorCode::kInvalidArgument, "k=", k,
                   " is out of range for dimension ", dim, " of size ", size);
  EMBER_NODE_CHECK(c,
                   in.dtype != DType::kBool && dtype_size(in.dtype) > 0 && in.dtype != DType::kComplex64 &&
                       in.dtype != DType::kComplex128 && in.dtype != DType::kComplex32,
                   ErrorCode::kDTypeMismatch, "topk does not support dtype ", dtype_name(in.dtype));
  Shape out = in.sizes;
  if (rank > 0) out[dim] = k;
  return {TensorSpec{in.dtype, out}, TensorSpec{DType::kInt64, out}};
}

// Orders `order` (positions 0..len-1 of one row) by key, NaN counted as largest, ties by
// lower index first, and keeps the first k.
template <typename KeyFn>
void topk_row(int64_t len, int64_t k, bool largest, KeyFn key, std::vector<int64_t>& order) {
  order.resize(len);
  std::iota(order.begin(), order.end(), 0);
  auto before = [&](int64_t a, int64_t b) {
    double x = key(a), y = key(b);
    bool xn = std::isnan(x), yn = std::isnan(y);
    if (largest) {
      if (xn != yn) return xn;
      if (!xn && x != y) return x > y;
    } else {
      if (xn != yn) return yn;
      if (!xn && x != y) return x < y;
    }
    return a < b;
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
  order.resize(k);
}

std::vector<OpArg> topk_run(const OpCall& c) {
  std::vector<TensorSpec> specs = topk_infer(c);
  const Tensor& self = c.tensor("self");
  int64_t dim = node_dim(c, c.int_arg("dim"), self.dim());
  int64_t k = c.int_arg("k");
  bool largest = c.bool_arg("largest");
  Tensor x = self.contiguous();
  Shape sizes = x.sizes();
  int64_t len = self.dim() == 0 ? 1 : sizes[dim];
  int64_t inner = self.dim() == 0 ? 1 : shape_numel(Shape(sizes.begin() + dim + 1, sizes.end()));
  int64_t outer = self.dim() == 0 ? 1 : shape_numel(Shape(sizes.begin(), sizes.begin() + dim));
  Tensor values = Tensor::empty(specs[0].sizes, self.dtype());
  Tensor indices = Tensor::empty(specs[1].sizes, DType::kInt64);
  size_t is = x.itemsize();
  const uint8_t* src = static_cast<const uint8_t*>(x.raw_data());
  uint8_t* vdst = static_cast<uint8_t*>(values.raw_data());
  int64_t* idst = indices.data<int64_t>();
  bool integral = dtype_is_integral(self.dtype());
  // Sorting is always by full order (sorted=False may return any order in PyTorch; sorted is a valid one).
  parallel_for(outer * inner, 16, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> order;
    for (int64_t r = begin; r < end; ++r) {
      int64_t o = r / inner, in = r % inner;
      int64_t base = o * len * inner + in;
      auto key = [&](int64_t i) -> double {
        int64_t flat = base + i * inner;
        return integral ? static_cast<double>(read_int(x, flat)) : element_as_double(x, flat);
      };
      if (integral && self.dtype() == DType::kInt64) {
        // Exact comparison for int64 (doubles lose precision past 2^53).
        const int64_t* v = x.data<int64_t>();
        order.resize(len);
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
          int64_t p = v[base + a * inner], q = v[base + b * inner];
          if (p != q) return largest ? p > q : p < q;
          return a < b;
        });
        order.resize(k);
      } else {
        topk_row(len, k, largest, key, order);
      }
      for (int64_t j = 0; j < k; ++j) {
        int64_t out_flat = o * k * inner + j * inner + in;
        std::memcpy(vdst + out_flat * is, src + (base + order[j] * inner) * is, is);
        idst[out_flat] = order[j];
      }
    }
  });
  return {OpArg::of(values), OpArg::of(indices)};
}

// ---------------------------------------------------------------- cumsum

DType cumsum_dtype(const OpCall& c) {
  DType in = c.spec("self").dtype;
  if (auto d = c.opt_dtype("dtype")) return *d;
  return in == DType::kBool || dtype_is_integral(in) ? DType::kInt64 : in;
}

std::vector<OpArg> cumsum_run(const OpCall& c) {
  const Tensor& self = c.tensor("self");
  int64_t dim = node_dim(c, c.int_arg("dim"), self.dim());
  DType od = cumsum_dtype(c);
  EMBER_NODE_CHECK(c, dtype_is_floating(od) || dtype_is_integral(od), ErrorCode::kDTypeMismatch,
                   "cumsum does not support output dtype ", dtype_name(od));
  Tensor x = self.contiguous();
  Shape sizes = x.sizes();
  int64_t len = self.dim() == 0 ? 1 : sizes[dim];
  int64_t inner = self.dim() == 0 ? 1 : shape_numel(Shape(sizes.begin() + dim + 1, sizes.end()));
  int64_t outer = self.dim() == 0 ? 1 : shape_numel(Shape(sizes.begin(), sizes.begin() + dim));
  Tensor out = Tensor::empty(sizes, od);
  bool float_out = dtype_is_floating(od);
  bool int_in = dtype_is_integral(self.dtype()) || self.dtype() == DType::kBool;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      double fsum = 0;
      int64_t isum = 0;
      for (int64_t i = 0; i < len; ++i) {
        int64_t flat = (o * len + i) * inner + in;
        if (float_out) {
          // Each input is first cast to the output dtype, then accumulated in double.
          double v = int_in ? static_cast<double>(read_int(x, flat)) : element_as_double(x, flat);
          if (od == DType::kFloat32) v = static_cast<float>(v);
          if (od == DType::kFloat16) v = half_to_float(float_to_half(static_cast<float>(v)));
          if (od == DType::kBFloat16) v = bf16_to_float(float_to_bf16(static_cast<float>(v)));
          fsum += v;
          set_element_from_double(out, flat, fsum);
        } else {
          int64_t v = int_in ? read_int(x, flat) : static_cast<int64_t>(element_as_double(x, flat));
          isum = static_cast<int64_t>(static_cast<uint64_t>(isum) + static_cast<uint64_t>(v));
          if (od == DType::kInt64) {
            out.data<int64_t>()[flat] = isum;
          } else {
            set_element_from_double(out, flat, static_cast<double>(isum));
          }
        }
      }
    }
  }
  return {OpArg::of(out)};
}

}  // namespace
}  // namespace ember::ops::nn

EMBER_REGISTER_OPS(nn_misc) {
  using namespace ember;
  using namespace ember::ops;
  using namespace ember::ops::nn;
  r.add("torch.ops.aten.embedding.default",
        "embedding(Tensor weight, Tensor indices, SymInt padding_idx=-1, bool scale_grad_by_freq=False, bool "
        "sparse=False) -> Tensor",
        embedding_infer, embedding_run);
  r.add(
      "torch.ops.aten.dropout.default", "dropout(Tensor input, float p, bool train) -> Tensor",
      [](const OpCall& c) { return std::vector<TensorSpec>{c.spec("input")}; },
      [](const OpCall& c) {
        check_dropout(c, c.bool_arg("train"));
        return std::vector<OpArg>{OpArg::of(c.tensor("input"))};  // PyTorch returns the input itself
      });
  r.add(
      "torch.ops.aten.native_dropout.default", "native_dropout(Tensor input, float p, bool? train) -> (Tensor, Tensor)",
      [](const OpCall& c) {
        TensorSpec in = c.spec("input");
        return std::vector<TensorSpec>{in, TensorSpec{DType::kBool, in.sizes}};
      },
      [](const OpCall& c) {
        std::optional<int64_t> train;
        if (c.has("train")) train = c.bool_arg("train");
        check_dropout(c, !train || *train);
        const Tensor& in = c.tensor("input");
        Tensor mask = Tensor::empty(in.sizes(), DType::kBool);
        if (mask.nbytes()) std::memset(mask.raw_data(), 1, mask.nbytes());
        return std::vector<OpArg>{OpArg::of(in.clone()), OpArg::of(mask)};
      });
  r.add("torch.ops.aten.topk.default",
        "topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True) -> (Tensor values, Tensor "
        "indices)",
        topk_infer, topk_run);
  r.add(
      "torch.ops.aten.cumsum.default", "cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor",
      [](const OpCall& c) {
        const TensorSpec& in = c.spec("self");
        node_dim(c, c.int_arg("dim"), static_cast<int64_t>(in.sizes.size()));
        return std::vector<TensorSpec>{TensorSpec{cumsum_dtype(c), in.sizes}};
      },
      cumsum_run);
}
