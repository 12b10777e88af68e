// Matrix products: aten.linear, addmm, mm, bmm, matmul. All run on the shared GEMM, which
// reads strided operands directly (transposed weights need no copy).
#include <algorithm>
#include <vector>

#include "ops/kernels/gemm.h"
#include "ops/kernels/nn_common.h"
#include "ops/kernels/parallel.h"

namespace ember::ops::nn {
namespace {

// A float32 tensor with its original strides (no copy for float32 inputs).
Tensor f32_view(const Tensor& t) { return t.dtype() == DType::kFloat32 ? t : to_f32(t); }

MatView mat(const Tensor& t, int64_t offset = 0) {
  int64_t d = t.dim();
  return MatView{t.data<float>() + offset, t.stride(d - 2), t.stride(d - 1)};
}

// a [..., n, k] x b [..., k, m] with broadcast batch dims -> contiguous float32 [batch..., n, m].
Tensor batched_matmul(const OpCall& c, const Tensor& a, const Tensor& b) {
  int64_t n = a.size(-2), k = a.size(-1), m = b.size(-1);
  EMBER_NODE_CHECK(c, b.size(-2) == k, ErrorCode::kShapeMismatch, "matrix shapes ", shape_str(a.sizes()), " and ",
                   shape_str(b.sizes()), " cannot be multiplied (", k, " vs ", b.size(-2), ")");
  Shape abatch(a.sizes().begin(), a.sizes().end() - 2), bbatch(b.sizes().begin(), b.sizes().end() - 2);
  Shape batch = broadcast_shapes(c, abatch, bbatch, "batch dimensions");
  Shape out_sizes = batch;
  out_sizes.push_back(n);
  out_sizes.push_back(m);
  Tensor out = Tensor::empty(out_sizes, DType::kFloat32);
  int64_t nb = shape_numel(batch);
  if (out.numel() == 0) return out;
  float* y = out.data<float>();

  // Element strides of each operand along the broadcast batch dims (0 where broadcast).
  size_t bd = batch.size();
  std::vector<int64_t> sa(bd, 0), sb(bd, 0);
  for (size_t i = 0; i < bd; ++i) {
    size_t ia = i + abatch.size(), ib = i + bbatch.size();
    if (ia >= bd && abatch[ia - bd] != 1) sa[i] = a.strides()[ia - bd];
    if (ib >= bd && bbatch[ib - bd] != 1) sb[i] = b.strides()[ib - bd];
  }
  auto offsets = [&](int64_t flat, int64_t* oa, int64_t* ob) {
    *oa = *ob = 0;
    for (size_t i = bd; i-- > 0;) {
      int64_t idx = flat % batch[i];
      flat /= batch[i];
      *oa += idx * sa[i];
      *ob += idx * sb[i];
    }
  };

  // b shared by every batch and a's rows evenly spaced: one tall GEMM.
  bool b_shared = std::all_of(sb.begin(), sb.end(), [](int64_t s) { return s == 0; });
  if (b_shared && nb > 1 && a.is_contiguous() && shape_numel(abatch) == nb) {
    gemm(nb * n, m, k, 1.0f, MatView{a.data<float>(), k, 1}, mat(b), 0.0f, y, m);
    return out;
  }
  if (nb == 1) {
    gemm(n, m, k, 1.0f, mat(a), mat(b), 0.0f, y, m);
    return out;
  }
  parallel_for(nb, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t oa, ob;
      offsets(i, &oa, &ob);
      gemm(n, m, k, 1.0f, mat(a, oa), mat(b, ob), 0.0f, y + i * n * m, m, /*parallel=*/false);
    }
  });
  return out;
}

// Inserts a size-1 dimension at `pos` (a view).
Tensor unsqueeze(const Tensor& t, int64_t pos) {
  Shape s = t.sizes(), st = t.strides();
  s.insert(s.begin() + pos, 1);
  st.insert(st.begin() + pos, 1);
  return t.as_strided(s, st, t.storage_offset());
}

// Output sizes of torch.matmul (unknown sizes allowed).
Shape matmul_sizes(const OpCall& c, const Shape& a, const Shape& b) {
  EMBER_NODE_CHECK(c, !a.empty() && !b.empty(), ErrorCode::kShapeMismatch,
                   "both arguments to matmul need at least 1 dimension, found shapes ", shape_str(a), " and ",
                   shape_str(b));
  Shape a2 = a, b2 = b;
  if (a.size() == 1) a2.insert(a2.begin(), 1);
  if (b.size() == 1) b2.push_back(1);
  int64_t ka = a2.back(), kb = b2[b2.size() - 2];
  EMBER_NODE_CHECK(c, ka < 0 || kb < 0 || ka == kb, ErrorCode::kShapeMismatch, "shapes ", shape_str(a), " and ",
                   shape_str(b), " cannot be multiplied (", ka, " vs ", kb, ")");
  Shape out = broadcast_shapes(c, Shape(a2.begin(), a2.end() - 2), Shape(b2.begin(), b2.end() - 2), "matmul batch");
  if (a.size() > 1) out.push_back(a2[a2.size() - 2]);
  if (b.size() > 1) out.push_back(b2.back());
  return out;
}

