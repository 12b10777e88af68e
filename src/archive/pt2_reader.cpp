// Reading .pt2 archives (torch.export.save, archive_version 0) into Pt2Archive.
#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <optional>
#include <set>

#include "archive/pt2_common.h"
#include "ember/archive.h"
#include "ember/pt2.h"

namespace ember {
namespace {

using ir::Json;

// Where the archive's entries come from: a zip file, or entries already in memory (a
// packaged model's data sections). Names are full entry names ("<root>/models/model.json").
class EntrySource {
 public:
  virtual ~EntrySource() = default;
  virtual const std::string& name() const = 0;
  virtual const std::vector<std::string>& names() const = 0;  // in archive order
  virtual bool has(const std::string& full) const = 0;
  virtual std::shared_ptr<Storage> read(const std::string& full, bool verify_crc) const = 0;
};

class ZipSource final : public EntrySource {
 public:
  explicit ZipSource(std::shared_ptr<ZipReader> zip) : zip_(std::move(zip)) {
    for (const ZipEntry& e : zip_->entries()) names_.push_back(e.name);
  }
  const std::string& name() const override { return zip_->name(); }
  const std::vector<std::string>& names() const override { return names_; }
  bool has(const std::string& full) const override { return zip_->find(full) != nullptr; }
  std::shared_ptr<Storage> read(const std::string& full, bool verify_crc) const override {
    return zip_->read(*zip_->find(full), verify_crc);
  }

 private:
  std::shared_ptr<ZipReader> zip_;
  std::vector<std::string> names_;
};

class MemorySource final : public EntrySource {
 public:
  MemorySource(const std::string& root, std::vector<Pt2Entry> entries, std::string name) : name_(std::move(name)) {
    for (Pt2Entry& e : entries) {
      std::string problem = zip_name_problem(e.name);
      EMBER_CHECK(problem.empty(), ErrorCode::kCorrupt, name_, ": entry name '", e.name, "': ", problem);
      EMBER_CHECK(e.data != nullptr, ErrorCode::kCorrupt, name_, ": entry '", e.name, "' has no data");
      std::string full = root + "/" + e.name;
      EMBER_CHECK(data_.emplace(full, std::move(e.data)).second, ErrorCode::kCorrupt, name_, ": entry '", e.name,
                  "' appears twice");
      names_.push_back(std::move(full));
    }
  }
  const std::string& name() const override { return name_; }
  const std::vector<std::string>& names() const override { return names_; }
  bool has(const std::string& full) const override { return data_.count(full) != 0; }
  std::shared_ptr<Storage> read(const std::string& full, bool) const override { return data_.at(full); }

 private:
  std::string name_;
  std::vector<std::string> names_;
  std::map<std::string, std::shared_ptr<Storage>> data_;
};

class Pt2Reader {
 public:
  Pt2Reader(std::unique_ptr<EntrySource> src, const Pt2ReadOptions& options)
      : src_(std::move(src)), options_(options), file_(src_->name()) {}

  Pt2Archive read();

 private:
  std::string where(const std::string& rel) const { return cat(file_, ":", archive_.root, "/", rel); }
  std::optional<std::string> find(const std::string& rel) const {
    std::string full = archive_.root + "/" + rel;
    if (!src_->has(full)) return std::nullopt;
    return full;
  }
  std::shared_ptr<Storage> read_entry(const std::string& full) {
    consumed_.insert(full);
    return src_->read(full, options_.verify_crc);
  }
  std::optional<std::string> read_text(const std::string& rel) {
    auto e = find(rel);
    if (!e) return std::nullopt;
    auto s = read_entry(*e);
    return std::string(reinterpret_cast<const char*>(s->data()), s->nbytes());
  }
  std::string require_text(const std::string& rel) {
    auto t = read_text(rel);
    EMBER_CHECK(t.has_value(), ErrorCode::kCorrupt, file_, ": missing entry '", archive_.root, "/", rel,
                "' (every .pt2 archive has one)");
    return *t;
  }
  void find_root();
  void read_model(const std::string& name);
  void read_config(const std::string& model, const std::string& folder, std::vector<Pt2TensorEntry>& out,
                   Json& unknown_out);
  std::shared_ptr<Storage> data_file(const std::string& rel, const std::string& who);
  Tensor make_view(const Pt2TensorEntry& e, const std::shared_ptr<Storage>& storage, const std::string& who,
                   const std::string& rel);

