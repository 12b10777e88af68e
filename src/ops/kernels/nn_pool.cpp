// 2-D pooling: aten.max_pool2d, max_pool2d_with_indices, avg_pool2d, adaptive_avg_pool2d,
// _adaptive_avg_pool2d. Inputs are [N, C, H, W] or [C, H, W]; windows follow PyTorch's CPU
// kernels (output size rule with ceil_mode, padding treated as -inf for max and per
// count_include_pad for average).
#include <cmath>
#include <limits>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/parallel.h"

namespace ember::ops::nn {
namespace {

struct PoolParams {
  int64_t k[2], s[2], p[2], d[2] = {1, 1};
  bool ceil_mode = false;
};

// PyTorch's pooling_output_shape.
int64_t pool_out(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil_mode) {
  int64_t num = in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

PoolParams read_pool(const OpCall& c, bool has_dilation) {
  PoolParams pp;
  std::vector<int64_t> k = expand_param(c, "kernel_size", c.int_list("kernel_size"), 2);
  std::vector<int64_t> s = c.int_list("stride");
  s = s.empty() ? k : expand_param(c, "stride", s, 2);
  std::vector<int64_t> p = expand_param(c, "padding", c.int_list("padding"), 2);
  std::vector<int64_t> d =
      has_dilation ? expand_param(c, "dilation", c.int_list("dilation"), 2) : std::vector<int64_t>{1, 1};
  for (int i = 0; i < 2; ++i) {
    pp.k[i] = k[i], pp.s[i] = s[i], pp.p[i] = p[i], pp.d[i] = d[i];
    EMBER_NODE_CHECK(c, k[i] > 0 && s[i] > 0 && d[i] > 0, ErrorCode::kInvalidArgument,
                     "kernel_size, stride and dilation must be positive, found kernel_size ", shape_str(k), ", stride ",
                     shape_str(s), ", dilation ", shape_str(d));
    EMBER_NODE_CHECK(c, p[i] >= 0 && p[i] <= ((k[i] - 1) * d[i] + 1) / 2, ErrorCode::kInvalidArgument, "padding ",
                     shape_str(p), " must be non-negative and at most half the effective kernel size");
  }
  pp.ceil_mode = c.bool_arg("ceil_mode");
  return pp;
}

Shape pool_sizes(const OpCall& c, const Shape& in, const PoolParams& pp) {
  check_rank(c, "self", in, {3, 4});
  Shape out = in;
  for (int i = 0; i < 2; ++i) {
    int64_t size = in[in.size() - 2 + i];
    if (size < 0) continue;
    int64_t o = pool_out(size, pp.k[i], pp.p[i], pp.s[i], pp.d[i], pp.ceil_mode);
    EMBER_NODE_CHECK(c, o >= 1, ErrorCode::kShapeMismatch, "input ", shape_str(in),
                     " is too small for the pooling window (output size would be ", o, ")");
    out[out.size() - 2 + i] = o;
  }
  return out;
}

// Runs fn(plane_in, plane_out_index) for each of the N*C planes in parallel.
template <typename F>
void for_planes(int64_t planes, int64_t work, F&& fn) {
  parallel_for(planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(work, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) fn(i);
  });
}

std::vector<OpArg> max_pool_run(const OpCall& c, bool with_indices) {
  PoolParams pp = read_pool(c, true);
  const Tensor& self = c.tensor("self");
  check_float(c, "self", self.dtype());
  Shape out_sizes = pool_sizes(c, self.sizes(), pp);
  Tensor x = to_f32(self);
  int64_t H = x.size(-2), W = x.size(-1), Ho = out_sizes[out_sizes.size() - 2], Wo = out_sizes.back();
  int64_t planes = H * W == 0 ? shape_numel(Shape(out_sizes.begin(), out_sizes.end() - 2)) : x.numel() / (H * W);
  Tensor y = Tensor::empty(out_sizes, DType::kFloat32);
  Tensor idx = Tensor::empty(out_sizes, DType::kInt64);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  int64_t* ip = idx.data<int64_t>();
  for_planes(planes, Ho * Wo * pp.k[0] * pp.k[1], [&](int64_t pl) {
    const float* src = xp + pl * H * W;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      int64_t hs = oh * pp.s[0] - pp.p[0];
      for (int64_t ow = 0; ow < Wo; ++ow) {
        int64_t ws = ow * pp.s[1] - pp.p[1];
        // First in-bounds tap, as PyTorch's kernel initializes its index.
        int64_t h0 = hs, w0 = ws;
        while (h0 < 0) h0 += pp.d[0];
        while (w0 < 0) w0 += pp.d[1];
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_i = h0 * W + w0;
        for (int64_t kh = 0; kh < pp.k[0]; ++kh) {
          int64_t ih = hs + kh * pp.d[0];
          if (ih < 0 || ih >= H) continue;
          for (int64_t kw = 0; kw < pp.k[1]; ++kw) {
            int64_t iw = ws + kw * pp.d[1];
            if (iw < 0 || iw >= W) continue;
            float v = src[ih * W + iw];
            if (v > best || std::isnan(v)) {
              best = v;
              best_i = ih * W + iw;
              if (std::isnan(v)) goto done;  // NaN propagates (first NaN wins)
            }
          }
        }
      done:
        yp[(pl * Ho + oh) * Wo + ow] = best;
        ip[(pl * Ho + oh) * Wo + ow] = best_i;
      }
    }
  });
  std::vector<OpArg> out{OpArg::of(from_f32(y, self.dtype()))};
  if (with_indices) out.push_back(OpArg::of(idx));
  return out;
}

std::vector<OpArg> avg_pool_run(const OpCall& c) {
  PoolParams pp = read_pool(c, false);
  const Tensor& self = c.tensor("self");
  check_float(c, "self", self.dtype());
  Shape out_sizes = pool_sizes(c, self.sizes(), pp);
  bool include_pad = c.bool_arg("count_include_pad");
  std::optional<int64_t> divisor = c.opt_int("divisor_override");
  EMBER_NODE_CHECK(c, !divisor || *divisor != 0, ErrorCode::kInvalidArgument, "divisor_override must be non-zero");
  Tensor x = to_f32(self);
  int64_t H = x.size(-2), W = x.size(-1), Ho = out_sizes[out_sizes.size() - 2], Wo = out_sizes.back();
  int64_t planes = shape_numel(Shape(out_sizes.begin(), out_sizes.end() - 2));
  Tensor y = Tensor::empty(out_sizes, DType::kFloat32);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for_planes(planes, Ho * Wo * pp.k[0] * pp.k[1], [&](int64_t pl) {
    const float* src = xp + pl * H * W;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      for (int64_t ow = 0; ow < Wo; ++ow) {
        int64_t h0 = oh * pp.s[0] - pp.p[0], w0 = ow * pp.s[1] - pp.p[1];
        int64_t h1 = std::min(h0 + pp.k[0], H + pp.p[0]), w1 = std::min(w0 + pp.k[1], W + pp.p[1]);
        int64_t pool_size = (h1 - h0) * (w1 - w0);
        h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
        h1 = std::min(h1, H), w1 = std::min(w1, W);
        float& dst = yp[(pl * Ho + oh) * Wo + ow];
        if (h0 >= h1 || w0 >= w1) {
          dst = 0.0f;
          continue;
        }
        double sum = 0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) sum += src[ih * W + iw];
        int64_t div = divisor ? *divisor : include_pad ? pool_size : (h1 - h0) * (w1 - w0);
        dst = static_cast<float>(sum / static_cast<double>(div));
      }
    }
  });
  return {OpArg::of(from_f32(y, self.dtype()))};
}

