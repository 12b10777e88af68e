/* A shared library that pretends to be a packaged model, for the create-time error tests:
 * built once with an unknown package ABI version and once with a wrong magic. */
#include <stddef.h>

#include "ember/package_abi.h"

#ifndef FAKE_MAGIC
#define FAKE_MAGIC EMBER_PACKAGE_MAGIC
#endif
#ifndef FAKE_ABI
#define FAKE_ABI EMBER_PACKAGE_ABI_VERSION
#endif

static int fake_run(const ember_glue_api* api, ember_glue_context* ctx) {
  (void)api;
  (void)ctx;
  return 0;
}

static const ember_package kPackage = {FAKE_MAGIC, FAKE_ABI, "0.0.0", "fake.ep", "fake", "model", NULL, 0,
                                       NULL,       0,        NULL,    0,         fake_run};

EMBER_API const ember_package* ember_package_descriptor(void) { return &kPackage; }
