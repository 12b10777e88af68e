// Loading a packaged model: a shared library made by `ember package`.
#pragma once

#include <string>

#include "ember/runtime.h"

namespace ember {

// An ELF shared object (what `ember package` writes), by its magic.
bool is_shared_library(const Storage& bytes);

// dlopens `path`, reads its package descriptor (include/ember/package_abi.h) and prepares
// the embedded program. The library stays loaded while the Program (or any tensor viewing
// its data) lives. Errors: kIo when the library cannot be loaded (dlerror's reason),
// kNotAModel when it exports no descriptor, kVersionMismatch for an unknown package ABI,
// and whatever the embedded engines' compatibility check reports.
Program load_package(const std::string& path);

// The archive a package descriptor embeds, read in place (the entries borrow the library's
// data sections and keep `keepalive` alive). Checks the descriptor's magic (kNotAModel) and
// ABI version (kVersionMismatch) before reading anything else.
Pt2Archive package_archive(const void* descriptor, std::shared_ptr<const void> keepalive, const std::string& source);

}  // namespace ember
