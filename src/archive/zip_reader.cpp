// Zip reading: central directory (with ZIP64), local header cross-checks, zero-copy stored
// entries, bounded inflation of deflated entries.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "ember/archive.h"
#include "ember/file.h"

namespace ember {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kEocd64Sig = 0x06064b50;
constexpr uint32_t kEocd64LocatorSig = 0x07064b50;
constexpr uint64_t kLocalHeaderSize = 30;
constexpr uint64_t kCentralHeaderSize = 46;
constexpr uint64_t kEocdSize = 22;
constexpr uint64_t kEocd64Size = 56;
constexpr uint64_t kEocd64LocatorSize = 20;
constexpr uint16_t kFlagEncrypted = 0x0001;
constexpr uint16_t kFlagDataDescriptor = 0x0008;
constexpr uint16_t kFlagStrongEncryption = 0x0040;
constexpr uint16_t kZip64ExtraId = 0x0001;

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const uint8_t* p) { return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// An mmap'd file; the owner object every borrowed Storage keeps alive.

// Reads the zip64 extra field of a header: replaces each 32-bit value that holds the
// 0xFFFFFFFF marker (0xFFFF for the disk number) with the 64-bit value, in APPNOTE order.
struct Zip64Fields {
  uint64_t* uncompressed = nullptr;
  uint64_t* compressed = nullptr;
  uint64_t* offset = nullptr;
  uint32_t* disk = nullptr;
};

void apply_zip64_extra(const uint8_t* extra, uint64_t extra_len, Zip64Fields fields, const std::string& where) {
  bool found = false;
  uint64_t pos = 0;
  while (pos + 4 <= extra_len) {
    uint16_t id = le16(extra + pos);
    uint16_t len = le16(extra + pos + 2);
    EMBER_CHECK(pos + 4 + len <= extra_len, ErrorCode::kCorrupt, where, ": extra field 0x", std::hex, id,
                std::dec, " of ", len, " bytes runs past the extra data (", extra_len - pos - 4, " bytes left)");
    if (id == kZip64ExtraId) {
      EMBER_CHECK(!found, ErrorCode::kCorrupt, where, ": two zip64 extra fields");
      found = true;
      const uint8_t* p = extra + pos + 4;
      uint64_t left = len;
      auto take64 = [&](uint64_t* v, const char* field) {
        if (v == nullptr || *v != zip_detail::kMax32) return;
        EMBER_CHECK(left >= 8, ErrorCode::kCorrupt, where, ": zip64 extra field lacks the 64-bit ", field,
                    " (", left, " bytes left, expected 8)");
        *v = le64(p);
        p += 8;
        left -= 8;
      };
      take64(fields.uncompressed, "uncompressed size");
      take64(fields.compressed, "compressed size");
      take64(fields.offset, "local header offset");
      if (fields.disk != nullptr && *fields.disk == zip_detail::kMax16) {
        EMBER_CHECK(left >= 4, ErrorCode::kCorrupt, where, ": zip64 extra field lacks the disk number");
        *fields.disk = le32(p);
      }
    }
    pos += 4 + len;
  }
  // Markers without a zip64 field to resolve them.
  auto unresolved = [](uint64_t* v) { return v != nullptr && *v == zip_detail::kMax32; };
  EMBER_CHECK(found || !(unresolved(fields.uncompressed) || unresolved(fields.compressed) ||
                         unresolved(fields.offset)),
              ErrorCode::kCorrupt, where, ": 32-bit size/offset holds the zip64 marker 0xffffffff but there is no "
              "zip64 extra field");
}

}  // namespace

std::string zip_name_problem(std::string_view name) {
  if (name.empty()) return "empty name";
  if (name.find('\0') != std::string_view::npos) return "name contains a NUL byte";
  if (name.find('\\') != std::string_view::npos) return "name contains a backslash";
  if (name.front() == '/') return "absolute path";
  if (name.size() >= 2 && name[1] == ':') return "name starts with a drive letter";
  std::string_view rest = name;
  if (rest.back() == '/') rest.remove_suffix(1);  // directory entry
  if (rest.empty()) return "empty path component";
  size_t start = 0;
  while (start <= rest.size()) {
    size_t end = rest.find('/', start);
    if (end == std::string_view::npos) end = rest.size();
    std::string_view comp = rest.substr(start, end - start);
    if (comp.empty()) return "empty path component";
    if (comp == "..") return "'..' path component";
    if (comp == ".") return "'.' path component";
    start = end + 1;
  }
  return {};
}

