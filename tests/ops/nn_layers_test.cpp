// Normalization, softmax and pooling ops against hand-checked values and naive loops.
#include <gtest/gtest.h>

#include <cmath>

#include "nn_test_util.h"

namespace ember::ops::test {
namespace {

TEST(BatchNorm, EvalHandChecked) {
  // [N=1, C=2, 2]: channel 0 mean 1 var 4, channel 1 mean -1 var 0.25 (eps 0).
  Tensor x = make({1, 2, 2}, {3, 5, -1, 0});
  Args args{{"input", OpArg::of(x)},
            {"weight", OpArg::of(make({2}, {2, 1}))},
            {"bias", OpArg::of(make({2}, {0, 10}))},
            {"running_mean", OpArg::of(make({2}, {1, -1}))},
            {"running_var", OpArg::of(make({2}, {4, 0.25}))},
            {"training", OpArg::of_bool(false)},
            {"momentum", OpArg::of_float(0.1)},
            {"eps", OpArg::of_float(0.0)},
            {"cudnn_enabled", OpArg::of_bool(true)}};
  expect_close(call1("torch.ops.aten.batch_norm.default", args), {2, 4, 10, 12});
  args.erase("training");
  args.erase("cudnn_enabled");
  std::vector<OpArg> out = call("torch.ops.aten._native_batch_norm_legit_no_training.default", args);
  ASSERT_EQ(out.size(), 3u);
  expect_close(out[0].tensor, {2, 4, 10, 12});
  EXPECT_EQ(out[1].tensor.sizes(), (Shape{0}));
  EXPECT_EQ(out[2].tensor.sizes(), (Shape{0}));
}

TEST(BatchNorm, TrainingUsesBatchStatistics) {
  Tensor x = make({2, 1, 1}, {1, 3});  // mean 2, biased var 1
  Tensor y = call1("torch.ops.aten.batch_norm.default", {{"input", OpArg::of(x)},
                                                         {"weight", OpArg::none()},
                                                         {"bias", OpArg::none()},
                                                         {"running_mean", OpArg::none()},
                                                         {"running_var", OpArg::none()},
                                                         {"training", OpArg::of_bool(true)},
                                                         {"momentum", OpArg::of_float(0.1)},
                                                         {"eps", OpArg::of_float(0.0)},
                                                         {"cudnn_enabled", OpArg::of_bool(true)}});
  expect_close(y, {-1, 1});
}

TEST(LayerNorm, MatchesNaiveAndReturnsStats) {
  Tensor x = rand({2, 3, 4}, 5), w = rand({4}, 6), b = rand({4}, 7);
  std::vector<double> xv = values(x), wv = values(w), bv = values(b), want, means, rstds;
  for (int r = 0; r < 6; ++r) {
    double m = 0, v = 0;
    for (int i = 0; i < 4; ++i) m += xv[r * 4 + i] / 4;
    for (int i = 0; i < 4; ++i) v += (xv[r * 4 + i] - m) * (xv[r * 4 + i] - m) / 4;
    double rs = 1 / std::sqrt(v + 1e-5);
    for (int i = 0; i < 4; ++i) want.push_back((xv[r * 4 + i] - m) * rs * wv[i] + bv[i]);
    means.push_back(m);
    rstds.push_back(rs);
  }
  Args args{{"input", OpArg::of(x)},
            {"normalized_shape", OpArg::of_ints({4})},
            {"weight", OpArg::of(w)},
            {"bias", OpArg::of(b)}};
  expect_close(call1("torch.ops.aten.layer_norm.default", args), want);
  args["eps"] = OpArg::of_float(1e-5);
  std::vector<OpArg> out = call("torch.ops.aten.native_layer_norm.default", args);
  expect_close(out[0].tensor, want);
  EXPECT_EQ(out[1].tensor.sizes(), (Shape{2, 3, 1}));
  expect_close(out[1].tensor, means);
  expect_close(out[2].tensor, rstds, 1e-3);
  // Normalizing over two dims; non-contiguous input.
  Tensor nc = noncontig(rand({2, 3, 4}, 9));
  Tensor y = call1("torch.ops.aten.layer_norm.default",
                   {{"input", OpArg::of(nc)}, {"normalized_shape", OpArg::of_ints({3, 4})}});
  std::vector<double> yv = values(y);
  double s = 0;
  for (int i = 0; i < 12; ++i) s += yv[i];
  EXPECT_NEAR(s, 0.0, 1e-4);
  EXPECT_EQ(
      error_of([&] {
        call("torch.ops.aten.layer_norm.default", {{"input", OpArg::of(x)}, {"normalized_shape", OpArg::of_ints({3})}});
      }),
      ErrorCode::kShapeMismatch);
}

TEST(Softmax, StableNegativeDimAndDtypes) {
  Tensor x = make({2, 2}, {1000, 1001, -5, -5});
  double e = std::exp(-1.0);
  Tensor y = call1("torch.ops.aten.softmax.int", {{"self", OpArg::of(x)}, {"dim", OpArg::of_int(-1)}});
  expect_close(y, {e / (1 + e), 1 / (1 + e), 0.5, 0.5});
  Tensor ls = call1("torch.ops.aten._log_softmax.default",
                    {{"self", OpArg::of(x)}, {"dim", OpArg::of_int(1)}, {"half_to_float", OpArg::of_bool(false)}});
  expect_close(ls, {-1 - std::log(1 + e), -std::log(1 + e), std::log(0.5), std::log(0.5)});
  // dim 0 on a non-contiguous input.
  Tensor nc = noncontig(make({2, 2}, {0, 1, 2, 3}));  // logical [[0,1],[2,3]]
  Tensor s0 = call1("torch.ops.aten._softmax.default",
                    {{"self", OpArg::of(nc)}, {"dim", OpArg::of_int(0)}, {"half_to_float", OpArg::of_bool(false)}});
  double a = 1 / (1 + std::exp(2.0));
  expect_close(s0, {a, a, 1 - a, 1 - a});
  // half_to_float: float16 in, float32 out; softmax.int with a dtype.
  Tensor xh = make({2}, {0, std::log(3.0)}, DType::kFloat16);
  Tensor hf = call1("torch.ops.aten._softmax.default",
                    {{"self", OpArg::of(xh)}, {"dim", OpArg::of_int(0)}, {"half_to_float", OpArg::of_bool(true)}});
  EXPECT_EQ(hf.dtype(), DType::kFloat32);
  expect_close(hf, {0.25, 0.75}, 1e-3);
  OpArg dt;
  dt.kind = OpArg::Kind::kDType;
  dt.dtype = DType::kFloat32;
  Tensor ld =
      call1("torch.ops.aten.log_softmax.int", {{"self", OpArg::of(xh)}, {"dim", OpArg::of_int(0)}, {"dtype", dt}});
  EXPECT_EQ(ld.dtype(), DType::kFloat32);
  Tensor hb = call1("torch.ops.aten.softmax.int",
                    {{"self", OpArg::of(make({2}, {0, 0}, DType::kBFloat16))}, {"dim", OpArg::of_int(0)}});
  EXPECT_EQ(hb.dtype(), DType::kBFloat16);
  expect_close(hb, {0.5, 0.5});
  // Empty tensors and bad dims.
  Tensor empty = call1("torch.ops.aten.softmax.int",
                       {{"self", OpArg::of(Tensor::empty({0, 3}, DType::kFloat32))}, {"dim", OpArg::of_int(1)}});
  EXPECT_EQ(empty.sizes(), (Shape{0, 3}));
  std::string msg;
  EXPECT_EQ(error_of(
                [&] {
                  call("torch.ops.aten.softmax.int", {{"self", OpArg::of(x)}, {"dim", OpArg::of_int(2)}});
                },
                &msg),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("node_x"), std::string::npos);
}

TEST(MaxPool2d, CeilModePaddingAndIndices) {
  std::vector<double> v(25);
  for (int i = 0; i < 25; ++i) v[i] = i;
  Tensor x = make({1, 1, 5, 5}, v);
  Args args{{"self", OpArg::of(x)}, {"kernel_size", OpArg::of_ints({2, 2})}, {"ceil_mode", OpArg::of_bool(true)}};
  std::vector<OpArg> out = call("torch.ops.aten.max_pool2d_with_indices.default", args);
  EXPECT_EQ(out[0].tensor.sizes(), (Shape{1, 1, 3, 3}));
  expect_close(out[0].tensor, {6, 8, 9, 16, 18, 19, 21, 23, 24});
  EXPECT_EQ(out[1].tensor.dtype(), DType::kInt64);
  EXPECT_EQ(values(out[1].tensor), (std::vector<double>{6, 8, 9, 16, 18, 19, 21, 23, 24}));
  // Floor mode drops the partial windows.
  args["ceil_mode"] = OpArg::of_bool(false);
  expect_close(call1("torch.ops.aten.max_pool2d.default", args), {6, 8, 16, 18});
  // Padding is -inf: a negative plane keeps its own maxima; kernel 3, stride 2, padding 1.
  std::vector<double> neg(16);
  for (int i = 0; i < 16; ++i) neg[i] = -1 - i;
  Tensor xn = make({1, 4, 4}, neg);
  out = call("torch.ops.aten.max_pool2d_with_indices.default", {{"self", OpArg::of(xn)},
                                                                {"kernel_size", OpArg::of_ints({3})},
                                                                {"stride", OpArg::of_ints({2})},
                                                                {"padding", OpArg::of_ints({1})}});
  EXPECT_EQ(out[0].tensor.sizes(), (Shape{1, 2, 2}));
  expect_close(out[0].tensor, {-1, -2, -5, -6});
  EXPECT_EQ(values(out[1].tensor), (std::vector<double>{0, 1, 4, 5}));
  // Dilation 2.
  Tensor d = call1("torch.ops.aten.max_pool2d.default", {{"self", OpArg::of(x)},
                                                         {"kernel_size", OpArg::of_ints({2, 2})},
                                                         {"stride", OpArg::of_ints({1, 1})},
                                                         {"dilation", OpArg::of_ints({2, 2})}});
  expect_close(d, {12, 13, 14, 17, 18, 19, 22, 23, 24});
  // Empty batch; too much padding.
  Tensor e = call1(
      "torch.ops.aten.max_pool2d.default",
      {{"self", OpArg::of(Tensor::empty({0, 2, 4, 4}, DType::kFloat32))}, {"kernel_size", OpArg::of_ints({2, 2})}});
  EXPECT_EQ(e.sizes(), (Shape{0, 2, 2, 2}));
  EXPECT_EQ(
      error_of([&] {
        call("torch.ops.aten.max_pool2d.default",
             {{"self", OpArg::of(x)}, {"kernel_size", OpArg::of_ints({2, 2})}, {"padding", OpArg::of_ints({2, 2})}});
      }),
      ErrorCode::kInvalidArgument);
}

TEST(AvgPool2d, PaddingModesAndDivisor) {
  Tensor x = make({1, 1, 2, 2}, {1, 2, 3, 4});
  Args args{{"self", OpArg::of(x)},
            {"kernel_size", OpArg::of_ints({2, 2})},
            {"stride", OpArg::of_ints({1, 1})},
            {"padding", OpArg::of_ints({1, 1})}};
  // count_include_pad: every window divides by 4.
  expect_close(call1("torch.ops.aten.avg_pool2d.default", args), {0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0});
  args["count_include_pad"] = OpArg::of_bool(false);
  expect_close(call1("torch.ops.aten.avg_pool2d.default", args), {1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4});
  args["divisor_override"] = OpArg::of_int(2);
  expect_close(call1("torch.ops.aten.avg_pool2d.default", args), {0.5, 1.5, 1, 2, 5, 3, 1.5, 3.5, 2});
  // ceil_mode: 3x3 input, kernel 2 stride 2 -> 2x2; the last window is clipped to the input.
  Tensor x3 = make({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  expect_close(
      call1("torch.ops.aten.avg_pool2d.default",
            {{"self", OpArg::of(x3)}, {"kernel_size", OpArg::of_ints({2, 2})}, {"ceil_mode", OpArg::of_bool(true)}}),
      {3, 4.5, 7.5, 9});
}

TEST(AdaptiveAvgPool2d, OverlappingWindows) {
  std::vector<double> v(25);
  for (int i = 0; i < 25; ++i) v[i] = i;
  Tensor x = make({1, 5, 5}, v);
  // Windows along each axis for 5 -> 3: [0,2), [1,4), [3,5).
  auto win = [](int o) { return std::pair<int, int>{o * 5 / 3, ((o + 1) * 5 + 2) / 3}; };
  std::vector<double> want;
  for (int oh = 0; oh < 3; ++oh)
    for (int ow = 0; ow < 3; ++ow) {
      auto [h0, h1] = win(oh);
      auto [w0, w1] = win(ow);
      double s = 0;
      for (int i = h0; i < h1; ++i)
        for (int j = w0; j < w1; ++j) s += i * 5 + j;
      want.push_back(s / ((h1 - h0) * (w1 - w0)));
    }
  for (const char* t : {"torch.ops.aten.adaptive_avg_pool2d.default", "torch.ops.aten._adaptive_avg_pool2d.default"}) {
    Tensor y = call1(t, {{"self", OpArg::of(x)}, {"output_size", OpArg::of_ints({3, 3})}});
    EXPECT_EQ(y.sizes(), (Shape{1, 3, 3}));
    expect_close(y, want);
  }
  Tensor g = call1("torch.ops.aten.adaptive_avg_pool2d.default",
                   {{"self", OpArg::of(make({1, 1, 2, 2}, {1, 2, 3, 4}, DType::kFloat16))},
                    {"output_size", OpArg::of_ints({1, 1})}});
  EXPECT_EQ(g.dtype(), DType::kFloat16);
  expect_close(g, {2.5});
}

}  // namespace
}  // namespace ember::ops::test
