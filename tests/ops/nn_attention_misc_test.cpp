// Attention, embedding, dropout, topk and cumsum ops against naive loops and hand-checked values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "nn_test_util.h"

namespace ember::ops::test {
namespace {

// Naive attention over [B, H, L, E] inputs. mask_fn(b, h, i, j) returns an additive bias
// (-inf to mask). Fully masked rows give zeros. Also returns the logsumexp per row.
template <typename MaskFn>
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, MaskFn mask_fn,
                                    std::vector<double>* lse, int64_t gqa = 1) {
  int64_t B = q.size(0), H = q.size(1), L = q.size(2), E = q.size(3), S = k.size(2), Ev = v.size(3);
  int64_t Hk = k.size(1);
  std::vector<double> qv = values(q), kv = values(k), vv = values(v), out(B * H * L * Ev, 0.0);
  lse->assign(B * H * L, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      int64_t hk = h / gqa;
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> s(S);
        double mx = -INFINITY;
        for (int64_t j = 0; j < S; ++j) {
          double d = 0;
          for (int64_t e = 0; e < E; ++e) d += qv[((b * H + h) * L + i) * E + e] * kv[((b * Hk + hk) * S + j) * E + e];
          s[j] = d * scale + mask_fn(b, h, i, j);
          mx = std::max(mx, s[j]);
        }
        if (mx == -INFINITY) {
          (*lse)[(b * H + h) * L + i] = -INFINITY;
          continue;
        }
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        (*lse)[(b * H + h) * L + i] = mx + std::log(sum);
        for (int64_t j = 0; j < S; ++j)
          for (int64_t e = 0; e < Ev; ++e)
            out[((b * H + h) * L + i) * Ev + e] += s[j] / sum * vv[((b * Hk + hk) * S + j) * Ev + e];
      }
    }
  return out;
}

const char* kSdpa = "torch.ops.aten.scaled_dot_product_attention.default";

TEST(Sdpa, PlainCausalAndScale) {
  Tensor q = rand({2, 3, 4, 8}, 1), k = rand({2, 3, 5, 8}, 2), v = rand({2, 3, 5, 6}, 3);
  std::vector<double> lse;
  auto none = [](int64_t, int64_t, int64_t, int64_t) { return 0.0; };
  Tensor y = call1(kSdpa, {{"query", OpArg::of(q)}, {"key", OpArg::of(k)}, {"value", OpArg::of(v)}});
  EXPECT_EQ(y.sizes(), (Shape{2, 3, 4, 6}));
  expect_close(y, naive_attention(q, k, v, 1 / std::sqrt(8.0), none, &lse));
  // Causal: key j visible from query i when j <= i (top-left aligned).
  auto causal = [](int64_t, int64_t, int64_t i, int64_t j) { return j > i ? -INFINITY : 0.0; };
  y = call1(kSdpa, {{"query", OpArg::of(q)},
                    {"key", OpArg::of(k)},
                    {"value", OpArg::of(v)},
                    {"is_causal", OpArg::of_bool(true)},
                    {"scale", OpArg::of_float(0.3)}});
  expect_close(y, naive_attention(q, k, v, 0.3, causal, &lse));
}

