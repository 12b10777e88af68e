#include "ops/registry.h"

#include <gtest/gtest.h>

namespace ember::ops {
namespace {

ErrorCode code_of(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return ErrorCode::kOk;
}

TEST(ParseSchema, Conv2d) {
  Schema s = parse_schema(
      "conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1, SymInt[2] padding=0, "
      "SymInt[2] dilation=1, SymInt groups=1) -> Tensor");
  EXPECT_EQ(s.name, "aten::conv2d");
  EXPECT_EQ(s.overload, "default");
  ASSERT_EQ(s.args.size(), 7u);
  EXPECT_EQ(s.args[0].name, "input");
  EXPECT_EQ(s.args[0].type, "Tensor");
  EXPECT_FALSE(s.args[0].default_value.has_value());
  EXPECT_EQ(s.args[2].type, "Tensor?");
  EXPECT_EQ(s.args[2].default_value, "None");
  EXPECT_EQ(s.args[3].type, "SymInt[2]");
  EXPECT_EQ(s.args[3].default_value, "1");
  EXPECT_EQ(s.returns, (std::vector<std::string>{"Tensor"}));
}

TEST(ParseSchema, KwargOnlyAliasesAndDefaults) {
  Schema s = parse_schema("aten::add_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)");
  EXPECT_EQ(s.name, "aten::add_");
  EXPECT_EQ(s.overload, "Tensor");
  ASSERT_EQ(s.args.size(), 3u);
  EXPECT_EQ(s.args[0].type, "Tensor");
  EXPECT_EQ(s.args[0].alias, "a!");
  EXPECT_FALSE(s.args[1].kwarg_only);
  EXPECT_TRUE(s.args[2].kwarg_only);
  EXPECT_EQ(s.args[2].type, "Scalar");
  EXPECT_EQ(s.returns, (std::vector<std::string>{"Tensor"}));

  Schema e = parse_schema(
      "empty.memory_format(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, "
      "bool? pin_memory=None, MemoryFormat? memory_format=contiguous_format) -> Tensor");
  ASSERT_EQ(e.args.size(), 6u);
  EXPECT_EQ(e.args[0].type, "SymInt[]");
  EXPECT_EQ(e.args[1].type, "ScalarType?");
  EXPECT_EQ(e.args[3].type, "Device?");
  EXPECT_EQ(e.args[5].default_value, "contiguous_format");

  Schema p = parse_schema(
      "max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, "
      "bool ceil_mode=False) -> Tensor");
  EXPECT_EQ(p.args[2].default_value, "[]");
  EXPECT_EQ(p.args[5].default_value, "False");

  Schema g = parse_schema("gelu(Tensor self, *, str approximate='none') -> Tensor");
  EXPECT_EQ(g.args[1].default_value, "'none'");
  Schema g2 = parse_schema("gelu(Tensor self, *, str approximate=\"none\") -> Tensor");
  EXPECT_EQ(g2.args[1].default_value, "\"none\"");

  Schema l = parse_schema(
      "layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None, "
      "float eps=1e-05, bool cudnn_enable=True) -> Tensor");
  EXPECT_EQ(l.args[4].type, "float");
  EXPECT_EQ(l.args[4].default_value, "1e-05");

  Schema pad = parse_schema("f(Tensor self, int[2] padding=[0, 0], float p=0., float? q=None) -> Tensor");
  EXPECT_EQ(pad.args[1].default_value, "[0, 0]");
  EXPECT_EQ(pad.args[2].default_value, "0.");
  EXPECT_EQ(pad.args[3].type, "float?");
}

TEST(ParseSchema, ListsAndMultipleReturns) {
  Schema s = parse_schema("index.Tensor(Tensor self, Tensor?[] indices) -> Tensor");
  EXPECT_EQ(s.args[1].type, "Tensor?[]");
  Schema c = parse_schema("cat(Tensor[] tensors, int dim=0) -> Tensor");
  EXPECT_EQ(c.args[0].type, "Tensor[]");
  Schema t = parse_schema(
      "topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True) -> (Tensor values, Tensor "
      "indices)");
  EXPECT_EQ(t.returns, (std::vector<std::string>{"Tensor", "Tensor"}));
  Schema sp = parse_schema("split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]");
  EXPECT_EQ(sp.args[0].alias, "a -> *");
  EXPECT_EQ(sp.returns, (std::vector<std::string>{"Tensor[]"}));
  Schema o = parse_schema(
      "sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor");
  EXPECT_EQ(o.args[1].type, "int[1]?");
  Schema n = parse_schema("_foreach_zero_(Tensor(a!)[] self) -> ()");
  EXPECT_EQ(n.args[0].type, "Tensor[]");
  EXPECT_TRUE(n.returns.empty());
  Schema bn = parse_schema(
      "_native_batch_norm_legit_no_training(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor "
      "running_var, float momentum, float eps) -> (Tensor, Tensor, Tensor)");
  EXPECT_EQ(bn.returns.size(), 3u);
  Schema ee = parse_schema("ember::execute_engine(Tensor[] inputs, Tensor engine) -> Tensor[]");
  EXPECT_EQ(ee.name, "ember::execute_engine");
}

TEST(ParseSchema, RejectsMalformed) {
  for (const char* bad :
       {"relu Tensor self -> Tensor", "relu(Tensor self -> Tensor", "relu(Tensor self)", "relu(Tensor) -> Tensor",
        "relu(Tensor self, Tensor self) -> Tensor", "relu(Tensor self=) -> Tensor", "relu(Ten$or self) -> Tensor",
        "relu(Tensor self) ->", "f(int[x] a) -> Tensor", "f(Tensor a, *, *, int b) -> Tensor"}) {
    std::string msg;
    EXPECT_EQ(code_of([&] { parse_schema(bad); }, &msg), ErrorCode::kInvalidArgument) << bad;
    EXPECT_NE(msg.find("schema"), std::string::npos) << msg;
  }
}

OpCall make_call(bool infer = false) {
  std::map<std::string, OpArg, std::less<>> args;
  args["x"] = OpArg::of(Tensor::zeros({2, 3}, DType::kFloat32));
  args["k"] = OpArg::of_int(4);
  args["f"] = OpArg::of_float(0.5);
  args["flag"] = OpArg::of_bool(true);
  args["sizes"] = OpArg::of_ints({1, 2});
  args["none"] = OpArg::none();
  args["list"] = OpArg::of_list({Tensor::zeros({1}, DType::kInt64)});
  OpArg d;
  d.kind = OpArg::Kind::kDType;
  d.dtype = DType::kFloat16;
  args["dt"] = d;
  args["dti"] = OpArg::of_int(6);
  return OpCall("conv_1", "torch.ops.aten.foo.default", std::move(args), infer);
}

TEST(OpCall, Accessors) {
  OpCall c = make_call();
  EXPECT_TRUE(c.has("x"));
  EXPECT_FALSE(c.has("none"));
  EXPECT_FALSE(c.has("absent"));
  EXPECT_EQ(c.tensor("x").sizes(), (Shape{2, 3}));
  EXPECT_EQ(c.spec("x"), (TensorSpec{DType::kFloat32, {2, 3}}));
  EXPECT_FALSE(c.opt_tensor("none").has_value());
  EXPECT_FALSE(c.opt_spec("absent").has_value());
  EXPECT_EQ(c.int_arg("k"), 4);
  EXPECT_EQ(c.opt_int("k"), 4);
  EXPECT_FALSE(c.opt_int("none").has_value());
  EXPECT_EQ(c.float_arg("f"), 0.5);
  EXPECT_EQ(c.float_arg("k"), 4.0);
  EXPECT_TRUE(c.bool_arg("flag"));
  EXPECT_EQ(c.int_list("sizes"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(c.int_list("k"), (std::vector<int64_t>{4}));
  EXPECT_FALSE(c.opt_int_list("none").has_value());
  EXPECT_EQ(c.tensor_list("list").size(), 1u);
  EXPECT_EQ(c.spec_list("list")[0].dtype, DType::kInt64);
  EXPECT_EQ(c.opt_dtype("dt"), DType::kFloat16);
  EXPECT_EQ(c.opt_dtype("dti"), DType::kFloat16);
  EXPECT_FALSE(c.opt_dtype("none").has_value());
  bool integral = false;
  EXPECT_EQ(c.scalar("k", &integral), 4.0);
  EXPECT_TRUE(integral);
  EXPECT_EQ(c.scalar("f", &integral), 0.5);
  EXPECT_FALSE(integral);
}

TEST(OpCall, ErrorsNameNodeArgumentExpectedAndFound) {
  OpCall c = make_call();
  std::string msg;
  EXPECT_EQ(code_of([&] { c.int_arg("x"); }, &msg), ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("conv_1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'x'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected int, found Tensor"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { c.tensor("k"); }, &msg), ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("expected Tensor, found int"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { c.arg("absent"); }, &msg), ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("'absent'"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { c.bool_arg("k"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { c.string_arg("k"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { c.opt_tensor("k"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { c.fail_arg("k", "bad"); }, &msg), ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("bad"), std::string::npos);

  OpCall infer_call("n", "t", {{"x", OpArg::of_spec({DType::kFloat32, {-1, 3}})}}, true);
  EXPECT_EQ(infer_call.spec("x").sizes, (Shape{-1, 3}));
  EXPECT_EQ(code_of([&] { infer_call.tensor("x"); }), ErrorCode::kInternal);
}

TEST(Registry, AddFindAndDuplicates) {
  Registry r;
  auto infer = [](const OpCall& c) { return std::vector<TensorSpec>{c.spec("self")}; };
  auto run = [](const OpCall& c) { return std::vector<OpArg>{OpArg::of(c.tensor("self"))}; };
  r.add("torch.ops.aten.my_relu.default", "my_relu(Tensor self) -> Tensor", infer, run);
  r.add("torch.ops.aten.my_softmax.int", "my_softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor",
        infer, run);
  r.add("torch.ops.myns.op.default", "op(Tensor self) -> Tensor", infer, run);
  const OpDef* d = r.find("torch.ops.aten.my_softmax.int");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->schema.name, "aten::my_softmax");
  EXPECT_EQ(d->schema.overload, "int");
  EXPECT_EQ(r.find("torch.ops.myns.op.default")->schema.name, "myns::op");
  EXPECT_EQ(r.find("torch.ops.aten.nope.default"), nullptr);
  EXPECT_EQ(r.targets().size(), 3u);
  EXPECT_EQ(code_of([&] { r.add("torch.ops.aten.my_relu.default", "my_relu(Tensor self) -> Tensor", infer, run); }),
            ErrorCode::kInternal);
  // Target and schema disagree.
  EXPECT_EQ(code_of([&] { r.add("torch.ops.aten.other.default", "my_gelu(Tensor self) -> Tensor", infer, run); }),
            ErrorCode::kInternal);
}

}  // namespace
}  // namespace ember::ops
