// The zip container under .pt2 / .ep archives.
//
// Reading: the file is mmap'd read-only; stored entries are returned as zero-copy Storage
// views that keep the mapping alive, deflated entries are inflated into owned Storage with
// the declared size bounded (zip bombs cannot make Ember allocate without limit). Every
// structure is validated against the file before use; errors name the file, the entry or
// field, and what was expected vs found.
//
// Writing: entries are added from memory spans and written straight to a temporary file in
// the destination's folder; finish() writes the central directory, fsyncs and renames, so
// the destination is either untouched or the complete new archive (an in-memory variant
// writes into a byte vector, for archives nested in archives). The data of every stored
// entry starts at a multiple of the alignment (64 by default), padded the way PyTorch pads:
// an extra field with id "FB" in the local header.
//
// Supported subset: single-disk archives, methods 0 (stored) and 8 (deflated), ZIP64
// (EOCD64 locator + record, zip64 extra fields), data descriptors (bit 3), UTF-8 names.
// Not supported (kUnsupported): encryption, other methods, multi-disk archives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ember/error.h"
#include "ember/tensor.h"

namespace ember {

enum class ZipMethod : uint16_t { kStored = 0, kDeflated = 8 };

struct ZipEntry {
  std::string name;
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;  // first byte of the (compressed) data, from the local header
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint16_t method = 0;  // ZipMethod value
  uint16_t flags = 0;   // general purpose bit flag
  uint32_t crc32 = 0;
  bool is_directory() const { return !name.empty() && name.back() == '/'; }
};

struct ZipReadOptions {
  // A deflated entry may declare at most compressed_size * max_compression_ratio +
  // 4096 bytes (deflate cannot exceed ~1032:1), and never more than max_inflated_size.
  uint64_t max_compression_ratio = 1100;
  uint64_t max_inflated_size = uint64_t{16} << 30;
  uint64_t max_entries = 1u << 20;
};

class ZipReader {
 public:
  // Maps `path` read-only and parses its central directory. Throws kIo when the file
  // cannot be opened, kCorrupt / kTruncated / kUnsupported / kLimitExceeded for bad zips.
  static std::shared_ptr<ZipReader> open(const std::string& path, const ZipReadOptions& options = {});
  // The same over bytes in memory (kept alive by the reader); `name` is used in messages.
  static std::shared_ptr<ZipReader> from_memory(std::shared_ptr<Storage> bytes, const std::string& name,
                                                const ZipReadOptions& options = {});

  const std::string& name() const { return name_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // nullptr when absent.
  const ZipEntry* find(std::string_view entry_name) const;
  // Stored: a read-only view into the mapping (keeps it alive). Deflated: an owned copy.
  // With verify_crc the CRC-32 is checked (kChecksumMismatch).
  std::shared_ptr<Storage> read(const ZipEntry& entry, bool verify_crc = false) const;
  std::string read_string(const ZipEntry& entry, bool verify_crc = false) const;

  // The whole file, for diagnostics and tests.
  const uint8_t* file_data() const { return data_; }
  uint64_t file_size() const { return size_; }

  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;
  ~ZipReader();

 private:
  ZipReader() = default;
  void parse();
  std::string name_;
  ZipReadOptions options_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::shared_ptr<const void> owner_;  // the mapping or the caller's Storage
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string_view, size_t> index_;
};

// Zip entry name rules shared by reader and writer: non-empty, relative, no "..", "." or
// empty components (a trailing '/' marks a directory), no backslash, no NUL, no drive
// letter. Returns an empty string when valid, else the reason.
std::string zip_name_problem(std::string_view name);

struct ZipWriteOptions {
  size_t alignment = 64;     // data of every stored entry starts at a multiple of this (power of 2)
  bool force_zip64 = false;  // write ZIP64 records even when nothing needs them (tests)
};

class ZipWriter {
 public:
  // Creates a temporary file next to `path`. Throws kIo.
  explicit ZipWriter(std::string path, ZipWriteOptions options = {});
  // Writes the archive into `*sink` (appended; no file, no fsync, no rename); `name` is
  // used in messages. For archives nested inside other archives. `*sink` must outlive the
  // writer and holds the complete archive once finish() returns.
  ZipWriter(std::vector<uint8_t>* sink, std::string name, ZipWriteOptions options = {});
  // Removes the temporary file unless finish() succeeded; the destination is untouched.
  ~ZipWriter();
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;

  // Adds a stored entry (data written as is, aligned). Names are checked with
  // zip_name_problem and must be unique (kInvalidArgument).
  void add(std::string_view name, std::span<const uint8_t> data);
  void add(std::string_view name, std::string_view text) {
    add(name, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }
  // Adds a deflated entry (zlib level 1-9).
  void add_deflated(std::string_view name, std::span<const uint8_t> data, int level = 6);

  // Central directory, end records, fsync, rename over the destination. After a failure
  // the temporary file is removed and the writer is unusable.
  void finish();
  // Removes the temporary file; the destination is untouched.
  void abort();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  struct Written {
    std::string name;
    uint64_t local_header_offset;
    uint64_t compressed_size;
    uint64_t uncompressed_size;
    uint32_t crc32;
    uint16_t method;
  };
  void add_entry(std::string_view name, std::span<const uint8_t> payload, uint64_t uncompressed_size,
                 uint32_t crc, uint16_t method);
  void write_bytes(const void* data, size_t n);
  void check_usable(const char* what) const;

  std::string path_;
  std::string temp_path_;
  ZipWriteOptions options_;
  int fd_ = -1;
  std::vector<uint8_t>* sink_ = nullptr;  // in-memory archive instead of a file
  uint64_t offset_ = 0;
  bool finished_ = false;
  bool failed_ = false;
  std::vector<Written> written_;
  std::unordered_map<std::string, size_t> names_;
};

namespace zip_detail {
constexpr uint64_t kMax16 = 0xFFFF;
constexpr uint64_t kMax32 = 0xFFFFFFFF;
// Whether an entry needs zip64 fields (any of its 32-bit values would overflow; the
// marker value 0xFFFFFFFF itself counts as overflow).
bool entry_needs_zip64(uint64_t local_header_offset, uint64_t compressed_size, uint64_t uncompressed_size);
// Whether the end of central directory needs the ZIP64 records.
bool eocd_needs_zip64(uint64_t entry_count, uint64_t cd_offset, uint64_t cd_size);
// CRC-32 (zlib) of a span of any length.
uint32_t crc32_of(std::span<const uint8_t> data);
}  // namespace zip_detail

}  // namespace ember
