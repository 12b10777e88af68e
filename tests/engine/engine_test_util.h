// Helpers shared by the engine tests: a sample engine and byte-level patching that follows
// the documented layout (docs/engine-format.md) independently of the reader.
#pragma once

#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ember/engine.h"
#include "ember/version.h"

namespace ember::test {

inline EngineMeta sample_meta() {
  EngineMeta m;
  m.name = "subgraph_0";
  m.ember_version = EMBER_VERSION_STRING;
  m.backend = "cpu";
  m.target.arch = "x86_64";
  m.target.isa_features = {"avx2", "fma"};
  m.target.cpu_name = "Example CPU";
  m.build_settings = {{"precision", "fp32"}, {"max_workspace", 1 << 20}};
  m.inputs = {{"x", DType::kFloat32, {{1, 8, "s0"}, {3, 3, ""}}}, {"idx", DType::kInt64, {{0, kDimUnbounded, "s1"}}}};
  m.outputs = {{"y", DType::kFloat16, {{1, 8, "s0"}, {10, 10, ""}}}};
  return m;
}

inline std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 31);
  return v;
}

// meta + plan (100 bytes) + weights (1000 bytes) + "extra" (0 bytes).
inline std::shared_ptr<Storage> sample_engine(const EngineMeta& meta = sample_meta()) {
  EngineWriter w;
  w.set_meta(meta);
  auto plan = pattern(100, 1);
  auto weights = pattern(1000, 7);
  w.add_section("plan", plan);
  w.add_section("weights", weights);
  w.add_section("extra", std::span<const uint8_t>());
  return w.write_to_storage();
}

inline std::vector<uint8_t> to_vector(const std::shared_ptr<Storage>& s) {
  return std::vector<uint8_t>(s->data(), s->data() + s->nbytes());
}

// Copies bytes into a fresh 64-byte aligned Storage.
inline std::shared_ptr<Storage> to_storage(const std::vector<uint8_t>& v) {
  auto s = Storage::allocate(v.size());
  if (!v.empty()) std::memcpy(s->data(), v.data(), v.size());
  return s;
}

inline uint64_t get64(const std::vector<uint8_t>& b, size_t off) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[off + i];
  return v;
}
inline uint32_t get32(const std::vector<uint8_t>& b, size_t off) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | b[off + i];
  return v;
}
inline void put64(std::vector<uint8_t>& b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v);
  b[off + 1] = static_cast<uint8_t>(v >> 8);
}

// Section record i lives at 64 + 64 * i (v1.0 header size).
inline size_t record(size_t i) { return 64 + 64 * i; }
inline std::string record_name(const std::vector<uint8_t>& b, size_t i) {
  return std::string(reinterpret_cast<const char*>(&b[record(i)]));
}
inline size_t find_record(const std::vector<uint8_t>& b, const std::string& name) {
  uint32_t count = get32(b, 16);
  for (size_t i = 0; i < count; ++i) {
    if (record_name(b, i) == name) return i;
  }
  return SIZE_MAX;
}

// Recomputes every section checksum and the header checksum (after a deliberate edit),
// so the reader's structural checks are what a test exercises.
// Recomputes the header checksum only (over the header and the section table).
inline void reseal_header(std::vector<uint8_t>& b) {
  uint32_t count = get32(b, 16);
  size_t table_end = 64 + 64 * static_cast<size_t>(count);
  if (table_end > b.size()) table_end = b.size();
  std::vector<uint8_t> copy(b.begin(), b.begin() + table_end);
  put64(copy, 32, 0);
  put64(b, 32, XXH3_64bits(copy.data(), copy.size()));
}

// Recomputes every section checksum (chunked where the section's flag says so) and then the
// header checksum.
inline void reseal(std::vector<uint8_t>& b) {
  uint32_t count = get32(b, 16);
  for (size_t i = 0; i < count; ++i) {
    uint64_t off = get64(b, record(i) + 24), size = get64(b, record(i) + 32);
    if (off > b.size() || size > b.size() - off) continue;
    uint64_t sum = XXH3_64bits(b.data() + off, size);
    if (get32(b, record(i) + 48) & 1) {  // chunked (format 1.2)
      std::vector<uint8_t> digests;
      for (uint64_t at = 0; at < size; at += uint64_t{1} << 20) {
        digests.resize(digests.size() + 8);
        put64(digests, digests.size() - 8, XXH3_64bits(b.data() + off + at, std::min(uint64_t{1} << 20, size - at)));
      }
      sum = XXH3_64bits(digests.data(), digests.size());
    }
    put64(b, record(i) + 40, sum);
  }
  reseal_header(b);
}

}  // namespace ember::test
