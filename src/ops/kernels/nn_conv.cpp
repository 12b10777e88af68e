// Convolutions: aten.conv1d, aten.conv2d, aten.convolution (not transposed).
//
// Strategy: per (batch, group), the input patches are unfolded into a column matrix
// (im2col, [C/g * kh * kw, Ho * Wo]) and multiplied by the group's weights
// ([Cout/g, C/g * kh * kw]) with the shared GEMM. 1x1 convolutions with stride 1 and no
// padding use the input directly as the column matrix. 1-D convolutions are 2-D ones with
// a height of 1.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/kernels/gemm.h"
#include "ops/kernels/nn_common.h"
#include "ops/kernels/parallel.h"

namespace ember::ops::nn {
namespace {

struct ConvParams {
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
  int spatial = 2;  // 1 or 2
};

ConvParams read_params(const OpCall& c, int spatial) {
  ConvParams p;
  p.spatial = spatial;
  p.stride = expand_param(c, "stride", c.int_list("stride"), spatial);
  p.padding = expand_param(c, "padding", c.int_list("padding"), spatial);
  p.dilation = expand_param(c, "dilation", c.int_list("dilation"), spatial);
  p.groups = c.int_arg("groups");
  for (int i = 0; i < spatial; ++i) {
    EMBER_NODE_CHECK(c, p.stride[i] > 0, ErrorCode::kInvalidArgument, "stride must be positive, found ", p.stride[i]);
    EMBER_NODE_CHECK(c, p.padding[i] >= 0, ErrorCode::kInvalidArgument, "padding must be non-negative, found ",
                     p.padding[i]);
    EMBER_NODE_CHECK(c, p.dilation[i] > 0, ErrorCode::kInvalidArgument, "dilation must be positive, found ",
                     p.dilation[i]);
  }
  EMBER_NODE_CHECK(c, p.groups > 0, ErrorCode::kInvalidArgument, "groups must be positive, found ", p.groups);
  return p;
}

// Checks the operand shapes (unknown sizes < 0 pass) and returns the output sizes.
Shape conv_output_sizes(const OpCall& c, const Shape& in, const Shape& w, const std::optional<TensorSpec>& bias,
                        const ConvParams& p) {
  size_t sp = static_cast<size_t>(p.spatial);
  check_rank(c, "input", in, {sp + 1, sp + 2});
  check_rank(c, "weight", w, {sp + 2});
  bool batched = in.size() == sp + 2;
  int64_t channels = in[batched ? 1 : 0];
  int64_t cout = w[0];
  if (cout >= 0)
    EMBER_NODE_CHECK(c, cout % p.groups == 0, ErrorCode::kShapeMismatch, "weight has ", cout,
                     " output channels, not divisible by groups=", p.groups);
  if (channels >= 0 && w[1] >= 0)
    EMBER_NODE_CHECK(c, channels == w[1] * p.groups, ErrorCode::kShapeMismatch, "input has ", channels,
                     " channels but weight ", shape_str(w), " with groups=", p.groups, " expects ", w[1] * p.groups);
  if (bias) {
    EMBER_NODE_CHECK(c, bias->sizes.size() == 1 && (bias->sizes[0] == cout || bias->sizes[0] < 0 || cout < 0),
                     ErrorCode::kShapeMismatch, "bias: expected shape [", cout, "], found ", shape_str(bias->sizes));
  }
  Shape out;
  if (batched) out.push_back(in[0]);
  out.push_back(cout);
  for (size_t i = 0; i < sp; ++i) {
    int64_t size = in[in.size() - sp + i], k = w[2 + i];
    if (size < 0 || k < 0) {
      out.push_back(-1);
      continue;
    }
    int64_t span = p.dilation[i] * (k - 1) + 1;
    int64_t padded = size + 2 * p.padding[i];
    EMBER_NODE_CHECK(c, padded >= span, ErrorCode::kShapeMismatch, "input spatial size ", size, " (padded ", padded,
                     ") is smaller than the dilated kernel size ", span, " (input ", shape_str(in), ", weight ",
                     shape_str(w), ")");
    out.push_back((padded - span) / p.stride[i] + 1);
  }
  return out;
}

// Unfolds one group of one image: x [C, H, W] -> col [C * kh * kw, Ho * Wo].
void im2col(const float* x, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t Ho, int64_t Wo,
            const int64_t* stride, const int64_t* pad, const int64_t* dil, float* col) {
  int64_t rows = C * kh * kw;
  parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      int64_t ch = row / (kh * kw), i = (row / kw) % kh, j = row % kw;
      const float* xc = x + ch * H * W;
      float* dst = col + row * Ho * Wo;
      int64_t xoff = j * dil[1] - pad[1];
      // Output columns whose input column lies inside [0, W).
      int64_t lo = 0, hi = Wo;
      while (lo < Wo && lo * stride[1] + xoff < 0) ++lo;
      while (hi > lo && (hi - 1) * stride[1] + xoff >= W) --hi;
      for (int64_t oy = 0; oy < Ho; ++oy) {
        float* d = dst + oy * Wo;
        int64_t iy = oy * stride[0] - pad[0] + i * dil[0];
        if (iy < 0 || iy >= H) {
          std::fill(d, d + Wo, 0.0f);
          continue;
        }
        const float* src = xc + iy * W;
        std::fill(d, d + lo, 0.0f);
        if (stride[1] == 1) {
          if (hi > lo) std::memcpy(d + lo, src + lo + xoff, (hi - lo) * sizeof(float));
        } else {
          for (int64_t ox = lo; ox < hi; ++ox) d[ox] = src[ox * stride[1] + xoff];
        }
        std::fill(d + hi, d + Wo, 0.0f);
      }
    }
  });
}

