// Passes on a partition: BatchNorm folding numerics, fusion decisions, identity removal,
// constant folding.
#include <gtest/gtest.h>

#include "compiler_test_util.h"

namespace ember::compiler {
namespace {

using ember::testing::B;
using ember::testing::F;
using ember::testing::I;
using ember::testing::Is;
using ember::testing::ModelBuilder;
using ember::testing::random_tensor;
using ember::testing::T;

ir::Node make_node(const std::string& target, std::vector<std::pair<std::string, ir::Argument>> args,
                   const std::string& out) {
  ir::Node n;
  n.target = target;
  n.name = out;
  for (auto& [k, v] : args) n.inputs.push_back(ir::NamedArgument{k, v, 1, {}});
  n.outputs.push_back(T(out));
  return n;
}

// conv -> eval BN evaluated by the reference kernels vs. the conv with folded weights.
TEST(BatchNormFold, MatchesUnfoldedReference) {
  Tensor x = random_tensor({2, 3, 9, 9}, 1);
  Tensor w = random_tensor({5, 3, 3, 3}, 2);
  Tensor bias = random_tensor({5}, 3);
  Tensor gamma = random_tensor({5}, 4, 0.5f, 1.5f), beta = random_tensor({5}, 5);
  Tensor mean = random_tensor({5}, 6), var = random_tensor({5}, 7, 0.5f, 2.f);
  std::map<std::string, Tensor> env = {{"x", x}, {"w", w}, {"b", bias}, {"g", gamma}, {"be", beta}, {"m", mean}, {"v", var}};
  ir::Node conv = make_node("torch.ops.aten.conv2d.default",
                            {{"input", T("x")}, {"weight", T("w")}, {"bias", T("b")}, {"stride", Is({2, 1})},
                             {"padding", Is({1, 0})}},
                            "c");
  env["c"] = evaluate_node(conv, env, "test").at("c");
  ir::Node bn = make_node("torch.ops.aten.batch_norm.default",
                          {{"input", T("c")}, {"weight", T("g")}, {"bias", T("be")}, {"running_mean", T("m")},
                           {"running_var", T("v")}, {"training", B(false)}, {"momentum", F(0.1)}, {"eps", F(1e-3)},
                           {"cudnn_enabled", B(false)}},
                          "y");
  Tensor want = evaluate_node(bn, env, "test").at("y");

  auto [wf, bf] = fold_batch_norm(w, bias, gamma, beta, mean, var, 1e-3);
  std::map<std::string, Tensor> env2 = {{"x", x}, {"w", wf}, {"b", bf}};
  Tensor got = evaluate_node(conv, env2, "test").at("c");
  EXPECT_TRUE(ember::testing::all_close(got, want, 1e-5, 1e-5));

  // Without conv bias and without BN affine parameters.
  auto [wf2, bf2] = fold_batch_norm(w, Tensor(), Tensor(), Tensor(), mean, var, 1e-5);
  for (int64_t o = 0; o < 5; ++o) {
    double s = 1.0 / std::sqrt(element_as_double(var, o) + 1e-5);
    EXPECT_NEAR(element_as_double(bf2, o), -element_as_double(mean, o) * s, 1e-6);
    EXPECT_NEAR(element_as_double(wf2, o * 27 + 4), element_as_double(w, o * 27 + 4) * s, 1e-6);
  }
}

// x -> relu(a) -> conv1 -> relu -> conv2 -> bn -> add(., a) -> relu   (a ResNet block)
Pt2Model resnet_block(bool broadcast_other) {
  ModelBuilder b;
  b.input("x", {1, 4, 6, 6});
  std::string w1 = b.param("c1.weight", random_tensor({4, 4, 3, 3}, 11));
  std::string w2 = b.param("c2.weight", random_tensor({4, 4, 3, 3}, 12));
  std::string g = b.param("bn.weight", random_tensor({4}, 13, 0.5f, 1.5f));
  std::string be = b.param("bn.bias", random_tensor({4}, 14));
  std::string m = b.param("bn.running_mean", random_tensor({4}, 15), true);
  std::string v = b.param("bn.running_var", random_tensor({4}, 16, 0.5f, 2.f), true);
  Shape s = {1, 4, 6, 6};
  b.node("torch.ops.aten.relu.default", {{"self", T("x")}}, {{"a", s}});
  if (broadcast_other) b.node("torch.ops.aten.mean.dim", {{"self", T("a")}, {"dim", Is({2, 3})}, {"keepdim", B(true)}},
                              {{"pooled", {1, 4, 1, 1}}});
  b.node("torch.ops.aten.conv2d.default", {{"input", T("a")}, {"weight", T(w1)}, {"padding", Is({1, 1})}}, {{"c1", s}});
  b.node("torch.ops.aten.relu_.default", {{"self", T("c1")}}, {{"r1", s}});
  b.node("torch.ops.aten.conv2d.default", {{"input", T("r1")}, {"weight", T(w2)}, {"padding", Is({1, 1})}}, {{"c2", s}});
  b.node("torch.ops.aten.batch_norm.default",
         {{"input", T("c2")}, {"weight", T(g)}, {"bias", T(be)}, {"running_mean", T(m)}, {"running_var", T(v)},
          {"training", B(false)}, {"momentum", F(0.1)}, {"eps", F(1e-5)}, {"cudnn_enabled", B(false)}},
         {{"bn", s}});
  b.node("torch.ops.aten.add_.Tensor", {{"self", T("bn")}, {"other", T(broadcast_other ? "pooled" : "a")}}, {{"sum", s}});
  b.node("torch.ops.aten.relu_.default", {{"self", T("sum")}}, {{"out", s}});
  b.output("out");
  return b.finish();
}

LoweredEngine lower_all(const Pt2Model& m) {
  AnalyzeOptions opts;
  opts.supports = ember::testing::support_all;
  GraphAnalysis g = analyze(m, "test", opts);
  Partition p;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    EXPECT_TRUE(g.nodes[i].supported) << g.nodes[i].name << ": " << g.nodes[i].reason;
    p.nodes.push_back(i);
  }
  return lower(g, p, "engine_0", values_needed_outside(g, p));
}

TEST(Fusion, ResidualBlockFusesIntoTwoConvs) {
  Pt2Model m = resnet_block(false);
  LoweredEngine le = lower_all(m);
  const auto& ops = le.graph.ops;
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0].op, "eltwise");
  EXPECT_EQ(ops[1].op, "conv2d");
  ASSERT_EQ(ops[1].post_ops.size(), 1u);
  EXPECT_EQ(ops[1].post_ops[0].alg, "relu");
  EXPECT_EQ(ops[2].op, "conv2d");
  ASSERT_EQ(ops[2].post_ops.size(), 2u);
  // `a` is read by conv1 earlier and dies at the add: accumulate in place.
  EXPECT_EQ(ops[2].post_ops[0].kind, cpu::PostOp::Kind::kSum);
  EXPECT_EQ(ops[2].post_ops[0].value, ops[0].outputs[0]);
  EXPECT_EQ(ops[2].post_ops[1].kind, cpu::PostOp::Kind::kEltwise);
  EXPECT_EQ(ops[2].post_ops[1].alg, "relu");
  // BN folded: conv2 carries a bias now; its constants differ from the raw weight.
  ASSERT_EQ(ops[2].constants.size(), 2u);
  // Engine I/O.
  EXPECT_EQ(le.input_names, std::vector<std::string>{"x"});
  EXPECT_EQ(le.output_names, std::vector<std::string>{"out"});
  EXPECT_EQ(le.graph.values[le.graph.outputs[0]].name, "out");
  // Weights absorbed: both conv weights and all BN tensors.
  EXPECT_EQ(le.absorbed_constants.size(), 6u);
}

