// Packaged models end to end: the bundled example compiled to an .ep, packaged into a .so,
// loaded back (Program::load and the C ABI through dlopen) and run on PyTorch's reference
// inputs; outputs must match PyTorch's reference outputs.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "compiler/compiler_test_util.h"
#include "ember/compiler.h"
#include "ember/ember.h"
#include "ember/runtime.h"
#include "ember/safetensors.h"
#include "package/package.h"
#include "package/package_test_util.h"

namespace ember::package {
namespace {

namespace fs = std::filesystem;
using ember::testing::all_close;
using ember::testing::TestDir;

std::string example(const std::string& suffix) {
  return std::string(EMBER_SOURCE_DIR) + "/examples/models/tiny_resnet" + suffix;
}

std::vector<ReferenceCase> reference_cases() {
  SafetensorsFile io = read_safetensors(example(".io.safetensors"));
  auto cases = group_reference_cases(io, "tiny_resnet.io.safetensors");
  EMBER_CHECK(cases.has_value() && !cases->empty(), ErrorCode::kCorrupt, "no reference cases");
  return *cases;
}

// tiny_resnet.pt2 compiled to an .ep once for the whole suite.
class PackagedExample : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TestDir("e2e");
    CompileOptions options;
    options.build.time_tactics = false;
    CompileReport report;
    Pt2Archive ep = compile_program(read_pt2(example(".pt2")), options, &report);
    engines_ = report.engines.size();
    write_pt2(ep, *dir_ / "tiny_resnet.ep");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string ep() { return *dir_ / "tiny_resnet.ep"; }
  static TestDir* dir_;
  static size_t engines_;
};
TestDir* PackagedExample::dir_ = nullptr;
size_t PackagedExample::engines_ = 0;

void expect_matches_reference(const Program& program) {
  for (const ReferenceCase& c : reference_cases()) {
    SCOPED_TRACE("case " + std::to_string(c.index));
    std::vector<Tensor> outs = program.run_flat(c.inputs);
    ASSERT_EQ(outs.size(), c.outputs.size());
    for (size_t j = 0; j < outs.size(); ++j) EXPECT_TRUE(all_close(outs[j], c.outputs[j], 1e-4, 1e-4)) << j;
  }
}

TEST_F(PackagedExample, EpPackageRunsLikePyTorch) {
  ASSERT_GT(engines_, 0u);
  std::string so = *dir_ / "tiny_resnet.so";
  PackageReport r = package_program(ep(), so, {});
  EXPECT_EQ(r.engine_steps, engines_);
  Program program = Program::load(so);
  expect_matches_reference(program);
}

TEST_F(PackagedExample, Pt2PackageRunsLikePyTorch) {
  std::string so = *dir_ / "tiny_resnet_pt2.so";
  package_program(example(".pt2"), so, {});
  expect_matches_reference(Program::load(so));
}

TEST_F(PackagedExample, LinksOnlyTheEmberRuntime) {
  std::string so = *dir_ / "tiny_resnet_ldd.so";
  package_program(ep(), so, {});
  auto ldd = ember::testing::run_shell("ldd " + ember::testing::shell_quoted(so));
  ASSERT_EQ(ldd.status, 0) << ldd.output;
  EXPECT_NE(ldd.output.find("libember_runtime.so"), std::string::npos) << ldd.output;
  EXPECT_EQ(ldd.output.find("not found"), std::string::npos) << ldd.output;
  for (const char* bad : {"python", "torch", "libc10"})
    EXPECT_EQ(ldd.output.find(bad), std::string::npos) << ldd.output;
}

// The C ABI, reached through the package's own handle as a C program would.
TEST_F(PackagedExample, CAbiThroughDlopen) {
  std::string so = *dir_ / "tiny_resnet_c.so";
  package_program(ep(), so, {});
  void* handle = ::dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(handle, nullptr) << ::dlerror();
  auto sym = [&](const char* name) {
    void* p = ::dlsym(handle, name);
    EXPECT_NE(p, nullptr) << name;
    return p;
  };
  auto create =
      reinterpret_cast<ember_status (*)(const ember_model_options*, ember_model**)>(sym("ember_package_create"));
  auto last_error = reinterpret_cast<const char* (*)()>(sym("ember_last_error"));
  auto run = reinterpret_cast<decltype(&ember_model_run)>(sym("ember_model_run"));
  auto num_outputs = reinterpret_cast<decltype(&ember_result_num_outputs)>(sym("ember_result_num_outputs"));
  auto output = reinterpret_cast<decltype(&ember_result_output)>(sym("ember_result_output"));
  auto destroy_result = reinterpret_cast<decltype(&ember_result_destroy)>(sym("ember_result_destroy"));
  auto destroy_model = reinterpret_cast<decltype(&ember_model_destroy)>(sym("ember_model_destroy"));
  ASSERT_FALSE(::testing::Test::HasFailure());

  ember_model* model = nullptr;
  ASSERT_EQ(create(nullptr, &model), EMBER_OK) << last_error();
  for (const ReferenceCase& c : reference_cases()) {
    std::vector<Tensor> held;
    for (const Tensor& t : c.inputs) held.push_back(t.contiguous());
    std::vector<ember_tensor> inputs;
    for (const Tensor& in : held)
      inputs.push_back({static_cast<int32_t>(in.dtype()), static_cast<int32_t>(in.dim()), in.sizes().data(), nullptr,
                        in.raw_data()});
    ember_result* result = nullptr;
    ASSERT_EQ(run(model, inputs.data(), inputs.size(), &result), EMBER_OK) << last_error();
    size_t n = 0;
    ASSERT_EQ(num_outputs(result, &n), EMBER_OK);
    ASSERT_EQ(n, c.outputs.size());
    for (size_t j = 0; j < n; ++j) {
      ember_tensor out{};
      ASSERT_EQ(output(result, j, &out), EMBER_OK);
      Shape shape(out.sizes, out.sizes + out.ndim);
      Tensor view = Tensor::from_blob(out.data, shape, static_cast<DType>(out.dtype), nullptr);
      EXPECT_TRUE(all_close(view, c.outputs[j], 1e-4, 1e-4)) << "case " << c.index << " output " << j;
    }
    destroy_result(result);
  }
  destroy_model(model);
  ::dlclose(handle);
}

}  // namespace
}  // namespace ember::package
