#include "backends/cpu/exec.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <thread>

#include "backends/cpu/winograd.h"
#include "ember/error.h"
#include "ember/log.h"
#include "ember/profile.h"
#include "ops/arg_convert.h"

namespace ember::cpu {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

namespace {

constexpr size_t kScratchAlign = 64;
size_t align_up(size_t n) { return (n + kScratchAlign - 1) / kScratchAlign * kScratchAlign; }

memory::dims to_dims(const std::vector<int64_t>& v) { return memory::dims(v.begin(), v.end()); }

// ---------------------------------------------------------------- eltwise algorithms

struct EltSpec {
  algorithm alg;
  float alpha, beta;
};

std::vector<EltSpec> eltwise_specs(const std::string& alg, float alpha, float beta) {
  if (alg == "relu") return {{algorithm::eltwise_relu, 0.f, 0.f}};
  if (alg == "leaky_relu") return {{algorithm::eltwise_relu, alpha, 0.f}};
  if (alg == "gelu_erf" || alg == "gelu") return {{algorithm::eltwise_gelu_erf, 0.f, 0.f}};
  if (alg == "gelu_tanh") return {{algorithm::eltwise_gelu_tanh, 0.f, 0.f}};
  if (alg == "silu") return {{algorithm::eltwise_swish, 1.f, 0.f}};
  if (alg == "sigmoid") return {{algorithm::eltwise_logistic, 0.f, 0.f}};
  if (alg == "tanh") return {{algorithm::eltwise_tanh, 0.f, 0.f}};
  if (alg == "hardswish") return {{algorithm::eltwise_hardswish, 0.f, 0.f}};
  if (alg == "hardsigmoid") return {{algorithm::eltwise_linear, 1.f / 6.f, 0.5f}, {algorithm::eltwise_clip_v2, 0.f, 1.f}};
  if (alg == "clip") return {{algorithm::eltwise_clip_v2, alpha, beta}};
  if (alg == "linear") return {{algorithm::eltwise_linear, alpha, beta}};
  if (alg == "elu") return {{algorithm::eltwise_elu, alpha, 0.f}};
  if (alg == "exp") return {{algorithm::eltwise_exp, 0.f, 0.f}};
  if (alg == "abs") return {{algorithm::eltwise_abs, 0.f, 0.f}};
  if (alg == "sqrt") return {{algorithm::eltwise_sqrt, 0.f, 0.f}};
  if (alg == "square") return {{algorithm::eltwise_square, 0.f, 0.f}};
  fail(ErrorCode::kUnsupported, "eltwise algorithm '", alg, "' is not supported");
}

// Scalar form of the same algorithms, for reference steps' post-ops.
double eltwise_ref(const std::string& alg, double a, double b, double x) {
  if (alg == "relu") return x > 0 ? x : 0;
  if (alg == "leaky_relu") return x > 0 ? x : a * x;
  if (alg == "gelu_erf" || alg == "gelu") return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
  if (alg == "gelu_tanh")
    return 0.5 * x * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  if (alg == "silu") return x / (1 + std::exp(-x));
  if (alg == "sigmoid") return 1 / (1 + std::exp(-x));
  if (alg == "tanh") return std::tanh(x);
  if (alg == "hardswish") return x * std::min(std::max(x + 3, 0.0), 6.0) / 6;
  if (alg == "hardsigmoid") return std::min(std::max(x / 6 + 0.5, 0.0), 1.0);
  if (alg == "clip") return std::min(std::max(x, a), b);
  if (alg == "linear") return a * x + b;
  if (alg == "elu") return x > 0 ? x : a * (std::exp(x) - 1);
  if (alg == "exp") return std::exp(x);
  if (alg == "abs") return std::abs(x);
  if (alg == "sqrt") return std::sqrt(x);
  if (alg == "square") return x * x;
  fail(ErrorCode::kUnsupported, "eltwise algorithm '", alg, "' is not supported");
}

// ---------------------------------------------------------------- oneDNN steps

struct ValueArg {
  int arg;
  int value;
  memory::desc desc;
};
struct ConstArg {
  int arg;
  memory mem;
};
struct TempArg {
  int arg;
  memory::desc desc;
  size_t offset;
};
struct Call {
  dnnl::primitive prim;
  std::vector<ValueArg> values;
  std::vector<ConstArg> consts;
  std::vector<TempArg> temps;  // in the step's scratch space
  size_t scratch = 0;          // bytes of scratch this call uses (scratchpad first)
  memory::desc scratchpad;
};
// Copies the residual of a sum post-op into the destination before the primitive runs
// (skipped when the plan placed both at the same bytes).
struct SumCopy {
  int src, dst;
  memory::desc src_desc, dst_desc;
  bool same_layout = false;
  size_t bytes = 0;
  dnnl::primitive reorder;
};

class PrimitiveExec final : public StepExec {
 public:
  std::vector<SumCopy> pre;
  std::vector<Call> calls;

