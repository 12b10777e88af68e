// aten.softmax.int, _softmax, log_softmax.int, _log_softmax: max-subtracted (stable) in float32.
#include <cmath>
#include <limits>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/parallel.h"

namespace ember::ops::nn {
namespace {

// Output dtype: softmax.int's dtype argument, or float32 for _softmax(half_to_float=True).
DType softmax_out_dtype(const OpCall& c, bool underscore) {
  DType in = c.spec("self").dtype;
  if (underscore) {
    check_float(c, "self", in);
    if (c.bool_arg("half_to_float")) {
      EMBER_NODE_CHECK(c, in == DType::kFloat16 || in == DType::kBFloat16, ErrorCode::kDTypeMismatch,
                       "half_to_float=True needs a float16 or bfloat16 input, found ", dtype_name(in));
      return DType::kFloat32;
    }
    return in;
  }
  std::optional<DType> d = c.opt_dtype("dtype");
  DType out = d ? *d : in;
  check_float(c, d ? "dtype" : "self", out);
  return out;
}

std::vector<TensorSpec> softmax_infer(const OpCall& c, bool underscore) {
  const TensorSpec& in = c.spec("self");
  node_dim(c, c.int_arg("dim"), static_cast<int64_t>(in.sizes.size()));
  return {TensorSpec{softmax_out_dtype(c, underscore), in.sizes}};
}

std::vector<OpArg> softmax_run(const OpCall& c, bool underscore, bool log) {
  DType out_dtype = softmax_out_dtype(c, underscore);
  const Tensor& self = c.tensor("self");
  int64_t dim = node_dim(c, c.int_arg("dim"), self.dim());
  Tensor x = to_f32(self);
  Shape sizes = x.sizes();
  int64_t len = self.dim() == 0 ? 1 : sizes[dim];
  int64_t inner = self.dim() == 0 ? 1 : shape_numel(Shape(sizes.begin() + dim + 1, sizes.end()));
  int64_t outer = len == 0 || inner == 0 ? 0 : x.numel() / (len * inner);
  Tensor y = Tensor::empty(sizes, DType::kFloat32);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(outer * inner, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      int64_t o = r / inner, in = r % inner;
      const float* src = xp + o * len * inner + in;
      float* dst = yp + o * len * inner + in;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < len; ++i) mx = std::fmax(mx, src[i * inner]);
      bool nan = false;
      for (int64_t i = 0; i < len; ++i) nan |= std::isnan(src[i * inner]);
      if (nan) mx = std::numeric_limits<float>::quiet_NaN();
      // A row of -inf: subtracting -inf would give NaN as PyTorch also does; keep that.
      double sum = 0;
      for (int64_t i = 0; i < len; ++i) sum += std::exp(static_cast<double>(src[i * inner]) - mx);
      if (log) {
        double lse = std::log(sum);
        for (int64_t i = 0; i < len; ++i) dst[i * inner] = static_cast<float>(src[i * inner] - mx - lse);
      } else {
        for (int64_t i = 0; i < len; ++i)
          dst[i * inner] = static_cast<float>(std::exp(static_cast<double>(src[i * inner]) - mx) / sum);
      }
    }
  });
  return {OpArg::of(from_f32(y, out_dtype))};
}

}  // namespace
}  // namespace ember::ops::nn

EMBER_REGISTER_OPS(nn_softmax) {
  using namespace ember::ops;
  using namespace ember::ops::nn;
  r.add(
      "torch.ops.aten.softmax.int", "softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor",
      [](const OpCall& c) { return softmax_infer(c, false); },
      [](const OpCall& c) { return softmax_run(c, false, false); });
  r.add(
      "torch.ops.aten._softmax.default", "_softmax(Tensor self, int dim, bool half_to_float) -> Tensor",
      [](const OpCall& c) { return softmax_infer(c, true); },
      [](const OpCall& c) { return softmax_run(c, true, false); });
  r.add(
      "torch.ops.aten.log_softmax.int", "log_softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor",
      [](const OpCall& c) { return softmax_infer(c, false); },
      [](const OpCall& c) { return softmax_run(c, false, true); });
  r.add(
      "torch.ops.aten._log_softmax.default", "_log_softmax(Tensor self, int dim, bool half_to_float) -> Tensor",
      [](const OpCall& c) { return softmax_infer(c, true); },
      [](const OpCall& c) { return softmax_run(c, true, true); });
}
