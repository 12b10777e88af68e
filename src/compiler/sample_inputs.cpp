// Compact sample inputs for the .ep.
//
// data/sample_inputs/<model>.pt holds the program's example inputs as a torch.save archive
// (a zip nested inside the .pt2): <folder>/data.pkl (the pickle: the (args, kwargs) tree and,
// per tensor, its storage key, dtype, shape, strides), one <folder>/data/<key> entry per
// storage with the raw bytes, and small version/format records. torch.export.load reads
// this entry and refuses an archive without it, and it unpickles it into
// ExportedProgram.example_inputs; nothing else in the .ep needs the values. For a batch of
// one image that is ~600 KB next to the weights.
//
// The compact form is the same archive rebuilt with the same entries in the same order:
// every record except the storages byte for byte (so the pickle, hence shapes, dtypes and
// strides, is unchanged), every storage record the same length but all zeros and
// deflated (zeros compress ~1000:1). PyTorch's zip reader inflates deflated records.
#include <algorithm>
#include <cstring>
#include <vector>

#include "compiler/compiler_internal.h"
#include "ember/archive.h"
#include "ember/error.h"
#include "ember/log.h"

namespace ember::compiler {
namespace {

// "archive/data/0" -> true; "archive/data.pkl", "archive/.data/serialization_id" -> false.
bool is_storage_record(const ZipEntry& e) {
  const size_t slash = e.name.find('/');
  if (slash == std::string::npos || e.is_directory()) return false;
  return e.name.compare(slash + 1, 5, "data/") == 0;
}

}  // namespace

Blob compact_sample_inputs(const Blob& sample_inputs, const std::string& source) {
  if (!sample_inputs.storage || sample_inputs.size() == 0) return sample_inputs;
  const std::string name = source + ": data/sample_inputs";
  try {
    auto reader = ZipReader::from_memory(sample_inputs.storage, name);
    size_t largest = 0;
    bool any_storage = false;
    for (const ZipEntry& e : reader->entries())
      if (is_storage_record(e)) {
        any_storage = true;
        largest = std::max<size_t>(largest, e.uncompressed_size);
      }
    if (!any_storage) return sample_inputs;  // nothing to shrink (no tensors)

    const std::vector<uint8_t> zeros(largest, 0);
    std::vector<uint8_t> bytes;
    {
      ZipWriter writer(&bytes, name);  // 64-byte alignment, as torch.save writes
      for (const ZipEntry& e : reader->entries()) {
        if (is_storage_record(e)) {
          writer.add_deflated(e.name, std::span<const uint8_t>(zeros.data(), e.uncompressed_size), 9);
        } else {
          auto data = reader->read(e, /*verify_crc=*/true);
          writer.add(e.name, std::span<const uint8_t>(data->data(), data->nbytes()));
        }
      }
      writer.finish();
    }
    if (bytes.size() >= sample_inputs.size()) return sample_inputs;
    auto storage = Storage::allocate(bytes.size());
    std::memcpy(storage->data(), bytes.data(), bytes.size());
    return Blob{storage};
  } catch (const Error& e) {
    // Not an archive Ember can read: keep it as it was (PyTorch wrote it; Ember only copies it).
    log_warning(name, ": kept byte for byte (", e.what(), ")");
    return sample_inputs;
  }
}

}  // namespace ember::compiler