TEST(Sdpa, BoolAndFloatMasks) {
  Tensor q = rand({1, 2, 3, 4}, 4), k = rand({1, 2, 4, 4}, 5), v = rand({1, 2, 4, 4}, 6);
  // Bool mask [L, S] broadcast over batch and heads; row 2 fully masked -> zeros.
  std::vector<double> mv = {1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0};
  Tensor mask = make({3, 4}, mv, DType::kBool);
  auto bool_fn = [&](int64_t, int64_t, int64_t i, int64_t j) { return mv[i * 4 + j] ? 0.0 : -INFINITY; };
  std::vector<double> lse;
  std::vector<double> want = naive_attention(q, k, v, 0.5, bool_fn, &lse);
  Tensor y = call1(
      kSdpa, {{"query", OpArg::of(q)}, {"key", OpArg::of(k)}, {"value", OpArg::of(v)}, {"attn_mask", OpArg::of(mask)}});
  expect_close(y, want);
  for (int h = 0; h < 2; ++h)
    for (int e = 0; e < 4; ++e) EXPECT_EQ(values(y)[(h * 3 + 2) * 4 + e], 0.0);
  // Float mask [1, 2, 1, 4] (per head, broadcast over queries).
  Tensor fm = rand({1, 2, 1, 4}, 7);
  std::vector<double> fv = values(fm);
  auto float_fn = [&](int64_t, int64_t h, int64_t, int64_t j) { return fv[h * 4 + j]; };
  y = call1(kSdpa,
            {{"query", OpArg::of(q)}, {"key", OpArg::of(k)}, {"value", OpArg::of(v)}, {"attn_mask", OpArg::of(fm)}});
  expect_close(y, naive_attention(q, k, v, 0.5, float_fn, &lse));
  // Mask with is_causal is rejected; a mask of the wrong shape too.
  std::string msg;
  EXPECT_EQ(error_of(
                [&] {
                  call(kSdpa, {{"query", OpArg::of(q)},
                               {"key", OpArg::of(k)},
                               {"value", OpArg::of(v)},
                               {"attn_mask", OpArg::of(fm)},
                               {"is_causal", OpArg::of_bool(true)}});
                },
                &msg),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("node_x"), std::string::npos);
  EXPECT_EQ(error_of([&] {
              call(kSdpa, {{"query", OpArg::of(q)},
                           {"key", OpArg::of(k)},
                           {"value", OpArg::of(v)},
                           {"attn_mask", OpArg::of(rand({3, 3}, 1))}});
            }),
            ErrorCode::kShapeMismatch);
}

TEST(Sdpa, GqaNonContiguousAndHalf) {
  Tensor q = rand({1, 4, 3, 4}, 8), k = rand({1, 2, 5, 4}, 9), v = rand({1, 2, 5, 4}, 10);
  std::vector<double> lse;
  auto none = [](int64_t, int64_t, int64_t, int64_t) { return 0.0; };
  Tensor y = call1(
      kSdpa,
      {{"query", OpArg::of(q)}, {"key", OpArg::of(k)}, {"value", OpArg::of(v)}, {"enable_gqa", OpArg::of_bool(true)}});
  EXPECT_EQ(y.sizes(), (Shape{1, 4, 3, 4}));
  expect_close(y, naive_attention(q, k, v, 0.5, none, &lse, 2));
  // Non-contiguous key (a transposed view holding the same values).
  Tensor kq = rand({1, 4, 5, 4}, 11);
  Tensor vq = rand({1, 4, 5, 4}, 12);
  std::vector<double> want = naive_attention(q, kq, vq, 0.5, none, &lse);
  expect_close(call1(kSdpa, {{"query", OpArg::of(q)}, {"key", OpArg::of(noncontig(kq))}, {"value", OpArg::of(vq)}}),
               want);
  // float16 inputs.
  Tensor qh = make(q.sizes(), values(q), DType::kFloat16), kh = make(kq.sizes(), values(kq), DType::kFloat16),
         vh = make(vq.sizes(), values(vq), DType::kFloat16);
  Tensor yh = call1(kSdpa, {{"query", OpArg::of(qh)}, {"key", OpArg::of(kh)}, {"value", OpArg::of(vh)}});
  EXPECT_EQ(yh.dtype(), DType::kFloat16);
  expect_close(yh, naive_attention(qh, kh, vh, 0.5, none, &lse), 3e-3);
}

TEST(Sdpa, FlashForCpuReturnsLogsumexp) {
  Tensor q = rand({2, 2, 3, 4}, 13), k = rand({2, 2, 3, 4}, 14), v = rand({2, 2, 3, 4}, 15);
  std::vector<double> lse;
  auto causal = [](int64_t, int64_t, int64_t i, int64_t j) { return j > i ? -INFINITY : 0.0; };
  std::vector<double> want = naive_attention(q, k, v, 0.5, causal, &lse);
  std::vector<OpArg> out = call(
      "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default",
      {{"query", OpArg::of(q)}, {"key", OpArg::of(k)}, {"value", OpArg::of(v)}, {"is_causal", OpArg::of_bool(true)}});
  ASSERT_EQ(out.size(), 2u);
  expect_close(out[0].tensor, want);
  EXPECT_EQ(out[1].tensor.sizes(), (Shape{2, 2, 3}));
  EXPECT_EQ(out[1].tensor.dtype(), DType::kFloat32);
  expect_close(out[1].tensor, lse);
}