  void run(RunState& st) const override {
    const dnnl::engine& eng = cpu_engine();
    for (const SumCopy& c : pre) {
      if (st.ptr[c.src] == st.ptr[c.dst]) continue;
      if (c.same_layout) {
        std::memcpy(st.ptr[c.dst], st.ptr[c.src], c.bytes);
      } else {
        memory s(c.src_desc, eng, st.ptr[c.src]), d(c.dst_desc, eng, st.ptr[c.dst]);
        c.reorder.execute(*st.stream, {{DNNL_ARG_FROM, s}, {DNNL_ARG_TO, d}});
      }
    }
    for (const Call& call : calls) {
      std::unordered_map<int, memory> args;
      for (const ValueArg& a : call.values) args.emplace(a.arg, memory(a.desc, eng, st.ptr[a.value]));
      for (const ConstArg& a : call.consts) args.emplace(a.arg, a.mem);
      for (const TempArg& a : call.temps) args.emplace(a.arg, memory(a.desc, eng, st.scratch + a.offset));
      if (call.scratchpad.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, memory(call.scratchpad, eng, st.scratch));
      call.prim.execute(*st.stream, args);
    }
  }
};

template <typename PD>
Call make_call(const PD& pd, const std::string& impl_prefix = "") {
  Call c;
  c.prim = dnnl::primitive(pd.get());
  c.scratchpad = pd.scratchpad_desc();
  c.scratch = align_up(c.scratchpad.get_size());
  return c;
}

void add_temp(Call& c, int arg, const memory::desc& d) {
  if (d.get_size() == 0) return;
  c.temps.push_back({arg, d, c.scratch});
  c.scratch += align_up(d.get_size());
}

struct Builder {
  const PlanStep& s;
  const ExecEnv& env;
  const Plan& plan;

  const memory::desc& vdesc(int v) const {
    EMBER_CHECK(plan.values[v].has_desc, ErrorCode::kCorrupt, "value ", v, " ('", plan.values[v].name, "') of dtype ",
                dtype_name(plan.values[v].dtype), " cannot be used by a ", s.kind, " step");
    return env.descs[v];
  }
  const PlanBlob& blob(int b) const { return plan.blobs.at(b); }
  memory blob_mem(int b) const {
    const PlanBlob& pb = blob(b);
    EMBER_CHECK(pb.has_desc, ErrorCode::kCorrupt, "blob ", b, " has no oneDNN layout");
    return memory(pb.desc, cpu_engine(), const_cast<uint8_t*>(env.blob_ptr(b)));
  }
  int64_t numel(int v) const { return shape_numel(env.dims[v]); }

  // The desc of a post-op / binary operand, viewed with the rank of `dst_dims`.
  memory::desc operand_desc(int v, const Shape& dst_dims) const {
    const memory::desc& d = vdesc(v);
    const Shape& vd = env.dims[v];
    if (vd.size() == dst_dims.size()) return d;
    EMBER_CHECK(is_plain(d), ErrorCode::kCorrupt, "operand value ", v, " of rank ", vd.size(),
                " must be plain to be broadcast against rank ", dst_dims.size());
    Shape view;
    if (vd.size() < dst_dims.size()) {
      view.assign(dst_dims.size() - vd.size(), 1);
      view.insert(view.end(), vd.begin(), vd.end());
    } else if (shape_numel(vd) == shape_numel(dst_dims)) {
      view = dst_dims;
    } else {
      size_t extra = vd.size() - dst_dims.size();
      for (size_t i = 0; i < extra; ++i)
        EMBER_CHECK(vd[i] == 1, ErrorCode::kShapeMismatch, "operand ", shape_str(vd), " cannot broadcast to ",
                    shape_str(dst_dims));
      view.assign(vd.begin() + extra, vd.end());
    }
    return plain_desc(view, plan.values[v].dtype);
  }

  dnnl::primitive_attr attr(int dst_value, const Shape& dst_dims, PrimitiveExec& ex,
                            std::vector<ValueArg>* binary_args) const {
    dnnl::primitive_attr a;
    a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::post_ops po;
    int idx = 0;
    for (const PlanPostOp& p : s.post_ops) {
      if (p.kind == "eltwise") {
        for (const EltSpec& e : eltwise_specs(p.alg, p.alpha, p.beta)) {
          po.append_eltwise(1.f, e.alg, e.alpha, e.beta);
          ++idx;
        }
      } else if (p.kind == "sum") {
        po.append_sum(p.scale);
        SumCopy c;
        c.src = p.value;
        c.dst = dst_value;
        c.src_desc = vdesc(p.value);
        c.dst_desc = vdesc(dst_value);
        EMBER_CHECK(env.dims[p.value] == env.dims[dst_value], ErrorCode::kCorrupt, "sum operand ",
                    shape_str(env.dims[p.value]), " differs from the destination ", shape_str(env.dims[dst_value]));
        c.same_layout = c.src_desc == c.dst_desc;
        c.bytes = c.dst_desc.get_size();
        if (!c.same_layout) {
          dnnl::reorder::primitive_desc rpd(cpu_engine(), c.src_desc, cpu_engine(), c.dst_desc);
          c.reorder = dnnl::reorder(rpd);
        }
        ex.pre.push_back(std::move(c));
        ++idx;
      } else {
        memory::desc d = operand_desc(p.value, dst_dims);
        po.append_binary(p.kind == "binary_add" ? algorithm::binary_add : algorithm::binary_mul, d);
        binary_args->push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(idx) | DNNL_ARG_SRC_1, p.value, d});
        ++idx;
      }
    }
    a.set_post_ops(po);
    return a;
  }