ZipReader::~ZipReader() = default;

std::shared_ptr<ZipReader> ZipReader::open(const std::string& path, const ZipReadOptions& options) {
  return from_memory(map_file_readonly(path), path, options);
}

std::shared_ptr<ZipReader> ZipReader::from_memory(std::shared_ptr<Storage> bytes, const std::string& name,
                                                  const ZipReadOptions& options) {
  EMBER_CHECK(bytes != nullptr, ErrorCode::kInvalidArgument, name, ": no bytes given");
  auto reader = std::shared_ptr<ZipReader>(new ZipReader());
  reader->name_ = name;
  reader->options_ = options;
  reader->data_ = bytes->data();
  reader->size_ = bytes->nbytes();
  reader->owner_ = std::move(bytes);
  reader->parse();
  return reader;
}

void ZipReader::parse() {
  const std::string& f = name_;
  EMBER_CHECK(size_ >= kEocdSize, ErrorCode::kTruncated, f, ": not a zip archive: ", size_,
              " bytes, smaller than the 22-byte end of central directory record");

  // The end of central directory record: scan back over a possible comment (<= 65535 bytes).
  uint64_t eocd = std::numeric_limits<uint64_t>::max();
  uint64_t lowest = size_ >= kEocdSize + 0xFFFF ? size_ - kEocdSize - 0xFFFF : 0;
  for (uint64_t pos = size_ - kEocdSize + 1; pos-- > lowest;) {
    if (le32(data_ + pos) == kEocdSig && pos + kEocdSize + le16(data_ + pos + 20) <= size_) {
      eocd = pos;
      break;
    }
  }
  EMBER_CHECK(eocd != std::numeric_limits<uint64_t>::max(), ErrorCode::kCorrupt, f,
              ": not a zip archive (no end of central directory record found)");
  const uint8_t* e = data_ + eocd;
  uint32_t disk = le16(e + 4);
  uint32_t cd_disk = le16(e + 6);
  uint64_t disk_entries = le16(e + 8);
  uint64_t entry_count = le16(e + 10);
  uint64_t cd_size = le32(e + 12);
  uint64_t cd_offset = le32(e + 16);
  uint64_t cd_end_limit = eocd;  // the central directory ends before the end records

  // ZIP64: a locator right before the EOCD points at the EOCD64 record.
  if (eocd >= kEocd64LocatorSize && le32(data_ + eocd - kEocd64LocatorSize) == kEocd64LocatorSig) {
    const uint8_t* loc = data_ + eocd - kEocd64LocatorSize;
    uint32_t eocd64_disk = le32(loc + 4);
    uint64_t eocd64 = le64(loc + 8);
    uint32_t total_disks = le32(loc + 16);
    EMBER_CHECK(eocd64_disk == 0 && total_disks <= 1, ErrorCode::kUnsupported, f,
                ": multi-disk zip archives are not supported (zip64 locator names disk ", eocd64_disk, " of ",
                total_disks, ")");
    EMBER_CHECK(eocd64 <= eocd - kEocd64LocatorSize && eocd - kEocd64LocatorSize - eocd64 >= kEocd64Size,
                ErrorCode::kCorrupt, f, ": zip64 end of central directory record offset ", eocd64,
                " is outside the file (must leave 56 bytes before the locator at ", eocd - kEocd64LocatorSize,
                ")");
    const uint8_t* r = data_ + eocd64;
    EMBER_CHECK(le32(r) == kEocd64Sig, ErrorCode::kCorrupt, f, ": zip64 end of central directory record at offset ",
                eocd64, ": expected signature 0x06064b50, found ", hex32(le32(r)));
    uint64_t record_size = le64(r + 4);
    EMBER_CHECK(record_size >= kEocd64Size - 12 && record_size <= eocd - kEocd64LocatorSize - eocd64 - 12,
                ErrorCode::kCorrupt, f, ": zip64 end of central directory record size ", record_size,
                " does not fit before the locator");
    disk = le32(r + 16);
    cd_disk = le32(r + 20);
    disk_entries = le64(r + 24);
    entry_count = le64(r + 32);
    cd_size = le64(r + 40);
    cd_offset = le64(r + 48);
    cd_end_limit = eocd64;
  } else {
    EMBER_CHECK(entry_count != zip_detail::kMax16 && cd_size != zip_detail::kMax32 && cd_offset != zip_detail::kMax32,
                ErrorCode::kCorrupt, f,
                ": end of central directory holds zip64 markers but no zip64 locator precedes it");
  }
  EMBER_CHECK(disk == 0 && cd_disk == 0 && disk_entries == entry_count, ErrorCode::kUnsupported, f,
              ": multi-disk zip archives are not supported (disk ", disk, ", central directory disk ", cd_disk,
              ", ", disk_entries, " of ", entry_count, " entries on this disk)");
  EMBER_CHECK(entry_count <= options_.max_entries, ErrorCode::kLimitExceeded, f, ": ", entry_count,
              " entries exceed the limit of ", options_.max_entries);
  EMBER_CHECK(cd_offset <= cd_end_limit && cd_size <= cd_end_limit - cd_offset, ErrorCode::kTruncated, f,
              ": central directory (offset ", cd_offset, ", ", cd_size, " bytes) extends past its end at ",
              cd_end_limit, " (file size ", size_, ")");
  EMBER_CHECK(entry_count <= cd_size / kCentralHeaderSize, ErrorCode::kCorrupt, f, ": ", entry_count,
              " entries cannot fit in a central directory of ", cd_size, " bytes");

  entries_.reserve(entry_count);
  uint64_t pos = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < entry_count; ++i) {
    std::string where = cat(f, ": central directory entry ", i);
    EMBER_CHECK(cd_end - pos >= kCentralHeaderSize, ErrorCode::kTruncated, where, " at offset ", pos,
                ": needs 46 bytes, the central directory has ", cd_end - pos, " left");
    const uint8_t* c = data_ + pos;
    EMBER_CHECK(le32(c) == kCentralSig, ErrorCode::kCorrupt, where, " at offset ", pos,
                ": expected signature 0x02014b50, found ", hex32(le32(c)));
    ZipEntry entry;
    entry.flags = le16(c + 8);
    entry.method = le16(c + 10);
    entry.crc32 = le32(c + 16);
    entry.compressed_size = le32(c + 20);
    entry.uncompressed_size = le32(c + 24);
    uint64_t name_len = le16(c + 28);
    uint64_t extra_len = le16(c + 30);
    uint64_t comment_len = le16(c + 32);
    uint32_t start_disk = le16(c + 34);
    entry.local_header_offset = le32(c + 42);
    uint64_t total = kCentralHeaderSize + name_len + extra_len + comment_len;
    EMBER_CHECK(cd_end - pos >= total, ErrorCode::kTruncated, where, ": name, extra and comment (", total - 46,
                " bytes) run past the central directory (", cd_end - pos - 46, " bytes left)");
    entry.name.assign(reinterpret_cast<const char*>(c + kCentralHeaderSize), name_len);
    where = cat(f, ": entry '", entry.name, "'");
    std::string problem = zip_name_problem(entry.name);
    EMBER_CHECK(problem.empty(), ErrorCode::kCorrupt, f, ": central directory entry ", i, ": unsafe name '",
                entry.name, "': ", problem);
    apply_zip64_extra(c + kCentralHeaderSize + name_len, extra_len,
                      {&entry.uncompressed_size, &entry.compressed_size, &entry.local_header_offset, &start_disk},
                      where + " (central directory)");
    EMBER_CHECK(start_disk == 0, ErrorCode::kUnsupported, where, ": starts on disk ", start_disk,
                "; multi-disk archives are not supported");
    EMBER_CHECK((entry.flags & (kFlagEncrypted | kFlagStrongEncryption)) == 0, ErrorCode::kUnsupported, where,
                ": encrypted entries are not supported (flags 0x", std::hex, entry.flags, ")");
    EMBER_CHECK(entry.method == static_cast<uint16_t>(ZipMethod::kStored) ||
                    entry.method == static_cast<uint16_t>(ZipMethod::kDeflated),
                ErrorCode::kUnsupported, where, ": compression method ", entry.method,
                " is not supported (expected 0 stored or 8 deflated)");
    if (entry.method == static_cast<uint16_t>(ZipMethod::kStored)) {
      EMBER_CHECK(entry.compressed_size == entry.uncompressed_size, ErrorCode::kCorrupt, where,
                  ": stored entry with compressed size ", entry.compressed_size, " != uncompressed size ",
                  entry.uncompressed_size);
    }

    // The local header: same name and method; sizes and CRC agree unless a data
    // descriptor follows the data (then the local fields may be zero, as PyTorch writes).
    uint64_t lh = entry.local_header_offset;
    EMBER_CHECK(lh < cd_offset && cd_offset - lh >= kLocalHeaderSize, ErrorCode::kCorrupt, where,
                ": local header offset ", lh, " is not before the central directory at ", cd_offset,
                " with room for a 30-byte header");
    const uint8_t* l = data_ + lh;
    EMBER_CHECK(le32(l) == kLocalSig, ErrorCode::kCorrupt, where, ": local header at offset ", lh,
                ": expected signature 0x04034b50, found ", hex32(le32(l)));
    uint16_t l_flags = le16(l + 6);
    uint16_t l_method = le16(l + 8);
    uint32_t l_crc = le32(l + 14);
    uint64_t l_csize = le32(l + 18);
    uint64_t l_usize = le32(l + 22);
    uint64_t l_name_len = le16(l + 26);
    uint64_t l_extra_len = le16(l + 28);
    EMBER_CHECK(cd_offset - lh - kLocalHeaderSize >= l_name_len + l_extra_len, ErrorCode::kTruncated, where,
                ": local header name and extra (", l_name_len + l_extra_len,
                " bytes) run into the central directory");
    std::string_view l_name(reinterpret_cast<const char*>(l + kLocalHeaderSize), l_name_len);
    EMBER_CHECK(l_name == entry.name, ErrorCode::kCorrupt, where, ": local header names '", l_name,
                "', central directory names '", entry.name, "'");
    EMBER_CHECK(l_method == entry.method, ErrorCode::kCorrupt, where, ": local header method ", l_method,
                ", central directory method ", entry.method);
    EMBER_CHECK((l_flags & (kFlagEncrypted | kFlagStrongEncryption)) == 0, ErrorCode::kUnsupported, where,
                ": encrypted entries are not supported (local flags 0x", std::hex, l_flags, ")");
    apply_zip64_extra(l + kLocalHeaderSize + l_name_len, l_extra_len, {&l_usize, &l_csize, nullptr, nullptr},
                      where + " (local header)");
    if ((l_flags & kFlagDataDescriptor) == 0) {
      EMBER_CHECK(l_crc == entry.crc32 && l_csize == entry.compressed_size && l_usize == entry.uncompressed_size,
                  ErrorCode::kCorrupt, where, ": local header (crc ", hex32(l_crc), ", sizes ", l_csize, "/",
                  l_usize, ") disagrees with the central directory (crc ", hex32(entry.crc32), ", sizes ",
                  entry.compressed_size, "/", entry.uncompressed_size, ")");
    }
    entry.data_offset = lh + kLocalHeaderSize + l_name_len + l_extra_len;
    EMBER_CHECK(entry.compressed_size <= cd_offset - entry.data_offset, ErrorCode::kTruncated, where, ": data (",
                entry.compressed_size, " bytes at offset ", entry.data_offset,
                ") runs past the start of the central directory at ", cd_offset);
    if (entry.method == static_cast<uint16_t>(ZipMethod::kDeflated)) {
      uint64_t bound = entry.compressed_size * options_.max_compression_ratio + 4096;  // csize < 2^48 here
      EMBER_CHECK(entry.uncompressed_size <= bound && entry.uncompressed_size <= options_.max_inflated_size,
                  ErrorCode::kLimitExceeded, where, ": declared uncompressed size ", entry.uncompressed_size,
                  " bytes exceeds the limit (", entry.compressed_size, " compressed bytes allow at most ",
                  std::min(bound, options_.max_inflated_size), ")");
    }
    EMBER_CHECK(index_.find(entry.name) == index_.end(), ErrorCode::kCorrupt, f, ": duplicate entry name '",
                entry.name, "'");
    entries_.push_back(std::move(entry));
    index_.emplace(entries_.back().name, entries_.size() - 1);  // views stay valid: reserved above
    pos += total;
  }

  // Entries must not overlap (overlapping entries are a zip-bomb technique).
  std::vector<const ZipEntry*> by_offset;
  by_offset.reserve(entries_.size());
  for (const auto& en : entries_) by_offset.push_back(&en);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const ZipEntry* a, const ZipEntry* b) { return a->local_header_offset < b->local_header_offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const ZipEntry& a = *by_offset[i - 1];
    const ZipEntry& b = *by_offset[i];
    EMBER_CHECK(a.data_offset + a.compressed_size <= b.local_header_offset, ErrorCode::kCorrupt, f, ": entry '",
                a.name, "' (data ends at ", a.data_offset + a.compressed_size, ") overlaps entry '", b.name,
                "' (local header at ", b.local_header_offset, ")");
  }
}

