// libFuzzer target for the CPU engine's plan reader: arbitrary text through plan_from_json
// (simdjson parse, then every field's type, range and cross-reference check). Only
// ember::Error may escape; anything else (crash, sanitizer report, other exception) is a
// bug. A valid plan to start from: `ember compile --standalone` any small model, then the
// "plan" section of the engine (docs/engine-format.md); plan_json.dict lists its keys.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "backends/cpu/plan.h"
#include "ember/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The weights size bounds every blob; the first byte picks a small or a large section.
  const int64_t weights_size = size > 0 && (data[0] & 1) ? int64_t{1} << 30 : 4096;
  try {
    ember::cpu::Plan plan =
        ember::cpu::plan_from_json(std::string_view(reinterpret_cast<const char*>(data), size), weights_size, "fuzz");
    (void)ember::cpu::plan_to_json(plan).dump();
  } catch (const ember::Error&) {
  }
  return 0;
}
