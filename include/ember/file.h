// Files as Storage.
#pragma once

#include <memory>
#include <string>

#include "ember/tensor.h"

namespace ember {

// Maps `path` read-only (MAP_PRIVATE). The Storage owns the mapping: it is unmapped when the
// last view of it goes. An empty file gives an empty Storage. Throws kIo naming the file
// (cannot open, not a regular file, mmap failed).
std::shared_ptr<Storage> map_file_readonly(const std::string& path);

}  // namespace ember