  // oneDNN offers, in a fixed order, every implementation that accepts the step's layouts;
  // the plan records the one the builder timed and chose (PlanStep::impl), often not the
  // first (e.g. jit:avx512_core where brgconv accepts the same blocked weights). Walks the
  // list to it. When none of that name accepts the step (another oneDNN version, or a shape
  // of a dynamic engine it refuses) oneDNN's first choice is kept, with a warning: the
  // results stay correct, speed may differ.
  template <class PD, class MakePd>
  void pin_impl(PD& pd, const MakePd& make_pd) const {
    if (s.impl.empty() || pd.impl_info_str() == s.impl) return;
    while (pd.next_impl())
      if (pd.impl_info_str() == s.impl) return;
    pd = make_pd();
    log_warning("step '", s.name, "': oneDNN implementation '", s.impl, "' recorded in the plan does not ",
                "accept the step here (another oneDNN version or shape); using '", pd.impl_info_str(), "'");
  }

  std::unique_ptr<StepExec> build() const {
    auto ex = std::make_unique<PrimitiveExec>();
    const dnnl::engine& eng = cpu_engine();
    const prop_kind inf = prop_kind::forward_inference;
    if (s.kind == "reorder") {
      int in = s.inputs[0], out = s.outputs[0];
      dnnl::primitive_attr a;
      a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::reorder::primitive_desc pd(eng, vdesc(in), eng, vdesc(out), a);
      Call c = make_call(pd);
      c.values = {{DNNL_ARG_FROM, in, vdesc(in)}, {DNNL_ARG_TO, out, vdesc(out)}};
      ex->impl = pd.impl_info_str();
      ex->calls.push_back(std::move(c));
    } else if (s.kind == "conv") {
      int in = s.inputs[0], out = s.outputs[0];
      std::vector<ValueArg> bin;
      auto a = attr(out, env.dims[out], *ex, &bin);
      memory::desc bias = s.blobs[1] >= 0 ? blob(s.blobs[1]).desc : memory::desc();
      dnnl::convolution_forward::desc cd(inf, algorithm::convolution_direct, vdesc(in), blob(s.blobs[0]).desc, bias,
                                         vdesc(out), to_dims(s.strides), to_dims(s.dilation), to_dims(s.pad_l),
                                         to_dims(s.pad_r));
      auto make_pd = [&] { return dnnl::convolution_forward::primitive_desc(cd, a, eng); };
      dnnl::convolution_forward::primitive_desc pd = make_pd();
      pin_impl(pd, make_pd);
      Call c = make_call(pd);
      c.values = {{DNNL_ARG_SRC, in, vdesc(in)}, {DNNL_ARG_DST, out, vdesc(out)}};
      c.values.insert(c.values.end(), bin.begin(), bin.end());
      c.consts.push_back({DNNL_ARG_WEIGHTS, blob_mem(s.blobs[0])});
      if (s.blobs[1] >= 0) c.consts.push_back({DNNL_ARG_BIAS, blob_mem(s.blobs[1])});
      ex->impl = pd.impl_info_str();
      ex->calls.push_back(std::move(c));
    } else if (s.kind == "inner_product" || (s.kind == "matmul" && !s.blobs.empty())) {
      int in = s.inputs[0], out = s.outputs[0];
      EMBER_CHECK(is_plain(vdesc(in)) && is_plain(vdesc(out)) && !env.dims[in].empty(), ErrorCode::kCorrupt,
                  "linear operands must be plain");
      int64_t k = env.dims[in].back();
      int64_t n = env.dims[out].empty() ? 1 : env.dims[out].back();
      int64_t m = k ? numel(in) / k : 0;
      EMBER_CHECK(m * n == numel(out), ErrorCode::kShapeMismatch, "linear output ", shape_str(env.dims[out]),
                  " does not match input ", shape_str(env.dims[in]));
      memory::desc src = plain_desc({m, k}, plan.values[in].dtype), dst = plain_desc({m, n}, plan.values[out].dtype);
      std::vector<ValueArg> bin;
      auto a = attr(out, {m, n}, *ex, &bin);
      Call c;
      if (s.kind == "inner_product") {
        memory::desc bias = s.blobs[1] >= 0 ? blob(s.blobs[1]).desc : memory::desc();
        dnnl::inner_product_forward::desc d(inf, src, blob(s.blobs[0]).desc, bias, dst);
        dnnl::inner_product_forward::primitive_desc pd(d, a, eng);
        c = make_call(pd);
        ex->impl = pd.impl_info_str();
      } else {
        memory::desc bias = s.blobs[1] >= 0 ? blob(s.blobs[1]).desc : memory::desc();
        dnnl::matmul::desc d(src, blob(s.blobs[0]).desc, bias, dst);
        dnnl::matmul::primitive_desc pd(d, a, eng);
        c = make_call(pd);
        ex->impl = pd.impl_info_str();
      }
      c.values = {{DNNL_ARG_SRC, in, src}, {DNNL_ARG_DST, out, dst}};
      c.values.insert(c.values.end(), bin.begin(), bin.end());
      c.consts.push_back({DNNL_ARG_WEIGHTS, blob_mem(s.blobs[0])});
      if (s.blobs[1] >= 0) c.consts.push_back({DNNL_ARG_BIAS, blob_mem(s.blobs[1])});
      ex->calls.push_back(std::move(c));
    } else if (s.kind == "matmul") {
      int a_v = s.inputs[0], b_v = s.inputs[1], out = s.outputs[0];
      std::vector<ValueArg> bin;
      auto a = attr(out, env.dims[out], *ex, &bin);
      dnnl::matmul::desc d(vdesc(a_v), vdesc(b_v), memory::desc(), vdesc(out));
      dnnl::matmul::primitive_desc pd(d, a, eng);
      Call c = make_call(pd);
      c.values = {{DNNL_ARG_SRC, a_v, vdesc(a_v)}, {DNNL_ARG_WEIGHTS, b_v, vdesc(b_v)}, {DNNL_ARG_DST, out, vdesc(out)}};
      c.values.insert(c.values.end(), bin.begin(), bin.end());
      ex->impl = pd.impl_info_str();
      ex->calls.push_back(std::move(c));
    } else if (s.kind == "pool") {
      int in = s.inputs[0], out = s.outputs[0];
      const Shape& id = env.dims[in];
      const Shape& od = env.dims[out];
      EMBER_CHECK(id.size() == 4 && od.size() == 4, ErrorCode::kCorrupt, "pooling needs 4-D values");
      memory::dims kernel = to_dims(s.kernel), strides = to_dims(s.strides), dil = to_dims(s.dilation),
                   pl = to_dims(s.pad_l), pr = to_dims(s.pad_r);
      if (s.adaptive) {
        kernel.assign(2, 1);
        strides.assign(2, 1);
        dil.assign(2, 0);
        pl.assign(2, 0);
        pr.assign(2, 0);
        for (int i = 0; i < 2; ++i) {
          int64_t in_sz = id[2 + i], out_sz = od[2 + i];
          EMBER_CHECK(out_sz > 0 && in_sz % out_sz == 0, ErrorCode::kUnsupported, "adaptive pooling from ", in_sz,
                      " to ", out_sz, " is not a uniform window");
          kernel[i] = in_sz / out_sz;
          strides[i] = kernel[i];
        }
      }
      algorithm alg = s.alg == "max"               ? algorithm::pooling_max
                      : s.alg == "avg_include_pad" ? algorithm::pooling_avg_include_padding
                      : s.alg == "avg_exclude_pad" ? algorithm::pooling_avg_exclude_padding
                                                   : (fail(ErrorCode::kCorrupt, "alg: unknown pooling '", s.alg, "'"),
                                                      algorithm::undef);
      dnnl::primitive_attr a;
      a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::pooling_v2_forward::desc d(inf, alg, vdesc(in), vdesc(out), strides, kernel, dil, pl, pr);
      dnnl::pooling_v2_forward::primitive_desc pd(d, a, eng);
      Call c = make_call(pd);
      c.values = {{DNNL_ARG_SRC, in, vdesc(in)}, {DNNL_ARG_DST, out, vdesc(out)}};
      add_temp(c, DNNL_ARG_WORKSPACE, pd.workspace_desc());
      ex->impl = pd.impl_info_str();
      ex->calls.push_back(std::move(c));
    } else if (s.kind == "eltwise") {
      int in = s.inputs[0], out = s.outputs[0];
      EMBER_CHECK(vdesc(in) == vdesc(out), ErrorCode::kCorrupt, "eltwise source and destination layouts differ");
      dnnl::primitive_attr a;
      a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      int src = in;
      for (const EltSpec& e : eltwise_specs(s.alg, s.alpha, s.beta)) {
        dnnl::eltwise_forward::desc d(inf, e.alg, vdesc(src), e.alpha, e.beta);
        dnnl::eltwise_forward::primitive_desc pd(d, a, eng);
        Call c = make_call(pd);
        c.values = {{DNNL_ARG_SRC, src, vdesc(src)}, {DNNL_ARG_DST, out, vdesc(out)}};
        ex->impl = pd.impl_info_str();
        ex->calls.push_back(std::move(c));
        src = out;
      }
    } else if (s.kind == "binary") {
      int a_v = s.inputs[0], b_v = s.inputs[1], out = s.outputs[0];
      static const std::map<std::string, algorithm> kAlgs = {
          {"add", algorithm::binary_add}, {"sub", algorithm::binary_sub}, {"mul", algorithm::binary_mul},
          {"div", algorithm::binary_div}, {"max", algorithm::binary_max}, {"min", algorithm::binary_min}};
      auto it = kAlgs.find(s.alg);
      EMBER_CHECK(it != kAlgs.end(), ErrorCode::kCorrupt, "alg: unknown binary algorithm '", s.alg, "'");
      EMBER_CHECK(env.dims[a_v] == env.dims[out], ErrorCode::kShapeMismatch, "binary: first operand ",
                  shape_str(env.dims[a_v]), " must have the output shape ", shape_str(env.dims[out]));
      memory::desc b_d = operand_desc(b_v, env.dims[out]);
      std::vector<ValueArg> bin;
      auto a = attr(out, env.dims[out], *ex, &bin);
      dnnl::binary::desc d(it->second, vdesc(a_v), b_d, vdesc(out));
      dnnl::binary::primitive_desc pd(d, a, eng);
      Call c = make_call(pd);
      c.values = {{DNNL_ARG_SRC_0, a_v, vdesc(a_v)}, {DNNL_ARG_SRC_1, b_v, b_d}, {DNNL_ARG_DST, out, vdesc(out)}};
      c.values.insert(c.values.end(), bin.begin(), bin.end());
      ex->impl = pd.impl_info_str();
      ex->calls.push_back(std::move(c));
    } else if (s.kind == "softmax") {
      int in = s.inputs[0], out = s.outputs[0];
      int rank = static_cast<int>(env.dims[in].size());
      int axis = static_cast<int>(s.axis < 0 ? s.axis + rank : s.axis);
      EMBER_CHECK(axis >= 0 && axis < std::max(rank, 1), ErrorCode::kCorrupt, "axis ", s.axis, " out of range for rank ",
                  rank);
      dnnl::primitive_attr a;
      a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::softmax_v2_forward::desc d(inf, s.log ? algorithm::softmax_log : algorithm::softmax_accurate, vdesc(in),
                                       vdesc(out), axis);
      dnnl::softmax_v2_forward::primitive_desc pd(d, a, eng);
      Call c = make_call(pd);
      c.values = {{DNNL_ARG_SRC, in, vdesc(in)}, {DNNL_ARG_DST, out, vdesc(out)}};
      ex->impl = pd.impl_info_str();
      ex->calls.push_back(std::move(c));
    } else if (s.kind == "layer_norm") {
      int in = s.inputs[0], out = s.outputs[0];
      EMBER_CHECK(s.norm_size > 0 && numel(in) % s.norm_size == 0 && is_plain(vdesc(in)) && is_plain(vdesc(out)),
                  ErrorCode::kCorrupt, "norm_size ", s.norm_size, " does not divide the input ",
                  shape_str(env.dims[in]));
      int64_t c_sz = s.norm_size, m = numel(in) / c_sz;
      memory::desc data = plain_desc({m, c_sz}, plan.values[in].dtype);
      dnnl::normalization_flags flags = dnnl::normalization_flags::none;
      if (s.blobs[0] >= 0) flags |= dnnl::normalization_flags::use_scale;
      if (s.blobs[1] >= 0) flags |= dnnl::normalization_flags::use_shift;
      dnnl::primitive_attr a;
      a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::layer_normalization_forward::desc d(inf, data, s.eps, flags);
      dnnl::layer_normalization_forward::primitive_desc pd(d, a, eng);
      Call c = make_call(pd);
      c.values = {{DNNL_ARG_SRC, in, data}, {DNNL_ARG_DST, out, data}};
      if (s.blobs[0] >= 0) c.consts.push_back({DNNL_ARG_SCALE, blob_mem(s.blobs[0])});
      if (s.blobs[1] >= 0) c.consts.push_back({DNNL_ARG_SHIFT, blob_mem(s.blobs[1])});
      add_temp(c, DNNL_ARG_MEAN, pd.mean_desc());
      add_temp(c, DNNL_ARG_VARIANCE, pd.variance_desc());
      ex->impl = pd.impl_info_str();
      ex->calls.push_back(std::move(c));
    } else {
      fail(ErrorCode::kCorrupt, "unknown step kind '", s.kind, "'");
    }
    size_t scratch = 0;
    for (const Call& c : ex->calls) scratch = std::max(scratch, c.scratch);
    ex->scratch_bytes = scratch;
    return ex;
  }
};

