#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "ember/error.h"
#include "ember/program.h"
#include "program/fixture_zip.h"

namespace ember::ir {
namespace {

using nlohmann::json;  // unordered: compares objects regardless of key order

// "resnet18": a shared fixture; "tests/data/constants": an archive of the project itself.
std::string fixture_json(const std::string& name) {
  std::string path = name.find('/') == std::string::npos ? std::string(EMBER_FIXTURES_DIR) + "/" + name + ".pt2"
                                                         : std::string(EMBER_SOURCE_DIR) + "/" + name + ".pt2";
  auto text = testing::read_stored_entry(path, "/models/model.json");
  EXPECT_TRUE(text.has_value()) << name;
  return text.value_or("");
}

// Runs `fn`, expects an ember::Error with `code` whose message contains every `parts`.
template <typename Fn>
void expect_error(Fn&& fn, ErrorCode code, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  missing: " << p;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-Ember exception escaped: " << e.what();
  }
}

const char* kMeta = R"({"dtype": 7, "sizes": [{"as_int": 2}, {"as_int": 3}], "requires_grad": false,
  "device": {"type": "cpu", "index": null}, "strides": [{"as_int": 3}, {"as_int": 1}],
  "storage_offset": {"as_int": 0}, "layout": 7})";

// A small valid program: y = relu(x).
json base_program() {
  json meta = json::parse(kMeta);
  json p = json::parse(R"({
    "graph_module": {
      "graph": {
        "inputs": [{"as_tensor": {"name": "x"}}],
        "outputs": [{"as_tensor": {"name": "y"}}],
        "nodes": [{"target": "torch.ops.aten.relu.default",
                   "inputs": [{"name": "self", "arg": {"as_tensor": {"name": "x"}}, "kind": 1}],
                   "outputs": [{"as_tensor": {"name": "y"}}],
                   "metadata": {"stack_trace": "t", "nn_module_stack": "m"},
                   "is_hop_single_tensor_return": null, "name": "relu"}],
        "tensor_values": {},
        "sym_int_values": {}, "sym_bool_values": {}, "is_single_tensor_return": false,
        "custom_obj_values": {}, "sym_float_values": {}},
      "signature": {"input_specs": [{"user_input": {"arg": {"as_tensor": {"name": "x"}}}}],
                    "output_specs": [{"user_output": {"arg": {"as_tensor": {"name": "y"}}}}]},
      "module_call_graph": [{"fqn": "", "signature": null}],
      "metadata": {}, "treespec_namedtuple_fields": {}},
    "opset_version": {"aten": 10}, "range_constraints": {},
    "schema_version": {"major": 8, "minor": 17}, "verifiers": ["TRAINING"],
    "torch_version": "2.11.0+cpu", "guards_code": []})");
  p["graph_module"]["graph"]["tensor_values"]["x"] = meta;
  p["graph_module"]["graph"]["tensor_values"]["y"] = meta;
  return p;
}

json& first_node(json& p) { return p["graph_module"]["graph"]["nodes"][0]; }

ExportedProgram parse(const json& j) { return parse_exported_program(j.dump(), "model.json"); }

// Parses, checks that writing gives back exactly `j` (up to key order) and that re-reading
// the written text gives an equal program.
ExportedProgram round_trip(const json& j) {
  ExportedProgram p = parse(j);
  std::string text = serialize_exported_program(p);
  EXPECT_EQ(json::parse(text), j);
  EXPECT_EQ(parse_exported_program(text, "again.json"), p);
  return p;
}

// ------------------------------------------------------------------ fixtures

class FixtureTest : public ::testing::TestWithParam<const char*> {};

TEST_P(FixtureTest, ParsesValidatesAndRoundTrips) {
  std::string text = fixture_json(GetParam());
  ASSERT_FALSE(text.empty());
  ExportedProgram p = parse_exported_program(text, std::string(GetParam()) + ".pt2:model.json");
  EXPECT_NO_THROW(validate(p, GetParam()));
  EXPECT_EQ(p.schema_version.major, 8);
  EXPECT_EQ(p.torch_version.substr(0, 4), "2.11");
  // What Ember writes is PyTorch's JSON again, key order aside.
  std::string written = serialize_exported_program(p);
  EXPECT_EQ(json::parse(written), json::parse(text));
  EXPECT_EQ(parse_exported_program(written, "rewritten"), p);
  // The in/out specs of the root signature parse and re-serialize to PyTorch's exact text.
  const ModuleCallSignature* root = p.root_call_signature();
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(serialize_treespec(parse_treespec(root->in_spec, "in_spec")), root->in_spec);
  EXPECT_EQ(serialize_treespec(parse_treespec(root->out_spec, "out_spec")), root->out_spec);
  // Every graph output is a user output leaf of the out_spec.
  EXPECT_EQ(parse_treespec(root->out_spec, "out_spec").num_leaves(), p.graph_module.graph.outputs.size());
}

INSTANTIATE_TEST_SUITE_P(Models, FixtureTest,
                         ::testing::Values("mlp_pytree", "cnn_small", "cnn_small_core_aten", "transformer_layer",
                                           "mlp_dynamic_batch", "resnet18", "execute_engine_reference",
                                           "tests/data/buffer_mutation", "tests/data/constants",
                                           "tests/data/namedtuple_kwargs", "tests/data/tied_weights",
                                           "examples/models/tiny_resnet"));

