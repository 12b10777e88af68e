// safetensors files: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}
// and the raw little-endian data. Used for reference inputs/outputs and `ember run`.
//
// Reading validates everything against the file before any tensor is made: header length,
// JSON, dtype names, shapes (overflow), data_offsets inside the data area, matching the
// byte size of dtype x shape, and (as the format requires) tensors packed without gaps or
// overlaps. Every error is an ember::Error naming the file and the key at fault.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ember/tensor.h"

namespace ember {

struct SafetensorsFile {
  // Tensors in header order. Views into one buffer holding the file (read-write, owned);
  // tensors whose data is not aligned to their element size are copied.
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"

  // nullptr when absent.
  const Tensor* find(const std::string& name) const;
};

// Headers larger than this are rejected (kLimitExceeded), like the reference implementation.
inline constexpr uint64_t kMaxSafetensorsHeader = uint64_t{100} << 20;

SafetensorsFile read_safetensors(const std::string& path);
// The same over bytes in memory; `name` is used in messages.
SafetensorsFile read_safetensors_from_memory(std::shared_ptr<Storage> bytes, const std::string& name);

// Writes atomically (temporary file in the destination's folder, fsync, rename). Names must
// be unique and non-empty; tensors may be strided (they are written contiguous).
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// The serialized bytes (what write_safetensors writes).
std::string serialize_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Reference-data convention: keys "case{K}.in.{I}" (I-th positional input of case K) and
// "case{K}.out.{J}" (J-th flattened output leaf).
struct ReferenceCase {
  int64_t index = 0;
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;
};
// Groups the file into cases, ordered by K, inputs/outputs by I/J. Returns nullopt when no
// key follows the convention; throws kCorrupt when some do but indices have gaps or
// duplicates, or other keys are mixed in.
std::optional<std::vector<ReferenceCase>> group_reference_cases(const SafetensorsFile& file,
                                                                const std::string& source);

}  // namespace ember