// ---------------------------------------------------------------- reference steps

Tensor view_bytes(uint8_t* p, DType dtype, const Shape& dims) {
  int64_t n = shape_numel(dims) * static_cast<int64_t>(dtype_size(dtype));
  auto storage = Storage::borrow(p, static_cast<size_t>(std::max<int64_t>(n, 1)), nullptr, true);
  return Tensor(storage, dtype, dims, contiguous_strides(dims));
}

class ReferenceExec final : public StepExec {
 public:
  ReferenceExec(const PlanStep& s, const ExecEnv& env) : step_(s), plan_(*env.plan), symbols_(env.symbols) {
    def_ = &ops::require_op(s.target);
    impl = "reference:" + s.target;
    for (int v : s.inputs) dims_[v] = env.dims[v];
    for (const PlanPostOp& p : s.post_ops)
      if (p.value >= 0) dims_[p.value] = env.dims[p.value];
    for (int v : s.outputs) dims_[v] = env.dims[v];
    for (int b : s.blobs) {
      EMBER_CHECK(b >= 0, ErrorCode::kCorrupt, "reference constants must name blobs");
      const PlanBlob& pb = plan_.blobs[b];
      Shape dims = pb.has_desc ? Shape(pb.desc.data.dims, pb.desc.data.dims + pb.desc.data.ndims) : pb.dims;
      EMBER_CHECK(!pb.has_desc || is_plain(pb.desc), ErrorCode::kCorrupt, "reference constants must be plain");
      auto storage = Storage::borrow(env.blob_ptr(b), static_cast<size_t>(std::max<int64_t>(pb.size, 1)),
                                     env.keepalive, false);
      Shape logical = pb.dims;
      EMBER_CHECK(shape_numel(logical) == shape_numel(dims), ErrorCode::kCorrupt, "blob dims disagree with its layout");
      constants_.emplace_back(storage, pb.dtype, logical, contiguous_strides(logical));
    }
    EMBER_CHECK(step_.post_ops.empty() || step_.outputs.size() == 1, ErrorCode::kCorrupt,
                "post-ops need a single output");
  }