TEST(Fixtures, NamedTupleOutputAndNoneLeaf) {
  ExportedProgram p = parse_exported_program(fixture_json("tests/data/namedtuple_kwargs"), "nt");
  EXPECT_EQ(p.graph_module.treespec_namedtuple_fields.at("ember_test.Pair").field_names,
            (std::vector<std::string>{"first", "second"}));
  TreeSpec out = parse_treespec(p.root_call_signature()->out_spec, "out_spec");
  EXPECT_EQ(treespec_str(out), "(Pair(*, *), [*])");
  EXPECT_EQ(out.children[0].kind, TreeSpec::Kind::kNamedTuple);
  EXPECT_EQ(out.children[0].context, "ember_test.Pair");
  TreeSpec in = parse_treespec(p.root_call_signature()->in_spec, "in_spec");
  EXPECT_EQ(treespec_str(in), "((*,), {'bias': *})");
  // The second user output is a None constant.
  EXPECT_EQ(p.graph_module.signature.output_specs[1].arg.kind, ArgKind::kNone);
}

TEST(Fixtures, ExecuteEngineReferenceShape) {
  ExportedProgram p = parse_exported_program(fixture_json("execute_engine_reference"), "ee");
  const Graph& g = p.graph_module.graph;
  ASSERT_EQ(g.nodes.size(), 3u);
  const Node& ee = g.nodes[1];
  EXPECT_EQ(ee.target, "torch.ops.ember.execute_engine.default");
  ASSERT_NE(ee.input("inputs"), nullptr);
  EXPECT_EQ(*ee.input("inputs"), Argument::tensors({"linear"}));
  EXPECT_EQ(*ee.input("engine"), Argument::tensor("c_engine0"));
  EXPECT_EQ(ee.input("nope"), nullptr);
  ASSERT_EQ(ee.outputs.size(), 1u);
  EXPECT_EQ(ee.outputs[0], Argument::tensors({"getitem", "getitem_1"}));
  EXPECT_EQ(ee.name, "execute_engine");
  ASSERT_EQ(ee.metadata.size(), 2u);
  EXPECT_EQ(ee.metadata[0].first, "nn_module_stack");  // file order kept
  const auto& specs = p.graph_module.signature.input_specs;
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_EQ(specs[0].kind, InputKind::kParameter);
  EXPECT_EQ(specs[0].target, "lin.weight");
  EXPECT_EQ(specs[2].kind, InputKind::kTensorConstant);
  EXPECT_EQ(specs[2].arg, Argument::tensor("c_engine0"));
  EXPECT_EQ(specs[2].target, "engine0");
  EXPECT_EQ(specs[3].kind, InputKind::kUserInput);
  const TensorMeta& engine = g.tensor_values.at("c_engine0");
  EXPECT_EQ(engine.dtype, DType::kUInt8);
  EXPECT_EQ(concrete_sizes(engine), Shape({64}));
  EXPECT_EQ(g.tensor_values.at("p_lin_weight").requires_grad, true);
  EXPECT_EQ(p.opset_version.at("aten"), 10);
  EXPECT_EQ(p.verifiers, std::vector<std::string>{"TRAINING"});
  ASSERT_EQ(p.graph_module.module_call_graph.size(), 2u);
  EXPECT_FALSE(p.graph_module.module_call_graph[1].signature.has_value());
  EXPECT_EQ(p.root_call_signature()->forward_arg_names, std::vector<std::string>{"x"});
}

TEST(Fixtures, DynamicBatchSymbols) {
  ExportedProgram p = parse_exported_program(fixture_json("mlp_dynamic_batch"), "dyn");
  const TensorMeta& x = p.graph_module.graph.tensor_values.at("x");
  ASSERT_EQ(x.sizes.size(), 2u);
  ASSERT_TRUE(x.sizes[0].is_expr);
  EXPECT_EQ(symbol_name(x.sizes[0].expr), "s77");
  ASSERT_TRUE(x.sizes[0].expr.hint.has_value());
  EXPECT_EQ(x.sizes[0].expr.hint->i, 4);
  EXPECT_FALSE(concrete_sizes(x).has_value());
  EXPECT_EQ(x.sizes[1].value, 32);
  const RangeConstraint& r = p.range_constraints.at("s77");
  EXPECT_EQ(r.min_val, 1);
  EXPECT_EQ(r.max_val, 64);
}

TEST(Fixtures, BuffersArePersistent) {
  ExportedProgram p = parse_exported_program(fixture_json("cnn_small"), "cnn");
  int buffers = 0;
  for (const auto& s : p.graph_module.signature.input_specs) {
    if (s.kind != InputKind::kBuffer) continue;
    ++buffers;
    EXPECT_EQ(s.persistent, true);
  }
  EXPECT_GT(buffers, 0);
}

// ------------------------------------------------------------------ arguments

