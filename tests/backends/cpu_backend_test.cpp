// CPU backend: engines built from hand-made EngineGraphs, compared with Ember's reference
// op kernels (which are themselves tested against PyTorch's outputs in tests/ops).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <thread>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/exec.h"
#include "backends/cpu/winograd.h"
#include "ember/engine.h"
#include "ember/log.h"
#include "ember/profile.h"
#include "ops/arg_convert.h"

namespace ember::cpu {
namespace {

using Json = nlohmann::json;

Tensor random_tensor(const Shape& shape, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  Tensor t = Tensor::empty(shape, DType::kFloat32);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
  return t;
}

// Runs one reference kernel of the op registry.
Tensor ref(const std::string& target, std::map<std::string, ops::OpArg, std::less<>> args) {
  const ops::OpDef& def = ops::require_op(target);
  auto out = def.run(ops::make_call(def, "test", std::move(args), false));
  return out.at(0).tensor.contiguous();
}
ops::OpArg T(const Tensor& t) { return ops::OpArg::of(t); }
ops::OpArg I(std::vector<int64_t> v) { return ops::OpArg::of_ints(std::move(v)); }

Tensor ref_conv(const Tensor& x, const Tensor& w, const Tensor* b, std::vector<int64_t> stride,
                std::vector<int64_t> pad, int64_t groups = 1) {
  return ref("torch.ops.aten.convolution.default",
             {{"input", T(x)}, {"weight", T(w)}, {"bias", b ? T(*b) : ops::OpArg::none()}, {"stride", I(stride)},
              {"padding", I(pad)}, {"dilation", I({1, 1})}, {"transposed", ops::OpArg::of_bool(false)},
              {"output_padding", I({0, 0})}, {"groups", ops::OpArg::of_int(groups)}});
}
Tensor ref_unary(const std::string& name, const Tensor& x) { return ref("torch.ops.aten." + name + ".default", {{"self", T(x)}}); }

void expect_close(const Tensor& got, const Tensor& want, double tol = 1e-4) {
  ASSERT_EQ(got.sizes(), want.sizes());
  ASSERT_EQ(got.dtype(), want.dtype());
  Tensor g = got.contiguous(), w = want.contiguous();
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    double a = element_as_double(g, i), b = element_as_double(w, i);
    double err = std::abs(a - b);
    if (err > tol + tol * std::abs(b)) ++bad;
    worst = std::max(worst, err);
  }
  EXPECT_EQ(bad, 0) << "max abs error " << worst;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.sizes() == b.sizes() && a.dtype() == b.dtype() && std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

struct GraphMaker {
  EngineGraph g;
  int value(const std::string& name, Shape dims, std::vector<std::string> symbols = {}) {
    EngineValue v;
    v.name = name;
    v.dims = std::move(dims);
    v.symbols = symbols.empty() ? std::vector<std::string>(v.dims.size()) : std::move(symbols);
    g.values.push_back(std::move(v));
    return static_cast<int>(g.values.size()) - 1;
  }
  FusedOp& op(const std::string& kind, std::vector<int> in, std::vector<int> out, const std::string& name = "") {
    FusedOp o;
    o.op = kind;
    o.inputs = std::move(in);
    o.outputs = std::move(out);
    o.name = name.empty() ? kind + std::to_string(g.ops.size()) : name;
    g.ops.push_back(std::move(o));
    return g.ops.back();
  }
};

PostOp elt(const std::string& alg) {
  PostOp p;
  p.alg = alg;
  return p;
}

BuildOptions fast() {
  BuildOptions o;
  o.time_tactics = false;
  return o;
}

std::shared_ptr<const Engine> build_and_load(const EngineGraph& g, const BuildOptions& o = fast()) {
  auto bytes = build_engine(g, o);
  return Engine::load(bytes, g.name + ".engine");
}

// ---------------------------------------------------------------- ops vs reference kernels

class ConvTest : public ::testing::TestWithParam<bool> {};

TEST_P(ConvTest, ConvBiasRelu) {
  GraphMaker m;
  m.g.name = "conv_relu";
  int x = m.value("x", {2, 8, 14, 14});
  int y = m.value("y", {2, 16, 7, 7});
  Tensor w = random_tensor({16, 8, 3, 3}, 1), b = random_tensor({16}, 2);
  FusedOp& c = m.op("conv2d", {x}, {y}, "conv1");
  c.constants = {w, b};
  c.attrs = {{"stride", {2, 2}}, {"padding", {1, 1}}, {"dilation", {1, 1}}, {"groups", 1}};
  c.post_ops = {elt("relu")};
  m.g.inputs = {x};
  m.g.outputs = {y};
  BuildOptions o = fast();
  o.time_tactics = GetParam();
  std::vector<std::string> progress;
  o.progress = [&](const std::string& s) { progress.push_back(s); };
  auto e = build_and_load(m.g, o);
  EXPECT_FALSE(progress.empty());
  Tensor in = random_tensor({2, 8, 14, 14}, 3);
  auto out = e->run({in});
  expect_close(out.at(0), ref_unary("relu", ref_conv(in, w, &b, {2, 2}, {1, 1})));
  EXPECT_NE(e->describe().find("conv1"), std::string::npos);
}

TEST_P(ConvTest, ResidualBlockWithSumPostOp) {
  // conv1 (BN already folded into weights) + relu, conv2 + residual add (sum post-op) + relu,
  // then a grouped conv: a chain that stays in blocked layouts.
  GraphMaker m;
  m.g.name = "resblock";
  int x = m.value("x", {1, 16, 10, 10});
  int y1 = m.value("y1", {1, 16, 10, 10});
  int y2 = m.value("y2", {1, 16, 10, 10});
  int y3 = m.value("y3", {1, 16, 5, 5});
  Tensor w1 = random_tensor({16, 16, 3, 3}, 4, -0.2f, 0.2f), b1 = random_tensor({16}, 5);
  Tensor w2 = random_tensor({16, 16, 3, 3}, 6, -0.2f, 0.2f), b2 = random_tensor({16}, 7);
  Tensor w3 = random_tensor({16, 4, 3, 3}, 8, -0.2f, 0.2f);
  FusedOp& c1 = m.op("conv2d", {x}, {y1}, "layer1.0.conv1");
  c1.constants = {w1, b1};
  c1.attrs = {{"stride", {1, 1}}, {"padding", {1, 1}}};
  c1.post_ops = {elt("relu")};
  FusedOp& c2 = m.op("conv2d", {y1}, {y2}, "layer1.0.conv2");
  c2.constants = {w2, b2};
  c2.attrs = {{"stride", {1, 1}}, {"padding", {1, 1}}};
  PostOp sum;
  sum.kind = PostOp::Kind::kSum;
  sum.value = x;
  c2.post_ops = {sum, elt("relu")};
  FusedOp& c3 = m.op("conv2d", {y2}, {y3}, "grouped");
  c3.constants = {w3};
  c3.attrs = {{"stride", {2, 2}}, {"padding", {1, 1}}, {"groups", 4}};
  m.g.inputs = {x};
  m.g.outputs = {y3, y2};
  BuildOptions o = fast();
  o.time_tactics = GetParam();
  auto bytes = build_engine(m.g, o);
  auto e = Engine::load(bytes, "resblock.engine");
  // The plan: the residual add is done in place (the destination aliases the residual) and,
  // with oneDNN's own choice on an AVX2/AVX-512 host, activations stay blocked between convs.
  EngineView view = EngineView::parse(bytes, "resblock.engine");
  auto plan_bytes = view.section(kSectionPlan);
  Json plan = Json::parse(std::string(reinterpret_cast<const char*>(plan_bytes->data()), plan_bytes->nbytes()));
  bool aliased = false, blocked = false;
  for (const Json& v : plan["values"]) {
    aliased = aliased || v["alias"].get<int>() >= 0;
    blocked = blocked || (!v["desc"].is_null() && !v["desc"]["inner_blks"].empty());
  }
  if (!GetParam() && host_target().has_feature("avx2")) {
    EXPECT_TRUE(blocked) << e->describe();
    EXPECT_TRUE(aliased) << e->describe();
  }
  Tensor in = random_tensor({1, 16, 10, 10}, 9);
  auto out = e->run({in});
  Tensor r1 = ref_unary("relu", ref_conv(in, w1, &b1, {1, 1}, {1, 1}));
  Tensor r2 = ref_unary("relu", ref("torch.ops.aten.add.Tensor", {{"self", T(ref_conv(r1, w2, &b2, {1, 1}, {1, 1}))},
                                                                   {"other", T(in)}}));
  Tensor r3 = ref_conv(r2, w3, nullptr, {2, 2}, {1, 1}, 4);
  expect_close(out.at(1), r2);
  expect_close(out.at(0), r3);
}

INSTANTIATE_TEST_SUITE_P(Tactics, ConvTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "timed" : "untimed"; });

TEST(CpuBackend, LinearGelu) {
  for (bool timed : {false, true}) {
    GraphMaker m;
    m.g.name = "linear_gelu";
    int x = m.value("x", {3, 5, 32});
    int y = m.value("y", {3, 5, 64});
    Tensor w = random_tensor({64, 32}, 10), b = random_tensor({64}, 11);
    FusedOp& l = m.op("linear", {x}, {y}, "fc");
    l.constants = {w, b};
    l.post_ops = {elt("gelu_erf")};
    m.g.inputs = {x};
    m.g.outputs = {y};
    BuildOptions o = fast();
    o.time_tactics = timed;
    auto e = build_and_load(m.g, o);
    Tensor in = random_tensor({3, 5, 32}, 12);
    Tensor want = ref_unary("gelu", ref("torch.ops.aten.linear.default", {{"input", T(in)}, {"weight", T(w)}, {"bias", T(b)}}));
    expect_close(e->run({in}).at(0), want);
  }
}

TEST(CpuBackend, Pooling) {
  GraphMaker m;
  m.g.name = "pools";
  int x = m.value("x", {2, 8, 15, 15});
  int mp = m.value("mp", {2, 8, 8, 8});
  int mpc = m.value("mpc", {2, 8, 8, 8});
  int ap = m.value("ap", {2, 8, 7, 7});
  int gp = m.value("gp", {2, 8, 1, 1});
  m.op("max_pool2d", {x}, {mp}).attrs = {{"kernel", {3, 3}}, {"stride", {2, 2}}, {"padding", {1, 1}}};
  m.op("max_pool2d", {x}, {mpc}).attrs = {{"kernel", {2, 2}}, {"stride", {2, 2}}, {"ceil_mode", true}};
  m.op("avg_pool2d", {x}, {ap}).attrs = {{"kernel", {3, 3}}, {"stride", {2, 2}}, {"padding", {0, 0}}};
  m.op("adaptive_avg_pool2d", {x}, {gp}).attrs = {{"output_size", {1, 1}}};
  m.g.inputs = {x};
  m.g.outputs = {mp, mpc, ap, gp};
  auto e = build_and_load(m.g);
  Tensor in = random_tensor({2, 8, 15, 15}, 13);
  auto out = e->run({in});
  auto B = [](bool b) { return ops::OpArg::of_bool(b); };
  expect_close(out[0], ref("torch.ops.aten.max_pool2d.default",
                           {{"self", T(in)}, {"kernel_size", I({3, 3})}, {"stride", I({2, 2})}, {"padding", I({1, 1})}}));
  expect_close(out[1], ref("torch.ops.aten.max_pool2d.default",
                           {{"self", T(in)}, {"kernel_size", I({2, 2})}, {"stride", I({2, 2})}, {"ceil_mode", B(true)}}));
  expect_close(out[2], ref("torch.ops.aten.avg_pool2d.default",
                           {{"self", T(in)}, {"kernel_size", I({3, 3})}, {"stride", I({2, 2})}}));
  expect_close(out[3], ref("torch.ops.aten.adaptive_avg_pool2d.default", {{"self", T(in)}, {"output_size", I({1, 1})}}));
}

TEST(CpuBackend, SoftmaxAndLogSoftmax) {
  GraphMaker m;
  m.g.name = "softmax";
  int x = m.value("x", {4, 3, 10});
  int s = m.value("s", {4, 3, 10});
  int ls = m.value("ls", {4, 3, 10});
  m.op("softmax", {x}, {s}).attrs = {{"dim", -1}};
  m.op("log_softmax", {x}, {ls}).attrs = {{"dim", 1}};
  m.g.inputs = {x};
  m.g.outputs = {s, ls};
  auto e = build_and_load(m.g);
  Tensor in = random_tensor({4, 3, 10}, 14, -3, 3);
  auto out = e->run({in});
  auto F = ops::OpArg::of_bool(false);
  expect_close(out[0], ref("torch.ops.aten._softmax.default", {{"self", T(in)}, {"dim", ops::OpArg::of_int(-1)}, {"half_to_float", F}}));
  expect_close(out[1], ref("torch.ops.aten._log_softmax.default", {{"self", T(in)}, {"dim", ops::OpArg::of_int(1)}, {"half_to_float", F}}));
}

TEST(CpuBackend, LayerNorm) {
  GraphMaker m;
  m.g.name = "layer_norm";
  int x = m.value("x", {2, 5, 32});
  int y = m.value("y", {2, 5, 32});
  Tensor w = random_tensor({32}, 15), b = random_tensor({32}, 16);
  FusedOp& ln = m.op("layer_norm", {x}, {y});
  ln.constants = {w, b};
  ln.attrs = {{"normalized_shape", {32}}, {"eps", 1e-5}};
  m.g.inputs = {x};
  m.g.outputs = {y};
  auto e = build_and_load(m.g);
  Tensor in = random_tensor({2, 5, 32}, 17, -2, 2);
  expect_close(e->run({in}).at(0),
               ref("torch.ops.aten.layer_norm.default", {{"input", T(in)}, {"normalized_shape", I({32})}, {"weight", T(w)},
                                                          {"bias", T(b)}, {"eps", ops::OpArg::of_float(1e-5)}}));
}

TEST(CpuBackend, EltwiseAndBinaryBroadcast) {
  GraphMaker m;
  m.g.name = "ew";
  int a = m.value("a", {2, 3, 4});
  int b = m.value("b", {4});
  int s = m.value("s", {2, 3, 4});
  int t = m.value("t", {2, 3, 4});
  int u = m.value("u", {2, 3, 4});
  m.op("binary", {b, a}, {s}).attrs = {{"alg", "mul"}};  // broadcast operand first: swapped by the builder
  m.op("eltwise", {s}, {t}).attrs = {{"alg", "hardswish"}};
  m.op("binary", {t, b}, {u}).attrs = {{"alg", "sub"}};
  m.g.inputs = {a, b};
  m.g.outputs = {u};
  auto e = build_and_load(m.g);
  Tensor ta = random_tensor({2, 3, 4}, 18, -4, 4), tb = random_tensor({4}, 19);
  Tensor want = ref("torch.ops.aten.sub.Tensor",
                    {{"self", T(ref_unary("hardswish", ref("torch.ops.aten.mul.Tensor", {{"self", T(tb)}, {"other", T(ta)}})))},
                     {"other", T(tb)}});
  expect_close(e->run({ta, tb}).at(0), want);
}

TEST(CpuBackend, ReferencePermuteAndView) {
  GraphMaker m;
  m.g.name = "reference_ops";
  int x = m.value("x", {2, 3, 4});
  int p = m.value("p", {2, 4, 3});
  int v = m.value("v", {2, 12});
  int r = m.value("r", {2, 12});
  FusedOp& op1 = m.op("reference", {x}, {p}, "permute");
  op1.attrs = {{"target", "torch.ops.aten.permute.default"},
               {"args", Json::array({{{"name", "self"}, {"arg", {{"as_tensor", {{"name", "%0"}}}}}},
                                     {{"name", "dims"}, {"arg", {{"as_ints", {0, 2, 1}}}}}})}};
  FusedOp& op2 = m.op("reference", {p}, {v}, "view");
  op2.attrs = {{"target", "torch.ops.aten.view.default"},
               {"args", Json::array({{{"name", "self"}, {"arg", {{"as_tensor", {{"name", "%1"}}}}}},
                                     {{"name", "size"}, {"arg", {{"as_ints", {2, -1}}}}}})}};
  m.op("eltwise", {v}, {r}).attrs = {{"alg", "relu"}};
  m.g.inputs = {x};
  m.g.outputs = {r};
  auto e = build_and_load(m.g);
  Tensor in = random_tensor({2, 3, 4}, 20);
  Tensor want = ref_unary("relu", ref("torch.ops.aten.permute.default", {{"self", T(in)}, {"dims", I({0, 2, 1})}})
                                      .contiguous()
                                      .view({2, 12}));
  expect_close(e->run({in}).at(0), want);
}

TEST(CpuBackend, DynamicBatchLinear) {
  GraphMaker m;
  m.g.name = "dyn";
  m.g.ranges["s0"] = {1, 64};
  int x = m.value("x", {-1, 16}, {"s0", ""});
  int h = m.value("h", {-1, 8}, {"s0", ""});
  int y = m.value("y", {-1, 8}, {"s0", ""});
  Tensor w = random_tensor({8, 16}, 21), b = random_tensor({8}, 22);
  FusedOp& l = m.op("linear", {x}, {h}, "fc");
  l.constants = {w, b};
  l.post_ops = {elt("relu")};
  m.op("softmax", {h}, {y}).attrs = {{"dim", -1}};
  m.g.inputs = {x};
  m.g.outputs = {y};
  for (bool timed : {false, true}) {
    BuildOptions o = fast();
    o.time_tactics = timed;
    auto e = build_and_load(m.g, o);
    EXPECT_EQ(e->meta().inputs.at(0).shape.at(0).symbol, "s0");
    EXPECT_EQ(e->meta().inputs.at(0).shape.at(0).max, 64);
    for (int64_t batch : {1, 4, 37, 4}) {
      Tensor in = random_tensor({batch, 16}, 23 + static_cast<uint32_t>(batch));
      Tensor lin = ref_unary("relu", ref("torch.ops.aten.linear.default", {{"input", T(in)}, {"weight", T(w)}, {"bias", T(b)}}));
      Tensor want = ref("torch.ops.aten._softmax.default",
                        {{"self", T(lin)}, {"dim", ops::OpArg::of_int(-1)}, {"half_to_float", ops::OpArg::of_bool(false)}});
      expect_close(e->run({in}).at(0), want);
    }
    try {
      e->run({random_tensor({65, 16}, 1)});
      FAIL() << "batch 65 accepted";
    } catch (const Error& err) {
      EXPECT_EQ(err.code(), ErrorCode::kShapeMismatch);
      EXPECT_NE(std::string(err.what()).find("s0 in 1..64"), std::string::npos) << err.what();
    }
  }
}

TEST(CpuBackend, DynamicBatchConvStaysBlocked) {
  GraphMaker m;
  m.g.name = "dyn_conv";
  m.g.ranges["n"] = {1, 8};
  int x = m.value("x", {-1, 8, 9, 9}, {"n", "", "", ""});
  int y = m.value("y", {-1, 16, 9, 9}, {"n", "", "", ""});
  int z = m.value("z", {-1, 16, 1, 1}, {"n", "", "", ""});
  Tensor w = random_tensor({16, 8, 3, 3}, 30);
  FusedOp& c = m.op("conv2d", {x}, {y});
  c.constants = {w};
  c.attrs = {{"padding", {1, 1}}};
  m.op("adaptive_avg_pool2d", {y}, {z}).attrs = {{"output_size", {1, 1}}};
  m.g.inputs = {x};
  m.g.outputs = {z};
  auto e = build_and_load(m.g);
  for (int64_t n : {1, 3, 8}) {
    Tensor in = random_tensor({n, 8, 9, 9}, 31);
    expect_close(e->run({in}).at(0),
                 ref("torch.ops.aten.adaptive_avg_pool2d.default",
                     {{"self", T(ref_conv(in, w, nullptr, {1, 1}, {1, 1}))}, {"output_size", I({1, 1})}}));
  }
}

// ---------------------------------------------------------------- forced tactics

// A ResNet-like stem + residual block with a dynamic batch "n" in 1..16:
//   stem conv+relu -> max pool -> conv+relu -> conv + sum(pool output) + relu -> adaptive avg
//   pool -> flatten (reference view) -> linear -> softmax
// Outputs: the flatten, the linear and the softmax, led by the last residual block's output
// when `output_block` (an engine output is never aliased, so without it the block's output
// may take the residual's bytes in place).
// Convs are named "stem", "block.conv1", "block.conv2"; with `blocks` = 2 a second residual
// block ("block2.conv1", "block2.conv2", sum operand: the first block's output) follows.
struct ResNetWeights {
  Tensor w0 = random_tensor({8, 3, 3, 3}, 60, -0.5f, 0.5f), b0 = random_tensor({8}, 61);
  Tensor w1 = random_tensor({8, 8, 3, 3}, 62, -0.3f, 0.3f), b1 = random_tensor({8}, 63);
  Tensor w2 = random_tensor({8, 8, 3, 3}, 64, -0.3f, 0.3f), b2 = random_tensor({8}, 65);
  Tensor w3 = random_tensor({8, 8, 3, 3}, 66, -0.3f, 0.3f), b3 = random_tensor({8}, 67);
  Tensor w4 = random_tensor({8, 8, 3, 3}, 68, -0.3f, 0.3f), b4 = random_tensor({8}, 69);
  Tensor wl = random_tensor({10, 8}, 70), bl = random_tensor({10}, 71);
};

EngineGraph residual_graph(const ResNetWeights& w, int blocks, bool output_block) {
  GraphMaker m;
  m.g.name = "resnet_tactics";
  m.g.ranges["n"] = {1, 16};
  auto act = [&](const std::string& name, Shape dims) {
    std::vector<std::string> sym(dims.size());
    sym[0] = "n";
    dims[0] = -1;
    return m.value(name, dims, sym);
  };
  int x = act("x", {1, 3, 16, 16});
  int a = act("a", {1, 8, 16, 16});
  int p = act("p", {1, 8, 8, 8});
  auto conv = [&](const std::string& name, int in, int out, const Tensor& wt, const Tensor& b) -> FusedOp& {
    FusedOp& c = m.op("conv2d", {in}, {out}, name);
    c.constants = {wt, b};
    c.attrs = {{"stride", {1, 1}}, {"padding", {1, 1}}};
    c.post_ops = {elt("relu")};
    return c;
  };
  auto block = [&](const std::string& name, int in, const Tensor& wa, const Tensor& ba, const Tensor& wb,
                   const Tensor& bb) {
    int h = act(name + ".h", {1, 8, 8, 8});
    int o = act(name + ".out", {1, 8, 8, 8});
    conv(name + ".conv1", in, h, wa, ba);
    PostOp sum;
    sum.kind = PostOp::Kind::kSum;
    sum.value = in;
    conv(name + ".conv2", h, o, wb, bb).post_ops = {sum, elt("relu")};
    return o;
  };
  conv("stem", x, a, w.w0, w.b0);
  m.op("max_pool2d", {a}, {p}, "pool").attrs = {{"kernel", {3, 3}}, {"stride", {2, 2}}, {"padding", {1, 1}}};
  int r = block("block", p, w.w1, w.b1, w.w2, w.b2);
  if (blocks == 2) r = block("block2", r, w.w3, w.b3, w.w4, w.b4);
  int g = act("g", {1, 8, 1, 1});
  int f = act("f", {1, 8});
  int l = act("l", {1, 10});
  int sm = act("sm", {1, 10});
  m.op("adaptive_avg_pool2d", {r}, {g}, "gap").attrs = {{"output_size", {1, 1}}};
  m.op("reference", {g}, {f}, "flatten").attrs = {
      {"target", "torch.ops.aten.view.default"},
      {"args", Json::array({{{"name", "self"}, {"arg", {{"as_tensor", {{"name", cat("%", g)}}}}}},
                            {{"name", "size"}, {"arg", {{"as_ints", {-1, 8}}}}}})}};
  FusedOp& fc = m.op("linear", {f}, {l}, "fc");
  fc.constants = {w.wl, w.bl};
  m.op("softmax", {l}, {sm}, "softmax").attrs = {{"dim", -1}};
  m.g.inputs = {x};
  m.g.outputs = {f, l, sm};
  if (output_block) m.g.outputs.insert(m.g.outputs.begin(), r);
  return m.g;
}

// The same network with the registry's reference kernels: {block output, flatten, linear, softmax}.
std::vector<Tensor> residual_reference(const ResNetWeights& w, int blocks, const Tensor& x) {
  auto conv_relu = [](const Tensor& in, const Tensor& wt, const Tensor& b) {
    return ref_unary("relu", ref_conv(in, wt, &b, {1, 1}, {1, 1}));
  };
  auto add = [](const Tensor& a, const Tensor& b) { return ref("torch.ops.aten.add.Tensor", {{"self", T(a)}, {"other", T(b)}}); };
  Tensor a = conv_relu(x, w.w0, w.b0);
  Tensor p = ref("torch.ops.aten.max_pool2d.default", {{"self", T(a)}, {"kernel_size", I({3, 3})}, {"stride", I({2, 2})},
                                                       {"padding", I({1, 1})}, {"dilation", I({1, 1})},
                                                       {"ceil_mode", ops::OpArg::of_bool(false)}});
  Tensor r = ref_unary("relu", add(ref_conv(conv_relu(p, w.w1, w.b1), w.w2, &w.b2, {1, 1}, {1, 1}), p));
  if (blocks == 2) r = ref_unary("relu", add(ref_conv(conv_relu(r, w.w3, w.b3), w.w4, &w.b4, {1, 1}, {1, 1}), r));
  Tensor g = ref("torch.ops.aten.adaptive_avg_pool2d.default", {{"self", T(r)}, {"output_size", I({1, 1})}});
  Tensor f = g.contiguous().view({x.size(0), 8});
  Tensor l = ref("torch.ops.aten.linear.default", {{"input", T(f)}, {"weight", T(w.wl)}, {"bias", T(w.bl)}});
  Tensor sm = ref("torch.ops.aten._softmax.default",
                  {{"self", T(l)}, {"dim", ops::OpArg::of_int(-1)}, {"half_to_float", ops::OpArg::of_bool(false)}});
  return {r, f, l, sm};
}

// Random inputs at batch sizes 1, 5, 8 and 16 (seeds from `seed`) and the reference outputs.
struct ResidualCases {
  std::map<int64_t, Tensor> inputs;
  std::map<int64_t, std::vector<Tensor>> want;
};
ResidualCases residual_cases(const ResNetWeights& w, int blocks, uint32_t seed) {
  ResidualCases c;
  for (int64_t n : {1, 5, 8, 16}) {
    c.inputs[n] = random_tensor({n, 3, 16, 16}, seed + static_cast<uint32_t>(n));
    c.want[n] = residual_reference(w, blocks, c.inputs[n]);
  }
  return c;
}

// Step name -> recorded tactic, from the engine's plan section.
// An engine's plan section, parsed.
Json plan_json(const std::shared_ptr<Storage>& bytes) {
  EngineView view = EngineView::parse(bytes, "engine");
  auto plan_bytes = view.section(kSectionPlan);
  return Json::parse(std::string(reinterpret_cast<const char*>(plan_bytes->data()), plan_bytes->nbytes()));
}

Json plan_steps(const std::shared_ptr<Storage>& bytes) { return plan_json(bytes)["steps"]; }

std::map<std::string, std::string> plan_tactics(const std::shared_ptr<Storage>& bytes) {
  std::map<std::string, std::string> out;
  for (const Json& s : plan_steps(bytes))
    if (s["kind"] != "reorder") out[s["name"].get<std::string>()] = s["tactic"].get<std::string>();
  return out;
}

std::string describe_forced(const std::map<std::string, std::string>& f) {
  std::string out;
  for (const auto& [k, v] : f) out += cat(out.empty() ? "" : ",", k, "=", v);
  return out;
}

// Runs `bytes` at batch sizes below, at and above the build batch (8) and compares every output.
void check_residual(const std::shared_ptr<Storage>& bytes, const std::map<int64_t, std::vector<Tensor>>& want, const std::map<int64_t, Tensor>& inputs,
                    const std::string& what) {
  auto e = Engine::load(bytes, "resnet_tactics.engine");
  for (int64_t n : {16, 1, 8, 5}) {
    SCOPED_TRACE(cat(what, " batch ", n));
    auto out = e->run({inputs.at(n)});
    const std::vector<Tensor>& expected = want.at(n);
    ASSERT_TRUE(out.size() == 3 || out.size() == 4);
    for (size_t k = 0; k < out.size(); ++k) {
      SCOPED_TRACE(cat("output ", k));
      expect_close(out[k], expected[expected.size() - out.size() + k], 2e-4);
    }
  }
}

TEST(CpuBackendTactics, ForcedTacticIsUsedAndUnknownOneIsAnError) {
  ResNetWeights w;
  EngineGraph g = residual_graph(w, 1, true);
  BuildOptions o = fast();
  o.force_tactics = {{"conv2d", "reference"}, {"stem", "plain"}, {"linear", "matmul"}};
  auto t = plan_tactics(build_engine(g, o));
  EXPECT_EQ(t["stem"], "plain");
  EXPECT_EQ(t["block.conv1"], "reference");
  EXPECT_EQ(t["block.conv2"], "reference");
  EXPECT_EQ(t["fc"], "matmul");
  o.force_tactics = {{"max_pool2d", "blocked"}};
  try {
    build_engine(g, o);
    FAIL() << "a tactic max_pool2d does not have was accepted";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(err.what()).find("forced tactic 'blocked'"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("onednn, reference"), std::string::npos) << err.what();
  }
}

TEST(CpuBackendTactics, EnvironmentVariableForcesTactics) {
  ResNetWeights w;
  EngineGraph g = residual_graph(w, 1, true);
  ASSERT_EQ(setenv("EMBER_FORCE_TACTICS", " conv2d=reference, max_pool2d=onednn,,fc=inner_product", 1), 0);
  BuildOptions o = fast();
  o.force_tactics = {{"stem", "blocked"}};  // options win over the environment for the same key
  std::map<std::string, std::string> t;
  try {
    t = plan_tactics(build_engine(g, o));
  } catch (...) {
    unsetenv("EMBER_FORCE_TACTICS");
    throw;
  }
  setenv("EMBER_FORCE_TACTICS", "conv2d", 1);
  EXPECT_THROW(build_engine(g, o), Error);
  unsetenv("EMBER_FORCE_TACTICS");
  EXPECT_EQ(t["stem"], "blocked");
  EXPECT_EQ(t["block.conv1"], "reference");
  EXPECT_EQ(t["block.conv2"], "reference");
  EXPECT_EQ(t["pool"], "onednn");
  EXPECT_EQ(t["fc"], "inner_product");
}

// Every combination of tactics over the residual network, at several batch sizes: each op
// must get its input in the layout it declares, and the residual (sum post-op operand) must
// survive until the fused convolution reads it, whatever mix of kernels was chosen.
TEST(CpuBackendTactics, EveryCombinationMatchesReference) {
  ResNetWeights w;
  EngineGraph g = residual_graph(w, 1, false);
  const auto [inputs, want] = residual_cases(w, 1, 80);
  const std::vector<std::string> conv_t = {"blocked", "plain", "reference"};
  const std::vector<std::string> dnnl_t = {"onednn", "reference"};
  const std::vector<std::string> linear_t = {"inner_product", "matmul", "reference"};
  int builds = 0;
  for (const auto& stem : conv_t)
    for (const auto& c1 : conv_t)
      for (const auto& c2 : conv_t)
        for (const auto& pool : dnnl_t)
          for (const auto& gap : dnnl_t)
            for (const auto& fc : linear_t)
              for (const auto& softmax : dnnl_t) {
                BuildOptions o = fast();
                o.force_tactics = {{"stem", stem},       {"block.conv1", c1}, {"block.conv2", c2},
                                   {"max_pool2d", pool}, {"gap", gap},        {"linear", fc},
                                   {"softmax", softmax}};
                std::string what = describe_forced(o.force_tactics);
                std::shared_ptr<Storage> bytes;
                ASSERT_NO_THROW(bytes = build_engine(g, o)) << what;
                auto t = plan_tactics(bytes);
                ASSERT_EQ(t["stem"], stem) << what;
                ASSERT_EQ(t["block.conv2"], c2) << what;
                ASSERT_EQ(t["pool"], pool) << what;
                ASSERT_EQ(t["fc"], fc) << what;
                check_residual(bytes, want, inputs, what);
                ++builds;
                if (HasFailure()) return;
              }
  EXPECT_EQ(builds, 3 * 3 * 3 * 2 * 2 * 3 * 2);
}

// Two residual blocks (the second block's residual is the first block's output) with
// tactics alternating from op to op, then the same network with timed tactics.
TEST(CpuBackendTactics, AlternatingTacticsPerOpMatchReference) {
  ResNetWeights w;
  EngineGraph g = residual_graph(w, 2, true);
  const auto [inputs, want] = residual_cases(w, 2, 90);
  const std::vector<std::string> convs = {"stem", "block.conv1", "block.conv2", "block2.conv1", "block2.conv2"};
  const std::vector<std::string> conv_t = {"blocked", "reference", "plain"};
  for (size_t shift = 0; shift < 6; ++shift) {
    BuildOptions o = fast();
    for (size_t i = 0; i < convs.size(); ++i) o.force_tactics[convs[i]] = conv_t[(i + shift) % 3];
    o.force_tactics["pool"] = shift % 2 ? "reference" : "onednn";
    o.force_tactics["gap"] = shift % 2 ? "onednn" : "reference";
    o.force_tactics["fc"] = shift % 3 == 0 ? "reference" : shift % 3 == 1 ? "inner_product" : "matmul";
    o.force_tactics["softmax"] = (shift / 2) % 2 ? "reference" : "onednn";
    std::string what = describe_forced(o.force_tactics);
    check_residual(build_engine(g, o), want, inputs, what);
  }
  for (int run = 0; run < 2; ++run) {
    BuildOptions o = fast();
    o.time_tactics = true;
    o.timing_iterations = 2;
    check_residual(build_engine(g, o), want, inputs, cat("timed build ", run));
  }
}

// ---------------------------------------------------------------- Winograd convolutions

struct WinogradCase {
  int64_t n, c, k, h, w, pad;
  bool bias;
  std::string post;  // "", "relu", "sum+relu"
};

void PrintTo(const WinogradCase& c, std::ostream* os) {
  *os << "x [" << c.n << ", " << c.c << ", " << c.h << ", " << c.w << "] -> " << c.k << " channels, pad " << c.pad
      << (c.bias ? ", bias" : "") << (c.post.empty() ? "" : ", " + c.post);
}

class WinogradTest : public ::testing::TestWithParam<WinogradCase> {};

std::shared_ptr<Storage> rewrite(const std::shared_ptr<Storage>& bytes, const std::function<void(EngineMeta&)>& meta_fn,
                                 const std::function<void(Json&)>& plan_fn, const std::string* raw_plan = nullptr);

// The engine with every nChw8c value of its plan in nhwc instead: the Winograd step then reads
// and writes nhwc, the reorders around it convert to and from it.
std::shared_ptr<Storage> winograd_in_nhwc(const std::shared_ptr<Storage>& bytes) {
  return rewrite(bytes, nullptr, [](Json& j) {
    for (Json& v : j["values"]) {
      if (!v.contains("desc") || v["dims"].size() != 4) continue;
      const Shape dims = v["dims"].get<Shape>();
      if (v["desc"] == desc_to_json(winograd_layout(dims, false))) v["desc"] = desc_to_json(winograd_layout(dims, true));
    }
  });
}

// The Winograd tactic, forced, against the reference convolution: partial 2x2 tiles (odd
// output sizes), no padding, outputs smaller than a tile, C != K, a residual sum whose
// operand the memory plan may place at the destination's bytes, tiles in several blocks.
TEST_P(WinogradTest, MatchesReferenceConvolution) {
  if (!winograd_supported_on_host()) GTEST_SKIP() << "the Winograd kernel needs AVX2 and FMA";
  const WinogradCase& p = GetParam();
  const int64_t oh = p.h + 2 * p.pad - 2, ow = p.w + 2 * p.pad - 2;
  GraphMaker m;
  m.g.name = "winograd";
  int x = m.value("x", {p.n, p.c, p.h, p.w});
  int r = m.value("r", {p.n, p.k, oh, ow});
  int y = m.value("y", {p.n, p.k, oh, ow});
  Tensor wt = random_tensor({p.k, p.c, 3, 3}, 100, -0.3f, 0.3f), b = random_tensor({p.k}, 101);
  FusedOp& conv = m.op("conv2d", {x}, {y}, "wconv");
  conv.constants = {wt};
  if (p.bias) conv.constants.push_back(b);
  conv.attrs = {{"stride", {1, 1}}, {"padding", {p.pad, p.pad}}};
  PostOp sum;
  sum.kind = PostOp::Kind::kSum;
  sum.value = r;
  if (p.post == "relu") conv.post_ops = {elt("relu")};
  if (p.post == "sum+relu") conv.post_ops = {sum, elt("relu")};
  m.g.inputs = {x, r};
  m.g.outputs = {y};
  Tensor in = random_tensor({p.n, p.c, p.h, p.w}, 102), res = random_tensor({p.n, p.k, oh, ow}, 103);
  Tensor want = ref_conv(in, wt, p.bias ? &b : nullptr, {1, 1}, {p.pad, p.pad});
  if (p.post == "sum+relu") want = ref("torch.ops.aten.add.Tensor", {{"self", T(want)}, {"other", T(res)}});
  if (!p.post.empty()) want = ref_unary("relu", want);
  // Transformed filters stored (16/9 of the filter bytes), and the compact form: the filters
  // stored, transformed on every run.
  auto weight_bytes = [&](const std::string& tactic) {
    BuildOptions o = fast();
    o.force_tactics = {{"wconv", tactic}};
    return EngineView::parse(build_engine(m.g, o), "w.engine").section(kSectionWeights)->nbytes();
  };
  const size_t plain_bytes = weight_bytes("plain");
  for (const std::string tactic : {"winograd", "winograd_compact", "winograd4x4", "winograd4x4_compact"}) {
    SCOPED_TRACE(tactic);
    BuildOptions o = fast();
    o.force_tactics = {{"wconv", tactic}};
    auto bytes = build_engine(m.g, o);
    EXPECT_EQ(plan_tactics(bytes)["wconv"], tactic);
    const size_t stored = EngineView::parse(bytes, "winograd.engine").section(kSectionWeights)->nbytes();
    if (tactic.ends_with("_compact")) EXPECT_EQ(stored, plain_bytes);
    else EXPECT_GT(stored, plain_bytes);
    auto e = Engine::load(bytes, "winograd.engine");
    const char* kernel = tactic.starts_with("winograd4x4") ? "winograd_4x4_3x3" : "winograd_2x2_3x3";
    EXPECT_NE(e->describe().find(kernel), std::string::npos) << e->describe();
    auto out = e->run({in, res});
    // F(4x4, 3x3)'s transforms have larger coefficients (up to 8 in At, down to 1/24 in G), so
    // its rounding error grows faster with the channels summed: over 1024 and 4096 input
    // channels (outputs of magnitude ~10-30) it reached 6e-4 and 7e-4 absolute.
    expect_close(out.at(0), want, tactic.starts_with("winograd4x4") && p.c >= 1024 ? 2e-3 : 1e-4);
    // Serialized and loaded again: bitwise the same; and the same on a second run (the
    // compact form's per-run transform writes the scratch space the first run also used).
    auto again = Engine::load(bytes, "again.engine");
    EXPECT_TRUE(bitwise_equal(again->run({in, res}).at(0), out.at(0)));
    EXPECT_TRUE(bitwise_equal(again->run({in, res}).at(0), out.at(0)));
    // The same step in nhwc (the residual operand too): the same arithmetic in the same order,
    // so bitwise the same outputs. On a host with AVX-512, where C and K are multiples of 16,
    // this is the 16-channel copy of the transforms against the 8-channel one.
    auto nhwc = Engine::load(winograd_in_nhwc(bytes), "nhwc.engine");
    EXPECT_TRUE(bitwise_equal(nhwc->run({in, res}).at(0), out.at(0)));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, WinogradTest,
                         ::testing::Values(WinogradCase{1, 8, 8, 8, 8, 1, true, "relu"},
                                           WinogradCase{2, 16, 24, 9, 13, 1, true, "sum+relu"},
                                           WinogradCase{3, 8, 16, 6, 5, 0, false, ""},
                                           WinogradCase{1, 8, 8, 1, 1, 1, true, "relu"},
                                           WinogradCase{2, 32, 8, 3, 3, 0, true, "sum+relu"},
                                           WinogradCase{1, 64, 64, 14, 14, 1, true, "sum+relu"},
                                           // 4225 tiles: more than one block of tiles, and a last partial one
                                           WinogradCase{1, 8, 8, 130, 130, 1, true, "sum+relu"},
                                           // the compact form in chunks of output channels (at most
                                           // 4 MiB of U each): 2 of 64, with 64 tiles in two blocks
                                           // (56 and 8)...
                                           WinogradCase{1, 1024, 128, 16, 16, 1, true, "sum+relu"},
                                           // ...and 3 of 8, two images
                                           WinogradCase{2, 4096, 24, 5, 4, 1, true, "relu"}));

TEST(CpuBackendTactics, WinogradIsOfferedOnlyWhereItFits) {
  if (!winograd_supported_on_host()) GTEST_SKIP() << "the Winograd kernel needs AVX2 and FMA";
  EXPECT_TRUE(winograd_fits({1, 8, 5, 5}, {16, 8, 3, 3}, 1, {1, 1}, {1, 1}, {1, 1}, {1, 1}));
  EXPECT_FALSE(winograd_fits({1, 3, 5, 5}, {16, 3, 3, 3}, 1, {1, 1}, {1, 1}, {1, 1}, {1, 1}));   // C % 8
  EXPECT_FALSE(winograd_fits({1, 8, 5, 5}, {12, 8, 3, 3}, 1, {1, 1}, {1, 1}, {1, 1}, {1, 1}));   // K % 8
  EXPECT_FALSE(winograd_fits({1, 8, 5, 5}, {16, 8, 3, 3}, 1, {2, 2}, {1, 1}, {1, 1}, {1, 1}));   // stride
  EXPECT_FALSE(winograd_fits({1, 8, 5, 5}, {16, 8, 3, 3}, 1, {1, 1}, {2, 2}, {1, 1}, {1, 1}));   // dilation
  EXPECT_FALSE(winograd_fits({1, 8, 5, 5}, {16, 4, 3, 3}, 2, {1, 1}, {1, 1}, {1, 1}, {1, 1}));   // groups
  EXPECT_FALSE(winograd_fits({1, 8, 5, 5}, {16, 8, 5, 5}, 1, {1, 1}, {1, 1}, {2, 2}, {2, 2}));   // 5x5
  EXPECT_FALSE(winograd_fits({1, 8, 5, 5}, {16, 8, 3, 3}, 1, {1, 1}, {1, 1}, {2, 2}, {2, 2}));   // pad 2
  // Forcing it where it does not fit names the tactics the op has.
  GraphMaker m;
  m.g.name = "strided";
  int x = m.value("x", {1, 8, 8, 8});
  int y = m.value("y", {1, 8, 4, 4});
  FusedOp& c = m.op("conv2d", {x}, {y}, "strided");
  c.constants = {random_tensor({8, 8, 3, 3}, 104)};
  c.attrs = {{"stride", {2, 2}}, {"padding", {1, 1}}};
  m.g.inputs = {x};
  m.g.outputs = {y};
  BuildOptions o = fast();
  o.force_tactics = {{"strided", "winograd"}};
  try {
    build_engine(m.g, o);
    FAIL() << "expected kUnsupported";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    // (blocked, blocked/<oneDNN's other implementations on this host>..., plain, reference)
    const std::string what = e.what();
    const size_t list = what.find("tactics (blocked, ");
    ASSERT_NE(list, std::string::npos) << what;
    EXPECT_NE(what.find(", plain, reference)", list), std::string::npos) << what;
    EXPECT_EQ(what.find("winograd", list), std::string::npos) << what;
  }
}

// Winograd blocks in a dynamic-batch residual network (relaid out for other batch sizes;
// the second conv's residual sum in place).
TEST(CpuBackendTactics, WinogradInADynamicResidualNetwork) {
  if (!winograd_supported_on_host()) GTEST_SKIP() << "the Winograd kernel needs AVX2 and FMA";
  ResNetWeights w;
  EngineGraph g = residual_graph(w, 2, true);
  const auto [inputs, want] = residual_cases(w, 2, 110);
  BuildOptions o = fast();
  o.force_tactics = {{"block.conv1", "winograd"}, {"block.conv2", "winograd_compact"}, {"block2.conv1", "plain"},
                     {"block2.conv2", "winograd"}};
  auto bytes = build_engine(g, o);
  auto t = plan_tactics(bytes);
  EXPECT_EQ(t["block.conv1"], "winograd");
  EXPECT_EQ(t["block.conv2"], "winograd_compact");
  EXPECT_EQ(t["block2.conv2"], "winograd");
  check_residual(bytes, want, inputs, describe_forced(o.force_tactics));
  // F(4x4, 3x3), stored and compact, between them.
  o.force_tactics = {{"block.conv1", "winograd4x4_compact"}, {"block.conv2", "winograd"}, {"block2.conv1", "plain"},
                     {"block2.conv2", "winograd4x4"}};
  bytes = build_engine(g, o);
  t = plan_tactics(bytes);
  EXPECT_EQ(t["block.conv1"], "winograd4x4_compact");
  EXPECT_EQ(t["block2.conv2"], "winograd4x4");
  check_residual(bytes, want, inputs, describe_forced(o.force_tactics));
  // The same steps with nhwc descriptors, relaid out for each batch size and accepted by the
  // kernel (with 8 channels both layouts put the bytes in the same places; WinogradTest
  // checks the strides with more channels).
  check_residual(winograd_in_nhwc(bytes), want, inputs, describe_forced(o.force_tactics) + " in nhwc");
}

// A timed build with one quick round and no weight growth; progress lines go to *progress.
BuildOptions quick_timed_build(std::vector<std::string>* progress) {
  BuildOptions o;
  o.timing_iterations = 1;
  o.timing_rounds = 1;
  o.max_weight_growth = 0;
  o.progress = [progress](const std::string& s) { progress->push_back(s); };
  return o;
}

// The line of progress naming op `name` ("" if none).
std::string op_line(const std::vector<std::string>& progress, const std::string& name) {
  std::string found;
  for (const std::string& line : progress)
    if (line.find(" " + name + ": ") != std::string::npos) found = line;
  return found;
}

// The weight growth budget: with none, no candidate that stores more than the op's own
// constants is kept, even when timing would pick it; forcing a tactic overrides the budget.
TEST(CpuBackendTactics, WeightGrowthBudgetKeepsWinogradOut) {
  if (!winograd_supported_on_host()) GTEST_SKIP() << "the Winograd kernel needs AVX2 and FMA";
  GraphMaker m;
  m.g.name = "budget";
  int x = m.value("x", {1, 64, 28, 28});
  int y = m.value("y", {1, 64, 28, 28});
  FusedOp& c = m.op("conv2d", {x}, {y}, "conv");
  Tensor wt = random_tensor({64, 64, 3, 3}, 120, -0.1f, 0.1f);
  c.constants = {wt};
  c.attrs = {{"stride", {1, 1}}, {"padding", {1, 1}}};
  m.g.inputs = {x};
  m.g.outputs = {y};
  std::vector<std::string> progress;
  BuildOptions o = quick_timed_build(&progress);
  auto bytes = build_engine(m.g, o);
  EXPECT_NE(plan_tactics(bytes)["conv"], "winograd");
  EngineView view = EngineView::parse(bytes, "budget.engine");
  EXPECT_LE(view.section(kSectionWeights)->nbytes(), static_cast<size_t>(wt.nbytes()));
  ASSERT_FALSE(progress.empty());
  // The report names Winograd as left out by the budget when it timed faster than the pick.
  Json timings;
  for (const Json& st : plan_steps(bytes))
    if (st["kind"] != "reorder" && st["name"] == "conv") timings = st["timings"];
  ASSERT_TRUE(timings.is_object()) << "no timed conv step";
  const std::string picked = plan_tactics(bytes)["conv"];
  const bool faster = timings.contains("winograd") && timings["winograd"].get<double>() < timings[picked].get<double>();
  // The op's line (a whole-engine check may add its own line after it).
  const std::string line = op_line(progress, "conv");
  EXPECT_EQ(line.find("over the weight growth budget: winograd +") != std::string::npos, faster) << line;
  o.force_tactics = {{"conv", "winograd"}};
  bytes = build_engine(m.g, o);
  EXPECT_EQ(plan_tactics(bytes)["conv"], "winograd");
  EXPECT_EQ(EngineView::parse(bytes, "budget.engine").section(kSectionWeights)->nbytes(),
            static_cast<size_t>(wt.nbytes()) * 16 / 9);
  o.force_tactics.clear();
  o.max_weight_growth = -1;
  EXPECT_THROW(build_engine(m.g, o), Error);
}

// One op's pass-1 findings, for the tests of what is decided from them.
TacticSurvey survey_entry(std::vector<std::string> names, std::vector<double> ms, std::vector<int64_t> growth) {
  TacticSurvey s;
  s.names = std::move(names);
  s.ms = std::move(ms);
  s.growth = std::move(growth);
  return s;
}

// The budget over the whole graph: a cheap early upgrade must not starve a later op whose
// upgrade saves more time per byte (graph-order spending would pick op 0's big Winograd and
// leave op 2 on a 10x slower kernel for want of a few padding bytes).
TEST(CpuBackendTactics, WeightGrowthIsAllocatedOverTheWholeGraph) {
  std::vector<TacticSurvey> survey = {
      survey_entry({"blocked", "winograd", "winograd_compact"}, {1.0, 0.9, 0.95}, {0, 1000, 0}),
      survey_entry({"reference"}, {0.1}, {0}),
      survey_entry({"inner_product", "reference"}, {0.02, 0.3}, {500, 0}),
      survey_entry({"plain", "blocked"}, {0.5, 0.07}, {0, 200}),
  };
  // 700 bytes: both padding upgrades (0.28 ms per 500 bytes, 0.43 per 200) beat Winograd's
  // 0.05 ms per 1000; the compact form is free and faster than blocked.
  EXPECT_EQ(allocate_weight_growth(survey, 700),
            (std::vector<std::string>{"winograd_compact", "reference", "inner_product", "blocked"}));
  // 200 bytes: only the best ratio fits.
  EXPECT_EQ(allocate_weight_growth(survey, 200),
            (std::vector<std::string>{"winograd_compact", "reference", "reference", "blocked"}));
  // No budget: least growth everywhere, fastest among equals.
  EXPECT_EQ(allocate_weight_growth(survey, 0),
            (std::vector<std::string>{"winograd_compact", "reference", "reference", "plain"}));
  // Enough for everything: each op's fastest.
  EXPECT_EQ(allocate_weight_growth(survey, 1 << 20),
            (std::vector<std::string>{"winograd", "reference", "inner_product", "blocked"}));
  EXPECT_TRUE(allocate_weight_growth({}, 100).empty());
  // Equal ratios: the larger saving goes first, whichever op comes first (op 1 has fewer
  // candidates than op 0 has indices).
  std::vector<TacticSurvey> tie = {
      survey_entry({"a", "b", "c"}, {1.0, 0.9, 0.5}, {0, 100, 500}),
      survey_entry({"x", "y"}, {1.0, 0.0}, {0, 1000}),
  };
  EXPECT_EQ(allocate_weight_growth(tie, 1000), (std::vector<std::string>{"a", "y"}));
}

// Times within kTacticTieFraction of the fastest are ties; among tied candidates that store
// the same, the one cheapest to create wins (its kernels are created again at every load).
TEST(CpuBackendTactics, TiedTimesGoToTheCheapestToCreate) {
  EXPECT_EQ(collapse_ties({1.0, 1.015, 1.03, 2.0}, 0.02), (std::vector<double>{1.0, 1.0, 1.03, 2.0}));
  EXPECT_EQ(collapse_ties({0.5}, 0.02), (std::vector<double>{0.5}));
  EXPECT_TRUE(collapse_ties({}, 0.02).empty());
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(collapse_ties({inf, 2.0, 2.01}, 0.02), (std::vector<double>{inf, 2.0, 2.0}));
  auto op = [](std::vector<std::string> names, std::vector<double> ms, std::vector<int64_t> growth,
               std::vector<double> create) {
    TacticSurvey s;
    s.names = std::move(names);
    s.ms = collapse_ties(ms, kTacticTieFraction);
    s.growth = std::move(growth);
    s.create_ms = std::move(create);
    return s;
  };
  std::vector<TacticSurvey> survey = {
      // brgconv measured 1 % faster, jit 4x cheaper to create: a tie, jit wins.
      op({"blocked", "blocked/jit", "plain"}, {1.00, 1.01, 1.5}, {0, 0, 0}, {0.6, 0.15, 0.02}),
      // 5 % apart: not a tie, the faster wins however costly to create.
      op({"blocked", "blocked/jit"}, {1.00, 1.05}, {0, 0}, {0.6, 0.15}),
      // A tie, but the cheaper to create stores more: no budget spent on load time.
      op({"blocked", "winograd"}, {1.00, 0.99}, {0, 4096}, {0.6, 0.01}),
  };
  EXPECT_EQ(allocate_weight_growth(survey, 1 << 20), (std::vector<std::string>{"blocked/jit", "blocked", "blocked"}));
}

// Ops with one signature share a decision: two convolutions of the same shapes, post-ops and
// input layout are timed once and get the same tactic (a load then creates their kernels
// once); a third that differs only in its post-op is decided on its own. Outputs against the
// reference convolution.
TEST(CpuBackendTactics, SameSignatureOpsShareOneDecision) {
  GraphMaker m;
  m.g.name = "shared";
  int x = m.value("x", {1, 16, 12, 12});
  int a = m.value("a", {1, 16, 12, 12});
  int b = m.value("b", {1, 16, 12, 12});
  int c = m.value("c", {1, 16, 12, 12});
  const Tensor wa = random_tensor({16, 16, 3, 3}, 201, -0.2f, 0.2f), ba = random_tensor({16}, 202);
  const Tensor wb = random_tensor({16, 16, 3, 3}, 203, -0.2f, 0.2f), bb = random_tensor({16}, 204);
  const Tensor wc = random_tensor({16, 16, 3, 3}, 205, -0.2f, 0.2f), bc = random_tensor({16}, 206);
  auto conv = [&](const std::string& name, int out, const Tensor& wt, const Tensor& bias, bool relu) {
    FusedOp& op = m.op("conv2d", {x}, {out}, name);
    op.constants = {wt, bias};
    op.attrs = {{"stride", {1, 1}}, {"padding", {1, 1}}};
    if (relu) op.post_ops = {elt("relu")};
  };
  conv("conv_a", a, wa, ba, true);
  conv("conv_b", b, wb, bb, true);
  conv("conv_c", c, wc, bc, false);
  m.g.inputs = {x};
  m.g.outputs = {a, b, c};
  std::vector<std::string> progress;
  BuildOptions o = quick_timed_build(&progress);
  auto bytes = build_engine(m.g, o);
  Json steps;
  for (const Json& st : plan_steps(bytes))
    if (st["kind"] != "reorder") steps[st["name"].get<std::string>()] = st;
  ASSERT_TRUE(steps.contains("conv_a") && steps.contains("conv_b") && steps.contains("conv_c")) << steps.dump();
  EXPECT_EQ(steps["conv_b"]["tactic"], steps["conv_a"]["tactic"]);
  EXPECT_EQ(steps["conv_b"]["impl"], steps["conv_a"]["impl"]);
  EXPECT_EQ(steps["conv_b"]["timings"], steps["conv_a"]["timings"]) << "conv_b was timed again";
  EXPECT_NE(steps["conv_c"]["timings"], steps["conv_a"]["timings"]) << "conv_c was not timed";
  const std::string line_a = op_line(progress, "conv_a"), line_b = op_line(progress, "conv_b"),
                    line_c = op_line(progress, "conv_c");
  EXPECT_NE(line_b.find("same signature as conv_a, decided once"), std::string::npos) << line_b;
  EXPECT_EQ(line_a.find("same signature"), std::string::npos) << line_a;
  EXPECT_EQ(line_c.find("same signature"), std::string::npos) << line_c;
  // One line per op, whichever build the whole-engine check kept (the other build's lines are
  // dropped), and the check's own line, if it ran, last.
  for (const char* name : {"conv_a", "conv_b", "conv_c"}) {
    size_t lines = 0;
    for (const std::string& line : progress) lines += line.find(std::string(" ") + name + ": ") != std::string::npos;
    EXPECT_EQ(lines, 1u) << name;
  }
  for (size_t i = 0; i < progress.size(); ++i)
    if (progress[i].find("whole-engine check: as decided") != std::string::npos) {
      EXPECT_EQ(i + 1, progress.size());
      EXPECT_NE(progress[i].find(": kept "), std::string::npos) << progress[i];
    }
  const Tensor in = random_tensor({1, 16, 12, 12}, 207);
  auto out = Engine::load(bytes, "shared.engine")->run({in});
  ASSERT_EQ(out.size(), 3u);
  expect_close(out[0], ref_unary("relu", ref_conv(in, wa, &ba, {1, 1}, {1, 1})), 2e-4);
  expect_close(out[1], ref_unary("relu", ref_conv(in, wb, &bb, {1, 1}, {1, 1})), 2e-4);
  expect_close(out[2], ref_conv(in, wc, &bc, {1, 1}, {1, 1}), 2e-4);
}

// The whole-engine check's alternative: convolutions decided on another of oneDNN's
// implementations ("blocked/<impl>") take oneDNN's first choice ("blocked") where it worked
// and stores no more; other decisions stay.
TEST(CpuBackendTactics, ConsistentLayoutAlternative) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<TacticSurvey> survey = {
      survey_entry({"blocked", "blocked/jit:avx512_core", "winograd"}, {1.0, 0.99, 0.8}, {0, 0, 100}),  // 0: flips
      survey_entry({"blocked", "blocked/jit:avx512_core", "winograd"}, {1.0, 0.99, 0.8}, {0, 0, 100}),  // 1: winograd stays
      survey_entry({"blocked", "blocked/jit:avx2"}, {1.0, 0.9}, {64, 0}),                          // 2: blocked stores more
      survey_entry({"blocked", "blocked/jit:avx2"}, {inf, 0.9}, {0, 0}),                           // 3: blocked did not time
      survey_entry({"blocked/jit:avx2", "plain"}, {0.9, 1.0}, {0, 0}),                             // 4: no blocked candidate
      survey_entry({"onednn", "reference"}, {0.1, 1.0}, {0, 0}),                                   // 5: not a convolution
      survey_entry({"blocked", "blocked/jit:sse41"}, {1.0}, {0}),                                  // 6: malformed survey
  };
  const std::vector<std::string> decisions = {"blocked/jit:avx512_core", "winograd", "blocked/jit:avx2",
                                              "blocked/jit:avx2", "blocked/jit:avx2", "onednn",
                                              "blocked/jit:sse41"};
  const std::vector<std::string> want = {"blocked", "winograd", "blocked/jit:avx2", "blocked/jit:avx2",
                                         "blocked/jit:avx2", "onednn", "blocked/jit:sse41"};
  EXPECT_EQ(consistent_layout_decisions(survey, decisions), want);
  EXPECT_EQ(consistent_layout_decisions(survey, {"blocked"}), std::vector<std::string>{"blocked"});  // fewer decisions
  // The second alternative also moves Winograd decisions to oneDNN's first choice, on the
  // same conditions (a working "blocked" candidate storing no more).
  const std::vector<TacticSurvey> wsurvey = {
      survey_entry({"blocked", "winograd", "winograd_compact"}, {1.0, 0.8, 0.85}, {0, 100, 0}),  // flips
      survey_entry({"blocked", "winograd", "winograd_compact"}, {1.0, 0.8, 0.85}, {0, 100, 0}),  // compact flips
      survey_entry({"blocked", "winograd"}, {inf, 0.8}, {0, 100}),                               // blocked did not time
      survey_entry({"plain", "winograd"}, {1.0, 0.8}, {0, 100}),                                 // no blocked candidate
  };
  const std::vector<std::string> wdecisions = {"winograd", "winograd_compact", "winograd", "winograd"};
  EXPECT_EQ(consistent_layout_decisions(wsurvey, wdecisions), wdecisions);
  EXPECT_EQ(consistent_layout_decisions(wsurvey, wdecisions, MoveWinograd::kAll),
            (std::vector<std::string>{"blocked", "blocked", "winograd", "winograd"}));
  std::vector<std::string> both = want;
  both[1] = "blocked";  // decision 1 ("winograd") flips too
  EXPECT_EQ(consistent_layout_decisions(survey, decisions, MoveWinograd::kAll), both);
  // The third keeps F(4x4, 3x3) decisions and moves the F(2x2, 3x3) ones.
  const std::vector<TacticSurvey> tsurvey = {
      survey_entry({"blocked", "winograd_compact", "winograd4x4_compact"}, {1.0, 0.85, 0.7}, {0, 0, 0}),
      survey_entry({"blocked", "winograd_compact", "winograd4x4"}, {1.0, 0.85, 0.7}, {0, 0, 100}),
      survey_entry({"blocked", "winograd_compact", "winograd4x4_compact"}, {1.0, 0.85, 0.9}, {0, 0, 0}),
  };
  const std::vector<std::string> tdecisions = {"winograd4x4_compact", "winograd4x4", "winograd_compact"};
  EXPECT_EQ(consistent_layout_decisions(tsurvey, tdecisions, MoveWinograd::kSmallTiles),
            (std::vector<std::string>{"winograd4x4_compact", "winograd4x4", "blocked"}));
  EXPECT_EQ(consistent_layout_decisions(tsurvey, tdecisions, MoveWinograd::kAll),
            (std::vector<std::string>{"blocked", "blocked", "blocked"}));
}

// The whole-engine check, steered: the first of two chained convolutions is decided on
// another of oneDNN's implementations, so the check builds the alternative (oneDNN's first
// choice there), times both engines and keeps one; the progress lines are the kept build's,
// one per op, and the engine computes the same convolutions either way.
// Two chained 3x3 convolutions, 16 channels at 10x10 (conv_a with a ReLU), for the
// whole-engine check's tests; `reference` computes the graph's output.
struct TwoConvs {
  GraphMaker m;
  Tensor wa, ba, wb, bb;
  TwoConvs() {
    m.g.name = "check";
    int x = m.value("x", {1, 16, 10, 10});
    int a = m.value("a", {1, 16, 10, 10});
    int b = m.value("b", {1, 16, 10, 10});
    wa = random_tensor({16, 16, 3, 3}, 301, -0.2f, 0.2f), ba = random_tensor({16}, 302);
    wb = random_tensor({16, 16, 3, 3}, 303, -0.2f, 0.2f), bb = random_tensor({16}, 304);
    FusedOp& ca = m.op("conv2d", {x}, {a}, "conv_a");
    ca.constants = {wa, ba};
    ca.attrs = {{"stride", {1, 1}}, {"padding", {1, 1}}};
    ca.post_ops = {elt("relu")};
    FusedOp& cb = m.op("conv2d", {a}, {b}, "conv_b");
    cb.constants = {wb, bb};
    cb.attrs = {{"stride", {1, 1}}, {"padding", {1, 1}}};
    m.g.inputs = {x};
    m.g.outputs = {b};
  }
  Tensor reference(const Tensor& in) const {
    return ref_conv(ref_unary("relu", ref_conv(in, wa, &ba, {1, 1}, {1, 1})), wb, &bb, {1, 1}, {1, 1});
  }
};

TEST(CpuBackendTactics, WholeEngineCheckKeepsOneOfTwoBuilds) {
  TwoConvs t;
  GraphMaker& m = t.m;
  std::vector<std::string> progress;
  BuildOptions o = quick_timed_build(&progress);
  const TacticSurveyResult r = survey_tactics(m.g, o);
  ASSERT_EQ(r.survey.size(), 2u);
  std::vector<std::string> decisions = allocate_weight_growth(r.survey, r.budget);
  const std::vector<std::string>& names = r.survey[0].names;
  std::string other;
  for (const std::string& n : names)
    if (n.starts_with("blocked/")) other = n;
  if (other.empty() || std::find(names.begin(), names.end(), "blocked") == names.end())
    GTEST_SKIP() << "this host's oneDNN offers one implementation for the convolution";
  decisions[0] = other;
  ASSERT_NE(consistent_layout_decisions(r.survey, decisions), decisions);
  progress.clear();
  auto bytes = build_decided(m.g, o, r.survey, decisions);
  ASSERT_FALSE(progress.empty());
  const std::string& check = progress.back();
  ASSERT_NE(check.find("check: whole-engine check: as decided per op "), std::string::npos) << check;
  const bool alt = check.find("kept oneDNN's first choices") != std::string::npos;
  EXPECT_TRUE(alt || check.find("kept the per-op decisions") != std::string::npos) << check;
  for (const char* name : {"conv_a", "conv_b"}) {
    size_t lines = 0;
    for (const std::string& line : progress) lines += line.find(std::string(" ") + name + ": ") != std::string::npos;
    EXPECT_EQ(lines, 1u) << name;
  }
  const std::string conv_a_line = op_line(progress, "conv_a");
  EXPECT_EQ(conv_a_line.find("whole-engine check: oneDNN's first choice instead of " + other) != std::string::npos, alt)
      << conv_a_line;
  Json steps;
  for (const Json& st : plan_steps(bytes))
    if (st["kind"] != "reorder") steps[st["name"].get<std::string>()] = st;
  EXPECT_EQ(steps["conv_a"]["tactic"], alt ? "blocked" : other) << steps.dump();
  const Tensor in = random_tensor({1, 16, 10, 10}, 305);
  auto out = Engine::load(bytes, "check.engine")->run({in});
  ASSERT_EQ(out.size(), 1u);
  expect_close(out[0], t.reference(in), 2e-4);
}

// With a Winograd decision as well, the check builds a second alternative that also gives
// that convolution oneDNN's first choice, times the three engines and keeps one: its line
// names both alternatives, the progress lines and the plan are the kept build's.
TEST(CpuBackendTactics, WholeEngineCheckWeighsWinogradToo) {
  TwoConvs t;
  std::vector<std::string> progress;
  BuildOptions o = quick_timed_build(&progress);
  const TacticSurveyResult r = survey_tactics(t.m.g, o);
  ASSERT_EQ(r.survey.size(), 2u);
  std::vector<std::string> decisions = allocate_weight_growth(r.survey, r.budget);
  auto has = [](const std::vector<std::string>& names, const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  std::string other;
  for (const std::string& n : r.survey[0].names)
    if (n.starts_with("blocked/")) other = n;
  if (other.empty() || !has(r.survey[0].names, "blocked") || !has(r.survey[1].names, "winograd_compact") ||
      !has(r.survey[1].names, "blocked"))
    GTEST_SKIP() << "this host offers no Winograd or no second oneDNN implementation for these convolutions";
  decisions[0] = other;
  decisions[1] = "winograd_compact";  // stores no more than the direct kernel
  ASSERT_NE(consistent_layout_decisions(r.survey, decisions, MoveWinograd::kAll), consistent_layout_decisions(r.survey, decisions));
  progress.clear();
  auto bytes = build_decided(t.m.g, o, r.survey, decisions);
  ASSERT_FALSE(progress.empty());
  const std::string& check = progress.back();
  ASSERT_NE(check.find("decided on another of its implementations "), std::string::npos) << check;
  ASSERT_NE(check.find("decided on another implementation (Winograd included) "), std::string::npos) << check;
  const bool all = check.find("kept oneDNN's first choices, Winograd included") != std::string::npos;
  const bool alt = !all && check.find("kept oneDNN's first choices") != std::string::npos;
  EXPECT_TRUE(all || alt || check.find("kept the per-op decisions") != std::string::npos) << check;
  for (const char* name : {"conv_a", "conv_b"}) {
    size_t lines = 0;
    for (const std::string& line : progress) lines += line.find(std::string(" ") + name + ": ") != std::string::npos;
    EXPECT_EQ(lines, 1u) << name;
  }
  EXPECT_EQ(op_line(progress, "conv_b").find("instead of winograd_compact") != std::string::npos, all)
      << op_line(progress, "conv_b");
  EXPECT_EQ(op_line(progress, "conv_a").find("instead of " + other) != std::string::npos, all || alt)
      << op_line(progress, "conv_a");
  Json steps;
  for (const Json& st : plan_steps(bytes))
    if (st["kind"] != "reorder") steps[st["name"].get<std::string>()] = st;
  EXPECT_EQ(steps["conv_a"]["tactic"], all || alt ? "blocked" : other) << steps.dump();
  EXPECT_EQ(steps["conv_b"]["tactic"], all ? "blocked" : "winograd_compact") << steps.dump();
  const Tensor in = random_tensor({1, 16, 10, 10}, 306);
  auto out = Engine::load(bytes, "check.engine")->run({in});
  ASSERT_EQ(out.size(), 1u);
  expect_close(out[0], t.reference(in), 2e-4);
}

// Ops that share a decision weigh as their number in the budget, and get the same tactic.
TEST(CpuBackendTactics, SharedDecisionsWeighAsTheirNumber) {
  auto op = [](std::vector<double> ms, std::vector<int64_t> growth, int64_t shared_with = -1) {
    TacticSurvey s;
    s.names = {"small", "big"};
    s.ms = std::move(ms);
    s.growth = std::move(growth);
    s.shared_with = shared_with;
    return s;
  };
  // Op 0 alone saves 0.3 ms for 100 bytes; ops 1 and 2 (one signature) save 0.2 ms each for
  // 100 bytes each: 0.4 ms for 200. Op 0 goes first (0.003 ms per byte against 0.002); with
  // 150 or 250 bytes the pair then has no room for both and stays, never split; with 300 all
  // three upgrade.
  std::vector<TacticSurvey> survey = {op({1.0, 0.7}, {0, 100}), op({1.0, 0.8}, {0, 100}), op({1.0, 0.8}, {0, 100}, 1)};
  EXPECT_EQ(allocate_weight_growth(survey, 150), (std::vector<std::string>{"big", "small", "small"}));
  EXPECT_EQ(allocate_weight_growth(survey, 250), (std::vector<std::string>{"big", "small", "small"}));
  EXPECT_EQ(allocate_weight_growth(survey, 300), (std::vector<std::string>{"big", "big", "big"}));
  // Without op 0 the pair needs room for both: 150 bytes is not enough for either.
  std::vector<TacticSurvey> pair = {op({1.0, 0.8}, {0, 100}), op({1.0, 0.8}, {0, 100}, 0)};
  EXPECT_EQ(allocate_weight_growth(pair, 150), (std::vector<std::string>{"small", "small"}));
  EXPECT_EQ(allocate_weight_growth(pair, 200), (std::vector<std::string>{"big", "big"}));
  // A shared_with naming a survey with other candidates, or not an earlier one, decides alone.
  std::vector<TacticSurvey> odd = {op({1.0, 0.8}, {0, 100}), op({1.0, 0.8}, {0, 100}, 0), op({1.0, 0.8}, {0, 100}, 5)};
  odd[1].names = {"small", "other"};
  EXPECT_EQ(allocate_weight_growth(odd, 100), (std::vector<std::string>{"big", "small", "small"}));
  EXPECT_EQ(allocate_weight_growth(odd, 300), (std::vector<std::string>{"big", "other", "big"}));
}

// A timed build's report and plan agree with what it kept: every step's tactic is one its
// timings list, and the stored weights stay within the budget.
TEST(CpuBackendTactics, TimedBuildKeepsItsBudget) {
  ResNetWeights w;
  EngineGraph g = residual_graph(w, 2, false);
  const auto [inputs, want] = residual_cases(w, 2, 111);
  std::vector<std::string> progress;
  BuildOptions o = quick_timed_build(&progress);
  auto bytes = build_engine(g, o);
  int64_t constants = 0;
  for (const FusedOp& op : g.ops)
    for (const Tensor& c : op.constants)
      if (c.defined()) constants += c.nbytes();
  const Json plan = plan_json(bytes);
  int64_t stored = 0;
  for (const Json& b : plan["blobs"]) stored += b["size"].get<int64_t>();
  EXPECT_LE(stored, constants);
  for (const Json& st : plan["steps"]) {
    if (!st["timings"].empty()) {
      EXPECT_TRUE(st["timings"].contains(st["tactic"].get<std::string>())) << st.dump();
    }
  }
  size_t picked = 0;
  for (const std::string& line : progress) picked += line.find(", picked ") != std::string::npos;
  EXPECT_EQ(picked, g.ops.size()) << "one report line per op";
  check_residual(bytes, want, inputs, "timed build, no growth");
}

// ---------------------------------------------------------------- serialization and robustness

EngineGraph small_cnn() {
  GraphMaker m;
  m.g.name = "small_cnn";
  int x = m.value("x", {2, 3, 16, 16});
  int y = m.value("y", {2, 8, 16, 16});
  int p = m.value("p", {2, 8, 8, 8});
  int g = m.value("g", {2, 8, 1, 1});
  int f = m.value("f", {2, 8});
  int o = m.value("o", {2, 4});
  FusedOp& c = m.op("conv2d", {x}, {y}, "conv");
  c.constants = {random_tensor({8, 3, 3, 3}, 40), random_tensor({8}, 41)};
  c.attrs = {{"padding", {1, 1}}};
  c.post_ops = {elt("relu")};
  m.op("max_pool2d", {y}, {p}).attrs = {{"kernel", {2, 2}}, {"stride", {2, 2}}};
  m.op("adaptive_avg_pool2d", {p}, {g}).attrs = {{"output_size", {1, 1}}};
  m.op("reference", {g}, {f}, "flatten").attrs = {
      {"target", "torch.ops.aten.view.default"},
      {"args", Json::array({{{"name", "self"}, {"arg", {{"as_tensor", {{"name", "%3"}}}}}},
                            {{"name", "size"}, {"arg", {{"as_ints", {2, 8}}}}}})}};
  FusedOp& l = m.op("linear", {f}, {o}, "fc");
  l.constants = {random_tensor({4, 8}, 42), random_tensor({4}, 43)};
  m.g.inputs = {x};
  m.g.outputs = {o};
  return m.g;
}

TEST(CpuBackend, SerializeLoadRunIsBitwiseIdentical) {
  EngineGraph g = small_cnn();
  auto bytes = build_engine(g, fast());
  Tensor in = random_tensor({2, 3, 16, 16}, 44);
  auto first = Engine::load(bytes, "a")->run({in});
  // A copy at an odd address (forces the container to realign) and a file mapping.
  auto odd = Storage::allocate(bytes->nbytes() + 1);
  std::memcpy(odd->data() + 1, bytes->data(), bytes->nbytes());
  auto slice = Storage::borrow(odd->data() + 1, bytes->nbytes(), odd, false);
  auto second = Engine::load(slice, "b")->run({in});
  std::string path = ::testing::TempDir() + "cpu_backend_test.engine";
  {
    FILE* fp = std::fopen(path.c_str(), "wb");
    ASSERT_NE(fp, nullptr);
    std::fwrite(bytes->data(), 1, bytes->nbytes(), fp);
    std::fclose(fp);
  }
  auto third = Engine::load(map_file_readonly(path), path)->run({in});
  EXPECT_TRUE(bitwise_equal(first.at(0), second.at(0)));
  EXPECT_TRUE(bitwise_equal(first.at(0), third.at(0)));
}

// Re-writes an engine with edited meta / plan text (checksums recomputed, so only the
// plan's own validation can catch the damage).
std::shared_ptr<Storage> rewrite(const std::shared_ptr<Storage>& bytes, const std::function<void(EngineMeta&)>& meta_fn,
                                 const std::function<void(Json&)>& plan_fn, const std::string* raw_plan) {
  EngineView v = EngineView::parse(bytes, "original");
  EngineMeta meta = v.meta();
  if (meta_fn) meta_fn(meta);
  auto plan_bytes = v.section(kSectionPlan);
  std::string text(reinterpret_cast<const char*>(plan_bytes->data()), plan_bytes->nbytes());
  if (plan_fn) {
    Json j = Json::parse(text);
    plan_fn(j);
    text = j.dump();
  }
  if (raw_plan) text = *raw_plan;
  EngineWriter w;
  w.set_meta(meta);
  w.add_section(kSectionPlan, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  w.add_section(kSectionWeights, v.section(kSectionWeights));
  return w.write_to_storage();
}

void expect_load_error(const std::shared_ptr<Storage>& bytes, ErrorCode code, const std::string& needle) {
  try {
    auto e = Engine::load(bytes, "damaged.engine");
    FAIL() << "loaded a damaged engine (expected: " << needle << ")";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), code) << err.what();
    EXPECT_NE(std::string(err.what()).find(needle), std::string::npos) << err.what();
  }
}

TEST(CpuBackend, CorruptPlanIsAnErrorNotACrash) {
  auto bytes = build_engine(small_cnn(), fast());
  std::string garbage = "{\"version\": 1, \"steps\": [";
  expect_load_error(rewrite(bytes, nullptr, nullptr, &garbage), ErrorCode::kCorrupt, "not valid JSON");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["blobs"][0]["offset"] = 1 << 30; }), ErrorCode::kCorrupt,
                    "blobs[0].offset");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["blobs"][1]["offset"] = 64 * 1000; }), ErrorCode::kCorrupt,
                    "blobs[1]");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["blobs"][0]["size"] = 4; }), ErrorCode::kCorrupt,
                    "blobs[0]");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["steps"][0]["kind"] = "teleport"; }), ErrorCode::kCorrupt,
                    "steps[0].kind");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["steps"][1]["inputs"] = {9999}; }), ErrorCode::kCorrupt,
                    "steps[1]");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["steps"][0].erase("strides"); }), ErrorCode::kCorrupt,
                    "strides: missing");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["values"][1]["offset"] = int64_t{1} << 40; }),
                    ErrorCode::kCorrupt, "values[1].offset");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["values"][1]["desc"]["inner_idxs"] = {7}; }),
                    ErrorCode::kCorrupt, "values[1].desc");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["values"][1]["desc"]["strides"] = {1, 1, 1}; }),
                    ErrorCode::kCorrupt, "values[1].desc");
  // Seven blocks of 1024 on one dimension: 2^70 elements, refused before it could overflow.
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) {
                      j["values"][1]["desc"]["inner_blks"] = std::vector<int>(7, 1024);
                      j["values"][1]["desc"]["inner_idxs"] = std::vector<int>(7, 0);
                    }),
                    ErrorCode::kCorrupt, "values[1].desc.inner_blks: the blocks multiply to more than");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["values"][2]["last_use"] = 0; }), ErrorCode::kCorrupt,
                    "lifetime");
  // Inconsistent but well-formed: the convolution's stride no longer matches its shapes.
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) {
                      for (Json& s : j["steps"])
                        if (s["kind"] == "conv") s["strides"] = {3, 3};
                    }),
                    ErrorCode::kCorrupt, "conv");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["version"] = 99; }), ErrorCode::kVersionMismatch,
                    "version");
  // Wrong JSON types and out-of-range numbers name the field and what was found.
  std::string array_plan = "[1, 2]";
  expect_load_error(rewrite(bytes, nullptr, nullptr, &array_plan), ErrorCode::kCorrupt,
                    "damaged.engine: engine 'small_cnn': plan: expected a JSON object, found array");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["steps"][0]["alpha"] = "x"; }), ErrorCode::kCorrupt,
                    ".alpha: expected a number, found string");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["steps"][0]["strides"] = 2; }), ErrorCode::kCorrupt,
                    ".strides: expected an array of at most");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["values"][1]["offset"] = UINT64_MAX; }),
                    ErrorCode::kCorrupt, "values[1].offset: 18446744073709551615 is outside");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["values"][1]["symbols"] = {1, 2, 3, 4}; }),
                    ErrorCode::kCorrupt, "values[1].symbols: expected a string, found number");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["build_symbols"] = 3; }), ErrorCode::kCorrupt,
                    "build_symbols: expected an object");
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) { j["steps"][0]["args"] = Json::object(); }),
                    ErrorCode::kCorrupt, ".args: expected an array, found object");
}