  void run(RunState& st) const override {
    ops::ArgResolver r;
    r.tensor = [&](const std::string& name) -> Tensor {
      EMBER_CHECK(name.size() >= 2 && (name[0] == '%' || name[0] == '$'), ErrorCode::kCorrupt, "tensor name '", name,
                  "' must be %<value> or $<constant>");
      int64_t id = -1;
      try {
        id = std::stoll(name.substr(1));
      } catch (...) {
        fail(ErrorCode::kCorrupt, "tensor name '", name, "' is malformed");
      }
      if (name[0] == '$') {
        EMBER_CHECK(id >= 0 && id < static_cast<int64_t>(constants_.size()), ErrorCode::kCorrupt, "constant ", name,
                    " does not exist");
        return constants_[id];
      }
      EMBER_CHECK(std::find(step_.inputs.begin(), step_.inputs.end(), id) != step_.inputs.end(), ErrorCode::kCorrupt,
                  "value ", name, " is not an input of the step");
      return view_bytes(st.ptr[id], plan_.values[id].dtype, dims_.at(static_cast<int>(id)));
    };
    r.symbol = [&](const std::string& name) -> int64_t {
      auto it = symbols_.find(name);
      EMBER_CHECK(it != symbols_.end(), ErrorCode::kCorrupt, "unknown symbol '", name, "'");
      return it->second;
    };
    ops::OpCall call = ops::make_call_from_json(*def_, step_.name, step_.args, r, false);
    std::vector<ops::OpArg> results = def_->run(call);
    std::vector<Tensor> outs;
    for (ops::OpArg& a : results) {
      if (a.kind == ops::OpArg::Kind::kTensor) outs.push_back(a.tensor);
      if (a.kind == ops::OpArg::Kind::kTensorList)
        for (Tensor& t : a.tensors) outs.push_back(t);
    }
    EMBER_CHECK(outs.size() >= step_.outputs.size(), ErrorCode::kInternal, step_.name, " (", step_.target,
                "): the kernel returned ", outs.size(), " tensors, the plan expects ", step_.outputs.size());
    for (size_t k = 0; k < step_.outputs.size(); ++k) {
      int v = step_.outputs[k];
      const Shape& want = dims_.at(v);
      Tensor& got = outs[k];
      EMBER_CHECK(got.sizes() == want && got.dtype() == plan_.values[v].dtype, ErrorCode::kShapeMismatch, step_.name,
                  " (", step_.target, "): output ", k, " is ", got.to_string(), ", the plan expects ",
                  dtype_name(plan_.values[v].dtype), shape_str(want));
      // Post-ops are applied to the kernel's result before anything is written to the
      // destination: the memory plan may place the destination over a sum operand (in-place
      // residual add, as oneDNN's sum post-op accumulates into the destination), so every
      // post-op operand must be read before the destination's bytes change.
      Tensor result = step_.post_ops.empty() ? got : apply_post_ops(st, got);
      Tensor dst = view_bytes(st.ptr[v], plan_.values[v].dtype, want);
      dst.copy_from(result);
    }
  }