TEST(Arguments, EveryKindRoundTrips) {
  // Hand-written Argument JSON for every kind, in PyTorch's spelling.
  const char* cases[] = {
      R"({"as_none": true})",
      R"({"as_tensor": {"name": "x"}})",
      R"({"as_tensors": [{"name": "a"}, {"name": "b"}]})",
      R"({"as_int": -9223372036854775808})",
      R"({"as_ints": [1, -2, 9223372036854775807]})",
      R"({"as_float": 0.5})",
      R"({"as_floats": [1.5, -2.25, "Infinity", "-Infinity"]})",
      R"({"as_string": "mean"})",
      R"({"as_strings": ["a", "b"]})",
      R"({"as_sym_int": {"as_name": "sym_size_int"}})",
      R"({"as_sym_int": {"as_int": 7}})",
      R"({"as_sym_ints": [{"as_name": "s0"}, {"as_int": 3}]})",
      R"({"as_scalar_type": 13})",
      R"({"as_memory_format": 2})",
      R"({"as_layout": 7})",
      R"({"as_device": {"type": "cuda", "index": 1}})",
      R"({"as_device": {"type": "cpu", "index": null}})",
      R"({"as_bool": true})",
      R"({"as_bools": [true, false]})",
      R"({"as_sym_bool": {"as_name": "eq"}})",
      R"({"as_sym_bool": {"as_bool": false}})",
      R"({"as_sym_bools": [{"as_name": "eq"}, {"as_bool": true}]})",
      R"({"as_optional_tensors": [{"as_tensor": {"name": "a"}}, {"as_none": true}]})",
      R"({"as_custom_obj": {"name": "obj0", "class_fqn": "__torch__.torch.classes.foo.Bar"}})",
      R"({"as_operator": "torch.ops.aten.add.Tensor"})",
      R"({"as_sym_float": {"as_name": "f0"}})",
      R"({"as_sym_float": {"as_float": 2.5}})",
      R"({"as_sym_floats": [{"as_name": "f0"}, {"as_float": 1.0}]})",
      R"({"as_optional_tensor": {"as_tensor": {"name": "w"}}})",
      R"({"as_optional_tensor": {"as_none": true}})",
      R"({"as_complex": {"real": 1.0, "imag": -2.0}})",
      R"({"as_nested_tensors": [[{"name": "a"}], [{"name": "b"}, {"name": "c"}]]})",
      R"({"as_int_lists": [[1, 2], [], [3]]})",
      R"({"as_string_to_argument": {"k": {"as_int": 1}, "t": {"as_tensor": {"name": "x"}}}})",
  };
  for (const char* text : cases) {
    SCOPED_TRACE(text);
    Json j = Json::parse(text);
    Argument a = parse_argument(j, "arg");
    EXPECT_EQ(argument_to_json(a), j);
    EXPECT_EQ(parse_argument(argument_to_json(a), "again"), a);
  }
}

