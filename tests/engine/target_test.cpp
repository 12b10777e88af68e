#include "ember/target.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "ember/error.h"

namespace ember {
namespace {

std::set<std::string> all_x86() {
  const auto& k = known_isa_features("x86_64");
  return {k.begin(), k.end()};
}

TEST(Target, DescriptionParser) {
  EXPECT_EQ(parse_target_description("x86_64").isa_features, all_x86());
  EXPECT_EQ(parse_target_description("x86_64").arch, "x86_64");
  EXPECT_EQ(all_x86().size(), 16u);

  auto no512 = parse_target_description("x86_64 without avx512");
  EXPECT_EQ(no512.isa_features, (std::set<std::string>{"sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "amx_tile",
                                                       "amx_int8", "amx_bf16"}));
  auto with = parse_target_description("x86_64 with avx2,fma");
  EXPECT_EQ(with.isa_features, (std::set<std::string>{"avx2", "fma"}));
  EXPECT_EQ(parse_target_description("x86_64 avx2 fma").isa_features, with.isa_features);
  EXPECT_EQ(parse_target_description("  X86_64   With  AVX2 , FMA ").isa_features, with.isa_features);
  EXPECT_EQ(parse_target_description("x86_64 without amx").isa_features.count("amx_tile"), 0u);
  EXPECT_EQ(parse_target_description("x86_64 without amx").isa_features.count("avx512f"), 1u);
  EXPECT_EQ(parse_target_description("x86_64 with avx512").isa_features.size(), 7u);
  EXPECT_EQ(parse_target_description("x86_64 without avx512 with avx512f").isa_features.count("avx512f"), 1u);
  EXPECT_TRUE(parse_target_description("x86_64 with").isa_features.empty());

  auto arm = parse_target_description("aarch64");
  EXPECT_EQ(arm.arch, "aarch64");
  EXPECT_EQ(arm.isa_features.count("neon"), 1u);
  EXPECT_EQ(parse_target_description("arm64 without sve,sve2").isa_features.count("sve"), 0u);

  auto h = parse_target_description("host without avx512f");
  EXPECT_EQ(h.arch, host_target().arch);
  EXPECT_EQ(h.isa_features.count("avx512f"), 0u);
  std::set<std::string> expected = host_target().isa_features;
  expected.erase("avx512f");
  EXPECT_EQ(h.isa_features, expected);
  EXPECT_EQ(parse_target_description("host").isa_features, host_target().isa_features);
}

TEST(Target, DescriptionErrors) {
  try {
    parse_target_description("x86_64 without avx513");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    std::string msg = e.what();
    EXPECT_NE(msg.find("avx513"), std::string::npos) << msg;
    EXPECT_NE(msg.find("avx512_vnni"), std::string::npos) << msg;  // lists the known names
    EXPECT_NE(msg.find("amx_bf16"), std::string::npos) << msg;
  }
  EXPECT_THROW(parse_target_description("sparc"), Error);
  EXPECT_THROW(parse_target_description(""), Error);
  EXPECT_THROW(parse_target_description("aarch64 with avx2"), Error);  // x86 feature on arm
  EXPECT_THROW(parse_target_description("aarch64 without avx512"), Error);
}

TEST(Target, JsonRoundTripAndValidation) {
  TargetDescriptor t = parse_target_description("x86_64 with avx2 fma");
  t.cpu_name = "Example";
  nlohmann::json j = t;
  EXPECT_EQ(j["arch"], "x86_64");
  EXPECT_EQ(j["isa_features"], nlohmann::json({"avx2", "fma"}));
  EXPECT_FALSE(j.contains("cuda"));
  EXPECT_EQ(j.get<TargetDescriptor>(), t);

  t.cuda_sm_major = 9;
  t.cuda_sm_minor = 0;
  t.cuda_device_name = "NVIDIA H100";
  j = t;
  EXPECT_EQ(j["cuda"]["sm"], "9.0");
  EXPECT_EQ(j.get<TargetDescriptor>(), t);

  // A feature unknown to this build is kept (reported missing by the compatibility check).
  auto future = nlohmann::json::parse(R"({"arch": "x86_64", "isa_features": ["avx10_2"]})").get<TargetDescriptor>();
  EXPECT_EQ(future.isa_features.count("avx10_2"), 1u);

  for (const char* bad :
       {R"([])", R"({"isa_features": []})", R"({"arch": "x86 64"})", R"({"arch": "x86_64", "isa_features": "avx2"})",
        R"({"arch": "x86_64", "isa_features": [3]})", R"({"arch": "x86_64", "cuda": {"sm": "86"}})",
        R"({"arch": "x86_64", "cuda": {"sm": "0.5"}})", R"({"arch": "x86_64", "cuda": {"sm": 8.6}})"}) {
    try {
      nlohmann::json::parse(bad).get<TargetDescriptor>();
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kCorrupt) << bad;
      EXPECT_NE(std::string(e.what()).find("target"), std::string::npos) << e.what();
    }
  }
}

// The kernel's view of the CPU (/proc/cpuinfo "flags", which also drops features the OS
// has not enabled) is an independent oracle for CPUID + XCR0 detection.
TEST(Target, HostDetectionAgreesWithProcCpuinfo) {
  const TargetDescriptor& h = host_target();
#if defined(__x86_64__)
  EXPECT_EQ(h.arch, "x86_64");
  std::ifstream in("/proc/cpuinfo");
  if (!in) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string line, flags;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  }
  if (flags.empty()) GTEST_SKIP() << "no flags line";
  for (const auto& f : known_isa_features("x86_64")) {
    // cpuinfo spells sse4_1 / sse4_2 / avx512_* / amx_* the same way; avx512f..vl too.
    bool kernel = flags.find(" " + f + " ") != std::string::npos;
    EXPECT_EQ(h.has_feature(f), kernel) << f << " (cpuinfo flags:" << flags << ")";
  }
  EXPECT_FALSE(h.cpu_name.empty());
#elif defined(__aarch64__)
  EXPECT_EQ(h.arch, "aarch64");
#endif
  // Internal consistency.
  if (h.has_feature("avx2")) {
    EXPECT_TRUE(h.has_feature("avx"));
  }
  if (h.has_feature("avx512bw")) {
    EXPECT_TRUE(h.has_feature("avx512f"));
  }
  EXPECT_EQ(&host_target(), &h);  // computed once
}

TEST(Target, TargetStr) {
  TargetDescriptor t = parse_target_description("x86_64 with fma avx2");
  EXPECT_EQ(target_str(t), "x86_64 [avx2 fma]");
  EXPECT_EQ(features_str({}), "(none)");
}

}  // namespace
}  // namespace ember
