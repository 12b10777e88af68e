// Every fixture, every case: Ember's interpreter against PyTorch 2.11's reference outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>

#include "ember/profile.h"
#include "ember/runtime.h"
#include "ember/safetensors.h"

namespace ember {
namespace {

std::string fixture(const std::string& name) { return std::string(EMBER_FIXTURES_DIR) + "/" + name; }

// Every element within atol + rtol * |expected| (integers and bools exactly).
::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, double rtol, double atol) {
  if (got.dtype() != want.dtype())
    return ::testing::AssertionFailure() << "dtype " << dtype_name(got.dtype()) << " vs " << dtype_name(want.dtype());
  if (got.sizes() != want.sizes())
    return ::testing::AssertionFailure() << "shape " << shape_str(got.sizes()) << " vs " << shape_str(want.sizes());
  bool exact = !dtype_is_floating(want.dtype());
  double worst = 0;
  int64_t bad = 0, first_bad = -1;
  for (int64_t i = 0; i < want.numel(); ++i) {
    double g = element_as_double(got, i), w = element_as_double(want, i);
    double err = std::fabs(g - w);
    bool ok = exact ? g == w : (err <= atol + rtol * std::fabs(w)) || (std::isnan(g) && std::isnan(w));
    if (!ok) {
      ++bad;
      if (first_bad < 0) first_bad = i;
    }
    worst = std::max(worst, err);
  }
  if (bad)
    return ::testing::AssertionFailure() << bad << " of " << want.numel() << " elements differ; max abs error "
                                         << worst << "; first at flat index " << first_bad << ": "
                                         << element_as_double(got, first_bad) << " vs "
                                         << element_as_double(want, first_bad);
  return ::testing::AssertionSuccess() << "max abs error " << worst;
}

class FixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureTest, EveryCaseMatchesPyTorch) {
  const std::string name = GetParam();
  Program program = Program::load(fixture(name + ".pt2"));
  SafetensorsFile io = read_safetensors(fixture(name + ".io.safetensors"));
  auto cases = group_reference_cases(io, name + ".io.safetensors");
  ASSERT_TRUE(cases.has_value());
  ASSERT_FALSE(cases->empty());
  for (const ReferenceCase& c : *cases) {
    SCOPED_TRACE("case " + std::to_string(c.index));
    std::vector<Tensor> outputs = program.run_flat(c.inputs);
    ASSERT_EQ(outputs.size(), c.outputs.size());
    for (size_t j = 0; j < outputs.size(); ++j) {
      SCOPED_TRACE("output " + std::to_string(j));
      EXPECT_TRUE(all_close(outputs[j], c.outputs[j], 1e-4, 1e-4));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTest,
                         ::testing::Values("mlp_pytree", "cnn_small", "cnn_small_core_aten", "transformer_layer",
                                           "mlp_dynamic_batch", "resnet18"));

TEST(Fixtures, DynamicBatchHasThreeCases) {
  SafetensorsFile io = read_safetensors(fixture("mlp_dynamic_batch.io.safetensors"));
  auto cases = group_reference_cases(io, "mlp_dynamic_batch");
  ASSERT_TRUE(cases.has_value());
  ASSERT_EQ(cases->size(), 3u);
  EXPECT_EQ((*cases)[0].inputs[0].size(0), 4);
  EXPECT_EQ((*cases)[1].inputs[0].size(0), 1);
  EXPECT_EQ((*cases)[2].inputs[0].size(0), 37);
}

TEST(Fixtures, MlpPytreeOutputStructure) {
  Program program = Program::load(fixture("mlp_pytree.pt2"));
  SafetensorsFile io = read_safetensors(fixture("mlp_pytree.io.safetensors"));
  auto cases = group_reference_cases(io, "mlp_pytree");
  ASSERT_TRUE(cases.has_value());
  const ReferenceCase& c = cases->front();
  Value out = program.run(Value::tuple({c.inputs[0], c.inputs[1]}));
  // {"out": t, "aux": (t, t)}
  ASSERT_EQ(out.kind(), Value::Kind::kDict);
  ASSERT_EQ(out.keys(), (std::vector<std::string>{"out", "aux"}));
  ASSERT_TRUE(out.at("out").is_tensor());
  const Value& aux = out.at("aux");
  ASSERT_EQ(aux.kind(), Value::Kind::kTuple);
  ASSERT_EQ(aux.size(), 2u);
  ASSERT_TRUE(aux[0].is_tensor());
  ASSERT_TRUE(aux[1].is_tensor());
  EXPECT_TRUE(all_close(out.at("out").tensor(), c.outputs[0], 1e-4, 1e-4));
  EXPECT_TRUE(all_close(aux[0].tensor(), c.outputs[1], 1e-4, 1e-4));
  EXPECT_TRUE(all_close(aux[1].tensor(), c.outputs[2], 1e-4, 1e-4));
  EXPECT_EQ(out.to_string(), "{'out': float32[3, 4], 'aux': (float32[3], float32[3, 16])}");

  // The same call with explicit (args, kwargs).
  Value again = program.run(Value::tuple({Value::tuple({c.inputs[0], c.inputs[1]}), Value::dict({})}));
  EXPECT_TRUE(again.same_structure(out));
}

TEST(Fixtures, InputsDescribeNamesDtypesAndRanges) {
  Program dyn = Program::load(fixture("mlp_dynamic_batch.pt2"));
  ASSERT_EQ(dyn.inputs().size(), 1u);
  const TensorInfo& x = dyn.inputs()[0];
  EXPECT_EQ(x.name, "x");
  EXPECT_EQ(x.dtype, DType::kFloat32);
  ASSERT_EQ(x.sizes.size(), 2u);
  EXPECT_TRUE(x.sizes[0].is_symbolic);
  EXPECT_EQ(x.sizes[0].min, 1);
  EXPECT_EQ(x.sizes[0].max, 64);
  ASSERT_TRUE(x.sizes[0].hint.has_value());
  EXPECT_EQ(*x.sizes[0].hint, 4);
  EXPECT_EQ(x.to_string(), "float32 [" + x.sizes[0].symbol + " in 1..64, 32]");
  EXPECT_FALSE(x.static_shape().has_value());
  ASSERT_EQ(dyn.outputs().size(), 1u);

  Program mlp = Program::load(fixture("mlp_pytree.pt2"));
  ASSERT_EQ(mlp.inputs().size(), 2u);
  EXPECT_EQ(mlp.inputs()[1].name, "y");
  EXPECT_EQ(mlp.inputs()[1].static_shape(), (Shape{3, 4}));
  EXPECT_EQ(mlp.outputs().size(), 3u);
}

TEST(Fixtures, NonContiguousInputsAreAccepted) {
  Program program = Program::load(fixture("mlp_dynamic_batch.pt2"));
  SafetensorsFile io = read_safetensors(fixture("mlp_dynamic_batch.io.safetensors"));
  const Tensor& x = *io.find("case0.in.0");  // [4, 32]
  // The same values through a transposed buffer: [32, 4] storage viewed as [4, 32].
  Tensor buf = Tensor::empty({32, 4}, DType::kFloat32);
  Tensor xt = buf.as_strided({4, 32}, {1, 4}, 0);
  xt.copy_from(x);
  ASSERT_FALSE(xt.is_contiguous());
  std::vector<Tensor> out = program.run_flat({xt});
  EXPECT_TRUE(all_close(out[0], *io.find("case0.out.0"), 1e-4, 1e-4));
}

TEST(Fixtures, ConcurrentRunsAgree) {
  Program program = Program::load(fixture("cnn_small.pt2"));
  SafetensorsFile io = read_safetensors(fixture("cnn_small.io.safetensors"));
  const Tensor& x = *io.find("case0.in.0");
  const Tensor& want = *io.find("case0.out.0");
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) ok[t] += static_cast<bool>(all_close(program.run_flat({x})[0], want, 1e-4, 1e-4));
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 3) << "thread " << t;
}

