#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ember/engine.h"
#include "ember/log.h"
#include "ember/version.h"
#include "engine_test_util.h"

namespace ember {
namespace {

using test::sample_engine;
using test::sample_meta;

struct Captured {
  LogLevel level;
  std::string message;
};

TargetDescriptor host(const char* description) { return parse_target_description(description); }

const CompatFinding* finding(const CompatReport& r, const std::string& what) {
  for (const auto& f : r.findings) {
    if (f.what == what) return &f;
  }
  return nullptr;
}

TEST(Compat, MatchingHostIsCompatibleWithOkRows) {
  CompatReport r = check_compatibility(sample_meta(), host("x86_64 with avx2 fma"), "model.engine");
  EXPECT_TRUE(r.compatible());
  EXPECT_EQ(r.count(CompatSeverity::kError), 0u);
  EXPECT_EQ(r.count(CompatSeverity::kWarning), 0u);
  for (const char* what : {"engine format", "Ember version", "architecture", "ISA features"}) {
    const CompatFinding* f = finding(r, what);
    ASSERT_NE(f, nullptr) << what;
    EXPECT_EQ(f->severity, CompatSeverity::kOk) << what;
  }
  EXPECT_EQ(finding(r, "ISA features")->expected, "avx2 fma");
  EXPECT_EQ(r.engine, "subgraph_0");
  EXPECT_EQ(r.source, "model.engine");
}

TEST(Compat, EmberVersionDiffersWarnsAndLoadProceeds) {
  EngineMeta m = sample_meta();
  m.ember_version = "0.0.1";
  std::vector<Captured> logs;
  ScopedLogSink sink(
      [&](LogLevel l, std::string_view msg) {
        logs.push_back({l, std::string(msg)});
      },
      LogLevel::kWarning);
  EngineView view = load_engine(sample_engine(m), "old.engine", host("x86_64 avx2 fma"));
  EXPECT_EQ(view.meta().ember_version, "0.0.1");
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].level, LogLevel::kWarning);
  for (const std::string part : {"old.engine", "subgraph_0", "Ember version", "0.0.1", EMBER_VERSION_STRING}) {
    EXPECT_NE(logs[0].message.find(part), std::string::npos) << part << " not in " << logs[0].message;
  }
  CompatReport r = check_compatibility(view.meta(), host("x86_64 avx2 fma"), "old.engine");
  EXPECT_TRUE(r.compatible());
  EXPECT_EQ(finding(r, "Ember version")->severity, CompatSeverity::kWarning);
}

TEST(Compat, MissingIsaFeatureIsAnErrorNamingIt) {
  CompatReport r = check_compatibility(sample_meta(), host("x86_64 without avx2"), "model.engine");
  EXPECT_FALSE(r.compatible());
  const CompatFinding* f = finding(r, "ISA features");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->severity, CompatSeverity::kError);
  EXPECT_EQ(f->found, "missing avx2");
  try {
    load_engine(sample_engine(), "model.engine", host("x86_64 without avx2"));
    ADD_FAILURE() << "loaded on a host without avx2";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIncompatibleTarget);
    std::string msg = e.what();
    for (const char* part : {"model.engine", "subgraph_0", "ISA features", "missing avx2"}) {
      EXPECT_NE(msg.find(part), std::string::npos) << part << " not in " << msg;
    }
  }
  r = check_compatibility(sample_meta(), host("x86_64 with sse4_1"), "model.engine");
  EXPECT_EQ(finding(r, "ISA features")->found, "missing avx2 fma");
}

TEST(Compat, ArchitectureDiffers) {
  CompatReport r = check_compatibility(sample_meta(), host("aarch64"), "model.engine");
  EXPECT_FALSE(r.compatible());
  const CompatFinding* f = finding(r, "architecture");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->severity, CompatSeverity::kError);
  EXPECT_EQ(f->expected, "x86_64");
  EXPECT_EQ(f->found, "aarch64");
  EXPECT_EQ(finding(r, "ISA features"), nullptr);  // meaningless across architectures
}

TEST(Compat, FormatVersionRows) {
  EngineMeta m = sample_meta();
  m.format_minor = kEngineFormatMinor + 1;
  CompatReport r = check_compatibility(m, host("x86_64"), "f");
  EXPECT_EQ(finding(r, "engine format")->severity, CompatSeverity::kError);
  EXPECT_EQ(finding(r, "engine format")->code, ErrorCode::kVersionMismatch);
  m.format_minor = kEngineFormatMinor;
  m.format_major = kEngineFormatMajor + 1;
  r = check_compatibility(m, host("x86_64"), "f");
  EXPECT_EQ(finding(r, "engine format")->severity, CompatSeverity::kError);
  m.format_major = kEngineFormatMajor;
  r = check_compatibility(m, host("x86_64"), "f");
  EXPECT_EQ(finding(r, "engine format")->severity, CompatSeverity::kOk);
}

