// End to end: compile every fixture (PyTorch-written .pt2 files) into an .ep and a
// standalone engine, run them (engines through cpu::Engine, other nodes through the
// reference kernels) and compare with PyTorch's reference outputs (rtol = atol = 1e-4).
#include <gtest/gtest.h>

#include <filesystem>

#include "compiler_test_util.h"
#include "backends/cpu/winograd.h"
#include "ember/safetensors.h"

namespace ember {
namespace {

using ember::testing::all_close;

std::string data_file(const std::string& name) {
  for (const std::string& dir : {std::string(EMBER_FIXTURES_DIR), std::string(EMBER_SOURCE_DIR) + "/tests/data"}) {
    std::string p = dir + "/" + name;
    if (std::filesystem::exists(p)) return p;
  }
  return {};
}

CompileOptions fast_options() {
  CompileOptions o;
  o.build.time_tactics = false;
  return o;
}

void check_cases(const std::string& name, const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& run) {
  SafetensorsFile io = read_safetensors(data_file(name + ".io.safetensors"));
  auto cases = group_reference_cases(io, name + ".io.safetensors");
  ASSERT_TRUE(cases.has_value());
  for (const ReferenceCase& c : *cases) {
    SCOPED_TRACE("case " + std::to_string(c.index));
    std::vector<Tensor> outs = run(c.inputs);
    ASSERT_EQ(outs.size(), c.outputs.size());
    for (size_t j = 0; j < outs.size(); ++j) {
      SCOPED_TRACE("output " + std::to_string(j));
      EXPECT_TRUE(all_close(outs[j], c.outputs[j], 1e-4, 1e-4));
    }
  }
}

class CompileFixture : public ::testing::TestWithParam<std::string> {};

void check_ep(const std::string& name, const CompileOptions& options) {
  Pt2Archive input = read_pt2(data_file(name + ".pt2"));
  CompileReport report;
  Pt2Archive ep = compile_program(input, options, &report);
  std::printf("%s (min_block_size %d)\n%s", name.c_str(), options.min_block_size, report.to_string().c_str());
  // Written and read back (what `ember compile` does), then run.
  std::string path = std::string(EMBER_BINARY_DIR) + "/compiler_e2e_" + name + ".ep";
  write_pt2(ep, path);
  Pt2Archive back = read_pt2(path);
  const Pt2Model& model = back.models[0];
  ir::validate(model.program, path);
  check_cases(name, [&](const std::vector<Tensor>& in) { return ember::testing::run_model(model, in); });
  // Not byte-wasteful: the file is the bytes it holds (weights, engines, the pickled sample
  // inputs kept from the .pt2) plus metadata.
  size_t held = 0;
  for (const auto& w : model.weights) held += w.tensor.nbytes();
  for (const auto& c : model.constants) held += c.tensor.nbytes();
  if (model.sample_inputs) held += model.sample_inputs->size();
  for (const auto& [entry, blob] : back.other_entries) held += blob.size();
  EXPECT_LE(std::filesystem::file_size(path), held * 101 / 100 + 64 * 1024);
  std::filesystem::remove(path);
}

TEST_P(CompileFixture, EpMatchesPyTorch) {
  CompileOptions o = fast_options();
  check_ep(GetParam(), o);
  o.min_block_size = 1;
  check_ep(GetParam(), o);
}

TEST_P(CompileFixture, StandaloneMatchesPyTorchOrListsWhy) {
  const std::string name = GetParam();
  Pt2Archive input = read_pt2(data_file(name + ".pt2"));
  std::shared_ptr<Storage> bytes;
  try {
    bytes = compile_standalone(input, fast_options(), nullptr);
  } catch (const Error& e) {
    ASSERT_EQ(e.code(), ErrorCode::kUnsupported) << e.what();
    std::printf("%s: no standalone engine: %s\n", name.c_str(), e.what());
    return;
  }
  auto engine = cpu::Engine::load(bytes, name + ".engine");
  check_cases(name, [&](const std::vector<Tensor>& in) { return engine->run(in); });
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CompileFixture,
                         ::testing::Values("mlp_pytree", "cnn_small", "cnn_small_core_aten", "transformer_layer",
                                           "mlp_dynamic_batch", "resnet18", "constants", "tied_weights",
                                           "namedtuple_kwargs", "buffer_mutation"));

// ResNet-18 with every 3x3 stride-1 convolution on the Winograd kernel (forced by op name,
// whatever the weight growth; alternating the stored-transform and compact forms), against
// PyTorch's outputs.
TEST(CompileProgram, WinogradResNet18MatchesPyTorch) {
  if (!cpu::winograd_supported_on_host()) GTEST_SKIP() << "the Winograd kernel needs AVX2 and FMA";
  Pt2Archive input = read_pt2(data_file("resnet18.pt2"));
  CompileOptions o = fast_options();
  for (const char* name : {"conv2d_1+batch_norm_1+relu__1", "conv2d_2+batch_norm_2+add_+relu__2",
                           "conv2d_3+batch_norm_3+relu__3", "conv2d_4+batch_norm_4+add__1+relu__4",
                           "conv2d_6+batch_norm_6+add__2+relu__6", "conv2d_8+batch_norm_8+relu__7",
                           "conv2d_9+batch_norm_9+add__3+relu__8", "conv2d_11+batch_norm_11+add__4+relu__10",
                           "conv2d_13+batch_norm_13+relu__11", "conv2d_14+batch_norm_14+add__5+relu__12",
                           "conv2d_16+batch_norm_16+add__6+relu__14", "conv2d_18+batch_norm_18+relu__15",
                           "conv2d_19+batch_norm_19+add__7+relu__16"})
    o.build.force_tactics[name] = o.build.force_tactics.size() % 2 == 0 ? "winograd" : "winograd_compact";
  int picked = 0, compact = 0;
  o.progress = [&](const std::string& msg) {
    picked += msg.find("picked winograd") != std::string::npos;
    compact += msg.find("picked winograd_compact") != std::string::npos;
  };
  Pt2Archive ep = compile_program(input, o, nullptr);
  EXPECT_EQ(picked, 13);
  EXPECT_EQ(compact, 6);
  check_cases("resnet18", [&](const std::vector<Tensor>& in) { return ember::testing::run_model(ep.models[0], in); });
}

// A linear whose [2, 1, 4] output is broadcast by an add into a [2, 3, 4] operand: the engine
// must compute the broadcast sum, as the reference kernels do (the add cannot become a
// post-op of the linear, whose output is smaller than the sum).
TEST(CompileProgram, AddBroadcastingAnOpsOwnOutputMatchesTheReference) {
  using ember::testing::T;
  ember::testing::ModelBuilder b;
  b.input("x", {2, 1, 8});
  b.input("y", {2, 3, 4});
  std::string w = b.param("l.weight", ember::testing::random_tensor({4, 8}, 1));
  b.node("torch.ops.aten.relu.default", {{"self", T("y")}}, {{"r", {2, 3, 4}}});
  b.node("torch.ops.aten.linear.default", {{"input", T("x")}, {"weight", T(w)}}, {{"lin", {2, 1, 4}}});
  b.node("torch.ops.aten.add.Tensor", {{"self", T("lin")}, {"other", T("r")}}, {{"s", {2, 3, 4}}});
  b.output("s");
  Pt2Archive input;
  input.root = "broadcast_add";
  input.models.push_back(b.finish());
  CompileOptions o = fast_options();
  o.min_block_size = 1;
  Pt2Archive ep = compile_program(input, o, nullptr);
  std::vector<Tensor> in = {ember::testing::random_tensor({2, 1, 8}, 2), ember::testing::random_tensor({2, 3, 4}, 3)};
  std::vector<Tensor> want = ember::testing::run_model(input.models[0], in);
  std::vector<Tensor> got = ember::testing::run_model(ep.models[0], in);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(all_close(got[0], want[0], 1e-5, 1e-5));
}

TEST(CompileStandalone, ListsEveryUnsupportedNode) {
  Pt2Archive input = read_pt2(data_file("mlp_pytree.pt2"));
  CompileOptions o = fast_options();
  o.torch_executed_ops = {"aten.relu.default", "aten.mul.Tensor"};
  try {
    compile_standalone(input, o, nullptr);
    FAIL() << "expected kUnsupported";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    std::string msg = e.what();
    EXPECT_NE(msg.find("node 'relu' (aten.relu.default): listed in torch_executed_ops"), std::string::npos) << msg;
    EXPECT_NE(msg.find("node 'mul' (aten.mul.Tensor)"), std::string::npos) << msg;
  }
}

TEST(CompileProgram, MinBlockSizeAndForcedOpsLeaveFallbackNodes) {
  Pt2Archive input = read_pt2(data_file("cnn_small.pt2"));
  CompileOptions o = fast_options();
  o.torch_executed_ops = {"torch.ops.aten.max_pool2d.default"};
  o.min_block_size = 3;
  CompileReport report;
  Pt2Archive ep = compile_program(input, o, &report);
  bool pool_outside = false;
  for (const auto& f : report.fallback)
    pool_outside |= f.target == "torch.ops.aten.max_pool2d.default" && f.reason == "listed in torch_executed_ops";
  EXPECT_TRUE(pool_outside);
  EXPECT_EQ(report.engines.size(), 2u);
  check_cases("cnn_small", [&](const std::vector<Tensor>& in) { return ember::testing::run_model(ep.models[0], in); });
}

TEST(CompileProgram, RejectsBadOptions) {
  Pt2Archive input = read_pt2(data_file("mlp_dynamic_batch.pt2"));
  CompileOptions o = fast_options();
  o.device = "cuda";
  EXPECT_THROW(compile_program(input, o), Error);
  o = fast_options();
  o.min_block_size = 1;
  o.shapes["x"] = {{1, 32}, {128, 32}};  // beyond the program's 1..64
  EXPECT_THROW(compile_program(input, o), Error);
  o.shapes["x"] = {{1, 32}, {40, 32}};
  CompileReport report;
  Pt2Archive ep = compile_program(input, o, &report);
  EXPECT_EQ(report.engines.size(), 1u);
  check_cases("mlp_dynamic_batch",
              [&](const std::vector<Tensor>& in) { return ember::testing::run_model(ep.models[0], in); });
}

}  // namespace
}  // namespace ember
