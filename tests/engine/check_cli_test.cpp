// Runs the built `ember check` on engine files written by EngineWriter.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "ember/engine.h"
#include "engine_test_util.h"

namespace ember {
namespace {

namespace fs = std::filesystem;

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout + stderr
};

RunResult run_ember(const std::string& args) {
  std::string cmd = std::string(EMBER_BINARY_DIR) + "/tools/ember " + args + " 2>&1";
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class CheckCli : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(testing::TempDir()) / ("ember_check_cli_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    engine_ = (dir_ / "model.engine").string();
    EngineWriter w;
    w.set_meta(test::sample_meta());  // x86_64, requires avx2 + fma
    w.add_section("plan", test::pattern(100, 1));
    w.add_section("weights", test::pattern(1000, 2));
    w.write_to_file(engine_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write_bytes(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return path;
  }
  fs::path dir_;
  std::string engine_;
};

TEST_F(CheckCli, CompatibleHost) {
  RunResult r = run_ember("check " + engine_ + " --host 'x86_64 with avx2,fma'");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("engine 'subgraph_0'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("OK"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("result: compatible"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("ERROR"), std::string::npos) << r.out;
}

TEST_F(CheckCli, HostWithoutRequiredFeature) {
  RunResult r = run_ember("check " + engine_ + " --host 'x86_64 without avx2'");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("ERROR"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("missing avx2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("result: incompatible"), std::string::npos) << r.out;

  r = run_ember("check " + engine_ + " --host 'x86_64 without avx512'");  // avx512 is not needed
  EXPECT_EQ(r.exit_code, 0) << r.out;
  r = run_ember("check " + engine_ + " --host aarch64");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("architecture"), std::string::npos) << r.out;
}

TEST_F(CheckCli, JsonReport) {
  RunResult r = run_ember("check " + engine_ + " --host 'x86_64 with fma' --json");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["result"], "incompatible");
  ASSERT_EQ(j["engines"].size(), 1u);
  EXPECT_EQ(j["engines"][0]["engine"], "subgraph_0");
  EXPECT_EQ(j["engines"][0]["errors"], 1);
  EXPECT_EQ(j["host"]["isa_features"], nlohmann::json({"fma"}));
}

TEST_F(CheckCli, CorruptedEngineExits2) {
  auto bytes = test::to_vector(map_file_readonly(engine_));
  size_t i = test::find_record(bytes, "weights");
  bytes[test::get64(bytes, test::record(i) + 24) + 10] ^= 0x80;
  std::string bad = write_bytes("bad.engine", bytes);
  RunResult r = run_ember("check " + bad + " --host x86_64");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("corrupted"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("weights"), std::string::npos) << r.out;

  r = run_ember("check " + bad + " --host x86_64 --json");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["result"], "unreadable");
  EXPECT_EQ(j["engines"][0]["error"]["code"], "checksum mismatch");
}

TEST_F(CheckCli, NotAnEngineAndBadArguments) {
  std::string text = write_bytes("notes.txt", {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '!'});
  RunResult r = run_ember("check " + text);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("not an Ember engine"), std::string::npos) << r.out;

  r = run_ember("check " + engine_ + " --host 'x86_64 without avx9'");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown x86_64 feature 'avx9'"), std::string::npos) << r.out;

  r = run_ember("check " + (dir_ / "absent.engine").string());
  EXPECT_EQ(r.exit_code, 2) << r.out;
}

TEST_F(CheckCli, DetectedHost) {
  // Whatever this machine is, the answer is consistent with the library's verdict.
  auto results = check_engines({{"", engine_, map_file_readonly(engine_)}}, host_target());
  RunResult r = run_ember("check " + engine_);
  EXPECT_EQ(r.exit_code, results[0].report.compatible() ? 0 : 1) << r.out;
}

}  // namespace
}  // namespace ember
