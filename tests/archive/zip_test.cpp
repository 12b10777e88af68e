#include <gtest/gtest.h>
#include <zlib.h>

#include <functional>

#include "archive/test_util.h"
#include "ember/archive.h"

namespace ember {
namespace {

using namespace ember::testing;

constexpr uint32_t kLocal = 0x04034b50;
constexpr uint32_t kCentral = 0x02014b50;

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kOk;
}

// Writes a small archive and returns its bytes.
std::vector<uint8_t> make_zip(const TempDir& dir, const std::function<void(ZipWriter&)>& fill,
                              ZipWriteOptions options = {}) {
  std::string path = dir.file("t.zip");
  ZipWriter w(path, options);
  fill(w);
  w.finish();
  return read_file(path);
}

ErrorCode read_all_code(const std::vector<uint8_t>& bytes, bool verify_crc = true) {
  return code_of([&] {
    auto z = ZipReader::from_memory(to_storage(bytes), "t.zip");
    for (const auto& e : z->entries()) z->read(e, verify_crc);
  });
}

TEST(ZipName, Rules) {
  EXPECT_EQ(zip_name_problem("a/b.json"), "");
  EXPECT_EQ(zip_name_problem("a/dir/"), "");
  EXPECT_NE(zip_name_problem(""), "");
  EXPECT_NE(zip_name_problem("/abs"), "");
  EXPECT_NE(zip_name_problem("a/../b"), "");
  EXPECT_NE(zip_name_problem(".."), "");
  EXPECT_NE(zip_name_problem("a/./b"), "");
  EXPECT_NE(zip_name_problem("a//b"), "");
  EXPECT_NE(zip_name_problem("a\\b"), "");
  EXPECT_NE(zip_name_problem("C:/x"), "");
  EXPECT_NE(zip_name_problem(std::string("a\0b", 3)), "");
}

TEST(Zip, StoredEntriesAreAlignedAndZeroCopy) {
  TempDir dir;
  auto big = pattern(1 << 20, 1), small = pattern(100, 2);
  for (size_t alignment : {64u, 4096u}) {
    std::string path = dir.file("s.zip");
    {
      ZipWriter w(path, {alignment, false});
      w.add("r/a", small);
      w.add("r/empty", std::span<const uint8_t>());
      w.add("r/odd_name_length_x", big);
      w.add("r/c", std::string_view("hello"));
      w.finish();
    }
    std::shared_ptr<Storage> kept;
    {
      auto z = ZipReader::open(path);
      ASSERT_EQ(z->entries().size(), 4u);
      EXPECT_EQ(z->entries()[0].name, "r/a");
      for (const auto& e : z->entries()) {
        EXPECT_EQ(e.data_offset % alignment, 0u) << e.name;
        EXPECT_EQ(e.method, 0);
        auto s = z->read(e, true);
        EXPECT_FALSE(s->owned());
        EXPECT_EQ(s->data(), z->file_data() + e.data_offset);  // a view into the mapping
      }
      auto s = z->read(*z->find("r/odd_name_length_x"));
      ASSERT_EQ(s->nbytes(), big.size());
      EXPECT_EQ(std::memcmp(s->data(), big.data(), big.size()), 0);
      EXPECT_EQ(z->read_string(*z->find("r/c")), "hello");
      EXPECT_EQ(z->find("r/missing"), nullptr);
      kept = z->read(*z->find("r/a"));
    }
    // The reader is gone; the view keeps the mapping alive.
    ASSERT_EQ(kept->nbytes(), small.size());
    EXPECT_EQ(std::memcmp(kept->data(), small.data(), small.size()), 0);
  }
}

TEST(Zip, CrcOfWrittenEntriesMatchesZlib) {
  TempDir dir;
  auto data = pattern(5000, 3);
  auto bytes = make_zip(dir, [&](ZipWriter& w) { w.add("r/x", data); });
  auto z = ZipReader::from_memory(to_storage(bytes), "t.zip");
  EXPECT_EQ(z->entries()[0].crc32, static_cast<uint32_t>(crc32(0, data.data(), static_cast<uInt>(data.size()))));
}

TEST(Zip, DeflatedRoundTrip) {
  TempDir dir;
  std::vector<uint8_t> text(200000);
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<uint8_t>("abcabcabd"[i % 9]);
  auto bytes = make_zip(dir, [&](ZipWriter& w) {
    w.add_deflated("r/t", text, 9);
    w.add_deflated("r/empty", std::span<const uint8_t>());
  });
  auto z = ZipReader::from_memory(to_storage(bytes), "t.zip");
  const ZipEntry* e = z->find("r/t");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->method, 8);
  EXPECT_LT(e->compressed_size, text.size() / 10);
  auto s = z->read(*e, true);
  EXPECT_TRUE(s->owned());
  ASSERT_EQ(s->nbytes(), text.size());
  EXPECT_EQ(std::memcmp(s->data(), text.data(), text.size()), 0);
  EXPECT_EQ(z->read(*z->find("r/empty"), true)->nbytes(), 0u);
}