  std::unique_ptr<EntrySource> src_;
  Pt2ReadOptions options_;
  std::string file_;
  Pt2Archive archive_;
  std::set<std::string> consumed_;                              // full entry names
  std::map<std::string, std::shared_ptr<Storage>> data_files_;  // rel path -> the one Storage (aliasing)
};

void Pt2Reader::find_root() {
  const auto& entries = src_->names();
  EMBER_CHECK(!entries.empty(), ErrorCode::kCorrupt, file_, ": the archive has no entries");
  const std::string& first = entries.front();
  size_t slash = first.find('/');
  EMBER_CHECK(slash != std::string::npos && slash > 0, ErrorCode::kCorrupt, file_, ": entry '", first,
              "' is not inside a root folder (expected <root>/...)");
  archive_.root = first.substr(0, slash);
  for (const std::string& name : entries) {
    EMBER_CHECK(name.size() > archive_.root.size() && name.compare(0, archive_.root.size(), archive_.root) == 0 &&
                    name[archive_.root.size()] == '/',
                ErrorCode::kCorrupt, file_, ": entry '", name, "' is outside the root folder '", archive_.root,
                "/' that the other entries share");
  }
}

Pt2Archive Pt2Reader::read() {
  find_root();
  archive_.archive_format = require_text(kArchiveFormatPath);
  EMBER_CHECK(archive_.archive_format == "pt2", ErrorCode::kUnsupported, where(kArchiveFormatPath),
              ": expected archive format 'pt2', found '", archive_.archive_format, "'");
  archive_.archive_version = require_text(kArchiveVersionPath);
  EMBER_CHECK(archive_.archive_version == "0", ErrorCode::kVersionMismatch, where(kArchiveVersionPath),
              ": expected archive_version '0', found '", archive_.archive_version, "'");
  if (auto v = read_text(kDataVersionPath)) archive_.data_version = *v;
  if (auto b = read_text(kByteorderPath)) {
    archive_.byteorder = *b;
    EMBER_CHECK(*b == "little", ErrorCode::kUnsupported, where(kByteorderPath), ": expected byte order 'little', found '",
                *b, "'");
  }
  if (auto s = read_text(kSerializationIdPath)) archive_.serialization_id = *s;

  // models/<name>.json, in archive order.
  std::vector<std::string> model_names;
  const std::string models_prefix = archive_.root + "/" + kModelsDir;
  for (const std::string& name : src_->names()) {
    if (name.compare(0, models_prefix.size(), models_prefix) != 0) continue;
    std::string rest = name.substr(models_prefix.size());
    if (rest.find('/') != std::string::npos || rest.size() <= 5 || rest.compare(rest.size() - 5, 5, ".json") != 0)
      continue;
    model_names.push_back(rest.substr(0, rest.size() - 5));
  }
  EMBER_CHECK(!model_names.empty(), ErrorCode::kCorrupt, file_, ": no model in the archive (expected at least one '",
              archive_.root, "/models/<name>.json')");
  for (const std::string& name : model_names) read_model(name);

  for (const std::string& name : src_->names()) {
    if (consumed_.count(name)) continue;
    std::string rel = name.substr(archive_.root.size() + 1);
    if (rel.empty()) continue;  // the root folder's own directory entry
    archive_.other_entries.emplace_back(rel, Blob{src_->read(name, options_.verify_crc)});
  }
  return std::move(archive_);
}

void Pt2Reader::read_model(const std::string& name) {
  Pt2Model model;
  model.name = name;
  const std::string json_rel = std::string(kModelsDir) + name + ".json";
  const std::string source = where(json_rel);
  model.program = ir::parse_exported_program(require_text(json_rel), source);
  if (options_.validate) ir::validate(model.program, source);

  read_config(name, "weights", model.weights, model.weights_config_unknown);
  read_config(name, "constants", model.constants, model.constants_config_unknown);
  if (auto e = find(sample_inputs_path(name))) model.sample_inputs = Blob{read_entry(*e)};
  archive_.models.push_back(std::move(model));
}

std::shared_ptr<Storage> Pt2Reader::data_file(const std::string& rel, const std::string& who) {
  auto it = data_files_.find(rel);
  if (it != data_files_.end()) return it->second;
  auto e = find(rel);
  EMBER_CHECK(e.has_value(), ErrorCode::kCorrupt, who, ": names the file '", archive_.root, "/", rel,
              "', which is not in the archive");
  auto storage = read_entry(*e);
  // Typed views need aligned data; PyTorch aligns stored entries to 64 bytes, so this copy
  // only happens for archives written without alignment.
  if (reinterpret_cast<uintptr_t>(storage->data()) % 64 != 0) {
    auto copy = Storage::allocate(storage->nbytes());
    if (storage->nbytes() > 0) std::memcpy(copy->data(), storage->data(), storage->nbytes());
    storage = copy;
  }
  data_files_.emplace(rel, storage);
  return storage;
}

// Element offsets a strided view touches: [min, max]. Throws on overflow.
Tensor Pt2Reader::make_view(const Pt2TensorEntry& e, const std::shared_ptr<Storage>& storage, const std::string& who,
                            const std::string& rel) {
  const ir::TensorMeta& m = e.meta;
  const size_t itemsize = dtype_size(m.dtype);
  EMBER_CHECK(itemsize > 0, ErrorCode::kUnsupported, who, ": tensor_meta.dtype ", static_cast<int>(m.dtype),
              " has no element size");
  EMBER_CHECK(m.sizes.size() == m.strides.size(), ErrorCode::kCorrupt, who, ": tensor_meta has ", m.sizes.size(),
              " sizes but ", m.strides.size(), " strides");
  Shape sizes, strides;
  for (size_t d = 0; d < m.sizes.size(); ++d) {
    EMBER_CHECK(!m.sizes[d].is_expr && !m.strides[d].is_expr, ErrorCode::kUnsupported, who,
                ": tensor_meta dimension ", d, " is symbolic; stored tensors need concrete sizes and strides");
    EMBER_CHECK(m.sizes[d].value >= 0, ErrorCode::kCorrupt, who, ": tensor_meta.sizes[", d, "] is negative (",
                m.sizes[d].value, ")");
    sizes.push_back(m.sizes[d].value);
    strides.push_back(m.strides[d].value);
  }
  EMBER_CHECK(!m.storage_offset.is_expr, ErrorCode::kUnsupported, who, ": tensor_meta.storage_offset is symbolic");
  const int64_t offset = m.storage_offset.value;
  EMBER_CHECK(offset >= 0, ErrorCode::kCorrupt, who, ": tensor_meta.storage_offset is negative (", offset, ")");
  const int64_t numel = shape_numel(sizes);  // kLimitExceeded on overflow
  uint64_t needed_bytes = 0;
  if (numel > 0) {
    int64_t lo = offset, hi = offset;
    for (size_t d = 0; d < sizes.size(); ++d) {
      int64_t span;
      EMBER_CHECK(!__builtin_mul_overflow(sizes[d] - 1, strides[d], &span), ErrorCode::kLimitExceeded, who,
                  ": tensor_meta extent overflows int64 (size ", sizes[d], ", stride ", strides[d], ")");
      bool overflow = span >= 0 ? __builtin_add_overflow(hi, span, &hi) : __builtin_add_overflow(lo, span, &lo);
      EMBER_CHECK(!overflow, ErrorCode::kLimitExceeded, who, ": tensor_meta extent overflows int64");
    }
    EMBER_CHECK(lo >= 0, ErrorCode::kCorrupt, who, ": negative strides reach element ", lo,
                " before the start of the storage");
    uint64_t elems = static_cast<uint64_t>(hi) + 1;
    EMBER_CHECK(elems <= UINT64_MAX / itemsize, ErrorCode::kLimitExceeded, who, ": tensor_meta extent overflows");
    needed_bytes = elems * itemsize;
  }
  EMBER_CHECK(storage->nbytes() >= needed_bytes, ErrorCode::kCorrupt, who, ": data file '", archive_.root, "/", rel,
              "' holds ", storage->nbytes(), " bytes, but the tensor (", dtype_name(m.dtype), shape_str(sizes),
              ", strides ", shape_str(strides), ", storage_offset ", offset, ") needs ", needed_bytes);
  return Tensor(storage, m.dtype, sizes, strides, offset);
}

void Pt2Reader::read_config(const std::string& model, const std::string& folder, std::vector<Pt2TensorEntry>& out,
                            Json& unknown_out) {
  const std::string rel = config_path(model, folder);
  const std::string src = where(rel);
  auto text = read_text(rel);
  if (!text) return;  // an archive without this config has no such tensors
  // The depth-limited parser, as for every other JSON Ember reads: nesting is refused with an
  // error instead of recursing once per level (here, and when unknown fields are copied).
  Json j = ir::parse_json(*text, src);
  EMBER_CHECK(j.is_object(), ErrorCode::kCorrupt, src, ": expected a JSON object, found ", j.type_name());
  EMBER_CHECK(j.contains("config"), ErrorCode::kCorrupt, src, ": missing field 'config'");
  const Json& cfg = j["config"];
  EMBER_CHECK(cfg.is_object(), ErrorCode::kCorrupt, src, ": field 'config' must be an object, found ",
              cfg.type_name());
  unknown_out = Json::object();
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "config") unknown_out[it.key()] = it.value();