// A profile scope records one entry per node per run on its own thread, nothing outside it;
// the innermost of nested scopes records.
TEST(Profile, RecordsInterpreterNodesOnlyWhileInScope) {
  Program p = Program::load(fixture("mlp_pytree.pt2"));
  SafetensorsFile io = read_safetensors(fixture("mlp_pytree.io.safetensors"));
  auto cases = group_reference_cases(io, "mlp_pytree.io.safetensors");
  ASSERT_TRUE(cases.has_value());
  const std::vector<Tensor>& in = cases->front().inputs;
  p.run_flat(in);
  EXPECT_EQ(ProfileScope::active(), nullptr);
  Profile outer, inner;
  {
    ProfileScope a(outer);
    p.run_flat(in);
    {
      ProfileScope b(inner);
      EXPECT_EQ(ProfileScope::active(), &inner);
      p.run_flat(in);
      p.run_flat(in);
      std::thread other([&] { EXPECT_EQ(ProfileScope::active(), nullptr); });
      other.join();
    }
    EXPECT_EQ(ProfileScope::active(), &outer);
  }
  EXPECT_EQ(ProfileScope::active(), nullptr);
  ASSERT_EQ(outer.entries.size(), p.num_nodes());
  ASSERT_EQ(inner.entries.size(), 2 * p.num_nodes());
  std::vector<PlanStep> plan = p.plan();
  for (size_t i = 0; i < outer.entries.size(); ++i) {
    const ProfileEntry& e = outer.entries[i];
    EXPECT_EQ(e.engine, "");
    EXPECT_EQ(e.impl, "interpreter");
    EXPECT_EQ(e.name, plan[i].node);
    EXPECT_EQ(e.kind, plan[i].target);
    EXPECT_GE(e.ms, 0.0);
    EXPECT_EQ(inner.entries[i + p.num_nodes()].name, e.name);
  }
}

}  // namespace
}  // namespace ember
