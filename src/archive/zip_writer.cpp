// Zip writing: aligned stored entries, optional deflate, ZIP64 when needed, atomic
// replace of the destination (temporary file + fsync + rename).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "ember/archive.h"

namespace ember {
namespace {

constexpr uint16_t kFlagUtf8 = 0x0800;
constexpr uint16_t kVersionDefault = 20;
constexpr uint16_t kVersionZip64 = 45;
constexpr uint16_t kPaddingExtraId = 0x4246;  // "FB" little-endian, the id PyTorch uses
constexpr uint16_t kDosDate1980 = (0 << 9) | (1 << 5) | 1;  // fixed timestamp: reproducible output

void put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t clamp32(uint64_t v, bool zip64) { return zip64 ? 0xFFFFFFFFu : static_cast<uint32_t>(v); }

void check_alignment(const std::string& path, size_t alignment) {
  EMBER_CHECK(alignment >= 1 && alignment <= 4096 && (alignment & (alignment - 1)) == 0, ErrorCode::kInvalidArgument,
              path, ": zip alignment must be a power of two <= 4096, got ", alignment);
}

}  // namespace

ZipWriter::ZipWriter(std::string path, ZipWriteOptions options) : path_(std::move(path)), options_(options) {
  check_alignment(path_, options_.alignment);
  std::filesystem::path dest(path_);
  std::filesystem::path dir = dest.parent_path();
  if (dir.empty()) dir = ".";
  std::string tmpl = (dir / ("." + dest.filename().string() + ".tmp.XXXXXX")).string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  fd_ = mkstemp(buf.data());
  EMBER_CHECK(fd_ >= 0, ErrorCode::kIo, path_, ": cannot create a temporary file in '", dir.string(),
              "': ", std::strerror(errno));
  temp_path_ = buf.data();
  fchmod(fd_, 0644);  // mkstemp creates 0600; archives are ordinary readable files
}

ZipWriter::ZipWriter(std::vector<uint8_t>* sink, std::string name, ZipWriteOptions options)
    : path_(std::move(name)), options_(options), sink_(sink) {
  EMBER_CHECK(sink_ != nullptr, ErrorCode::kInvalidArgument, path_, ": in-memory zip writer without a sink");
  check_alignment(path_, options_.alignment);
  // Offsets (and so alignment) are relative to the archive's own start.
  EMBER_CHECK(sink_->empty(), ErrorCode::kInvalidArgument, path_, ": the in-memory sink must start empty");
}

ZipWriter::~ZipWriter() {
  if (!finished_) abort();
}

void ZipWriter::abort() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_path_.empty() && !finished_) {
    ::unlink(temp_path_.c_str());
  }
  failed_ = true;
}

void ZipWriter::check_usable(const char* what) const {
  EMBER_CHECK(!finished_ && !failed_ && (fd_ >= 0 || sink_ != nullptr), ErrorCode::kInvalidArgument, path_, ": ", what,
              " after the writer was finished or failed");
}

void ZipWriter::write_bytes(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (sink_ != nullptr) {
    sink_->insert(sink_->end(), p, p + n);
    offset_ += n;
    return;
  }
  while (n > 0) {
    ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      abort();
      fail(ErrorCode::kIo, path_, ": write to temporary file failed at offset ", offset_, ": ",
           w < 0 ? std::strerror(e) : "no progress");
    }
    p += w;
    n -= static_cast<size_t>(w);
    offset_ += static_cast<uint64_t>(w);
  }
}

void ZipWriter::add(std::string_view name, std::span<const uint8_t> data) {
  check_usable("add");
  add_entry(name, data, data.size(), zip_detail::crc32_of(data), static_cast<uint16_t>(ZipMethod::kStored));
}

