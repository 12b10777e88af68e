// Loading a packaged model (.so) through dlopen.
#include "package_loader.h"

#include <dlfcn.h>

#include <cstring>
#include <memory>

#include "ember/error.h"
#include "ember/file.h"
#include "ember/log.h"
#include "ember/package_abi.h"
#include "ember/version.h"

namespace ember {

namespace {

struct OpenedPackage {
  std::shared_ptr<void> library;
  const ember_package* descriptor = nullptr;
};

OpenedPackage open_package(const std::string& path) {
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
  return OpenedPackage{std::move(library), descriptor_fn()};
}

}  // namespace

bool is_shared_library(const Storage& bytes) {
  return bytes.nbytes() >= 4 && std::memcmp(bytes.data(), "\x7f" "ELF", 4) == 0;
}

Pt2Archive read_archive_or_package(const std::string& path) {
  if (is_shared_library(*map_file_readonly(path))) return read_package(path);
  return read_pt2(path);
}

Program load_package(const std::string& path) {
  OpenedPackage p = open_package(path);
  return Program::from_package(p.descriptor, std::move(p.library), path);
}

Pt2Archive read_package(const std::string& path) {
  OpenedPackage p = open_package(path);
  return package_archive(p.descriptor, std::move(p.library), path);
}

Pt2Archive package_archive(const void* descriptor, std::shared_ptr<const void> keepalive, const std::string& source) {
  EMBER_CHECK(descriptor != nullptr, ErrorCode::kNotAModel, source, ": no package descriptor");
  const auto* pkg = static_cast<const ember_package*>(descriptor);
  EMBER_CHECK(pkg->magic == EMBER_PACKAGE_MAGIC, ErrorCode::kNotAModel, source,
              ": not an Ember package (descriptor magic 0x", std::hex, pkg->magic, ", expected 0x", EMBER_PACKAGE_MAGIC,
              ")");
  EMBER_CHECK(pkg->abi_version == EMBER_PACKAGE_ABI_VERSION, ErrorCode::kVersionMismatch, source,
              ": package ABI version ", pkg->abi_version, ", this runtime reads version ", EMBER_PACKAGE_ABI_VERSION,
              pkg->abi_version > EMBER_PACKAGE_ABI_VERSION ? " (packaged by a newer Ember; update the runtime)"
                                                           : " (re-package the model with this Ember)");
  EMBER_CHECK(pkg->archive_root && pkg->model_name && (pkg->num_entries == 0 || pkg->entries), ErrorCode::kCorrupt,
              source, ": the package descriptor lacks its archive root, model name or entry table");
  const std::string packaged_by = pkg->ember_version ? pkg->ember_version : "?";
  if (packaged_by != EMBER_VERSION_STRING)
    log_warning(source, ": packaged by Ember ", packaged_by, ", running on Ember ", EMBER_VERSION_STRING,
                " (the engines are checked one by one)");

  std::vector<Pt2Entry> entries;
  entries.reserve(pkg->num_entries);
  for (uint32_t i = 0; i < pkg->num_entries; ++i) {
    const ember_package_entry& e = pkg->entries[i];
    EMBER_CHECK(e.name != nullptr && (e.data != nullptr || e.size == 0), ErrorCode::kCorrupt, source, ": entry #", i,
                " of the package has no name or data");
    // Borrowed, read-only views of the library's data sections: nothing is copied.
    entries.push_back({e.name, Storage::borrow(e.data, e.size, keepalive, false)});
  }
  return read_pt2_from_entries(pkg->archive_root, std::move(entries), source);
}

}  // namespace ember
