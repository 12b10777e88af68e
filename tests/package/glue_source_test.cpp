// The generated glue source: its shape (data sections with .incbin, no byte arrays, one
// run_node per plan step, the releases), and what it does once compiled: built with a
// stand-in runtime (glue_harness.cpp), the descriptor must hold every entry's exact bytes
// 64-byte aligned, the names, and a schedule that calls and stops exactly as planned.
#include <gtest/gtest.h>

#include <sstream>

#include "ember/error.h"
#include "ember/package_abi.h"
#include "package/package.h"
#include "package/package_test_util.h"

namespace ember::package {
namespace {

using ember::testing::count_of;
using ember::testing::hex;
using ember::testing::TestDir;

uint64_t fnv1a(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

// A hand-made spec: three entries (one empty, one large) and a four-step plan.
struct Fixture {
  GlueSpec spec;
  std::vector<std::string> contents;
};

Fixture make_fixture(const std::string& blob_dir) {
  Fixture f;
  f.spec.ember_version = "9.8.7";
  f.spec.source = "my model \"v2\".ep";
  f.spec.archive_root = "archive";
  f.spec.model_name = "model";
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) ^ (i >> 9));
  std::vector<std::pair<std::string, std::string>> entries = {
      {"models/model.json", "{\"graph\": []}"},
      {"data/constants/tensor_0", ""},
      {"data/weights/weight_0", big},
  };
  std::filesystem::create_directories(blob_dir);
  for (size_t i = 0; i < entries.size(); ++i) {
    GlueEntry e;
    e.name = entries[i].first;
    e.blob_path = blob_dir + "/blob_" + std::to_string(i) + ".bin";
    e.size = entries[i].second.size();
    ember::testing::write_bytes(e.blob_path, entries[i].second);
    f.spec.entries.push_back(e);
    f.contents.push_back(entries[i].second);
  }
  f.spec.plan = {
      {"conv", "torch.ops.ember.execute_engine.default", {"x"}},
      {"relu", "torch.ops.aten.relu.default", {"conv"}},
      {"odd \"name\"\\\n?\?=", "torch.ops.aten.add.Tensor", {}},
      {"out", "torch.ops.aten.mul.Tensor", {"relu", "odd \"name\"\\\n?\?="}},
  };
  return f;
}

TEST(GlueSource, DataSectionsScheduleAndDescriptor) {
  TestDir dir("glue_shape");
  Fixture f = make_fixture(dir / "blobs");
  std::string src = generate_glue_source(f.spec);
  // Entries: .incbin of each blob, each in its own aligned read-only section.
  EXPECT_EQ(count_of(src, ".incbin \""), 3u);
  EXPECT_EQ(count_of(src, ".balign 64"), 3u);
  EXPECT_EQ(count_of(src, ".pushsection .rodata.ember."), 3u);
  EXPECT_EQ(count_of(src, ".hidden ember_package_entry_"), 3u);
  EXPECT_NE(src.find(f.spec.entries[2].blob_path), std::string::npos);
  // No bytes written out as C arrays: the source stays small whatever the entries weigh.
  EXPECT_LT(src.size(), 12000u) << src;
  EXPECT_EQ(src.find("0x"), std::string::npos);
  // The schedule: one run_node per step in order, releases with the glue's value numbering.
  EXPECT_EQ(count_of(src, "api->run_node(ctx, "), 4u);
  size_t at = 0;
  for (int i = 0; i < 4; ++i) {
    size_t next = src.find("api->run_node(ctx, " + std::to_string(i) + "u)", at);
    ASSERT_NE(next, std::string::npos) << "step " << i;
    at = next;
  }
  EXPECT_EQ(count_of(src, "api->release(ctx, "), 4u);
  EXPECT_NE(src.find("api->release(ctx, 0u)) != 0) return status;  // x"), std::string::npos) << src;
  EXPECT_NE(src.find("api->release(ctx, 3u)"), std::string::npos);
  EXPECT_NE(src.find("// 0: conv = torch.ops.ember.execute_engine.default"), std::string::npos);
  // Standard library free: only the ABI header.
  EXPECT_EQ(count_of(src, "#include"), 1u);
  EXPECT_NE(src.find("#include \"ember/package_abi.h\""), std::string::npos);
  EXPECT_NE(src.find("EMBER_PACKAGE_MAGIC"), std::string::npos);
  EXPECT_NE(src.find("ember_model_create_from_package(&kDescriptor, options, out)"), std::string::npos);
}

TEST(GlueSource, NoEntriesIsAnError) {
  GlueSpec spec;
  spec.source = "x.ep";
  try {
    generate_glue_source(spec);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("x.ep"), std::string::npos);
  }
}