TEST(Embedding, GathersRowsAndChecksBounds) {
  Tensor w = make({3, 2}, {0, 1, 10, 11, 20, 21});
  Tensor idx = make({2, 2}, {2, 0, 1, 1}, DType::kInt64);
  Tensor y = call1("torch.ops.aten.embedding.default", {{"weight", OpArg::of(w)}, {"indices", OpArg::of(idx)}});
  EXPECT_EQ(y.sizes(), (Shape{2, 2, 2}));
  expect_close(y, {20, 21, 0, 1, 10, 11, 10, 11});
  Tensor idx32 = make({1}, {2}, DType::kInt32);
  expect_close(call1("torch.ops.aten.embedding.default", {{"weight", OpArg::of(w)}, {"indices", OpArg::of(idx32)}}),
               {20, 21});
  Tensor empty = call1("torch.ops.aten.embedding.default",
                       {{"weight", OpArg::of(w)}, {"indices", OpArg::of(Tensor::empty({0}, DType::kInt64))}});
  EXPECT_EQ(empty.sizes(), (Shape{0, 2}));
  std::string msg;
  Tensor bad = make({2}, {1, 3}, DType::kInt64);
  EXPECT_EQ(error_of(
                [&] {
                  call("torch.ops.aten.embedding.default", {{"weight", OpArg::of(w)}, {"indices", OpArg::of(bad)}});
                },
                &msg),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("node_x"), std::string::npos) << msg;
  EXPECT_NE(msg.find("index 3"), std::string::npos) << msg;
}

TEST(Dropout, EvalIsIdentity) {
  Tensor x = rand({2, 3}, 16);
  Tensor y = call1("torch.ops.aten.dropout.default",
                   {{"input", OpArg::of(x)}, {"p", OpArg::of_float(0.5)}, {"train", OpArg::of_bool(false)}});
  EXPECT_EQ(y.raw_data(), x.raw_data());  // the input itself, as PyTorch returns it
  std::vector<OpArg> nd =
      call("torch.ops.aten.native_dropout.default",
           {{"input", OpArg::of(x)}, {"p", OpArg::of_float(0.5)}, {"train", OpArg::of_bool(false)}});
  EXPECT_EQ(values(nd[0].tensor), values(x));
  EXPECT_EQ(nd[1].tensor.dtype(), DType::kBool);
  EXPECT_EQ(values(nd[1].tensor), std::vector<double>(6, 1.0));
  std::string msg;
  EXPECT_EQ(error_of(
                [&] {
                  call("torch.ops.aten.dropout.default",
                       {{"input", OpArg::of(x)}, {"p", OpArg::of_float(0.5)}, {"train", OpArg::of_bool(true)}});
                },
                &msg),
            ErrorCode::kUnsupported);
  EXPECT_NE(msg.find("node_x"), std::string::npos);
}

