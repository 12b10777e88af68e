// libFuzzer entry point: arbitrary bytes as a .pt2 archive. A successful read also touches
// the last element of every tensor view; only ember::Error may escape the reader.
#include <cstdint>
#include <cstring>

#include "ember/pt2.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto bytes = ember::Storage::allocate(size);
    if (size > 0) std::memcpy(bytes->data(), data, size);
    ember::Pt2Archive archive = ember::read_pt2_from_memory(bytes, "fuzz.pt2", {true, true});
    volatile double sink = 0;
    for (const auto& model : archive.models) {
      for (const auto* list : {&model.weights, &model.constants}) {
        for (const auto& entry : *list) {
          if (entry.tensor.defined() && entry.tensor.numel() > 0)
            sink = sink + ember::element_as_double(entry.tensor, entry.tensor.numel() - 1);
        }
      }
    }
  } catch (const ember::Error&) {
  }
  return 0;
}
