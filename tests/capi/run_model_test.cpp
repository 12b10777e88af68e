// examples/c/run_model.c end to end: compile a model, package it as a .so, run every reference
// case through the plain C program (dlopen, C ABI, safetensors in and out) and compare the
// file it writes with PyTorch's outputs. `ember check` / `ember inspect` read packaged
// models. Also: a package whose engine was built for another
// architecture is refused at create time, through the C program and through the C ABI.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "compiler/compiler_test_util.h"
#include "ember/compiler.h"
#include "ember/ember.h"
#include "ember/engine.h"
#include "ember/safetensors.h"
#include "package/package.h"

namespace ember {
namespace {

namespace fs = std::filesystem;
using ember::testing::all_close;
using ember::testing::example;
using ember::testing::fixture;

struct Exec {
  int status = -1;
  std::string output;
};

// Runs a command, capturing stdout and stderr together.
Exec exec(const std::string& cmd) {
  Exec r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class RunModelExample : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("ember_run_model_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // model.pt2 -> model.ep (engines, tactic timing off) -> model.so; returns the .so path.
  static std::string compile_and_package(const std::string& pt2, const std::string& name,
                                         const std::vector<std::string>& torch_executed_ops = {}) {
    CompileOptions options;
    options.build.time_tactics = false;
    options.torch_executed_ops = torch_executed_ops;
    const std::string ep = (dir_ / (name + ".ep")).string();
    write_pt2(compile_program(read_pt2(pt2), options, nullptr), ep);
    const std::string so = (dir_ / (name + ".so")).string();
    package::package_program(ep, so, {});
    return so;
  }

  // Every case of the reference file through run_model, compared with PyTorch's outputs.
  static void expect_every_case_matches(const std::string& so, const std::string& io_path) {
    SafetensorsFile io = read_safetensors(io_path);
    auto cases = group_reference_cases(io, io_path);
    ASSERT_TRUE(cases.has_value());
    ASSERT_FALSE(cases->empty());
    for (const ReferenceCase& c : *cases) {
      SCOPED_TRACE("case " + std::to_string(c.index));
      const std::string out = (dir_ / ("out_" + std::to_string(c.index) + ".safetensors")).string();
      Exec r = exec(std::string(RUN_MODEL_BIN) + " " + so + " " + io_path + " " + out + " " + std::to_string(c.index));
      ASSERT_EQ(r.status, 0) << r.output;
      SafetensorsFile got = read_safetensors(out);
      for (size_t j = 0; j < c.outputs.size(); ++j) {
        const std::string key = "case" + std::to_string(c.index) + ".out." + std::to_string(j);
        const Tensor* t = got.find(key);
        ASSERT_NE(t, nullptr) << "run_model wrote no " << key;
        EXPECT_TRUE(all_close(*t, c.outputs[j], 1e-4, 1e-4)) << key;
      }
    }
  }

  static fs::path dir_;
};
fs::path RunModelExample::dir_;

TEST_F(RunModelExample, BundledExample) {
  expect_every_case_matches(compile_and_package(example("tiny_resnet.pt2"), "tiny_resnet"),
                            example("tiny_resnet.io.safetensors"));
}

TEST_F(RunModelExample, PytreeOutputs) {
  expect_every_case_matches(compile_and_package(fixture("mlp_pytree.pt2"), "mlp_pytree"),
                            fixture("mlp_pytree.io.safetensors"));
}

TEST_F(RunModelExample, DynamicBatchEveryCase) {
  expect_every_case_matches(compile_and_package(fixture("mlp_dynamic_batch.pt2"), "mlp_dynamic_batch"),
                            fixture("mlp_dynamic_batch.io.safetensors"));
}

TEST_F(RunModelExample, EnginesAndFallbackNodes) {
  // Softmax and layer_norm forced out of the engines: the glue alternates engine calls and
  // interpreter nodes.
  expect_every_case_matches(compile_and_package(fixture("transformer_layer.pt2"), "transformer_layer",
                                                {"aten.softmax", "aten.layer_norm"}),
                            fixture("transformer_layer.io.safetensors"));
}

TEST_F(RunModelExample, CnnFixture) {
  expect_every_case_matches(compile_and_package(fixture("cnn_small.pt2"), "cnn_small"),
                            fixture("cnn_small.io.safetensors"));
}

TEST_F(RunModelExample, CheckAndInspectReadPackagedModels) {
  const std::string so = compile_and_package(example("tiny_resnet.pt2"), "tiny_resnet_cli");
  Exec r = exec(std::string(EMBER_CLI) + " check " + so);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("result: compatible"), std::string::npos) << r.output;
#if defined(__x86_64__)
  r = exec(std::string(EMBER_CLI) + " check " + so + " --host 'x86_64 without avx2'");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("missing avx2"), std::string::npos) << r.output;
#endif
  r = exec(std::string(EMBER_CLI) + " inspect " + so);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("image"), std::string::npos) << r.output;
  r = exec(std::string(EMBER_CLI) + " check " + EMBER_RUNTIME_LIB);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("not an Ember packaged model"), std::string::npos) << r.output;
}