TEST(Arguments, FieldsOfEachKind) {
  auto arg = [](const char* text) { return parse_argument(Json::parse(text), "arg"); };
  EXPECT_EQ(arg(R"({"as_none": true})").kind, ArgKind::kNone);
  EXPECT_EQ(arg(R"({"as_tensors": [{"name": "a"}, {"name": "b"}]})").names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(arg(R"({"as_ints": [1, -2]})").ints, (std::vector<int64_t>{1, -2}));
  EXPECT_EQ(arg(R"({"as_int": 3})").i, 3);
  EXPECT_DOUBLE_EQ(arg(R"({"as_float": 3})").f, 3.0);  // Python writes 3.0 but an integer is a valid float
  Argument sym = arg(R"({"as_sym_int": {"as_name": "s0"}})");
  EXPECT_TRUE(sym.sym.is_name);
  EXPECT_EQ(sym.sym.name, "s0");
  Argument dev = arg(R"({"as_device": {"type": "cuda", "index": 1}})");
  EXPECT_EQ(dev.device.type, DeviceType::kCUDA);
  EXPECT_EQ(dev.device.index, 1);
  Argument opt = arg(R"({"as_optional_tensors": [{"as_tensor": {"name": "a"}}, {"as_none": true}]})");
  ASSERT_EQ(opt.opt_tensors.size(), 2u);
  EXPECT_TRUE(opt.opt_tensors[0].present);
  EXPECT_EQ(opt.opt_tensors[0].name, "a");
  EXPECT_FALSE(opt.opt_tensors[1].present);
  Argument cx = arg(R"({"as_complex": {"real": 1.0, "imag": -2.0}})");
  EXPECT_DOUBLE_EQ(cx.f, 1.0);
  EXPECT_DOUBLE_EQ(cx.f_imag, -2.0);
  Argument m = arg(R"({"as_string_to_argument": {"z": {"as_int": 1}, "a": {"as_bool": true}}})");
  ASSERT_EQ(m.string_to_arg.size(), 2u);
  EXPECT_EQ(m.string_to_arg[0].first, "z");  // file order
  EXPECT_EQ(m.string_to_arg[1].second.kind, ArgKind::kBool);
  EXPECT_EQ(arg(R"({"as_scalar_type": 6})").i, static_cast<int64_t>(DType::kFloat16));
  // Old writers spelled None as an empty list.
  EXPECT_EQ(arg(R"({"as_none": []})").kind, ArgKind::kNone);
}

TEST(Arguments, NonFiniteFloats) {
  Argument a = parse_argument(Json::parse(R"({"as_floats": ["NaN", "Infinity", "-Infinity", 1.0]})"), "arg");
  ASSERT_EQ(a.floats.size(), 4u);
  EXPECT_TRUE(std::isnan(a.floats[0]));
  EXPECT_EQ(a.floats[1], std::numeric_limits<double>::infinity());
  EXPECT_EQ(a.floats[2], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(argument_to_json(a), Json::parse(R"({"as_floats": ["NaN", "Infinity", "-Infinity", 1.0]})"));
  EXPECT_EQ(parse_argument(argument_to_json(a), "again"), a);  // NaN compares equal to NaN here
  Argument f = parse_argument(Json::parse(R"({"as_float": "-Infinity"})"), "arg");
  EXPECT_EQ(f.f, -std::numeric_limits<double>::infinity());
}

TEST(Arguments, GraphArgument) {
  json p = base_program();
  json sub = p["graph_module"]["graph"];
  first_node(p)["inputs"].push_back({{"name", "true_fn"}, {"arg", {{"as_graph", {{"name", "true_graph_0"}, {"graph", sub}}}}}, {"kind", 1}});
  ExportedProgram prog = round_trip(p);
  const Argument* g = prog.graph_module.graph.nodes[0].input("true_fn");
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(g->kind, ArgKind::kGraph);
  EXPECT_EQ(g->graph.name, "true_graph_0");
  ASSERT_TRUE(g->graph.graph);
  EXPECT_EQ(g->graph.graph->nodes.size(), 1u);
  EXPECT_NO_THROW(validate(prog, "m"));
}

// ------------------------------------------------------------------ program structure

TEST(Program, BaseProgramRoundTrips) {
  ExportedProgram p = round_trip(base_program());
  EXPECT_NO_THROW(validate(p, "m"));
  EXPECT_EQ(p.graph_module.graph.nodes[0].metadata[0].first, "nn_module_stack");  // written sorted here
  EXPECT_EQ(p.graph_module.graph.nodes[0].input("self")->name, "x");
  EXPECT_EQ(p.graph_module.graph.nodes[0].inputs[0].kind, 1);
}

TEST(Program, EveryInputSpecKind) {
  json p = base_program();
  json& g = p["graph_module"]["graph"];
  json meta = json::parse(kMeta);
  json& specs = p["graph_module"]["signature"]["input_specs"];
  json inputs = json::array();
  json new_specs = json::array();
  auto add = [&](const std::string& name, json graph_input, json spec) {
    inputs.push_back(graph_input);
    new_specs.push_back(spec);
    if (graph_input.contains("as_tensor")) g["tensor_values"][name] = meta;
  };
  add("tok", {{"as_tensor", {{"name", "tok"}}}}, {{"token", {{"arg", {{"name", "tok"}}}}}});
  add("p_w", {{"as_tensor", {{"name", "p_w"}}}}, {{"parameter", {{"arg", {{"name", "p_w"}}}, {"parameter_name", "w"}}}});
  add("b_m", {{"as_tensor", {{"name", "b_m"}}}},
      {{"buffer", {{"arg", {{"name", "b_m"}}}, {"buffer_name", "m"}, {"persistent", false}}}});
  add("c_k", {{"as_tensor", {{"name", "c_k"}}}},
      {{"tensor_constant", {{"arg", {{"name", "c_k"}}}, {"tensor_constant_name", "k"}}}});
  add("obj", {{"as_custom_obj", {{"name", "obj"}, {"class_fqn", "__torch__.Foo"}}}},
      {{"custom_obj", {{"arg", {{"name", "obj"}, {"class_fqn", "__torch__.Foo"}}}, {"custom_obj_name", "o"}}}});
  add("x", {{"as_tensor", {{"name", "x"}}}}, specs[0]);
  add("", {{"as_int", 3}}, {{"constant_input", {{"name", "n"}, {"value", {{"as_int", 3}}}}}});
  add("", {{"as_none", true}}, {{"constant_input", {{"name", "opt"}, {"value", {{"as_none", true}}}}}});
  add("", {{"as_string", "s"}}, {{"constant_input", {{"name", "mode"}, {"value", {{"as_string", "s"}}}}}});
  g["inputs"] = inputs;
  specs = new_specs;
  g["custom_obj_values"]["obj"] = {{"name", "obj"}, {"class_fqn", "__torch__.Foo"}};

  ExportedProgram prog = round_trip(p);
  EXPECT_NO_THROW(validate(prog, "m"));
  const auto& s = prog.graph_module.signature.input_specs;
  ASSERT_EQ(s.size(), 9u);
  EXPECT_EQ(s[0].kind, InputKind::kToken);
  EXPECT_EQ(s[0].arg.name, "tok");
  EXPECT_EQ(s[1].kind, InputKind::kParameter);
  EXPECT_EQ(s[1].target, "w");
  EXPECT_EQ(s[2].kind, InputKind::kBuffer);
  EXPECT_EQ(s[2].persistent, false);
  EXPECT_EQ(s[3].kind, InputKind::kTensorConstant);
  EXPECT_EQ(s[4].kind, InputKind::kCustomObj);
  EXPECT_EQ(s[4].arg.class_fqn, "__torch__.Foo");
  EXPECT_EQ(s[4].target, "o");
  EXPECT_EQ(s[5].kind, InputKind::kUserInput);
  EXPECT_EQ(s[6].kind, InputKind::kConstantInput);
  EXPECT_EQ(s[6].target, "n");
  EXPECT_EQ(s[6].arg.i, 3);
  EXPECT_EQ(s[7].arg.kind, ArgKind::kNone);
  EXPECT_EQ(s[8].arg.s, "s");
  EXPECT_EQ(prog.graph_module.graph.custom_obj_values.at("obj").class_fqn, "__torch__.Foo");
}

TEST(Program, EveryOutputSpecKind) {
  json p = base_program();
  json& g = p["graph_module"]["graph"];
  json meta = json::parse(kMeta);
  const char* kinds[][2] = {{"user_output", nullptr},
                            {"loss_output", nullptr},
                            {"buffer_mutation", "buffer_name"},
                            {"gradient_to_parameter", "parameter_name"},
                            {"gradient_to_user_input", "user_input_name"},
                            {"user_input_mutation", "user_input_name"},
                            {"token", nullptr},
                            {"parameter_mutation", "parameter_name"}};
  json outputs = json::array();
  json specs = json::array();
  json& node_outputs = first_node(p)["outputs"];
  node_outputs = json::array();
  for (auto& k : kinds) {
    std::string name = std::string("o_") + k[0];
    g["tensor_values"][name] = meta;
    node_outputs.push_back({{"as_tensor", {{"name", name}}}});
    outputs.push_back({{"as_tensor", {{"name", name}}}});
    json payload;
    if (std::string(k[0]) == "user_output") {
      payload["arg"] = {{"as_tensor", {{"name", name}}}};
    } else {
      payload["arg"] = {{"name", name}};
    }
    if (k[1]) payload[k[1]] = "target_of_" + std::string(k[0]);
    specs.push_back({{k[0], payload}});
  }
  g.erase("tensor_values");
  g["tensor_values"]["x"] = meta;
  for (auto& k : kinds) g["tensor_values"][std::string("o_") + k[0]] = meta;
  g["outputs"] = outputs;
  p["graph_module"]["signature"]["output_specs"] = specs;

  ExportedProgram prog = round_trip(p);
  EXPECT_NO_THROW(validate(prog, "m"));
  const auto& s = prog.graph_module.signature.output_specs;
  ASSERT_EQ(s.size(), 8u);
  EXPECT_EQ(s[0].kind, OutputKind::kUserOutput);
  EXPECT_EQ(s[1].kind, OutputKind::kLossOutput);
  EXPECT_EQ(s[2].kind, OutputKind::kBufferMutation);
  EXPECT_EQ(s[2].target, "target_of_buffer_mutation");
  EXPECT_EQ(s[3].kind, OutputKind::kGradientToParameter);
  EXPECT_EQ(s[4].kind, OutputKind::kGradientToUserInput);
  EXPECT_EQ(s[5].kind, OutputKind::kUserInputMutation);
  EXPECT_EQ(s[6].kind, OutputKind::kToken);
  EXPECT_EQ(s[7].kind, OutputKind::kParameterMutation);
  EXPECT_EQ(s[7].arg.name, "o_parameter_mutation");
  for (size_t i = 0; i < s.size(); ++i) EXPECT_STREQ(output_kind_key(s[i].kind), kinds[i][0]);
}

TEST(Program, SymbolicValuesAndRanges) {
  json p = base_program();
  json& g = p["graph_module"]["graph"];
  g["tensor_values"]["x"]["sizes"][0] = {{"as_expr", {{"expr_str", "Symbol('s0', positive=True, integer=True)"}, {"hint", {{"as_int", 2}}}}}};
  g["tensor_values"]["x"]["strides"][0] = {{"as_expr", {{"expr_str", "3*s0"}, {"hint", nullptr}}}};
  g["sym_int_values"]["sym_size_int"] = {{"as_expr", {{"expr_str", "s0"}, {"hint", {{"as_int", 2}}}}}};
  g["sym_int_values"]["c"] = {{"as_int", 5}};
  g["sym_bool_values"]["eq"] = {{"as_expr", {{"expr_str", "Eq(s0, 2)"}, {"hint", {{"as_bool", true}}}}}};
  g["sym_float_values"]["f"] = {{"as_expr", {{"expr_str", "s0/2"}, {"hint", {{"as_float", 1.0}}}}}};
  g["sym_float_values"]["inf"] = {{"as_float", "Infinity"}};
  p["range_constraints"]["s0"] = {{"min_val", 2}, {"max_val", nullptr}};
  p["range_constraints"]["s1"] = {{"min_val", nullptr}, {"max_val", 9223372036854775807LL}};
  ExportedProgram prog = round_trip(p);
  const Graph& pg = prog.graph_module.graph;
  EXPECT_EQ(symbol_name(pg.tensor_values.at("x").sizes[0].expr), "s0");
  EXPECT_EQ(symbol_name(pg.tensor_values.at("x").strides[0].expr), "");  // not a plain symbol
  EXPECT_FALSE(pg.tensor_values.at("x").strides[0].expr.hint.has_value());
  EXPECT_EQ(pg.sym_int_values.at("c").value, 5);
  EXPECT_EQ(pg.sym_bool_values.at("eq").expr.hint->kind, SymExprHint::Kind::kBool);
  EXPECT_EQ(pg.sym_float_values.at("f").expr.hint->f, 1.0);
  EXPECT_EQ(pg.sym_float_values.at("inf").value, std::numeric_limits<double>::infinity());
  EXPECT_EQ(prog.range_constraints.at("s0").min_val, 2);
  EXPECT_FALSE(prog.range_constraints.at("s0").max_val.has_value());
  EXPECT_EQ(prog.range_constraints.at("s1").max_val, std::numeric_limits<int64_t>::max());
}

TEST(Program, UnboundedRangesBeyondInt64) {
  json p = base_program();
  std::string text = p.dump();
  // Bounds PyTorch would never write as finite integers: all read as unbounded.
  text.replace(text.find("\"range_constraints\": {}") != std::string::npos ? text.find("\"range_constraints\": {}")
                                                                               : text.find("\"range_constraints\":{}"),
               std::string("\"range_constraints\":{}").size(),
               "\"range_constraints\":{\"s0\":{\"min_val\":-99999999999999999999999,\"max_val\":"
               "18446744073709551615},\"s1\":{\"min_val\":0,\"max_val\":\"Infinity\"},"
               "\"s2\":{\"min_val\":0,\"max_val\":1e300}}");
  ExportedProgram prog = parse_exported_program(text, "m");
  EXPECT_FALSE(prog.range_constraints.at("s0").min_val.has_value());
  EXPECT_FALSE(prog.range_constraints.at("s0").max_val.has_value());
  EXPECT_FALSE(prog.range_constraints.at("s1").max_val.has_value());
  EXPECT_FALSE(prog.range_constraints.at("s2").max_val.has_value());
  EXPECT_EQ(prog.range_constraints.at("s1").min_val, 0);
}

TEST(Program, UnknownFieldsPreservedAtEveryLevel) {
  json p = base_program();
  p["future_top"] = {{"a", 1}};
  p["graph_module"]["future_gm"] = "x";
  p["graph_module"]["graph"]["future_graph"] = json::array({1, 2});
  first_node(p)["future_node"] = true;
  first_node(p)["inputs"][0]["future_named_arg"] = 1.5;
  first_node(p)["inputs"][0]["arg"]["as_tensor"]["future_tensor_arg"] = "t";
  p["graph_module"]["graph"]["tensor_values"]["x"]["future_meta"] = nullptr;
  p["graph_module"]["signature"]["future_sig"] = 0;
  p["graph_module"]["signature"]["input_specs"][0]["user_input"]["future_spec"] = 2;
  p["graph_module"]["signature"]["output_specs"][0]["user_output"]["future_out"] = 3;
  p["graph_module"]["module_call_graph"][0]["future_entry"] = 4;
  p["range_constraints"]["s0"] = {{"min_val", 1}, {"max_val", 4}, {"future_range", 5}};
  p["schema_version"]["minor"] = 99;  // newer minor: accepted
  ExportedProgram prog = round_trip(p);
  EXPECT_EQ(prog.unknown["future_top"]["a"], 1);
  EXPECT_EQ(prog.graph_module.unknown["future_gm"], "x");
  EXPECT_EQ(prog.graph_module.graph.unknown["future_graph"].size(), 2u);
  EXPECT_EQ(prog.graph_module.graph.nodes[0].unknown["future_node"], true);
  EXPECT_EQ(prog.graph_module.graph.nodes[0].inputs[0].unknown["future_named_arg"], 1.5);
  EXPECT_EQ(prog.graph_module.graph.nodes[0].inputs[0].arg.unknown["future_tensor_arg"], "t");
  EXPECT_TRUE(prog.graph_module.graph.tensor_values.at("x").unknown.contains("future_meta"));
  EXPECT_EQ(prog.graph_module.signature.input_specs[0].unknown["future_spec"], 2);
  EXPECT_EQ(prog.range_constraints.at("s0").unknown["future_range"], 5);
  EXPECT_EQ(prog.schema_version.minor, 99);
}

TEST(Program, OptionalFieldsMayBeAbsent) {
  json p = base_program();
  first_node(p).erase("name");
  first_node(p).erase("is_hop_single_tensor_return");
  first_node(p)["inputs"][0].erase("kind");
  p["graph_module"]["graph"].erase("custom_obj_values");
  p["graph_module"]["graph"].erase("sym_float_values");
  p["graph_module"]["graph"].erase("is_single_tensor_return");
  p["graph_module"].erase("metadata");
  p["graph_module"].erase("treespec_namedtuple_fields");
  p.erase("verifiers");
  p.erase("torch_version");
  p.erase("guards_code");
  ExportedProgram prog = parse(p);
  EXPECT_FALSE(prog.graph_module.graph.nodes[0].name.has_value());
  EXPECT_FALSE(prog.graph_module.graph.nodes[0].inputs[0].kind.has_value());
  EXPECT_EQ(prog.torch_version, "<=2.4");
  EXPECT_EQ(parse_exported_program(serialize_exported_program(prog), "again"), prog);
}

TEST(Program, NamedTupleFields) {
  json p = base_program();
  p["graph_module"]["treespec_namedtuple_fields"]["__main__.Point"] = {{"field_names", {"x", "y"}}};
  ExportedProgram prog = round_trip(p);
  EXPECT_EQ(prog.graph_module.treespec_namedtuple_fields.at("__main__.Point").field_names,
            (std::vector<std::string>{"x", "y"}));
}

// ------------------------------------------------------------------ malformed input

TEST(Errors, MalformedJson) {
  std::string text = base_program().dump();
  expect_error([&] { parse_exported_program(text.substr(0, text.size() / 2), "m.json"); }, ErrorCode::kCorrupt,
               {"m.json", "malformed JSON", "byte"});
  expect_error([&] { parse_exported_program("", "m.json"); }, ErrorCode::kCorrupt, {"m.json"});
  expect_error([&] { parse_exported_program("[1, 2]", "m.json"); }, ErrorCode::kCorrupt, {"expected an object"});
  expect_error([&] { parse_exported_program(R"({"a": 1, "a": 2})", "m.json"); }, ErrorCode::kCorrupt,
               {"duplicate key 'a'"});
  expect_error([&] { parse_exported_program(std::string(100000, '['), "m.json"); }, ErrorCode::kLimitExceeded,
               {"nesting"});
}

// Objects small and large (the reader switches from a direct key search to a hash set, and
// grows the key table itself): keys keep their order, nested values survive the growth, and
// a duplicate is refused wherever it appears.
TEST(Errors, DuplicateKeysInObjectsOfEverySize) {
  for (int n : {1, 15, 16, 17, 40, 300}) {
    SCOPED_TRACE(n);
    std::string text = "{";
    for (int i = 0; i < n; ++i) text += cat(i ? ", " : "", "\"k", i, "\": {\"v\": [", i, ", {\"w\": \"", i, "\"}]}");
    ember::ir::Json parsed = ember::ir::parse_json(text + "}", "t.json");
    ASSERT_EQ(parsed.size(), static_cast<size_t>(n));
    int i = 0;
    for (const auto& [key, value] : parsed.items()) {
      EXPECT_EQ(key, cat("k", i));
      EXPECT_EQ(value["v"][0], i);
      EXPECT_EQ(value["v"][1]["w"], std::to_string(i));
      ++i;
    }
    for (int dup : {0, n - 1})
      expect_error([&] { ember::ir::parse_json(text + cat(", \"k", dup, "\": 1}"), "t.json"); }, ErrorCode::kCorrupt,
                   {"t.json", cat("duplicate key 'k", dup, "'")});
  }
}

TEST(Errors, SchemaVersion) {
  json p = base_program();
  p["schema_version"] = {{"major", 9}, {"minor", 0}};
  expect_error([&] { parse(p); }, ErrorCode::kVersionMismatch, {"expected schema 8.x, found 9.0"});
  p.erase("schema_version");
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"missing field 'schema_version'"});
}

