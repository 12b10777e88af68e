// Creation, conversion and size-query ops.
#include "ops/ew_test_util.h"

namespace ember::ops::test {
namespace {

TEST(EwCreate, ArangeDtypeAndLength) {
  Tensor a = call1(aten("arange.default"), {{"end", I(5)}});
  EXPECT_EQ(a.dtype(), DType::kInt64);
  EXPECT_EQ(vals(a), (std::vector<double>{0, 1, 2, 3, 4}));
  Tensor f = call1(aten("arange.start_step"), {{"start", I(0)}, {"end", F(1.0)}, {"step", F(0.3)}});
  EXPECT_EQ(f.dtype(), DType::kFloat32);
  // ceil((1 - 0) / 0.3) = 4: 0, 0.3, 0.6, 0.9.
  ASSERT_EQ(f.sizes(), (Shape{4}));
  EXPECT_FLOAT_EQ(static_cast<float>(vals(f)[3]), 0.9f);
  Tensor n = call1(aten("arange.start_step"), {{"start", I(10)}, {"end", I(0)}, {"step", I(-3)}});
  EXPECT_EQ(vals(n), (std::vector<double>{10, 7, 4, 1}));
  Tensor s = call1(aten("arange.start"), {{"start", I(2)}, {"end", I(4)}, {"dtype", D(DType::kFloat32)}});
  EXPECT_EQ(s.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(s), (std::vector<double>{2, 3}));
  EXPECT_EQ(call1(aten("arange.start"), {{"start", I(3)}, {"end", I(3)}}).sizes(), (Shape{0}));
  EXPECT_EQ(code_of([&] { call(aten("arange.start_step"), {{"start", I(0)}, {"end", I(5)}, {"step", I(0)}}); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { call(aten("arange.start_step"), {{"start", I(0)}, {"end", I(5)}, {"step", I(-1)}}); }),
            ErrorCode::kInvalidArgument);
}

TEST(EwCreate, FullZerosOnesEmpty) {
  Tensor f = call1(aten("full.default"), {{"size", L({2, 2})}, {"fill_value", F(1.5)}});
  EXPECT_EQ(f.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(f), (std::vector<double>{1.5, 1.5, 1.5, 1.5}));
  EXPECT_EQ(call1(aten("full.default"), {{"size", L({1})}, {"fill_value", I(3)}}).dtype(), DType::kInt64);
  EXPECT_EQ(call1(aten("full.default"), {{"size", L({1})}, {"fill_value", B(true)}}).dtype(), DType::kBool);
  Tensor z = call1(aten("zeros.default"), {{"size", L({3})}});
  EXPECT_EQ(z.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(z), (std::vector<double>{0, 0, 0}));
  Tensor o = call1(aten("ones.default"), {{"size", L({2})}, {"dtype", D(DType::kInt32)}});
  EXPECT_EQ(o.dtype(), DType::kInt32);
  EXPECT_EQ(vals(o), (std::vector<double>{1, 1}));
  EXPECT_EQ(call1(aten("empty.memory_format"), {{"size", L({0, 4})}}).sizes(), (Shape{0, 4}));
  Tensor base = T({1, 2, 3}, {3}, DType::kFloat16);
  Tensor zl = call1(aten("zeros_like.default"), {{"self", OpArg::of(base)}});
  EXPECT_EQ(zl.dtype(), DType::kFloat16);
  EXPECT_EQ(vals(call1(aten("ones_like.default"), {{"self", OpArg::of(base)}, {"dtype", D(DType::kInt64)}})),
            (std::vector<double>{1, 1, 1}));
  EXPECT_EQ(vals(call1(aten("full_like.default"), {{"self", OpArg::of(base)}, {"fill_value", F(0.5)}})),
            (std::vector<double>{0.5, 0.5, 0.5}));
  EXPECT_EQ(call1(aten("empty_like.default"), {{"self", OpArg::of(base)}}).sizes(), (Shape{3}));
  EXPECT_EQ(call1(aten("new_zeros.default"), {{"self", OpArg::of(base)}, {"size", L({2, 1})}}).dtype(), DType::kFloat16);
  Tensor st = call1(aten("scalar_tensor.default"), {{"s", I(4)}});
  EXPECT_EQ(st.dtype(), DType::kFloat32);
  EXPECT_EQ(st.sizes(), Shape{});
  EXPECT_EQ(vals(st), (std::vector<double>{4}));
}

TEST(EwCreate, ConversionsAndAliasing) {
  Tensor x = T({1.7, -1.7, 2.5}, {3});
  Tensor i = call1(aten("_to_copy.default"), {{"self", OpArg::of(x)}, {"dtype", D(DType::kInt64)}});
  EXPECT_EQ(i.dtype(), DType::kInt64);
  EXPECT_EQ(vals(i), (std::vector<double>{1, -1, 2}));  // truncation toward zero
  Tensor same = call1(aten("to.dtype"), {{"self", OpArg::of(x)}, {"dtype", D(DType::kFloat32)}});
  EXPECT_TRUE(shares(same, x));
  Tensor copied = call1(aten("to.dtype"), {{"self", OpArg::of(x)}, {"dtype", D(DType::kFloat32)}, {"copy", B(true)}});
  EXPECT_FALSE(shares(copied, x));
  Tensor h = call1(aten("to.dtype_layout"), {{"self", OpArg::of(x)}, {"dtype", D(DType::kFloat16)}});
  EXPECT_EQ(h.dtype(), DType::kFloat16);
  EXPECT_EQ(vals(h)[0], 1.7001953125);  // nearest float16 to 1.7
  Tensor b = call1(aten("_to_copy.default"), {{"self", OpArg::of(T({0, 0.1, -2}, {3}))}, {"dtype", D(DType::kBool)}});
  EXPECT_EQ(vals(b), (std::vector<double>{0, 1, 1}));
  Tensor ta = call1(aten("type_as.default"), {{"self", OpArg::of(x)}, {"other", OpArg::of(T({1}, {1}, DType::kInt32))}});
  EXPECT_EQ(ta.dtype(), DType::kInt32);
  Tensor al = call1(aten("alias.default"), {{"self", OpArg::of(x)}});
  Tensor de = call1(aten("detach.default"), {{"self", OpArg::of(x)}});
  EXPECT_TRUE(shares(al, x) && shares(de, x));
  Tensor cl = call1(aten("clone.default"), {{"self", OpArg::of(x)}});
  EXPECT_FALSE(shares(cl, x));
  Tensor lf = call1(aten("lift_fresh_copy.default"), {{"self", OpArg::of(x)}});
  EXPECT_FALSE(shares(lf, x));
  Tensor t = x.as_strided({2}, {2}, 0);
  Tensor ct = call1(aten("contiguous.default"), {{"self", OpArg::of(t)}});
  EXPECT_TRUE(ct.is_contiguous());
  EXPECT_EQ(vals(ct), (std::vector<double>{1.7f, 2.5}));
  EXPECT_TRUE(shares(call1(aten("contiguous.default"), {{"self", OpArg::of(x)}}), x));
}

TEST(EwCreate, CopyInPlaceBroadcastsAndConverts) {
  Tensor dst = Tensor::zeros({2, 3}, DType::kFloat32);
  Tensor row = call1(aten("select.int"), {{"self", OpArg::of(dst)}, {"dim", I(0)}, {"index", I(0)}});
  Tensor src = T({1, 2, 3}, {3}, DType::kInt64);
  Tensor out = call1(aten("copy_.default"), {{"self", OpArg::of(row)}, {"src", OpArg::of(src)}});
  EXPECT_TRUE(shares(out, dst));
  EXPECT_EQ(vals(dst), (std::vector<double>{1, 2, 3, 0, 0, 0}));
  call(aten("copy_.default"), {{"self", OpArg::of(dst)}, {"src", OpArg::of(Tensor::scalar(7, DType::kFloat32))}});
  EXPECT_EQ(vals(dst), (std::vector<double>{7, 7, 7, 7, 7, 7}));
  EXPECT_EQ(code_of([&] { call(aten("copy_.default"), {{"self", OpArg::of(row)}, {"src", OpArg::of(dst)}}); }),
            ErrorCode::kShapeMismatch);
  Tensor c = call1(aten("copy.default"), {{"self", OpArg::of(dst)}, {"src", OpArg::of(src)}});
  EXPECT_FALSE(shares(c, dst));
  EXPECT_EQ(vals(c), (std::vector<double>{1, 2, 3, 1, 2, 3}));
}

TEST(EwCreate, SizeQueries) {
  Tensor x = Tensor::zeros({2, 5}, DType::kFloat32);
  std::vector<OpArg> s = call(aten("sym_size.int"), {{"self", OpArg::of(x)}, {"dim", I(-1)}});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].kind, OpArg::Kind::kInt);
  EXPECT_EQ(s[0].i, 5);
  EXPECT_EQ(call(aten("sym_numel.default"), {{"self", OpArg::of(x)}})[0].i, 10);
  EXPECT_EQ(call(aten("sym_stride.int"), {{"self", OpArg::of(x)}, {"dim", I(0)}})[0].i, 5);
  EXPECT_EQ(code_of([&] { call(aten("sym_size.int"), {{"self", OpArg::of(x)}, {"dim", I(2)}}); }),
            ErrorCode::kInvalidArgument);
}

TEST(EwCreate, InferHandlesUnknownSizes) {
  // Symbolic batch (-1): elementwise broadcast and views keep it unknown.
  const OpDef* add = Registry::global().find(aten("add.Tensor"));
  ASSERT_NE(add, nullptr);
  std::vector<TensorSpec> o = add->infer(OpCall("n", add->target,
                                                {{"self", OpArg::of_spec({DType::kFloat32, {-1, 4}})},
                                                 {"other", OpArg::of_spec({DType::kFloat32, {4}})},
                                                 {"alpha", I(1)}},
                                                true));
  EXPECT_EQ(o.at(0).sizes, (Shape{-1, 4}));
  const OpDef* view = Registry::global().find(aten("view.default"));
  o = view->infer(OpCall("n", view->target, {{"self", OpArg::of_spec({DType::kFloat32, {-1, 4}})}, {"size", L({-1, 2, 2})}},
                         true));
  EXPECT_EQ(o.at(0).sizes, (Shape{-1, 2, 2}));
  const OpDef* sum = Registry::global().find(aten("sum.dim_IntList"));
  o = sum->infer(OpCall("n", sum->target,
                        {{"self", OpArg::of_spec({DType::kInt32, {-1, 4}})},
                         {"dim", L({1})},
                         {"keepdim", B(false)},
                         {"dtype", OpArg::none()}},
                        true));
  EXPECT_EQ(o.at(0), (TensorSpec{DType::kInt64, {-1}}));
}

}  // namespace
}  // namespace ember::ops::test
