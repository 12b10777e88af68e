// Convolution and matrix-product ops against hand-checked values and naive loops.
#include <gtest/gtest.h>
#include <sched.h>

#include <chrono>
#include <thread>

#include "nn_test_util.h"
#include "ops/kernels/parallel.h"

namespace ember::ops::test {
namespace {

// Direct convolution oracle (double accumulation); input [N, C, H, W], weight [O, C/g, kh, kw].
std::vector<double> naive_conv2d(const Tensor& x, const Tensor& w, const Tensor* b, Shape stride, Shape pad, Shape dil,
                                 int64_t groups, Shape* out_shape) {
  int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  int64_t O = w.size(0), Cg = w.size(1), kh = w.size(2), kw = w.size(3);
  int64_t Ho = (H + 2 * pad[0] - dil[0] * (kh - 1) - 1) / stride[0] + 1;
  int64_t Wo = (W + 2 * pad[1] - dil[1] * (kw - 1) - 1) / stride[1] + 1;
  *out_shape = {N, O, Ho, Wo};
  std::vector<double> xv = values(x), wv = values(w), bv = b ? values(*b) : std::vector<double>();
  std::vector<double> out(N * O * Ho * Wo);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o) {
      int64_t g = o / (O / groups);
      for (int64_t oy = 0; oy < Ho; ++oy)
        for (int64_t ox = 0; ox < Wo; ++ox) {
          double s = b ? bv[o] : 0.0;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                int64_t iy = oy * stride[0] - pad[0] + i * dil[0], ix = ox * stride[1] - pad[1] + j * dil[1];
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                s += xv[((n * C + g * Cg + ci) * H + iy) * W + ix] * wv[((o * Cg + ci) * kh + i) * kw + j];
              }
          out[((n * O + o) * Ho + oy) * Wo + ox] = s;
        }
    }
  return out;
}

struct ConvCase {
  Shape x, w;
  Shape stride, pad, dil;
  int64_t groups;
  bool bias;
};

