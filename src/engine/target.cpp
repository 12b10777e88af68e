#include "ember/target.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ember/error.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define EMBER_HOST_X86_64 1
#elif defined(__aarch64__)
#include <sys/auxv.h>
#if __has_include(<asm/hwcap.h>)
#include <asm/hwcap.h>
#endif
#define EMBER_HOST_AARCH64 1
#endif

namespace ember {
namespace {

const std::vector<std::string> kX86Features = {
    "sse4_1",   "sse4_2",   "avx",         "avx2",        "fma",         "f16c",     "avx512f",  "avx512bw",
    "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"};
const std::vector<std::string> kArmFeatures = {"neon", "fp16", "dotprod", "bf16", "i8mm", "sve", "sve2"};
const std::vector<std::string> kNoFeatures = {};

#if defined(EMBER_HOST_X86_64)
uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  // xgetbv with ecx = 0; only valid when CPUID reports OSXSAVE (checked by the caller).
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

bool bit(uint32_t reg, int n) { return (reg >> n) & 1u; }

void detect_x86(TargetDescriptor& t) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 1) return;
  __get_cpuid(1, &eax, &ebx, &ecx, &edx);
  const uint32_t ecx1 = ecx;
  if (bit(ecx1, 19)) t.isa_features.insert("sse4_1");
  if (bit(ecx1, 20)) t.isa_features.insert("sse4_2");

  // AVX and everything built on it need the OS to save the YMM state (XCR0 bits 1 and 2);
  // AVX-512 needs opmask + ZMM state (bits 5-7); AMX needs tile config + data (bits 17-18).
  // (Linux additionally asks a process to request AMX permission with arch_prctl before
  // first use; that is the backend's job, the feature is still present.)
  uint64_t xcr0 = bit(ecx1, 27) ? read_xcr0() : 0;  // OSXSAVE
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;

  if (os_avx && bit(ecx1, 28)) t.isa_features.insert("avx");
  if (os_avx && bit(ecx1, 12)) t.isa_features.insert("fma");
  if (os_avx && bit(ecx1, 29)) t.isa_features.insert("f16c");

  if (max_leaf >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const uint32_t max_sub = eax, ebx7 = ebx, ecx7 = ecx, edx7 = edx;
    if (os_avx && bit(ebx7, 5)) t.isa_features.insert("avx2");
    if (os_avx512) {
      if (bit(ebx7, 16)) t.isa_features.insert("avx512f");
      if (bit(ebx7, 17)) t.isa_features.insert("avx512dq");
      if (bit(ebx7, 30)) t.isa_features.insert("avx512bw");
      if (bit(ebx7, 31)) t.isa_features.insert("avx512vl");
      if (bit(ecx7, 11)) t.isa_features.insert("avx512_vnni");
      if (bit(edx7, 23)) t.isa_features.insert("avx512_fp16");
      if (max_sub >= 1) {
        __cpuid_count(7, 1, eax, ebx, ecx, edx);
        if (bit(eax, 5)) t.isa_features.insert("avx512_bf16");
      }
    }
    if (os_amx) {
      if (bit(edx7, 24)) t.isa_features.insert("amx_tile");
      if (bit(edx7, 25)) t.isa_features.insert("amx_int8");
      if (bit(edx7, 22)) t.isa_features.insert("amx_bf16");
    }
  }

  // Brand string: extended leaves 0x80000002..4, 48 bytes, NUL padded, often space padded.
  if (static_cast<unsigned>(__get_cpuid_max(0x80000000, nullptr)) >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002 + i, &eax, &ebx, &ecx, &edx);
      unsigned regs[4] = {eax, ebx, ecx, edx};
      std::memcpy(brand + 16 * i, regs, 16);
    }
    std::string name(brand);
    auto not_space = [](unsigned char c) { return !std::isspace(c); };
    name.erase(name.begin(), std::find_if(name.begin(), name.end(), not_space));
    name.erase(std::find_if(name.rbegin(), name.rend(), not_space).base(), name.end());
    t.cpu_name = name;
  }
}
#endif