 private:
  // Returns a new tensor: `result` with the step's post-ops applied (`result` is left as is;
  // it may be a view of an input).
  Tensor apply_post_ops(RunState& st, const Tensor& result) const {
    Tensor dst = result.clone();
    for (const PlanPostOp& p : step_.post_ops) {
      if (p.kind == "eltwise") {
        int64_t n = dst.numel();
        if (dst.dtype() == DType::kFloat32) {
          float* x = dst.data<float>();
          for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(eltwise_ref(p.alg, p.alpha, p.beta, x[i]));
        } else {
          for (int64_t i = 0; i < n; ++i)
            set_element_from_double(dst, i, eltwise_ref(p.alg, p.alpha, p.beta, element_as_double(dst, i)));
        }
        continue;
      }
      Tensor other = view_bytes(st.ptr[p.value], plan_.values[p.value].dtype, dims_.at(p.value));
      const char* target = p.kind == "binary_mul" ? "torch.ops.aten.mul.Tensor" : "torch.ops.aten.add.Tensor";
      std::map<std::string, ops::OpArg, std::less<>> args;
      args.emplace("self", ops::OpArg::of(dst));
      args.emplace("other", ops::OpArg::of(other));
      if (p.kind == "sum") args.emplace("alpha", ops::OpArg::of_float(p.scale));
      const ops::OpDef& def = ops::require_op(target);
      auto res = def.run(ops::make_call(def, step_.name, std::move(args), false));
      EMBER_CHECK(!res.empty() && res[0].tensor.sizes() == dst.sizes(), ErrorCode::kShapeMismatch, step_.name,
                  ": post-op ", p.kind, " changes the output shape");
      dst.copy_from(res[0].tensor);
    }
    return dst;
  }

  PlanStep step_;
  const Plan& plan_;
  std::map<std::string, int64_t> symbols_;
  const ops::OpDef* def_ = nullptr;
  std::map<int, Shape> dims_;
  std::vector<Tensor> constants_;
};

}  // namespace

