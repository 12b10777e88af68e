// package_program and `ember package`: bad inputs and environments give clear errors and
// leave nothing behind; --emit-source keeps a source that matches the program's plan.
#include "package/package.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>

#include "ember/archive.h"
#include "ember/error.h"
#include "ember/pt2.h"
#include "package/package_test_util.h"

namespace ember::package {
namespace {

namespace fs = std::filesystem;
using ember::testing::count_of;
using ember::testing::read_text;
using ember::testing::TestDir;

std::string example() { return std::string(EMBER_SOURCE_DIR) + "/examples/models/tiny_resnet.pt2"; }

// Runs `fn`, expects an ember::Error with `code` whose message holds every part.
template <typename Fn>
void expect_error(Fn fn, ErrorCode code, std::vector<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

// Only the files of `dir` (no temporary leftovers).
std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Sets an environment variable for a scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    if (old) old_ = old;
    had_ = old != nullptr;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_.c_str(), old_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

TEST(Package, MissingCompilerIsAClearError) {
  TestDir dir("missing_cxx");
  PackageOptions o;
  o.cxx = "/nonexistent/c++";
  expect_error([&] { package_program(example(), dir / "m.so", o); }, ErrorCode::kNotFound,
               {"no C++ compiler found", "/nonexistent/c++", "--cxx"});
  EXPECT_TRUE(listing(dir.path()).empty());
}

TEST(Package, NoCompilerOnPathNamesWhatWasTried) {
  TestDir dir("no_cxx_on_path");
  ScopedEnv path("PATH", dir.path().c_str());
  ScopedEnv cxx("CXX", "not-a-compiler-xyz");
  expect_error(
      [] { find_cxx(""); }, ErrorCode::kNotFound,
      {"no C++ compiler found", "$CXX (not-a-compiler-xyz)", "c++", "g++", "clang++", "set CXX or pass --cxx"});
}

TEST(Package, CxxFromEnvironmentKeepsItsWords) {
  ScopedEnv cxx("CXX", "c++ -DX=1");
  std::vector<std::string> argv = find_cxx("");
  ASSERT_EQ(argv.size(), 2u);
  EXPECT_EQ(fs::path(argv[0]).filename(), "c++");
  EXPECT_EQ(argv[1], "-DX=1");
}

TEST(Package, MissingInput) {
  TestDir dir("missing_input");
  expect_error([&] { package_program(dir / "absent.ep", dir / "m.so", {}); }, ErrorCode::kIo, {"absent.ep"});
  EXPECT_TRUE(listing(dir.path()).empty());
}

TEST(Package, InputThatIsNotAnArchive) {
  TestDir dir("not_an_archive");
  ember::testing::write_bytes(dir / "text.ep", "this is not a zip archive, just some text that is long enough\n");
  expect_error([&] { package_program(dir / "text.ep", dir / "m.so", {}); }, ErrorCode::kCorrupt, {"text.ep"});
  EXPECT_EQ(listing(dir.path()), std::vector<std::string>{"text.ep"});
}

TEST(Package, RuntimeDirWithoutTheLibrary) {
  TestDir dir("bad_runtime_dir");
  PackageOptions o;
  o.runtime_dir = dir.path();
  expect_error([&] { package_program(example(), dir / "m.so", o); }, ErrorCode::kNotFound,
               {"libember_runtime.so", dir.path(), "--runtime-dir"});
  ScopedEnv env("EMBER_RUNTIME_DIR", dir.path().c_str());
  expect_error([&] { package_program(example(), dir / "m.so", {}); }, ErrorCode::kNotFound,
               {"libember_runtime.so", "EMBER_RUNTIME_DIR"});
  EXPECT_TRUE(listing(dir.path()).empty());
}

TEST(Package, FailingCompilerLeavesTheDestinationUntouched) {
  TestDir dir("failing_cxx");
  ember::testing::write_bytes(dir / "m.so", "previous");
  PackageOptions o;
  o.cxx = "false";  // on PATH, exits 1
  expect_error([&] { package_program(example(), dir / "m.so", o); }, ErrorCode::kIo,
               {"compiling the package of", "exit status 1", "-lember_runtime"});
  EXPECT_EQ(read_text(dir / "m.so"), "previous");
  EXPECT_EQ(listing(dir.path()), std::vector<std::string>{"m.so"});
}

TEST(Package, EmitSourceKeepsGlueBlobsAndBuildScript) {
  TestDir dir("emit_source");
  PackageOptions o;
  o.emit_source_dir = dir / "src";
  std::vector<std::string> messages;
  o.progress = [&](const std::string& m) { messages.push_back(m); };
  PackageReport r = package_program(example(), dir / "tiny.so", o);
  ASSERT_TRUE(fs::exists(dir / "tiny.so"));
  EXPECT_EQ(r.output_bytes, fs::file_size(dir / "tiny.so"));
  EXPECT_FALSE(messages.empty());

  // One run_node per graph node, as the archive's own graph lists them.
  Pt2Archive archive = read_pt2(example());
  const auto& graph = archive.models.at(0).program.graph_module.graph;
  std::string glue = read_text(dir / "src/glue.cpp");
  EXPECT_EQ(r.steps, graph.nodes.size());
  EXPECT_EQ(count_of(glue, "api->run_node(ctx, "), graph.nodes.size());
  for (const auto& node : graph.nodes)
    if (node.name) {
      EXPECT_NE(glue.find("\"" + *node.name + "\""), std::string::npos) << *node.name;
    }
  EXPECT_GT(count_of(glue, "api->release(ctx, "), 0u);
  EXPECT_EQ(r.engine_steps, 0u);  // a plain .pt2

  // Every entry but the sample inputs, decompressed.
  size_t expected_entries = 0;
  std::shared_ptr<ZipReader> zip = ZipReader::open(example());
  for (const auto& e : zip->entries()) {
    std::string rel = e.name.substr(e.name.find('/') + 1);
    if (e.is_directory() || rel.rfind("data/sample_inputs/", 0) == 0) continue;
    ++expected_entries;
    EXPECT_NE(glue.find("\"" + rel + "\""), std::string::npos) << rel;
  }
  EXPECT_EQ(r.entries, expected_entries);
  EXPECT_EQ(count_of(glue, ".incbin \""), expected_entries);
  EXPECT_EQ(glue.find("sample_inputs"), std::string::npos);
  EXPECT_LT(fs::file_size(dir / "src/glue.cpp"), 64u * 1024);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "src/blobs"), fs::directory_iterator{}),
            static_cast<long>(expected_entries));