// A Winograd step whose stored fields do not fit its shapes is refused at load, naming it.
TEST(CpuBackend, CorruptWinogradStepIsAnError) {
  if (!winograd_supported_on_host()) GTEST_SKIP() << "the Winograd kernel needs AVX2 and FMA";
  GraphMaker m;
  m.g.name = "wino";
  int x = m.value("x", {1, 8, 6, 6});
  int y = m.value("y", {1, 16, 6, 6});
  FusedOp& c = m.op("conv2d", {x}, {y}, "wconv");
  c.constants = {random_tensor({16, 8, 3, 3}, 130), random_tensor({16}, 131)};
  c.attrs = {{"padding", {1, 1}}};
  c.post_ops = {elt("relu")};
  m.g.inputs = {x};
  m.g.outputs = {y};
  BuildOptions o = fast();
  o.force_tactics = {{"wconv", "winograd"}};
  auto bytes = build_engine(m.g, o);
  auto with_step = [&](const std::function<void(Json&)>& edit) {
    return rewrite(bytes, nullptr, [&](Json& j) {
      for (Json& st : j["steps"])
        if (st["kind"] == "winograd") edit(st);
    });
  };
  expect_load_error(with_step([](Json& st) { st["pad_l"] = {0, 0}; }), ErrorCode::kCorrupt, "3x3 stride-1");
  expect_load_error(with_step([](Json& st) { st["pad_r"] = {1}; }), ErrorCode::kCorrupt, "pad_l / pad_r");
  expect_load_error(with_step([](Json& st) { st["post_ops"][0]["alg"] = "tanh"; }), ErrorCode::kCorrupt,
                    "not supported by the Winograd kernel");
  expect_load_error(with_step([](Json& st) { st["blobs"] = {1, -1}; }), ErrorCode::kCorrupt,
                    "[16, 8, 16] (transformed) or [9, 8, 16] (filters)");
  // F(4x4, 3x3) reads [36, C, K] transformed filters: the F(2x2, 3x3) ones are refused.
  expect_load_error(with_step([](Json& st) { st["tile"] = 4; }), ErrorCode::kCorrupt,
                    "[36, 8, 16] (transformed) or [9, 8, 16] (filters)");
  expect_load_error(with_step([](Json& st) { st["tile"] = 3; }), ErrorCode::kCorrupt, ".tile: expected 2");
  expect_load_error(with_step([](Json& st) { st["tile"] = 6; }), ErrorCode::kCorrupt, ".tile");
  // Engines written before format 1.3 have no tile: F(2x2, 3x3).
  auto e = Engine::load(with_step([](Json& st) { st.erase("tile"); }), "no_tile.engine");
  EXPECT_NE(e->describe().find("winograd_2x2_3x3"), std::string::npos) << e->describe();
  // Its source given the engine input's plain layout instead of nChw8c.
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) {
                      for (const Json& st : j["steps"])
                        if (st["kind"] == "winograd") j["values"][st["inputs"][0].get<int>()]["desc"] = j["values"][0]["desc"];
                    }),
                    ErrorCode::kCorrupt, "nChw8c");
  // Its source in nhwc, its destination still in nChw8c.
  expect_load_error(rewrite(bytes, nullptr, [](Json& j) {
                      for (const Json& st : j["steps"])
                        if (st["kind"] == "winograd") {
                          Json& v = j["values"][st["inputs"][0].get<int>()];
                          v["desc"] = desc_to_json(winograd_layout(v["dims"].get<Shape>(), true));
                        }
                    }),
                    ErrorCode::kCorrupt, "both in nhwc");
}

