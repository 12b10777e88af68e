// Engine files: the container for one compiled subgraph.
//
// An engine is a 64-byte header, a table of named sections and the sections themselves
// (each 64-byte aligned, each with an XXH3-64 checksum). The "meta" section is UTF-8 JSON
// describing the engine (Ember version, target, build settings, I/O bindings); "plan" and
// "weights" are opaque to the container and belong to the backend that built the engine.
// The byte-level layout, the JSON schema and the versioning rules are in
// docs/engine-format.md.
//
// Reading is zero-copy: EngineView holds the file's Storage (an mmap, a slice of an .ep
// archive, or memory) and hands out sections as borrowed Storage views that keep it
// alive. Nothing in the file is trusted: every size, offset and checksum is validated
// before use and every problem is reported as ember::Error naming the source, the section
// or field, what was expected and what was found.
//
// Compatibility (docs/engine-format.md, "Compatibility"): check_compatibility() grades an
// engine against a host without building any kernel; enforce() logs the warnings and
// throws for the errors; load_engine() does parse + check + enforce.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ember/dtype.h"
#include "ember/error.h"
#include "ember/file.h"
#include "ember/target.h"
#include "ember/tensor.h"

namespace ember {

// ---------------------------------------------------------------- format constants

inline constexpr char kEngineMagic[8] = {'E', 'M', 'B', 'E', 'R', 'E', 'N', 'G'};
inline constexpr uint16_t kEngineFormatMajor = 1;
// 1.1: CPU plans may hold "winograd" steps; 1.2: a winograd step's weights may be the
// filters [9, C, K] (transformed per run) instead of the transformed filters [16, C, K],
// and sections may carry a chunked checksum (kSectionFlagChunkedChecksum); 1.3: a winograd
// step may carry tile 4 (F(4x4, 3x3)); 1.4: a winograd step may read and write nhwc.
inline constexpr uint16_t kEngineFormatMinor = 4;
inline constexpr uint32_t kEngineHeaderSize = 64;  // v1.0 header size
inline constexpr uint32_t kEngineSectionRecordSize = 64;
inline constexpr uint32_t kEngineSectionAlignment = 64;  // minimum alignment of every section
inline constexpr uint32_t kEngineMaxAlignment = 4096;
inline constexpr uint32_t kEngineMaxSections = 4096;
inline constexpr size_t kEngineSectionNameMax = 23;  // 24-byte field, NUL terminated
inline constexpr uint64_t kEngineMaxMetaSize = uint64_t{64} << 20;

// Standard section names.
inline constexpr const char* kSectionMeta = "meta";
inline constexpr const char* kSectionPlan = "plan";
inline constexpr const char* kSectionWeights = "weights";

// ---------------------------------------------------------------- metadata

// One dimension of a bound tensor: static when min == max. max == kDimUnbounded means
// no upper bound. `symbol` names the shape symbol (e.g. "s0") shared across bindings.
inline constexpr int64_t kDimUnbounded = std::numeric_limits<int64_t>::max();
struct EngineDim {
  int64_t min = 0;
  int64_t max = 0;
  std::string symbol;  // optional
  bool is_static() const { return min == max; }
  bool operator==(const EngineDim&) const = default;
};

struct EngineIoBinding {
  std::string name;
  DType dtype = DType::kUnknown;
  std::vector<EngineDim> shape;
  bool operator==(const EngineIoBinding&) const = default;
};

struct EngineMeta {
  std::string name;           // engine name (the subgraph's name); used in messages
  std::string ember_version;  // version of the Ember that built it (writer: set by set_meta if empty)
  // Format version. On read: from the header. On write: always the current format.
  uint16_t format_major = kEngineFormatMajor;
  uint16_t format_minor = kEngineFormatMinor;
  std::string backend;                                       // "cpu", later "cuda"; free text, informational
  TargetDescriptor target;                                   // required arch + ISA features (CUDA: SM + device)
  nlohmann::json build_settings = nlohmann::json::object();  // free JSON object
  std::vector<EngineIoBinding> inputs;
  std::vector<EngineIoBinding> outputs;
};

// JSON form of the meta section (docs/engine-format.md, "meta"). meta_from_json validates
// every field and throws kCorrupt naming it ("meta.inputs[0].dtype: unknown dtype 'x'").
nlohmann::json meta_to_json(const EngineMeta& meta);
EngineMeta meta_from_json(const nlohmann::json& j);

// ---------------------------------------------------------------- writing

class EngineWriter {
 public:
  EngineWriter() = default;

