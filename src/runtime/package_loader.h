// Loading a packaged model: a shared library made by `ember package`.
#pragma once

#include <string>

#include "ember/runtime.h"

namespace ember {

// dlopens `path`, reads its package descriptor (include/ember/package_abi.h) and prepares
// the embedded program. The library stays loaded while the Program (or any tensor viewing
// its data) lives. Errors: kIo when the library cannot be loaded (dlerror's reason),
// kNotAModel when it exports no descriptor, kVersionMismatch for an unknown package ABI,
// and whatever the embedded engines' compatibility check reports.
Program load_package(const std::string& path);

}  // namespace ember
