#include <gtest/gtest.h>

#include <functional>
#include <optional>

#include "archive/test_util.h"
#include "ember/archive.h"
#include "ember/pt2.h"

namespace ember {
namespace {

using namespace ember::testing;

ErrorCode code_of(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return ErrorCode::kOk;
}

bool same_bytes(const std::shared_ptr<Storage>& a, const std::shared_ptr<Storage>& b) {
  if (!a || !b) return a == b;
  return a->nbytes() == b->nbytes() && std::memcmp(a->data(), b->data(), a->nbytes()) == 0;
}

TEST(Pt2, ReadsMlpPytreeWithHandCheckedValues) {
  Pt2Archive a = read_pt2(fixture("mlp_pytree.pt2"), {true, true});
  EXPECT_EQ(a.root, "mlp_pytree");
  EXPECT_EQ(a.archive_version, "0");
  EXPECT_EQ(a.data_version, "6\n");
  EXPECT_EQ(a.byteorder, "little");
  EXPECT_EQ(a.serialization_id.size(), 40u);
  ASSERT_EQ(a.models.size(), 1u);
  const Pt2Model& m = a.models[0];
  EXPECT_EQ(m.name, "model");
  EXPECT_EQ(m.program.schema_version.major, 8);
  EXPECT_EQ(m.program.schema_version.minor, 17);
  EXPECT_EQ(m.program.graph_module.graph.nodes.size(), 6u);
  ASSERT_EQ(m.weights.size(), 4u);
  EXPECT_TRUE(m.constants.empty());
  ASSERT_TRUE(m.sample_inputs.has_value());
  EXPECT_EQ(m.sample_inputs->size(), 1957u);

  const Pt2TensorEntry* w = m.find_weight("l1.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->path_name, "weight_0");
  EXPECT_TRUE(w->is_param);
  EXPECT_EQ(w->tensor.sizes(), (Shape{32, 16}));
  EXPECT_EQ(w->tensor.dtype(), DType::kFloat32);
  EXPECT_FALSE(w->tensor.writable());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w->tensor.raw_data()) % 64, 0u);
  EXPECT_FLOAT_EQ(w->tensor.data<float>()[0], 0.20472463965415955f);
  EXPECT_FLOAT_EQ(w->tensor.data<float>()[1], 0.13333740830421448f);
  const Pt2TensorEntry* b = m.find_weight("l2.bias");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->tensor.sizes(), (Shape{4}));
  const float expected[4] = {-0.1491858959197998f, -0.006727416533976793f, -0.00035047210985794663f,
                             -0.11794470995664597f};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(b->tensor.data<float>()[i], expected[i]);
  EXPECT_EQ(m.find_weight("nope"), nullptr);
  EXPECT_NE(a.find_model("model"), nullptr);
}

TEST(Pt2, TensorsKeepTheMappingAlive) {
  Tensor t;
  {
    Pt2Archive a = read_pt2(fixture("mlp_pytree.pt2"));
    t = a.models[0].find_weight("l2.bias")->tensor;
  }
  EXPECT_FLOAT_EQ(t.data<float>()[3], -0.11794470995664597f);
}

TEST(Pt2, ExecuteEngineReferenceHasAUint8Constant) {
  Pt2Archive a = read_pt2(fixture("execute_engine_reference.pt2"), {true, true});
  const Pt2TensorEntry* c = a.models[0].find_constant("engine0");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->path_name, "tensor_0");
  EXPECT_FALSE(c->is_param);
  EXPECT_EQ(c->tensor.dtype(), DType::kUInt8);
  EXPECT_EQ(c->tensor.sizes(), (Shape{64}));
}

