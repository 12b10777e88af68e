// libFuzzer entry point: arbitrary bytes as a zip archive. Every entry is read (with CRC
// check); anything but ember::Error escaping, a crash or a sanitizer report is a bug.
#include <cstdint>
#include <cstring>

#include "ember/archive.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto bytes = ember::Storage::allocate(size);
    if (size > 0) std::memcpy(bytes->data(), data, size);
    ember::ZipReadOptions options;
    options.max_inflated_size = uint64_t{64} << 20;  // keep each run small
    auto zip = ember::ZipReader::from_memory(bytes, "fuzz.zip", options);
    for (const auto& entry : zip->entries()) {
      zip->find(entry.name);
      zip->read(entry, /*verify_crc=*/true);
    }
  } catch (const ember::Error&) {
  }
  return 0;
}
