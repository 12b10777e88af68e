// Test-only: reads one stored (uncompressed) entry of a zip file, enough to pull
// models/model.json out of the .pt2 fixtures without the archive module.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

namespace ember::testing {

inline uint32_t le32(const std::string& b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}
inline uint16_t le16(const std::string& b, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(b[at]) | (static_cast<uint8_t>(b[at + 1]) << 8));
}

// The content of the first stored entry whose name ends with `suffix`, or nullopt.
inline std::optional<std::string> read_stored_entry(const std::string& zip_path, const std::string& suffix) {
  std::ifstream in(zip_path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (b.size() < 22) return std::nullopt;
  size_t eocd = std::string::npos;
  for (size_t p = b.size() - 22 + 1; p-- > 0;) {
    if (le32(b, p) == 0x06054b50) {
      eocd = p;
      break;
    }
  }
  if (eocd == std::string::npos) return std::nullopt;
  size_t count = le16(b, eocd + 10);
  size_t cd = le32(b, eocd + 16);
  for (size_t i = 0; i < count && cd + 46 <= b.size(); ++i) {
    if (le32(b, cd) != 0x02014b50) return std::nullopt;
    uint16_t method = le16(b, cd + 10);
    uint32_t size = le32(b, cd + 24);
    size_t name_len = le16(b, cd + 28), extra_len = le16(b, cd + 30), comment_len = le16(b, cd + 32);
    uint32_t local = le32(b, cd + 42);
    std::string name = b.substr(cd + 46, name_len);
    if (method == 0 && name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      size_t data = local + 30 + le16(b, local + 26) + le16(b, local + 28);
      if (data + size > b.size()) return std::nullopt;
      return b.substr(data, size);
    }
    cd += 46 + name_len + extra_len + comment_len;
  }
  return std::nullopt;
}

}  // namespace ember::testing