void expect_same_entries(const std::vector<Pt2TensorEntry>& x, const std::vector<Pt2TensorEntry>& y) {
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i].fqn, y[i].fqn);
    EXPECT_EQ(x[i].path_name, y[i].path_name);
    EXPECT_EQ(x[i].is_param, y[i].is_param);
    EXPECT_EQ(x[i].use_pickle, y[i].use_pickle);
    EXPECT_EQ(x[i].meta, y[i].meta) << x[i].fqn;
    EXPECT_EQ(x[i].unknown, y[i].unknown);
    EXPECT_EQ(x[i].tensor.defined(), y[i].tensor.defined());
    if (x[i].tensor.defined()) {
      EXPECT_EQ(x[i].tensor.sizes(), y[i].tensor.sizes());
      EXPECT_EQ(x[i].tensor.strides(), y[i].tensor.strides());
      EXPECT_EQ(x[i].tensor.storage_offset(), y[i].tensor.storage_offset());
      EXPECT_TRUE(same_bytes(x[i].tensor.storage(), y[i].tensor.storage())) << x[i].fqn;
    }
    EXPECT_TRUE(same_bytes(x[i].blob.storage, y[i].blob.storage));
  }
}

void expect_same_archive(const Pt2Archive& a, const Pt2Archive& b) {
  EXPECT_EQ(a.root, b.root);
  EXPECT_EQ(a.archive_format, b.archive_format);
  EXPECT_EQ(a.archive_version, b.archive_version);
  EXPECT_EQ(a.data_version, b.data_version);
  EXPECT_EQ(a.byteorder, b.byteorder);
  EXPECT_EQ(a.serialization_id, b.serialization_id);
  ASSERT_EQ(a.models.size(), b.models.size());
  for (size_t i = 0; i < a.models.size(); ++i) {
    EXPECT_EQ(a.models[i].name, b.models[i].name);
    EXPECT_TRUE(a.models[i].program == b.models[i].program) << a.models[i].name;
    expect_same_entries(a.models[i].weights, b.models[i].weights);
    expect_same_entries(a.models[i].constants, b.models[i].constants);
    EXPECT_EQ(a.models[i].weights_config_unknown, b.models[i].weights_config_unknown);
    EXPECT_EQ(a.models[i].constants_config_unknown, b.models[i].constants_config_unknown);
    ASSERT_EQ(a.models[i].sample_inputs.has_value(), b.models[i].sample_inputs.has_value());
    if (a.models[i].sample_inputs)
      EXPECT_TRUE(same_bytes(a.models[i].sample_inputs->storage, b.models[i].sample_inputs->storage));
  }
  ASSERT_EQ(a.other_entries.size(), b.other_entries.size());
  for (size_t i = 0; i < a.other_entries.size(); ++i) {
    EXPECT_EQ(a.other_entries[i].first, b.other_entries[i].first);
    EXPECT_TRUE(same_bytes(a.other_entries[i].second.storage, b.other_entries[i].second.storage));
  }
}

class Pt2Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Pt2Fixture, ReadWriteReadIsLossless) {
  const std::string name = GetParam();
  Pt2Archive a = read_pt2(fixture(name + ".pt2"), {true, true});
  // Every tensor is a zero-copy view of the file.
  for (const auto& m : a.models)
    for (const auto* list : {&m.weights, &m.constants})
      for (const auto& e : *list)
        if (e.tensor.defined()) {
          EXPECT_FALSE(e.tensor.storage()->owned()) << e.fqn;
        }
  TempDir dir;
  std::string out = dir.file(name + ".pt2");
  write_pt2(a, out);
  EXPECT_EQ(dir.count(), 1u);
  Pt2Archive b = read_pt2(out, {true, true});
  expect_same_archive(a, b);
  // Same entry order as PyTorch and every stored entry aligned.
  auto za = ZipReader::open(fixture(name + ".pt2"));
  auto zb = ZipReader::open(out);
  ASSERT_EQ(za->entries().size(), zb->entries().size());
  for (size_t i = 0; i < za->entries().size(); ++i) {
    EXPECT_EQ(za->entries()[i].name, zb->entries()[i].name);
    EXPECT_EQ(zb->entries()[i].data_offset % 64, 0u);
  }
  // Writing what was read back gives the same bytes again (deterministic writer).
  std::string out2 = dir.file("again.pt2");
  write_pt2(b, out2);
  EXPECT_EQ(read_file(out), read_file(out2));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Pt2Fixture, ::testing::ValuesIn(fixture_names()));

