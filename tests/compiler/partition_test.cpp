// Partitioning: acyclicity, min_block_size, independent branches, torch_executed_ops.
#include <gtest/gtest.h>

#include "compiler_test_util.h"

namespace ember::compiler {
namespace {

using ember::testing::ModelBuilder;
using ember::testing::T;

PartitionResult run(const std::vector<bool>& sup, const std::vector<std::vector<size_t>>& edges, int min_block) {
  std::vector<std::string> reasons(sup.size());
  for (size_t i = 0; i < sup.size(); ++i)
    if (!sup[i]) reasons[i] = "unsupported";
  return partition_graph(sup, edges, reasons, min_block);
}

TEST(Partition, ChainBecomesOneBlock) {
  auto r = run({true, true, true, true, true}, {{1}, {2}, {3}, {4}, {}}, 5);
  ASSERT_EQ(r.partitions.size(), 1u);
  EXPECT_EQ(r.partitions[0].nodes, (std::vector<size_t>{0, 1, 2, 3, 4}));
  EXPECT_TRUE(r.fallback_reasons.empty());
}

// 0 -> 1 -> F(2) -> 3, and 0 -> 3 directly: {0, 1, 3} contracted would read from itself
// through F, so 3 must be in another block.
TEST(Partition, FallbackInTheMiddleSplitsTheBlock) {
  auto r = run({true, true, false, true}, {{1, 3}, {2}, {3}, {}}, 1);
  ASSERT_EQ(r.partitions.size(), 2u);
  EXPECT_EQ(r.partitions[0].nodes, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(r.partitions[1].nodes, (std::vector<size_t>{3}));
  EXPECT_EQ(r.fallback_reasons.at(2), "unsupported");
}

// The cycle may also go through another block: A={0}, F(1), B={2}, and 0 -> 3 -> ... the
// contracted graph must stay acyclic whatever is merged.
TEST(Partition, NoCycleThroughAnotherBlock) {
  // 0 -> F1 -> 2 ; 0 -> 3 ; 2 -> 4 ; 3 -> 4 ; F1 fallback.
  auto r = run({true, false, true, true, true}, {{1, 3}, {2}, {4}, {4}, {}}, 1);
  // Verify acyclicity of the contracted graph directly.
  std::vector<int> block(5, -1);
  for (size_t b = 0; b < r.partitions.size(); ++b)
    for (size_t n : r.partitions[b].nodes) block[n] = static_cast<int>(b);
  // Node 0 and node 2 cannot share a block (0 -> F1 -> 2).
  EXPECT_NE(block[0], block[2]);
  EXPECT_EQ(block[1], -1);
}

TEST(Partition, MinBlockSizeDissolvesSmallBlocks) {
  // 0 -> 1 -> F2 -> 3 -> 4 -> 5 -> 6 -> 7
  auto r = run({true, true, false, true, true, true, true, true}, {{1}, {2}, {3}, {4}, {5}, {6}, {7}, {}}, 5);
  ASSERT_EQ(r.partitions.size(), 1u);
  EXPECT_EQ(r.partitions[0].nodes, (std::vector<size_t>{3, 4, 5, 6, 7}));
  EXPECT_NE(r.fallback_reasons.at(0).find("fewer than min_block_size 5"), std::string::npos);
  EXPECT_NE(r.fallback_reasons.at(1).find("block of 2"), std::string::npos);
  EXPECT_EQ(r.fallback_reasons.at(2), "unsupported");
}

TEST(Partition, IndependentBranchesMerge) {
  // Two independent chains (two inputs) end up in one block.
  auto r = run({true, true, true, true}, {{1}, {}, {3}, {}}, 1);
  ASSERT_EQ(r.partitions.size(), 1u);
  EXPECT_EQ(r.partitions[0].nodes.size(), 4u);
}

TEST(Partition, RejectsEdgesOutOfOrder) {
  EXPECT_THROW(run({true, true}, {{}, {0}}, 1), Error);
}

// relu chain with a sum in the middle forced to the interpreter.
Pt2Model relu_chain() {
  ModelBuilder b;
  b.input("x", {2, 3});
  std::string prev = "x";
  for (int i = 0; i < 6; ++i) {
    std::string out = "relu_" + std::to_string(i);
    if (i == 3) {
      b.node("torch.ops.aten.neg.default", {{"self", T(prev)}}, {{out, {2, 3}}});
    } else {
      b.node("torch.ops.aten.relu.default", {{"self", T(prev)}}, {{out, {2, 3}}});
    }
    prev = out;
  }
  b.output(prev);
  return b.finish();
}

TEST(Analyze, TorchExecutedOpsStayOutside) {
  Pt2Model m = relu_chain();
  AnalyzeOptions opts;
  opts.supports = ember::testing::support_all;
  opts.torch_executed_ops = {"aten.neg.default"};
  GraphAnalysis g = analyze(m, "test", opts);
  ASSERT_EQ(g.nodes.size(), 6u);
  EXPECT_FALSE(g.nodes[3].supported);
  EXPECT_EQ(g.nodes[3].reason, "listed in torch_executed_ops");
  EXPECT_TRUE(g.nodes[0].supported);
  EXPECT_EQ(g.nodes[0].op.op, "eltwise");
  EXPECT_EQ(g.nodes[0].op.attrs["alg"], "relu");

  opts.torch_executed_ops = {"torch.ops.aten.relu"};  // overload-less, with prefix
  g = analyze(m, "test", opts);
  for (size_t i : {0, 1, 2, 4, 5}) EXPECT_FALSE(g.nodes[i].supported) << i;
  EXPECT_TRUE(g.nodes[3].supported);
}

TEST(Analyze, MatchesOpList) {
  EXPECT_TRUE(matches_op_list("torch.ops.aten.softmax.int", {"aten.softmax.int"}));
  EXPECT_TRUE(matches_op_list("torch.ops.aten.softmax.int", {"torch.ops.aten.softmax.int"}));
  EXPECT_TRUE(matches_op_list("torch.ops.aten.softmax.int", {"aten.softmax"}));
  EXPECT_FALSE(matches_op_list("torch.ops.aten.softmax.int", {"aten.soft"}));
  EXPECT_FALSE(matches_op_list("torch.ops.aten._softmax.default", {"aten.softmax"}));
}

TEST(Analyze, ChainWithForcedFallbackPartitions) {
  Pt2Model m = relu_chain();
  AnalyzeOptions opts;
  opts.supports = ember::testing::support_all;
  opts.torch_executed_ops = {"aten.neg.default"};
  GraphAnalysis g = analyze(m, "test", opts);
  std::vector<bool> sup;
  std::vector<std::string> reasons;
  for (const auto& n : g.nodes) sup.push_back(n.supported), reasons.push_back(n.reason);
  auto r = partition_graph(sup, node_edges(g), reasons, 2);
  ASSERT_EQ(r.partitions.size(), 2u);
  EXPECT_EQ(r.partitions[0].nodes, (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(r.partitions[1].nodes, (std::vector<size_t>{4, 5}));
  r = partition_graph(sup, node_edges(g), reasons, 3);
  ASSERT_EQ(r.partitions.size(), 1u);
  EXPECT_EQ(r.fallback_reasons.size(), 3u);
}

TEST(Analyze, InplaceOnValueReadLaterIsNotFused) {
  ModelBuilder b;
  b.input("x", {4});
  b.node("torch.ops.aten.neg.default", {{"self", T("x")}}, {{"a", {4}}});
  b.node("torch.ops.aten.relu_.default", {{"self", T("a")}}, {{"r", {4}}});
  b.node("torch.ops.aten.add.Tensor", {{"self", T("a")}, {"other", T("r")}}, {{"s", {4}}});
  b.output("s");
  Pt2Model m = b.finish();
  AnalyzeOptions opts;
  opts.supports = ember::testing::support_all;
  GraphAnalysis g = analyze(m, "test", opts);
  EXPECT_FALSE(g.nodes[1].supported);
  EXPECT_NE(g.nodes[1].reason.find("in-place"), std::string::npos);
}

TEST(Analyze, ShapesNarrowRangesAndRejectOutside) {
  Pt2Archive a = read_pt2(ember::testing::fixture("mlp_dynamic_batch.pt2"));
  AnalyzeOptions opts;
  opts.supports = ember::testing::support_all;
  opts.shapes["x"] = {{2, 32}, {16, 32}};
  GraphAnalysis g = analyze(a.models[0], "test", opts);
  ASSERT_EQ(g.ranges.size(), 1u);
  EXPECT_EQ(g.ranges.begin()->second.min, 2);
  EXPECT_EQ(g.ranges.begin()->second.max, 16);
  opts.shapes["x"] = {{1, 32}, {65, 32}};
  EXPECT_THROW(analyze(a.models[0], "test", opts), Error);
  opts.shapes["x"] = {{1, 31}, {4, 32}};  // static dim 32 outside 31..32? inside; min 31 ok
  EXPECT_NO_THROW(analyze(a.models[0], "test", opts));
  opts.shapes["x"] = {{1, 33}, {4, 40}};
  EXPECT_THROW(analyze(a.models[0], "test", opts), Error);
  opts.shapes.clear();
  opts.shapes["nope"] = {{1, 32}, {4, 32}};
  EXPECT_THROW(analyze(a.models[0], "test", opts), Error);
}

}  // namespace
}  // namespace ember::compiler
