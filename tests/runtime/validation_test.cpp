// Input validation before anything runs, load-time errors (unsupported ops, schema
// mismatches) and kernel errors prefixed with the node.
#include <gtest/gtest.h>

#include <string>

#include "ember/pt2.h"
#include "ember/runtime.h"

namespace ember {
namespace {

std::string fixture(const std::string& name) { return std::string(EMBER_FIXTURES_DIR) + "/" + name; }

// Runs `fn`, expects an ember::Error with `code` whose message contains every needle.
template <typename F>
void expect_error(F&& fn, ErrorCode code, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
        << "message lacks '" << n << "': " << e.what();
  }
}

Tensor filled(const Shape& shape, DType dtype = DType::kFloat32) { return Tensor::zeros(shape, dtype); }

class DynamicBatch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { program_ = new Program(Program::load(fixture("mlp_dynamic_batch.pt2"))); }
  static void TearDownTestSuite() { delete program_; }
  static Program* program_;
};
Program* DynamicBatch::program_ = nullptr;

TEST_F(DynamicBatch, WrongDtype) {
  expect_error([&] { program_->run_flat({filled({4, 32}, DType::kInt64)}); }, ErrorCode::kDTypeMismatch,
               {"'x'", "expected float32 [", "in 1..64, 32]", "got int64 [4, 32]"});
}

TEST_F(DynamicBatch, WrongRank) {
  expect_error([&] { program_->run_flat({filled({4, 32, 1})}); }, ErrorCode::kShapeMismatch,
               {"'x'", "in 1..64, 32]", "got float32 [4, 32, 1]", "rank 3, expected 2"});
}

TEST_F(DynamicBatch, WrongStaticDim) {
  expect_error([&] { program_->run_flat({filled({4, 31})}); }, ErrorCode::kShapeMismatch,
               {"'x'", "in 1..64, 32]", "got float32 [4, 31]", "dimension 1 is 31, expected 32"});
}

TEST_F(DynamicBatch, DynamicDimOutOfRange) {
  expect_error([&] { program_->run_flat({filled({0, 32})}); }, ErrorCode::kShapeMismatch,
               {"'x'", "got float32 [0, 32]", "is 0, outside the allowed range 1..64"});
  expect_error([&] { program_->run_flat({filled({65, 32})}); }, ErrorCode::kShapeMismatch,
               {"'x'", "got float32 [65, 32]", "is 65, outside the allowed range 1..64"});
  // The bounds themselves are fine.
  EXPECT_EQ(program_->run_flat({filled({1, 32})})[0].sizes(), (Shape{1, 8}));
  EXPECT_EQ(program_->run_flat({filled({64, 32})})[0].sizes(), (Shape{64, 8}));
}

TEST_F(DynamicBatch, TooManyOrNotATensor) {
  expect_error([&] { program_->run_flat({filled({4, 32}), filled({4, 32})}); }, ErrorCode::kInvalidArgument,
               {"expected 1 inputs (x), got 2"});
  expect_error([&] { program_->run(Value::tuple({Value::from_int(3)})); }, ErrorCode::kInvalidArgument,
               {"'x'", "expected a tensor", "got int"});
}

TEST(Validation, TooFewInputs) {
  Program p = Program::load(fixture("mlp_pytree.pt2"));
  expect_error([&] { p.run_flat({filled({3, 16})}); }, ErrorCode::kInvalidArgument,
               {"expected 2 inputs (x, y), got 1"});
  expect_error([&] { p.run(Value::tuple({filled({3, 16})})); }, ErrorCode::kInvalidArgument,
               {"expected a tuple of 2 items, found 1"});
  // Second input's static dim names that input.
  expect_error([&] { p.run_flat({filled({3, 16}), filled({3, 5})}); }, ErrorCode::kShapeMismatch,
               {"'y'", "float32 [3, 4]", "got float32 [3, 5]"});
}

