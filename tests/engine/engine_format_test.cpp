#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ember/engine.h"
#include "ember/version.h"
#include "engine_test_util.h"

namespace ember {
namespace {

// "1.1": the format version this build writes.
std::string current_version() { return std::to_string(kEngineFormatMajor) + "." + std::to_string(kEngineFormatMinor); }


using test::find_record;
using test::get32;
using test::get64;
using test::record;
using test::reseal;
using test::sample_engine;
using test::sample_meta;
using test::to_storage;
using test::to_vector;

// Expects `fn` to throw ember::Error with `code` and every string of `parts` in its message.
template <typename Fn>
void expect_error(Fn&& fn, ErrorCode code, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected ember::Error(" << error_code_name(code) << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
  }
}

EngineView parse_vec(const std::vector<uint8_t>& v, EngineVerification level = EngineVerification::kFull) {
  return EngineView::parse(to_storage(v), "model.engine", level);
}

TEST(EngineFormat, RoundTrip) {
  auto bytes = sample_engine();
  EngineView view = EngineView::parse(bytes, "model.engine");
  const EngineMeta& m = view.meta();
  EngineMeta want = sample_meta();
  EXPECT_EQ(m.name, want.name);
  EXPECT_EQ(m.backend, "cpu");
  EXPECT_EQ(m.ember_version, EMBER_VERSION_STRING);
  EXPECT_EQ(m.format_major, 1);
  EXPECT_EQ(m.format_minor, kEngineFormatMinor);
  EXPECT_EQ(m.target, want.target);
  EXPECT_EQ(m.build_settings, want.build_settings);
  EXPECT_EQ(m.inputs, want.inputs);
  EXPECT_EQ(m.outputs, want.outputs);
  EXPECT_EQ(m.inputs[1].shape[0].max, kDimUnbounded);

  ASSERT_EQ(view.sections().size(), 4u);
  EXPECT_EQ(view.sections()[0].name, "meta");
  EXPECT_EQ(view.sections()[1].name, "plan");
  EXPECT_EQ(view.sections()[2].name, "weights");
  EXPECT_EQ(view.sections()[3].name, "extra");
  auto plan = view.section("plan");
  auto weights = view.section("weights");
  EXPECT_EQ(std::vector<uint8_t>(plan->data(), plan->data() + plan->nbytes()), test::pattern(100, 1));
  EXPECT_EQ(std::vector<uint8_t>(weights->data(), weights->data() + weights->nbytes()), test::pattern(1000, 7));
  EXPECT_EQ(view.section("extra")->nbytes(), 0u);
  EXPECT_FALSE(plan->writable());
  EXPECT_TRUE(view.has_section("weights"));
  EXPECT_FALSE(view.has_section("nope"));
  expect_error([&] { view.section("nope"); }, ErrorCode::kNotFound, {"model.engine", "nope", "plan, weights"});
}

TEST(EngineFormat, ByteLayoutMatchesTheDocument) {
  auto v = to_vector(sample_engine());
  EXPECT_EQ(std::string(v.begin(), v.begin() + 8), "EMBERENG");
  EXPECT_EQ(v[8] | (v[9] << 8), 1);    // major
  EXPECT_EQ(v[10] | (v[11] << 8), kEngineFormatMinor);  // minor
  EXPECT_EQ(get32(v, 12), 64u);        // header size
  EXPECT_EQ(get32(v, 16), 4u);         // section count
  EXPECT_EQ(get32(v, 20), 0u);         // flags
  EXPECT_EQ(get64(v, 24), v.size());   // file size
  for (size_t i = 40; i < 64; ++i) EXPECT_EQ(v[i], 0) << i;
  // Header checksum: XXH3-64 over header + table with the field zeroed.
  std::vector<uint8_t> head(v.begin(), v.begin() + 64 + 4 * 64);
  test::put64(head, 32, 0);
  EXPECT_EQ(get64(v, 32), XXH3_64bits(head.data(), head.size()));
  uint64_t prev_end = 64 + 4 * 64;
  for (size_t i = 0; i < 4; ++i) {
    uint64_t off = get64(v, record(i) + 24), size = get64(v, record(i) + 32);
    EXPECT_EQ(off % 64, 0u);
    EXPECT_GE(off, prev_end);
    EXPECT_EQ(get64(v, record(i) + 40), XXH3_64bits(v.data() + off, size));
    EXPECT_EQ(get32(v, record(i) + 52), 64u);
    prev_end = off + size;
  }
  // meta is JSON text.
  uint64_t off = get64(v, record(0) + 24), size = get64(v, record(0) + 32);
  auto j = nlohmann::json::parse(v.begin() + off, v.begin() + off + size);
  EXPECT_EQ(j["format_version"], current_version());
  EXPECT_EQ(j["target"]["isa_features"], nlohmann::json({"avx2", "fma"}));
  EXPECT_EQ(j["inputs"][0]["shape"][0], nlohmann::json({{"min", 1}, {"max", 8}, {"symbol", "s0"}}));
  EXPECT_TRUE(j["inputs"][1]["shape"][0]["max"].is_null());
}

TEST(EngineFormat, ZeroCopySectionsKeepTheStorageAlive) {
  auto bytes = sample_engine();
  const uint8_t* base = bytes->data();
  std::shared_ptr<Storage> plan;
  {
    EngineView view = EngineView::parse(bytes, "model.engine");
    EXPECT_EQ(view.storage().get(), bytes.get());
    plan = view.section("plan");
    const auto& info = view.sections()[1];
    EXPECT_EQ(plan->data(), base + info.offset);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(plan->data()) % 64, 0u);
  }
  std::weak_ptr<Storage> weak = bytes;
  bytes.reset();
  EXPECT_FALSE(weak.expired());  // the section view holds it
  EXPECT_EQ(std::vector<uint8_t>(plan->data(), plan->data() + plan->nbytes()), test::pattern(100, 1));
  plan.reset();
  EXPECT_TRUE(weak.expired());
}

TEST(EngineFormat, MisalignedBufferIsCopiedSoSectionsStayAligned) {
  auto v = to_vector(sample_engine());
  auto big = Storage::allocate(v.size() + 1);
  std::memcpy(big->data() + 1, v.data(), v.size());
  auto slice = Storage::borrow(big->data() + 1, v.size(), big);
  EngineView view = EngineView::parse(slice, "slice");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(view.section("weights")->data()) % 64, 0u);
}