void ZipWriter::add_deflated(std::string_view name, std::span<const uint8_t> data, int level) {
  check_usable("add_deflated");
  EMBER_CHECK(level >= 1 && level <= 9, ErrorCode::kInvalidArgument, path_, ": deflate level must be 1-9, got ",
              level);
  z_stream zs{};
  EMBER_CHECK(deflateInit2(&zs, level, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK,
              ErrorCode::kOutOfMemory, path_, ": zlib deflateInit2 failed");
  std::vector<uint8_t> out;
  constexpr size_t kChunk = size_t{1} << 20;
  size_t in_pos = 0;
  while (true) {
    if (zs.avail_in == 0 && in_pos < data.size()) {
      size_t take = std::min(kChunk, data.size() - in_pos);
      zs.next_in = const_cast<Bytef*>(data.data() + in_pos);
      zs.avail_in = static_cast<uInt>(take);
      in_pos += take;
    }
    const int flush = in_pos == data.size() ? Z_FINISH : Z_NO_FLUSH;
    const size_t old = out.size();
    out.resize(old + kChunk);
    zs.next_out = out.data() + old;
    zs.avail_out = static_cast<uInt>(kChunk);
    const int rc = deflate(&zs, flush);
    out.resize(old + kChunk - zs.avail_out);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      deflateEnd(&zs);
      fail(ErrorCode::kInternal, path_, ": zlib deflate failed for entry '", name, "' (", rc, ")");
    }
  }
  deflateEnd(&zs);
  add_entry(name, out, data.size(), zip_detail::crc32_of(data), static_cast<uint16_t>(ZipMethod::kDeflated));
}

void ZipWriter::add_entry(std::string_view name, std::span<const uint8_t> payload, uint64_t uncompressed_size,
                          uint32_t crc, uint16_t method) {
  std::string problem = zip_name_problem(name);
  EMBER_CHECK(problem.empty(), ErrorCode::kInvalidArgument, path_, ": cannot add entry '", name, "': ", problem);
  EMBER_CHECK(name.size() <= 0xFFFF, ErrorCode::kInvalidArgument, path_, ": entry name of ", name.size(),
              " bytes exceeds 65535");
  EMBER_CHECK(names_.find(std::string(name)) == names_.end(), ErrorCode::kInvalidArgument, path_,
              ": duplicate entry name '", name, "'");

  const uint64_t header_offset = offset_;
  const bool zip64 =
      options_.force_zip64 || zip_detail::entry_needs_zip64(header_offset, payload.size(), uncompressed_size);

  std::vector<uint8_t> extra;
  if (zip64) {
    put16(extra, 0x0001);
    put16(extra, 16);
    put64(extra, uncompressed_size);
    put64(extra, payload.size());
  }
  // Pad so the data starts at a multiple of the alignment. The padding extra field needs
  // at least its 4-byte header, so the padding is between 4 and alignment + 3 bytes.
  if (options_.alignment > 1) {
    uint64_t data_start = header_offset + 30 + name.size() + extra.size();
    uint64_t pad = (options_.alignment - (data_start + 4) % options_.alignment) % options_.alignment;
    put16(extra, kPaddingExtraId);
    put16(extra, static_cast<uint16_t>(pad));
    extra.insert(extra.end(), pad, 'Z');
  }

  std::vector<uint8_t> h;
  h.reserve(30 + name.size() + extra.size());
  put32(h, 0x04034b50);
  put16(h, zip64 ? kVersionZip64 : kVersionDefault);
  put16(h, kFlagUtf8);
  put16(h, method);
  put16(h, 0);  // time
  put16(h, kDosDate1980);
  put32(h, crc);
  put32(h, clamp32(payload.size(), zip64));
  put32(h, clamp32(uncompressed_size, zip64));
  put16(h, static_cast<uint16_t>(name.size()));
  put16(h, static_cast<uint16_t>(extra.size()));
  h.insert(h.end(), name.begin(), name.end());
  h.insert(h.end(), extra.begin(), extra.end());
  write_bytes(h.data(), h.size());
  write_bytes(payload.data(), payload.size());  // straight from the caller's memory

  names_.emplace(std::string(name), written_.size());
  written_.push_back({std::string(name), header_offset, payload.size(), uncompressed_size, crc, method});
}

