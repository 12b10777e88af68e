// Files as Storage.
#pragma once

#include <memory>
#include <string>

#include "ember/tensor.h"

namespace ember {

// Maps `path` read-only (MAP_PRIVATE). The Storage owns the mapping: it is unmapped when the
// last view of it goes. An empty file gives an empty Storage. Files of 2 MiB and more are
// mapped with transparent huge pages requested, so that what is read from disk through the
// mapping is cached in 2 MiB folios (faster first touches for every later mapping). Throws
// kIo naming the file (cannot open, not a regular file, mmap failed).
std::shared_ptr<Storage> map_file_readonly(const std::string& path);

}  // namespace ember
