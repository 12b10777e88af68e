// Loading a packaged model (.so) through dlopen.
#include "package_loader.h"

#include <dlfcn.h>

#include <memory>

#include "ember/error.h"
#include "ember/package_abi.h"

namespace ember {

Program load_package(const std::string& path) {
  // RTLD_LOCAL: two packaged models never see each other's symbols. A path without a slash
  // would make dlopen search the library path instead of opening this file.
  std::string open_path = path.find('/') == std::string::npos ? "./" + path : path;
  dlerror();
  void* handle = dlopen(open_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    fail(ErrorCode::kIo, path, ": cannot load the shared library: ", why ? why : "unknown reason");
  }
  std::shared_ptr<void> library(handle, [](void* h) { dlclose(h); });
  dlerror();
  void* sym = dlsym(handle, EMBER_PACKAGE_DESCRIPTOR_SYMBOL);
  EMBER_CHECK(sym != nullptr, ErrorCode::kNotAModel, path, ": not an Ember packaged model (the library exports no '",
              EMBER_PACKAGE_DESCRIPTOR_SYMBOL, "'; make one with `ember package MODEL.ep -o MODEL.so`)");
  auto descriptor_fn = reinterpret_cast<ember_package_descriptor_fn>(sym);
  const ember_package* pkg = descriptor_fn();
  return Program::from_package(pkg, std::move(library), path);
}

}  // namespace ember