// A downsampling ResNet block (3x3 stride 2, 3x3; 1x1 stride 2 on the shortcut) and, when
// `second_block`, a plain block after it. PyTorch's order: the block's second convolution,
// then the shortcut's 1x1, then the add. Variants: a ReLU on the shortcut before the add
// (`shortcut_relu`); the shortcut reading a copy of the block input that is computed after
// the second convolution (`late_shortcut_input`).
struct BlockVariant {
  bool second_block = true;
  bool shortcut_relu = false;
  bool late_shortcut_input = false;
};

Pt2Model downsample_blocks(BlockVariant v) {
  ModelBuilder b;
  b.input("x", {1, 4, 6, 6});
  auto conv = [&](const std::string& in, const std::string& w, int64_t stride, int64_t pad, const std::string& out) {
    b.node("torch.ops.aten.conv2d.default",
           {{"input", T(in)}, {"weight", T(w)}, {"stride", Is({stride, stride})}, {"padding", Is({pad, pad})}},
           {{out, {1, 8, 3, 3}}});
  };
  Shape s = {1, 8, 3, 3};
  b.node("torch.ops.aten.relu.default", {{"self", T("x")}}, {{"a", {1, 4, 6, 6}}});
  conv("a", b.param("c1.weight", random_tensor({8, 4, 3, 3}, 21)), 2, 1, "c1");
  b.node("torch.ops.aten.relu_.default", {{"self", T("c1")}}, {{"r1", s}});
  conv("r1", b.param("c2.weight", random_tensor({8, 8, 3, 3}, 22)), 1, 1, "c2");
  std::string shortcut_in = "a";
  if (v.late_shortcut_input) {
    b.node("torch.ops.aten.relu.default", {{"self", T("a")}}, {{"a2", {1, 4, 6, 6}}});
    shortcut_in = "a2";
  }
  conv(shortcut_in, b.param("down.weight", random_tensor({8, 4, 1, 1}, 23)), 2, 0, "down");
  std::string shortcut = "down";
  if (v.shortcut_relu) {
    b.node("torch.ops.aten.relu.default", {{"self", T("down")}}, {{"down_r", s}});
    shortcut = "down_r";
  }
  b.node("torch.ops.aten.add_.Tensor", {{"self", T("c2")}, {"other", T(shortcut)}}, {{"s1", s}});
  b.node("torch.ops.aten.relu_.default", {{"self", T("s1")}}, {{"o1", s}});
  if (!v.second_block) {
    b.output("o1");
    return b.finish();
  }
  conv("o1", b.param("c3.weight", random_tensor({8, 8, 3, 3}, 24)), 1, 1, "c3");
  b.node("torch.ops.aten.relu_.default", {{"self", T("c3")}}, {{"r3", s}});
  conv("r3", b.param("c4.weight", random_tensor({8, 8, 3, 3}, 25)), 1, 1, "c4");
  b.node("torch.ops.aten.add_.Tensor", {{"self", T("c4")}, {"other", T("o1")}}, {{"s2", s}});
  b.node("torch.ops.aten.relu_.default", {{"self", T("s2")}}, {{"o2", s}});
  b.output("o2");
  return b.finish();
}