TEST(Errors, WrongTypesNameThePath) {
  json p = base_program();
  first_node(p)["inputs"][0]["arg"] = {{"as_ints", "nope"}};
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt,
               {"model.json: graph_module.graph.nodes[0].inputs[0].arg.as_ints: expected an integer list for as_ints, "
                "found string"});
  p = base_program();
  first_node(p)["inputs"][0]["arg"] = {{"as_ints", {1, "2"}}};
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"nodes[0].inputs[0].arg.as_ints[1]: expected an integer"});
  p = base_program();
  first_node(p)["inputs"][0]["arg"] = {{"as_int", 1.5}};
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"as_int: expected an integer for as_int, found float"});
  p = base_program();
  first_node(p)["inputs"][0]["arg"] = {{"as_int", 18446744073709551615ULL}};
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"does not fit in 64 bits"});
  p = base_program();
  first_node(p)["target"] = 3;
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"nodes[0].target: expected a string, found integer"});
  p = base_program();
  first_node(p)["metadata"]["k"] = 1;
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"nodes[0].metadata.k: expected a string"});
  p = base_program();
  p["graph_module"]["graph"]["tensor_values"]["x"]["requires_grad"] = "no";
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"tensor_values.x.requires_grad: expected a boolean"});
  p = base_program();
  p["graph_module"]["graph"]["nodes"] = json::object();
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"graph_module.graph.nodes: expected an array, found object"});
  p = base_program();
  first_node(p).erase("outputs");
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"graph_module.graph.nodes[0]: missing field 'outputs'"});
  p = base_program();
  first_node(p)["inputs"][0]["arg"] = {{"as_float", "fast"}};
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"as_float: expected a float, found string 'fast'"});
}

