#include "ember/value.h"

#include <gtest/gtest.h>

namespace ember {
namespace {

ir::TreeSpec leaf() { return ir::TreeSpec{}; }
ir::TreeSpec node(ir::TreeSpec::Kind kind, std::vector<ir::TreeSpec> children, ir::Json context = nullptr) {
  ir::TreeSpec s;
  s.kind = kind;
  s.children = std::move(children);
  s.context = std::move(context);
  return s;
}

Tensor t(float v) { return Tensor::scalar(v, DType::kFloat32); }

TEST(Value, LeavesAndAccessors) {
  EXPECT_TRUE(Value().is_none());
  EXPECT_EQ(Value::from_int(3).to_int(), 3);
  EXPECT_EQ(Value::from_int(3).to_double(), 3.0);
  EXPECT_EQ(Value::from_bool(true).to_bool(), true);
  EXPECT_EQ(Value::from_string("a").str(), "a");
  EXPECT_TRUE(Value(t(1)).is_tensor());
  EXPECT_THROW(Value::from_int(1).tensor(), Error);
  EXPECT_THROW(Value::from_int(1).size(), Error);
  EXPECT_THROW(Value::dict({{"a", Value()}, {"a", Value()}}), Error);
  EXPECT_THROW(Value::named_tuple("P", {"x"}, {}), Error);
}

TEST(Value, DictKeepsInsertionOrderAndLooksUp) {
  Value d = Value::dict({{"b", Value::from_int(1)}, {"a", Value::from_int(2)}});
  EXPECT_EQ(d.keys(), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(d.at("a").to_int(), 2);
  try {
    d.at("zz");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("'zz'"), std::string::npos);
  }
}

TEST(Value, FlattenFollowsSpecOrderAndUnflattenRebuilds) {
  using K = ir::TreeSpec::Kind;
  // {"out": *, "aux": (*, *)}
  ir::TreeSpec spec = node(K::kDict, {leaf(), node(K::kTuple, {leaf(), leaf()})}, ir::Json::array({"out", "aux"}));
  EXPECT_EQ(spec.num_leaves(), 3u);
  // Keys given in another order are taken in the spec's order.
  Value v = Value::dict({{"aux", Value::tuple({t(2), t(3)})}, {"out", t(1)}});
  std::vector<Value> leaves = flatten(v, spec);
  ASSERT_EQ(leaves.size(), 3u);
  EXPECT_EQ(element_as_double(leaves[0].tensor(), 0), 1.0);
  EXPECT_EQ(element_as_double(leaves[1].tensor(), 0), 2.0);
  EXPECT_EQ(element_as_double(leaves[2].tensor(), 0), 3.0);

  Value back = unflatten(spec, leaves);
  EXPECT_EQ(back.keys(), (std::vector<std::string>{"out", "aux"}));
  EXPECT_EQ(back.to_string(), "{'out': float32[], 'aux': (float32[], float32[])}");
  EXPECT_THROW(unflatten(spec, {t(1)}), Error);
  EXPECT_THROW(unflatten(spec, {t(1), t(2), t(3), t(4)}), Error);
}

TEST(Value, FlattenReportsStructureMismatches) {
  using K = ir::TreeSpec::Kind;
  ir::TreeSpec spec = node(K::kTuple, {leaf(), node(K::kDict, {leaf()}, ir::Json::array({"k"}))});
  try {
    flatten(Value::tuple({t(1)}), spec, "inputs");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inputs: expected a tuple of 2 items, found 1"), std::string::npos)
        << e.what();
  }
  try {
    flatten(Value::tuple({t(1), Value::dict({{"j", t(2)}})}), spec, "inputs");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inputs[1]: dict key 'k' is missing"), std::string::npos) << e.what();
  }
  EXPECT_THROW(flatten(Value::list({t(1), t(2)}), node(K::kDict, {leaf(), leaf()}, ir::Json::array({"a", "b"}))),
               Error);
}

TEST(Value, NoneIsNotALeafAndNamedTuplesGetFieldNames) {
  using K = ir::TreeSpec::Kind;
  ir::TreeSpec spec = node(K::kTuple, {node(K::kNone, {}), leaf()});
  EXPECT_EQ(spec.num_leaves(), 1u);
  std::vector<Value> leaves = flatten(Value::tuple({Value(), t(5)}), spec);
  ASSERT_EQ(leaves.size(), 1u);
  EXPECT_EQ(tree_leaves(Value::tuple({Value(), t(5), Value::list({t(1)})})).size(), 2u);

  ir::TreeSpec nt = node(K::kNamedTuple, {leaf(), leaf()}, "__main__.Point");
  NamedTupleFields fields;
  fields["__main__.Point"].field_names = {"x", "y"};
  Value p = unflatten(nt, {Value::from_int(1), Value::from_int(2)}, fields);
  EXPECT_EQ(p.kind(), Value::Kind::kNamedTuple);
  EXPECT_EQ(p.type_name(), "__main__.Point");
  EXPECT_EQ(p.at("y").to_int(), 2);
  EXPECT_TRUE(p.same_structure(unflatten(nt, {Value::from_int(5), Value::from_int(6)}, fields)));
  EXPECT_FALSE(p.same_structure(Value::tuple({Value::from_int(1), Value::from_int(2)})));
}

}  // namespace
}  // namespace ember