// input [N, C, H, W], weight [Cout, C/g, kh, kw] (float32 contiguous) -> [N, Cout, Ho, Wo].
Tensor conv2d_f32(const Tensor& input, const Tensor& weight, const float* bias, const int64_t* stride,
                  const int64_t* pad, const int64_t* dil, int64_t groups, int64_t Ho, int64_t Wo) {
  int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  int64_t Cout = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  int64_t Cg = C / groups, Coutg = Cout / groups, K = Cg * kh * kw, P = Ho * Wo;
  Tensor out = Tensor::empty({N, Cout, Ho, Wo}, DType::kFloat32);
  if (out.numel() == 0) return out;
  const float* x = input.data<float>();
  const float* w = weight.data<float>();
  float* y = out.data<float>();
  bool direct = kh == 1 && kw == 1 && stride[0] == 1 && stride[1] == 1 && pad[0] == 0 && pad[1] == 0;

  auto one = [&](int64_t item, std::vector<float>& col, bool parallel) {
    int64_t n = item / groups, g = item % groups;
    const float* xg = x + (n * C + g * Cg) * H * W;
    float* yg = y + (n * Cout + g * Coutg) * P;
    float beta = 0.0f;
    if (bias) {
      for (int64_t o = 0; o < Coutg; ++o) std::fill(yg + o * P, yg + (o + 1) * P, bias[g * Coutg + o]);
      beta = 1.0f;
    }
    MatView B{xg, P, 1};
    if (!direct) {
      col.resize(static_cast<size_t>(K * P));
      im2col(xg, Cg, H, W, kh, kw, Ho, Wo, stride, pad, dil, col.data());
      B = MatView{col.data(), P, 1};
    }
    gemm(Coutg, P, K, 1.0f, MatView{w + g * Coutg * K, K, 1}, B, beta, yg, P, parallel);
  };

  int64_t items = N * groups;
  int64_t work_per_item = Coutg * P * K;
  if (items >= 2 * num_threads() || (items > 1 && work_per_item < (int64_t{1} << 20))) {
    // Many independent (image, group) products: one per task, each GEMM serial.
    parallel_for(items, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> col;
      for (int64_t it = begin; it < end; ++it) one(it, col, false);
    });
  } else {
    std::vector<float> col;
    for (int64_t it = 0; it < items; ++it) one(it, col, true);
  }
  return out;
}

