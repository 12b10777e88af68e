// libFuzzer target for the engine reader: arbitrary bytes through EngineView::parse at both
// verification levels, then the compatibility check and every section view. Only
// ember::Error may escape the parser; anything else (crash, sanitizer report, other
// exception) is a bug.
//
// Mutated bytes almost never pass the checksums, which would keep the fuzzer in front of
// the layout and JSON checks; so when the first input byte is odd the rest is "resealed"
// first (every in-bounds section checksum and the header checksum recomputed), as a writer
// would, and the structural checks behind the checksums get fuzzed too.
#include <xxhash.h>

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

uint64_t rd(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
void wr64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Recomputes checksums following the v1 layout (docs/engine-format.md), bounds-checked.
void reseal(uint8_t* b, size_t n) {
  if (n < 64) return;
  const uint64_t header_size = rd(b + 12, 4), count = rd(b + 16, 4);
  if (header_size < 40 || header_size > n || count > (n - header_size) / 64) return;
  for (uint64_t i = 0; i < count; ++i) {
    uint8_t* rec = b + header_size + 64 * i;
    const uint64_t off = rd(rec + 24, 8), len = rd(rec + 32, 8);
    if (off <= n && len <= n - off) wr64(rec + 40, XXH3_64bits(b + off, len));
  }
  wr64(b + 32, 0);
  wr64(b + 32, XXH3_64bits(b, header_size + 64 * count));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool resealed = size > 0 && (data[0] & 1);
  if (size > 0) {
    ++data;
    --size;
  }
  auto bytes = ember::Storage::allocate(size);
  if (size > 0) std::memcpy(bytes->data(), data, size);
  if (resealed) reseal(bytes->data(), size);
  exercise(bytes, ember::EngineVerification::kMinimal);
  exercise(bytes, ember::EngineVerification::kFull);
  try {
    (void)ember::check_engines({{"", "fuzz.engine", bytes}}, ember::host_target());
  } catch (const ember::Error&) {
  }
  return 0;
}
