// The C ABI of libember_runtime.so: create from .pt2 / .ep / .engine, query inputs and
// outputs, run against PyTorch's reference outputs, and every error path a C caller can hit.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "compiler/compiler_test_util.h"
#include "ember/compiler.h"
#include "ember/ember.h"
#include "ember/file.h"
#include "ember/safetensors.h"

namespace ember {
namespace {

namespace fs = std::filesystem;
using ember::testing::all_close;
using ember::testing::example;
using ember::testing::fixture;

// A C view of an Ember tensor (contiguous, borrowed).
ember_tensor view_of(const Tensor& t) {
  ember_tensor v{};
  v.dtype = static_cast<int32_t>(t.dtype());
  v.ndim = static_cast<int32_t>(t.dim());
  v.sizes = t.sizes().data();
  v.strides = nullptr;
  v.data = t.raw_data();
  return v;
}

// A copy of a C result tensor as an Ember tensor.
Tensor tensor_of(const ember_tensor& v) {
  Shape sizes(v.sizes, v.sizes + v.ndim);
  Tensor view = Tensor::from_blob(v.data, sizes, static_cast<DType>(v.dtype), nullptr);
  return view.clone();
}

struct ModelDeleter {
  void operator()(ember_model* m) const { ember_model_destroy(m); }
};
using ModelPtr = std::unique_ptr<ember_model, ModelDeleter>;

ModelPtr create(const std::string& path) {
  ember_model* m = nullptr;
  ember_status s = ember_model_create(path.c_str(), nullptr, &m);
  EXPECT_EQ(s, EMBER_OK) << ember_last_error();
  return ModelPtr(m);
}

// Runs every reference case of `io_path` through the C ABI and compares with PyTorch's outputs.
void expect_cases_match(const ember_model* model, const std::string& io_path) {
  SafetensorsFile io = read_safetensors(io_path);
  auto cases = group_reference_cases(io, io_path);
  ASSERT_TRUE(cases.has_value());
  ASSERT_FALSE(cases->empty());
  for (const ReferenceCase& c : *cases) {
    SCOPED_TRACE("case " + std::to_string(c.index));
    std::vector<Tensor> inputs;
    std::vector<ember_tensor> views;
    for (const Tensor& t : c.inputs) inputs.push_back(t.contiguous());
    for (const Tensor& t : inputs) views.push_back(view_of(t));
    ember_result* r = nullptr;
    ASSERT_EQ(ember_model_run(model, views.data(), views.size(), &r), EMBER_OK) << ember_last_error();
    size_t n = 0;
    ASSERT_EQ(ember_result_num_outputs(r, &n), EMBER_OK);
    ASSERT_EQ(n, c.outputs.size());
    for (size_t j = 0; j < n; ++j) {
      ember_tensor out{};
      ASSERT_EQ(ember_result_output(r, j, &out), EMBER_OK) << ember_last_error();
      EXPECT_TRUE(all_close(tensor_of(out), c.outputs[j], 1e-4, 1e-4)) << "output " << j;
    }
    ember_result_destroy(r);
  }
}

TEST(CApi, VersionsAndStatusNames) {
  EXPECT_EQ(ember_abi_version(), static_cast<uint32_t>(EMBER_ABI_VERSION));
  EXPECT_STRNE(ember_version(), "");
  EXPECT_STREQ(ember_status_name(EMBER_OK), "ok");
  EXPECT_STREQ(ember_status_name(EMBER_ERR_CORRUPT), "corrupt");
  EXPECT_STREQ(ember_status_name(EMBER_ERR_NOT_A_MODEL), "not a model");
  EXPECT_STREQ(ember_status_name(static_cast<ember_status>(7)), "unknown status");
}

TEST(CApi, ExportedProgramWithDynamicBatchMatchesPyTorch) {
  ModelPtr m = create(fixture("mlp_dynamic_batch.pt2"));
  ASSERT_TRUE(m);
  size_t n_in = 0, n_out = 0;
  ASSERT_EQ(ember_model_num_inputs(m.get(), &n_in), EMBER_OK);
  ASSERT_EQ(ember_model_num_outputs(m.get(), &n_out), EMBER_OK);
  EXPECT_EQ(n_in, 1u);
  EXPECT_EQ(n_out, 1u);
  ember_io_info info{};
  ASSERT_EQ(ember_model_input_info(m.get(), 0, &info), EMBER_OK);
  EXPECT_EQ(info.is_tensor, 1);
  EXPECT_EQ(info.dtype, EMBER_FLOAT32);
  ASSERT_EQ(info.ndim, 2);
  EXPECT_EQ(info.dims[0].is_symbolic, 1);
  EXPECT_EQ(info.dims[0].min, 1);
  EXPECT_EQ(info.dims[0].max, 64);
  EXPECT_STRNE(info.dims[0].symbol, "");
  EXPECT_EQ(info.dims[1].is_symbolic, 0);
  EXPECT_EQ(info.dims[1].min, info.dims[1].max);
  const char* spec = nullptr;
  ASSERT_EQ(ember_model_input_spec(m.get(), &spec), EMBER_OK);
  EXPECT_NE(std::string(spec).find("builtins.tuple"), std::string::npos) << spec;
  ASSERT_EQ(ember_model_output_spec(m.get(), &spec), EMBER_OK);
  EXPECT_FALSE(std::string(spec).empty());
  expect_cases_match(m.get(), fixture("mlp_dynamic_batch.io.safetensors"));
}

TEST(CApi, PytreeOutputsComeFlattenedWithPaths) {
  ModelPtr m = create(fixture("mlp_pytree.pt2"));
  ASSERT_TRUE(m);
  size_t n_out = 0;
  ASSERT_EQ(ember_model_num_outputs(m.get(), &n_out), EMBER_OK);
  ASSERT_EQ(n_out, 3u);
  ember_io_info info{};
  ASSERT_EQ(ember_model_output_info(m.get(), 0, &info), EMBER_OK);
  EXPECT_STREQ(info.name, "out");
  ASSERT_EQ(ember_model_output_info(m.get(), 1, &info), EMBER_OK);
  EXPECT_STREQ(info.name, "aux[0]");
  expect_cases_match(m.get(), fixture("mlp_pytree.io.safetensors"));
}

class CApiCompiled : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("ember_capi_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    CompileOptions options;
    options.build.time_tactics = false;
    Pt2Archive ep = compile_program(read_pt2(example("tiny_resnet.pt2")), options, nullptr);
    write_pt2(ep, (dir_ / "tiny_resnet.ep").string());
    CompileOptions standalone = options;
    standalone.standalone = true;
    write_engine_file((dir_ / "tiny_resnet.engine").string(),
                      *compile_standalone(read_pt2(example("tiny_resnet.pt2")), standalone, nullptr));
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path dir_;
};
fs::path CApiCompiled::dir_;

TEST_F(CApiCompiled, CompiledProgramMatchesPyTorch) {
  ModelPtr m = create((dir_ / "tiny_resnet.ep").string());
  ASSERT_TRUE(m);
  expect_cases_match(m.get(), example("tiny_resnet.io.safetensors"));
}

TEST_F(CApiCompiled, StandaloneEngineMatchesPyTorch) {
  ModelPtr m = create((dir_ / "tiny_resnet.engine").string());
  ASSERT_TRUE(m);
  expect_cases_match(m.get(), example("tiny_resnet.io.safetensors"));
}

TEST_F(CApiCompiled, ConcurrentRunsGiveTheSameResult) {
  ModelPtr m = create((dir_ / "tiny_resnet.ep").string());
  ASSERT_TRUE(m);
  SafetensorsFile io = read_safetensors(example("tiny_resnet.io.safetensors"));
  auto cases = group_reference_cases(io, "io");
  ASSERT_TRUE(cases && !cases->empty());
  Tensor input = (*cases)[0].inputs[0].contiguous();
  std::vector<int> ok(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      ember_tensor v = view_of(input);
      for (int i = 0; i < 3; ++i) {
        ember_result* r = nullptr;
        if (ember_model_run(m.get(), &v, 1, &r) != EMBER_OK) return;
        ember_tensor out{};
        bool good = ember_result_output(r, 0, &out) == EMBER_OK &&
                    all_close(tensor_of(out), (*cases)[0].outputs[0], 1e-4, 1e-4);
        ember_result_destroy(r);
        if (!good) return;
      }
      ok[t] = 1;
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 1) << "thread " << t;
}

// ---------------------------------------------------------------- errors

TEST(CApiErrors, NullArgumentsAreRejected) {
  ember_model* m = reinterpret_cast<ember_model*>(0x1);
  EXPECT_EQ(ember_model_create(nullptr, nullptr, &m), EMBER_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(std::string(ember_last_error()).find("path"), std::string::npos) << ember_last_error();
  EXPECT_EQ(ember_model_create("x.pt2", nullptr, nullptr), EMBER_ERR_INVALID_ARGUMENT);
  size_t n = 0;
  EXPECT_EQ(ember_model_num_inputs(nullptr, &n), EMBER_ERR_INVALID_ARGUMENT);
  ember_result* r = nullptr;
  EXPECT_EQ(ember_model_run(nullptr, nullptr, 0, &r), EMBER_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ember_result_output(nullptr, 0, nullptr), EMBER_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ember_model_destroy(nullptr), EMBER_OK);
  EXPECT_EQ(ember_result_destroy(nullptr), EMBER_OK);
}

TEST(CApiErrors, MissingFileIsAnIoError) {
  ember_model* m = nullptr;
  EXPECT_EQ(ember_model_create("/nonexistent/model.so", nullptr, &m), EMBER_ERR_IO);
  EXPECT_NE(std::string(ember_last_error()).find("/nonexistent/model.so"), std::string::npos) << ember_last_error();
}

TEST(CApiErrors, SharedLibraryWithoutDescriptorIsNotAModel) {
  ember_model* m = nullptr;
  EXPECT_EQ(ember_model_create(EMBER_RUNTIME_LIB, nullptr, &m), EMBER_ERR_NOT_A_MODEL);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(std::string(ember_last_error()).find("ember_package_descriptor"), std::string::npos)
      << ember_last_error();
}

TEST(CApiErrors, UnknownPackageAbiVersionIsRejected) {
  ember_model* m = nullptr;
  EXPECT_EQ(ember_model_create(FAKE_PACKAGE_ABI, nullptr, &m), EMBER_ERR_VERSION_MISMATCH);
  std::string msg = ember_last_error();
  EXPECT_NE(msg.find("package ABI version 99"), std::string::npos) << msg;
  EXPECT_NE(msg.find("newer Ember"), std::string::npos) << msg;
}

TEST(CApiErrors, WrongPackageMagicIsNotAModel) {
  ember_model* m = nullptr;
  EXPECT_EQ(ember_model_create(FAKE_PACKAGE_MAGIC, nullptr, &m), EMBER_ERR_NOT_A_MODEL);
  EXPECT_NE(std::string(ember_last_error()).find("magic"), std::string::npos) << ember_last_error();
}

TEST(CApiErrors, TruncatedArchiveIsCorrupt) {
  fs::path p = fs::temp_directory_path() / ("ember_capi_truncated_" + std::to_string(::getpid()) + ".pt2");
  {
    auto bytes = map_file_readonly(fixture("mlp_pytree.pt2"));
    FILE* f = std::fopen(p.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fwrite(bytes->data(), 1, bytes->nbytes() / 2, f);
    std::fclose(f);
  }
  ember_model* m = nullptr;
  ember_status s = ember_model_create(p.c_str(), nullptr, &m);
  EXPECT_TRUE(s == EMBER_ERR_CORRUPT || s == EMBER_ERR_TRUNCATED) << ember_status_name(s);
  EXPECT_NE(std::string(ember_last_error()).find(p.string()), std::string::npos) << ember_last_error();
  fs::remove(p);
}

TEST(CApiErrors, BadOptionsAreRejected) {
  ember_model_options o{};
  o.struct_size = 0;
  ember_model* m = nullptr;
  EXPECT_EQ(ember_model_create(fixture("mlp_pytree.pt2").c_str(), &o, &m), EMBER_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ember_last_error()).find("struct_size"), std::string::npos) << ember_last_error();
  o.struct_size = sizeof o;
  o.num_threads = -2;
  EXPECT_EQ(ember_model_create(fixture("mlp_pytree.pt2").c_str(), &o, &m), EMBER_ERR_INVALID_ARGUMENT);
}

TEST(CApiErrors, WrongInputsAreRejectedBeforeRunning) {
  ModelPtr m = create(fixture("mlp_dynamic_batch.pt2"));
  ASSERT_TRUE(m);
  ember_io_info info{};
  ASSERT_EQ(ember_model_input_info(m.get(), 0, &info), EMBER_OK);
  const int64_t features = info.dims[1].min;
  std::vector<float> data(static_cast<size_t>(65 * features), 0.f);
  ember_result* r = nullptr;

  int64_t ok_sizes[2] = {4, features};
  ember_tensor t{EMBER_FLOAT32, 2, ok_sizes, nullptr, data.data()};
  ASSERT_EQ(ember_model_run(m.get(), &t, 1, &r), EMBER_OK) << ember_last_error();
  ember_result_destroy(r);

  ember_tensor wrong_dtype = t;
  wrong_dtype.dtype = EMBER_INT32;
  EXPECT_EQ(ember_model_run(m.get(), &wrong_dtype, 1, &r), EMBER_ERR_DTYPE_MISMATCH);
  EXPECT_NE(std::string(ember_last_error()).find("dtype"), std::string::npos) << ember_last_error();

  int64_t too_big[2] = {65, features};
  ember_tensor out_of_range = t;
  out_of_range.sizes = too_big;
  EXPECT_EQ(ember_model_run(m.get(), &out_of_range, 1, &r), EMBER_ERR_SHAPE_MISMATCH);
  EXPECT_NE(std::string(ember_last_error()).find("1..64"), std::string::npos) << ember_last_error();

  int64_t wrong_feature[2] = {4, features + 1};
  ember_tensor wrong_shape = t;
  wrong_shape.sizes = wrong_feature;
  EXPECT_EQ(ember_model_run(m.get(), &wrong_shape, 1, &r), EMBER_ERR_SHAPE_MISMATCH);

  EXPECT_EQ(ember_model_run(m.get(), &t, 2, &r), EMBER_ERR_INVALID_ARGUMENT);
  ember_tensor unknown_dtype = t;
  unknown_dtype.dtype = 99;
  EXPECT_EQ(ember_model_run(m.get(), &unknown_dtype, 1, &r), EMBER_ERR_DTYPE_MISMATCH);
  ember_tensor no_data = t;
  no_data.data = nullptr;
  EXPECT_EQ(ember_model_run(m.get(), &no_data, 1, &r), EMBER_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(r, nullptr);
  ember_io_info bad{};
  EXPECT_EQ(ember_model_input_info(m.get(), 5, &bad), EMBER_ERR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace ember
