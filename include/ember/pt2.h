// The .pt2 archive (torch.export.save / torch.export.load, archive_version 0) as Ember
// reads and writes it, and the .ep archive Ember writes, which has the same layout.
//
// Layout inside the zip, under one root folder <root>/:
//   archive_format ("pt2"), archive_version ("0"), .data/version, byteorder,
//   .data/serialization_id, models/<name>.json, data/weights/<path_name> +
//   data/weights/<name>_weights_config.json, data/constants/<path_name> +
//   data/constants/<name>_constants_config.json, data/sample_inputs/<name>.pt, extra/...
// Several models may share one archive. Tensors are views into the mmap'd file (stored
// entries) and keep it alive; several FQNs that share one stored blob share one Storage.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ember/program.h"
#include "ember/tensor.h"

namespace ember {

class ZipReader;

// Raw bytes of an archive entry we do not interpret (pickled sample inputs, custom
// objects, extra files). Borrowed from the mapping when stored, else owned.
struct Blob {
  std::shared_ptr<Storage> storage;
  size_t size() const { return storage ? storage->nbytes() : 0; }
  const uint8_t* data() const { return storage ? storage->data() : nullptr; }
};

// One entry of <name>_weights_config.json / <name>_constants_config.json.
struct Pt2TensorEntry {
  std::string fqn;        // key of the config: "l1.weight", "engine0", ...
  std::string path_name;  // file under data/weights/ or data/constants/: "weight_0", "tensor_3"
  bool is_param = false;
  bool use_pickle = false;   // pickled entries are kept as raw blobs, never unpickled
  ir::TensorMeta meta;
  Tensor tensor;             // typed view (undefined for pickled / custom-object entries)
  Blob blob;                 // the stored bytes for pickled / custom-object entries
  ir::Json unknown;          // config fields Ember does not know
};

struct Pt2Model {
  std::string name;  // "model" for a single-model archive
  ir::ExportedProgram program;
  std::vector<Pt2TensorEntry> weights;    // parameters and buffers
  std::vector<Pt2TensorEntry> constants;  // tensor constants and custom objects
  ir::Json weights_config_unknown;        // top-level unknown fields of the configs
  ir::Json constants_config_unknown;
  std::optional<Blob> sample_inputs;      // data/sample_inputs/<name>.pt (pickle; kept as bytes)

  const Pt2TensorEntry* find_weight(const std::string& fqn) const;
  const Pt2TensorEntry* find_constant(const std::string& fqn) const;
};

struct Pt2Archive {
  std::string root;  // folder name inside the zip ("resnet18")
  std::string archive_format = "pt2";
  std::string archive_version = "0";
  std::string data_version = "6\n";  // .data/version (kept byte for byte)
  std::string byteorder = "little";
  std::string serialization_id;
  std::vector<Pt2Model> models;
  // Every other entry (extra/..., unknown files), by path relative to the root.
  std::vector<std::pair<std::string, Blob>> other_entries;

  const Pt2Model* find_model(const std::string& name) const;
};

struct Pt2ReadOptions {
  bool verify_crc = false;  // check CRC-32 of every entry that is read
  bool validate = true;     // run ir::validate on every model
};

// Reads an archive. Errors name the file and the entry/field at fault.
Pt2Archive read_pt2(const std::string& path, const Pt2ReadOptions& options = {});
// The same from bytes in memory (fuzzing, tests); `name` is used in messages.
Pt2Archive read_pt2_from_memory(std::shared_ptr<Storage> bytes, const std::string& name,
                                const Pt2ReadOptions& options = {});

// One archive entry already in memory, named relative to the archive root
// ("models/model.json", "data/weights/weight_0"); `data` should be 64-byte aligned.
struct Pt2Entry {
  std::string name;
  std::shared_ptr<Storage> data;
};
// Reads an archive whose entries are already in memory (the data sections of a packaged
// model); the same checks as read_pt2. `name` is used in messages.
Pt2Archive read_pt2_from_entries(const std::string& root, std::vector<Pt2Entry> entries, const std::string& name,
                                 const Pt2ReadOptions& options = {});

struct Pt2WriteOptions {
  size_t alignment = 64;  // data of every stored entry starts at a multiple of this
};

// Writes atomically (temporary file in the destination's folder, fsync, rename): the
// destination is either the old file or the complete new one. Tensors that share one
// Storage are written once (aliasing preserved); each stored blob holds the whole
// storage the view needs, like PyTorch.
void write_pt2(const Pt2Archive& archive, const std::string& path, const Pt2WriteOptions& options = {});

}  // namespace ember
