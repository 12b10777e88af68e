// Normalizations: aten.batch_norm (eval or batch statistics), _native_batch_norm_legit_no_training,
// layer_norm, native_layer_norm. Statistics are accumulated in double.
#include <cmath>
#include <vector>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/parallel.h"

namespace ember::ops::nn {
namespace {

void check_channel_param(const OpCall& c, const char* name, int64_t channels, bool required) {
  std::optional<TensorSpec> s = c.opt_spec(name);
  if (!s) {
    EMBER_NODE_CHECK(c, !required, ErrorCode::kInvalidArgument, "argument '", name, "' is required");
    return;
  }
  check_float(c, name, s->dtype);
  EMBER_NODE_CHECK(c, s->sizes.size() == 1 && (channels < 0 || s->sizes[0] < 0 || s->sizes[0] == channels),
                   ErrorCode::kShapeMismatch, "argument '", name, "': expected shape [", channels, "], found ",
                   shape_str(s->sizes));
}

TensorSpec batch_norm_spec(const OpCall& c, bool stats_required) {
  const TensorSpec& in = c.spec("input");
  check_float(c, "input", in.dtype);
  EMBER_NODE_CHECK(c, in.sizes.size() >= 2, ErrorCode::kShapeMismatch,
                   "input must have at least 2 dimensions [N, C, ...], found shape ", shape_str(in.sizes));
  int64_t channels = in.sizes[1];
  check_channel_param(c, "weight", channels, false);
  check_channel_param(c, "bias", channels, false);
  check_channel_param(c, "running_mean", channels, stats_required);
  check_channel_param(c, "running_var", channels, stats_required);
  return in;
}

// Per-channel scale/shift: y = x * scale[c] + shift[c].
Tensor batch_norm_apply(const OpCall& c, bool use_batch_stats, double eps) {
  const Tensor& input = c.tensor("input");
  Tensor x = to_f32(input);
  int64_t N = x.size(0), C = x.size(1), inner = C == 0 || N == 0 ? 0 : x.numel() / (N * C);
  const float* xp = x.data<float>();
  std::vector<double> mean(C, 0.0), var(C, 1.0);
  if (use_batch_stats) {
    EMBER_NODE_CHECK(c, N * inner > 0 || C == 0, ErrorCode::kInvalidArgument,
                     "batch statistics need at least one value per channel, found input ", input.to_string());
    for (int64_t ch = 0; ch < C; ++ch) {
      double s = 0, s2 = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < inner; ++i) s += xp[(n * C + ch) * inner + i];
      double m = s / static_cast<double>(N * inner);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < inner; ++i) {
          double d = xp[(n * C + ch) * inner + i] - m;
          s2 += d * d;
        }
      mean[ch] = m;
      var[ch] = s2 / static_cast<double>(N * inner);
    }
  } else {
    Tensor rm = to_f32(c.tensor("running_mean")), rv = to_f32(c.tensor("running_var"));
    for (int64_t ch = 0; ch < C; ++ch) mean[ch] = rm.data<float>()[ch], var[ch] = rv.data<float>()[ch];
  }
  std::vector<float> scale(C), shift(C);
  std::optional<Tensor> w = c.opt_tensor("weight"), b = c.opt_tensor("bias");
  Tensor wf = w ? to_f32(*w) : Tensor(), bf = b ? to_f32(*b) : Tensor();
  for (int64_t ch = 0; ch < C; ++ch) {
    double inv = 1.0 / std::sqrt(var[ch] + eps);
    double g = w ? wf.data<float>()[ch] : 1.0, beta = b ? bf.data<float>()[ch] : 0.0;
    scale[ch] = static_cast<float>(inv * g);
    shift[ch] = static_cast<float>(beta - mean[ch] * inv * g);
  }
  Tensor y = Tensor::empty(x.sizes(), DType::kFloat32);
  float* yp = y.data<float>();
  parallel_for(N * C, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      float s = scale[nc % C], t = shift[nc % C];
      const float* src = xp + nc * inner;
      float* dst = yp + nc * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] = src[i] * s + t;
    }
  });
  return from_f32(y, input.dtype());
}

DType stat_dtype(DType input) { return input == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32; }

// ---------------------------------------------------------------- layer norm

// Returns the number of leading (batch) dims after checking normalized_shape against input.
size_t layer_norm_axis(const OpCall& c) {
  const TensorSpec& in = c.spec("input");
  check_float(c, "input", in.dtype);
  std::vector<int64_t> ns = c.int_list("normalized_shape");
  EMBER_NODE_CHECK(c, ns.size() <= in.sizes.size(), ErrorCode::kShapeMismatch, "normalized_shape ", shape_str(ns),
                   " has more dimensions than input ", shape_str(in.sizes));
  size_t axis = in.sizes.size() - ns.size();
  for (size_t i = 0; i < ns.size(); ++i) {
    int64_t s = in.sizes[axis + i];
    EMBER_NODE_CHECK(c, s < 0 || s == ns[i], ErrorCode::kShapeMismatch, "input shape ", shape_str(in.sizes),
                     " does not end with normalized_shape ", shape_str(ns));
  }
  for (const char* name : {"weight", "bias"}) {
    if (auto s = c.opt_spec(name)) {
      check_float(c, name, s->dtype);
      EMBER_NODE_CHECK(c, s->sizes == Shape(ns.begin(), ns.end()), ErrorCode::kShapeMismatch, "argument '", name,
                       "': expected shape ", shape_str(ns), ", found ", shape_str(s->sizes));
    }
  }
  return axis;
}