  // Sets the meta section. ember_version defaults to this build's version when empty;
  // the format version fields are ignored (the writer always writes the current format).
  void set_meta(EngineMeta meta);
  // Adds a section; the data is copied. Names: 1-23 characters of [a-z0-9_.-], unique,
  // "meta" reserved. alignment: a power of two in [1, 4096]; the section starts at a file
  // offset that is a multiple of max(alignment, 64).
  void add_section(std::string_view name, std::span<const uint8_t> data, uint32_t alignment = kEngineSectionAlignment);
  // Adds a section without copying; `data` must stay unchanged until written.
  void add_section(std::string_view name, std::shared_ptr<Storage> data, uint32_t alignment = kEngineSectionAlignment);

  // The complete engine in one owned, 64-byte aligned Storage.
  std::shared_ptr<Storage> write_to_storage() const;
  // Writes to a temporary file next to `path`, fsyncs and renames over `path`: the
  // destination is either untouched or the complete engine. Throws kIo.
  void write_to_file(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    std::shared_ptr<Storage> data;
    uint32_t alignment;
  };
  bool has_meta_ = false;
  EngineMeta meta_;
  std::vector<Pending> sections_;
};

// ---------------------------------------------------------------- reading

enum class EngineVerification {
  kMinimal,  // header, section table and meta section checksums; layout checks
  kFull,     // kMinimal + the checksum of every section
};

// Section flag (format 1.2): the section's checksum is XXH3-64 over the little-endian
// XXH3-64 digests of its consecutive kEngineChecksumChunk-byte chunks (the last may be
// shorter), so that a reader can verify the chunks on several threads. Writers set it on
// sections larger than one chunk.
inline constexpr uint32_t kSectionFlagChunkedChecksum = 1;
inline constexpr uint64_t kEngineChecksumChunk = uint64_t{1} << 20;

struct EngineSectionInfo {
  std::string name;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t checksum = 0;  // XXH3-64 of the section bytes (or of its chunk digests, see above)
  uint32_t flags = 0;
  uint32_t alignment = 0;
};

struct EngineFormatVersion {
  uint16_t major = 0;
  uint16_t minor = 0;
};

// Reads magic and format version only. Throws kCorrupt "not an Ember engine" for a bad
// magic, kTruncated when fewer than 12 bytes.
EngineFormatVersion peek_engine_format(std::span<const uint8_t> bytes, std::string_view source);
// Whether `bytes` starts with the engine magic.
bool is_engine_bytes(std::span<const uint8_t> bytes);

class EngineView {
 public:
  // Parses and validates `bytes`. `source` names the engine in messages (a path, or
  // "model.ep:engine_0"). A different format major throws kVersionMismatch (the layout
  // cannot be read); a newer minor is parsed (same major = readable layout) and left to
  // check_compatibility(). If the storage's base address is not aligned enough for the
  // sections (e.g. a heap buffer), the bytes are copied once into aligned memory so that
  // every section's data is aligned to its declared alignment.
  static EngineView parse(std::shared_ptr<Storage> bytes, std::string source,
                          EngineVerification verification = EngineVerification::kFull);
  // Maps `path` read-only and parses it.
  static EngineView open(const std::string& path, EngineVerification verification = EngineVerification::kFull);