TEST(EngineFormat, LargerSectionAlignment) {
  EngineWriter w;
  w.set_meta(sample_meta());
  auto data = test::pattern(10, 3);
  w.add_section("paged", data, 4096);
  auto v = to_vector(w.write_to_storage());
  size_t i = find_record(v, "paged");
  EXPECT_EQ(get64(v, record(i) + 24) % 4096, 0u);
  EXPECT_EQ(get32(v, record(i) + 52), 4096u);
  EngineView view = parse_vec(v);  // heap base is only 64-aligned: the reader realigns
  EXPECT_EQ(reinterpret_cast<uintptr_t>(view.section("paged")->data()) % 4096, 0u);
}

TEST(EngineFormat, WriteToFileIsAtomicAndReadable) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(testing::TempDir()) / ("engine_write_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::string path = (dir / "model.engine").string();
  { std::ofstream(path) << "old content"; }
  EngineWriter w;
  w.set_meta(sample_meta());
  w.add_section("plan", test::pattern(100, 1));
  w.write_to_file(path);
  EngineView view = EngineView::open(path);
  EXPECT_EQ(view.source(), path);
  EXPECT_EQ(view.meta().name, "subgraph_0");
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);  // no temporary left behind
  expect_error([&] { w.write_to_file((dir / "missing_dir" / "x.engine").string()); }, ErrorCode::kIo, {"missing_dir"});
  expect_error([&] { EngineView::open((dir / "absent.engine").string()); }, ErrorCode::kIo, {"absent.engine"});
  fs::remove_all(dir);
}