#if defined(EMBER_HOST_AARCH64)
void detect_aarch64(TargetDescriptor& t) {
  // Linux reports features through the auxiliary vector.
  unsigned long hw = getauxval(AT_HWCAP);
  unsigned long hw2 = getauxval(AT_HWCAP2);
  if (hw & (1UL << 1)) t.isa_features.insert("neon");      // HWCAP_ASIMD
  if (hw & (1UL << 10)) t.isa_features.insert("fp16");     // HWCAP_ASIMDHP
  if (hw & (1UL << 20)) t.isa_features.insert("dotprod");  // HWCAP_ASIMDDP
  if (hw & (1UL << 22)) t.isa_features.insert("sve");      // HWCAP_SVE
  if (hw2 & (1UL << 1)) t.isa_features.insert("sve2");     // HWCAP2_SVE2
  if (hw2 & (1UL << 13)) t.isa_features.insert("i8mm");    // HWCAP2_I8MM
  if (hw2 & (1UL << 14)) t.isa_features.insert("bf16");    // HWCAP2_BF16
}
#endif

TargetDescriptor detect_host() {
  TargetDescriptor t;
  t.arch = build_arch();
#if defined(EMBER_HOST_X86_64)
  detect_x86(t);
#elif defined(EMBER_HOST_AARCH64)
  detect_aarch64(t);
#endif
  return t;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// "avx512" / "amx" groups, or one known feature.
std::vector<std::string> expand_feature(const std::string& arch, const std::string& word,
                                        std::string_view description) {
  const auto& known = known_isa_features(arch);
  std::vector<std::string> out;
  if (arch == "x86_64" && (word == "avx512" || word == "amx")) {
    for (const auto& f : known) {
      if (f.rfind(word, 0) == 0) out.push_back(f);
    }
    return out;
  }
  if (std::find(known.begin(), known.end(), word) != known.end()) return {word};
  fail(ErrorCode::kInvalidArgument, "target description '", description, "': unknown ", arch, " feature '", word,
       "'; known features: ", joined(known), (arch == "x86_64" ? " (groups: avx512, amx)" : ""));
}

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 32) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

}  // namespace

const char* build_arch() {
#if defined(EMBER_HOST_X86_64)
  return "x86_64";
#elif defined(EMBER_HOST_AARCH64)
  return "aarch64";
#else
  return "unknown";
#endif
}

const TargetDescriptor& host_target() {
  static const TargetDescriptor host = detect_host();
  return host;
}

const std::vector<std::string>& known_isa_features(std::string_view arch) {
  if (arch == "x86_64") return kX86Features;
  if (arch == "aarch64") return kArmFeatures;
  return kNoFeatures;
}

TargetDescriptor parse_target_description(std::string_view text) {
  std::vector<std::string> words;
  std::string current;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == ',') {
      if (!current.empty()) words.push_back(lower(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) words.push_back(lower(current));
  EMBER_CHECK(!words.empty(), ErrorCode::kInvalidArgument,
              "empty target description; expected e.g. 'x86_64', 'x86_64 without avx512', 'host with avx2,fma'");

  TargetDescriptor t;
  const std::string& first = words[0];
  bool from_host = false;
  if (first == "host") {
    t = host_target();
    from_host = true;
  } else if (first == "x86_64" || first == "x86-64" || first == "amd64" || first == "x64") {
    t.arch = "x86_64";
  } else if (first == "aarch64" || first == "arm64") {
    t.arch = "aarch64";
  } else {
    fail(ErrorCode::kInvalidArgument, "target description '", text, "': unknown architecture '", words[0],
         "'; expected x86_64, aarch64 or host");
  }
  if (!from_host) {
    // A bare architecture, or one followed by "without", describes a machine with every
    // known feature; one followed by "with" or a feature list starts from none.
    bool start_full = words.size() == 1 || words[1] == "without";
    if (start_full) {
      const auto& known = known_isa_features(t.arch);
      t.isa_features.insert(known.begin(), known.end());
    }
    t.cpu_name = "described as '" + std::string(text) + "'";
  } else {
    t.cpu_name += " (described as '" + std::string(text) + "')";
  }

  bool adding = true;
  for (size_t i = 1; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "with") {
      adding = true;
    } else if (w == "without") {
      adding = false;
    } else {
      for (const auto& f : expand_feature(t.arch, w, text)) {
        if (adding) {
          t.isa_features.insert(f);
        } else {
          t.isa_features.erase(f);
        }
      }
    }
  }
  return t;
}

std::string features_str(const std::set<std::string>& features) {
  if (features.empty()) return "(none)";
  std::string s;
  for (const auto& f : features) s += (s.empty() ? "" : " ") + f;
  return s;
}