  const std::string& source() const { return source_; }
  const EngineMeta& meta() const { return meta_; }
  EngineFormatVersion format_version() const { return {meta_.format_major, meta_.format_minor}; }
  const std::vector<EngineSectionInfo>& sections() const { return sections_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  bool has_section(std::string_view name) const;
  // A read-only view of the section's bytes that keeps the engine's storage alive.
  // Throws kNotFound naming the source and the sections present.
  std::shared_ptr<Storage> section(std::string_view name) const;
  // Checks one section's checksum (for callers that parsed with kMinimal).
  // Throws kChecksumMismatch ("corrupted").
  void verify_section(std::string_view name) const;
  // The same check in pieces that may run on several threads: checksum_pieces() pieces
  // (the chunks of a chunked section, else 1), the digest of each, then check_pieces() with
  // all digests in order. Throws kChecksumMismatch ("corrupted").
  size_t checksum_pieces(std::string_view name) const;
  uint64_t checksum_piece(std::string_view name, size_t piece) const;
  void check_pieces(std::string_view name, const std::vector<uint64_t>& digests) const;
  // Checks that the alignment padding (bytes outside the header, the table and every
  // section, which no checksum covers) is zero. kFull does this and verify_section() for
  // every section; callers that parsed with kMinimal and verify sections themselves (e.g.
  // concurrently with other work) call it to complete the full verification.
  // Throws kChecksumMismatch ("corrupted").
  void verify_padding() const;

 private:
  EngineView() = default;
  const EngineSectionInfo& find(std::string_view name) const;
  std::string source_;
  std::shared_ptr<Storage> storage_;
  EngineMeta meta_;
  std::vector<EngineSectionInfo> sections_;
  uint64_t table_end_ = 0;  // end of the header + section table
};

// ---------------------------------------------------------------- compatibility

enum class CompatSeverity { kOk, kWarning, kError };
const char* compat_severity_name(CompatSeverity s);  // "OK", "WARN", "ERROR"

struct CompatFinding {
  CompatSeverity severity = CompatSeverity::kOk;
  std::string what;      // "engine format", "Ember version", "architecture", "ISA features", ...
  std::string expected;  // what the engine needs / was built with
  std::string found;     // what this runtime / host has
  // For errors: kVersionMismatch (format) or kIncompatibleTarget (target); kOk otherwise.
  ErrorCode code = ErrorCode::kOk;
};

struct CompatReport {
  std::string source;  // file (or archive:entry)
  std::string engine;  // engine name
  std::string host;    // target_str(host)
  std::vector<CompatFinding> findings;
  bool compatible() const;  // no error findings
  size_t count(CompatSeverity s) const;
};

// Grades `meta` (from an EngineView) against `host` and this runtime's format version
// (DESIGN.md's table): format major differs / minor newer -> error; Ember version differs
// -> warning; architecture differs -> error; required ISA features missing -> error naming
// them; CUDA: no device or SM differs -> error, same SM with another device name ->
// warning. Every check that passes is listed as kOk. Corruption is not graded here: parse
// with EngineVerification::kFull to detect it.
CompatReport check_compatibility(const EngineMeta& meta, const TargetDescriptor& host, const std::string& source);

// Logs every warning through the logger, then throws if there is any error: one message
// naming the source and engine with ALL error findings; code kVersionMismatch when any
// finding is about the format version, else kIncompatibleTarget.
void enforce(const CompatReport& report);

// parse (with `verification`) + check_compatibility + enforce.
EngineView load_engine(std::shared_ptr<Storage> bytes, std::string source, const TargetDescriptor& host = host_target(),
                       EngineVerification verification = EngineVerification::kFull);

// Human-readable report, one row per finding:
//   OK     engine format    expected 1.0 (reads 1.0 and older 1.x)  found 1.0
std::string format_report(const CompatReport& report);
nlohmann::json report_to_json(const CompatReport& report);

// ---------------------------------------------------------------- checking without loading

// One engine found in a file: a standalone .engine holds one; an .ep archive one per
// execute_engine constant (listed by the archive layer, which calls check_engines).
struct EngineSource {
  std::string name;                // engine name to report ("" = use the meta's name)
  std::string source;              // for messages: path or "archive.ep:data/constants/c0"
  std::shared_ptr<Storage> bytes;  // the engine bytes (zero-copy slice welcome)
};

// Result of checking one engine: either a report, or the error that made the engine
// unreadable (corrupted, truncated, bad magic...).
struct EngineCheckResult {
  std::string source;
  std::string name;
  bool readable = false;
  CompatReport report;  // valid when readable (or when only the format major differs)
  ErrorCode error_code = ErrorCode::kOk;
  std::string error_message;
};

// Checks each engine without building kernels: full verification (every section checksum),
// then check_compatibility against `host`. A different format major yields a report with
// that error finding (the rest of the file is not read); other parse errors are captured
// in the result, never thrown.
std::vector<EngineCheckResult> check_engines(const std::vector<EngineSource>& engines, const TargetDescriptor& host);

}  // namespace ember