// mean/rstd dtype of native_layer_norm: float32 when a reduced-precision input has float32
// parameters, else the input dtype.
DType layer_norm_stat_dtype(const OpCall& c) {
  DType in = c.spec("input").dtype;
  auto w = c.opt_spec("weight");
  if ((in == DType::kFloat16 || in == DType::kBFloat16) && w && w->dtype == DType::kFloat32) return DType::kFloat32;
  return in;
}

std::vector<TensorSpec> layer_norm_specs(const OpCall& c) {
  size_t axis = layer_norm_axis(c);
  const TensorSpec& in = c.spec("input");
  Shape stat(in.sizes.begin(), in.sizes.begin() + axis);
  stat.resize(in.sizes.size(), 1);
  DType sd = layer_norm_stat_dtype(c);
  return {in, TensorSpec{sd, stat}, TensorSpec{sd, stat}};
}

std::vector<OpArg> layer_norm_run(const OpCall& c, bool three) {
  std::vector<TensorSpec> specs = layer_norm_specs(c);
  size_t axis = layer_norm_axis(c);
  const Tensor& input = c.tensor("input");
  double eps = c.float_arg("eps");
  Tensor x = to_f32(input);
  int64_t inner = shape_numel(Shape(x.sizes().begin() + axis, x.sizes().end()));
  int64_t outer = shape_numel(Shape(x.sizes().begin(), x.sizes().begin() + axis));
  std::optional<Tensor> w = c.opt_tensor("weight"), b = c.opt_tensor("bias");
  Tensor wf = w ? to_f32(*w) : Tensor(), bf = b ? to_f32(*b) : Tensor();
  const float* wp = w ? wf.data<float>() : nullptr;
  const float* bp = b ? bf.data<float>() : nullptr;
  Tensor y = Tensor::empty(x.sizes(), DType::kFloat32);
  std::vector<float> mean(outer), rstd(outer);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const float* row = xp + o * inner;
      double s = 0, s2 = 0;
      for (int64_t i = 0; i < inner; ++i) s += row[i];
      double m = inner ? s / static_cast<double>(inner) : 0.0;
      for (int64_t i = 0; i < inner; ++i) s2 += (row[i] - m) * (row[i] - m);
      double var = inner ? s2 / static_cast<double>(inner) : 0.0;
      double r = 1.0 / std::sqrt(var + eps);
      mean[o] = static_cast<float>(m);
      rstd[o] = static_cast<float>(r);
      float* dst = yp + o * inner;
      for (int64_t i = 0; i < inner; ++i) {
        float v = static_cast<float>((row[i] - m) * r);
        if (wp) v *= wp[i];
        if (bp) v += bp[i];
        dst[i] = v;
      }
    }
  });
  std::vector<OpArg> out{OpArg::of(from_f32(y, input.dtype()))};
  if (three) {
    out.push_back(OpArg::of(make_from_f32(mean.data(), specs[1].sizes, specs[1].dtype)));
    out.push_back(OpArg::of(make_from_f32(rstd.data(), specs[2].sizes, specs[2].dtype)));
  }
  return out;
}

}  // namespace
}  // namespace ember::ops::nn

EMBER_REGISTER_OPS(nn_norm) {
  using namespace ember;
  using namespace ember::ops;
  using namespace ember::ops::nn;
  r.add(
      "torch.ops.aten.batch_norm.default",
      "batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, bool "
      "training, float momentum, float eps, bool cudnn_enabled) -> Tensor",
      [](const OpCall& c) { return std::vector<TensorSpec>{batch_norm_spec(c, !c.bool_arg("training"))}; },
      [](const OpCall& c) {
        bool training = c.bool_arg("training");
        batch_norm_spec(c, !training);
        // In training mode PyTorch normalizes with the batch statistics (the running-stat
        // update is a side effect that inference graphs do not observe).
        return std::vector<OpArg>{OpArg::of(batch_norm_apply(c, training, c.float_arg("eps")))};
      });
  r.add(
      "torch.ops.aten._native_batch_norm_legit_no_training.default",
      "_native_batch_norm_legit_no_training(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor "
      "running_var, float momentum, float eps) -> (Tensor, Tensor, Tensor)",
      [](const OpCall& c) {
        TensorSpec in = batch_norm_spec(c, true);
        TensorSpec empty{stat_dtype(in.dtype), {0}};
        return std::vector<TensorSpec>{in, empty, empty};
      },
      [](const OpCall& c) {
        TensorSpec in = batch_norm_spec(c, true);
        DType sd = stat_dtype(in.dtype);
        return std::vector<OpArg>{OpArg::of(batch_norm_apply(c, false, c.float_arg("eps"))),
                                  OpArg::of(Tensor::empty({0}, sd)), OpArg::of(Tensor::empty({0}, sd))};
      });
  r.add(
      "torch.ops.aten.layer_norm.default",
      "layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, "
      "bool cudnn_enable=True) -> Tensor",
      [](const OpCall& c) { return std::vector<TensorSpec>{layer_norm_specs(c)[0]}; },
      [](const OpCall& c) { return layer_norm_run(c, false); });
  r.add("torch.ops.aten.native_layer_norm.default",
        "native_layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias, float eps) -> "
        "(Tensor, Tensor, Tensor)",
        layer_norm_specs, [](const OpCall& c) { return layer_norm_run(c, true); });
}