TEST(CpuBackendTactics, TimedRoundsPickTheFastestMinimum) {
  BuildOptions o = fast();
  o.time_tactics = true;
  o.timing_iterations = 2;
  o.timing_rounds = 3;
  // No weight growth budget: on this small model 1 % is a few hundred bytes, and candidates
  // whose layouts pad the weights more (AVX-512 blocking, the inner product's) would be left
  // out for size, not for time.
  o.max_weight_growth = 1e9;
  std::vector<std::string> progress;
  o.progress = [&progress](const std::string& line) { progress.push_back(line); };
  auto bytes = build_engine(small_cnn(), o);
  EngineView v = EngineView::parse(bytes, "timed");
  EXPECT_EQ(v.meta().build_settings["timing_rounds"], 3);
  auto plan_bytes = v.section(kSectionPlan);
  Json plan = Json::parse(plan_bytes->data(), plan_bytes->data() + plan_bytes->nbytes());
  // Every timed op records its candidates' times on its step. Its kind follows the pick
  // (a convolution whose reference candidate won is a "reference" step), so look for the
  // timings, not for a kind.
  bool saw_timed = false;
  for (const Json& step : plan["steps"]) {
    if (!step.contains("timings") || step["timings"].empty()) continue;
    saw_timed = true;
    const Json& t = step["timings"];
    // Candidates that could not be created have no time; the others keep their best round.
    ASSERT_TRUE(t.is_object() && !t.empty()) << step.dump();
    // The pick is the candidate with the lowest time recorded, or one tied with it (within
    // kTacticTieFraction: ties go to the kernel cheaper to create), or -- where the
    // whole-engine check kept its alternative, which its progress line says -- oneDNN's
    // first choice in place of another oneDNN implementation.
    std::string fastest;
    for (auto it = t.begin(); it != t.end(); ++it)
      if (fastest.empty() || it.value().get<double>() < t[fastest].get<double>()) fastest = it.key();
    const std::string picked = step["tactic"].get<std::string>();
    ASSERT_TRUE(t.contains(picked)) << step.dump();
    const std::string line = op_line(progress, step["name"].get<std::string>());
    const size_t note = line.find("(whole-engine check: oneDNN's first choice instead of ");
    if (note != std::string::npos) {
      EXPECT_EQ(picked, "blocked") << line;
      EXPECT_TRUE(line.find("instead of blocked/", note) != std::string::npos ||
                  line.find("instead of winograd", note) != std::string::npos)
          << line;
      EXPECT_NE(progress.back().find("kept oneDNN's first choices"), std::string::npos) << progress.back();
      continue;
    }
    EXPECT_LE(t[picked].get<double>(), t[fastest].get<double>() * (1 + kTacticTieFraction)) << step.dump();
  }
  EXPECT_TRUE(saw_timed);
}

