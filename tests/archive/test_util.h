// Helpers shared by the archive tests: temporary folders, file bytes, byte patching.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "ember/tensor.h"

namespace ember::testing {

inline std::string fixture(const std::string& name) { return std::string(EMBER_FIXTURES_DIR) + "/" + name; }

inline const std::vector<std::string>& fixture_names() {
  static const std::vector<std::string> names = {"mlp_pytree",        "cnn_small", "cnn_small_core_aten",
                                                 "transformer_layer", "mlp_dynamic_batch", "resnet18",
                                                 "execute_engine_reference"};
  return names;
}

// A fresh empty folder, removed with its contents at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ember_archive_test.XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    EXPECT_NE(mkdtemp(buf.data()), nullptr);
    path_ = buf.data();
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }
  size_t count() const {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(path_)) ++n;
    return n;
  }

 private:
  std::string path_;
};

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline std::shared_ptr<Storage> to_storage(const std::vector<uint8_t>& bytes) {
  auto s = Storage::allocate(bytes.size());
  if (!bytes.empty()) std::memcpy(s->data(), bytes.data(), bytes.size());
  return s;
}

// Replaces every occurrence of `from` with `to` (same length); returns the count.
inline int replace_all(std::vector<uint8_t>& bytes, const std::string& from, const std::string& to) {
  EXPECT_EQ(from.size(), to.size());
  int n = 0;
  for (size_t i = 0; i + from.size() <= bytes.size(); ++i) {
    if (std::memcmp(bytes.data() + i, from.data(), from.size()) == 0) {
      std::memcpy(bytes.data() + i, to.data(), to.size());
      ++n;
    }
  }
  return n;
}

// Offsets of every occurrence of a 4-byte little-endian signature.
inline std::vector<size_t> find_sig(const std::vector<uint8_t>& bytes, uint32_t sig) {
  std::vector<size_t> out;
  for (size_t i = 0; i + 4 <= bytes.size(); ++i) {
    uint32_t v;
    std::memcpy(&v, bytes.data() + i, 4);
    if (v == sig) out.push_back(i);
  }
  return out;
}
inline void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }
inline void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) { std::memcpy(b.data() + at, &v, 2); }

inline std::span<const uint8_t> span_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace ember::testing