TEST(EngineFormat, WriterRejectsBadInput) {
  EngineWriter w;
  expect_error([&] { w.write_to_storage(); }, ErrorCode::kInvalidArgument, {"set_meta"});
  std::vector<uint8_t> d(4);
  expect_error([&] { w.add_section("meta", d); }, ErrorCode::kInvalidArgument, {"reserved"});
  expect_error([&] { w.add_section("", d); }, ErrorCode::kInvalidArgument, {"empty"});
  expect_error([&] { w.add_section("Upper", d); }, ErrorCode::kInvalidArgument, {"a-z0-9"});
  expect_error([&] { w.add_section("a_name_that_is_far_too_long", d); }, ErrorCode::kInvalidArgument, {"longer"});
  expect_error([&] { w.add_section("plan", d, 3); }, ErrorCode::kInvalidArgument, {"power of two"});
  expect_error([&] { w.add_section("plan", d, 8192); }, ErrorCode::kInvalidArgument, {"power of two"});
  w.add_section("plan", d);
  expect_error([&] { w.add_section("plan", d); }, ErrorCode::kInvalidArgument, {"twice"});
  EngineMeta m = sample_meta();
  m.inputs[0].shape[0] = {5, 2, ""};
  expect_error([&] { w.set_meta(m); }, ErrorCode::kInvalidArgument, {"'x'", "min 5"});
  m = sample_meta();
  m.build_settings = nlohmann::json::array();
  expect_error([&] { w.set_meta(m); }, ErrorCode::kInvalidArgument, {"build_settings"});
}

// ---------------------------------------------------------------- malformed input

TEST(EngineFormat, EveryTruncationIsRejected) {
  auto v = to_vector(sample_engine());
  for (size_t len = 0; len < v.size(); ++len) {
    std::vector<uint8_t> cut(v.begin(), v.begin() + len);
    try {
      parse_vec(cut);
      ADD_FAILURE() << "length " << len << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kTruncated) << "length " << len << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("model.engine"), std::string::npos);
    }
  }
  // The boundaries name what is missing.
  expect_error([&] { parse_vec({v.begin(), v.begin() + 40}); }, ErrorCode::kTruncated, {"header", "64", "40"});
  expect_error([&] { parse_vec({v.begin(), v.begin() + 64 + 64}); }, ErrorCode::kTruncated, {"section table"});
  expect_error(
      [&] {
        parse_vec({v.begin(), v.end() - 1});
      },
      ErrorCode::kTruncated, {"header says " + std::to_string(v.size())});
}

TEST(EngineFormat, TrailingBytesAreRejected) {
  auto v = to_vector(sample_engine());
  v.push_back(0);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"trailing"});
}

TEST(EngineFormat, BadMagic) {
  auto v = to_vector(sample_engine());
  v[3] = 'X';
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"model.engine", "not an Ember engine", "EMBXRENG"});
  std::vector<uint8_t> zip = {'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0, 0, 0};
  expect_error([&] { parse_vec(zip); }, ErrorCode::kCorrupt, {"not an Ember engine"});
  expect_error([&] { parse_vec({'E', 'M', 'B'}); }, ErrorCode::kTruncated, {"truncated"});
}

TEST(EngineFormat, FlippedSectionBytesAreReportedAsCorrupted) {
  auto v = to_vector(sample_engine());
  for (const char* name : {"meta", "plan", "weights"}) {
    size_t i = find_record(v, name);
    uint64_t off = get64(v, record(i) + 24), size = get64(v, record(i) + 32);
    for (uint64_t pos : {off, off + size / 2, off + size - 1}) {
      auto bad = v;
      bad[pos] ^= 0x10;
      expect_error([&] { parse_vec(bad); }, ErrorCode::kChecksumMismatch,
                   {"model.engine", std::string("section '") + name + "'", "corrupted"});
    }
  }
  // kMinimal skips the plan and weights checksums, but verify_section() catches them later.
  size_t i = find_record(v, "weights");
  auto bad = v;
  bad[get64(v, record(i) + 24) + 5] ^= 1;
  EngineView view = parse_vec(bad, EngineVerification::kMinimal);
  view.verify_section("plan");
  expect_error([&] { view.verify_section("weights"); }, ErrorCode::kChecksumMismatch, {"weights", "corrupted"});
}

TEST(EngineFormat, EveryFlippedByteIsDetected) {
  auto v = to_vector(sample_engine());
  for (size_t pos = 0; pos < v.size(); ++pos) {
    auto bad = v;
    bad[pos] ^= 0x01;
    try {
      parse_vec(bad);
      ADD_FAILURE() << "flip at byte " << pos << " not detected";
    } catch (const Error& e) {
      if (pos < 8) {
        EXPECT_EQ(e.code(), ErrorCode::kCorrupt) << pos << ": " << e.what();  // magic
      } else if (pos < 20) {
        // Version, header size and section count are read before the checksum can be.
        EXPECT_NE(e.code(), ErrorCode::kOk) << pos;
      } else {
        // Everything after is covered by a checksum (or must be zero padding).
        EXPECT_EQ(e.code(), ErrorCode::kChecksumMismatch) << pos << ": " << e.what();
        EXPECT_NE(std::string(e.what()).find("corrupted"), std::string::npos) << e.what();
      }
    }
  }
}

