// Binary element-wise ops: broadcasting, type promotion, division modes, in-place variants,
// comparisons, where and masked_fill. Expected values are worked out by hand from PyTorch's
// documented semantics.
#include <cmath>
#include <limits>

#include "ops/ew_test_util.h"

namespace ember::ops::test {
namespace {

TEST(EwBinary, AddBroadcastsRowAndColumn) {
  Tensor a = T({1, 2, 3}, {1, 3});
  Tensor b = T({10, 20}, {2, 1});
  Tensor out = call1(aten("add.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}});
  EXPECT_EQ(out.sizes(), (Shape{2, 3}));
  EXPECT_EQ(vals(out), (std::vector<double>{11, 12, 13, 21, 22, 23}));
}

TEST(EwBinary, AddAlphaAndSub) {
  Tensor a = T({1, 2}, {2});
  Tensor b = T({3, 4}, {2});
  EXPECT_EQ(vals(call1(aten("add.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}, {"alpha", I(2)}})),
            (std::vector<double>{7, 10}));
  EXPECT_EQ(vals(call1(aten("sub.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}, {"alpha", F(0.5)}})),
            (std::vector<double>{-0.5, 0}));
  EXPECT_EQ(vals(call1(aten("rsub.Scalar"), {{"self", OpArg::of(a)}, {"other", I(10)}})),
            (std::vector<double>{9, 8}));
  EXPECT_EQ(vals(call1(aten("sub.Scalar"), {{"self", OpArg::of(a)}, {"other", I(1)}})), (std::vector<double>{0, 1}));
}

TEST(EwBinary, ZeroDimTensorBroadcasts) {
  Tensor a = T({1, 2, 3, 4}, {2, 2});
  Tensor s = Tensor::scalar(10, DType::kFloat32);
  Tensor out = call1(aten("mul.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(s)}});
  EXPECT_EQ(out.sizes(), (Shape{2, 2}));
  EXPECT_EQ(vals(out), (std::vector<double>{10, 20, 30, 40}));
  // Two 0-d tensors give a 0-d tensor.
  Tensor z = call1(aten("add.Tensor"), {{"self", OpArg::of(s)}, {"other", OpArg::of(s)}});
  EXPECT_EQ(z.sizes(), Shape{});
  EXPECT_EQ(vals(z), (std::vector<double>{20}));
}

TEST(EwBinary, EmptyTensorsBroadcast) {
  Tensor a = Tensor::empty({0, 3}, DType::kFloat32);
  Tensor b = T({1, 2, 3}, {3});
  Tensor out = call1(aten("add.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}});
  EXPECT_EQ(out.sizes(), (Shape{0, 3}));
}

TEST(EwBinary, NonBroadcastableShapesNameTheNode) {
  Tensor a = T({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = T({1, 2, 3, 4}, {4});
  std::string msg;
  EXPECT_EQ(code_of([&] { call(aten("add.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}}, "add_3"); },
                    &msg),
            ErrorCode::kShapeMismatch);
  EXPECT_NE(msg.find("add_3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot broadcast [2, 3] with [4]"), std::string::npos) << msg;
}

TEST(EwBinary, NonContiguousInputs) {
  // a^T + b where a is [3, 2] transposed to [2, 3]; b expanded from [1, 3].
  Tensor a = T({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor at = a.as_strided({2, 3}, {1, 2}, 0);
  Tensor b = T({100, 200, 300}, {1, 3}).as_strided({2, 3}, {0, 1}, 0);
  Tensor out = call1(aten("add.Tensor"), {{"self", OpArg::of(at)}, {"other", OpArg::of(b)}});
  EXPECT_EQ(vals(out), (std::vector<double>{101, 203, 305, 102, 204, 306}));
  // Strided (every other element).
  Tensor c = T({1, 2, 3, 4, 5, 6}, {6}).as_strided({3}, {2}, 1);
  EXPECT_EQ(vals(call1(aten("mul.Scalar"), {{"self", OpArg::of(c)}, {"other", I(2)}})),
            (std::vector<double>{4, 8, 12}));
}

TEST(EwBinary, ScalarPromotion) {
  Tensor i64 = T({1, 2}, {2}, DType::kInt64);
  Tensor i32 = T({1, 2}, {2}, DType::kInt32);
  Tensor f16 = T({1, 2}, {2}, DType::kFloat16);
  Tensor b = T({1, 0}, {2}, DType::kBool);
  auto add_s = [](const Tensor& t, OpArg s) { return call1(aten("add.Tensor"), {{"self", OpArg::of(t)}, {"other", s}}); };
  // int tensor + float scalar -> default float dtype.
  Tensor r1 = add_s(i64, F(0.5));
  EXPECT_EQ(r1.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(r1), (std::vector<double>{1.5, 2.5}));
  // int32 tensor + int scalar stays int32; float16 + float scalar stays float16.
  EXPECT_EQ(add_s(i32, I(1)).dtype(), DType::kInt32);
  EXPECT_EQ(add_s(f16, F(1.5)).dtype(), DType::kFloat16);
  // bool + int scalar -> int64; bool + bool -> bool.
  EXPECT_EQ(add_s(b, I(1)).dtype(), DType::kInt64);
  Tensor bb = call1(aten("add.Tensor"), {{"self", OpArg::of(b)}, {"other", OpArg::of(b)}});
  EXPECT_EQ(bb.dtype(), DType::kBool);
  EXPECT_EQ(vals(bb), (std::vector<double>{1, 0}));
  // mul.Scalar follows the same rules.
  EXPECT_EQ(call1(aten("mul.Scalar"), {{"self", OpArg::of(i64)}, {"other", F(2.0)}}).dtype(), DType::kFloat32);
}

TEST(EwBinary, TensorPromotion) {
  auto add = [](const Tensor& a, const Tensor& b) {
    return call1(aten("add.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}}).dtype();
  };
  Tensor i32 = T({1}, {1}, DType::kInt32);
  Tensor f32 = T({1}, {1}, DType::kFloat32);
  Tensor u8 = T({1}, {1}, DType::kUInt8);
  Tensor i8 = T({1}, {1}, DType::kInt8);
  Tensor f16 = T({1}, {1}, DType::kFloat16);
  Tensor bf16 = T({1}, {1}, DType::kBFloat16);
  EXPECT_EQ(add(i32, f32), DType::kFloat32);
  EXPECT_EQ(add(u8, i8), DType::kInt16);
  EXPECT_EQ(add(f16, bf16), DType::kFloat32);
  EXPECT_EQ(add(f16, f32), DType::kFloat32);
  // A 0-d tensor of the same category does not widen a dimensioned tensor ...
  EXPECT_EQ(add(i32, Tensor::scalar(1, DType::kInt64)), DType::kInt32);
  EXPECT_EQ(add(f16, Tensor::scalar(1, DType::kFloat32)), DType::kFloat16);
  // ... but a higher category does (and keeps its own width).
  EXPECT_EQ(add(i32, Tensor::scalar(1.5, DType::kFloat64)), DType::kFloat64);
}

TEST(EwBinary, TrueDivisionOfIntsIsFloat) {
  Tensor a = T({7, -7}, {2}, DType::kInt64);
  Tensor b = T({2, 2}, {2}, DType::kInt64);
  Tensor out = call1(aten("div.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}});
  EXPECT_EQ(out.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(out), (std::vector<double>{3.5, -3.5}));
  Tensor z = T({0, 0}, {2}, DType::kInt64);
  Tensor inf = call1(aten("div.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(z)}});
  EXPECT_TRUE(std::isinf(vals(inf)[0]));  // IEEE: no error for true division
}

TEST(EwBinary, DivRoundingModes) {
  Tensor a = T({7, -7, 6}, {3}, DType::kInt64);
  Tensor b = T({2, 2, -4}, {3}, DType::kInt64);
  auto div = [&](const Tensor& x, const Tensor& y, const char* mode) {
    return call1(aten("div.Tensor_mode"), {{"self", OpArg::of(x)}, {"other", OpArg::of(y)}, {"rounding_mode", S(mode)}});
  };
  Tensor t = div(a, b, "trunc");
  EXPECT_EQ(t.dtype(), DType::kInt64);
  EXPECT_EQ(vals(t), (std::vector<double>{3, -3, -1}));
  EXPECT_EQ(vals(div(a, b, "floor")), (std::vector<double>{3, -4, -2}));
  Tensor fa = T({7.5, -7.5, -0.5}, {3});
  Tensor fb = T({2, 2, 4}, {3});
  EXPECT_EQ(vals(div(fa, fb, "floor")), (std::vector<double>{3, -4, -1}));
  EXPECT_EQ(vals(div(fa, fb, "trunc")), (std::vector<double>{3, -3, -0.0}));
  // No rounding mode: true division.
  Tensor none = call1(aten("div.Tensor_mode"),
                      {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}, {"rounding_mode", OpArg::none()}});
  EXPECT_EQ(none.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(none), (std::vector<double>{3.5, -3.5, -1.5}));
}

TEST(EwBinary, IntegerDivisionByZeroThrows) {
  Tensor a = T({1, 2}, {2}, DType::kInt64);
  Tensor z = T({1, 0}, {2}, DType::kInt64);
  std::string msg;
  EXPECT_EQ(code_of([&] {
              call(aten("div.Tensor_mode"), {{"self", OpArg::of(a)}, {"other", OpArg::of(z)}, {"rounding_mode", S("floor")}},
                   "div_7");
            },
                    &msg),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("div_7"), std::string::npos);
  EXPECT_NE(msg.find("ZeroDivisionError"), std::string::npos);
  EXPECT_EQ(code_of([&] { call(aten("remainder.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(z)}}); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { call(aten("floor_divide.default"), {{"self", OpArg::of(a)}, {"other", OpArg::of(z)}}); }),
            ErrorCode::kInvalidArgument);
}

TEST(EwBinary, RemainderAndFmodSigns) {
  Tensor a = T({-7, 7, -7}, {3}, DType::kInt64);
  EXPECT_EQ(vals(call1(aten("remainder.Scalar"), {{"self", OpArg::of(a)}, {"other", I(3)}})),
            (std::vector<double>{2, 1, 2}));
  EXPECT_EQ(vals(call1(aten("fmod.Scalar"), {{"self", OpArg::of(a)}, {"other", I(3)}})),
            (std::vector<double>{-1, 1, -1}));
  Tensor f = T({-7.5, 7.5}, {2});
  EXPECT_EQ(vals(call1(aten("remainder.Scalar"), {{"self", OpArg::of(f)}, {"other", F(2)}})),
            (std::vector<double>{0.5, 1.5}));
  EXPECT_EQ(vals(call1(aten("floor_divide.Scalar"), {{"self", OpArg::of(a)}, {"other", I(2)}})),
            (std::vector<double>{-4, 3, -4}));
}

TEST(EwBinary, Pow) {
  Tensor f = T({1, 2, 4, -2}, {4});
  EXPECT_EQ(vals(call1(aten("pow.Tensor_Scalar"), {{"self", OpArg::of(f)}, {"exponent", I(2)}})),
            (std::vector<double>{1, 4, 16, 4}));
  Tensor half = call1(aten("pow.Tensor_Scalar"), {{"self", OpArg::of(f)}, {"exponent", F(0.5)}});
  EXPECT_EQ(vals(half)[2], 2.0);
  EXPECT_TRUE(std::isnan(vals(half)[3]));
  Tensor i = T({2, 3}, {2}, DType::kInt64);
  Tensor pi = call1(aten("pow.Tensor_Scalar"), {{"self", OpArg::of(i)}, {"exponent", I(3)}});
  EXPECT_EQ(pi.dtype(), DType::kInt64);
  EXPECT_EQ(vals(pi), (std::vector<double>{8, 27}));
  // int tensor ** float scalar -> float32.
  Tensor pf = call1(aten("pow.Tensor_Scalar"), {{"self", OpArg::of(i)}, {"exponent", F(2.0)}});
  EXPECT_EQ(pf.dtype(), DType::kFloat32);
  EXPECT_EQ(code_of([&] { call(aten("pow.Tensor_Scalar"), {{"self", OpArg::of(i)}, {"exponent", I(-1)}}); }),
            ErrorCode::kInvalidArgument);
  // Scalar base.
  Tensor ps = call1(aten("pow.Scalar"), {{"self", I(2)}, {"exponent", OpArg::of(i)}});
  EXPECT_EQ(ps.dtype(), DType::kInt64);
  EXPECT_EQ(vals(ps), (std::vector<double>{4, 8}));
  Tensor pt = call1(aten("pow.Tensor_Tensor"), {{"self", OpArg::of(f)}, {"exponent", OpArg::of(T({0, 3, 0.5, 2}, {4}))}});
  EXPECT_EQ(vals(pt), (std::vector<double>{1, 8, 2, 4}));
}

TEST(EwBinary, MaximumMinimumPropagateNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor a = T({1, nan, 3}, {3});
  Tensor b = T({2, 0, nan}, {3});
  std::vector<double> mx = vals(call1(aten("maximum.default"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}}));
  EXPECT_EQ(mx[0], 2);
  EXPECT_TRUE(std::isnan(mx[1]) && std::isnan(mx[2]));
  EXPECT_EQ(vals(call1(aten("minimum.default"), {{"self", OpArg::of(T({1, 5}, {2}))}, {"other", OpArg::of(T({2, 0}, {2}))}})),
            (std::vector<double>{1, 0}));
}

TEST(EwBinary, HalfAndBFloat16RoundOncePerElement) {
  // 1 + 0.0004 is below half an ulp of 1.0 in float16 (2^-11): rounds back to 1.
  Tensor h = T({1.0}, {1}, DType::kFloat16);
  Tensor r = call1(aten("add.Tensor"), {{"self", OpArg::of(h)}, {"other", OpArg::of(T({0.0004}, {1}, DType::kFloat16))}});
  EXPECT_EQ(r.dtype(), DType::kFloat16);
  EXPECT_EQ(vals(r)[0], 1.0);
  // bfloat16: 1 + 0.004 rounds up to the next bf16 value 1 + 2^-7.
  Tensor bf = T({1.0}, {1}, DType::kBFloat16);
  Tensor rb = call1(aten("add.Scalar"), {{"self", OpArg::of(bf)}, {"other", F(0.004)}});
  EXPECT_EQ(rb.dtype(), DType::kBFloat16);
  EXPECT_EQ(vals(rb)[0], 1.0078125);
  // A Python scalar multiplies a half tensor in float (0.1f, not half(0.1)):
  // 3 * 0.1f = 0.3 -> half 0.300048828125 (half(0.1) would give 0.2998046875).
  Tensor h3 = T({3.0}, {1}, DType::kFloat16);
  EXPECT_EQ(vals(call1(aten("mul.Scalar"), {{"self", OpArg::of(h3)}, {"other", F(0.1)}}))[0], 0.300048828125);
}

TEST(EwBinary, InPlaceAddOnViewWritesBase) {
  Tensor base = Tensor::zeros({2, 3}, DType::kFloat32);
  Tensor row = call1(aten("select.int"), {{"self", OpArg::of(base)}, {"dim", I(0)}, {"index", I(1)}});
  ASSERT_TRUE(shares(row, base));
  Tensor out = call1(aten("add_.Tensor"), {{"self", OpArg::of(row)}, {"other", OpArg::of(T({1, 2, 3}, {3}))}});
  EXPECT_TRUE(shares(out, base));
  EXPECT_EQ(vals(base), (std::vector<double>{0, 0, 0, 1, 2, 3}));
  // A column view (stride 3) with a broadcast scalar tensor.
  Tensor col = base.as_strided({2}, {3}, 2);
  call(aten("mul_.Tensor"), {{"self", OpArg::of(col)}, {"other", OpArg::of(Tensor::scalar(10, DType::kFloat32))}});
  EXPECT_EQ(vals(base), (std::vector<double>{0, 0, 0, 1, 2, 30}));
  // Self-overlapping operand: x += x.flip-like view of the same storage.
  Tensor x = T({1, 2, 3}, {3});
  Tensor rev = x.as_strided({3}, {-1}, 2);
  call(aten("add_.Tensor"), {{"self", OpArg::of(x)}, {"other", OpArg::of(rev)}});
  EXPECT_EQ(vals(x), (std::vector<double>{4, 4, 4}));
}

TEST(EwBinary, InPlaceErrors) {
  Tensor a = T({1, 2, 3}, {3});
  Tensor wide = T({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(code_of([&] { call(aten("add_.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(wide)}}); }),
            ErrorCode::kInvalidArgument);
  static const float data[3] = {1, 2, 3};
  Tensor ro = Tensor::from_blob(data, {3}, DType::kFloat32, nullptr);
  EXPECT_EQ(code_of([&] { call(aten("add_.Tensor"), {{"self", OpArg::of(ro)}, {"other", OpArg::of(a)}}); }),
            ErrorCode::kInvalidArgument);
  Tensor i = T({1, 2, 3}, {3}, DType::kInt64);
  EXPECT_EQ(code_of([&] { call(aten("div_.Tensor"), {{"self", OpArg::of(i)}, {"other", OpArg::of(i)}}); }),
            ErrorCode::kDTypeMismatch);
  // Float self with an int other is fine; the result keeps self's dtype.
  Tensor f = T({1, 2, 3}, {3});
  call(aten("add_.Tensor"), {{"self", OpArg::of(f)}, {"other", OpArg::of(i)}});
  EXPECT_EQ(vals(f), (std::vector<double>{2, 4, 6}));
  EXPECT_EQ(f.dtype(), DType::kFloat32);
}

TEST(EwBinary, Comparisons) {
  Tensor a = T({1, 2, 3}, {3});
  Tensor b = T({3, 2, 1}, {3}, DType::kInt64);
  auto cmp = [&](const char* op) {
    Tensor t = call1(aten(std::string(op) + ".Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}});
    EXPECT_EQ(t.dtype(), DType::kBool);
    return vals(t);
  };
  EXPECT_EQ(cmp("eq"), (std::vector<double>{0, 1, 0}));
  EXPECT_EQ(cmp("ne"), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(cmp("lt"), (std::vector<double>{1, 0, 0}));
  EXPECT_EQ(cmp("le"), (std::vector<double>{1, 1, 0}));
  EXPECT_EQ(cmp("gt"), (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(cmp("ge"), (std::vector<double>{0, 1, 1}));
  // int tensor vs float scalar compares in float: 1 < 1.5.
  Tensor s = call1(aten("lt.Scalar"), {{"self", OpArg::of(b)}, {"other", F(1.5)}});
  EXPECT_EQ(vals(s), (std::vector<double>{0, 0, 1}));
}

TEST(EwBinary, LogicalOps) {
  Tensor a = T({0, 1, 2, 0}, {4}, DType::kInt64);
  Tensor b = T({0, 0, 1, 1}, {4}, DType::kBool);
  EXPECT_EQ(vals(call1(aten("logical_and.default"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}})),
            (std::vector<double>{0, 0, 1, 0}));
  EXPECT_EQ(vals(call1(aten("logical_or.default"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}})),
            (std::vector<double>{0, 1, 1, 1}));
}

TEST(EwBinary, Where) {
  Tensor cond = T({1, 0, 1}, {3}, DType::kBool);
  Tensor x = T({1, 2, 3}, {3});
  Tensor y = T({-1}, {1}, DType::kInt64);
  Tensor out = call1(aten("where.self"), {{"condition", OpArg::of(cond)}, {"self", OpArg::of(x)}, {"other", OpArg::of(y)}});
  EXPECT_EQ(out.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(out), (std::vector<double>{1, -1, 3}));
  Tensor so = call1(aten("where.ScalarOther"), {{"condition", OpArg::of(cond)}, {"self", OpArg::of(x)}, {"other", F(0.5)}});
  EXPECT_EQ(vals(so), (std::vector<double>{1, 0.5, 3}));
  // Broadcast condition [2, 1] against [3].
  Tensor c2 = T({1, 0}, {2, 1}, DType::kBool);
  Tensor b2 = call1(aten("where.self"), {{"condition", OpArg::of(c2)}, {"self", OpArg::of(x)}, {"other", OpArg::of(y)}});
  EXPECT_EQ(b2.sizes(), (Shape{2, 3}));
  EXPECT_EQ(vals(b2), (std::vector<double>{1, 2, 3, -1, -1, -1}));
  EXPECT_EQ(code_of([&] {
              call(aten("where.self"), {{"condition", OpArg::of(x)}, {"self", OpArg::of(x)}, {"other", OpArg::of(x)}});
            }),
            ErrorCode::kInvalidArgument);
}

TEST(EwBinary, MaskedFill) {
  Tensor x = T({1, 2, 3, 4}, {2, 2});
  Tensor mask = T({1, 0}, {2}, DType::kBool);
  Tensor out = call1(aten("masked_fill.Scalar"), {{"self", OpArg::of(x)}, {"mask", OpArg::of(mask)}, {"value", F(-1e9)}});
  EXPECT_EQ(vals(out), (std::vector<double>{-1e9, 2, -1e9, 4}));
  Tensor v = Tensor::scalar(7, DType::kFloat32);
  Tensor out2 = call1(aten("masked_fill.Tensor"), {{"self", OpArg::of(x)}, {"mask", OpArg::of(mask)}, {"value", OpArg::of(v)}});
  EXPECT_EQ(vals(out2), (std::vector<double>{7, 2, 7, 4}));
  call(aten("masked_fill_.Scalar"), {{"self", OpArg::of(x)}, {"mask", OpArg::of(mask)}, {"value", I(0)}});
  EXPECT_EQ(vals(x), (std::vector<double>{0, 2, 0, 4}));
}

TEST(EwBinary, IntegerOverflowWraps) {
  Tensor a = T({2147483647}, {1}, DType::kInt32);
  Tensor r = call1(aten("add.Scalar"), {{"self", OpArg::of(a)}, {"other", I(1)}});
  EXPECT_EQ(r.dtype(), DType::kInt32);
  EXPECT_EQ(vals(r)[0], -2147483648.0);
}

TEST(EwBinary, LargeContiguousFastPathMatchesStridedPath) {
  const int64_t n = 1000;
  std::vector<double> av, bv;
  for (int64_t i = 0; i < n; ++i) {
    av.push_back(i * 0.25);
    bv.push_back(1.0 / (i + 1));
  }
  Tensor a = T(av, {n});
  Tensor b = T(bv, {n});
  Tensor fast = call1(aten("mul.Tensor"), {{"self", OpArg::of(a)}, {"other", OpArg::of(b)}});
  std::vector<double> got = vals(fast);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(got[i], static_cast<double>(static_cast<float>(av[i]) * static_cast<float>(bv[i])));
}

}  // namespace
}  // namespace ember::ops::test