TEST(Errors, UnionsNeedExactlyOneKnownKey) {
  json p = base_program();
  first_node(p)["inputs"][0]["arg"] = {{"as_int", 1}, {"as_float", 1.0}};
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt,
               {"nodes[0].inputs[0].arg: expected exactly one of {as_none", "in Argument, found 2 keys"});
  first_node(p)["inputs"][0]["arg"] = json::object();
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"in Argument, found 0 keys"});
  first_node(p)["inputs"][0]["arg"] = {{"as_quantum", 1}};
  expect_error([&] { parse(p); }, ErrorCode::kUnsupported, {"nodes[0].inputs[0].arg: unknown Argument kind 'as_quantum'"});
  p = base_program();
  p["graph_module"]["graph"]["tensor_values"]["x"]["sizes"][0] = {{"as_int", 1}, {"as_expr", {{"expr_str", "s0"}}}};
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"tensor_values.x.sizes[0]: expected exactly one of", "SymInt"});
  p = base_program();
  p["graph_module"]["signature"]["input_specs"][0] = {{"user_input", {{"arg", {{"as_tensor", {{"name", "x"}}}}}}},
                                                      {"parameter", json::object()}};
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"input_specs[0]: expected exactly one of", "InputSpec"});
  p["graph_module"]["signature"]["input_specs"][0] = {{"lifted_thing", json::object()}};
  expect_error([&] { parse(p); }, ErrorCode::kUnsupported, {"unknown InputSpec kind 'lifted_thing'"});
  p = base_program();
  p["graph_module"]["signature"]["output_specs"][0] = {{"future_output", json::object()}};
  expect_error([&] { parse(p); }, ErrorCode::kUnsupported, {"unknown OutputSpec kind 'future_output'"});
}

