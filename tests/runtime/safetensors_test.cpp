#include "ember/safetensors.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

namespace ember {
namespace {

std::string fixture(const std::string& name) { return std::string(EMBER_FIXTURES_DIR) + "/" + name; }

std::shared_ptr<Storage> bytes_of(const std::string& s) {
  auto st = Storage::allocate(s.size());
  if (!s.empty()) std::memcpy(st->data(), s.data(), s.size());
  return st;
}

// A file from a header text and `data_bytes` zero bytes of data.
std::string make_file(const std::string& header, size_t data_bytes) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  return out + header + std::string(data_bytes, '\0');
}

void expect_bad(const std::string& bytes, ErrorCode code, const std::string& needle) {
  try {
    read_safetensors_from_memory(bytes_of(bytes), "bad.safetensors");
    ADD_FAILURE() << "accepted: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "'" << needle << "' not in: " << msg;
  }
}

TEST(Safetensors, ReadsFixtureWithHandCheckedHeader) {
  SafetensorsFile f = read_safetensors(fixture("mlp_pytree.io.safetensors"));
  ASSERT_EQ(f.tensors.size(), 5u);
  EXPECT_EQ(f.tensors[0].first, "case0.in.0");
  EXPECT_EQ(f.tensors[0].second.sizes(), (Shape{3, 16}));
  EXPECT_EQ(f.tensors[0].second.dtype(), DType::kFloat32);
  EXPECT_EQ(f.find("case0.out.1")->sizes(), (Shape{3}));
  EXPECT_EQ(f.find("missing"), nullptr);
  auto cases = group_reference_cases(f, "mlp_pytree");
  ASSERT_TRUE(cases.has_value());
  ASSERT_EQ(cases->size(), 1u);
  EXPECT_EQ((*cases)[0].inputs.size(), 2u);
  EXPECT_EQ((*cases)[0].outputs.size(), 3u);
  EXPECT_EQ((*cases)[0].outputs[2].sizes(), (Shape{3, 16}));
}

TEST(Safetensors, RoundTripsThroughAFile) {
  Tensor a = Tensor::empty({2, 3}, DType::kFloat32);
  for (int i = 0; i < 6; ++i) a.data<float>()[i] = static_cast<float>(i) * 0.5f;
  Tensor b = Tensor::empty({3}, DType::kInt64);
  for (int i = 0; i < 3; ++i) b.data<int64_t>()[i] = -i;
  Tensor h = Tensor::scalar(1.5, DType::kFloat16);
  Tensor at = a.as_strided({3, 2}, {1, 3}, 0);  // non-contiguous: written transposed
  std::string path = ::testing::TempDir() + "/roundtrip.safetensors";
  write_safetensors(path, {{"a", a}, {"b", b}, {"h", h}, {"at", at}}, {{"format", "pt"}});
  SafetensorsFile f = read_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 4u);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.tensors[1].first, "b");
  for (int i = 0; i < 6; ++i) EXPECT_EQ(element_as_double(*f.find("a"), i), i * 0.5);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(element_as_double(*f.find("b"), i), -i);
  EXPECT_EQ(f.find("h")->dim(), 0);
  EXPECT_EQ(element_as_double(*f.find("h"), 0), 1.5);
  const float at_expected[] = {0, 1.5, 0.5, 2, 1, 2.5};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(element_as_double(*f.find("at"), i), at_expected[i]);
  // Header is padded so the data starts 8-aligned.
  std::string bytes = serialize_safetensors({{"a", a}});
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  std::filesystem::remove(path);
}

TEST(Safetensors, WriteRejectsDuplicatesAndLeavesNoTempFile) {
  std::string dir = ::testing::TempDir() + "/st_dup";
  std::filesystem::create_directories(dir);
  Tensor a = Tensor::zeros({1}, DType::kFloat32);
  EXPECT_THROW(write_safetensors(dir + "/x.safetensors", {{"a", a}, {"a", a}}), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

TEST(Safetensors, MalformedFiles) {
  const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NO_THROW(read_safetensors_from_memory(bytes_of(make_file(ok, 8)), "ok"));

  expect_bad("abc", ErrorCode::kTruncated, "too short");
  {
    std::string huge(8, '\xff');
    expect_bad(huge, ErrorCode::kLimitExceeded, "header length");
  }
  {
    std::string f = make_file(ok, 8);
    f[0] = static_cast<char>(f[0] + 100);  // header length past the end
    expect_bad(f, ErrorCode::kTruncated, "exceeds the file");
  }
  expect_bad(make_file(R"({"t":{"dtype":"F32",)", 0), ErrorCode::kCorrupt, "bad.safetensors");
  expect_bad(make_file(R"([1, 2])", 0), ErrorCode::kCorrupt, "does not start with '{'");
  expect_bad(make_file(R"({"t":{"dtype":"float32","shape":[2],"data_offsets":[0,8]}})", 8), ErrorCode::kCorrupt,
             "unknown dtype \"float32\"");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), ErrorCode::kCorrupt,
             "tensor 't'");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), ErrorCode::kCorrupt,
             "non-negative");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), ErrorCode::kTruncated,
             "exceed the data area");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), ErrorCode::kCorrupt,
             "end before they begin");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       12),
             ErrorCode::kCorrupt, "overlap");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), ErrorCode::kCorrupt, "gap");
  expect_bad(make_file(ok, 12), ErrorCode::kCorrupt, "trailing bytes");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                       8),
             ErrorCode::kCorrupt, "bad.safetensors");
  expect_bad(make_file(R"({"__metadata__":{"a":1},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
             ErrorCode::kCorrupt, "__metadata__");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})", 8),
             ErrorCode::kCorrupt, "overflows");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), ErrorCode::kCorrupt,
             "[begin, end]");
  expect_bad(make_file(R"({"t":{"dtype":"F32","shape":[2]}})", 8), ErrorCode::kCorrupt, "missing field");
}

TEST(Safetensors, MissingFileIsIo) {
  try {
    read_safetensors("/nonexistent/dir/x.safetensors");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/x.safetensors"), std::string::npos);
  }
}

TEST(Safetensors, CaseGrouping) {
  auto t = Tensor::zeros({1}, DType::kFloat32);
  SafetensorsFile f;
  f.tensors = {{"case1.in.0", t}, {"case0.out.0", t}, {"case0.in.1", t}, {"case0.in.0", t}, {"case1.out.0", t}};
  auto cases = group_reference_cases(f, "f");
  ASSERT_TRUE(cases.has_value());
  ASSERT_EQ(cases->size(), 2u);
  EXPECT_EQ((*cases)[0].index, 0);
  EXPECT_EQ((*cases)[0].inputs.size(), 2u);
  EXPECT_EQ((*cases)[1].inputs.size(), 1u);

  SafetensorsFile plain;
  plain.tensors = {{"x", t}, {"y", t}};
  EXPECT_FALSE(group_reference_cases(plain, "plain").has_value());

  SafetensorsFile gap;
  gap.tensors = {{"case0.in.0", t}, {"case0.in.2", t}};
  EXPECT_THROW(group_reference_cases(gap, "gap"), Error);
  SafetensorsFile mixed;
  mixed.tensors = {{"case0.in.0", t}, {"extra", t}};
  EXPECT_THROW(group_reference_cases(mixed, "mixed"), Error);
}

}  // namespace
}  // namespace ember
