// Compact sample inputs (src/compiler/sample_inputs.cpp) on the sample inputs PyTorch wrote
// into the fixtures: the rebuilt torch.save archive is small, keeps every entry name in
// order, keeps the pickle and the other small records byte for byte, and holds zeros of
// the original length in every storage record.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>

#include "compiler_test_util.h"
#include "ember/archive.h"

namespace ember::compiler {
namespace {

using ember::testing::fixture;

std::string bytes_of(const ZipReader& z, const ZipEntry& e) { return z.read_string(e, /*verify_crc=*/true); }

// "archive/data/0" (a tensor storage), not "archive/data.pkl" or "archive/.data/serialization_id".
bool is_storage(const std::string& name) {
  return name.find("/data/") != std::string::npos && name.find("/.data/") == std::string::npos;
}

void check_compacted(const std::string& fixture_name) {
  SCOPED_TRACE(fixture_name);
  Pt2Archive a = read_pt2(fixture(fixture_name));
  ASSERT_FALSE(a.models.empty());
  ASSERT_TRUE(a.models[0].sample_inputs.has_value());
  const Blob& original = *a.models[0].sample_inputs;
  Blob compact = compact_sample_inputs(original, fixture_name);

  auto before = ZipReader::from_memory(original.storage, "original");
  auto after = ZipReader::from_memory(compact.storage, "compact");
  size_t storage_bytes = 0;
  for (const auto& e : before->entries())
    if (is_storage(e.name)) storage_bytes += e.uncompressed_size;
  ASSERT_GT(storage_bytes, 0u) << "the fixture's sample inputs hold no tensor";
  // Small: everything but the storages plus ~1/1000 of the zeros (deflate) plus headers.
  EXPECT_LT(compact.size(), original.size() - storage_bytes + storage_bytes / 500 + 2048)
      << "original " << original.size() << " bytes, " << storage_bytes << " of them storages";

  ASSERT_EQ(before->entries().size(), after->entries().size());
  for (size_t i = 0; i < before->entries().size(); ++i) {
    const ZipEntry& b = before->entries()[i];
    const ZipEntry& c = after->entries()[i];
    EXPECT_EQ(b.name, c.name);
    EXPECT_EQ(b.uncompressed_size, c.uncompressed_size) << b.name;
    std::string cb = bytes_of(*after, c);  // also checks the CRC the new archive records
    if (is_storage(b.name)) {
      EXPECT_EQ(c.method, static_cast<uint16_t>(ZipMethod::kDeflated)) << c.name;
      EXPECT_TRUE(std::all_of(cb.begin(), cb.end(), [](char ch) { return ch == 0; })) << c.name;
    } else {
      EXPECT_EQ(c.method, static_cast<uint16_t>(ZipMethod::kStored)) << c.name;
      EXPECT_EQ(bytes_of(*before, b), cb) << c.name << " must be kept byte for byte";
    }
  }
  // The pickle in particular (shapes, dtypes, strides and the storage keys live there).
  const std::string root = before->entries()[0].name.substr(0, before->entries()[0].name.find('/'));
  const ZipEntry* pkl_b = before->find(root + "/data.pkl");
  const ZipEntry* pkl_c = after->find(root + "/data.pkl");
  ASSERT_TRUE(pkl_b && pkl_c);
  EXPECT_EQ(bytes_of(*before, *pkl_b), bytes_of(*after, *pkl_c));
}

TEST(SampleInputs, Resnet18IsCompactWithTheSameEntriesAndPickle) {
  check_compacted("resnet18.pt2");
  // The size the .ep ratio depends on: PyTorch wrote 603,689 bytes for one 1x3x224x224 image.
  Pt2Archive a = read_pt2(fixture("resnet18.pt2"));
  Blob compact = compact_sample_inputs(*a.models[0].sample_inputs, "resnet18");
  EXPECT_LT(compact.size(), 4096u);
}

TEST(SampleInputs, EveryFixtureKeepsItsStructure) {
  for (const char* f : {"cnn_small.pt2", "mlp_dynamic_batch.pt2", "mlp_pytree.pt2", "transformer_layer.pt2"})
    check_compacted(f);
}

TEST(SampleInputs, SurvivesTheArchiveWriterAndReader) {
  Pt2Archive a = read_pt2(fixture("cnn_small.pt2"));
  Blob compact = compact_sample_inputs(*a.models[0].sample_inputs, "cnn_small");
  a.models[0].sample_inputs = compact;
  auto path = (std::filesystem::temp_directory_path() / "ember_sample_inputs_test.pt2").string();
  write_pt2(a, path);
  Pt2Archive back = read_pt2(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(back.models[0].sample_inputs.has_value());
  ASSERT_EQ(back.models[0].sample_inputs->size(), compact.size());
  EXPECT_EQ(0, std::memcmp(back.models[0].sample_inputs->data(), compact.data(), compact.size()));
}

TEST(SampleInputs, WhatIsNotAnArchiveIsKeptAsIs) {
  auto s = Storage::allocate(5);
  std::memcpy(s->data(), "hello", 5);
  Blob junk{s};
  Blob out = compact_sample_inputs(junk, "junk");
  EXPECT_EQ(out.storage, junk.storage);
  Blob empty;
  EXPECT_EQ(compact_sample_inputs(empty, "empty").storage, nullptr);
}

}  // namespace
}  // namespace ember::compiler