std::unique_ptr<StepExec> make_step_exec(const PlanStep& step, const ExecEnv& env) {
  try {
    if (step.kind == "reference") return std::make_unique<ReferenceExec>(step, env);
    if (step.kind == "winograd") return make_winograd_exec(step, env);
    return Builder{step, env, *env.plan}.build();
  } catch (const dnnl::error& e) {
    fail(ErrorCode::kCorrupt, env.plan->engine_name, ": step '", step.name, "' (", step.kind,
         "): oneDNN cannot create the kernel from the stored descriptors: ", e.what());
  } catch (const Error& e) {
    throw Error(e.code(), cat(env.plan->engine_name, ": step '", step.name, "' (", step.kind, "): ", e.what()));
  }
}

std::vector<Shape> value_dims(const Plan& plan, const std::map<std::string, int64_t>& symbols) {
  std::vector<Shape> dims;
  dims.reserve(plan.values.size());
  for (const PlanValue& v : plan.values) {
    Shape d = v.dims;
    for (size_t i = 0; i < d.size(); ++i) {
      if (v.symbols[i].empty()) continue;
      auto it = symbols.find(v.symbols[i]);
      EMBER_CHECK(it != symbols.end(), ErrorCode::kInvalidArgument, "symbol '", v.symbols[i], "' of value '", v.name,
                  "' is not bound by any input");
      d[i] = it->second;
    }
    dims.push_back(std::move(d));
  }
  return dims;
}

std::shared_ptr<Prepared> prepare_layout(const Plan& plan, const std::map<std::string, int64_t>& symbols,
                                         std::function<const uint8_t*(int)> blob_ptr,
                                         std::shared_ptr<const void> keepalive) {
  auto p = std::make_shared<Prepared>();
  p->env.plan = &plan;
  p->env.symbols = symbols;
  p->env.blob_ptr = std::move(blob_ptr);
  p->env.keepalive = std::move(keepalive);
  p->env.dims = value_dims(plan, symbols);
  bool build_shape = true;
  const size_t n = plan.values.size();
  p->env.descs.resize(n);
  std::vector<int64_t> sizes(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const PlanValue& v = plan.values[i];
    const Shape& d = p->env.dims[i];
    if (d != v.dims) build_shape = false;
    if (v.has_desc) p->env.descs[i] = d == v.dims ? v.desc : relayout(v.desc, d.empty() ? Shape{1} : d);
    sizes[i] = value_bytes(v, d, p->env.descs[i]);
  }
  if (build_shape) {
    p->arena_size = plan.arena_size;
    p->offsets.resize(n);
    for (size_t i = 0; i < n; ++i) p->offsets[i] = plan.values[i].offset;
  } else {
    p->arena_size = assign_arena(plan, sizes, &p->offsets);
  }
  return p;
}

KernelCreation::KernelCreation(Prepared& p)
    : p_(p),
      execs_(p.env.plan->steps.size()),
      errors_(p.env.plan->steps.size()),
      times_(p.env.plan->steps.size()),
      start_(std::chrono::steady_clock::now()) {}

bool KernelCreation::step() {
  const size_t k = next_.fetch_add(1);
  if (k >= execs_.size()) return false;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    execs_[k] = make_step_exec(p_.env.plan->steps[k], p_.env);
  } catch (...) {
    errors_[k] = std::current_exception();
  }
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  times_[k] = {ms(t0 - start_), ms(std::chrono::steady_clock::now() - t0), std::this_thread::get_id()};
  return true;
}

void KernelCreation::finish() {
  while (step()) {
  }
  for (const std::exception_ptr& e : errors_)
    if (e) std::rethrow_exception(e);
  if (log_level() <= LogLevel::kDebug) {
    // Threads numbered in the order they first took a step.
    std::vector<std::thread::id> threads;
    std::string per_step;
    for (size_t k = 0; k < times_.size(); ++k) {
      auto t = std::find(threads.begin(), threads.end(), times_[k].thread);
      if (t == threads.end()) t = threads.insert(threads.end(), times_[k].thread);
      per_step += cat(k == 0 ? "" : ", ", p_.env.plan->steps[k].name, " ", times_[k].ms, " (at ", times_[k].at_ms,
                      ", thread ", t - threads.begin(), ")");
    }
    log_debug("kernel creation per step (ms): ", per_step);
  }
  p_.steps = std::move(execs_);
  p_.scratch_bytes = 0;
  for (const auto& e : p_.steps) p_.scratch_bytes = std::max(p_.scratch_bytes, e->scratch_bytes);
}

std::shared_ptr<Prepared> prepare(const Plan& plan, const std::map<std::string, int64_t>& symbols,
                                  std::function<const uint8_t*(int)> blob_ptr, std::shared_ptr<const void> keepalive) {
  std::shared_ptr<Prepared> p = prepare_layout(plan, symbols, std::move(blob_ptr), std::move(keepalive));
  KernelCreation(*p).finish();
  return p;
}