const cpu::FusedOp& op_named(const LoweredEngine& le, const std::string& root) {
  for (const auto& op : le.graph.ops)
    if (op.name == root || op.name.rfind(root + "+", 0) == 0) return op;
  ADD_FAILURE() << "no op " << root;
  return le.graph.ops.front();
}

size_t position(const LoweredEngine& le, const std::string& root) {
  return static_cast<size_t>(&op_named(le, root) - le.graph.ops.data());
}

TEST(Fusion, ResidualAddGoesWhereItsKernelIsShared) {
  // With a second block, the add goes into c2 (c2 + add + relu is c4 + add + relu, one
  // kernel); the shortcut's 1x1 runs before c2 and keeps no add.
  for (bool shortcut_relu : {false, true}) {
    SCOPED_TRACE(shortcut_relu ? "ReLU on the shortcut" : "plain shortcut");
    LoweredEngine le = lower_all(downsample_blocks({.shortcut_relu = shortcut_relu}));
    const cpu::FusedOp& c2 = op_named(le, "c2");
    const cpu::FusedOp& down = op_named(le, "down");
    const cpu::FusedOp& c4 = op_named(le, "c4");
    // The shortcut keeps its own ReLU, moved with it.
    ASSERT_EQ(down.post_ops.size(), shortcut_relu ? 1u : 0u);
    if (shortcut_relu) {
      EXPECT_EQ(down.post_ops[0].alg, "relu");
    }
    EXPECT_LT(position(le, "down"), position(le, "c2"));
    ASSERT_EQ(c2.post_ops.size(), 2u);
    EXPECT_EQ(c2.post_ops[0].kind, cpu::PostOp::Kind::kSum);
    EXPECT_EQ(c2.post_ops[0].value, down.outputs[0]);
    EXPECT_EQ(c2.post_ops[1].alg, "relu");
    EXPECT_EQ(le.graph.values[c2.outputs[0]].name, "o1");
    // c4 sums into c2's output with the same post-ops.
    ASSERT_EQ(c4.post_ops.size(), 2u);
    EXPECT_EQ(c4.post_ops[0].kind, cpu::PostOp::Kind::kSum);
    EXPECT_EQ(c4.post_ops[0].value, c2.outputs[0]);
    EXPECT_EQ(c4.post_ops[1].alg, "relu");
  }

  // Alone, the block has nothing to share a kernel with: the add stays with the later op.
  LoweredEngine alone = lower_all(downsample_blocks({.second_block = false}));
  EXPECT_TRUE(op_named(alone, "c2").post_ops.empty());
  ASSERT_EQ(op_named(alone, "down").post_ops.size(), 2u);
  EXPECT_EQ(op_named(alone, "down").post_ops[0].kind, cpu::PostOp::Kind::kSum);
  EXPECT_LT(position(alone, "c2"), position(alone, "down"));

  // The shortcut reads a value computed after c2: it cannot move ahead of c2, so the add
  // stays with it.
  LoweredEngine late = lower_all(downsample_blocks({.late_shortcut_input = true}));
  EXPECT_TRUE(op_named(late, "c2").post_ops.empty());
  ASSERT_EQ(op_named(late, "down").post_ops.size(), 2u);
  EXPECT_LT(position(late, "c2"), position(late, "down"));
}