TEST(Errors, BadDtypeAndDevice) {
  json p = base_program();
  p["graph_module"]["graph"]["tensor_values"]["y"]["dtype"] = 99;
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"graph_module.graph.tensor_values.y.dtype", "99"});
  p["graph_module"]["graph"]["tensor_values"]["y"]["dtype"] = 0;
  expect_error([&] { parse(p); }, ErrorCode::kCorrupt, {"tensor_values.y.dtype", "unknown dtype value 0"});
  p = base_program();
  p["graph_module"]["graph"]["tensor_values"]["y"]["device"]["type"] = "tpu";
  expect_error([&] { parse(p); }, ErrorCode::kUnsupported, {"tensor_values.y.device.type", "tpu"});
  // The public piece parser used by the archive configs names its caller's location.
  expect_error([&] { parse_tensor_meta(Json::parse(R"({"dtype": "float"})"), "weights config 'w'"); },
               ErrorCode::kCorrupt, {"weights config 'w': dtype: expected an integer dtype, found string"});
}

// ------------------------------------------------------------------ validate

TEST(Validate, UndefinedValueNamesNodeAndArgument) {
  json p = base_program();
  first_node(p)["inputs"][0]["arg"]["as_tensor"]["name"] = "ghost";
  expect_error([&] { validate(parse(p), "m.json"); }, ErrorCode::kCorrupt,
               {"m.json", "'relu'", "input 'self' uses undefined value 'ghost'"});
}