// ---------------------------------------------------------------- load: verification and parallel kernels

// Sets EMBER_LOAD_THREADS for the scope of a test.
class ScopedLoadThreads {
 public:
  explicit ScopedLoadThreads(const char* value) {
    if (const char* old = std::getenv("EMBER_LOAD_THREADS")) saved_ = old;
    setenv("EMBER_LOAD_THREADS", value, 1);
  }
  ~ScopedLoadThreads() {
    if (saved_) setenv("EMBER_LOAD_THREADS", saved_->c_str(), 1);
    else unsetenv("EMBER_LOAD_THREADS");
  }

 private:
  std::optional<std::string> saved_;
};

// A copy of `bytes` with one byte of section `name` (at `at` inside it) changed; the
// stored checksums are left as they were.
std::shared_ptr<Storage> damage_section(const std::shared_ptr<Storage>& bytes, const std::string& name, uint64_t at) {
  EngineView v = EngineView::parse(bytes, "original");
  uint64_t offset = 0;
  for (const EngineSectionInfo& s : v.sections())
    if (s.name == name) offset = s.offset + std::min(at, s.size - 1);
  EXPECT_GT(offset, 0u) << name;
  auto copy = Storage::allocate(bytes->nbytes());
  std::memcpy(copy->data(), bytes->data(), bytes->nbytes());
  copy->data()[offset] ^= 0x5a;
  return copy;
}