// mlp_pytree rewritten so x and y share a symbolic batch: both inputs must agree.
TEST(Validation, SymbolSharedByTwoInputsMustAgree) {
  Pt2Archive archive = read_pt2(fixture("mlp_pytree.pt2"));
  Pt2Model& model = archive.models.at(0);
  ir::SymInt batch;
  batch.is_expr = true;
  batch.expr.expr_str = "s0";
  auto& values = model.program.graph_module.graph.tensor_values;
  values.at("x").sizes[0] = batch;
  values.at("y").sizes[0] = batch;
  ir::RangeConstraint range;
  range.min_val = 2;
  range.max_val = 8;
  model.program.range_constraints["s0"] = range;
  Program p = Program::from_model(model, "mlp_pytree_dyn");
  EXPECT_EQ(p.inputs()[0].to_string(), "float32 [s0 in 2..8, 16]");
  p.validate_inputs({Value(filled({3, 16})), Value(filled({3, 4}))});
  expect_error([&] { p.validate_inputs({Value(filled({3, 16})), Value(filled({5, 4}))}); },
               ErrorCode::kShapeMismatch, {"'y'", "(s0) is 5 but input 'x' dimension 0 binds s0 to 3"});
  expect_error([&] { p.validate_inputs({Value(filled({9, 16})), Value(filled({9, 4}))}); },
               ErrorCode::kShapeMismatch, {"'x'", "outside the allowed range 2..8"});
}

TEST(Load, EveryUnsupportedOpIsListed) {
  Pt2Archive archive = read_pt2(fixture("mlp_pytree.pt2"));
  auto& nodes = archive.models.at(0).program.graph_module.graph.nodes;
  ASSERT_GE(nodes.size(), 6u);
  nodes[1].target = "torch.ops.aten.frobnicate.default";  // relu
  nodes[4].target = "torch.ops.mylib.mystery.default";    // sum_1
  expect_error([&] { Program::from_archive(archive); }, ErrorCode::kUnsupported,
               {"2 node(s)", "torch.ops.aten.frobnicate.default (node 'relu')",
                "torch.ops.mylib.mystery.default (node 'sum_1')"});
}

TEST(Load, UnknownArgumentNameIsCorrupt) {
  Pt2Archive archive = read_pt2(fixture("mlp_pytree.pt2"));
  auto& nodes = archive.models.at(0).program.graph_module.graph.nodes;
  nodes[4].inputs[1].name = "dims";  // sum.dim_IntList has `dim`
  expect_error([&] { Program::from_archive(archive); }, ErrorCode::kCorrupt, {"node 'sum_1'", "'dims'"});
}

TEST(Load, MissingRequiredArgumentIsCorrupt) {
  Pt2Archive archive = read_pt2(fixture("mlp_pytree.pt2"));
  auto& nodes = archive.models.at(0).program.graph_module.graph.nodes;
  nodes[0].inputs.erase(nodes[0].inputs.begin() + 1);  // linear without weight
  expect_error([&] { Program::from_archive(archive); }, ErrorCode::kCorrupt,
               {"node 'linear'", "required argument 'weight'"});
}

TEST(Load, MissingModelName) {
  Pt2Archive archive = read_pt2(fixture("mlp_pytree.pt2"));
  LoadOptions options;
  options.model_name = "nope";
  expect_error([&] { Program::from_archive(archive, options); }, ErrorCode::kNotFound, {"'nope'", "model"});
}

TEST(Run, KernelErrorsNameTheNode) {
  Pt2Archive archive = read_pt2(fixture("mlp_pytree.pt2"));
  auto& nodes = archive.models.at(0).program.graph_module.graph.nodes;
  ASSERT_EQ(nodes[4].inputs[1].name, "dim");
  nodes[4].inputs[1].arg.ints = {7};  // sum over a dim a 2-D tensor does not have
  Program p = Program::from_archive(archive);
  try {
    p.run_flat({filled({3, 16}), filled({3, 4})});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("node 'sum_1' (torch.ops.aten.sum.dim_IntList)", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace ember
