// Target descriptors: what an engine needs from the machine that runs it, and what a
// machine offers.
//
// A CPU target is an architecture ("x86_64", "aarch64") plus a set of ISA feature names.
// In an engine's metadata the feature set lists the features the engine's kernels need
// (chosen by the builder); for a host it lists what the CPU and the operating system
// support. CUDA fields (SM version, device name) are carried for GPU engines; they are
// empty for CPU-only targets.
//
// Feature names, x86_64: sse4_1 sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512dq
// avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_int8 amx_bf16.
// aarch64: neon fp16 dotprod bf16 i8mm sve sve2.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace ember {

struct TargetDescriptor {
  std::string arch;                    // "x86_64", "aarch64"
  std::set<std::string> isa_features;  // sorted, unique
  std::string cpu_name;                // brand string; informational, never compared
  // CUDA (GPU engines only). cuda_sm_major == 0 means "no CUDA device".
  int cuda_sm_major = 0;
  int cuda_sm_minor = 0;
  std::string cuda_device_name;

  bool has_feature(std::string_view feature) const { return isa_features.count(std::string(feature)) != 0; }
  bool has_cuda() const { return cuda_sm_major > 0; }
  bool operator==(const TargetDescriptor&) const = default;
};

// The machine this process runs on: architecture, the ISA features the CPU reports and the
// OS has enabled (on x86_64: CPUID plus XCR0, so AVX / AVX-512 / AMX count only when the
// kernel saves their register state), and the CPU brand string. Computed once.
const TargetDescriptor& host_target();

// The feature names Ember knows for `arch` (empty for an unknown arch).
const std::vector<std::string>& known_isa_features(std::string_view arch);
// The architecture this build of Ember was compiled for ("x86_64", "aarch64", "unknown").
const char* build_arch();

// Parses a human description of a target, as accepted by `ember check --host`:
//   "x86_64"                     every known x86_64 feature
//   "x86_64 without avx512"      every known feature except the avx512* group
//   "x86_64 with avx2,fma"       exactly avx2 and fma
//   "x86_64 avx2 fma"            the same ("with" is implied)
//   "aarch64", "arm64"           every known aarch64 feature
//   "host", "host without avx512f", "host with amx"   start from host_target()
// Group names: "avx512" = every avx512* feature, "amx" = every amx_* feature. Words are
// separated by spaces or commas; "with" and "without" switch between adding and removing.
// A named architecture followed by "with" (or a bare list) starts from no features,
// otherwise from all of them. Throws ember::Error(kInvalidArgument) for an unknown
// architecture or feature name, listing the known ones.
TargetDescriptor parse_target_description(std::string_view text);

// One line: "x86_64 [avx avx2 fma]" (+ " cuda sm_86 'NVIDIA ...'" when set).
std::string target_str(const TargetDescriptor& target);
// Space-separated feature list, "(none)" when empty.
std::string features_str(const std::set<std::string>& features);

// JSON form used in engine metadata:
//   {"arch": "x86_64", "isa_features": ["avx2", "fma"], "cpu_name": "...",
//    "cuda": {"sm": "8.6", "device_name": "..."}}     ("cuda" only when has_cuda())
// from_json checks types and spelling (names are [a-z0-9_], at most 32 characters) and throws
// ember::Error(kCorrupt) naming the field. Feature names unknown to this build are kept: an
// engine from a newer Ember may need a feature this one cannot detect, which the
// compatibility check then reports as missing.
void to_json(nlohmann::json& j, const TargetDescriptor& target);
void from_json(const nlohmann::json& j, TargetDescriptor& target);

}  // namespace ember