TEST(Topk, TiesNegativeDimAndIntegers) {
  Tensor x = make({4}, {1, 3, 3, 2});
  std::vector<OpArg> out = call("torch.ops.aten.topk.default", {{"self", OpArg::of(x)}, {"k", OpArg::of_int(2)}});
  expect_close(out[0].tensor, {3, 3});
  EXPECT_EQ(out[1].tensor.dtype(), DType::kInt64);
  EXPECT_EQ(values(out[1].tensor), (std::vector<double>{1, 2}));
  out = call("torch.ops.aten.topk.default",
             {{"self", OpArg::of(x)}, {"k", OpArg::of_int(3)}, {"largest", OpArg::of_bool(false)}});
  expect_close(out[0].tensor, {1, 2, 3});
  EXPECT_EQ(values(out[1].tensor), (std::vector<double>{0, 3, 1}));
  // dim=-2 of a [3, 2] int64 tensor.
  Tensor xi = make({3, 2}, {5, -1, 7, 4, 6, 4}, DType::kInt64);
  out = call("torch.ops.aten.topk.default",
             {{"self", OpArg::of(xi)}, {"k", OpArg::of_int(2)}, {"dim", OpArg::of_int(-2)}});
  EXPECT_EQ(out[0].tensor.dtype(), DType::kInt64);
  EXPECT_EQ(values(out[0].tensor), (std::vector<double>{7, 4, 6, 4}));
  EXPECT_EQ(values(out[1].tensor), (std::vector<double>{1, 1, 2, 2}));
  // float16, non-contiguous, NaN is largest.
  Tensor xh = make({3}, {0.5, NAN, 2}, DType::kFloat16);
  out = call("torch.ops.aten.topk.default", {{"self", OpArg::of(xh)}, {"k", OpArg::of_int(2)}});
  EXPECT_EQ(values(out[1].tensor), (std::vector<double>{1, 2}));
  Tensor nc = noncontig(make({2, 2}, {1, 4, 3, 2}));  // logical [[1,4],[3,2]]
  out = call("torch.ops.aten.topk.default", {{"self", OpArg::of(nc)}, {"k", OpArg::of_int(1)}});
  expect_close(out[0].tensor, {4, 3});
  // k = 0 and empty input.
  out = call("torch.ops.aten.topk.default", {{"self", OpArg::of(x)}, {"k", OpArg::of_int(0)}});
  EXPECT_EQ(out[0].tensor.sizes(), (Shape{0}));
  out = call("torch.ops.aten.topk.default",
             {{"self", OpArg::of(Tensor::empty({0, 3}, DType::kFloat32))}, {"k", OpArg::of_int(2)}});
  EXPECT_EQ(out[0].tensor.sizes(), (Shape{0, 2}));
  EXPECT_EQ(error_of([&] {
              call("torch.ops.aten.topk.default", {{"self", OpArg::of(x)}, {"k", OpArg::of_int(5)}});
            }),
            ErrorCode::kInvalidArgument);
}

TEST(Cumsum, DtypesAndDims) {
  Tensor x = make({2, 3}, {1, 2, 3, 4, 5, 6});
  expect_close(call1("torch.ops.aten.cumsum.default", {{"self", OpArg::of(x)}, {"dim", OpArg::of_int(1)}}),
               {1, 3, 6, 4, 9, 15});
  expect_close(call1("torch.ops.aten.cumsum.default", {{"self", OpArg::of(x)}, {"dim", OpArg::of_int(-2)}}),
               {1, 2, 3, 5, 7, 9});
  // Integer inputs accumulate into int64 by default.
  Tensor xi = make({3}, {1, 2, 3}, DType::kInt32);
  Tensor yi = call1("torch.ops.aten.cumsum.default", {{"self", OpArg::of(xi)}, {"dim", OpArg::of_int(0)}});
  EXPECT_EQ(yi.dtype(), DType::kInt64);
  EXPECT_EQ(values(yi), (std::vector<double>{1, 3, 6}));
  Tensor xb = make({3}, {1, 0, 1}, DType::kBool);
  EXPECT_EQ(values(call1("torch.ops.aten.cumsum.default", {{"self", OpArg::of(xb)}, {"dim", OpArg::of_int(0)}})),
            (std::vector<double>{1, 1, 2}));
  OpArg dt;
  dt.kind = OpArg::Kind::kDType;
  dt.dtype = DType::kFloat32;
  Tensor yf =
      call1("torch.ops.aten.cumsum.default", {{"self", OpArg::of(xi)}, {"dim", OpArg::of_int(0)}, {"dtype", dt}});
  EXPECT_EQ(yf.dtype(), DType::kFloat32);
  expect_close(yf, {1, 3, 6});
  Tensor e = call1("torch.ops.aten.cumsum.default",
                   {{"self", OpArg::of(Tensor::empty({0, 2}, DType::kFloat32))}, {"dim", OpArg::of_int(0)}});
  EXPECT_EQ(e.sizes(), (Shape{0, 2}));
  EXPECT_EQ(error_of([&] {
              call("torch.ops.aten.cumsum.default", {{"self", OpArg::of(x)}, {"dim", OpArg::of_int(2)}});
            }),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace ember::ops::test
