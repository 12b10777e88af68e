// Shape ops: views share storage (writes through a view reach the base), slicing follows
// Python's clamping, and the copying ops (cat, stack, index*, gather, repeat, flip, roll, pad).
#include "ops/ew_test_util.h"

namespace ember::ops::test {
namespace {

Tensor iota(Shape s) {
  Tensor t = Tensor::empty(s, DType::kFloat32);
  for (int64_t i = 0; i < t.numel(); ++i) set_element_from_double(t, i, static_cast<double>(i));
  return t;
}

std::vector<double> seq(std::initializer_list<double> v) { return v; }

TEST(EwShape, ViewSharesStorageAndWritesThrough) {
  Tensor base = iota({2, 3});
  Tensor v = call1(aten("view.default"), {{"self", OpArg::of(base)}, {"size", L({3, -1})}});
  EXPECT_EQ(v.sizes(), (Shape{3, 2}));
  ASSERT_TRUE(shares(v, base));
  set_element_from_double(v, 5, 100);
  EXPECT_EQ(vals(base)[5], 100);
  EXPECT_EQ(code_of([&] { call(aten("view.default"), {{"self", OpArg::of(base)}, {"size", L({4, -1})}}); }),
            ErrorCode::kShapeMismatch);
}

TEST(EwShape, ViewOfNonContiguous) {
  Tensor base = iota({2, 3, 4});
  Tensor p = call1(aten("permute.default"), {{"self", OpArg::of(base)}, {"dims", L({2, 0, 1})}});
  EXPECT_EQ(p.sizes(), (Shape{4, 2, 3}));
  // Merging the last two dims of the permuted tensor is still a view (they stay contiguous together).
  Tensor v = call1(aten("view.default"), {{"self", OpArg::of(p)}, {"size", L({4, 6})}});
  EXPECT_TRUE(shares(v, base));
  EXPECT_EQ(vals(v)[1], 4);
  // Merging the first two is not: view fails, reshape copies.
  EXPECT_EQ(code_of([&] { call(aten("view.default"), {{"self", OpArg::of(p)}, {"size", L({8, 3})}}); }),
            ErrorCode::kInvalidArgument);
  Tensor r = call1(aten("reshape.default"), {{"self", OpArg::of(p)}, {"shape", L({8, 3})}});
  EXPECT_FALSE(shares(r, base));
  EXPECT_EQ(seq({vals(r)[0], vals(r)[1], vals(r)[2], vals(r)[3]}), seq({0, 4, 8, 12}));
  Tensor rv = call1(aten("reshape.default"), {{"self", OpArg::of(base)}, {"shape", L({-1})}});
  EXPECT_TRUE(shares(rv, base));
}

TEST(EwShape, TransposeAndT) {
  Tensor base = iota({2, 3});
  Tensor t = call1(aten("transpose.int"), {{"self", OpArg::of(base)}, {"dim0", I(-1)}, {"dim1", I(0)}});
  EXPECT_EQ(t.sizes(), (Shape{3, 2}));
  EXPECT_EQ(vals(t), seq({0, 3, 1, 4, 2, 5}));
  EXPECT_TRUE(shares(t, base));
  Tensor t1 = call1(aten("t.default"), {{"self", OpArg::of(iota({3}))}});
  EXPECT_EQ(t1.sizes(), (Shape{3}));
  EXPECT_EQ(code_of([&] { call(aten("t.default"), {{"self", OpArg::of(iota({2, 2, 2}))}}); }),
            ErrorCode::kInvalidArgument);
}

TEST(EwShape, FlattenUnflattenSqueezeUnsqueeze) {
  Tensor base = iota({2, 3, 4});
  Tensor f = call1(aten("flatten.using_ints"), {{"self", OpArg::of(base)}, {"start_dim", I(1)}});
  EXPECT_EQ(f.sizes(), (Shape{2, 12}));
  EXPECT_TRUE(shares(f, base));
  Tensor f0 = call1(aten("flatten.using_ints"), {{"self", OpArg::of(Tensor::scalar(3, DType::kFloat32))}});
  EXPECT_EQ(f0.sizes(), (Shape{1}));
  Tensor u = call1(aten("unflatten.int"), {{"self", OpArg::of(f)}, {"dim", I(-1)}, {"sizes", L({3, -1})}});
  EXPECT_EQ(u.sizes(), (Shape{2, 3, 4}));
  Tensor s = iota({1, 3, 1});
  EXPECT_EQ(call1(aten("squeeze.default"), {{"self", OpArg::of(s)}}).sizes(), (Shape{3}));
  EXPECT_EQ(call1(aten("squeeze.dim"), {{"self", OpArg::of(s)}, {"dim", I(-1)}}).sizes(), (Shape{1, 3}));
  EXPECT_EQ(call1(aten("squeeze.dim"), {{"self", OpArg::of(s)}, {"dim", I(1)}}).sizes(), (Shape{1, 3, 1}));
  EXPECT_EQ(call1(aten("squeeze.dims"), {{"self", OpArg::of(s)}, {"dim", L({0, 2})}}).sizes(), (Shape{3}));
  EXPECT_EQ(call1(aten("unsqueeze.default"), {{"self", OpArg::of(s)}, {"dim", I(-1)}}).sizes(), (Shape{1, 3, 1, 1}));
  Tensor us = call1(aten("unsqueeze.default"), {{"self", OpArg::of(iota({2, 3}))}, {"dim", I(1)}});
  EXPECT_EQ(us.sizes(), (Shape{2, 1, 3}));
  EXPECT_EQ(vals(us), seq({0, 1, 2, 3, 4, 5}));
}

TEST(EwShape, ExpandHasZeroStride) {
  Tensor base = iota({3, 1});
  Tensor e = call1(aten("expand.default"), {{"self", OpArg::of(base)}, {"size", L({2, -1, 4})}});
  EXPECT_EQ(e.sizes(), (Shape{2, 3, 4}));
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.strides()[2], 0);
  EXPECT_TRUE(shares(e, base));
  EXPECT_EQ(vals(e)[4], 1);
  EXPECT_EQ(code_of([&] { call(aten("expand.default"), {{"self", OpArg::of(base)}, {"size", L({4, 4})}}); }),
            ErrorCode::kShapeMismatch);
  Tensor ea = call1(aten("expand_as.default"), {{"self", OpArg::of(base)}, {"other", OpArg::of(iota({3, 2}))}});
  EXPECT_EQ(vals(ea), seq({0, 0, 1, 1, 2, 2}));
  // In-place ops refuse to write through expanded (overlapping) views.
  EXPECT_EQ(code_of([&] { call(aten("relu_.default"), {{"self", OpArg::of(e)}}); }), ErrorCode::kInvalidArgument);
}

TEST(EwShape, SliceClampsLikePython) {
  Tensor x = iota({6});
  auto slice = [&](std::optional<int64_t> start, std::optional<int64_t> end, int64_t step) {
    std::map<std::string, OpArg, std::less<>> a{{"self", OpArg::of(x)}, {"dim", I(0)}, {"step", I(step)}};
    a["start"] = start ? I(*start) : OpArg::none();
    a["end"] = end ? I(*end) : OpArg::none();
    return call1(aten("slice.Tensor"), a);
  };
  EXPECT_EQ(vals(slice(1, 4, 1)), seq({1, 2, 3}));
  EXPECT_EQ(vals(slice(-2, std::nullopt, 1)), seq({4, 5}));
  EXPECT_EQ(vals(slice(0, INT64_MAX, 2)), seq({0, 2, 4}));
  EXPECT_EQ(vals(slice(-100, 100, 1)).size(), 6u);
  EXPECT_EQ(slice(4, 2, 1).sizes(), (Shape{0}));
  EXPECT_EQ(slice(10, 20, 1).sizes(), (Shape{0}));
  EXPECT_EQ(vals(slice(1, -1, 3)), seq({1, 4}));
  Tensor s = slice(2, 5, 1);
  EXPECT_TRUE(shares(s, x));
  set_element_from_double(s, 0, -1);
  EXPECT_EQ(vals(x)[2], -1);
  EXPECT_EQ(code_of([&] { slice(0, 1, 0); }), ErrorCode::kInvalidArgument);
  // Slice along dim 1 of a 2-D tensor.
  Tensor m = iota({2, 4});
  Tensor c = call1(aten("slice.Tensor"), {{"self", OpArg::of(m)}, {"dim", I(1)}, {"start", I(1)}, {"end", I(3)}});
  EXPECT_EQ(vals(c), seq({1, 2, 5, 6}));
}

TEST(EwShape, SelectNarrowNegativeIndex) {
  Tensor m = iota({3, 4});
  EXPECT_EQ(vals(call1(aten("select.int"), {{"self", OpArg::of(m)}, {"dim", I(0)}, {"index", I(-1)}})),
            seq({8, 9, 10, 11}));
  EXPECT_EQ(vals(call1(aten("select.int"), {{"self", OpArg::of(m)}, {"dim", I(-1)}, {"index", I(1)}})), seq({1, 5, 9}));
  EXPECT_EQ(code_of([&] { call(aten("select.int"), {{"self", OpArg::of(m)}, {"dim", I(0)}, {"index", I(3)}}); }),
            ErrorCode::kInvalidArgument);
  Tensor n = call1(aten("narrow.default"), {{"self", OpArg::of(m)}, {"dim", I(1)}, {"start", I(-2)}, {"length", I(2)}});
  EXPECT_EQ(vals(n), seq({2, 3, 6, 7, 10, 11}));
  EXPECT_TRUE(shares(n, m));
  EXPECT_EQ(code_of([&] {
              call(aten("narrow.default"), {{"self", OpArg::of(m)}, {"dim", I(1)}, {"start", I(3)}, {"length", I(2)}});
            }),
            ErrorCode::kInvalidArgument);
}

TEST(EwShape, SplitChunkUnbind) {
  Tensor x = iota({5, 2});
  std::vector<OpArg> sp = call(aten("split.Tensor"), {{"self", OpArg::of(x)}, {"split_size", I(2)}});
  ASSERT_EQ(sp.size(), 1u);
  ASSERT_EQ(sp[0].tensors.size(), 3u);
  EXPECT_EQ(sp[0].tensors[2].sizes(), (Shape{1, 2}));
  EXPECT_EQ(vals(sp[0].tensors[1]), seq({4, 5, 6, 7}));
  EXPECT_TRUE(shares(sp[0].tensors[1], x));
  std::vector<OpArg> ws =
      call(aten("split_with_sizes.default"), {{"self", OpArg::of(x)}, {"split_sizes", L({1, 1})}, {"dim", I(-1)}});
  EXPECT_EQ(vals(ws[0].tensors[1]), seq({1, 3, 5, 7, 9}));
  EXPECT_EQ(code_of([&] { call(aten("split_with_sizes.default"), {{"self", OpArg::of(x)}, {"split_sizes", L({2, 2})}}); }),
            ErrorCode::kShapeMismatch);
  std::vector<OpArg> ch = call(aten("chunk.default"), {{"self", OpArg::of(x)}, {"chunks", I(3)}});
  ASSERT_EQ(ch[0].tensors.size(), 3u);  // sizes 2, 2, 1
  EXPECT_EQ(ch[0].tensors[2].sizes(), (Shape{1, 2}));
  std::vector<OpArg> ub = call(aten("unbind.int"), {{"self", OpArg::of(x)}, {"dim", I(1)}});
  ASSERT_EQ(ub[0].tensors.size(), 2u);
  EXPECT_EQ(vals(ub[0].tensors[0]), seq({0, 2, 4, 6, 8}));
}

TEST(EwShape, AsStrided) {
  Tensor x = iota({6});
  Tensor a = call1(aten("as_strided.default"),
                   {{"self", OpArg::of(x)}, {"size", L({2, 2})}, {"stride", L({1, 2})}, {"storage_offset", I(1)}});
  EXPECT_EQ(vals(a), seq({1, 3, 2, 4}));
  EXPECT_TRUE(shares(a, x));
}

TEST(EwShape, CatPromotesAndSkipsLegacyEmpty) {
  Tensor a = iota({2, 2});
  Tensor b = T({10, 11}, {1, 2}, DType::kInt64);
  Tensor legacy = Tensor::empty({0}, DType::kFloat32);
  Tensor out = call1(aten("cat.default"), {{"tensors", Ts({a, legacy, b})}});
  EXPECT_EQ(out.sizes(), (Shape{3, 2}));
  EXPECT_EQ(out.dtype(), DType::kFloat32);
  EXPECT_EQ(vals(out), seq({0, 1, 2, 3, 10, 11}));
  Tensor c = call1(aten("cat.default"), {{"tensors", Ts({a, a.as_strided({2, 2}, {1, 2}, 0)})}, {"dim", I(-1)}});
  EXPECT_EQ(vals(c), seq({0, 1, 0, 2, 2, 3, 1, 3}));
  EXPECT_EQ(code_of([&] { call(aten("cat.default"), {{"tensors", Ts({a, iota({2, 3})})}}); }), ErrorCode::kShapeMismatch);
  // Empty (0-row) tensors of the right rank are fine.
  Tensor e = call1(aten("cat.default"), {{"tensors", Ts({Tensor::empty({0, 2}, DType::kFloat32), a})}});
  EXPECT_EQ(e.sizes(), (Shape{2, 2}));
}

TEST(EwShape, Stack) {
  Tensor a = iota({2});
  Tensor b = T({5, 6}, {2});
  Tensor s0 = call1(aten("stack.default"), {{"tensors", Ts({a, b})}});
  EXPECT_EQ(s0.sizes(), (Shape{2, 2}));
  EXPECT_EQ(vals(s0), seq({0, 1, 5, 6}));
  Tensor s1 = call1(aten("stack.default"), {{"tensors", Ts({a, b})}, {"dim", I(-1)}});
  EXPECT_EQ(vals(s1), seq({0, 5, 1, 6}));
}

TEST(EwShape, IndexSelectAndGather) {
  Tensor x = iota({3, 2});
  Tensor idx = T({2, 0, 2}, {3}, DType::kInt64);
  EXPECT_EQ(vals(call1(aten("index_select.default"), {{"self", OpArg::of(x)}, {"dim", I(0)}, {"index", OpArg::of(idx)}})),
            seq({4, 5, 0, 1, 4, 5}));
  Tensor bad = T({3}, {1}, DType::kInt64);
  EXPECT_EQ(code_of([&] {
              call(aten("index_select.default"), {{"self", OpArg::of(x)}, {"dim", I(0)}, {"index", OpArg::of(bad)}});
            }),
            ErrorCode::kInvalidArgument);
  Tensor gi = T({1, 0, 0, 0}, {2, 2}, DType::kInt64);
  EXPECT_EQ(vals(call1(aten("gather.default"), {{"self", OpArg::of(x)}, {"dim", I(1)}, {"index", OpArg::of(gi)}})),
            seq({1, 0, 2, 2}));
}

TEST(EwShape, AdvancedIndexing) {
  Tensor x = iota({3, 4});
  // One index tensor on dim 0 (2-D index -> result [2, 2, 4]).
  Tensor i0 = T({2, 0, 1, 1}, {2, 2}, DType::kInt64);
  Tensor r0 = call1(aten("index.Tensor"), {{"self", OpArg::of(x)}, {"indices", OptTs({i0})}});
  EXPECT_EQ(r0.sizes(), (Shape{2, 2, 4}));
  EXPECT_EQ(vals(r0)[0], 8);
  // Index on dim 1 only (None for dim 0), with a negative index.
  Tensor i1 = T({-1, 0}, {2}, DType::kInt64);
  Tensor r1 = call1(aten("index.Tensor"), {{"self", OpArg::of(x)}, {"indices", OptTs({Tensor(), i1})}});
  EXPECT_EQ(r1.sizes(), (Shape{3, 2}));
  EXPECT_EQ(vals(r1), seq({3, 0, 7, 4, 11, 8}));
  // Two index tensors broadcast together: x[[0, 2], [1]] -> [1, 9].
  Tensor a = T({0, 2}, {2}, DType::kInt64);
  Tensor b = T({1}, {1}, DType::kInt64);
  EXPECT_EQ(vals(call1(aten("index.Tensor"), {{"self", OpArg::of(x)}, {"indices", OptTs({a, b})}})), seq({1, 9}));
  // Boolean mask over all dims.
  Tensor m = T({1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, {3, 4}, DType::kBool);
  EXPECT_EQ(vals(call1(aten("index.Tensor"), {{"self", OpArg::of(x)}, {"indices", OptTs({m})}})), seq({0, 3, 11}));
  // Boolean mask on dim 0 keeps the rows.
  Tensor rm = T({0, 1, 1}, {3}, DType::kBool);
  Tensor rows = call1(aten("index.Tensor"), {{"self", OpArg::of(x)}, {"indices", OptTs({rm})}});
  EXPECT_EQ(rows.sizes(), (Shape{2, 4}));
  EXPECT_EQ(vals(rows)[0], 4);
  // Non-adjacent index dims move the broadcast dims first: y[[0,1], :, [1,0]] on [2,3,2].
  Tensor y = iota({2, 3, 2});
  Tensor p = T({0, 1}, {2}, DType::kInt64);
  Tensor q = T({1, 0}, {2}, DType::kInt64);
  Tensor na = call1(aten("index.Tensor"), {{"self", OpArg::of(y)}, {"indices", OptTs({p, Tensor(), q})}});
  EXPECT_EQ(na.sizes(), (Shape{2, 3}));
  EXPECT_EQ(vals(na), seq({1, 3, 5, 6, 8, 10}));
  EXPECT_EQ(code_of([&] {
              call(aten("index.Tensor"), {{"self", OpArg::of(x)}, {"indices", OptTs({T({3}, {1}, DType::kInt64)})}});
            }),
            ErrorCode::kInvalidArgument);
}

TEST(EwShape, RepeatFlipRollPad) {
  Tensor x = iota({2});
  Tensor r = call1(aten("repeat.default"), {{"self", OpArg::of(x)}, {"repeats", L({2, 2})}});
  EXPECT_EQ(r.sizes(), (Shape{2, 4}));
  EXPECT_EQ(vals(r), seq({0, 1, 0, 1, 0, 1, 0, 1}));
  Tensor m = iota({2, 3});
  EXPECT_EQ(vals(call1(aten("flip.default"), {{"self", OpArg::of(m)}, {"dims", L({-1})}})), seq({2, 1, 0, 5, 4, 3}));
  EXPECT_EQ(vals(call1(aten("flip.default"), {{"self", OpArg::of(m)}, {"dims", L({0, 1})}})), seq({5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(vals(call1(aten("roll.default"), {{"self", OpArg::of(m)}, {"shifts", L({1})}, {"dims", L({1})}})),
            seq({2, 0, 1, 5, 3, 4}));
  EXPECT_EQ(vals(call1(aten("roll.default"), {{"self", OpArg::of(m)}, {"shifts", L({-1})}})), seq({1, 2, 3, 4, 5, 0}));
  Tensor p = call1(aten("constant_pad_nd.default"), {{"self", OpArg::of(m)}, {"pad", L({1, 0, 0, 1})}, {"value", F(9)}});
  EXPECT_EQ(p.sizes(), (Shape{3, 4}));
  EXPECT_EQ(vals(p), seq({9, 0, 1, 2, 9, 3, 4, 5, 9, 9, 9, 9}));
  // Negative padding crops.
  Tensor c = call1(aten("constant_pad_nd.default"), {{"self", OpArg::of(m)}, {"pad", L({-1, 0})}});
  EXPECT_EQ(vals(c), seq({1, 2, 4, 5}));
  Tensor pd = call1(aten("pad.default"), {{"self", OpArg::of(x)}, {"pad", L({2, 1})}});
  EXPECT_EQ(vals(pd), seq({0, 0, 0, 1, 0}));
}

}  // namespace
}  // namespace ember::ops::test