TEST(Fusion, BroadcastOperandUsesBinaryAdd) {
  Pt2Model m = resnet_block(true);
  LoweredEngine le = lower_all(m);
  const cpu::FusedOp* conv2 = nullptr;
  for (const auto& op : le.graph.ops)
    if (op.op == "conv2d" && op.name.find("c2") != std::string::npos) conv2 = &op;
  ASSERT_NE(conv2, nullptr);
  ASSERT_EQ(conv2->post_ops.size(), 2u);
  EXPECT_EQ(conv2->post_ops[0].kind, cpu::PostOp::Kind::kBinaryAdd);
  EXPECT_EQ(le.graph.values[conv2->post_ops[0].value].name, "pooled");
}

TEST(Fusion, OperandReadByTheConvItselfIsNotSummedInPlace) {
  // add(conv(a), a): `a` is the conv's own input -> kBinaryAdd, never kSum.
  ModelBuilder b;
  b.input("x", {1, 2, 4, 4});
  std::string w = b.param("w", random_tensor({2, 2, 1, 1}, 3));
  b.node("torch.ops.aten.relu.default", {{"self", T("x")}}, {{"a", {1, 2, 4, 4}}});
  b.node("torch.ops.aten.conv2d.default", {{"input", T("a")}, {"weight", T(w)}}, {{"c", {1, 2, 4, 4}}});
  b.node("torch.ops.aten.add.Tensor", {{"self", T("c")}, {"other", T("a")}}, {{"s", {1, 2, 4, 4}}});
  b.output("s");
  LoweredEngine le = lower_all(b.finish());
  ASSERT_EQ(le.graph.ops.size(), 2u);
  ASSERT_EQ(le.graph.ops[1].post_ops.size(), 1u);
  EXPECT_EQ(le.graph.ops[1].post_ops[0].kind, cpu::PostOp::Kind::kBinaryAdd);
}

TEST(Fusion, AddThatBroadcastsTheOpsOwnOutputIsNotFused) {
  // linear -> [2, 1, 4], added to a [2, 3, 4] operand: the sum has the operand's shape, not
  // the linear's, so the linear cannot absorb the add (post-ops keep the op's shape).
  ModelBuilder b;
  b.input("x", {2, 1, 8});
  b.input("y", {2, 3, 4});
  std::string w = b.param("l.weight", random_tensor({4, 8}, 1));
  b.node("torch.ops.aten.relu.default", {{"self", T("y")}}, {{"r", {2, 3, 4}}});
  b.node("torch.ops.aten.linear.default", {{"input", T("x")}, {"weight", T(w)}}, {{"lin", {2, 1, 4}}});
  b.node("torch.ops.aten.add.Tensor", {{"self", T("lin")}, {"other", T("r")}}, {{"s", {2, 3, 4}}});
  b.output("s");
  LoweredEngine le = lower_all(b.finish());
  ASSERT_EQ(le.graph.ops.size(), 3u);
  EXPECT_EQ(le.graph.ops[1].op, "linear");
  EXPECT_TRUE(le.graph.ops[1].post_ops.empty());
  EXPECT_EQ(le.graph.ops[2].op, "binary");
}