TEST(Compat, AllErrorsInOneMessage) {
  EngineMeta m = sample_meta();
  m.format_minor = kEngineFormatMinor + 1;
  m.ember_version = "0.0.1";
  std::vector<Captured> logs;
  ScopedLogSink sink([&](LogLevel l, std::string_view msg) { logs.push_back({l, std::string(msg)}); });
  CompatReport r = check_compatibility(m, host("x86_64 with fma"), "model.engine");
  try {
    enforce(r);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kVersionMismatch);  // format problems dominate
    std::string msg = e.what();
    EXPECT_NE(msg.find("engine format"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing avx2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.engine"), std::string::npos) << msg;
  }
  ASSERT_EQ(logs.size(), 1u);  // the warning is still logged
  EXPECT_NE(logs[0].message.find("Ember version"), std::string::npos);
}

TEST(Compat, CudaRows) {
  EngineMeta m = sample_meta();
  m.target.cuda_sm_major = 8;
  m.target.cuda_sm_minor = 6;
  m.target.cuda_device_name = "NVIDIA A10";
  TargetDescriptor h = host("x86_64");
  CompatReport r = check_compatibility(m, h, "gpu.engine");
  EXPECT_EQ(finding(r, "CUDA SM")->severity, CompatSeverity::kError);
  EXPECT_EQ(finding(r, "CUDA SM")->found, "no CUDA device");

  h.cuda_sm_major = 8;
  h.cuda_sm_minor = 9;
  h.cuda_device_name = "NVIDIA L4";
  r = check_compatibility(m, h, "gpu.engine");
  EXPECT_EQ(finding(r, "CUDA SM")->severity, CompatSeverity::kError);
  EXPECT_EQ(finding(r, "CUDA SM")->expected, "8.6");
  EXPECT_EQ(finding(r, "CUDA SM")->found, "8.9");

  h.cuda_sm_minor = 6;
  h.cuda_device_name = "NVIDIA A10G";
  r = check_compatibility(m, h, "gpu.engine");
  EXPECT_TRUE(r.compatible());
  EXPECT_EQ(finding(r, "CUDA device")->severity, CompatSeverity::kWarning);

  h.cuda_device_name = "NVIDIA A10";
  r = check_compatibility(m, h, "gpu.engine");
  EXPECT_EQ(finding(r, "CUDA device")->severity, CompatSeverity::kOk);
  EXPECT_EQ(r.count(CompatSeverity::kWarning), 0u);
}

TEST(Compat, FormatReportAndJson) {
  CompatReport r = check_compatibility(sample_meta(), host("x86_64 without avx2"), "model.engine");
  std::string text = format_report(r);
  EXPECT_NE(text.find("model.engine: engine 'subgraph_0'"), std::string::npos) << text;
  EXPECT_NE(text.find("ERROR"), std::string::npos) << text;
  EXPECT_NE(text.find("OK"), std::string::npos) << text;
  EXPECT_NE(text.find("missing avx2"), std::string::npos) << text;
  EXPECT_NE(text.find("result: incompatible (1 error, 0 warnings)"), std::string::npos) << text;
  nlohmann::json j = report_to_json(r);
  EXPECT_EQ(j["compatible"], false);
  EXPECT_EQ(j["errors"], 1);
  bool found = false;
  for (const auto& f : j["findings"]) found |= f["severity"] == "ERROR" && f["what"] == "ISA features";
  EXPECT_TRUE(found) << j.dump();
}

TEST(Compat, CheckEnginesGradesEachEngineWithoutThrowing) {
  auto good = sample_engine();
  auto v = test::to_vector(sample_engine());
  v[v.size() - 1] ^= 0xFF;  // last byte of the last non-empty section (or padding): corrupted
  auto corrupt = test::to_storage(v);
  auto v2 = test::to_vector(sample_engine());
  test::put16(v2, 8, 3);  // format major 3: the rest is unreadable
  auto future = test::to_storage(v2);
  auto results = check_engines({{"", "a.engine", good}, {"b", "b.engine", corrupt}, {"c", "c.engine", future}},
                               host("x86_64 avx2 fma"));
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].readable);
  EXPECT_TRUE(results[0].report.compatible());
  EXPECT_EQ(results[0].name, "subgraph_0");
  EXPECT_FALSE(results[1].readable);
  EXPECT_EQ(results[1].error_code, ErrorCode::kChecksumMismatch);
  EXPECT_NE(results[1].error_message.find("corrupted"), std::string::npos);
  EXPECT_TRUE(results[2].readable);
  EXPECT_FALSE(results[2].report.compatible());
  EXPECT_EQ(results[2].report.findings.at(0).expected, "3." + std::to_string(kEngineFormatMinor));
}

}  // namespace
}  // namespace ember