TEST(EngineFormat, HeaderFlipIsCorrupted) {
  auto v = to_vector(sample_engine());
  v[24] ^= 0x40;  // file size
  expect_error([&] { parse_vec(v); }, ErrorCode::kChecksumMismatch, {"header", "corrupted"});
}

TEST(EngineFormat, OverlappingSections) {
  auto v = to_vector(sample_engine());
  size_t plan = find_record(v, "plan"), weights = find_record(v, "weights");
  test::put64(v, record(weights) + 24, get64(v, record(plan) + 24));  // weights starts where plan starts
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"overlap", "plan", "weights"});
}

TEST(EngineFormat, SectionOverlappingTheTable) {
  auto v = to_vector(sample_engine());
  test::put64(v, record(1) + 24, 64);
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"section 'plan'", "overlaps the header"});
}

TEST(EngineFormat, MisalignedSection) {
  auto v = to_vector(sample_engine());
  test::put64(v, record(1) + 24, get64(v, record(1) + 24) + 8);
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"section 'plan'", "multiple of its alignment 64"});
  v = to_vector(sample_engine());
  test::put32(v, record(1) + 52, 48);
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"alignment", "found 48"});
}

TEST(EngineFormat, HugeSizesAndCounts) {
  const auto orig = to_vector(sample_engine());
  auto v = orig;
  test::put64(v, record(2) + 32, uint64_t{1} << 62);
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"section 'weights'", "outside the engine"});
  v = orig;
  test::put64(v, record(2) + 24, ~uint64_t{63});  // offset + size overflows
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"section 'weights'", "outside"});
  v = orig;
  test::put32(v, 16, 0xFFFFFFFFu);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"section count", "4294967295"});
  v = orig;
  test::put32(v, 16, 0);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"section count", "found 0"});
  v = orig;
  test::put32(v, 16, 4000);  // plausible count, table runs past the end
  expect_error([&] { parse_vec(v); }, ErrorCode::kTruncated, {"section table", "4000 sections"});
  v = orig;
  test::put64(v, 24, uint64_t{1} << 60);
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kTruncated, {"header says"});
  v = orig;
  test::put32(v, 12, 1 << 30);
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"header size", "expected 64"});
}

TEST(EngineFormat, BadSectionTableEntries) {
  const auto orig = to_vector(sample_engine());
  auto v = orig;
  std::memcpy(&v[record(1)], "meta", 4);  // "plan" -> duplicate "meta"
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"section 'meta'", "twice"});
  v = orig;
  v[record(1)] = 'P';
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"section table entry 1", "Plan"});
  v = orig;
  std::memset(&v[record(1)], 'a', 24);
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"NUL"});
  v = orig;
  test::put32(v, record(1) + 48, 2);  // bit 0 (chunked checksum) is defined since 1.2; bit 1 is not
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"flags", "0 or 1 (chunked checksum)", "found 2"});
  v = orig;
  v[record(1) + 60] = 1;
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"reserved"});
  v = orig;
  test::put32(v, 20, 4);
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kCorrupt, {"header flags"});
  v = orig;
  std::memcpy(&v[record(0)], "mota", 4);
  reseal(v);
  expect_error([&] { parse_vec(v); }, ErrorCode::kNotFound, {"no section 'meta'"});
}

// Replaces the meta section's text (same length, padded with spaces) and reseals.
std::vector<uint8_t> with_meta_text(std::vector<uint8_t> v, std::string text) {
  size_t i = find_record(v, "meta");
  uint64_t off = get64(v, record(i) + 24), size = get64(v, record(i) + 32);
  EXPECT_LE(text.size(), size);
  text.resize(size, ' ');
  std::memcpy(&v[off], text.data(), size);
  reseal(v);
  return v;
}