TEST(Pt2, AliasingIsPreservedAndViewsHonorOffsets) {
  Pt2Archive a = read_pt2(fixture("mlp_pytree.pt2"));
  Pt2Model& m = a.models[0];
  const Pt2TensorEntry base = *m.find_weight("l1.weight");
  // A second FQN viewing row 3 of the same storage, and a transposed view.
  Pt2TensorEntry row = base;
  row.fqn = "alias.row3";
  row.path_name = "ignored_alias_path";
  row.is_param = false;
  row.tensor = base.tensor.as_strided({16}, {1}, 3 * 16);
  Pt2TensorEntry tr = base;
  tr.fqn = "alias.t";
  tr.tensor = base.tensor.as_strided({16, 32}, {1, 16}, 0);
  m.weights.push_back(row);
  m.weights.push_back(tr);
  TempDir dir;
  write_pt2(a, dir.file("alias.pt2"));

  auto z = ZipReader::open(dir.file("alias.pt2"));
  EXPECT_EQ(z->entries().size(), 13u);  // no extra data file
  Pt2Archive b = read_pt2(dir.file("alias.pt2"), {true, true});
  const Pt2Model& mb = b.models[0];
  const Pt2TensorEntry* w = mb.find_weight("l1.weight");
  const Pt2TensorEntry* r = mb.find_weight("alias.row3");
  const Pt2TensorEntry* t = mb.find_weight("alias.t");
  ASSERT_TRUE(w && r && t);
  EXPECT_EQ(r->path_name, "weight_0");
  EXPECT_EQ(w->tensor.storage().get(), r->tensor.storage().get());  // ONE Storage object
  EXPECT_EQ(w->tensor.storage().get(), t->tensor.storage().get());
  EXPECT_EQ(r->tensor.storage_offset(), 48);
  EXPECT_EQ(r->meta.storage_offset.value, 48);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(r->tensor.data<float>()[i], w->tensor.data<float>()[3 * 16 + i]);
  EXPECT_EQ(element_as_double(t->tensor, 1 * 32 + 2), element_as_double(w->tensor, 2 * 16 + 1));
}

