// Built by glue_source_test together with a generated glue source (not by CMake): stands in
// for the runtime, calls the package's exported functions and prints what it sees.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "ember/package_abi.h"

extern "C" ember_status ember_model_create_from_package(const void* package, const ember_model_options* options,
                                                        ember_model** out) {
  *out = reinterpret_cast<ember_model*>(const_cast<void*>(package));
  return options == nullptr ? EMBER_OK : EMBER_ERR_INVALID_ARGUMENT;
}
extern "C" const ember_package* ember_package_descriptor(void);
extern "C" ember_status ember_package_create(const ember_model_options* options, ember_model** out);

namespace {

int g_calls = 0;
int g_fail_at = -1;  // the call (1-based) that returns an error

void print_hex(const char* label, const char* text) {
  std::printf("%s ", label);
  for (const char* p = text; *p; ++p) std::printf("%02x", static_cast<unsigned char>(*p));
}

int run_node(ember_glue_context*, uint32_t node) {
  std::printf("run_node %u\n", node);
  return ++g_calls == g_fail_at ? 7 : 0;
}
int release(ember_glue_context*, uint32_t value) {
  std::printf("release %u\n", value);
  return ++g_calls == g_fail_at ? 7 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_fail_at = std::atoi(argv[1]);
  const ember_package* d = ember_package_descriptor();
  std::printf("magic %08x abi %u\n", d->magic, d->abi_version);
  print_hex("version", d->ember_version);
  print_hex(" source", d->source);
  print_hex(" root", d->archive_root);
  print_hex(" model", d->model_name);
  std::printf("\n");
  for (uint32_t i = 0; i < d->num_entries; ++i) {
    const ember_package_entry& e = d->entries[i];
    uint64_t hash = 1469598103934665603ull;  // FNV-1a
    for (uint64_t k = 0; k < e.size; ++k) hash = (hash ^ e.data[k]) * 1099511628211ull;
    print_hex("entry", e.name);
    std::printf(" size %llu aligned %d fnv %016llx\n", static_cast<unsigned long long>(e.size),
                static_cast<int>(reinterpret_cast<uintptr_t>(e.data) % 64 == 0), static_cast<unsigned long long>(hash));
  }
  for (uint32_t i = 0; i < d->num_nodes; ++i) {
    print_hex("node", d->node_names[i]);
    std::printf("\n");
  }
  for (uint32_t i = 0; i < d->num_values; ++i) {
    print_hex("value", d->value_names[i]);
    std::printf("\n");
  }
  ember_model* model = nullptr;
  ember_status created = ember_package_create(nullptr, &model);
  std::printf("create %d same %d\n", static_cast<int>(created), static_cast<int>(model == (const void*)d));
  ember_glue_api api{EMBER_PACKAGE_ABI_VERSION, run_node, release};
  std::printf("status %d\n", d->run(&api, nullptr));
  return 0;
}
