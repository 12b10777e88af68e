// Unary ops and activations: reference values, dtype rules, in-place variants, clamp.
#include <cmath>
#include <limits>

#include "ops/ew_test_util.h"

namespace ember::ops::test {
namespace {

std::vector<double> unary(const std::string& op, const Tensor& x, std::map<std::string, OpArg, std::less<>> extra = {}) {
  extra["self"] = OpArg::of(x);
  return vals(call1(aten(op), std::move(extra)));
}

TEST(EwUnary, GeluExactAndTanh) {
  Tensor x = T({1.0, -1.0, 0.0}, {3});
  std::vector<double> g = unary("gelu.default", x);
  EXPECT_NEAR(g[0], 0.8413447, 1e-6);
  EXPECT_NEAR(g[1], -0.1586553, 1e-6);
  EXPECT_EQ(g[2], 0.0);
  std::vector<double> gt = unary("gelu.default", x, {{"approximate", S("tanh")}});
  EXPECT_NEAR(gt[0], 0.8411920, 1e-6);
  EXPECT_EQ(code_of([&] { unary("gelu.default", x, {{"approximate", S("fast")}}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { unary("gelu.default", T({1}, {1}, DType::kInt64)); }), ErrorCode::kDTypeMismatch);
}

TEST(EwUnary, Activations) {
  Tensor x = T({-4, -1, 0, 1, 4}, {5});
  EXPECT_EQ(unary("relu.default", x), (std::vector<double>{0, 0, 0, 1, 4}));
  EXPECT_EQ(unary("relu6.default", T({-1, 3, 7}, {3})), (std::vector<double>{0, 3, 6}));
  std::vector<double> hs = unary("hardswish.default", x);
  EXPECT_EQ(hs[0], 0);
  EXPECT_NEAR(hs[1], -1.0 / 3.0, 1e-7);
  EXPECT_NEAR(hs[3], 2.0 / 3.0, 1e-7);
  EXPECT_EQ(hs[4], 4);
  std::vector<double> hsig = unary("hardsigmoid.default", x);
  EXPECT_EQ(hsig[0], 0);
  EXPECT_EQ(hsig[2], 0.5);
  EXPECT_EQ(hsig[4], 1);
  std::vector<double> si = unary("silu.default", x);
  EXPECT_NEAR(si[3], 0.7310586, 1e-6);
  EXPECT_NEAR(si[1], -0.2689414, 1e-6);
  std::vector<double> sg = unary("sigmoid.default", x);
  EXPECT_EQ(sg[2], 0.5);
  EXPECT_NEAR(sg[3], 0.7310586, 1e-6);
  EXPECT_NEAR(unary("tanh.default", x)[3], 0.7615942, 1e-6);
  EXPECT_EQ(unary("hardtanh.default", x), (std::vector<double>{-1, -1, 0, 1, 1}));
  EXPECT_EQ(unary("hardtanh.default", x, {{"min_val", F(-2)}, {"max_val", I(3)}}), (std::vector<double>{-2, -1, 0, 1, 3}));
  std::vector<double> lr = unary("leaky_relu.default", x);
  EXPECT_NEAR(lr[0], -0.04, 1e-7);
  EXPECT_EQ(lr[4], 4);
  std::vector<double> elu = unary("elu.default", x);
  EXPECT_NEAR(elu[1], std::exp(-1.0) - 1, 1e-6);
  EXPECT_EQ(elu[3], 1);
}

TEST(EwUnary, ReluKeepsNaNAndIntDtype) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(std::isnan(unary("relu.default", T({nan}, {1}))[0]));
  Tensor i = T({-3, 5}, {2}, DType::kInt64);
  Tensor r = call1(aten("relu.default"), {{"self", OpArg::of(i)}});
  EXPECT_EQ(r.dtype(), DType::kInt64);
  EXPECT_EQ(vals(r), (std::vector<double>{0, 5}));
}

TEST(EwUnary, MathPromotesIntsToFloat) {
  Tensor i = T({1, 4}, {2}, DType::kInt64);
  Tensor s = call1(aten("sqrt.default"), {{"self", OpArg::of(i)}});
  EXPECT_EQ(s.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(s), (std::vector<double>{1, 2}));
  EXPECT_EQ(unary("rsqrt.default", T({4}, {1})), (std::vector<double>{0.5}));
  EXPECT_NEAR(unary("exp.default", T({1}, {1}))[0], 2.7182818, 1e-6);
  EXPECT_EQ(unary("log.default", T({1}, {1}))[0], 0.0);
  EXPECT_TRUE(std::isinf(unary("log.default", T({0}, {1}))[0]));
  EXPECT_NEAR(unary("erf.default", T({0.5}, {1}))[0], 0.5204999, 1e-6);
  EXPECT_EQ(unary("abs.default", T({-2, 3}, {2}, DType::kInt32)), (std::vector<double>{2, 3}));
  EXPECT_EQ(unary("neg.default", T({-2, 3}, {2})), (std::vector<double>{2, -3}));
  EXPECT_EQ(code_of([&] { unary("neg.default", T({1}, {1}, DType::kBool)); }), ErrorCode::kDTypeMismatch);
  EXPECT_NEAR(unary("sin.default", T({1}, {1}))[0], 0.8414710, 1e-6);
  EXPECT_NEAR(unary("cos.default", T({1}, {1}))[0], 0.5403023, 1e-6);
}

TEST(EwUnary, LogicalAndBitwiseNot) {
  Tensor b = T({1, 0}, {2}, DType::kBool);
  Tensor n = call1(aten("bitwise_not.default"), {{"self", OpArg::of(b)}});
  EXPECT_EQ(n.dtype(), DType::kBool);
  EXPECT_EQ(vals(n), (std::vector<double>{0, 1}));
  Tensor ln = call1(aten("logical_not.default"), {{"self", OpArg::of(T({0, 2.5}, {2}))}});
  EXPECT_EQ(ln.dtype(), DType::kBool);
  EXPECT_EQ(vals(ln), (std::vector<double>{1, 0}));
  EXPECT_EQ(unary("bitwise_not.default", T({0, 5}, {2}, DType::kInt64)), (std::vector<double>{-1, -6}));
}

TEST(EwUnary, InPlaceOnTransposedView) {
  Tensor base = T({-1, 2, -3, 4, -5, 6}, {2, 3});
  Tensor tv = call1(aten("t.default"), {{"self", OpArg::of(base)}});
  ASSERT_TRUE(shares(tv, base));
  Tensor out = call1(aten("relu_.default"), {{"self", OpArg::of(tv)}});
  EXPECT_TRUE(shares(out, base));
  EXPECT_EQ(vals(base), (std::vector<double>{0, 2, 0, 4, 0, 6}));
  call(aten("hardtanh_.default"), {{"self", OpArg::of(base)}, {"min_val", I(0)}, {"max_val", I(3)}});
  EXPECT_EQ(vals(base), (std::vector<double>{0, 2, 0, 3, 0, 3}));
  Tensor i = T({1}, {1}, DType::kInt64);
  EXPECT_EQ(code_of([&] { call(aten("silu_.default"), {{"self", OpArg::of(i)}}); }), ErrorCode::kDTypeMismatch);
}

TEST(EwUnary, Clamp) {
  Tensor x = T({-2, 0.5, 3}, {3});
  EXPECT_EQ(unary("clamp.default", x, {{"min", I(0)}, {"max", I(1)}}), (std::vector<double>{0, 0.5, 1}));
  EXPECT_EQ(unary("clamp.default", x, {{"min", F(-1)}}), (std::vector<double>{-1, 0.5, 3}));
  EXPECT_EQ(unary("clamp_min.default", x, {{"min", I(0)}}), (std::vector<double>{0, 0.5, 3}));
  EXPECT_EQ(unary("clamp_max.default", x, {{"max", I(0)}}), (std::vector<double>{-2, 0, 0}));
  // int tensor clamped with a float bound promotes to float32.
  Tensor i = T({1, 2, 3}, {3}, DType::kInt64);
  Tensor ci = call1(aten("clamp.default"), {{"self", OpArg::of(i)}, {"min", F(1.5)}});
  EXPECT_EQ(ci.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(ci), (std::vector<double>{1.5, 2, 3}));
  EXPECT_EQ(code_of([&] { unary("clamp.default", x); }), ErrorCode::kInvalidArgument);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(std::isnan(unary("clamp.default", T({nan}, {1}), {{"min", I(0)}})[0]));
}

TEST(EwUnary, HalfComputesInFloat) {
  Tensor h = T({1.0, -1.0}, {2}, DType::kFloat16);
  Tensor g = call1(aten("gelu.default"), {{"self", OpArg::of(h)}});
  EXPECT_EQ(g.dtype(), DType::kFloat16);
  // gelu(1) = 0.8413447 -> nearest float16 is 0.84130859375 (ulp 2^-11 in [0.5, 1)).
  EXPECT_EQ(vals(g)[0], 0.84130859375);
  Tensor b = T({1.0}, {1}, DType::kBFloat16);
  // sigmoid(1) = 0.7310586 -> nearest bfloat16 is 0.73046875 (ulp 2^-8 in [0.5, 1)).
  EXPECT_EQ(vals(call1(aten("sigmoid.default"), {{"self", OpArg::of(b)}}))[0], 0.73046875);
}

TEST(EwUnary, EmptyAndZeroDim) {
  Tensor e = Tensor::empty({0, 4}, DType::kFloat32);
  EXPECT_EQ(call1(aten("exp.default"), {{"self", OpArg::of(e)}}).sizes(), (Shape{0, 4}));
  Tensor z = Tensor::scalar(-2, DType::kFloat32);
  Tensor r = call1(aten("relu.default"), {{"self", OpArg::of(z)}});
  EXPECT_EQ(r.sizes(), Shape{});
  EXPECT_EQ(vals(r), (std::vector<double>{0}));
}

}  // namespace
}  // namespace ember::ops::test