  // build.sh rebuilds the same library.
  std::string script = read_text(dir / "src/build.sh");
  EXPECT_NE(script.find("-lember_runtime"), std::string::npos);
  EXPECT_NE(script.find("'-Wl,-rpath,$ORIGIN'"), std::string::npos) << script;
  fs::remove(dir / "tiny.so");
  auto rebuilt = ember::testing::run_shell("sh " + ember::testing::shell_quoted(dir / "src/build.sh"));
  EXPECT_EQ(rebuilt.status, 0) << rebuilt.output;
  EXPECT_TRUE(fs::exists(dir / "tiny.so"));
}

TEST(Package, TemporaryFilesAreRemoved) {
  TestDir dir("temporaries");
  std::string tmp = dir / "tmp";
  fs::create_directories(tmp);
  ScopedEnv env("TMPDIR", tmp.c_str());
  PackageReport r = package_program(example(), dir / "tiny.so", {});
  EXPECT_TRUE(r.source_dir.empty());
  EXPECT_TRUE(listing(tmp).empty());
  EXPECT_EQ(listing(dir.path()), (std::vector<std::string>{"tiny.so", "tmp"}));
}

TEST(PackageCli, ReportsAndWritesTheLibrary) {
  TestDir dir("cli");
  std::string ember = std::string(EMBER_BINARY_DIR) + "/tools/ember";
  auto r = ember::testing::run_shell(ember + " package " + example() + " -o " + (dir / "tiny.so"));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* part : {"[package] plan:", "entries:", "schedule:", "compiler:", "output:", "wrote "})
    EXPECT_NE(r.output.find(part), std::string::npos) << part << "\n" << r.output;
  EXPECT_TRUE(fs::exists(dir / "tiny.so"));
  auto bad =
      ember::testing::run_shell(ember + " package " + example() + " -o " + (dir / "x.so") + " --cxx /nonexistent");
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("no C++ compiler found"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(dir / "x.so"));
}

}  // namespace
}  // namespace ember::package