TEST(Fusion, OutputReadOutsideStopsFusion) {
  ModelBuilder b;
  b.input("x", {3, 8});
  std::string w = b.param("l.weight", random_tensor({4, 8}, 1));
  b.node("torch.ops.aten.linear.default", {{"input", T("x")}, {"weight", T(w)}}, {{"lin", {3, 4}}});
  b.node("torch.ops.aten.dropout.default", {{"input", T("lin")}, {"p", F(0.1)}, {"train", B(false)}}, {{"d", {3, 4}}});
  b.node("torch.ops.aten.gelu.default", {{"self", T("d")}}, {{"g", {3, 4}}});
  b.output("g");
  b.output("lin");
  LoweredEngine le = lower_all(b.finish());
  ASSERT_EQ(le.graph.ops.size(), 2u);  // linear (output read outside), gelu
  EXPECT_TRUE(le.graph.ops[0].post_ops.empty());
  EXPECT_EQ(le.output_names, (std::vector<std::string>{"lin", "g"}));

  // Without the extra output: the dropout disappears and gelu fuses.
  ModelBuilder b2;
  b2.input("x", {3, 8});
  w = b2.param("l.weight", random_tensor({4, 8}, 1));
  b2.node("torch.ops.aten.linear.default", {{"input", T("x")}, {"weight", T(w)}}, {{"lin", {3, 4}}});
  b2.node("torch.ops.aten.dropout.default", {{"input", T("lin")}, {"p", F(0.1)}, {"train", B(false)}}, {{"d", {3, 4}}});
  b2.node("torch.ops.aten.gelu.default", {{"self", T("d")}}, {{"g", {3, 4}}});
  b2.output("g");
  le = lower_all(b2.finish());
  ASSERT_EQ(le.graph.ops.size(), 1u);
  ASSERT_EQ(le.graph.ops[0].post_ops.size(), 1u);
  EXPECT_EQ(le.graph.ops[0].post_ops[0].alg, "gelu_erf");
}

TEST(ConstantFolding, AddmmWithPermutedWeightBecomesLinear) {
  ModelBuilder b;
  b.input("x", {2, 8});
  Tensor wt = random_tensor({4, 8}, 9);
  std::string w = b.param("fc.weight", wt);
  std::string bias = b.param("fc.bias", random_tensor({4}, 10));
  b.node("torch.ops.aten.permute.default", {{"self", T(w)}, {"dims", Is({1, 0})}}, {{"wt", {8, 4}}});
  b.node("torch.ops.aten.addmm.default", {{"self", T(bias)}, {"mat1", T("x")}, {"mat2", T("wt")}}, {{"y", {2, 4}}});
  b.output("y");
  Pt2Model m = b.finish();
  AnalyzeOptions opts;
  opts.supports = ember::testing::support_all;
  GraphAnalysis g = analyze(m, "test", opts);
  EXPECT_EQ(g.nodes[0].kind, NodeKind::kConstant);
  EXPECT_EQ(g.nodes[1].op.op, "linear");
  // The linear weight is [out, in] again, equal to the original parameter.
  ASSERT_EQ(g.nodes[1].op.constants.size(), 2u);
  EXPECT_TRUE(ember::testing::all_close(g.nodes[1].op.constants[0], wt, 0, 0));
  LoweredEngine le = lower_all(m);
  ASSERT_EQ(le.graph.ops.size(), 1u);
  EXPECT_EQ(le.graph.ops[0].op, "linear");
}

TEST(Lowering, ReferenceOpsNameLocalValuesAndConstants) {
  ModelBuilder b;
  b.input("x", {2, 3, 4});
  std::string w = b.param("scale", random_tensor({4}, 1));
  b.node("torch.ops.aten.permute.default", {{"self", T("x")}, {"dims", Is({0, 2, 1})}}, {{"p", {2, 4, 3}}});
  b.node("torch.ops.aten.mul.Tensor", {{"self", T("x")}, {"other", T(w)}}, {{"m", {2, 3, 4}}});
  b.output("p");
  b.output("m");
  LoweredEngine le = lower_all(b.finish());
  ASSERT_EQ(le.graph.ops.size(), 2u);
  const auto& perm = le.graph.ops[0];
  EXPECT_EQ(perm.op, "reference");
  EXPECT_EQ(perm.attrs["target"], "torch.ops.aten.permute.default");
  EXPECT_EQ(perm.attrs["args"][0]["arg"]["as_tensor"]["name"], "%" + std::to_string(perm.inputs[0]));
  const auto& mul = le.graph.ops[1];
  EXPECT_EQ(mul.op, "reference");  // a constant operand: not a "binary" op
  EXPECT_EQ(mul.attrs["args"][1]["arg"]["as_tensor"]["name"], "$0");
  ASSERT_EQ(mul.constants.size(), 1u);
}

TEST(Lowering, IdentityOutputOfAnInputIsCopied) {
  ModelBuilder b;
  b.input("x", {2});
  b.node("torch.ops.aten.relu.default", {{"self", T("x")}}, {{"r", {2}}});
  b.node("torch.ops.aten.clone.default", {{"self", T("x")}}, {{"c", {2}}});
  b.output("r");
  b.output("c");
  LoweredEngine le = lower_all(b.finish());
  ASSERT_EQ(le.graph.ops.size(), 2u);
  EXPECT_EQ(le.graph.ops[1].attrs["target"], "torch.ops.aten.clone.default");
  EXPECT_NE(le.graph.outputs[1], le.graph.inputs[0]);
}

}  // namespace
}  // namespace ember::compiler