std::string meta_text(const std::vector<uint8_t>& v) {
  size_t i = find_record(v, "meta");
  uint64_t off = get64(v, record(i) + 24), size = get64(v, record(i) + 32);
  return std::string(v.begin() + off, v.begin() + off + size);
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  size_t p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  return s.replace(p, from.size(), to);
}

TEST(EngineFormat, MalformedMeta) {
  const auto v = to_vector(sample_engine());
  const std::string text = meta_text(v);
  expect_error([&] { parse_vec(with_meta_text(v, "{\"format_version\": ")); }, ErrorCode::kCorrupt,
               {"section 'meta'", "malformed JSON"});
  expect_error([&] { parse_vec(with_meta_text(v, "[1, 2]")); }, ErrorCode::kCorrupt, {"expected a JSON object"});
  expect_error([&] { parse_vec(with_meta_text(v, std::string(100, '['))); }, ErrorCode::kCorrupt, {"nested"});
  expect_error([&] { parse_vec(with_meta_text(v, replaced(text, "\"float32\"", "\"float99\""))); }, ErrorCode::kCorrupt,
               {"meta.inputs[0].dtype", "unknown dtype 'float99'"});
  expect_error([&] { parse_vec(with_meta_text(v, replaced(text, "\"min\": 1", "\"min\": 9"))); }, ErrorCode::kCorrupt,
               {"meta.inputs[0].shape[0]", "min 9 > max 8"});
  expect_error([&] { parse_vec(with_meta_text(v, replaced(text, "\"min\": 1", "\"min\":-1"))); }, ErrorCode::kCorrupt,
               {"meta.inputs[0].shape[0].min", "non-negative"});
  expect_error([&] { parse_vec(with_meta_text(v, replaced(text, "\"ember_version\"", "\"ember_versiom\""))); },
               ErrorCode::kCorrupt, {"meta.ember_version", "missing"});
  expect_error([&] { parse_vec(with_meta_text(v, replaced(text, "\"arch\": \"x86_64\"", "\"arch\": 86     "))); },
               ErrorCode::kCorrupt, {"meta.target.arch", "string"});
  expect_error(
      [&] {
        parse_vec(with_meta_text(v, replaced(text, "\"format_version\": \"" + current_version() + "\"",
                                             "\"format_version\": \"1.9\"")));
      },
      ErrorCode::kCorrupt, {"meta.format_version", "expected " + current_version(), "found 1.9"});
  expect_error([&] { parse_vec(with_meta_text(v, replaced(text, "\"x\"", "\"\""))); }, ErrorCode::kCorrupt,
               {"meta.inputs[0].name"});
  // Invalid UTF-8 inside a string.
  expect_error([&] { parse_vec(with_meta_text(v, replaced(text, "subgraph_0", "subgraph\xff\xfe"))); },
               ErrorCode::kCorrupt, {"malformed JSON"});
  // Unknown fields are ignored (a newer minor may add some).
  nlohmann::json extended = nlohmann::json::parse(text);
  extended["zzz"] = {1, 2};
  extended["target"]["future_field"] = "x";
  EngineView ok = parse_vec(with_meta_text(v, extended.dump()));
  EXPECT_EQ(ok.meta().backend, "cpu");
}

// ---------------------------------------------------------------- versions

std::vector<uint8_t> with_format_version(uint16_t major, uint16_t minor) {
  auto v = to_vector(sample_engine());
  test::put16(v, 8, major);
  test::put16(v, 10, minor);
  std::string text = meta_text(v);
  v = with_meta_text(v, replaced(text, "\"" + current_version() + "\"",
                                 "\"" + std::to_string(major) + "." + std::to_string(minor) + "\""));
  return v;
}

TEST(EngineFormat, DifferentMajorIsAVersionMismatch) {
  auto v = with_format_version(2, 0);
  expect_error([&] { parse_vec(v); }, ErrorCode::kVersionMismatch, {"model.engine", "format 2.0", "major 1"});
  v = with_format_version(0, 9);
  expect_error([&] { parse_vec(v); }, ErrorCode::kVersionMismatch, {"format 0.9"});
}