// One 3x3 convolution of 256 channels: 2.4 MB of weights, a section checked in 3 chunks.
EngineGraph wide_conv() {
  GraphMaker m;
  m.g.name = "wide_conv";
  int x = m.value("x", {1, 256, 4, 4});
  int y = m.value("y", {1, 256, 4, 4});
  FusedOp& c = m.op("conv2d", {x}, {y}, "conv");
  c.constants = {random_tensor({256, 256, 3, 3}, 47, -0.05f, 0.05f)};
  c.attrs = {{"padding", {1, 1}}};
  m.g.inputs = {x};
  m.g.outputs = {y};
  return m.g;
}

// Every oneDNN convolution implementation after its first choice is a tactic of its own
// ("blocked/<impl>"). The plan records it, and a load picks that implementation again
// although oneDNN's first choice accepts the same layouts; a plan naming one this oneDNN
// lacks loads with a warning on oneDNN's first choice.
TEST(CpuBackendTactics, OneDnnAlternativeImplementationIsKeptAcrossLoad) {
  const Shape xs = {1, 16, 14, 14};
  const Tensor w = random_tensor({32, 16, 3, 3}, 150), b = random_tensor({32}, 151);
  std::vector<std::string> alternatives;
  {
    using dnnl::memory;
    const auto f = memory::data_type::f32;
    const auto any = memory::format_tag::any;
    dnnl::convolution_forward::desc cd(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                       memory::desc(xs, f, any), memory::desc({32, 16, 3, 3}, f, any),
                                       memory::desc({32}, f, memory::format_tag::x), memory::desc({1, 32, 14, 14}, f, any),
                                       {1, 1}, {0, 0}, {1, 1}, {1, 1});
    const dnnl::engine eng(dnnl::engine::kind::cpu, 0);  // outlives the descriptor's iterator
    dnnl::convolution_forward::primitive_desc pd(cd, eng);
    const std::string first = pd.impl_info_str();
    while (pd.next_impl()) {
      std::string name = pd.impl_info_str();
      if (name != first && name.rfind("ref", 0) != 0 && name.find("gemm") == std::string::npos)
        alternatives.push_back(name);
    }
  }
  if (alternatives.empty()) GTEST_SKIP() << "oneDNN offers one convolution implementation here";
  GraphMaker m;
  m.g.name = "alt";
  int x = m.value("x", xs);
  int y = m.value("y", {1, 32, 14, 14});
  FusedOp& c = m.op("conv2d", {x}, {y}, "conv");
  c.constants = {w, b};
  c.attrs = Json{{"stride", {1, 1}}, {"padding", {1, 1}}};
  m.g.inputs = {x};
  m.g.outputs = {y};
  const Tensor in = random_tensor(xs, 152);
  const Tensor want = ref_conv(in, w, &b, {1, 1}, {1, 1});
  auto run_profiled = [&](const std::shared_ptr<Storage>& bytes, std::string* impl) {
    auto e = Engine::load(bytes, "alt.engine");
    Profile profile;
    std::vector<Tensor> out;
    {
      ProfileScope scope(profile);
      out = e->run({in});
    }
    for (const ProfileEntry& p : profile.entries)
      if (p.kind == "conv") *impl = p.impl;
    return out.at(0);
  };
  for (const std::string& impl : alternatives) {
    SCOPED_TRACE(impl);
    BuildOptions o = fast();
    o.force_tactics = {{"conv", "blocked/" + impl}};
    auto bytes = build_engine(m.g, o);
    Json step;
    for (const Json& s : plan_steps(bytes))
      if (s["kind"] == "conv") step = s;
    EXPECT_EQ(step["tactic"], "blocked/" + impl);
    EXPECT_EQ(step["impl"], impl);
    std::string ran;
    expect_close(run_profiled(bytes, &ran), want);
    EXPECT_EQ(ran, impl);
    // A plan naming an implementation this oneDNN lacks: a warning, oneDNN's first choice.
    auto renamed = rewrite(bytes, nullptr, [](Json& j) {
      for (Json& s : j["steps"])
        if (s["kind"] == "conv") s["impl"] = "jit:none_such";
    });
    std::vector<std::string> warnings;
    ScopedLogSink sink([&](LogLevel level, std::string_view msg) {
      if (level == LogLevel::kWarning) warnings.emplace_back(msg);
    });
    expect_close(run_profiled(renamed, &ran), want);
    EXPECT_NE(ran, "jit:none_such");
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("'jit:none_such'"), std::string::npos) << warnings[0];
    EXPECT_NE(warnings[0].find("step 'conv'"), std::string::npos) << warnings[0];
  }
  BuildOptions o = fast();
  o.force_tactics = {{"conv", "blocked/jit:none_such"}};
  try {
    build_engine(m.g, o);
    FAIL() << "a oneDNN implementation that does not exist was forced";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(err.what()).find("blocked/" + alternatives[0]), std::string::npos) << err.what();
  }
}