TEST(Conv2d, HandChecked) {
  Tensor x = make({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tensor w = make({1, 1, 2, 2}, {1, 1, 1, 1});
  Tensor y = call1("torch.ops.aten.conv2d.default", {{"input", OpArg::of(x)}, {"weight", OpArg::of(w)}});
  EXPECT_EQ(y.sizes(), (Shape{1, 1, 2, 2}));
  expect_close(y, {12, 16, 24, 28});
  // Padding 1, stride 2, bias 0.5: corners of the padded sum.
  Tensor b = make({1}, {0.5});
  y = call1("torch.ops.aten.conv2d.default", {{"input", OpArg::of(x)},
                                              {"weight", OpArg::of(w)},
                                              {"bias", OpArg::of(b)},
                                              {"stride", OpArg::of_ints({2, 2})},
                                              {"padding", OpArg::of_ints({1, 1})}});
  EXPECT_EQ(y.sizes(), (Shape{1, 1, 2, 2}));
  expect_close(y, {1.5, 5.5, 11.5, 28.5});
}

TEST(Conv2d, MatchesDirectConvolution) {
  std::vector<ConvCase> cases = {
      {{2, 4, 7, 6}, {6, 2, 3, 2}, {2, 1}, {1, 0}, {1, 2}, 2, true},        // groups, stride, dilation, padding
      {{1, 4, 9, 9}, {8, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 4, true},        // depthwise (multiplier 2)
      {{1, 16, 5, 7}, {24, 16, 1, 1}, {1, 1}, {0, 0}, {1, 1}, 1, false},    // 1x1 direct path
      {{1, 40, 20, 20}, {100, 40, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true},  // crosses GEMM blocks
      {{1, 3, 11, 13}, {5, 3, 7, 7}, {2, 2}, {3, 2}, {1, 1}, 1, true},      // resnet-stem-like, ph != pw
      {{3, 2, 4, 4}, {2, 2, 3, 3}, {1, 1}, {0, 0}, {1, 1}, 1, false},       // batch > 1
  };
  uint64_t seed = 1;
  for (const ConvCase& cc : cases) {
    Tensor x = rand(cc.x, seed++), w = rand(cc.w, seed++), b = rand({cc.w[0]}, seed++);
    Shape out_shape;
    std::vector<double> want =
        naive_conv2d(x, w, cc.bias ? &b : nullptr, cc.stride, cc.pad, cc.dil, cc.groups, &out_shape);
    Args args{{"input", OpArg::of(x)},
              {"weight", OpArg::of(w)},
              {"stride", OpArg::of_ints(cc.stride)},
              {"padding", OpArg::of_ints(cc.pad)},
              {"dilation", OpArg::of_ints(cc.dil)},
              {"groups", OpArg::of_int(cc.groups)}};
    if (cc.bias) args["bias"] = OpArg::of(b);
    Tensor y = call1("torch.ops.aten.conv2d.default", args);
    EXPECT_EQ(y.sizes(), out_shape);
    expect_close(y, want, 1e-4);
    // The core-ATen form gives the same result.
    args["transposed"] = OpArg::of_bool(false);
    args["output_padding"] = OpArg::of_ints({0, 0});
    if (!cc.bias) args["bias"] = OpArg::none();
    expect_close(call1("torch.ops.aten.convolution.default", args), want, 1e-4);
  }
}

TEST(Conv2d, UnbatchedNonContiguousAndHalf) {
  Tensor x = rand({1, 3, 6, 5}, 7), w = rand({4, 3, 3, 3}, 8);
  Shape os;
  std::vector<double> want = naive_conv2d(x, w, nullptr, {1, 1}, {1, 1}, {1, 1}, 1, &os);
  // Unbatched [C, H, W] input.
  Tensor y = call1("torch.ops.aten.conv2d.default",
                   {{"input", OpArg::of(x.view({3, 6, 5}))}, {"weight", OpArg::of(w)}, {"padding", OpArg::of_int(1)}});
  EXPECT_EQ(y.sizes(), (Shape{4, 6, 5}));
  expect_close(y, want);
  // Non-contiguous input with the same values.
  y = call1("torch.ops.aten.conv2d.default",
            {{"input", OpArg::of(noncontig(x))}, {"weight", OpArg::of(w)}, {"padding", OpArg::of_int(1)}});
  expect_close(y, want);
  // float16 and bfloat16: computed in float32 from the rounded inputs, result rounded.
  for (DType dt : {DType::kFloat16, DType::kBFloat16}) {
    Tensor xh = make(x.sizes(), values(x), dt), wh = make(w.sizes(), values(w), dt);
    std::vector<double> want_h = naive_conv2d(xh, wh, nullptr, {1, 1}, {1, 1}, {1, 1}, 1, &os);
    y = call1("torch.ops.aten.conv2d.default",
              {{"input", OpArg::of(xh)}, {"weight", OpArg::of(wh)}, {"padding", OpArg::of_int(1)}});
    EXPECT_EQ(y.dtype(), dt);
    expect_close(y, want_h, dt == DType::kFloat16 ? 2e-3 : 1e-2);
  }
}

TEST(Conv2d, EmptyBatchAndErrors) {
  Tensor x = Tensor::empty({0, 3, 8, 8}, DType::kFloat32), w = rand({4, 3, 3, 3}, 1);
  Tensor y = call1("torch.ops.aten.conv2d.default", {{"input", OpArg::of(x)}, {"weight", OpArg::of(w)}});
  EXPECT_EQ(y.sizes(), (Shape{0, 4, 6, 6}));

  std::string msg;
  Tensor bad = rand({1, 5, 8, 8}, 2);
  EXPECT_EQ(error_of(
                [&] {
                  call("torch.ops.aten.conv2d.default", {{"input", OpArg::of(bad)}, {"weight", OpArg::of(w)}});
                },
                &msg),
            ErrorCode::kShapeMismatch);
  EXPECT_NE(msg.find("node_x"), std::string::npos) << msg;
  EXPECT_NE(msg.find("5 channels"), std::string::npos) << msg;
  Tensor tiny = rand({1, 3, 2, 2}, 3);
  EXPECT_EQ(error_of([&] {
              call("torch.ops.aten.conv2d.default", {{"input", OpArg::of(tiny)}, {"weight", OpArg::of(w)}});
            }),
            ErrorCode::kShapeMismatch);
  Args tr{{"input", OpArg::of(rand({1, 3, 8, 8}, 4))},
          {"weight", OpArg::of(w)},
          {"bias", OpArg::none()},
          {"stride", OpArg::of_ints({1, 1})},
          {"padding", OpArg::of_ints({0, 0})},
          {"dilation", OpArg::of_ints({1, 1})},
          {"transposed", OpArg::of_bool(true)},
          {"output_padding", OpArg::of_ints({0, 0})},
          {"groups", OpArg::of_int(1)}};
  EXPECT_EQ(error_of([&] { call("torch.ops.aten.convolution.default", tr); }, &msg), ErrorCode::kUnsupported);
  EXPECT_NE(msg.find("node_x"), std::string::npos) << msg;
}

TEST(Conv1d, MatchesDirectConvolution) {
  Tensor x = rand({2, 4, 11}, 11), w = rand({6, 2, 3}, 12), b = rand({6}, 13);
  Shape os;
  std::vector<double> want =
      naive_conv2d(x.view({2, 4, 1, 11}), w.view({6, 2, 1, 3}), &b, {1, 2}, {0, 1}, {1, 2}, 2, &os);
  Tensor y = call1("torch.ops.aten.conv1d.default", {{"input", OpArg::of(x)},
                                                     {"weight", OpArg::of(w)},
                                                     {"bias", OpArg::of(b)},
                                                     {"stride", OpArg::of_ints({2})},
                                                     {"padding", OpArg::of_ints({1})},
                                                     {"dilation", OpArg::of_ints({2})},
                                                     {"groups", OpArg::of_int(2)}});
  EXPECT_EQ(y.sizes(), (Shape{2, 6, os[3]}));
  expect_close(y, want);
  // Unbatched [C, L].
  y = call1("torch.ops.aten.conv1d.default",
            {{"input", OpArg::of(x.as_strided({4, 11}, {11, 1}, 0))}, {"weight", OpArg::of(rand({3, 4, 2}, 14))}});
  EXPECT_EQ(y.sizes(), (Shape{3, 10}));
}

// Default thread counts follow the CPUs the process may use (taskset, cpusets), not the
// machine's: a thread pinned to one CPU sees one.
TEST(Parallel, AvailableCpusFollowTheAffinityMask) {
  const int all = available_cpus();
  EXPECT_GE(all, 1);
  int pinned = -1;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    cpu_set_t mine;
    CPU_ZERO(&mine);
    ASSERT_EQ(sched_getaffinity(0, sizeof(mine), &mine), 0);
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &mine)) {
        CPU_SET(c, &one);
        break;
      }
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    pinned = available_cpus();
  });
  t.join();
  EXPECT_EQ(pinned, 1);
  EXPECT_EQ(available_cpus(), all);  // the calling thread's mask is unchanged
}