Tensor run_matmul(const OpCall& c, const Tensor& ta, const Tensor& tb) {
  Shape out_sizes = matmul_sizes(c, ta.sizes(), tb.sizes());
  Tensor a = f32_view(ta), b = f32_view(tb);
  if (a.dim() == 1) a = unsqueeze(a, 0);
  if (b.dim() == 1) b = unsqueeze(b, 1);
  Tensor y = batched_matmul(c, a, b);
  return from_f32(y.view(out_sizes), ta.dtype());
}

void check_pair(const OpCall& c, const char* an, const char* bn) {
  DType a = c.spec(an).dtype, b = c.spec(bn).dtype;
  check_float(c, an, a);
  check_same_dtype(c, bn, b, a);
}

// ---------------------------------------------------------------- linear

Shape linear_sizes(const OpCall& c) {
  const Shape& x = c.spec("input").sizes;
  const Shape& w = c.spec("weight").sizes;
  EMBER_NODE_CHECK(c, !x.empty(), ErrorCode::kShapeMismatch,
                   "input must have at least 1 dimension, found a 0-d tensor");
  check_rank(c, "weight", w, {2});
  EMBER_NODE_CHECK(c, x.back() < 0 || w[1] < 0 || x.back() == w[1], ErrorCode::kShapeMismatch, "input ", shape_str(x),
                   " has ", x.back(), " features but weight ", shape_str(w), " expects ", w[1]);
  if (auto bias = c.opt_spec("bias")) {
    EMBER_NODE_CHECK(c,
                     bias->sizes.size() <= 1 && (bias->sizes.empty() || bias->sizes[0] == w[0] || bias->sizes[0] == 1 ||
                                                 bias->sizes[0] < 0 || w[0] < 0),
                     ErrorCode::kShapeMismatch, "bias: expected shape [", w[0], "], found ", shape_str(bias->sizes));
  }
  Shape out = x;
  out.back() = w[0];
  return out;
}

std::vector<OpArg> run_linear(const OpCall& c) {
  check_pair(c, "input", "weight");
  if (c.has("bias")) check_same_dtype(c, "bias", c.spec("bias").dtype, c.spec("input").dtype);
  Shape out_sizes = linear_sizes(c);
  const Tensor& input = c.tensor("input");
  Tensor x = to_f32(input);
  Tensor w = f32_view(c.tensor("weight"));
  int64_t in = w.size(1), outf = w.size(0);
  int64_t rows = shape_numel(Shape(x.sizes().begin(), x.sizes().end() - 1));
  Tensor y = Tensor::empty({rows, outf}, DType::kFloat32);
  float* yp = y.data<float>();
  float beta = 0.0f;
  if (auto bias = c.opt_tensor("bias")) {
    Tensor b = to_f32(*bias);
    const float* bp = b.data<float>();
    bool scalar_bias = b.numel() == 1;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < outf; ++j) yp[i * outf + j] = bp[scalar_bias ? 0 : j];
    beta = 1.0f;
  }
  // y[rows, out] = x[rows, in] * w^T; w^T(k, j) = w[j, k].
  gemm(rows, outf, in, 1.0f, MatView{x.data<float>(), in, 1}, MatView{w.data<float>(), w.stride(1), w.stride(0)}, beta,
       yp, outf);
  return {OpArg::of(from_f32(y.view(out_sizes), input.dtype()))};
}

// ---------------------------------------------------------------- addmm / mm / bmm

std::vector<TensorSpec> infer_mm(const OpCall& c, const char* an, const char* bn, size_t rank) {
  check_pair(c, an, bn);
  const Shape& a = c.spec(an).sizes;
  const Shape& b = c.spec(bn).sizes;
  check_rank(c, an, a, {rank});
  check_rank(c, bn, b, {rank});
  size_t r = rank;
  EMBER_NODE_CHECK(c, a[r - 1] < 0 || b[r - 2] < 0 || a[r - 1] == b[r - 2], ErrorCode::kShapeMismatch, "shapes ",
                   shape_str(a), " and ", shape_str(b), " cannot be multiplied (", a[r - 1], " vs ", b[r - 2], ")");
  Shape out;
  if (rank == 3) {
    EMBER_NODE_CHECK(c, a[0] < 0 || b[0] < 0 || a[0] == b[0], ErrorCode::kShapeMismatch,
                     "batch sizes differ: ", shape_str(a), " and ", shape_str(b));
    out.push_back(a[0] >= 0 ? a[0] : b[0]);
  }
  out.push_back(a[r - 2]);
  out.push_back(b[r - 1]);
  return {TensorSpec{c.spec(an).dtype, out}};
}

