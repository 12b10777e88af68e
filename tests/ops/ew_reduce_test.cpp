// Reductions: dims (negative, lists, keepdim), dtype rules, NaN and empty inputs.
#include <cmath>
#include <limits>

#include "ops/ew_test_util.h"

namespace ember::ops::test {
namespace {

Tensor x23() { return T({1, 2, 3, 4, 5, 6}, {2, 3}); }

TEST(EwReduce, SumDims) {
  Tensor s = call1(aten("sum.dim_IntList"), {{"self", OpArg::of(x23())}, {"dim", L({-1})}});
  EXPECT_EQ(s.sizes(), (Shape{2}));
  EXPECT_EQ(vals(s), (std::vector<double>{6, 15}));
  Tensor k = call1(aten("sum.dim_IntList"), {{"self", OpArg::of(x23())}, {"dim", L({0})}, {"keepdim", B(true)}});
  EXPECT_EQ(k.sizes(), (Shape{1, 3}));
  EXPECT_EQ(vals(k), (std::vector<double>{5, 7, 9}));
  Tensor all = call1(aten("sum.default"), {{"self", OpArg::of(x23())}});
  EXPECT_EQ(all.sizes(), Shape{});
  EXPECT_EQ(vals(all), (std::vector<double>{21}));
  // dim=None (and an empty list) reduce everything.
  EXPECT_EQ(vals(call1(aten("sum.dim_IntList"), {{"self", OpArg::of(x23())}, {"dim", OpArg::none()}})),
            (std::vector<double>{21}));
  EXPECT_EQ(vals(call1(aten("sum.dim_IntList"), {{"self", OpArg::of(x23())}, {"dim", L({})}})),
            (std::vector<double>{21}));
  EXPECT_EQ(code_of([&] { call(aten("sum.dim_IntList"), {{"self", OpArg::of(x23())}, {"dim", L({2})}}); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { call(aten("sum.dim_IntList"), {{"self", OpArg::of(x23())}, {"dim", L({0, -2})}}); }),
            ErrorCode::kInvalidArgument);
}

TEST(EwReduce, IntSumIsInt64) {
  Tensor i = T({1, 2, 3}, {3}, DType::kInt32);
  Tensor s = call1(aten("sum.default"), {{"self", OpArg::of(i)}});
  EXPECT_EQ(s.dtype(), DType::kInt64);
  EXPECT_EQ(vals(s), (std::vector<double>{6}));
  Tensor b = T({1, 0, 1}, {3}, DType::kBool);
  Tensor sb = call1(aten("sum.dim_IntList"), {{"self", OpArg::of(b)}, {"dim", L({0})}});
  EXPECT_EQ(sb.dtype(), DType::kInt64);
  EXPECT_EQ(vals(sb), (std::vector<double>{2}));
  Tensor sf = call1(aten("sum.default"), {{"self", OpArg::of(i)}, {"dtype", D(DType::kFloat32)}});
  EXPECT_EQ(sf.dtype(), DType::kFloat32);
}

TEST(EwReduce, SumOfNonContiguousAndEmpty) {
  Tensor t = x23().as_strided({3, 2}, {1, 3}, 0);  // transpose
  EXPECT_EQ(vals(call1(aten("sum.dim_IntList"), {{"self", OpArg::of(t)}, {"dim", L({1})}})),
            (std::vector<double>{5, 7, 9}));
  Tensor e = Tensor::empty({0, 3}, DType::kFloat32);
  Tensor s = call1(aten("sum.dim_IntList"), {{"self", OpArg::of(e)}, {"dim", L({0})}});
  EXPECT_EQ(s.sizes(), (Shape{3}));
  EXPECT_EQ(vals(s), (std::vector<double>{0, 0, 0}));
  std::vector<double> m = vals(call1(aten("mean.dim"), {{"self", OpArg::of(e)}, {"dim", L({0})}}));
  EXPECT_TRUE(std::isnan(m[0]));
}

TEST(EwReduce, Mean) {
  EXPECT_EQ(vals(call1(aten("mean.dim"), {{"self", OpArg::of(x23())}, {"dim", L({-1, -2})}, {"keepdim", B(true)}})),
            (std::vector<double>{3.5}));
  EXPECT_EQ(vals(call1(aten("mean.default"), {{"self", OpArg::of(x23())}})), (std::vector<double>{3.5}));
  Tensor i = T({1, 2}, {2}, DType::kInt64);
  EXPECT_EQ(code_of([&] { call(aten("mean.default"), {{"self", OpArg::of(i)}}); }), ErrorCode::kDTypeMismatch);
  Tensor m = call1(aten("mean.default"), {{"self", OpArg::of(i)}, {"dtype", D(DType::kFloat32)}});
  EXPECT_EQ(vals(m), (std::vector<double>{1.5}));
  // 4-D mean over H, W (adaptive average pooling as decomposed by export).
  Tensor x = T({1, 2, 3, 4, 5, 6, 7, 8}, {1, 2, 2, 2});
  Tensor p = call1(aten("mean.dim"), {{"self", OpArg::of(x)}, {"dim", L({-1, -2})}, {"keepdim", B(true)}});
  EXPECT_EQ(p.sizes(), (Shape{1, 2, 1, 1}));
  EXPECT_EQ(vals(p), (std::vector<double>{2.5, 6.5}));
}

TEST(EwReduce, AmaxAminAndMaxDim) {
  Tensor x = T({3, 1, 4, 1, 5, 9, 2, 6}, {2, 4});
  EXPECT_EQ(vals(call1(aten("amax.default"), {{"self", OpArg::of(x)}, {"dim", L({1})}})), (std::vector<double>{4, 9}));
  EXPECT_EQ(vals(call1(aten("amin.default"), {{"self", OpArg::of(x)}, {"dim", L({0})}})),
            (std::vector<double>{3, 1, 2, 1}));
  EXPECT_EQ(vals(call1(aten("amax.default"), {{"self", OpArg::of(x)}})), (std::vector<double>{9}));
  std::vector<OpArg> mx = call(aten("max.dim"), {{"self", OpArg::of(x)}, {"dim", I(1)}, {"keepdim", B(true)}});
  ASSERT_EQ(mx.size(), 2u);
  EXPECT_EQ(mx[0].tensor.sizes(), (Shape{2, 1}));
  EXPECT_EQ(vals(mx[0].tensor), (std::vector<double>{4, 9}));
  EXPECT_EQ(mx[1].tensor.dtype(), DType::kInt64);
  EXPECT_EQ(vals(mx[1].tensor), (std::vector<double>{2, 1}));
  // Ties: the first index.
  std::vector<OpArg> mn = call(aten("min.dim"), {{"self", OpArg::of(x)}, {"dim", I(-1)}});
  EXPECT_EQ(vals(mn[1].tensor), (std::vector<double>{1, 2}));
  EXPECT_EQ(vals(call1(aten("max.default"), {{"self", OpArg::of(x)}})), (std::vector<double>{9}));
  EXPECT_EQ(vals(call1(aten("min.default"), {{"self", OpArg::of(x)}})), (std::vector<double>{1}));
  // NaN wins.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(std::isnan(vals(call1(aten("amax.default"), {{"self", OpArg::of(T({1, nan, 3}, {3}))}}))[0]));
  // Empty reduction errors.
  EXPECT_EQ(code_of([&] { call(aten("amax.default"), {{"self", OpArg::of(Tensor::empty({0}, DType::kFloat32))}}); }),
            ErrorCode::kInvalidArgument);
}

TEST(EwReduce, ArgmaxArgmin) {
  Tensor x = T({3, 1, 4, 1, 5, 9, 2, 6}, {2, 4});
  Tensor a = call1(aten("argmax.default"), {{"self", OpArg::of(x)}});
  EXPECT_EQ(a.sizes(), Shape{});
  EXPECT_EQ(vals(a), (std::vector<double>{5}));
  EXPECT_EQ(vals(call1(aten("argmax.default"), {{"self", OpArg::of(x)}, {"dim", I(1)}})), (std::vector<double>{2, 1}));
  Tensor k = call1(aten("argmin.default"), {{"self", OpArg::of(x)}, {"dim", I(0)}, {"keepdim", B(true)}});
  EXPECT_EQ(k.sizes(), (Shape{1, 4}));
  EXPECT_EQ(vals(k), (std::vector<double>{0, 0, 1, 0}));
  // Flattened index of a transposed input follows the logical (row-major) order.
  Tensor t = x.as_strided({4, 2}, {1, 4}, 0);
  EXPECT_EQ(vals(call1(aten("argmax.default"), {{"self", OpArg::of(t)}})), (std::vector<double>{3}));
}

TEST(EwReduce, ProdVarStd) {
  Tensor x = T({1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(vals(call1(aten("prod.default"), {{"self", OpArg::of(x)}})), (std::vector<double>{24}));
  EXPECT_EQ(vals(call1(aten("prod.dim_int"), {{"self", OpArg::of(x)}, {"dim", I(1)}})), (std::vector<double>{2, 12}));
  Tensor i = T({2, 3}, {2}, DType::kInt32);
  EXPECT_EQ(call1(aten("prod.default"), {{"self", OpArg::of(i)}}).dtype(), DType::kInt64);
  // var([1,2,3,4]) unbiased = 1.6666667; population = 1.25.
  Tensor v = T({1, 2, 3, 4}, {4});
  EXPECT_NEAR(vals(call1(aten("var.correction"), {{"self", OpArg::of(v)}}))[0], 5.0 / 3.0, 1e-6);
  EXPECT_EQ(vals(call1(aten("var.correction"), {{"self", OpArg::of(v)}, {"correction", I(0)}}))[0], 1.25);
  EXPECT_NEAR(vals(call1(aten("std.dim"), {{"self", OpArg::of(v)}, {"dim", L({0})}, {"unbiased", B(false)}}))[0],
              std::sqrt(1.25), 1e-6);
  EXPECT_EQ(vals(call1(aten("var.dim"), {{"self", OpArg::of(x)}, {"dim", L({1})}})), (std::vector<double>{0.5, 0.5}));
}

TEST(EwReduce, AnyAll) {
  Tensor b = T({0, 1, 0, 0}, {2, 2}, DType::kBool);
  EXPECT_EQ(vals(call1(aten("any.default"), {{"self", OpArg::of(b)}})), (std::vector<double>{1}));
  EXPECT_EQ(vals(call1(aten("all.default"), {{"self", OpArg::of(b)}})), (std::vector<double>{0}));
  EXPECT_EQ(vals(call1(aten("any.dim"), {{"self", OpArg::of(b)}, {"dim", I(1)}})), (std::vector<double>{1, 0}));
  EXPECT_EQ(vals(call1(aten("all.dims"), {{"self", OpArg::of(T({1, 2, 0, 3}, {2, 2}))}, {"dim", L({0})}})),
            (std::vector<double>{0, 1}));
}

TEST(EwReduce, HalfSumRoundsOnce) {
  // 2048 + 1 + 1 in float16: sequential half adds would stay at 2048 (ulp 2); one final rounding gives 2050.
  Tensor h = T({2048, 1, 1}, {3}, DType::kFloat16);
  Tensor s = call1(aten("sum.default"), {{"self", OpArg::of(h)}});
  EXPECT_EQ(s.dtype(), DType::kFloat16);
  EXPECT_EQ(vals(s), (std::vector<double>{2050}));
}

}  // namespace
}  // namespace ember::ops::test