// start_thread runs the function on a new thread that ends up with its creator's CPU set,
// whatever that set is (it only starts away from the creator's CPU).
TEST(Parallel, StartedThreadKeepsTheCreatorsCpuSet) {
  auto mask_of_started_thread = [] {
    cpu_set_t seen;
    CPU_ZERO(&seen);
    int rc = -1;
    std::thread t = start_thread([&] { rc = sched_getaffinity(0, sizeof(seen), &seen); });
    t.join();
    EXPECT_EQ(rc, 0);
    return seen;
  };
  cpu_set_t mine;
  CPU_ZERO(&mine);
  ASSERT_EQ(sched_getaffinity(0, sizeof(mine), &mine), 0);
  cpu_set_t seen = mask_of_started_thread();
  EXPECT_TRUE(CPU_EQUAL(&seen, &mine));

  // From a thread pinned to one CPU: nowhere else to start, the new thread stays pinned too.
  std::thread pinned([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &mine)) {
        CPU_SET(c, &one);
        break;
      }
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    cpu_set_t got = mask_of_started_thread();
    EXPECT_TRUE(CPU_EQUAL(&got, &one));
  });
  pinned.join();
}

TEST(Conv2d, ResultsDoNotDependOnThreadCount) {
  Tensor x = rand({1, 32, 28, 28}, 21), w = rand({64, 32, 3, 3}, 22);
  Args args{{"input", OpArg::of(x)}, {"weight", OpArg::of(w)}, {"padding", OpArg::of_int(1)}};
  int saved = num_threads();
  set_num_threads(1);
  std::vector<double> one = values(call1("torch.ops.aten.conv2d.default", args));
  set_num_threads(3);
  std::vector<double> three = values(call1("torch.ops.aten.conv2d.default", args));
  set_num_threads(saved);
  EXPECT_EQ(one, three);
}

// Not a benchmark gate: prints the time of a resnet18 layer-sized convolution.
TEST(Conv2d, ResnetLayerTiming) {
  Tensor x = rand({1, 64, 56, 56}, 31), w = rand({64, 64, 3, 3}, 32);
  Args args{{"input", OpArg::of(x)}, {"weight", OpArg::of(w)}, {"padding", OpArg::of_int(1)}};
  call1("torch.ops.aten.conv2d.default", args);
  auto t0 = std::chrono::steady_clock::now();
  const int reps = 5;
  for (int i = 0; i < reps; ++i) call1("torch.ops.aten.conv2d.default", args);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
  double gflops = 2.0 * 64 * 64 * 9 * 56 * 56 / (ms * 1e6);
  std::printf("conv 64->64 3x3 on 56x56: %.2f ms (%.1f GFLOP/s, %d threads)\n", ms, gflops, num_threads());
}