Shape adaptive_sizes(const OpCall& c, const Shape& in) {
  check_rank(c, "self", in, {3, 4});
  std::vector<int64_t> os = expand_param(c, "output_size", c.int_list("output_size"), 2);
  for (int i = 0; i < 2; ++i) {
    EMBER_NODE_CHECK(c, os[i] >= 0, ErrorCode::kInvalidArgument, "output_size must be non-negative, found ",
                     shape_str(os));
    int64_t s = in[in.size() - 2 + i];
    EMBER_NODE_CHECK(c, s != 0, ErrorCode::kShapeMismatch, "expected non-zero spatial sizes, found input ",
                     shape_str(in));
  }
  Shape out = in;
  out[out.size() - 2] = os[0];
  out[out.size() - 1] = os[1];
  return out;
}

std::vector<OpArg> adaptive_avg_run(const OpCall& c) {
  const Tensor& self = c.tensor("self");
  check_float(c, "self", self.dtype());
  Shape out_sizes = adaptive_sizes(c, self.sizes());
  Tensor x = to_f32(self);
  int64_t H = x.size(-2), W = x.size(-1), Ho = out_sizes[out_sizes.size() - 2], Wo = out_sizes.back();
  int64_t planes = shape_numel(Shape(out_sizes.begin(), out_sizes.end() - 2));
  Tensor y = Tensor::empty(out_sizes, DType::kFloat32);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for_planes(planes, H * W, [&](int64_t pl) {
    const float* src = xp + pl * H * W;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      int64_t h0 = oh * H / Ho, h1 = ((oh + 1) * H + Ho - 1) / Ho;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        int64_t w0 = ow * W / Wo, w1 = ((ow + 1) * W + Wo - 1) / Wo;
        double sum = 0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) sum += src[ih * W + iw];
        yp[(pl * Ho + oh) * Wo + ow] = static_cast<float>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
    }
  });
  return {OpArg::of(from_f32(y, self.dtype()))};
}

}  // namespace
}  // namespace ember::ops::nn

