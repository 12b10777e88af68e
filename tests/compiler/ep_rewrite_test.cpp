// The .ep rewrite on real PyTorch programs (engines replaced by placeholder bytes, so no
// backend is involved): node form as PyTorch writes it, signature / graph inputs /
// constants consistent, absorbed weights removed, pytree specs unchanged, read-back equal.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "compiler_test_util.h"

namespace ember::compiler {
namespace {

using ember::testing::fixture;

struct Rewritten {
  Pt2Archive original;
  Pt2Model model;
  GraphAnalysis analysis;
  PartitionResult partitions;
  std::vector<std::shared_ptr<Storage>> bytes;
};

// Partitions `name` with every op supported (except `forced`), fakes the engines.
Rewritten rewrite(const std::string& name, std::vector<std::string> forced = {}, int min_block = 1) {
  Rewritten r;
  r.original = read_pt2(fixture(name + ".pt2"));
  AnalyzeOptions opts;
  opts.supports = ember::testing::support_all;
  opts.torch_executed_ops = std::move(forced);
  r.analysis = analyze(r.original.models[0], name, opts);
  std::vector<bool> sup;
  std::vector<std::string> reasons;
  for (const auto& n : r.analysis.nodes) sup.push_back(n.supported), reasons.push_back(n.reason);
  r.partitions = partition_graph(sup, node_edges(r.analysis), reasons, min_block);
  prune_constant_outputs(r.analysis, r.partitions, min_block);
  std::vector<BuiltEngine> built;
  int k = 0;
  for (const auto& p : r.partitions.partitions) {
    BuiltEngine be;
    be.partition = &p;
    be.lowered = lower(r.analysis, p, "engine_" + std::to_string(k), values_needed_outside(r.analysis, p));
    be.bytes = Storage::allocate(100 + k);
    for (size_t i = 0; i < be.bytes->nbytes(); ++i) be.bytes->data()[i] = static_cast<uint8_t>(i * 7 + k);
    r.bytes.push_back(be.bytes);
    built.push_back(std::move(be));
    ++k;
  }
  r.model = rewrite_model(r.analysis, built);
  return r;
}

TEST(EpRewrite, NodeHasTheFormPyTorchWrites) {
  Rewritten r = rewrite("cnn_small");
  ASSERT_EQ(r.partitions.partitions.size(), 1u);
  ir::validate(r.model.program, "rewritten");
  const auto& nodes = r.model.program.graph_module.graph.nodes;
  ASSERT_EQ(nodes.size(), 1u);

  // Compare the serialized node with the one PyTorch wrote (names and sizes aside).
  Pt2Archive ref = read_pt2(fixture("execute_engine_reference.pt2"));
  const ir::Node* ref_node = nullptr;
  for (const auto& n : ref.models[0].program.graph_module.graph.nodes)
    if (n.target == kExecuteEngineTarget) ref_node = &n;
  ASSERT_NE(ref_node, nullptr);
  const ir::Node& ours = nodes[0];
  EXPECT_EQ(ours.target, ref_node->target);
  ASSERT_EQ(ours.inputs.size(), ref_node->inputs.size());
  for (size_t i = 0; i < ours.inputs.size(); ++i) {
    EXPECT_EQ(ours.inputs[i].name, ref_node->inputs[i].name);
    EXPECT_EQ(ours.inputs[i].kind, ref_node->inputs[i].kind);
    EXPECT_EQ(ours.inputs[i].arg.kind, ref_node->inputs[i].arg.kind);
  }
  ASSERT_EQ(ours.outputs.size(), 1u);
  EXPECT_EQ(ours.outputs[0].kind, ref_node->outputs[0].kind);
  EXPECT_EQ(*ours.name, "execute_engine");

  // The engine operand: a tensor_constant input spec before the user input, uint8 [n].
  const auto& specs = r.model.program.graph_module.signature.input_specs;
  const auto& ref_specs = ref.models[0].program.graph_module.signature.input_specs;
  std::vector<ir::InputKind> kinds, ref_kinds;
  for (const auto& s : specs) kinds.push_back(s.kind);
  for (const auto& s : ref_specs) ref_kinds.push_back(s.kind);
  // cnn_small has every weight inside the engine: only the engine constant and x remain,
  // in the reference's relative order (tensor_constant before user_input).
  EXPECT_EQ(kinds, (std::vector<ir::InputKind>{ir::InputKind::kTensorConstant, ir::InputKind::kUserInput}));
  EXPECT_EQ(specs[0].target, "ember_engine_0");
  EXPECT_EQ(specs[0].arg.name, "c_ember_engine_0");
  EXPECT_EQ(ours.input("engine")->name, "c_ember_engine_0");
  const auto& meta = r.model.program.graph_module.graph.tensor_values.at("c_ember_engine_0");
  EXPECT_EQ(meta.dtype, DType::kUInt8);
  ASSERT_EQ(meta.sizes.size(), 1u);
  EXPECT_EQ(meta.sizes[0].value, 100);
  EXPECT_TRUE(r.model.weights.empty());
  ASSERT_EQ(r.model.constants.size(), 1u);
  EXPECT_EQ(r.model.constants[0].fqn, "ember_engine_0");
  EXPECT_EQ(r.model.constants[0].meta.dtype, DType::kUInt8);
  // Values internal to the engine are gone from tensor_values.
  EXPECT_EQ(r.model.program.graph_module.graph.tensor_values.count("relu"), 0u);
  // Pytree specs, range constraints and the call graph are unchanged.
  const auto& a = r.original.models[0].program;
  const auto& b = r.model.program;
  EXPECT_EQ(a.graph_module.module_call_graph, b.graph_module.module_call_graph);
  EXPECT_EQ(a.range_constraints, b.range_constraints);
  EXPECT_EQ(a.graph_module.signature.output_specs, b.graph_module.signature.output_specs);
  EXPECT_EQ(a.graph_module.graph.outputs, b.graph_module.graph.outputs);
  EXPECT_EQ(list_engines(r.model).size(), 1u);
  EXPECT_EQ(list_engines(r.model)[0].first, "engine_0");
}

TEST(EpRewrite, WeightsReadByFallbackNodesAreKept) {
  // The classifier's addmm stays outside: its bias and (permuted) weight stay in the .ep.
  Rewritten r = rewrite("cnn_small_core_aten", {"aten.addmm.default"});
  ir::validate(r.model.program, "rewritten");
  std::set<std::string> weights;
  for (const auto& w : r.model.weights) weights.insert(w.fqn);
  EXPECT_EQ(weights, (std::set<std::string>{"fc.weight", "fc.bias"}));
  const auto& specs = r.model.program.graph_module.signature.input_specs;
  // parameters, then the engine constant, then x.
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_EQ(specs[0].kind, ir::InputKind::kParameter);
  EXPECT_EQ(specs[1].kind, ir::InputKind::kParameter);
  EXPECT_EQ(specs[2].kind, ir::InputKind::kTensorConstant);
  EXPECT_EQ(specs[3].kind, ir::InputKind::kUserInput);
  // Nodes: the engine, the permute of the fc weight, the addmm.
  std::vector<std::string> targets;
  for (const auto& n : r.model.program.graph_module.graph.nodes) targets.push_back(n.target);
  EXPECT_EQ(targets, (std::vector<std::string>{kExecuteEngineTarget, "torch.ops.aten.permute.default",
                                               "torch.ops.aten.addmm.default"}));
  bool found = false;
  for (const auto& f : r.partitions.fallback_reasons)
    if (r.analysis.nodes[f.first].name == "addmm") found = f.second == "listed in torch_executed_ops";
  EXPECT_TRUE(found);
}

TEST(EpRewrite, FallbackBetweenTwoEnginesKeepsOrder) {
  // mlp_pytree with the sum forced outside: its input comes from an engine and the
  // graph outputs are read from both.
  Rewritten r = rewrite("mlp_pytree", {"aten.sum.dim_IntList"});
  ir::validate(r.model.program, "rewritten");
  size_t engines = 0;
  for (const auto& n : r.model.program.graph_module.graph.nodes) engines += n.target == kExecuteEngineTarget;
  EXPECT_GE(engines, 1u);
  EXPECT_EQ(r.original.models[0].program.graph_module.module_call_graph,
            r.model.program.graph_module.module_call_graph);
}

TEST(EpRewrite, ReadBackEqualsWhatWasWritten) {
  for (const char* name : {"cnn_small", "cnn_small_core_aten", "transformer_layer", "mlp_dynamic_batch", "mlp_pytree"}) {
    SCOPED_TRACE(name);
    Rewritten r = rewrite(name, {"aten.sum.dim_IntList"});
    Pt2Archive out = r.original;
    out.models[0] = r.model;
    std::string path = std::string(EMBER_BINARY_DIR) + "/compiler_rewrite_" + name + ".ep";
    write_pt2(out, path);
    Pt2Archive back = read_pt2(path, {.verify_crc = true, .validate = true});
    ASSERT_EQ(back.models.size(), 1u);
    EXPECT_EQ(ir::serialize_exported_program(back.models[0].program), ir::serialize_exported_program(r.model.program));
    ASSERT_EQ(back.models[0].constants.size(), r.model.constants.size());
    auto engines = list_engines(back.models[0]);
    ASSERT_EQ(engines.size(), r.bytes.size());
    for (size_t k = 0; k < engines.size(); ++k) {
      ASSERT_EQ(engines[k].second->nbytes(), r.bytes[k]->nbytes());
      EXPECT_EQ(std::memcmp(engines[k].second->data(), r.bytes[k]->data(), r.bytes[k]->nbytes()), 0);
    }
    // Not byte-wasteful: the file is about the bytes it holds.
    size_t held = 0;
    for (const auto& w : back.models[0].weights) held += w.tensor.nbytes();
    for (const auto& c : back.models[0].constants) held += c.tensor.nbytes();
    size_t file = std::filesystem::file_size(path);
    EXPECT_LE(file, held * 101 / 100 + 64 * 1024) << "file " << file << " holds " << held;
    std::filesystem::remove(path);
  }
}

TEST(ListEngines, RejectsAMalformedEngineOperand) {
  Rewritten r = rewrite("cnn_small");
  Pt2Model m = r.model;
  m.constants.clear();
  EXPECT_THROW(list_engines(m), Error);
}

}  // namespace
}  // namespace ember::compiler
