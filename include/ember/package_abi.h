/* What a packaged model (`ember package model.ep -o model.so`) exports, and the calls its
 * generated glue makes into the runtime. Users do not need this header: they use ember.h.
 *
 * A model .so exports two C functions:
 *
 *   const ember_package* ember_package_descriptor(void);
 *   ember_status ember_package_create(const ember_model_options*, ember_model**);
 *
 * The descriptor lists the embedded archive entries (the compiled program's JSON, its
 * weight/constant configs, engine bytes and fallback weights, each a data section of the
 * .so) and the generated `run` function: the program's schedule written out as code, one
 * call per graph node in topological order, each followed by the releases of the values
 * that die there (the memory plan). Nodes and values are referred to by the glue's own
 * numbering; the descriptor's name tables map it onto the program, and the runtime checks
 * that mapping when the model is created, so a package stays valid across runtime
 * versions that plan the same graph differently.
 *
 * Versioning: `magic` and `abi_version` are the first two fields of every version of the
 * descriptor; the runtime reads nothing else before checking both.
 */
#ifndef EMBER_PACKAGE_ABI_H_
#define EMBER_PACKAGE_ABI_H_

#include <stdint.h>

#include "ember/ember.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_PACKAGE_MAGIC 0x504d4245u /* "EBMP" little-endian bytes: 'E' 'B' 'M' 'P' */
#define EMBER_PACKAGE_ABI_VERSION 1

/* The runtime's side of a run, handed to the glue. Every call returns 0 on success; on
 * failure the glue returns that value at once (the runtime holds the error). */
typedef struct ember_glue_context ember_glue_context;
typedef struct ember_glue_api {
  uint32_t abi_version; /* EMBER_PACKAGE_ABI_VERSION */
  int (*run_node)(ember_glue_context* ctx, uint32_t node);  /* node: index into node_names */
  int (*release)(ember_glue_context* ctx, uint32_t value);  /* value: index into value_names */
} ember_glue_api;

/* One archive entry, by its path inside the archive root ("models/model.json",
 * "data/constants/tensor_0", ...). `data` is 64-byte aligned. */
typedef struct ember_package_entry {
  const char* name;
  const uint8_t* data;
  uint64_t size;
} ember_package_entry;

typedef struct ember_package {
  uint32_t magic;       /* EMBER_PACKAGE_MAGIC */
  uint32_t abi_version; /* EMBER_PACKAGE_ABI_VERSION */
  const char* ember_version; /* the Ember that packaged it */
  const char* source;        /* the .ep it was made from (file name only) */
  const char* archive_root;  /* the archive's root folder name */
  const char* model_name;    /* "model" */
  const ember_package_entry* entries;
  uint32_t num_entries;
  const char* const* node_names; /* graph node names, in the glue's numbering */
  uint32_t num_nodes;
  const char* const* value_names; /* tensor values the glue releases, in its numbering */
  uint32_t num_values;
  int (*run)(const ember_glue_api* api, ember_glue_context* ctx);
} ember_package;

typedef const ember_package* (*ember_package_descriptor_fn)(void);
#define EMBER_PACKAGE_DESCRIPTOR_SYMBOL "ember_package_descriptor"
#define EMBER_PACKAGE_CREATE_SYMBOL "ember_package_create"

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EMBER_PACKAGE_ABI_H_ */