void ZipWriter::finish() {
  check_usable("finish");
  const uint64_t cd_offset = offset_;
  std::vector<uint8_t> cd;
  for (const Written& w : written_) {
    const bool zip64 = options_.force_zip64 ||
                       zip_detail::entry_needs_zip64(w.local_header_offset, w.compressed_size, w.uncompressed_size);
    std::vector<uint8_t> extra;
    if (zip64) {
      put16(extra, 0x0001);
      put16(extra, 24);
      put64(extra, w.uncompressed_size);
      put64(extra, w.compressed_size);
      put64(extra, w.local_header_offset);
    }
    put32(cd, 0x02014b50);
    put16(cd, static_cast<uint16_t>((3 << 8) | (zip64 ? kVersionZip64 : kVersionDefault)));  // made by: unix
    put16(cd, zip64 ? kVersionZip64 : kVersionDefault);
    put16(cd, kFlagUtf8);
    put16(cd, w.method);
    put16(cd, 0);
    put16(cd, kDosDate1980);
    put32(cd, w.crc32);
    put32(cd, clamp32(w.compressed_size, zip64));
    put32(cd, clamp32(w.uncompressed_size, zip64));
    put16(cd, static_cast<uint16_t>(w.name.size()));
    put16(cd, static_cast<uint16_t>(extra.size()));
    put16(cd, 0);  // comment
    put16(cd, 0);  // disk
    put16(cd, 0);  // internal attributes
    put32(cd, 0100644u << 16);  // external attributes: regular file, rw-r--r--
    put32(cd, clamp32(w.local_header_offset, zip64));
    cd.insert(cd.end(), w.name.begin(), w.name.end());
    cd.insert(cd.end(), extra.begin(), extra.end());
  }
  const uint64_t cd_size = cd.size();
  const uint64_t count = written_.size();
  const bool zip64 = options_.force_zip64 || zip_detail::eocd_needs_zip64(count, cd_offset, cd_size);
  if (zip64) {
    const uint64_t eocd64_offset = cd_offset + cd_size;
    put32(cd, 0x06064b50);
    put64(cd, 44);  // size of the rest of the record
    put16(cd, (3 << 8) | kVersionZip64);
    put16(cd, kVersionZip64);
    put32(cd, 0);
    put32(cd, 0);
    put64(cd, count);
    put64(cd, count);
    put64(cd, cd_size);
    put64(cd, cd_offset);
    put32(cd, 0x07064b50);  // locator
    put32(cd, 0);
    put64(cd, eocd64_offset);
    put32(cd, 1);
  }
  put32(cd, 0x06054b50);
  put16(cd, 0);
  put16(cd, 0);
  put16(cd, zip64 ? 0xFFFF : static_cast<uint16_t>(count));
  put16(cd, zip64 ? 0xFFFF : static_cast<uint16_t>(count));
  put32(cd, clamp32(cd_size, zip64));
  put32(cd, clamp32(cd_offset, zip64));
  put16(cd, 0);
  write_bytes(cd.data(), cd.size());
  if (sink_ != nullptr) {
    finished_ = true;
    return;
  }

  if (::fsync(fd_) != 0) {
    int e = errno;
    abort();
    fail(ErrorCode::kIo, path_, ": fsync of the temporary file failed: ", std::strerror(e));
  }
  if (::close(fd_) != 0) {
    int e = errno;
    fd_ = -1;
    abort();
    fail(ErrorCode::kIo, path_, ": close of the temporary file failed: ", std::strerror(e));
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    int e = errno;
    abort();
    fail(ErrorCode::kIo, path_, ": cannot rename the temporary file over the destination: ", std::strerror(e));
  }
  finished_ = true;
  // Make the rename durable.
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace ember
