#include <gtest/gtest.h>

#include <string>

#include "ember/error.h"
#include "ember/program.h"

namespace ember::ir {
namespace {

// namedtuple / defaultdict contexts are written raw (their to_dumpable_context output),
// the others as json.dumps text. Spec texts as torch.utils._pytree.treespec_dumps writes them (the first two are copied
// from the mlp_pytree fixture).
const char* kMlpOutSpec =
    R"([1, {"type": "builtins.dict", "context": "[\"out\", \"aux\"]", "children_spec": [{"type": null, "context": null, "children_spec": []}, {"type": "builtins.tuple", "context": "null", "children_spec": [{"type": null, "context": null, "children_spec": []}, {"type": null, "context": null, "children_spec": []}]}]}])";
const char* kMlpInSpec =
    R"([1, {"type": "builtins.tuple", "context": "null", "children_spec": [{"type": "builtins.tuple", "context": "null", "children_spec": [{"type": null, "context": null, "children_spec": []}, {"type": null, "context": null, "children_spec": []}]}, {"type": "builtins.dict", "context": "[]", "children_spec": []}]}])";

TEST(TreeSpec, DictTupleNesting) {
  TreeSpec s = parse_treespec(kMlpOutSpec, "out_spec");
  EXPECT_EQ(s.kind, TreeSpec::Kind::kDict);
  EXPECT_EQ(s.type, "builtins.dict");
  EXPECT_EQ(s.context, Json::parse(R"(["out", "aux"])"));
  ASSERT_EQ(s.children.size(), 2u);
  EXPECT_EQ(s.children[0].kind, TreeSpec::Kind::kLeaf);
  EXPECT_EQ(s.children[1].kind, TreeSpec::Kind::kTuple);
  EXPECT_EQ(s.num_leaves(), 3u);
  EXPECT_EQ(treespec_str(s), "{'out': *, 'aux': (*, *)}");
  EXPECT_EQ(serialize_treespec(s), kMlpOutSpec);

  TreeSpec in = parse_treespec(kMlpInSpec, "in_spec");
  EXPECT_EQ(in.num_leaves(), 2u);
  EXPECT_EQ(treespec_str(in), "((*, *), {})");
  EXPECT_EQ(serialize_treespec(in), kMlpInSpec);
}

TEST(TreeSpec, NoneListNamedTupleOrderedDict) {
  const char* text =
      R"([1, {"type": "builtins.list", "context": "null", "children_spec": [{"type": "builtins.NoneType", "context": "null", "children_spec": []}, {"type": "collections.namedtuple", "context": "__main__.Point", "children_spec": [{"type": null, "context": null, "children_spec": []}, {"type": null, "context": null, "children_spec": []}]}, {"type": "collections.OrderedDict", "context": "[\"a\", 1]", "children_spec": [{"type": null, "context": null, "children_spec": []}, {"type": "builtins.tuple", "context": "null", "children_spec": [{"type": null, "context": null, "children_spec": []}]}]}]}])";
  TreeSpec s = parse_treespec(text, "spec");
  ASSERT_EQ(s.kind, TreeSpec::Kind::kList);
  EXPECT_EQ(s.children[0].kind, TreeSpec::Kind::kNone);
  EXPECT_EQ(s.children[0].num_leaves(), 0u);
  EXPECT_EQ(s.children[1].kind, TreeSpec::Kind::kNamedTuple);
  EXPECT_EQ(s.children[1].context, "__main__.Point");
  EXPECT_EQ(s.children[2].kind, TreeSpec::Kind::kOrderedDict);
  EXPECT_EQ(s.num_leaves(), 4u);
  EXPECT_EQ(treespec_str(s), "[None, Point(*, *), OrderedDict({'a': *, 1: (*,)})]");
  EXPECT_EQ(serialize_treespec(s), text);
  EXPECT_EQ(parse_treespec(serialize_treespec(s), "again"), s);
}

TEST(TreeSpec, DefaultDictAndOtherTypesKeepContext) {
  const char* text =
      R"([1, {"type": "collections.defaultdict", "context": {"default_factory_module": "builtins", "default_factory_name": "list", "dict_context": ["k"]}, "children_spec": [{"type": null, "context": null, "children_spec": []}]}])";
  TreeSpec s = parse_treespec(text, "spec");
  EXPECT_EQ(s.kind, TreeSpec::Kind::kDefaultDict);
  EXPECT_EQ(s.context["dict_context"][0], "k");
  EXPECT_EQ(serialize_treespec(s), text);
  const char* other =
      R"([1, {"type": "mylib.Pair", "context": {"n": 2}, "children_spec": [{"type": null, "context": null, "children_spec": []}]}])";
  TreeSpec o = parse_treespec(other, "spec");
  EXPECT_EQ(o.kind, TreeSpec::Kind::kOther);
  EXPECT_EQ(o.type, "mylib.Pair");
  EXPECT_EQ(o.context["n"], 2);
  EXPECT_EQ(serialize_treespec(o), other);
}

TEST(TreeSpec, SingleLeaf) {
  const char* text = R"([1, {"type": null, "context": null, "children_spec": []}])";
  TreeSpec s = parse_treespec(text, "spec");
  EXPECT_EQ(s.kind, TreeSpec::Kind::kLeaf);
  EXPECT_EQ(s.num_leaves(), 1u);
  EXPECT_EQ(treespec_str(s), "*");
  EXPECT_EQ(serialize_treespec(s), text);
}

template <typename Fn>
void expect_error(Fn&& fn, ErrorCode code, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what() << "\n  missing: " << part;
  }
}

TEST(TreeSpec, Errors) {
  expect_error([] { parse_treespec(R"([2, {"type": null, "context": null, "children_spec": []}])", "out_spec"); },
               ErrorCode::kUnsupported, "out_spec: treespec protocol 2");
  expect_error([] { parse_treespec("[1, {\"type\": null", "out_spec"); }, ErrorCode::kCorrupt, "out_spec: malformed JSON");
  expect_error([] { parse_treespec(R"({"type": null})", "s"); }, ErrorCode::kCorrupt, "expected a treespec");
  expect_error([] { parse_treespec(R"([1, {"type": null, "context": null}])", "s"); }, ErrorCode::kCorrupt,
               "missing field 'children_spec'");
  expect_error(
      [] {
        parse_treespec(R"([1, {"type": "builtins.dict", "context": "[\"a\"]", "children_spec": []}])", "s");
      },
      ErrorCode::kCorrupt, "one key per child");
  expect_error(
      [] { parse_treespec(R"([1, {"type": "builtins.tuple", "context": "[nul", "children_spec": []}])", "s"); },
      ErrorCode::kCorrupt, "[1].context: malformed JSON");
  expect_error(
      [] {
        parse_treespec(
            R"([1, {"type": null, "context": null, "children_spec": [{"type": null, "context": null, "children_spec": []}]}])",
            "s");
      },
      ErrorCode::kCorrupt, "a leaf has 1 children");
  expect_error([] { parse_treespec(R"([1, {"type": 5, "context": null, "children_spec": []}])", "s"); },
               ErrorCode::kCorrupt, "[1].type: expected a string, found integer");
}

}  // namespace
}  // namespace ember::ir