  for (auto it = cfg.begin(); it != cfg.end(); ++it) {
    Pt2TensorEntry e;
    e.fqn = it.key();
    const std::string who = cat(src, ": config['", e.fqn, "']");
    const Json& v = it.value();
    EMBER_CHECK(v.is_object(), ErrorCode::kCorrupt, who, ": expected an object, found ", v.type_name());
    EMBER_CHECK(v.contains("path_name") && v["path_name"].is_string(), ErrorCode::kCorrupt, who,
                ": missing or non-string field 'path_name'");
    e.path_name = v["path_name"].get<std::string>();
    std::string problem = zip_name_problem(e.path_name);
    EMBER_CHECK(problem.empty() && e.path_name.back() != '/', ErrorCode::kCorrupt, who, ": unsafe path_name '",
                e.path_name, "': ", problem.empty() ? "names a directory" : problem);
    auto get_bool = [&](const char* key) {
      if (!v.contains(key)) return false;
      EMBER_CHECK(v[key].is_boolean(), ErrorCode::kCorrupt, who, ": field '", key, "' must be a boolean, found ",
                  v[key].type_name());
      return v[key].get<bool>();
    };
    e.is_param = get_bool("is_param");
    e.use_pickle = get_bool("use_pickle");
    e.unknown = Json::object();
    bool has_meta = false;
    for (auto f = v.begin(); f != v.end(); ++f) {
      const std::string& k = f.key();
      if (k == "path_name" || k == "is_param" || k == "use_pickle") continue;
      if (k == "tensor_meta" && f.value().is_object()) {
        e.meta = ir::parse_tensor_meta(f.value(), who + ".tensor_meta");
        has_meta = true;
        continue;
      }
      e.unknown[k] = f.value();  // includes a null tensor_meta (custom objects)
    }
    const std::string data_rel = std::string(kDataDir) + folder + "/" + e.path_name;
    auto storage = data_file(data_rel, who);
    if (e.use_pickle || !has_meta) {
      e.blob = Blob{storage};  // pickled tensor or custom object: kept as bytes
    } else {
      e.tensor = make_view(e, storage, who, data_rel);
    }
    out.push_back(std::move(e));
  }
}

Pt2Archive read_guarded(const std::function<std::unique_ptr<EntrySource>()>& open, const std::string& name,
                        const Pt2ReadOptions& options) {
  // Only ember::Error leaves this function, whatever a dependency throws.
  try {
    Pt2Reader reader(open(), options);
    return reader.read();
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::kOutOfMemory, name, ": out of memory while reading the archive");
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kCorrupt, name, ": malformed JSON: ", e.what());
  } catch (const std::exception& e) {
    fail(ErrorCode::kCorrupt, name, ": ", e.what());
  }
}

}  // namespace

