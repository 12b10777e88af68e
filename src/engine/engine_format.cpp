// Engine container: writer, reader and the meta JSON mapping. Layout in docs/engine-format.md.
#include <fcntl.h>
#include <sys/stat.h>
#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ember/engine.h"
#include "ember/version.h"

namespace ember {
namespace {

// Header field offsets (v1.0).
constexpr size_t kOffMagic = 0;
constexpr size_t kOffMajor = 8;
constexpr size_t kOffMinor = 10;
constexpr size_t kOffHeaderSize = 12;
constexpr size_t kOffSectionCount = 16;
constexpr size_t kOffFlags = 20;
constexpr size_t kOffFileSize = 24;
constexpr size_t kOffHeaderChecksum = 32;
constexpr size_t kOffHeaderReserved = 40;
// Section record field offsets.
constexpr size_t kRecName = 0;
constexpr size_t kRecNameSize = 24;
constexpr size_t kRecOffset = 24;
constexpr size_t kRecSize = 32;
constexpr size_t kRecChecksum = 40;
constexpr size_t kRecFlags = 48;
constexpr size_t kRecAlignment = 52;
constexpr size_t kRecReserved = 56;

constexpr size_t kMaxHeaderSize = 4096;
constexpr int kMaxJsonDepth = 64;
constexpr size_t kMaxRank = 64;

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t rd64(const uint8_t* p) { return rd32(p) | (static_cast<uint64_t>(rd32(p + 4)) << 32); }
void wr16(uint8_t* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void wr32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void wr64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

std::string hex64(uint64_t v) {
  char buf[19];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// XXH3-64 of header + section table with the header checksum field taken as zero.
uint64_t header_checksum(const uint8_t* data, size_t header_size, size_t table_bytes) {
  XXH3_state_t* state = XXH3_createState();
  EMBER_CHECK(state != nullptr, ErrorCode::kOutOfMemory, "cannot allocate a hash state");
  const uint8_t zeros[8] = {};
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, data, kOffHeaderChecksum);
  XXH3_64bits_update(state, zeros, 8);
  XXH3_64bits_update(state, data + kOffHeaderChecksum + 8, header_size - kOffHeaderChecksum - 8 + table_bytes);
  uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

// XXH3-64 of a section. On x86_64 the hash uses xxHash's dispatcher, which picks the widest
// vector unit the CPU has (AVX2 / AVX-512); the value is the same XXH3-64 either way.
// The pages of a fresh file mapping are left to the hash loop's page faults (each maps the
// next 16 cached 4 KiB pages, or one 2 MiB folio where the page cache holds the file in those:
// see map_file_readonly). Prefaulting the whole section first with madvise(MADV_POPULATE_READ)
// measured no faster on Linux 6.18: 1.1-1.4 ms slower per 45 MiB on one machine (one or two
// load threads), the same on another.
uint64_t section_checksum(const uint8_t* data, size_t size) {
#if defined(__x86_64__)
  return XXH3_64bits_dispatch(data, size);
#else
  return XXH3_64bits(data, size);
#endif
}

// A chunked section's checksum from its chunk digests (kSectionFlagChunkedChecksum).
uint64_t combine_digests(const std::vector<uint64_t>& digests) {
  std::vector<uint8_t> le(digests.size() * 8);
  for (size_t i = 0; i < digests.size(); ++i) wr64(le.data() + i * 8, digests[i]);
  return section_checksum(le.data(), le.size());
}

uint64_t chunked_checksum(const uint8_t* data, uint64_t size) {
  std::vector<uint64_t> digests;
  for (uint64_t begin = 0; begin < size; begin += kEngineChecksumChunk)
    digests.push_back(section_checksum(data + begin, std::min(kEngineChecksumChunk, size - begin)));
  return combine_digests(digests);
}

std::string section_name_problem(std::string_view name) {
  if (name.empty()) return "empty name";
  if (name.size() > kEngineSectionNameMax) return cat("name longer than ", kEngineSectionNameMax, " bytes");
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return "characters other than [a-z0-9_.-]";
  }
  return {};
}

// Printable rendering of untrusted bytes for messages.
std::string printable(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = p[i];
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      s += static_cast<char>(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      s += buf;
    }
  }
  return s;
}

// Maximum nesting depth of a JSON text (strings skipped), to refuse pathological nesting
// before handing the text to the parser.
int json_depth(const uint8_t* p, size_t n) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escape = false;
  for (size_t i = 0; i < n; ++i) {
    char c = static_cast<char>(p[i]);
    if (in_string) {
      if (escape) {
        escape = false;
      } else if (c == '\\') {
        escape = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

// ---------------------------------------------------------------- meta JSON helpers

const nlohmann::json& field(const nlohmann::json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  EMBER_CHECK(it != obj.end(), ErrorCode::kCorrupt, where, ".", key, ": required field missing");
  return *it;
}

std::string string_field(const nlohmann::json& obj, const char* key, const std::string& where, bool required) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    EMBER_CHECK(!required, ErrorCode::kCorrupt, where, ".", key, ": required field missing");
    return {};
  }
  EMBER_CHECK(it->is_string(), ErrorCode::kCorrupt, where, ".", key, ": expected a string, found ", it->type_name());
  return it->get<std::string>();
}

int64_t dim_value(const nlohmann::json& v, const std::string& where) {
  EMBER_CHECK(v.is_number_integer(), ErrorCode::kCorrupt, where, ": expected an integer, found ", v.type_name(), " ",
              v.dump().substr(0, 32));
  if (v.is_number_unsigned()) {
    EMBER_CHECK(v.get<uint64_t>() <= static_cast<uint64_t>(kDimUnbounded - 1), ErrorCode::kCorrupt, where, ": value ",
                v.get<uint64_t>(), " is too large");
  }
  int64_t x = v.get<int64_t>();
  EMBER_CHECK(x >= 0, ErrorCode::kCorrupt, where, ": expected a non-negative size, found ", x);
  return x;
}

nlohmann::json binding_to_json(const EngineIoBinding& b) {
  nlohmann::json shape = nlohmann::json::array();
  for (const auto& d : b.shape) {
    nlohmann::json jd = {{"min", d.min}};
    jd["max"] = d.max == kDimUnbounded ? nlohmann::json(nullptr) : nlohmann::json(d.max);
    if (!d.symbol.empty()) jd["symbol"] = d.symbol;
    shape.push_back(std::move(jd));
  }
  return {{"name", b.name}, {"dtype", dtype_name(b.dtype)}, {"shape", std::move(shape)}};
}

EngineIoBinding binding_from_json(const nlohmann::json& j, const std::string& where) {
  EMBER_CHECK(j.is_object(), ErrorCode::kCorrupt, where, ": expected an object, found ", j.type_name());
  EngineIoBinding b;
  b.name = string_field(j, "name", where, true);
  EMBER_CHECK(!b.name.empty(), ErrorCode::kCorrupt, where, ".name: expected a non-empty name");
  std::string dt = string_field(j, "dtype", where, true);
  auto dtype = dtype_from_name(dt);
  EMBER_CHECK(dtype.has_value() && *dtype != DType::kUnknown, ErrorCode::kCorrupt, where, ".dtype: unknown dtype '",
              dt.substr(0, 32), "'");
  b.dtype = *dtype;
  const auto& shape = field(j, "shape", where);
  EMBER_CHECK(shape.is_array(), ErrorCode::kCorrupt, where, ".shape: expected an array, found ", shape.type_name());
  EMBER_CHECK(shape.size() <= kMaxRank, ErrorCode::kCorrupt, where, ".shape: expected at most ", kMaxRank,
              " dimensions, found ", shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    const std::string w = cat(where, ".shape[", i, "]");
    const auto& jd = shape[i];
    EMBER_CHECK(jd.is_object(), ErrorCode::kCorrupt, w, ": expected {\"min\": ..., \"max\": ...}, found ",
                jd.type_name());
    EngineDim d;
    d.min = dim_value(field(jd, "min", w), w + ".min");
    const auto& jmax = field(jd, "max", w);
    d.max = jmax.is_null() ? kDimUnbounded : dim_value(jmax, w + ".max");
    EMBER_CHECK(d.max >= d.min, ErrorCode::kCorrupt, w, ": expected min <= max, found min ", d.min, " > max ", d.max);
    d.symbol = string_field(jd, "symbol", w, false);
    b.shape.push_back(std::move(d));
  }
  return b;
}

std::vector<EngineIoBinding> bindings_from_json(const nlohmann::json& j, const std::string& where) {
  EMBER_CHECK(j.is_array(), ErrorCode::kCorrupt, where, ": expected an array, found ", j.type_name());
  std::vector<EngineIoBinding> out;
  for (size_t i = 0; i < j.size(); ++i) out.push_back(binding_from_json(j[i], cat(where, "[", i, "]")));
  return out;
}

// ---------------------------------------------------------------- file helpers


void write_all(int fd, const uint8_t* data, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(ErrorCode::kIo, path, ": write failed: ", std::strerror(errno));
    data += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

// ---------------------------------------------------------------- meta JSON

nlohmann::json meta_to_json(const EngineMeta& meta) {
  nlohmann::json j;
  j["format_version"] = cat(meta.format_major, ".", meta.format_minor);
  j["ember_version"] = meta.ember_version;
  j["name"] = meta.name;
  j["backend"] = meta.backend;
  j["target"] = meta.target;
  j["build_settings"] = meta.build_settings.is_null() ? nlohmann::json::object() : meta.build_settings;
  j["inputs"] = nlohmann::json::array();
  for (const auto& b : meta.inputs) j["inputs"].push_back(binding_to_json(b));
  j["outputs"] = nlohmann::json::array();
  for (const auto& b : meta.outputs) j["outputs"].push_back(binding_to_json(b));
  return j;
}

EngineMeta meta_from_json(const nlohmann::json& j) {
  const std::string where = "meta";
  EMBER_CHECK(j.is_object(), ErrorCode::kCorrupt, "meta: expected a JSON object, found ", j.type_name());
  EngineMeta m;
  std::string fv = string_field(j, "format_version", where, true);
  unsigned major = 0, minor = 0;
  char extra = 0;
  EMBER_CHECK(fv.size() <= 11 && std::sscanf(fv.c_str(), "%5u.%5u%c", &major, &minor, &extra) == 2 && major <= 0xFFFF &&
                  minor <= 0xFFFF,
              ErrorCode::kCorrupt, "meta.format_version: expected \"<major>.<minor>\", found '", fv.substr(0, 32), "'");
  m.format_major = static_cast<uint16_t>(major);
  m.format_minor = static_cast<uint16_t>(minor);
  m.ember_version = string_field(j, "ember_version", where, true);
  m.name = string_field(j, "name", where, false);
  m.backend = string_field(j, "backend", where, false);
  try {
    m.target = field(j, "target", where).get<TargetDescriptor>();
  } catch (const Error& e) {
    fail(e.code(), "meta.", e.what());
  }
  auto bs = j.find("build_settings");
  if (bs != j.end()) {
    EMBER_CHECK(bs->is_object(), ErrorCode::kCorrupt, "meta.build_settings: expected an object, found ",
                bs->type_name());
    m.build_settings = *bs;
  }
  m.inputs = bindings_from_json(field(j, "inputs", where), "meta.inputs");
  m.outputs = bindings_from_json(field(j, "outputs", where), "meta.outputs");
  return m;
}

// ---------------------------------------------------------------- writer

void EngineWriter::set_meta(EngineMeta meta) {
  if (meta.ember_version.empty()) meta.ember_version = EMBER_VERSION_STRING;
  meta.format_major = kEngineFormatMajor;
  meta.format_minor = kEngineFormatMinor;
  EMBER_CHECK(meta.build_settings.is_null() || meta.build_settings.is_object(), ErrorCode::kInvalidArgument,
              "engine meta: build_settings must be a JSON object, found ", meta.build_settings.type_name());
  for (const auto* list : {&meta.inputs, &meta.outputs}) {
    for (const auto& b : *list) {
      EMBER_CHECK(!b.name.empty() && b.dtype != DType::kUnknown && dtype_size(b.dtype) > 0, ErrorCode::kInvalidArgument,
                  "engine meta: binding '", b.name, "' needs a name and a known dtype");
      EMBER_CHECK(b.shape.size() <= kMaxRank, ErrorCode::kInvalidArgument, "engine meta: binding '", b.name, "' has ",
                  b.shape.size(), " dimensions, at most ", kMaxRank, " allowed");
      for (const auto& d : b.shape) {
        EMBER_CHECK(d.min >= 0 && d.max >= d.min, ErrorCode::kInvalidArgument, "engine meta: binding '", b.name,
                    "' has a dimension with min ", d.min, " and max ", d.max, "; expected 0 <= min <= max");
      }
    }
  }
  meta_ = std::move(meta);
  has_meta_ = true;
}

void EngineWriter::add_section(std::string_view name, std::span<const uint8_t> data, uint32_t alignment) {
  auto copy = Storage::allocate(data.size());
  if (!data.empty()) std::memcpy(copy->data(), data.data(), data.size());
  add_section(name, std::move(copy), alignment);
}

void EngineWriter::add_section(std::string_view name, std::shared_ptr<Storage> data, uint32_t alignment) {
  std::string problem = section_name_problem(name);
  EMBER_CHECK(problem.empty(), ErrorCode::kInvalidArgument, "engine section name '", name, "': ", problem);
  EMBER_CHECK(name != kSectionMeta, ErrorCode::kInvalidArgument,
              "engine section name 'meta' is reserved; use EngineWriter::set_meta");
  for (const auto& s : sections_) {
    EMBER_CHECK(s.name != name, ErrorCode::kInvalidArgument, "engine section '", name, "' added twice");
  }
  EMBER_CHECK(is_pow2(alignment) && alignment <= kEngineMaxAlignment, ErrorCode::kInvalidArgument, "engine section '",
              name, "': alignment must be a power of two up to ", kEngineMaxAlignment, ", found ", alignment);
  EMBER_CHECK(data != nullptr, ErrorCode::kInvalidArgument, "engine section '", name, "': null storage");
  EMBER_CHECK(sections_.size() + 1 < kEngineMaxSections, ErrorCode::kLimitExceeded, "an engine holds at most ",
              kEngineMaxSections, " sections");
  sections_.push_back({std::string(name), std::move(data), std::max(alignment, kEngineSectionAlignment)});
}

std::shared_ptr<Storage> EngineWriter::write_to_storage() const {
  EMBER_CHECK(has_meta_, ErrorCode::kInvalidArgument, "engine writer: set_meta() was not called");
  const std::string meta_text = meta_to_json(meta_).dump(1);
  EMBER_CHECK(meta_text.size() <= kEngineMaxMetaSize, ErrorCode::kLimitExceeded, "engine meta JSON is ",
              meta_text.size(), " bytes, at most ", kEngineMaxMetaSize, " allowed");

  struct Placed {
    std::string_view name;
    const uint8_t* data;
    uint64_t size;
    uint64_t offset;
    uint32_t alignment;
  };
  std::vector<Placed> placed;
  placed.push_back(
      {kSectionMeta, reinterpret_cast<const uint8_t*>(meta_text.data()), meta_text.size(), 0, kEngineSectionAlignment});
  for (const auto& s : sections_) placed.push_back({s.name, s.data->data(), s.data->nbytes(), 0, s.alignment});

  const uint64_t table_end = kEngineHeaderSize + uint64_t{kEngineSectionRecordSize} * placed.size();
  uint64_t cursor = table_end;
  for (auto& p : placed) {
    p.offset = align_up(cursor, p.alignment);
    cursor = p.offset + p.size;
  }
  const uint64_t file_size = cursor;

  auto out = Storage::allocate(file_size);
  uint8_t* b = out->data();
  std::memset(b, 0, file_size);
  std::memcpy(b + kOffMagic, kEngineMagic, 8);
  wr16(b + kOffMajor, kEngineFormatMajor);
  wr16(b + kOffMinor, kEngineFormatMinor);
  wr32(b + kOffHeaderSize, kEngineHeaderSize);
  wr32(b + kOffSectionCount, static_cast<uint32_t>(placed.size()));
  wr32(b + kOffFlags, 0);
  wr64(b + kOffFileSize, file_size);
  for (size_t i = 0; i < placed.size(); ++i) {
    const auto& p = placed[i];
    uint8_t* rec = b + kEngineHeaderSize + i * kEngineSectionRecordSize;
    std::memcpy(rec + kRecName, p.name.data(), p.name.size());
    wr64(rec + kRecOffset, p.offset);
    wr64(rec + kRecSize, p.size);
    const bool chunked = p.size > kEngineChecksumChunk;
    wr64(rec + kRecChecksum, chunked ? chunked_checksum(p.data, p.size) : section_checksum(p.data, p.size));
    wr32(rec + kRecFlags, chunked ? kSectionFlagChunkedChecksum : 0);
    wr32(rec + kRecAlignment, p.alignment);
    if (p.size > 0) std::memcpy(b + p.offset, p.data, p.size);
  }
  wr64(b + kOffHeaderChecksum, header_checksum(b, kEngineHeaderSize, placed.size() * kEngineSectionRecordSize));
  return out;
}

void EngineWriter::write_to_file(const std::string& path) const {
  auto bytes = write_to_storage();
  std::string temp = path + ".tmp.XXXXXX";
  int fd = mkstemp(temp.data());
  EMBER_CHECK(fd >= 0, ErrorCode::kIo, path, ": cannot create a temporary file next to it: ", std::strerror(errno));
  try {
    write_all(fd, bytes->data(), bytes->nbytes(), temp);
    EMBER_CHECK(fchmod(fd, 0644) == 0 && fsync(fd) == 0, ErrorCode::kIo, temp,
                ": fsync failed: ", std::strerror(errno));
    EMBER_CHECK(::close(fd) == 0, ErrorCode::kIo, temp, ": close failed: ", std::strerror(errno));
    fd = -1;
    EMBER_CHECK(std::rename(temp.c_str(), path.c_str()) == 0, ErrorCode::kIo, path, ": cannot rename ", temp,
                " over it: ", std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  // Make the rename durable (best effort).
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// ---------------------------------------------------------------- reader

bool is_engine_bytes(std::span<const uint8_t> bytes) {
  return bytes.size() >= 8 && std::memcmp(bytes.data(), kEngineMagic, 8) == 0;
}

EngineFormatVersion peek_engine_format(std::span<const uint8_t> bytes, std::string_view source) {
  if (bytes.size() >= 8) {
    EMBER_CHECK(is_engine_bytes(bytes), ErrorCode::kCorrupt, source,
                ": not an Ember engine (expected magic \"EMBERENG\", found \"",
                printable(bytes.data(), std::min<size_t>(bytes.size(), 8)), "\")");
  } else {
    // A short prefix of the magic is a truncated engine; anything else is not an engine.
    EMBER_CHECK(std::memcmp(bytes.data(), kEngineMagic, bytes.size()) == 0, ErrorCode::kCorrupt, source,
                ": not an Ember engine (expected magic \"EMBERENG\", found \"", printable(bytes.data(), bytes.size()),
                "\")");
  }
  EMBER_CHECK(bytes.size() >= kOffHeaderSize, ErrorCode::kTruncated, source,
              ": truncated engine header: expected at least ", kOffHeaderSize, " bytes, found ", bytes.size());
  return {rd16(bytes.data() + kOffMajor), rd16(bytes.data() + kOffMinor)};
}

EngineView EngineView::open(const std::string& path, EngineVerification verification) {
  return parse(map_file_readonly(path), path, verification);
}

EngineView EngineView::parse(std::shared_ptr<Storage> bytes, std::string source, EngineVerification verification) {
  EMBER_CHECK(bytes != nullptr, ErrorCode::kInvalidArgument, source, ": null engine storage");
  const std::string& src = source;
  const uint64_t n = bytes->nbytes();
  const EngineFormatVersion version = peek_engine_format({bytes->data(), bytes->nbytes()}, src);
  EMBER_CHECK(version.major == kEngineFormatMajor, ErrorCode::kVersionMismatch, src, ": engine format ", version.major,
              ".", version.minor, " cannot be read by this Ember (expected format major ", kEngineFormatMajor,
              ", reads ", kEngineFormatMajor, ".0 to ", kEngineFormatMajor, ".", kEngineFormatMinor, ")");
  // A newer minor of the same major only adds things: the layout is readable, but fields
  // reserved in this version may be in use, so they are not required to be zero.
  const bool strict = version.minor <= kEngineFormatMinor;

  EMBER_CHECK(n >= kEngineHeaderSize, ErrorCode::kTruncated, src, ": truncated engine header: expected ",
              kEngineHeaderSize, " bytes, found ", n);
  const uint8_t* b = bytes->data();
  const uint32_t header_size = rd32(b + kOffHeaderSize);
  EMBER_CHECK(header_size >= kEngineHeaderSize && header_size % 8 == 0 && header_size <= kMaxHeaderSize &&
                  (!strict || header_size == kEngineHeaderSize),
              ErrorCode::kCorrupt, src, ": header size: expected ", kEngineHeaderSize,
              strict ? "" : " or more (multiple of 8, at most 4096)", ", found ", header_size);
  EMBER_CHECK(n >= header_size, ErrorCode::kTruncated, src, ": truncated engine header: expected ", header_size,
              " bytes, found ", n);
  const uint32_t count = rd32(b + kOffSectionCount);
  EMBER_CHECK(count >= 1 && count <= kEngineMaxSections, ErrorCode::kCorrupt, src, ": section count: expected 1 to ",
              kEngineMaxSections, ", found ", count);
  const uint64_t table_end = header_size + uint64_t{count} * kEngineSectionRecordSize;
  EMBER_CHECK(n >= table_end, ErrorCode::kTruncated, src, ": truncated section table: ", count,
              " sections need bytes up to ", table_end, ", found ", n, " bytes");
  const uint64_t stored_checksum = rd64(b + kOffHeaderChecksum);
  const uint64_t actual_checksum = header_checksum(b, header_size, table_end - header_size);
  EMBER_CHECK(stored_checksum == actual_checksum, ErrorCode::kChecksumMismatch, src,
              ": engine header or section table is corrupted: XXH3-64 checksum expected ", hex64(stored_checksum),
              ", found ", hex64(actual_checksum));

  const uint64_t file_size = rd64(b + kOffFileSize);
  EMBER_CHECK(n >= file_size, ErrorCode::kTruncated, src, ": truncated engine: header says ", file_size,
              " bytes, found ", n);
  EMBER_CHECK(n == file_size, ErrorCode::kCorrupt, src, ": engine size: header says ", file_size, " bytes, found ", n,
              " (", n - file_size, " trailing bytes)");
  const uint32_t flags = rd32(b + kOffFlags);
  EMBER_CHECK(!strict || flags == 0, ErrorCode::kCorrupt, src, ": header flags: expected 0, found ", flags);
  if (strict) {
    for (size_t i = kOffHeaderReserved; i < kEngineHeaderSize; ++i) {
      EMBER_CHECK(b[i] == 0, ErrorCode::kCorrupt, src, ": header byte ", i, " (reserved): expected 0, found ",
                  static_cast<int>(b[i]));
    }
  }

  EngineView view;
  view.source_ = std::move(source);
  view.table_end_ = table_end;
  const std::string& s = view.source_;
  uint32_t max_alignment = kEngineSectionAlignment;
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* rec = b + header_size + uint64_t{i} * kEngineSectionRecordSize;
    const std::string where = cat(s, ": section table entry ", i);
    size_t name_len = 0;
    while (name_len < kRecNameSize && rec[kRecName + name_len] != 0) ++name_len;
    EngineSectionInfo info;
    info.name.assign(reinterpret_cast<const char*>(rec + kRecName), name_len);
    std::string problem = name_len == kRecNameSize ? "not NUL-terminated" : section_name_problem(info.name);
    for (size_t k = name_len; problem.empty() && k < kRecNameSize; ++k) {
      if (rec[kRecName + k] != 0) problem = "bytes after the terminating NUL are not zero";
    }
    EMBER_CHECK(problem.empty(), ErrorCode::kCorrupt, where, ": name \"", printable(rec + kRecName, name_len),
                "\": ", problem);
    const std::string sec = cat(s, ": section '", info.name, "'");
    for (const auto& other : view.sections_) {
      EMBER_CHECK(other.name != info.name, ErrorCode::kCorrupt, sec, ": appears twice in the section table");
    }
    info.offset = rd64(rec + kRecOffset);
    info.size = rd64(rec + kRecSize);
    info.checksum = rd64(rec + kRecChecksum);
    info.flags = rd32(rec + kRecFlags);
    info.alignment = rd32(rec + kRecAlignment);
    EMBER_CHECK(
        is_pow2(info.alignment) && info.alignment >= kEngineSectionAlignment && info.alignment <= kEngineMaxAlignment,
        ErrorCode::kCorrupt, sec, ": alignment: expected a power of two from 64 to ", kEngineMaxAlignment, ", found ",
        info.alignment);
    EMBER_CHECK(info.offset % info.alignment == 0, ErrorCode::kCorrupt, sec, ": offset ", info.offset,
                " is not a multiple of its alignment ", info.alignment);
    EMBER_CHECK(info.offset >= table_end, ErrorCode::kCorrupt, sec, ": offset ", info.offset,
                " overlaps the header and section table (which end at ", table_end, ")");
    EMBER_CHECK(info.offset <= file_size && info.size <= file_size - info.offset, ErrorCode::kCorrupt, sec, ": bytes ",
                info.offset, " + ", info.size, " lie outside the engine (", file_size, " bytes)");
    // 1.2 defines the chunked-checksum flag; earlier minors none.
    const uint32_t known_flags = version.minor >= 2 ? kSectionFlagChunkedChecksum : 0;
    EMBER_CHECK(!strict || (info.flags & ~known_flags) == 0, ErrorCode::kCorrupt, sec, ": flags: expected ",
                known_flags == 0 ? "0" : "0 or 1 (chunked checksum)", ", found ", info.flags);
    EMBER_CHECK(!strict || rd64(rec + kRecReserved) == 0, ErrorCode::kCorrupt, sec,
                ": reserved field: expected 0, found ", hex64(rd64(rec + kRecReserved)));
    max_alignment = std::max(max_alignment, info.alignment);
    view.sections_.push_back(std::move(info));
  }
  // No two sections may share a byte.
  std::vector<const EngineSectionInfo*> by_offset;
  for (const auto& sec : view.sections_) by_offset.push_back(&sec);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* c) {
    return a->offset < c->offset || (a->offset == c->offset && a->size < c->size);
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto* prev = by_offset[i - 1];
    const auto* cur = by_offset[i];
    EMBER_CHECK(prev->offset + prev->size <= cur->offset || (prev->size == 0 && prev->offset <= cur->offset),
                ErrorCode::kCorrupt, s, ": sections '", prev->name, "' (bytes ", prev->offset, " + ", prev->size,
                ") and '", cur->name, "' (from byte ", cur->offset, ") overlap");
  }

  // Sections are handed out as zero-copy views; their addresses must honour their
  // alignment, which needs the base aligned to the largest one.
  if (reinterpret_cast<uintptr_t>(b) % max_alignment != 0) {
    auto block = Storage::allocate(n + max_alignment);
    uint8_t* aligned = reinterpret_cast<uint8_t*>(align_up(reinterpret_cast<uintptr_t>(block->data()), max_alignment));
    std::memcpy(aligned, b, n);
    bytes = Storage::borrow(aligned, n, block, false);
  }
  view.storage_ = std::move(bytes);

  // Meta: always verified.
  const EngineSectionInfo& meta_info = view.find(kSectionMeta);
  EMBER_CHECK(meta_info.size <= kEngineMaxMetaSize, ErrorCode::kLimitExceeded, s, ": section 'meta' is ",
              meta_info.size, " bytes, at most ", kEngineMaxMetaSize, " allowed");
  view.verify_section(kSectionMeta);
  if (verification == EngineVerification::kFull) {
    for (const auto& sec : view.sections_) {
      if (sec.name != kSectionMeta) view.verify_section(sec.name);
    }
    view.verify_padding();
  }
  const uint8_t* meta_bytes = view.storage_->data() + meta_info.offset;
  EMBER_CHECK(json_depth(meta_bytes, meta_info.size) <= kMaxJsonDepth, ErrorCode::kCorrupt, s,
              ": section 'meta': JSON nested deeper than ", kMaxJsonDepth, " levels");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(meta_bytes, meta_bytes + meta_info.size);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kCorrupt, s, ": section 'meta': malformed JSON: ", e.what());
  }
  try {
    view.meta_ = meta_from_json(j);
  } catch (const Error& e) {
    fail(e.code(), s, ": section 'meta': ", e.what());
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kCorrupt, s, ": section 'meta': ", e.what());
  }
  EMBER_CHECK(view.meta_.format_major == version.major && view.meta_.format_minor == version.minor, ErrorCode::kCorrupt,
              s, ": meta.format_version: expected ", version.major, ".", version.minor, " (as in the header), found ",
              view.meta_.format_major, ".", view.meta_.format_minor);
  return view;
}

const EngineSectionInfo& EngineView::find(std::string_view name) const {
  for (const auto& s : sections_) {
    if (s.name == name) return s;
  }
  std::string present;
  for (const auto& s : sections_) present += (present.empty() ? "" : ", ") + s.name;
  fail(ErrorCode::kNotFound, source_, ": engine has no section '", name, "' (sections: ", present, ")");
}

bool EngineView::has_section(std::string_view name) const {
  return std::any_of(sections_.begin(), sections_.end(), [&](const auto& s) { return s.name == name; });
}

std::shared_ptr<Storage> EngineView::section(std::string_view name) const {
  const EngineSectionInfo& info = find(name);
  return Storage::borrow(storage_->data() + info.offset, info.size, storage_, false);
}

void EngineView::verify_section(std::string_view name) const {
  const size_t n = checksum_pieces(name);
  std::vector<uint64_t> digests(n);
  for (size_t i = 0; i < n; ++i) digests[i] = checksum_piece(name, i);
  check_pieces(name, digests);
}

size_t EngineView::checksum_pieces(std::string_view name) const {
  const EngineSectionInfo& info = find(name);
  if (!(info.flags & kSectionFlagChunkedChecksum)) return 1;
  return static_cast<size_t>((info.size + kEngineChecksumChunk - 1) / kEngineChecksumChunk);
}

uint64_t EngineView::checksum_piece(std::string_view name, size_t piece) const {
  const EngineSectionInfo& info = find(name);
  const uint8_t* data = storage_->data() + info.offset;
  if (!(info.flags & kSectionFlagChunkedChecksum)) return section_checksum(data, info.size);
  const uint64_t begin = uint64_t{piece} * kEngineChecksumChunk;
  EMBER_CHECK(begin < info.size, ErrorCode::kInvalidArgument, source_, ": section '", info.name, "' has no checksum piece ",
              piece);
  return section_checksum(data + begin, std::min(kEngineChecksumChunk, info.size - begin));
}

void EngineView::check_pieces(std::string_view name, const std::vector<uint64_t>& digests) const {
  const EngineSectionInfo& info = find(name);
  EMBER_CHECK(digests.size() == checksum_pieces(name), ErrorCode::kInvalidArgument, source_, ": section '", info.name,
              "': expected ", checksum_pieces(name), " checksum pieces, found ", digests.size());
  const uint64_t actual = (info.flags & kSectionFlagChunkedChecksum) ? combine_digests(digests) : digests.at(0);
  EMBER_CHECK(actual == info.checksum, ErrorCode::kChecksumMismatch, source_, ": section '", info.name,
              "' is corrupted: XXH3-64 checksum expected ", hex64(info.checksum), ", found ", hex64(actual));
}

void EngineView::verify_padding() const {
  // Bytes outside the header, the table and the sections are alignment padding, which no
  // checksum covers; the writer zeroes them, so anything else there is damage.
  const uint8_t* base = storage_->data();
  const uint64_t file_size = storage_->nbytes();
  std::vector<const EngineSectionInfo*> by_offset;
  for (const auto& sec : sections_) by_offset.push_back(&sec);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* c) {
    return a->offset < c->offset || (a->offset == c->offset && a->size < c->size);
  });
  uint64_t cursor = table_end_;
  for (const auto* sec : by_offset) {
    for (uint64_t k = cursor; k < sec->offset; ++k) {
      EMBER_CHECK(base[k] == 0, ErrorCode::kChecksumMismatch, source_, ": engine is corrupted: padding byte ", k,
                  " before section '", sec->name, "' is ", static_cast<int>(base[k]), ", expected 0");
    }
    cursor = std::max(cursor, sec->offset + sec->size);
  }
  for (uint64_t k = cursor; k < file_size; ++k) {
    EMBER_CHECK(base[k] == 0, ErrorCode::kChecksumMismatch, source_, ": engine is corrupted: padding byte ", k,
                " after the last section is ", static_cast<int>(base[k]), ", expected 0");
  }
}

}  // namespace ember
