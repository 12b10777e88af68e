// aten.scaled_dot_product_attention and its core-ATen CPU form
// _scaled_dot_product_flash_attention_for_cpu (which also returns the logsumexp).
//
// Per (batch..., head) the scores Q K^T * scale come from the shared GEMM, then a masked,
// max-subtracted softmax per query row, then P V from the GEMM again. Rows whose every key
// is masked out produce zeros (PyTorch's math path uses a "safe" softmax) and a logsumexp
// of -inf. Dropout is an inference no-op: exported eval graphs pass dropout_p=0.
#include <cmath>
#include <limits>
#include <vector>

#include "ops/kernels/gemm.h"
#include "ops/kernels/nn_common.h"
#include "ops/kernels/parallel.h"

namespace ember::ops::nn {
namespace {

struct AttnShapes {
  Shape batch;  // broadcast leading dims of q/k/v (heads included)
  int64_t L = 0, S = 0, E = 0, Ev = 0;
  int64_t gqa_groups = 1;  // query heads per key/value head
};

AttnShapes attn_shapes(const OpCall& c, bool gqa) {
  const Shape& q = c.spec("query").sizes;
  const Shape& k = c.spec("key").sizes;
  const Shape& v = c.spec("value").sizes;
  for (auto [name, s] : {std::pair{"query", &q}, std::pair{"key", &k}, std::pair{"value", &v}})
    EMBER_NODE_CHECK(c, s->size() >= 2, ErrorCode::kShapeMismatch, "argument '", name,
                     "' must have at least 2 dimensions, found shape ", shape_str(*s));
  AttnShapes a;
  a.L = q[q.size() - 2], a.E = q.back(), a.S = k[k.size() - 2], a.Ev = v.back();
  EMBER_NODE_CHECK(c, k.back() < 0 || a.E < 0 || k.back() == a.E, ErrorCode::kShapeMismatch,
                   "query and key embedding sizes differ: ", shape_str(q), " vs ", shape_str(k));
  EMBER_NODE_CHECK(c, v[v.size() - 2] < 0 || a.S < 0 || v[v.size() - 2] == a.S, ErrorCode::kShapeMismatch,
                   "key and value sequence lengths differ: ", shape_str(k), " vs ", shape_str(v));
  Shape qb(q.begin(), q.end() - 2), kb(k.begin(), k.end() - 2), vb(v.begin(), v.end() - 2);
  if (gqa && q.size() >= 3 && k.size() >= 3 && kb.back() > 0 && qb.back() > 0 && qb.back() != kb.back()) {
    EMBER_NODE_CHECK(c, qb.back() % kb.back() == 0 && vb.back() == kb.back(), ErrorCode::kShapeMismatch,
                     "enable_gqa: query heads ", qb.back(), " must be a multiple of key/value heads ", kb.back());
    a.gqa_groups = qb.back() / kb.back();
    kb.back() = vb.back() = qb.back();
  }
  a.batch = broadcast_shapes(c, broadcast_shapes(c, qb, kb, "query/key batch"), vb, "key/value batch");
  return a;
}

Shape out_sizes(const AttnShapes& a) {
  Shape s = a.batch;
  s.push_back(a.L);
  s.push_back(a.Ev);
  return s;
}

// Element strides of `t` for each broadcast batch dim (0 where broadcast); for key/value
// under GQA, head h reads head h / groups.
std::vector<int64_t> batch_strides(const Tensor& t, const Shape& batch) {
  size_t bd = batch.size(), td = t.sizes().size() - 2;
  std::vector<int64_t> s(bd, 0);
  for (size_t i = 0; i < bd; ++i) {
    if (i + td < bd) continue;
    size_t j = i + td - bd;
    if (t.sizes()[j] != 1) s[i] = t.strides()[j];
  }
  return s;
}

struct AttnResult {
  Tensor out;  // float32 [batch..., L, Ev]
  Tensor lse;  // float32 [batch..., L]
};

AttnResult attention(const OpCall& c, const AttnShapes& a, const Tensor& q, const Tensor& k, const Tensor& v,
                     const std::optional<Tensor>& mask, bool causal, double scale) {
  int64_t L = a.L, S = a.S, E = a.E, Ev = a.Ev;
  int64_t nb = shape_numel(a.batch);
  Shape os = out_sizes(a);
  Shape ls = a.batch;
  ls.push_back(L);
  AttnResult r{Tensor::zeros(os, DType::kFloat32), Tensor::empty(ls, DType::kFloat32)};
  if (nb == 0 || L == 0) return r;
  size_t bd = a.batch.size();
  std::vector<int64_t> sq = batch_strides(q, a.batch), sk = batch_strides(k, a.batch), sv = batch_strides(v, a.batch);
  // Under GQA the key/value head dim has fewer heads: index it by head / groups.
  int64_t kv_heads_dim_stride_k = 0, kv_heads_dim_stride_v = 0;
  if (a.gqa_groups > 1) {
    kv_heads_dim_stride_k = k.strides()[k.dim() - 3];
    kv_heads_dim_stride_v = v.strides()[v.dim() - 3];
    sk[bd - 1] = sv[bd - 1] = 0;
  }
  // Mask: float32 (additive) or bool, broadcast to [batch..., L, S].
  Tensor m;
  bool bool_mask = false;
  std::vector<int64_t> sm;
  int64_t mrs = 0, mcs = 0;
  if (mask) {
    bool_mask = mask->dtype() == DType::kBool;
    m = bool_mask ? mask->contiguous() : to_f32(*mask);
    Shape ms = m.sizes();
    while (ms.size() < 2) ms.insert(ms.begin(), 1);
    Shape mst = contiguous_strides(ms);
    m = m.as_strided(ms, mst, m.storage_offset());
    Shape mb(ms.begin(), ms.end() - 2);
    Shape full = broadcast_shapes(c, mb, a.batch, "attn_mask batch");
    EMBER_NODE_CHECK(
        c, full == a.batch && (ms[ms.size() - 2] == 1 || ms[ms.size() - 2] == L) && (ms.back() == 1 || ms.back() == S),
        ErrorCode::kShapeMismatch, "attn_mask ", shape_str(mask->sizes()),
        " does not broadcast to the attention weights ", shape_str(Shape{nb, L, S}));
    sm = batch_strides(m, a.batch);
    mrs = ms[ms.size() - 2] == 1 ? 0 : mst[mst.size() - 2];
    mcs = ms.back() == 1 ? 0 : 1;
  }
  const float* qp = q.data<float>();
  const float* kp = k.data<float>();
  const float* vp = v.data<float>();
  float* op = r.out.data<float>();
  float* lp = r.lse.data<float>();
  const float neg_inf = -std::numeric_limits<float>::infinity();

  parallel_for(nb, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(L * S));
    for (int64_t b = begin; b < end; ++b) {
      int64_t oq = 0, ok = 0, ov = 0, om = 0, flat = b;
      for (size_t i = bd; i-- > 0;) {
        int64_t idx = flat % a.batch[i];
        flat /= a.batch[i];
        oq += idx * sq[i], ok += idx * sk[i], ov += idx * sv[i];
        if (mask) om += idx * sm[i];
        if (a.gqa_groups > 1 && i == bd - 1) {
          ok += (idx / a.gqa_groups) * kv_heads_dim_stride_k;
          ov += (idx / a.gqa_groups) * kv_heads_dim_stride_v;
        }
      }
      // scores[L, S] = scale * Q K^T
      gemm(L, S, E, static_cast<float>(scale), MatView{qp + oq, q.stride(-2), q.stride(-1)},
           MatView{kp + ok, k.stride(-1), k.stride(-2)}, 0.0f, scores.data(), S, /*parallel=*/nb == 1);
      for (int64_t i = 0; i < L; ++i) {
        float* row = scores.data() + i * S;
        for (int64_t j = 0; j < S; ++j) {
          if (causal && j > i) row[j] = neg_inf;
          if (mask) {
            int64_t mo = om + i * mrs + j * mcs;
            if (bool_mask) {
              if (!m.data<uint8_t>()[mo]) row[j] = neg_inf;
            } else {
              row[j] += m.data<float>()[mo];
            }
          }
        }
        float mx = neg_inf;
        for (int64_t j = 0; j < S; ++j) mx = std::fmax(mx, row[j]);
        if (mx == neg_inf) {  // every key masked out (or S == 0): zeros
          for (int64_t j = 0; j < S; ++j) row[j] = 0.0f;
          lp[b * L + i] = neg_inf;
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < S; ++j) {
          float e = static_cast<float>(std::exp(static_cast<double>(row[j]) - mx));
          row[j] = e;
          sum += e;
        }
        float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < S; ++j) row[j] *= inv;
        lp[b * L + i] = static_cast<float>(mx + std::log(sum));
      }
      // out[L, Ev] = P V
      gemm(L, Ev, S, 1.0f, MatView{scores.data(), S, 1}, MatView{vp + ov, v.stride(-2), v.stride(-1)}, 0.0f,
           op + b * L * Ev, Ev, /*parallel=*/nb == 1);
    }
  });
  return r;
}