TEST_F(RunModelExample, NotAModelIsRefused) {
  Exec r = exec(std::string(RUN_MODEL_BIN) + " " + EMBER_RUNTIME_LIB + " in.safetensors out.safetensors");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("ember_package_create"), std::string::npos) << r.output;
}

// An .ep whose engines claim another architecture, packaged (packaging plans without
// creating kernels, so it succeeds) and then refused when the model is created.
TEST_F(RunModelExample, ForeignTargetIsRefusedAtCreate) {
  CompileOptions options;
  options.build.time_tactics = false;
  Pt2Archive ep = compile_program(read_pt2(example("tiny_resnet.pt2")), options, nullptr);
  int rewritten = 0;
  for (Pt2Model& m : ep.models)
    for (Pt2TensorEntry& c : m.constants) {
      if (!c.tensor.defined()) continue;
      const Storage& s = *c.tensor.storage();
      if (!is_engine_bytes({s.data(), s.nbytes()})) continue;
      EngineView v = EngineView::parse(c.tensor.storage(), c.fqn);
      EngineMeta meta = v.meta();
      meta.target.arch = meta.target.arch == "x86_64" ? "aarch64" : "x86_64";
      EngineWriter w;
      w.set_meta(meta);
      for (const EngineSectionInfo& info : v.sections())
        if (info.name != kSectionMeta) w.add_section(info.name, v.section(info.name));
      auto bytes = w.write_to_storage();
      c.tensor = Tensor(bytes, DType::kUInt8, {static_cast<int64_t>(bytes->nbytes())}, {1});
      c.meta.sizes = {ir::SymInt{false, static_cast<int64_t>(bytes->nbytes()), {}}};
      ++rewritten;
    }
  ASSERT_GT(rewritten, 0);
  const std::string ep_path = (dir_ / "foreign.ep").string();
  write_pt2(ep, ep_path);
  const std::string so = (dir_ / "foreign.so").string();
  package::package_program(ep_path, so, {});

  Exec r = exec(std::string(RUN_MODEL_BIN) + " " + so + " " + example("tiny_resnet.io.safetensors") + " " +
                (dir_ / "foreign_out.safetensors").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("architecture"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ / "foreign_out.safetensors"));

  void* h = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(h, nullptr) << dlerror();
  auto create = reinterpret_cast<ember_status (*)(const ember_model_options*, ember_model**)>(
      dlsym(h, "ember_package_create"));
  auto last_error = reinterpret_cast<const char* (*)()>(dlsym(h, "ember_last_error"));
  ASSERT_TRUE(create && last_error);
  ember_model* m = nullptr;
  EXPECT_EQ(create(nullptr, &m), EMBER_ERR_INCOMPATIBLE_TARGET);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(std::string(last_error()).find("architecture"), std::string::npos) << last_error();
  dlclose(h);
}

}  // namespace
}  // namespace ember