// ---------------------------------------------------------------- matrix products

std::vector<double> naive_mm(const std::vector<double>& a, const std::vector<double>& b, int64_t n, int64_t k,
                             int64_t m) {
  std::vector<double> c(n * m, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j)
      for (int64_t p = 0; p < k; ++p) c[i * m + j] += a[i * k + p] * b[p * m + j];
  return c;
}

TEST(Linear, HandCheckedAndBatched) {
  Tensor x = make({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor w = make({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5});
  Tensor b = make({2}, {10, 20});
  Tensor y = call1("torch.ops.aten.linear.default",
                   {{"input", OpArg::of(x)}, {"weight", OpArg::of(w)}, {"bias", OpArg::of(b)}});
  expect_close(y, {8, 23, 8, 27.5});
  // 3-D input, no bias, larger sizes vs the naive product with W^T.
  Tensor x3 = rand({2, 5, 300}, 41), w3 = rand({70, 300}, 42);
  y = call1("torch.ops.aten.linear.default", {{"input", OpArg::of(x3)}, {"weight", OpArg::of(w3)}});
  EXPECT_EQ(y.sizes(), (Shape{2, 5, 70}));
  std::vector<double> wv = values(w3), wt(300 * 70);
  for (int i = 0; i < 70; ++i)
    for (int j = 0; j < 300; ++j) wt[j * 70 + i] = wv[i * 300 + j];
  expect_close(y, naive_mm(values(x3), wt, 10, 300, 70));
  // 1-D input.
  y = call1("torch.ops.aten.linear.default", {{"input", OpArg::of(make({3}, {1, 2, 3}))}, {"weight", OpArg::of(w)}});
  EXPECT_EQ(y.sizes(), (Shape{2}));
  expect_close(y, {-2, 3});
  std::string msg;
  EXPECT_EQ(
      error_of(
          [&] {
            call("torch.ops.aten.linear.default", {{"input", OpArg::of(rand({2, 4}, 1))}, {"weight", OpArg::of(w)}});
          },
          &msg),
      ErrorCode::kShapeMismatch);
  EXPECT_NE(msg.find("node_x"), std::string::npos);
}

TEST(Addmm, BetaAlphaAndBroadcastSelf) {
  Tensor self = make({2}, {1, 2});
  Tensor a = make({2, 2}, {1, 2, 3, 4}), b = make({2, 2}, {1, 0, 0, 1});
  Tensor y = call1("torch.ops.aten.addmm.default", {{"self", OpArg::of(self)},
                                                    {"mat1", OpArg::of(a)},
                                                    {"mat2", OpArg::of(b)},
                                                    {"beta", OpArg::of_float(0.5)},
                                                    {"alpha", OpArg::of_int(2)}});
  expect_close(y, {2.5, 5, 6.5, 9});
  // beta = 0 ignores self, even NaN.
  Tensor nan_self = make({2, 2}, {NAN, NAN, NAN, NAN});
  y = call1(
      "torch.ops.aten.addmm.default",
      {{"self", OpArg::of(nan_self)}, {"mat1", OpArg::of(a)}, {"mat2", OpArg::of(b)}, {"beta", OpArg::of_int(0)}});
  expect_close(y, {1, 2, 3, 4});
}

TEST(MmBmm, MatchNaive) {
  Tensor a = rand({130, 600}, 51), b = rand({600, 300}, 52);
  expect_close(call1("torch.ops.aten.mm.default", {{"self", OpArg::of(a)}, {"mat2", OpArg::of(b)}}),
               naive_mm(values(a), values(b), 130, 600, 300), 1e-4);
  // Transposed (non-contiguous) operand.
  Tensor bt = noncontig(rand({7, 9}, 53));
  Tensor at = rand({5, 7}, 54);
  expect_close(call1("torch.ops.aten.mm.default", {{"self", OpArg::of(at)}, {"mat2", OpArg::of(bt)}}),
               naive_mm(values(at), values(bt), 5, 7, 9));
  Tensor x = rand({3, 4, 5}, 55), y = rand({3, 5, 2}, 56);
  Tensor out = call1("torch.ops.aten.bmm.default", {{"self", OpArg::of(x)}, {"mat2", OpArg::of(y)}});
  std::vector<double> xv = values(x), yv = values(y), want;
  for (int bi = 0; bi < 3; ++bi) {
    auto r = naive_mm(std::vector<double>(xv.begin() + bi * 20, xv.begin() + bi * 20 + 20),
                      std::vector<double>(yv.begin() + bi * 10, yv.begin() + bi * 10 + 10), 4, 5, 2);
    want.insert(want.end(), r.begin(), r.end());
  }
  expect_close(out, want);
  EXPECT_EQ(error_of([&] {
              call("torch.ops.aten.bmm.default", {{"self", OpArg::of(x)}, {"mat2", OpArg::of(rand({2, 5, 2}, 1))}});
            }),
            ErrorCode::kShapeMismatch);
  // K = 0: zeros.
  Tensor e = call1("torch.ops.aten.mm.default", {{"self", OpArg::of(Tensor::empty({2, 0}, DType::kFloat32))},
                                                 {"mat2", OpArg::of(Tensor::empty({0, 3}, DType::kFloat32))}});
  expect_close(e, {0, 0, 0, 0, 0, 0});
}

TEST(Matmul, OneDimensionalOperandsAndBroadcasting) {
  auto mm = [](Tensor a, Tensor b) {
    return call1("torch.ops.aten.matmul.default", {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}});
  };
  Tensor v = make({3}, {1, 2, 3}), m = make({3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor dot = mm(v, v);
  EXPECT_EQ(dot.sizes(), Shape{});
  expect_close(dot, {14});
  Tensor vm = mm(v, m);
  EXPECT_EQ(vm.sizes(), (Shape{2}));
  expect_close(vm, {22, 28});
  Tensor mt = make({2, 3}, {1, 3, 5, 2, 4, 6});
  Tensor mv = mm(mt, v);
  EXPECT_EQ(mv.sizes(), (Shape{2}));
  expect_close(mv, {22, 28});
  // 1-D x 3-D and 3-D x 1-D.
  Tensor b3 = rand({4, 3, 2}, 61);
  Tensor r = mm(v, b3);
  EXPECT_EQ(r.sizes(), (Shape{4, 2}));
  std::vector<double> bv = values(b3), want;
  for (int bi = 0; bi < 4; ++bi)
    for (int j = 0; j < 2; ++j) want.push_back(bv[bi * 6 + j] + 2 * bv[bi * 6 + 2 + j] + 3 * bv[bi * 6 + 4 + j]);
  expect_close(r, want);
  Tensor a3 = rand({4, 2, 3}, 62);
  r = mm(a3, v);
  EXPECT_EQ(r.sizes(), (Shape{4, 2}));
  // Broadcast batch: [2, 1, 3, 4] x [5, 4, 2] -> [2, 5, 3, 2].
  Tensor a = rand({2, 1, 3, 4}, 63), b = rand({5, 4, 2}, 64);
  r = mm(a, b);
  EXPECT_EQ(r.sizes(), (Shape{2, 5, 3, 2}));
  std::vector<double> av = values(a), bvv = values(b);
  want.clear();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 5; ++j) {
      auto p = naive_mm(std::vector<double>(av.begin() + i * 12, av.begin() + i * 12 + 12),
                        std::vector<double>(bvv.begin() + j * 8, bvv.begin() + j * 8 + 8), 3, 4, 2);
      want.insert(want.end(), p.begin(), p.end());
    }
  expect_close(r, want);
  // 3-D x 2-D (folded into one GEMM) and bfloat16.
  Tensor a2 = rand({3, 4, 5}, 65), w2 = rand({5, 6}, 66);
  r = mm(a2, w2);
  expect_close(r, naive_mm(values(a2), values(w2), 12, 5, 6));
  Tensor ah = make(a2.sizes(), values(a2), DType::kBFloat16), wh = make(w2.sizes(), values(w2), DType::kBFloat16);
  r = mm(ah, wh);
  EXPECT_EQ(r.dtype(), DType::kBFloat16);
  expect_close(r, naive_mm(values(ah), values(wh), 12, 5, 6), 1e-2);
  std::string msg;
  EXPECT_EQ(error_of([&] { mm(rand({2, 3}, 1), rand({4, 2}, 2)); }, &msg), ErrorCode::kShapeMismatch);
  EXPECT_EQ(error_of([&] { mm(rand({2, 2, 3}, 1), rand({3, 3, 2}, 2)); }), ErrorCode::kShapeMismatch);
}

}  // namespace
}  // namespace ember::ops::test