TEST(EngineFormat, NewerMinorParsesButIsIncompatible) {
  const uint16_t newer = kEngineFormatMinor + 1;
  const std::string newer_text = "1." + std::to_string(newer);
  auto v = with_format_version(1, newer);
  v[record(1) + 60] = 7;  // a field reserved in this minor may be used by a newer one
  reseal(v);
  EngineView view = parse_vec(v);
  EXPECT_EQ(view.format_version().minor, newer);
  CompatReport r = check_compatibility(view.meta(), parse_target_description("x86_64"), view.source());
  EXPECT_FALSE(r.compatible());
  EXPECT_EQ(r.findings[0].what, "engine format");
  EXPECT_EQ(r.findings[0].severity, CompatSeverity::kError);
  EXPECT_EQ(r.findings[0].expected, newer_text);
  expect_error([&] { load_engine(to_storage(v), "model.engine", parse_target_description("x86_64")); },
               ErrorCode::kVersionMismatch, {"model.engine", "subgraph_0", "engine format", newer_text, "newer"});
}

// Sections larger than one checksum chunk carry a chunked checksum (format 1.2): verified
// whole or piece by piece (several threads), a flip in any chunk is corruption, and the flag
// itself is covered (clearing it changes what the checksum means).
TEST(EngineFormat, ChunkedChecksumCoversEveryChunk) {
  EngineWriter w;
  w.set_meta(sample_meta());
  const size_t big = static_cast<size_t>(kEngineChecksumChunk) * 2 + 1000;  // 3 chunks, the last short
  auto plan = test::pattern(100, 1);
  std::vector<uint8_t> weights(big);  // no period: every chunk differs
  uint32_t x = 12345;
  for (uint8_t& b : weights) b = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
  w.add_section("plan", plan);
  w.add_section("weights", weights);
  auto v = to_vector(w.write_to_storage());
  const size_t wi = find_record(v, "weights"), pi = find_record(v, "plan");
  EXPECT_EQ(get32(v, record(wi) + 48), kSectionFlagChunkedChecksum);
  EXPECT_EQ(get32(v, record(pi) + 48), 0u) << "small sections keep the plain checksum";
  EngineView view = parse_vec(v);
  ASSERT_EQ(view.checksum_pieces("weights"), 3u);
  EXPECT_EQ(view.checksum_pieces("plan"), 1u);
  std::vector<uint64_t> digests;
  for (size_t i = 0; i < 3; ++i) digests.push_back(view.checksum_piece("weights", i));
  view.check_pieces("weights", digests);
  std::swap(digests[0], digests[1]);  // order matters
  expect_error([&] { view.check_pieces("weights", digests); }, ErrorCode::kChecksumMismatch, {"weights", "corrupted"});
  expect_error([&] { view.check_pieces("weights", {digests[0]}); }, ErrorCode::kInvalidArgument, {"3 checksum pieces"});
  const uint64_t off = get64(v, record(wi) + 24);
  for (uint64_t pos : {off, off + kEngineChecksumChunk + 17, off + big - 1}) {
    auto bad = v;
    bad[pos] ^= 0x40;
    expect_error([&] { parse_vec(bad); }, ErrorCode::kChecksumMismatch, {"section 'weights'", "corrupted"});
  }
  auto unflagged = v;
  test::put32(unflagged, record(wi) + 48, 0);
  test::reseal_header(unflagged);
  expect_error([&] { parse_vec(unflagged); }, ErrorCode::kChecksumMismatch, {"section 'weights'", "corrupted"});
  // Before 1.2 no section flag is defined.
  auto old = with_format_version(1, 1);
  test::put32(old, record(find_record(old, "weights")) + 48, kSectionFlagChunkedChecksum);
  reseal(old);
  expect_error([&] { parse_vec(old); }, ErrorCode::kCorrupt, {"flags: expected 0, found 1"});
}

TEST(EngineFormat, MetaJsonRoundTrip) {
  EngineMeta m = sample_meta();
  m.ember_version = "9.9.9";
  m.target.cuda_sm_major = 8;
  m.target.cuda_sm_minor = 6;
  m.target.cuda_device_name = "NVIDIA A10";
  EngineMeta back = meta_from_json(nlohmann::json::parse(meta_to_json(m).dump()));
  EXPECT_EQ(back.target, m.target);
  EXPECT_EQ(back.inputs, m.inputs);
  EXPECT_EQ(back.ember_version, "9.9.9");
}

}  // namespace
}  // namespace ember