TEST(Zip, CrcMismatchIsDetected) {
  TempDir dir;
  auto data = pattern(1000, 4);
  auto bytes = make_zip(dir, [&](ZipWriter& w) { w.add("r/x", data); });
  auto z0 = ZipReader::from_memory(to_storage(bytes), "t.zip");
  bytes[z0->entries()[0].data_offset + 10] ^= 0x40;
  auto z = ZipReader::from_memory(to_storage(bytes), "t.zip");
  EXPECT_NO_THROW(z->read(z->entries()[0], false));
  try {
    z->read(z->entries()[0], true);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kChecksumMismatch);
    EXPECT_NE(std::string(e.what()).find("r/x"), std::string::npos) << e.what();
  }
}

TEST(Zip, ForcedZip64RoundTrip) {
  TempDir dir;
  auto data = pattern(3000, 5);
  auto bytes = make_zip(
      dir,
      [&](ZipWriter& w) {
        w.add("r/a", data);
        w.add_deflated("r/b", data);
      },
      {64, true});
  // The 32-bit fields hold markers; the real values are in the zip64 records.
  EXPECT_EQ(find_sig(bytes, 0x06064b50).size(), 1u);
  EXPECT_EQ(find_sig(bytes, 0x07064b50).size(), 1u);
  size_t cd = find_sig(bytes, kCentral)[0];
  uint32_t csize;
  std::memcpy(&csize, bytes.data() + cd + 20, 4);
  EXPECT_EQ(csize, 0xFFFFFFFFu);
  auto z = ZipReader::from_memory(to_storage(bytes), "t.zip");
  ASSERT_EQ(z->entries().size(), 2u);
  for (const auto& e : z->entries()) {
    EXPECT_EQ(e.uncompressed_size, data.size());
    auto s = z->read(e, true);
    EXPECT_EQ(std::memcmp(s->data(), data.data(), data.size()), 0);
  }
  EXPECT_EQ(z->entries()[0].data_offset % 64, 0u);
}

TEST(Zip, Zip64Thresholds) {
  using namespace zip_detail;
  EXPECT_FALSE(entry_needs_zip64(0xFFFFFFFEull, 0xFFFFFFFEull, 0xFFFFFFFEull));
  EXPECT_TRUE(entry_needs_zip64(0xFFFFFFFFull, 0, 0));
  EXPECT_TRUE(entry_needs_zip64(0, uint64_t{5} << 30, 0));
  EXPECT_TRUE(entry_needs_zip64(0, 0, uint64_t{1} << 32));
  EXPECT_FALSE(eocd_needs_zip64(65534, 0xFFFFFFFEull, 0xFFFFFFFEull));
  EXPECT_TRUE(eocd_needs_zip64(65535, 0, 0));
  EXPECT_TRUE(eocd_needs_zip64(70000, 0, 0));
  EXPECT_TRUE(eocd_needs_zip64(1, uint64_t{1} << 32, 0));
  EXPECT_TRUE(eocd_needs_zip64(1, 0, 0xFFFFFFFFull));
}