void check_dtypes(const OpCall& c) {
  DType q = c.spec("query").dtype;
  check_float(c, "query", q);
  check_same_dtype(c, "key", c.spec("key").dtype, q);
  check_same_dtype(c, "value", c.spec("value").dtype, q);
  if (auto m = c.opt_spec("attn_mask")) {
    EMBER_NODE_CHECK(c, m->dtype == DType::kBool || m->dtype == q, ErrorCode::kDTypeMismatch,
                     "attn_mask: expected bool or ", dtype_name(q), ", found ", dtype_name(m->dtype));
  }
  EMBER_NODE_CHECK(c, !(c.bool_arg("is_causal") && c.has("attn_mask")), ErrorCode::kInvalidArgument,
                   "attn_mask must not be given together with is_causal=True");
}

AttnResult run_sdpa(const OpCall& c, bool gqa) {
  check_dtypes(c);
  AttnShapes a = attn_shapes(c, gqa);
  Tensor q = to_f32(c.tensor("query")), k = to_f32(c.tensor("key")), v = to_f32(c.tensor("value"));
  std::optional<double> scale;
  if (c.has("scale")) scale = c.float_arg("scale");
  double s = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(a.E, 1)));
  return attention(c, a, q, k, v, c.opt_tensor("attn_mask"), c.bool_arg("is_causal"), s);
}

}  // namespace
}  // namespace ember::ops::nn