TEST(Validate, OutputsAndDuplicates) {
  json p = base_program();
  p["graph_module"]["graph"]["outputs"][0]["as_tensor"]["name"] = "nowhere";
  expect_error([&] { validate(parse(p), "m"); }, ErrorCode::kCorrupt, {"graph output 0 uses undefined value 'nowhere'"});
  p = base_program();
  first_node(p)["outputs"][0]["as_tensor"]["name"] = "x";
  expect_error([&] { validate(parse(p), "m"); }, ErrorCode::kCorrupt, {"value 'x' defined twice", "graph input 0"});
}

TEST(Validate, UseBeforeDefinition) {
  json p = base_program();
  json second = first_node(p);
  second["name"] = "relu_1";
  second["inputs"][0]["arg"]["as_tensor"]["name"] = "y";
  second["outputs"][0]["as_tensor"]["name"] = "z";
  auto& nodes = p["graph_module"]["graph"]["nodes"];
  nodes.insert(nodes.begin(), second);  // uses y before relu defines it
  p["graph_module"]["graph"]["tensor_values"]["z"] = json::parse(kMeta);
  expect_error([&] { validate(parse(p), "m"); }, ErrorCode::kCorrupt, {"node 0 'relu_1'", "undefined value 'y'"});
}

TEST(Validate, SignatureMatchesGraph) {
  json p = base_program();
  p["graph_module"]["signature"]["input_specs"].push_back(
      {{"parameter", {{"arg", {{"name", "p"}}}, {"parameter_name", "w"}}}});
  expect_error([&] { validate(parse(p), "m"); }, ErrorCode::kCorrupt, {"2 input specs but the graph has 1 inputs"});
  p = base_program();
  p["graph_module"]["signature"]["input_specs"][0]["user_input"]["arg"]["as_tensor"]["name"] = "q";
  expect_error([&] { validate(parse(p), "m"); }, ErrorCode::kCorrupt, {"input_specs[0] (user_input) names ['q']"});
  p = base_program();
  p["graph_module"]["signature"]["output_specs"][0]["user_output"]["arg"]["as_tensor"]["name"] = "x";
  expect_error([&] { validate(parse(p), "m"); }, ErrorCode::kCorrupt, {"output_specs[0] (user_output) names ['x']"});
}

TEST(Validate, TensorMetaPresentAndSizesNonNegative) {
  json p = base_program();
  p["graph_module"]["graph"]["tensor_values"].erase("y");
  expect_error([&] { validate(parse(p), "m"); }, ErrorCode::kCorrupt, {"tensor 'y'", "no entry in tensor_values"});
  p = base_program();
  p["graph_module"]["graph"]["tensor_values"]["y"]["sizes"][1] = {{"as_int", -3}};
  expect_error([&] { validate(parse(p), "m"); }, ErrorCode::kCorrupt, {"tensor_values['y'].sizes[1]: negative size -3"});
}

TEST(Names, KindKeys) {
  EXPECT_STREQ(arg_kind_key(ArgKind::kOptionalTensors), "as_optional_tensors");
  EXPECT_STREQ(arg_kind_key(ArgKind::kStringToArgument), "as_string_to_argument");
  EXPECT_STREQ(input_kind_key(InputKind::kTensorConstant), "tensor_constant");
  EXPECT_STREQ(input_kind_key(InputKind::kConstantInput), "constant_input");
  EXPECT_STREQ(output_kind_key(OutputKind::kUserInputMutation), "user_input_mutation");
  SymExpr e;
  e.expr_str = "Symbol('s77', positive=True, integer=True)";
  EXPECT_EQ(symbol_name(e), "s77");
  e.expr_str = "s77";
  EXPECT_EQ(symbol_name(e), "s77");
  e.expr_str = "s0 + 1";
  EXPECT_EQ(symbol_name(e), "");
  e.expr_str = "Symbol('s0') + 1";
  EXPECT_EQ(symbol_name(e), "");
}

}  // namespace
}  // namespace ember::ir