TEST(Zip, ManyEntriesUseZip64EndRecords) {
  TempDir dir;
  auto bytes = make_zip(
      dir,
      [&](ZipWriter& w) {
        for (int i = 0; i < 65536; ++i) w.add("r/" + std::to_string(i), std::span<const uint8_t>());
      },
      {1, false});
  EXPECT_EQ(find_sig(bytes, 0x06064b50).size(), 1u);
  auto z = ZipReader::from_memory(to_storage(bytes), "t.zip");
  EXPECT_EQ(z->entries().size(), 65536u);
  EXPECT_NE(z->find("r/65535"), nullptr);
}

TEST(Zip, AtomicWriteLeavesDestinationOnFailure) {
  TempDir dir;
  std::string dest = dir.file("out.zip");
  write_file(dest, {'o', 'l', 'd'});
  {
    ZipWriter w(dest);
    w.add("r/a", std::string_view("x"));
    EXPECT_EQ(dir.count(), 2u);  // destination + temporary
    EXPECT_EQ(code_of([&] { w.add("r/a", std::string_view("y")); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(code_of([&] { w.add("../evil", std::string_view("y")); }), ErrorCode::kInvalidArgument);
    // Never finished: the destructor removes the temporary file.
  }
  EXPECT_EQ(read_file(dest), (std::vector<uint8_t>{'o', 'l', 'd'}));
  EXPECT_EQ(dir.count(), 1u);
  {
    ZipWriter w(dest);
    w.add("r/a", std::string_view("x"));
    w.abort();
    EXPECT_EQ(code_of([&] { w.finish(); }), ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(read_file(dest), (std::vector<uint8_t>{'o', 'l', 'd'}));
  EXPECT_EQ(dir.count(), 1u);
  // The rename fails (the destination is a non-empty folder): the temporary file goes away.
  std::filesystem::create_directory(dir.file("adir"));
  write_file(dir.file("adir/f"), {1});
  {
    ZipWriter w(dir.file("adir"));
    w.add("r/a", std::string_view("x"));
    EXPECT_EQ(code_of([&] { w.finish(); }), ErrorCode::kIo);
  }
  EXPECT_EQ(dir.count(), 2u);
  EXPECT_EQ(code_of([&] { ZipWriter w(dir.file("no/such/dir.zip")); }), ErrorCode::kIo);
  // Success replaces the destination.
  {
    ZipWriter w(dest);
    w.add("r/a", std::string_view("new"));
    w.finish();
  }
  EXPECT_EQ(ZipReader::open(dest)->read_string(*ZipReader::open(dest)->find("r/a")), "new");
  EXPECT_EQ(dir.count(), 2u);
}

TEST(ZipBad, NotAZipTruncatedEmpty) {
  EXPECT_EQ(read_all_code({}), ErrorCode::kTruncated);
  std::vector<uint8_t> text(1000, 'x');
  EXPECT_EQ(read_all_code(text), ErrorCode::kCorrupt);
  EXPECT_EQ(code_of([] { ZipReader::open("/nonexistent/file.zip"); }), ErrorCode::kIo);

  TempDir dir;
  auto data = pattern(10000, 6);
  auto bytes = make_zip(dir, [&](ZipWriter& w) {
    w.add("r/a", data);
    w.add("r/b", data);
  });
  for (size_t cut : {bytes.size() - 1, bytes.size() - 30, bytes.size() / 2, size_t{100}}) {
    std::vector<uint8_t> t(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(cut));
    ErrorCode c = read_all_code(t);
    EXPECT_TRUE(c == ErrorCode::kCorrupt || c == ErrorCode::kTruncated) << cut << " " << static_cast<int>(c);
  }
}

struct Patched {
  std::string from, to;
  ErrorCode expected;
};

TEST(ZipBad, UnsafeAndDuplicateNames) {
  TempDir dir;
  auto bytes = make_zip(dir, [&](ZipWriter& w) {
    w.add("r/xx/a", std::string_view("1"));
    w.add("r/yy/b", std::string_view("2"));
  });
  for (const Patched& p : std::vector<Patched>{{"r/xx/a", "r/../a", ErrorCode::kCorrupt},
                                               {"r/xx/a", "/r/x/a", ErrorCode::kCorrupt},
                                               {"r/xx/a", "r\\xx\\a", ErrorCode::kCorrupt},
                                               {"r/xx/a", std::string("r/x\0/a", 6), ErrorCode::kCorrupt},
                                               {"r/yy/b", "r/xx/a", ErrorCode::kCorrupt}}) {
    auto b = bytes;
    EXPECT_EQ(replace_all(b, p.from, p.to), 2);
    EXPECT_EQ(read_all_code(b), p.expected) << p.to;
  }
  // The local header disagreeing with the central directory.
  auto b = bytes;
  size_t lh = find_sig(b, kLocal)[0];
  b[lh + 30] = 'q';
  EXPECT_EQ(read_all_code(b), ErrorCode::kCorrupt);
}

TEST(ZipBad, EncryptedAndUnknownMethod) {
  TempDir dir;
  auto bytes = make_zip(dir, [&](ZipWriter& w) { w.add("r/a", std::string_view("abc")); });
  auto enc = bytes;
  size_t cd = find_sig(enc, kCentral)[0];
  put16(enc, cd + 8, 0x0801);
  EXPECT_EQ(read_all_code(enc), ErrorCode::kUnsupported);
  auto meth = bytes;
  put16(meth, cd + 10, 12);  // bzip2
  put16(meth, find_sig(meth, kLocal)[0] + 8, 12);
  EXPECT_EQ(read_all_code(meth), ErrorCode::kUnsupported);
}

TEST(ZipBad, ZipBombIsRefusedBeforeAllocation) {
  TempDir dir;
  std::vector<uint8_t> zeros(1 << 20, 0);
  auto bytes = make_zip(dir, [&](ZipWriter& w) { w.add_deflated("r/z", zeros, 9); });
  size_t cd = find_sig(bytes, kCentral)[0];
  size_t lh = find_sig(bytes, kLocal)[0];
  // Declares ~4 GiB from ~1 KiB of data.
  auto bomb = bytes;
  put32(bomb, cd + 24, 0xFFFFFFF0u);
  put32(bomb, lh + 22, 0xFFFFFFF0u);
  EXPECT_EQ(read_all_code(bomb), ErrorCode::kLimitExceeded);
  // Declares less than the stream produces: inflation stops at the declared size.
  auto less = bytes;
  put32(less, cd + 24, 1000);
  put32(less, lh + 22, 1000);
  EXPECT_EQ(read_all_code(less, false), ErrorCode::kCorrupt);
  // Declares more than the stream produces.
  auto more = bytes;
  put32(more, cd + 24, (1 << 20) + 10);
  put32(more, lh + 22, (1 << 20) + 10);
  ErrorCode c = read_all_code(more, false);
  EXPECT_TRUE(c == ErrorCode::kCorrupt || c == ErrorCode::kTruncated);
  // A declared size beyond the file for a stored entry.
  auto stored = make_zip(dir, [&](ZipWriter& w) { w.add("r/s", zeros); });
  size_t cd2 = find_sig(stored, kCentral)[0];
  put32(stored, cd2 + 20, 0x7FFFFFFF);
  put32(stored, cd2 + 24, 0x7FFFFFFF);
  EXPECT_EQ(read_all_code(stored), ErrorCode::kCorrupt);  // local header disagrees first
  put32(stored, find_sig(stored, kLocal)[0] + 18, 0x7FFFFFFF);
  put32(stored, find_sig(stored, kLocal)[0] + 22, 0x7FFFFFFF);
  EXPECT_EQ(read_all_code(stored), ErrorCode::kTruncated);
}

TEST(ZipBad, OffsetsOutsideTheFile) {
  TempDir dir;
  auto bytes = make_zip(dir, [&](ZipWriter& w) { w.add("r/a", std::string_view("abc")); });
  auto b = bytes;
  size_t cd = find_sig(b, kCentral)[0];
  put32(b, cd + 42, 0x10000000);  // local header offset
  EXPECT_EQ(read_all_code(b), ErrorCode::kCorrupt);
  auto e = bytes;
  size_t eocd = find_sig(e, 0x06054b50).back();
  put32(e, eocd + 16, 0x10000000);  // central directory offset
  EXPECT_EQ(read_all_code(e), ErrorCode::kTruncated);
  put16(e, eocd + 10, 5000);
  put16(e, eocd + 8, 5000);
  EXPECT_NE(read_all_code(e), ErrorCode::kOk);
}

}  // namespace
}  // namespace ember