std::string target_str(const TargetDescriptor& t) {
  std::string s = (t.arch.empty() ? std::string("(no arch)") : t.arch) + " [" +
                  (t.isa_features.empty() ? std::string() : features_str(t.isa_features)) + "]";
  if (t.has_cuda()) {
    s += cat(" cuda sm_", t.cuda_sm_major, t.cuda_sm_minor, " '", t.cuda_device_name, "'");
  }
  return s;
}

void to_json(nlohmann::json& j, const TargetDescriptor& t) {
  j = nlohmann::json::object();
  j["arch"] = t.arch;
  j["isa_features"] = std::vector<std::string>(t.isa_features.begin(), t.isa_features.end());
  j["cpu_name"] = t.cpu_name;
  if (t.has_cuda()) {
    j["cuda"] = {{"sm", cat(t.cuda_sm_major, ".", t.cuda_sm_minor)}, {"device_name", t.cuda_device_name}};
  }
}

void from_json(const nlohmann::json& j, TargetDescriptor& t) {
  EMBER_CHECK(j.is_object(), ErrorCode::kCorrupt, "target: expected a JSON object, found ", j.type_name());
  t = TargetDescriptor{};
  auto arch = j.find("arch");
  EMBER_CHECK(arch != j.end() && arch->is_string(), ErrorCode::kCorrupt, "target.arch: expected a string, found ",
              arch == j.end() ? "nothing" : arch->type_name());
  t.arch = arch->get<std::string>();
  EMBER_CHECK(valid_name(t.arch), ErrorCode::kCorrupt, "target.arch: expected a name of [a-z0-9_], found '",
              t.arch.substr(0, 64), "'");
  auto features = j.find("isa_features");
  if (features != j.end()) {
    EMBER_CHECK(features->is_array(), ErrorCode::kCorrupt, "target.isa_features: expected an array, found ",
                features->type_name());
    for (size_t i = 0; i < features->size(); ++i) {
      const auto& f = (*features)[i];
      EMBER_CHECK(f.is_string() && valid_name(f.get<std::string>()), ErrorCode::kCorrupt, "target.isa_features[", i,
                  "]: expected a feature name of [a-z0-9_] (at most 32 characters), found ", f.dump().substr(0, 64));
      t.isa_features.insert(f.get<std::string>());
    }
  }
  auto cpu = j.find("cpu_name");
  if (cpu != j.end()) {
    EMBER_CHECK(cpu->is_string(), ErrorCode::kCorrupt, "target.cpu_name: expected a string, found ", cpu->type_name());
    t.cpu_name = cpu->get<std::string>();
  }
  auto cuda = j.find("cuda");
  if (cuda != j.end() && !cuda->is_null()) {
    EMBER_CHECK(cuda->is_object(), ErrorCode::kCorrupt, "target.cuda: expected an object, found ", cuda->type_name());
    auto sm = cuda->find("sm");
    EMBER_CHECK(sm != cuda->end() && sm->is_string(), ErrorCode::kCorrupt,
                "target.cuda.sm: expected a string like \"8.6\"");
    const std::string s = sm->get<std::string>();
    int major = 0, minor = 0;
    size_t dot = s.find('.');
    bool ok = dot != std::string::npos && dot > 0 && dot <= 2 && s.size() - dot - 1 >= 1 && s.size() - dot - 1 <= 2 &&
              std::all_of(s.begin(), s.begin() + dot, ::isdigit) &&
              std::all_of(s.begin() + dot + 1, s.end(), ::isdigit);
    if (ok) {
      major = std::stoi(s.substr(0, dot));
      minor = std::stoi(s.substr(dot + 1));
      ok = major > 0;
    }
    EMBER_CHECK(ok, ErrorCode::kCorrupt, "target.cuda.sm: expected \"<major>.<minor>\" like \"8.6\", found '",
                s.substr(0, 32), "'");
    t.cuda_sm_major = major;
    t.cuda_sm_minor = minor;
    auto name = cuda->find("device_name");
    if (name != cuda->end()) {
      EMBER_CHECK(name->is_string(), ErrorCode::kCorrupt, "target.cuda.device_name: expected a string, found ",
                  name->type_name());
      t.cuda_device_name = name->get<std::string>();
    }
  }
}

}  // namespace ember