// Compiles the generated source with the stand-in runtime and runs it. Blob paths with a
// space and quotes exercise the assembler string escaping.
class CompiledGlue : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>("glue_compiled");
    fixture_ = make_fixture(*dir_ / "blob dir \"q\"");
    std::string src = generate_glue_source(fixture_.spec);
    ember::testing::write_bytes(*dir_ / "glue.cpp", src);
    std::vector<std::string> cxx = find_cxx("");
    std::string command;
    for (const auto& w : cxx) command += ember::testing::shell_quoted(w) + " ";
    command += "-std=c++17 -O2 -fvisibility=hidden -Wall -Wextra -Werror -I" +
               ember::testing::shell_quoted(std::string(EMBER_SOURCE_DIR) + "/include") + " " +
               ember::testing::shell_quoted(*dir_ / "glue.cpp") + " " +
               ember::testing::shell_quoted(std::string(EMBER_SOURCE_DIR) + "/tests/package/glue_harness.cpp") +
               " -o " + ember::testing::shell_quoted(*dir_ / "harness");
    auto built = ember::testing::run_shell(command);
    ASSERT_EQ(built.status, 0) << command << "\n" << built.output;
  }
  std::string run(const std::string& args = "") {
    auto r = ember::testing::run_shell(ember::testing::shell_quoted(*dir_ / "harness") + " " + args);
    EXPECT_EQ(r.status, 0) << r.output;
    return r.output;
  }
  std::unique_ptr<TestDir> dir_;
  Fixture fixture_;
};

TEST_F(CompiledGlue, DescriptorHoldsExactBytesNamesAndSchedule) {
  std::string out = run();
  std::ostringstream want;
  want << "magic 504d4245 abi " << EMBER_PACKAGE_ABI_VERSION << "\n";
  want << "version " << hex("9.8.7") << " source " << hex("my model \"v2\".ep") << " root " << hex("archive")
       << " model " << hex("model") << "\n";
  for (size_t i = 0; i < fixture_.contents.size(); ++i) {
    char fnv[32];
    std::snprintf(fnv, sizeof(fnv), "%016llx", static_cast<unsigned long long>(fnv1a(fixture_.contents[i])));
    want << "entry " << hex(fixture_.spec.entries[i].name) << " size " << fixture_.contents[i].size()
         << " aligned 1 fnv " << fnv << "\n";
  }
  for (const auto& step : fixture_.spec.plan) want << "node " << hex(step.node) << "\n";
  for (const char* v : {"x", "conv", "relu", "odd \"name\"\\\n?\?="}) want << "value " << hex(v) << "\n";
  want << "create 0 same 1\n";
  // Steps in order; each step's releases right after it (values numbered by first release).
  want << "run_node 0\nrelease 0\nrun_node 1\nrelease 1\nrun_node 2\nrun_node 3\nrelease 2\nrelease 3\n";
  want << "status 0\n";
  EXPECT_EQ(out, want.str());
}

TEST_F(CompiledGlue, StopsAtTheFirstFailingCall) {
  // Call 5 is run_node 2: nothing after it runs and its status comes back.
  std::string full = run();
  std::string header = full.substr(0, full.find("run_node 0"));
  EXPECT_EQ(run("5"), header + "run_node 0\nrelease 0\nrun_node 1\nrelease 1\nrun_node 2\nstatus 7\n");
  // Call 4 is the release after step 1.
  EXPECT_EQ(run("4"), header + "run_node 0\nrelease 0\nrun_node 1\nrelease 1\nstatus 7\n");
}

}  // namespace
}  // namespace ember::package