TEST(CpuBackendLoad, CorruptWeightsAreAnErrorWithEveryLoadThreadCount) {
  // A weights section under one checksum chunk, and one of several chunks (checked piece by
  // piece by the load threads).
  for (const EngineGraph& g : {small_cnn(), wide_conv()}) {
    auto bytes = build_engine(g, fast());
    EngineView view = EngineView::parse(bytes, "x");
    const uint64_t weights_size = view.section(kSectionWeights)->nbytes();
    EXPECT_EQ(view.checksum_pieces(kSectionWeights), (weights_size + kEngineChecksumChunk - 1) / kEngineChecksumChunk);
    const Shape in_shape = g.values[g.inputs[0]].dims;
    for (const char* threads : {"1", "2", "4", "16"}) {
      ScopedLoadThreads scoped(threads);
      SCOPED_TRACE(cat(g.name, ", EMBER_LOAD_THREADS=", threads));
      // First, middle and last byte of the weights, which the kernels created meanwhile point into.
      for (uint64_t at : {uint64_t{0}, weights_size / 2, weights_size - 1}) {
        expect_load_error(damage_section(bytes, kSectionWeights, at), ErrorCode::kChecksumMismatch,
                          "section 'weights' is corrupted");
      }
      expect_load_error(damage_section(bytes, kSectionPlan, 3), ErrorCode::kChecksumMismatch,
                        "section 'plan' is corrupted");
      // The undamaged engine loads and runs with the same thread count.
      Tensor in = random_tensor(in_shape, 46);
      EXPECT_EQ(Engine::load(bytes, "intact")->run({in}).size(), 1u);
    }
  }
}