EMBER_REGISTER_OPS(nn_attention) {
  using namespace ember;
  using namespace ember::ops;
  using namespace ember::ops::nn;
  r.add(
      "torch.ops.aten.scaled_dot_product_attention.default",
      "scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, float "
      "dropout_p=0.0, bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor",
      [](const OpCall& c) {
        check_dtypes(c);
        return std::vector<TensorSpec>{
            TensorSpec{c.spec("query").dtype, out_sizes(attn_shapes(c, c.bool_arg("enable_gqa")))}};
      },
      [](const OpCall& c) {
        AttnResult res = run_sdpa(c, c.bool_arg("enable_gqa"));
        return std::vector<OpArg>{OpArg::of(from_f32(res.out, c.spec("query").dtype))};
      });
  auto flash_check = [](const OpCall& c) {
    check_dtypes(c);
    for (const char* n : {"query", "key", "value"}) check_rank(c, n, c.spec(n).sizes, {4});
    return attn_shapes(c, false);
  };
  r.add(
      "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default",
      "_scaled_dot_product_flash_attention_for_cpu(Tensor query, Tensor key, Tensor value, float dropout_p=0.0, bool "
      "is_causal=False, *, Tensor? attn_mask=None, float? scale=None) -> (Tensor output, Tensor logsumexp)",
      [flash_check](const OpCall& c) {
        AttnShapes a = flash_check(c);
        Shape ls = a.batch;
        ls.push_back(a.L);
        return std::vector<TensorSpec>{TensorSpec{c.spec("query").dtype, out_sizes(a)},
                                       TensorSpec{DType::kFloat32, ls}};
      },
      [flash_check](const OpCall& c) {
        flash_check(c);
        AttnResult res = run_sdpa(c, false);
        return std::vector<OpArg>{OpArg::of(from_f32(res.out, c.spec("query").dtype)), OpArg::of(res.lse)};
      });
}
