// libFuzzer target for the engine reader: arbitrary bytes through EngineView::parse at both
// verification levels, then the compatibility check and every section view. Only
// ember::Error may escape the parser; anything else (crash, sanitizer report, other
// exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ember/engine.h"

namespace {

void exercise(const std::shared_ptr<ember::Storage>& bytes, ember::EngineVerification level) {
  try {
    ember::EngineView view = ember::EngineView::parse(bytes, "fuzz.engine", level);
    uint64_t sum = 0;
    for (const auto& info : view.sections()) {
      auto s = view.section(info.name);
      if (s->nbytes() > 0) sum += s->data()[0] + s->data()[s->nbytes() - 1];
      try {
        view.verify_section(info.name);
      } catch (const ember::Error&) {
      }
    }
    (void)sum;
    static const ember::TargetDescriptor host = ember::parse_target_description("x86_64 without avx512");
    ember::CompatReport r = ember::check_compatibility(view.meta(), host, view.source());
    (void)ember::format_report(r);
    (void)ember::report_to_json(r).dump();
    (void)ember::meta_to_json(view.meta()).dump();
  } catch (const ember::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = ember::Storage::allocate(size);
  if (size > 0) std::memcpy(bytes->data(), data, size);
  exercise(bytes, ember::EngineVerification::kMinimal);
  exercise(bytes, ember::EngineVerification::kFull);
  try {
    (void)ember::check_engines({{"", "fuzz.engine", bytes}}, ember::host_target());
  } catch (const ember::Error&) {
  }
  return 0;
}