TEST(CpuBackendLoad, ErrorsWhileHelpersHashAreReportedInOrder) {
  // wide_conv's weights are 3 checksum chunks, so helper threads are still hashing when the
  // plan turns out bad (they are stopped and joined), and a kernel that fails to create
  // meets a damaged weights section (corruption is the better report).
  auto bytes = build_engine(wide_conv(), fast());
  std::string garbage = "{\"version\": 1, \"steps\": [";
  auto bad_json = rewrite(bytes, nullptr, nullptr, &garbage);
  auto bad_stride = rewrite(bytes, nullptr, [](Json& j) {
    for (Json& st : j["steps"])
      if (st["kind"] == "conv") st["strides"] = {3, 3};
  });
  const uint64_t weights_size = EngineView::parse(bytes, "x").section(kSectionWeights)->nbytes();
  for (const char* threads : {"1", "2", "4", "16"}) {
    ScopedLoadThreads scoped(threads);
    SCOPED_TRACE(cat("EMBER_LOAD_THREADS=", threads));
    expect_load_error(bad_json, ErrorCode::kCorrupt, "not valid JSON");
    expect_load_error(bad_stride, ErrorCode::kCorrupt, "conv");
    expect_load_error(damage_section(bad_stride, kSectionWeights, weights_size - 1), ErrorCode::kChecksumMismatch,
                      "section 'weights' is corrupted");
  }
}