TEST(Pt2, AtomicWriteFailureLeavesDestination) {
  Pt2Archive a = read_pt2(fixture("mlp_pytree.pt2"));
  TempDir dir;
  std::string dest = dir.file("out.pt2");
  write_file(dest, {'o', 'l', 'd'});
  a.models[0].weights[1].path_name = "../escape";  // fails halfway through writing
  EXPECT_EQ(code_of([&] { write_pt2(a, dest); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(read_file(dest), (std::vector<uint8_t>{'o', 'l', 'd'}));
  EXPECT_EQ(dir.count(), 1u);
  a.models[0].weights[1].path_name = "weight_0";  // a different storage under a used name
  EXPECT_EQ(code_of([&] { write_pt2(a, dest); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dir.count(), 1u);
}

// Rewrites a fixture entry by entry; `edit` may change the bytes, or return nullopt to drop
// the entry. `extra` entries are appended.
std::vector<uint8_t> rezip(const TempDir& dir, const std::string& name,
                           const std::function<std::optional<std::string>(const std::string&, std::string)>& edit,
                           const std::vector<std::pair<std::string, std::string>>& extra = {},
                           bool deflate = false) {
  auto z = ZipReader::open(fixture(name + ".pt2"));
  std::string out = dir.file("edited.pt2");
  {
    ZipWriter w(out);
    for (const auto& e : z->entries()) {
      auto text = edit(e.name, z->read_string(e));
      if (!text) continue;
      if (deflate)
        w.add_deflated(e.name, span_of(*text));
      else
        w.add(e.name, *text);
    }
    for (const auto& [n, t] : extra) w.add(n, t);
    w.finish();
  }
  return read_file(out);
}

ErrorCode read_code(const std::vector<uint8_t>& bytes, std::string* msg = nullptr) {
  return code_of([&] { read_pt2_from_memory(to_storage(bytes), "bad.pt2", {true, true}); }, msg);
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  size_t p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}

TEST(Pt2Bad, DeflatedArchiveStillReads) {
  TempDir dir;
  auto bytes = rezip(dir, "mlp_pytree", [](const std::string&, std::string t) { return t; }, {}, true);
  Pt2Archive a = read_pt2_from_memory(to_storage(bytes), "deflated.pt2", {true, true});
  EXPECT_TRUE(a.models[0].find_weight("l1.weight")->tensor.storage()->owned());
  EXPECT_FLOAT_EQ(a.models[0].find_weight("l2.bias")->tensor.data<float>()[0], -0.1491858959197998f);
}

TEST(Pt2Bad, StructuralErrors) {
  TempDir dir;
  auto keep = [](const std::string&, std::string t) -> std::optional<std::string> { return t; };
  std::string msg;

  auto outside = rezip(dir, "mlp_pytree", keep, {{"elsewhere/x", "1"}});
  EXPECT_EQ(read_code(outside, &msg), ErrorCode::kCorrupt);
  EXPECT_NE(msg.find("elsewhere/x"), std::string::npos) << msg;

  auto no_model = rezip(dir, "mlp_pytree", [](const std::string& n, std::string t) -> std::optional<std::string> {
    if (n == "mlp_pytree/models/model.json") return std::nullopt;
    return t;
  });
  EXPECT_EQ(read_code(no_model, &msg), ErrorCode::kCorrupt);
  EXPECT_NE(msg.find("models/"), std::string::npos) << msg;

  auto version = rezip(dir, "mlp_pytree", [](const std::string& n, std::string t) -> std::optional<std::string> {
    return n == "mlp_pytree/archive_version" ? "1" : t;
  });
  EXPECT_EQ(read_code(version, &msg), ErrorCode::kVersionMismatch);
  EXPECT_NE(msg.find("bad.pt2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'1'"), std::string::npos) << msg;

  auto format = rezip(dir, "mlp_pytree", [](const std::string& n, std::string t) -> std::optional<std::string> {
    return n == "mlp_pytree/archive_format" ? "pt3" : t;
  });
  EXPECT_EQ(read_code(format), ErrorCode::kUnsupported);

  auto no_version = rezip(dir, "mlp_pytree", [](const std::string& n, std::string t) -> std::optional<std::string> {
    if (n == "mlp_pytree/archive_version") return std::nullopt;
    return t;
  });
  EXPECT_EQ(read_code(no_version), ErrorCode::kCorrupt);

  auto short_data = rezip(dir, "mlp_pytree", [](const std::string& n, std::string t) -> std::optional<std::string> {
    return n == "mlp_pytree/data/weights/weight_0" ? t.substr(0, 2044) : t;
  });
  EXPECT_EQ(read_code(short_data, &msg), ErrorCode::kCorrupt);
  EXPECT_NE(msg.find("weight_0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2044"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2048"), std::string::npos) << msg;

  const std::string cfg = "mlp_pytree/data/weights/model_weights_config.json";
  auto edit_cfg = [&](const std::string& from, const std::string& to) {
    return rezip(dir, "mlp_pytree", [&](const std::string& n, std::string t) -> std::optional<std::string> {
      return n == cfg ? replace(t, from, to) : t;
    });
  };
  auto missing_file = edit_cfg("\"path_name\": \"weight_1\"", "\"path_name\": \"weight_9\"");
  EXPECT_EQ(read_code(missing_file, &msg), ErrorCode::kCorrupt);
  EXPECT_NE(msg.find("weight_9"), std::string::npos) << msg;

  auto negative = edit_cfg("[{\"as_int\": 32}, {\"as_int\": 16}]", "[{\"as_int\": -32}, {\"as_int\": 16}]");
  ErrorCode c = read_code(negative, &msg);
  EXPECT_TRUE(c == ErrorCode::kCorrupt || c == ErrorCode::kLimitExceeded) << msg;

  auto huge = edit_cfg("[{\"as_int\": 32}, {\"as_int\": 16}]",
                       "[{\"as_int\": 4611686018427387904}, {\"as_int\": 4611686018427387904}]");
  c = read_code(huge, &msg);
  EXPECT_TRUE(c == ErrorCode::kCorrupt || c == ErrorCode::kLimitExceeded) << msg;

  auto huge_stride = edit_cfg("\"strides\": [{\"as_int\": 16}, {\"as_int\": 1}]",
                              "\"strides\": [{\"as_int\": 9223372036854775807}, {\"as_int\": 1}]");
  c = read_code(huge_stride, &msg);
  EXPECT_TRUE(c == ErrorCode::kCorrupt || c == ErrorCode::kLimitExceeded) << msg;

  auto big_offset = edit_cfg("\"storage_offset\": {\"as_int\": 0}", "\"storage_offset\": {\"as_int\": 1}");
  EXPECT_EQ(read_code(big_offset, &msg), ErrorCode::kCorrupt);

  auto bad_json = edit_cfg("{\"config\"", "[\"config\"");
  EXPECT_EQ(read_code(bad_json), ErrorCode::kCorrupt);
  auto unsafe_path = edit_cfg("\"path_name\": \"weight_1\"", "\"path_name\": \"../../x/1\"");
  EXPECT_EQ(read_code(unsafe_path), ErrorCode::kCorrupt);
  // An unknown field nested 100,000 deep: refused by the depth limit, not a stack overflow.
  auto deep = edit_cfg("{\"config\"", "{\"x\": " + std::string(100000, '[') + std::string(100000, ']') + ", \"config\"");
  c = read_code(deep, &msg);
  EXPECT_TRUE(c == ErrorCode::kCorrupt || c == ErrorCode::kLimitExceeded) << msg;
  EXPECT_NE(msg.find("model_weights_config.json"), std::string::npos) << msg;
}

TEST(Pt2Bad, ZipBombEntryIsRefused) {
  TempDir dir;
  auto bytes = rezip(dir, "mlp_pytree", [](const std::string&, std::string t) { return t; }, {}, true);
  // Declare a 4 GiB sample_inputs entry.
  auto z = ZipReader::from_memory(to_storage(bytes), "x");
  const ZipEntry* e = z->find("mlp_pytree/data/sample_inputs/model.pt");
  ASSERT_NE(e, nullptr);
  for (size_t cd : find_sig(bytes, 0x02014b50)) {
    if (std::memcmp(bytes.data() + cd + 46, e->name.data(), e->name.size()) == 0) put32(bytes, cd + 24, 0xFFFFFFF0u);
  }
  put32(bytes, e->local_header_offset + 22, 0xFFFFFFF0u);
  std::string msg;
  EXPECT_EQ(read_code(bytes, &msg), ErrorCode::kLimitExceeded);
  EXPECT_NE(msg.find("sample_inputs"), std::string::npos) << msg;
}

TEST(Pt2Bad, UnknownFieldsAndOtherEntriesArePreserved) {
  TempDir dir;
  const std::string cfg = "mlp_pytree/data/weights/model_weights_config.json";
  auto bytes = rezip(
      dir, "mlp_pytree",
      [&](const std::string& n, std::string t) -> std::optional<std::string> {
        if (n != cfg) return t;
        t = replace(t, "\"use_pickle\": false, \"tensor_meta\"", "\"use_pickle\": false, \"future\": [1, 2], \"tensor_meta\"");
        return t.substr(0, t.size() - 1) + ", \"top_level\": {\"x\": 1}}";
      },
      {{"mlp_pytree/extra/notes.txt", "hello"}});
  Pt2Archive a = read_pt2_from_memory(to_storage(bytes), "x.pt2");
  const Pt2Model& m = a.models[0];
  EXPECT_EQ(m.weights[0].unknown["future"], ir::Json::parse("[1, 2]"));
  EXPECT_EQ(m.weights_config_unknown["top_level"]["x"], 1);
  ASSERT_EQ(a.other_entries.size(), 1u);
  EXPECT_EQ(a.other_entries[0].first, "extra/notes.txt");
  write_pt2(a, dir.file("again.pt2"));
  Pt2Archive b = read_pt2(dir.file("again.pt2"));
  expect_same_archive(a, b);
}

}  // namespace
}  // namespace ember