EMBER_REGISTER_OPS(nn_pool) {
  using namespace ember;
  using namespace ember::ops;
  using namespace ember::ops::nn;
  auto max_infer = [](const OpCall& c, bool idx) {
    const TensorSpec& in = c.spec("self");
    check_float(c, "self", in.dtype);
    Shape s = pool_sizes(c, in.sizes, read_pool(c, true));
    std::vector<TensorSpec> out{TensorSpec{in.dtype, s}};
    if (idx) out.push_back(TensorSpec{DType::kInt64, s});
    return out;
  };
  r.add(
      "torch.ops.aten.max_pool2d.default",
      "max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool "
      "ceil_mode=False) -> Tensor",
      [max_infer](const OpCall& c) { return max_infer(c, false); },
      [](const OpCall& c) { return max_pool_run(c, false); });
  r.add(
      "torch.ops.aten.max_pool2d_with_indices.default",
      "max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] "
      "dilation=1, bool ceil_mode=False) -> (Tensor, Tensor)",
      [max_infer](const OpCall& c) { return max_infer(c, true); },
      [](const OpCall& c) { return max_pool_run(c, true); });
  r.add(
      "torch.ops.aten.avg_pool2d.default",
      "avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, bool ceil_mode=False, bool "
      "count_include_pad=True, int? divisor_override=None) -> Tensor",
      [](const OpCall& c) {
        const TensorSpec& in = c.spec("self");
        check_float(c, "self", in.dtype);
        return std::vector<TensorSpec>{TensorSpec{in.dtype, pool_sizes(c, in.sizes, read_pool(c, false))}};
      },
      avg_pool_run);
  auto adaptive_infer = [](const OpCall& c) {
    const TensorSpec& in = c.spec("self");
    check_float(c, "self", in.dtype);
    return std::vector<TensorSpec>{TensorSpec{in.dtype, adaptive_sizes(c, in.sizes)}};
  };
  r.add("torch.ops.aten.adaptive_avg_pool2d.default",
        "adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor", adaptive_infer, adaptive_avg_run);
  r.add("torch.ops.aten._adaptive_avg_pool2d.default",
        "_adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor", adaptive_infer, adaptive_avg_run);
}