TEST(CpuBackendLoad, CorruptPaddingIsAnError) {
  auto bytes = build_engine(small_cnn(), fast());
  EngineView v = EngineView::parse(bytes, "original");
  // The first padding byte after the plan section (sections start at multiples of 64).
  uint64_t pad = 0;
  for (const EngineSectionInfo& s : v.sections())
    if (s.name == kSectionPlan && (s.offset + s.size) % 64 != 0) pad = s.offset + s.size;
  if (pad == 0) GTEST_SKIP() << "the plan section ends on a 64-byte boundary";
  auto copy = Storage::allocate(bytes->nbytes());
  std::memcpy(copy->data(), bytes->data(), bytes->nbytes());
  copy->data()[pad] = 1;
  expect_load_error(copy, ErrorCode::kChecksumMismatch, "padding byte");
  EngineView minimal = EngineView::parse(copy, "minimal", EngineVerification::kMinimal);
  EXPECT_THROW(minimal.verify_padding(), Error);
}

TEST(CpuBackendLoad, MinimalVerificationLeavesTheWeightsToTheCaller) {
  auto bytes = build_engine(small_cnn(), fast());
  auto damaged = damage_section(bytes, kSectionWeights, 5);
  // Asked for explicitly, kMinimal skips the weights checksum (header, table and meta only).
  EXPECT_NO_THROW(Engine::load(damaged, "minimal", EngineVerification::kMinimal));
  expect_load_error(damaged, ErrorCode::kChecksumMismatch, "corrupted");
}

TEST(CpuBackendLoad, IncompatibleTargetWinsOverCorruptWeights) {
  // The target is checked before any section but the meta is read: an engine for another
  // machine is reported as such, even when its weights are damaged too.
  auto bytes = build_engine(small_cnn(), fast());
  auto foreign = rewrite(bytes, [](EngineMeta& m) { m.target.arch = build_arch() == std::string("x86_64") ? "aarch64" : "x86_64"; },
                         nullptr);
  expect_load_error(damage_section(foreign, kSectionWeights, 7), ErrorCode::kIncompatibleTarget, "architecture");
}

TEST(CpuBackendLoad, ParallelKernelCreationIsBitwiseIdentical) {
  auto bytes = build_engine(small_cnn(), fast());
  Tensor in = random_tensor({2, 3, 16, 16}, 47);
  std::vector<Tensor> outs;
  for (const char* threads : {"1", "3", "8"}) {
    ScopedLoadThreads scoped(threads);
    outs.push_back(Engine::load(bytes, "t")->run({in}).at(0));
  }
  EXPECT_TRUE(bitwise_equal(outs[0], outs[1]));
  EXPECT_TRUE(bitwise_equal(outs[0], outs[2]));
}

TEST(CpuBackendLoad, MalformedLoadThreadsIsAnError) {
  auto bytes = build_engine(small_cnn(), fast());
  for (const char* bad : {"0", "-2", "two", "3x"}) {
    ScopedLoadThreads scoped(bad);
    expect_load_error(bytes, ErrorCode::kInvalidArgument, "EMBER_LOAD_THREADS");
  }
}

TEST(CpuBackend, MissingIsaFeatureFailsToLoad) {
  auto bytes = build_engine(small_cnn(), fast());
  std::string missing;
  for (const std::string& f : known_isa_features(build_arch()))
    if (!host_target().has_feature(f)) missing = f;
  if (missing.empty()) GTEST_SKIP() << "this host has every known feature";
  expect_load_error(rewrite(bytes, [&](EngineMeta& m) { m.target.isa_features.insert(missing); }, nullptr),
                    ErrorCode::kIncompatibleTarget, missing);
}

TEST(CpuBackend, MetaRecordsTargetAndBuildSettings) {
  auto bytes = build_engine(small_cnn(), fast());
  auto e = Engine::load(bytes, "m");
  const EngineMeta& m = e->meta();
  EXPECT_EQ(m.backend, "cpu");
  EXPECT_EQ(m.target.arch, std::string(build_arch()));
  for (const std::string& f : m.target.isa_features) EXPECT_TRUE(host_target().has_feature(f)) << f;
  if (host_target().has_feature("avx2") && !host_target().has_feature("avx512f")) {
    EXPECT_TRUE(m.target.has_feature("avx2")) << e->describe();
  }
  EXPECT_EQ(m.build_settings["time_tactics"], false);
  EXPECT_EQ(m.inputs.at(0).name, "x");
  EXPECT_EQ(m.outputs.at(0).shape.size(), 2u);
}

TEST(CpuBackend, ThreadCountsAgree) {
  auto e = Engine::load(build_engine(small_cnn(), fast()), "t");
  Tensor in = random_tensor({2, 3, 16, 16}, 45);
  RunOptions one, two;
  one.threads = 1;
  two.threads = 2;
  expect_close(e->run({in}, one).at(0), e->run({in}, two).at(0), 1e-5);
}

TEST(CpuBackend, ConcurrentRuns) {
  auto e = Engine::load(build_engine(small_cnn(), fast()), "c");
  Tensor in = random_tensor({2, 3, 16, 16}, 46);
  Tensor want = e->run({in}).at(0);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      RunOptions o;
      o.threads = 1;
      for (int i = 0; i < 10; ++i)
        if (!bitwise_equal(e->run({in}, o).at(0), want)) ++mismatches;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(CpuBackend, InputValidation) {
  auto e = Engine::load(build_engine(small_cnn(), fast()), "v.engine");
  auto expect_err = [&](std::vector<Tensor> in, ErrorCode code, const std::string& needle) {
    try {
      e->run(in);
      FAIL() << "accepted bad inputs";
    } catch (const Error& err) {
      EXPECT_EQ(err.code(), code) << err.what();
      EXPECT_NE(std::string(err.what()).find(needle), std::string::npos) << err.what();
      EXPECT_NE(std::string(err.what()).find("small_cnn"), std::string::npos) << err.what();
    }
  };
  expect_err({}, ErrorCode::kInvalidArgument, "expects 1 inputs");
  expect_err({Tensor::zeros({2, 3, 16, 16}, DType::kFloat64)}, ErrorCode::kDTypeMismatch, "'x'");
  expect_err({Tensor::zeros({2, 3, 16}, DType::kFloat32)}, ErrorCode::kShapeMismatch, "rank 4");
  expect_err({Tensor::zeros({2, 3, 16, 17}, DType::kFloat32)}, ErrorCode::kShapeMismatch, "dim 3");
  // A non-contiguous input is accepted (copied once).
  Tensor big = random_tensor({2, 3, 16, 32}, 47);
  Tensor strided = big.as_strided({2, 3, 16, 16}, {3 * 16 * 32, 16 * 32, 32, 2}, 0);
  expect_close(e->run({strided}).at(0), e->run({strided.contiguous()}).at(0), 0);
}

TEST(CpuBackend, UnsupportedOpIsReportedAtBuild) {
  GraphMaker m;
  m.g.name = "bad";
  int x = m.value("x", {2});
  int y = m.value("y", {2});
  m.op("teleport", {x}, {y});
  m.g.inputs = {x};
  m.g.outputs = {y};
  std::string why;
  EXPECT_FALSE(supports(m.g.ops[0], m.g.values, &why));
  EXPECT_NE(why.find("teleport"), std::string::npos);
  EXPECT_THROW(build_engine(m.g, fast()), Error);
}


// Run buffers: small ones come from the ordinary allocator, large ones are 2 MiB aligned
// mappings; every byte is writable and kept until the last reference goes.
TEST(RunBuffers, LargeBuffersAreHugePageAlignedAndWritable) {
  for (size_t n : {size_t{1}, size_t{4096}, (size_t{2} << 20) - 1, size_t{2} << 20, (size_t{4} << 20) + 12345}) {
    std::shared_ptr<Storage> b = allocate_run_buffer(n);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->nbytes(), n);
    EXPECT_TRUE(b->writable());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % 64, 0u) << n;
    if (n >= (size_t{2} << 20)) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % (size_t{2} << 20), 0u) << n;
    }
    std::memset(b->data(), 0xA5, n);
    EXPECT_EQ(b->data()[n - 1], 0xA5);
    std::shared_ptr<Storage> copy = b;
    b.reset();
    EXPECT_EQ(copy->data()[0], 0xA5);  // still mapped while a reference is alive
  }
}

// warm_allocator populates heap that the thread's next allocations reuse: 12 MiB allocated
// and written in 1 MiB blocks right after it take (almost) no page faults, where without it
// they take one per fresh 4 KiB page (3072).
TEST(WarmAllocator, LaterAllocationsReusePopulatedPages) {
  if (!warm_allocator_built()) GTEST_SKIP() << "glibc's own malloc only (not in sanitizer builds)";
  constexpr size_t kBlock = size_t{1} << 20, kBlocks = 12;
  long faults = -1;
  bool warmed = false;
  // A thread of its own: its own arena, nothing else allocating in it meanwhile.
  std::thread t([&] {
    warmed = warm_allocator(kBlock * kBlocks);
    if (!warmed) return;
    rusage before{}, after{};
    getrusage(RUSAGE_THREAD, &before);
    std::vector<void*> blocks;
    for (size_t i = 0; i < kBlocks; ++i) {
      blocks.push_back(std::malloc(kBlock - 64));
      if (blocks.back() != nullptr) std::memset(blocks.back(), 0x5A, kBlock - 64);
    }
    getrusage(RUSAGE_THREAD, &after);
    for (void* b : blocks) std::free(b);
    faults = after.ru_minflt - before.ru_minflt;
  });
  t.join();
  if (!warmed) {
    void* probe = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(probe, MAP_FAILED);
    const bool kernel_can = madvise(probe, 4096, MADV_POPULATE_WRITE) == 0;
    munmap(probe, 4096);
    if (!kernel_can) GTEST_SKIP() << "the kernel has no MADV_POPULATE_WRITE";
    FAIL() << "warm_allocator populated nothing although the kernel supports it";
  }
  EXPECT_LT(faults, 64) << "page faults writing " << kBlocks << " MiB just populated";
}

}  // namespace
}  // namespace ember::cpu