const ZipEntry* ZipReader::find(std::string_view entry_name) const {
  auto it = index_.find(entry_name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::shared_ptr<Storage> ZipReader::read(const ZipEntry& entry, bool verify_crc) const {
  const std::string where = cat(name_, ": entry '", entry.name, "'");
  // Sizes and offsets were validated in parse(); re-check cheaply in case a caller built
  // the entry by hand.
  EMBER_CHECK(entry.data_offset <= size_ && entry.compressed_size <= size_ - entry.data_offset,
              ErrorCode::kInvalidArgument, where, ": entry does not belong to this archive");
  const uint8_t* src = data_ + entry.data_offset;
  std::shared_ptr<Storage> out;
  if (entry.method == static_cast<uint16_t>(ZipMethod::kStored)) {
    out = Storage::borrow(src, entry.compressed_size, owner_, /*writable=*/false);
  } else if (entry.method == static_cast<uint16_t>(ZipMethod::kDeflated)) {
    out = Storage::allocate(entry.uncompressed_size);  // bounded in parse()
    z_stream zs{};
    EMBER_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, ErrorCode::kOutOfMemory, where,
                ": zlib inflateInit2 failed");
    uint64_t in_left = entry.compressed_size;
    uint64_t out_left = entry.uncompressed_size;
    zs.next_in = const_cast<Bytef*>(src);
    zs.next_out = out->data();
    int rc = Z_OK;
    constexpr uint64_t kChunk = 1u << 30;
    while (true) {
      if (zs.avail_in == 0 && in_left > 0) {
        zs.avail_in = static_cast<uInt>(std::min(in_left, kChunk));
        in_left -= zs.avail_in;
      }
      if (zs.avail_out == 0 && out_left > 0) {
        zs.avail_out = static_cast<uInt>(std::min(out_left, kChunk));
        out_left -= zs.avail_out;
      }
      // Inflation stops at the declared size: a stream that is not finished when the
      // output is full is an error (never a bigger buffer).
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) break;
      if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0) {
        inflateEnd(&zs);
        fail(ErrorCode::kTruncated, where, ": deflated data (", entry.compressed_size,
             " bytes) ends before the stream does (", zs.total_out, " of ", entry.uncompressed_size,
             " bytes inflated)");
      }
      if (rc == Z_BUF_ERROR && zs.avail_out == 0 && out_left == 0) {
        inflateEnd(&zs);
        fail(ErrorCode::kCorrupt, where, ": deflated data inflates to more than the declared ",
             entry.uncompressed_size, " bytes");
      }
      if (rc != Z_OK) {
        std::string msg = zs.msg ? zs.msg : "error";
        inflateEnd(&zs);
        fail(ErrorCode::kCorrupt, where, ": invalid deflate data: ", msg, " (zlib ", rc, ")");
      }
    }
    uint64_t produced = zs.total_out;
    inflateEnd(&zs);
    EMBER_CHECK(produced == entry.uncompressed_size, ErrorCode::kCorrupt, where, ": inflated ", produced,
                " bytes, the central directory declares ", entry.uncompressed_size);
  } else {
    fail(ErrorCode::kUnsupported, where, ": compression method ", entry.method, " is not supported");
  }
  if (verify_crc) {
    uint32_t crc = zip_detail::crc32_of({out->data(), out->nbytes()});
    EMBER_CHECK(crc == entry.crc32, ErrorCode::kChecksumMismatch, where, ": CRC-32 mismatch: expected ",
                hex32(entry.crc32), ", found ", hex32(crc));
  }
  return out;
}

std::string ZipReader::read_string(const ZipEntry& entry, bool verify_crc) const {
  auto s = read(entry, verify_crc);
  return std::string(reinterpret_cast<const char*>(s->data()), s->nbytes());
}

namespace zip_detail {

uint32_t crc32_of(std::span<const uint8_t> data) {
  uLong crc = crc32_z(0L, Z_NULL, 0);
  return static_cast<uint32_t>(crc32_z(crc, data.data(), data.size()));
}

bool entry_needs_zip64(uint64_t local_header_offset, uint64_t compressed_size, uint64_t uncompressed_size) {
  return local_header_offset >= kMax32 || compressed_size >= kMax32 || uncompressed_size >= kMax32;
}

bool eocd_needs_zip64(uint64_t entry_count, uint64_t cd_offset, uint64_t cd_size) {
  return entry_count >= kMax16 || cd_offset >= kMax32 || cd_size >= kMax32;
}

}  // namespace zip_detail
}  // namespace ember
