// Writing Pt2Archive as a .pt2 archive, in the entry order PyTorch writes.
#include <map>

#include "archive/pt2_common.h"
#include "ember/archive.h"
#include "ember/pt2.h"

namespace ember {
namespace {

using ir::Json;

std::span<const uint8_t> bytes_of(const std::shared_ptr<Storage>& s) {
  return s ? std::span<const uint8_t>(s->data(), s->nbytes()) : std::span<const uint8_t>();
}

class Pt2Writer {
 public:
  Pt2Writer(const Pt2Archive& archive, const std::string& path, const Pt2WriteOptions& options)
      : a_(archive), path_(path), zip_(path, ZipWriteOptions{options.alignment, false}) {}

  void write() {
    std::string problem = zip_name_problem(a_.root);
    EMBER_CHECK(problem.empty() && a_.root.find('/') == std::string::npos, ErrorCode::kInvalidArgument, path_,
                ": invalid root folder name '", a_.root, "'", problem.empty() ? "" : ": ", problem);
    EMBER_CHECK(!a_.models.empty(), ErrorCode::kInvalidArgument, path_, ": the archive has no model");
    for (const Pt2Model& m : a_.models) {
      std::string p = zip_name_problem(m.name);
      EMBER_CHECK(p.empty() && m.name.find('/') == std::string::npos, ErrorCode::kInvalidArgument, path_,
                  ": invalid model name '", m.name, "'");
      add(config_path(m.name, "weights"), write_entries(m.name, "weights", m.weights, m.weights_config_unknown));
      add(config_path(m.name, "constants"),
          write_entries(m.name, "constants", m.constants, m.constants_config_unknown));
      add(std::string(kModelsDir) + m.name + ".json", ir::serialize_exported_program(m.program));
      if (m.sample_inputs) add(sample_inputs_path(m.name), bytes_of(m.sample_inputs->storage));
    }
    for (const auto& [rel, blob] : a_.other_entries) add(rel, bytes_of(blob.storage));
    add(kArchiveFormatPath, a_.archive_format);
    add(kArchiveVersionPath, a_.archive_version);
    add(kDataVersionPath, a_.data_version);
    add(kByteorderPath, a_.byteorder);
    add(kSerializationIdPath, a_.serialization_id);
    zip_.finish();
  }

 private:
  void add(const std::string& rel, std::span<const uint8_t> data) { zip_.add(a_.root + "/" + rel, data); }
  void add(const std::string& rel, std::string_view text) { zip_.add(a_.root + "/" + rel, text); }

  // Writes the data files of `entries` not written yet and returns the config JSON text.
  std::string write_entries(const std::string& model, const std::string& folder,
                            const std::vector<Pt2TensorEntry>& entries, const Json& unknown) {
    auto& by_storage = storage_paths_[folder];
    auto& by_path = path_storages_[folder];
    Json cfg = Json::object();
    for (const Pt2TensorEntry& e : entries) {
      const std::string who = cat(path_, ": model '", model, "' ", folder, " entry '", e.fqn, "'");
      std::shared_ptr<Storage> storage = e.tensor.defined() ? e.tensor.storage() : e.blob.storage;
      EMBER_CHECK(storage != nullptr, ErrorCode::kInvalidArgument, who, ": has neither a tensor nor a blob");
      std::string path_name;
      auto it = by_storage.find(storage.get());
      if (it != by_storage.end()) {
        path_name = it->second;  // an alias of a storage already written
      } else {
        path_name = e.path_name;
        std::string problem = zip_name_problem(path_name);
        EMBER_CHECK(problem.empty(), ErrorCode::kInvalidArgument, who, ": invalid path_name '", path_name, "': ",
                    problem);
        EMBER_CHECK(!by_path.count(path_name), ErrorCode::kInvalidArgument, who, ": path_name '", path_name,
                    "' is already used by a different storage");
        add(std::string(kDataDir) + folder + "/" + path_name, bytes_of(storage));
        by_storage.emplace(storage.get(), path_name);
        by_path.emplace(path_name, storage.get());
      }

      Json v = Json::object();
      v["path_name"] = path_name;
      v["is_param"] = e.is_param;
      v["use_pickle"] = e.use_pickle;
      if (e.unknown.is_object() && e.unknown.contains("tensor_meta")) {
        v["tensor_meta"] = e.unknown["tensor_meta"];  // kept verbatim (null for custom objects)
      } else {
        ir::TensorMeta meta = e.meta;
        if (e.tensor.defined()) {  // the view as it is now
          meta.dtype = e.tensor.dtype();
          meta.sizes.clear();
          meta.strides.clear();
          for (int64_t s : e.tensor.sizes()) meta.sizes.push_back(ir::SymInt{false, s, {}});
          for (int64_t s : e.tensor.strides()) meta.strides.push_back(ir::SymInt{false, s, {}});
          meta.storage_offset = ir::SymInt{false, e.tensor.storage_offset(), {}};
        }
        v["tensor_meta"] = ir::tensor_meta_to_json(meta);
      }
      if (e.unknown.is_object())
        for (auto f = e.unknown.begin(); f != e.unknown.end(); ++f)
          if (f.key() != "tensor_meta") v[f.key()] = f.value();
      EMBER_CHECK(!cfg.contains(e.fqn), ErrorCode::kInvalidArgument, who, ": duplicate fqn");
      cfg[e.fqn] = std::move(v);
    }
    Json doc = Json::object();
    doc["config"] = std::move(cfg);
    if (unknown.is_object())
      for (auto f = unknown.begin(); f != unknown.end(); ++f) doc[f.key()] = f.value();
    return doc.dump();
  }

  const Pt2Archive& a_;
  std::string path_;
  ZipWriter zip_;
  std::map<std::string, std::map<const Storage*, std::string>> storage_paths_;
  std::map<std::string, std::map<std::string, const Storage*>> path_storages_;
};

}  // namespace

void write_pt2(const Pt2Archive& archive, const std::string& path, const Pt2WriteOptions& options) {
  try {
    Pt2Writer writer(archive, path, options);
    writer.write();  // on any throw the ZipWriter's destructor removes the temporary file
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::kOutOfMemory, path, ": out of memory while writing the archive");
  } catch (const std::exception& e) {
    fail(ErrorCode::kInternal, path, ": ", e.what());
  }
}

}  // namespace ember