// Shared by conv1d/conv2d/convolution: validates, runs in float32, converts back.
Tensor run_conv(const OpCall& c, const ConvParams& p) {
  const Tensor& input = c.tensor("input");
  const Tensor& weight = c.tensor("weight");
  std::optional<Tensor> bias = c.opt_tensor("bias");
  check_float(c, "input", input.dtype());
  check_same_dtype(c, "weight", weight.dtype(), input.dtype());
  if (bias) check_same_dtype(c, "bias", bias->dtype(), input.dtype());
  std::optional<TensorSpec> bias_spec;
  if (bias) bias_spec = TensorSpec{bias->dtype(), bias->sizes()};
  Shape out_sizes = conv_output_sizes(c, input.sizes(), weight.sizes(), bias_spec, p);
  bool batched = input.dim() == p.spatial + 2;

  // Bring everything to NCHW float32.
  Tensor x = to_f32(input), w = to_f32(weight);
  Shape xs = x.sizes(), ws = w.sizes();
  if (!batched) xs.insert(xs.begin(), 1);
  int64_t stride[2] = {1, 1}, pad[2] = {0, 0}, dil[2] = {1, 1};
  if (p.spatial == 1) {
    xs.insert(xs.end() - 1, 1);
    ws.insert(ws.end() - 1, 1);
    stride[1] = p.stride[0], pad[1] = p.padding[0], dil[1] = p.dilation[0];
  } else {
    for (int i = 0; i < 2; ++i) stride[i] = p.stride[i], pad[i] = p.padding[i], dil[i] = p.dilation[i];
  }
  x = x.view(xs);
  w = w.view(ws);
  Tensor b;
  if (bias) b = to_f32(*bias);
  int64_t Ho = p.spatial == 1 ? 1 : out_sizes[out_sizes.size() - 2];
  int64_t Wo = out_sizes.back();
  Tensor y = conv2d_f32(x, w, bias ? b.data<float>() : nullptr, stride, pad, dil, p.groups, Ho, Wo);
  return from_f32(y.view(out_sizes), input.dtype());
}

std::vector<TensorSpec> infer_conv(const OpCall& c, const ConvParams& p) {
  const TensorSpec& in = c.spec("input");
  const TensorSpec& w = c.spec("weight");
  check_float(c, "input", in.dtype);
  check_same_dtype(c, "weight", w.dtype, in.dtype);
  return {TensorSpec{in.dtype, conv_output_sizes(c, in.sizes, w.sizes, c.opt_spec("bias"), p)}};
}

// aten.convolution: 1-D or 2-D, not transposed.
ConvParams convolution_params(const OpCall& c) {
  EMBER_NODE_CHECK(c, !c.bool_arg("transposed"), ErrorCode::kUnsupported,
                   "transposed convolution is not supported by the reference kernels");
  size_t rank = c.spec("weight").sizes.size();
  EMBER_NODE_CHECK(c, rank == 3 || rank == 4, ErrorCode::kUnsupported, "only 1-D and 2-D convolutions are supported; ",
                   "weight has shape ", shape_str(c.spec("weight").sizes));
  return read_params(c, static_cast<int>(rank) - 2);
}

}  // namespace
}  // namespace ember::ops::nn

EMBER_REGISTER_OPS(nn_conv) {
  using namespace ember::ops;
  using namespace ember::ops::nn;
  r.add(
      "torch.ops.aten.conv2d.default",
      "conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1, SymInt[2] padding=0, SymInt[2] "
      "dilation=1, SymInt groups=1) -> Tensor",
      [](const OpCall& c) { return infer_conv(c, read_params(c, 2)); },
      [](const OpCall& c) { return std::vector<OpArg>{OpArg::of(run_conv(c, read_params(c, 2)))}; });
  r.add(
      "torch.ops.aten.conv1d.default",
      "conv1d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[1] stride=1, SymInt[1] padding=0, SymInt[1] "
      "dilation=1, SymInt groups=1) -> Tensor",
      [](const OpCall& c) { return infer_conv(c, read_params(c, 1)); },
      [](const OpCall& c) { return std::vector<OpArg>{OpArg::of(run_conv(c, read_params(c, 1)))}; });
  r.add(
      "torch.ops.aten.convolution.default",
      "convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation, "
      "bool transposed, SymInt[] output_padding, SymInt groups) -> Tensor",
      [](const OpCall& c) { return infer_conv(c, convolution_params(c)); },
      [](const OpCall& c) { return std::vector<OpArg>{OpArg::of(run_conv(c, convolution_params(c)))}; });
}