std::vector<OpArg> run_mm(const OpCall& c, const char* an, const char* bn, size_t rank) {
  TensorSpec spec = infer_mm(c, an, bn, rank)[0];
  Tensor y = batched_matmul(c, f32_view(c.tensor(an)), f32_view(c.tensor(bn)));
  return {OpArg::of(from_f32(y, spec.dtype))};
}

std::vector<TensorSpec> infer_addmm(const OpCall& c) {
  std::vector<TensorSpec> out = infer_mm(c, "mat1", "mat2", 2);
  const TensorSpec& self = c.spec("self");
  check_same_dtype(c, "self", self.dtype, out[0].dtype);
  Shape b = broadcast_shapes(c, self.sizes, out[0].sizes, "self and mat1 @ mat2");
  EMBER_NODE_CHECK(c,
                   b.size() == 2 && (b[0] == out[0].sizes[0] || out[0].sizes[0] < 0) &&
                       (b[1] == out[0].sizes[1] || out[0].sizes[1] < 0),
                   ErrorCode::kShapeMismatch, "self ", shape_str(self.sizes), " does not broadcast to ",
                   shape_str(out[0].sizes));
  return out;
}

std::vector<OpArg> run_addmm(const OpCall& c) {
  TensorSpec spec = infer_addmm(c)[0];
  Tensor a = f32_view(c.tensor("mat1")), b = f32_view(c.tensor("mat2"));
  int64_t n = a.size(0), k = a.size(1), m = b.size(1);
  double beta = c.scalar("beta"), alpha = c.scalar("alpha");
  Tensor y = Tensor::empty({n, m}, DType::kFloat32);
  float* yp = y.data<float>();
  if (beta != 0.0 && y.numel() > 0) {
    // Broadcast self into y (self is [], [m], [1, m], [n, 1] or [n, m]).
    Tensor s = to_f32(c.tensor("self"));
    const float* sp = s.data<float>();
    int64_t sr = s.dim() == 2 ? s.size(0) : 1, sc = s.dim() >= 1 ? s.size(-1) : 1;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j) yp[i * m + j] = sp[(sr == 1 ? 0 : i) * sc + (sc == 1 ? 0 : j)];
  }
  gemm(n, m, k, static_cast<float>(alpha), mat(a), mat(b), static_cast<float>(beta), yp, m);
  return {OpArg::of(from_f32(y, spec.dtype))};
}

}  // namespace
}  // namespace ember::ops::nn

EMBER_REGISTER_OPS(nn_linear) {
  using namespace ember;
  using namespace ember::ops;
  using namespace ember::ops::nn;
  r.add(
      "torch.ops.aten.linear.default", "linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor",
      [](const OpCall& c) {
        check_pair(c, "input", "weight");
        return std::vector<TensorSpec>{TensorSpec{c.spec("input").dtype, linear_sizes(c)}};
      },
      run_linear);
  r.add("torch.ops.aten.addmm.default",
        "addmm(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor", infer_addmm,
        run_addmm);
  r.add(
      "torch.ops.aten.mm.default", "mm(Tensor self, Tensor mat2) -> Tensor",
      [](const OpCall& c) { return infer_mm(c, "self", "mat2", 2); },
      [](const OpCall& c) { return run_mm(c, "self", "mat2", 2); });
  r.add(
      "torch.ops.aten.bmm.default", "bmm(Tensor self, Tensor mat2) -> Tensor",
      [](const OpCall& c) { return infer_mm(c, "self", "mat2", 3); },
      [](const OpCall& c) { return run_mm(c, "self", "mat2", 3); });
  r.add(
      "torch.ops.aten.matmul.default", "matmul(Tensor self, Tensor other) -> Tensor",
      [](const OpCall& c) {
        check_pair(c, "self", "other");
        return std::vector<TensorSpec>{
            TensorSpec{c.spec("self").dtype, matmul_sizes(c, c.spec("self").sizes, c.spec("other").sizes)}};
      },
      [](const OpCall& c) {
        check_pair(c, "self", "other");
        return std::vector<OpArg>{OpArg::of(run_matmul(c, c.tensor("self"), c.tensor("other")))};
      });
}