Pt2Archive read_pt2(const std::string& path, const Pt2ReadOptions& options) {
  return read_guarded([&] { return std::make_unique<ZipSource>(ZipReader::open(path)); }, path, options);
}

Pt2Archive read_pt2_from_memory(std::shared_ptr<Storage> bytes, const std::string& name,
                                const Pt2ReadOptions& options) {
  return read_guarded([&] { return std::make_unique<ZipSource>(ZipReader::from_memory(bytes, name)); }, name,
                      options);
}

Pt2Archive read_pt2_from_entries(const std::string& root, std::vector<Pt2Entry> entries, const std::string& name,
                                 const Pt2ReadOptions& options) {
  return read_guarded(
      [&]() -> std::unique_ptr<EntrySource> {
        EMBER_CHECK(!root.empty() && zip_name_problem(root).empty() && root.find('/') == std::string::npos,
                    ErrorCode::kCorrupt, name, ": invalid archive root name '", root, "'");
        return std::make_unique<MemorySource>(root, std::move(entries), name);
      },
      name, options);
}

const Pt2TensorEntry* Pt2Model::find_weight(const std::string& fqn) const {
  for (const auto& e : weights)
    if (e.fqn == fqn) return &e;
  return nullptr;
}

const Pt2TensorEntry* Pt2Model::find_constant(const std::string& fqn) const {
  for (const auto& e : constants)
    if (e.fqn == fqn) return &e;
  return nullptr;
}

const Pt2Model* Pt2Archive::find_model(const std::string& name) const {
  for (const auto& m : models)
    if (m.name == name) return &m;
  return nullptr;
}

}  // namespace ember
