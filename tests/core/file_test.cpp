#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ember/error.h"
#include "ember/file.h"

namespace ember {
namespace {

std::string write_file(const std::string& name, size_t nbytes) {
  const std::string path = testing::TempDir() + "/" + name;
  std::vector<char> bytes(nbytes);
  for (size_t i = 0; i < nbytes; ++i) bytes[i] = static_cast<char>((i * 131 + i / 4096) & 0xff);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// The VmFlags line of the /proc/self/smaps entry whose range holds `addr` ("" if none).
std::string vm_flags_of(const void* addr) {
  std::ifstream smaps("/proc/self/smaps");
  const auto a = reinterpret_cast<uintptr_t>(addr);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < line.find(' ')) {
      inside = a >= lo && a < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

bool has_flag(const std::string& vm_flags, const std::string& flag) {
  std::istringstream in(vm_flags);
  std::string word;
  while (in >> word)
    if (word == flag) return true;
  return false;
}

TEST(MapFile, MapsTheBytesReadOnly) {
  const std::string path = write_file("map_bytes.bin", (size_t{3} << 20) + 123);
  auto s = map_file_readonly(path);
  ASSERT_EQ(s->nbytes(), (size_t{3} << 20) + 123);
  EXPECT_FALSE(s->writable());
  for (size_t i : {size_t{0}, size_t{4095}, size_t{4096}, size_t{2} << 20, (size_t{3} << 20) + 122})
    EXPECT_EQ(s->data()[i], static_cast<uint8_t>((i * 131 + i / 4096) & 0xff)) << "byte " << i;
  std::remove(path.c_str());
}

TEST(MapFile, EmptyFileGivesEmptyStorage) {
  const std::string path = write_file("map_empty.bin", 0);
  EXPECT_EQ(map_file_readonly(path)->nbytes(), 0u);
  std::remove(path.c_str());
}

TEST(MapFile, ErrorsNameTheFile) {
  const std::string missing = testing::TempDir() + "/no_such_file.bin";
  try {
    map_file_readonly(missing);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  try {
    map_file_readonly(testing::TempDir());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

// Mappings of 2 MiB and more ask for transparent huge pages (the kernel shows the request
// as "hg" in the mapping's VmFlags); smaller ones do not.
TEST(MapFile, LargeMappingsRequestHugePages) {
  if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled")) GTEST_SKIP() << "no transparent huge pages here";
  const std::string big = write_file("map_big.bin", size_t{4} << 20);
  const std::string small = write_file("map_small.bin", size_t{64} << 10);
  auto b = map_file_readonly(big);
  auto s = map_file_readonly(small);
  const std::string big_flags = vm_flags_of(b->data());
  const std::string small_flags = vm_flags_of(s->data());
  ASSERT_FALSE(big_flags.empty()) << "no smaps entry for the mapping";
  ASSERT_FALSE(small_flags.empty()) << "no smaps entry for the mapping";
  EXPECT_TRUE(has_flag(big_flags, "hg")) << big_flags;
  EXPECT_FALSE(has_flag(small_flags, "hg")) << small_flags;
  std::remove(big.c_str());
  std::remove(small.c_str());
}

}  // namespace
}  // namespace ember