void execute(const Prepared& p, const std::vector<const uint8_t*>& inputs, const std::vector<uint8_t*>& outputs,
             uint8_t* arena, uint8_t* scratch) {
  const Plan& plan = *p.env.plan;
  RunState st;
  dnnl::stream stream(cpu_engine());
  st.stream = &stream;
  st.scratch = scratch;
  st.ptr.resize(plan.values.size(), nullptr);
  for (size_t i = 0; i < plan.values.size(); ++i) {
    const PlanValue& v = plan.values[i];
    switch (v.placement) {
      case Placement::kArena: st.ptr[i] = arena + p.offsets[i]; break;
      case Placement::kInput: st.ptr[i] = const_cast<uint8_t*>(inputs.at(v.io_index)); break;
      case Placement::kOutput: st.ptr[i] = outputs.at(v.io_index); break;
    }
  }
  Profile* profile = ProfileScope::active();
  for (size_t k = 0; k < p.steps.size(); ++k) {
    try {
      if (!profile) {
        p.steps[k]->run(st);
        continue;
      }
      const auto t0 = std::chrono::steady_clock::now();
      p.steps[k]->run(st);
      stream.wait();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      const PlanStep& s = plan.steps[k];
      profile->entries.push_back({plan.engine_name, s.name, s.kind, p.steps[k]->impl, ms});
    } catch (const dnnl::error& e) {
      fail(ErrorCode::kInternal, plan.engine_name, ": step '", plan.steps[k].name, "' failed in oneDNN: ", e.what());
    }
  }
  stream.wait();
}

std::shared_ptr<Storage> allocate_run_buffer(size_t nbytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  if (nbytes < kHugePage || nbytes > (size_t{1} << 46)) return Storage::allocate(std::max<size_t>(nbytes, 1));
  const size_t length = (nbytes + kHugePage - 1) / kHugePage * kHugePage;
  const size_t reserve = length + kHugePage;  // room to align the start to 2 MiB
  void* raw = mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return Storage::allocate(nbytes);  // reports kOutOfMemory if it fails too
  const uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (base + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
  if (start > base) munmap(raw, start - base);
  if (base + reserve > start + length) munmap(reinterpret_cast<void*>(start + length), base + reserve - start - length);
  void* data = reinterpret_cast<void*>(start);
  madvise(data, length, MADV_HUGEPAGE);  // a request: hosts with THP off keep 4 KiB pages
  std::shared_ptr<const void> owner(data, [length](const void* p) { munmap(const_cast<void*>(p), length); });
  return Storage::borrow(data, nbytes, std::move(owner), /*writable=*/true);
}

// glibc's malloc (its dynamic mmap threshold) and a MADV_POPULATE_WRITE to ask for; sanitizer
// builds replace malloc, so there is nothing to warm there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EMBER_MALLOC_REPLACED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define EMBER_MALLOC_REPLACED 1
#endif
#endif
#if defined(__GLIBC__) && defined(MADV_POPULATE_WRITE) && !defined(EMBER_MALLOC_REPLACED)
#define EMBER_WARM_ALLOCATOR 1
#endif

bool warm_allocator_built() noexcept {
#ifdef EMBER_WARM_ALLOCATOR
  return true;
#else
  return false;
#endif
}

bool warm_allocator(size_t bytes) noexcept {
#ifdef EMBER_WARM_ALLOCATOR
  constexpr size_t kPage = 4096;
  if (bytes < 2 * kPage) return false;
  // A first block above the mmap threshold comes from mmap; freeing it raises the thresholds,
  // so the second comes from the arena. (One from the arena already is simply taken twice.)
  // Through a volatile pointer: a compiler may drop a malloc/free pair it sees unused.
  void* volatile first = std::malloc(bytes);
  std::free(first);
  void* p = std::malloc(bytes);
  if (p == nullptr) return false;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kPage - 1) & ~uintptr_t{kPage - 1};
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~uintptr_t{kPage - 1};
  const bool populated = madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) == 0;
  std::free(p);
  return populated;
#else
  (void)bytes;
  return false;
#endif
}

std::vector<std::string> isa_features_of_impl(const std::string& impl) {
  auto has = [&](const char* s) { return impl.find(s) != std::string::npos; };
  std::vector<std::string> f;
  auto add = [&](std::initializer_list<const char*> names) {
    for (const char* n : names) f.emplace_back(n);
  };
  std::string isa = impl;
  if (has("gemm:jit") || has("brg") || has("jit:gemm")) {
    // GEMM-based kernels dispatch inside on the host ISA.
    switch (dnnl::get_effective_cpu_isa()) {
      case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
      case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
      case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
      case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
      case dnnl::cpu_isa::avx2_vnni:
      case dnnl::cpu_isa::avx2: isa = "avx2"; break;
      case dnnl::cpu_isa::avx: isa = "avx"; break;
      case dnnl::cpu_isa::sse41: isa = "sse41"; break;
      default: isa = impl; break;
    }
  }
  auto contains = [&](const char* s) { return isa.find(s) != std::string::npos; };
  if (contains("avx512_core")) {
    add({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"});
    if (contains("vnni")) add({"avx512_vnni"});
    if (contains("bf16")) add({"avx512_bf16"});
    if (contains("amx")) add({"amx_tile", "amx_int8", "amx_bf16"});
  } else if (contains("avx2")) {
    add({"avx", "avx2", "fma"});
  } else if (contains("avx")) {
    add({"avx"});
  } else if (contains("sse41")) {
    add({"sse4_1"});
  }
  // Ember's Winograd transforms need AVX2 and FMA whatever the batched matmul after them runs
  // on (on a host with AVX-512 they run 16 channels a register instead of 8: same outputs).
  if (impl.starts_with("winograd_")) add({"avx", "avx2", "fma"});
  return f;
}

}  // namespace ember::cpu
