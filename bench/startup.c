/* startup: time from "nothing loaded" to the first result, then steady latency, for a
 * packaged model (.so) or a compiled program (.ep / .engine), through the C ABI.
 *
 *   startup MODEL.so|MODEL.ep RUNTIME_LIB ITERATIONS
 *
 * MODEL.so: dlopen(MODEL.so) (which loads libember_runtime.so as its dependency),
 * ember_package_create, one run. Anything else: dlopen(RUNTIME_LIB), ember_model_create(MODEL),
 * one run. Then ITERATIONS more runs. Inputs are zeros of each input's smallest allowed
 * shape. Prints one JSON line: {"model":..., "open_ms":..., "create_ms":..., "first_run_ms":...,
 * "to_first_result_ms":..., "median_ms":..., "min_ms":...}. Run it in a fresh process per
 * sample (bench/package.py does) so that nothing is cached in the process.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ember/ember.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

#define SYM(h, name) dlsym(h, name)

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL.so|MODEL.ep RUNTIME_LIB ITERATIONS\n", argv[0]);
    return 2;
  }
  const char* model_path = argv[1];
  int iterations = atoi(argv[3]);
  size_t len = strlen(model_path);
  int is_so = len > 3 && strcmp(model_path + len - 3, ".so") == 0;

  double t0 = now_ms();
  void* h = dlopen(is_so ? model_path : argv[2], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "startup: %s\n", dlerror());
    return 1;
  }
  double t_open = now_ms();
  const char* (*last_error)(void) = (const char* (*)(void))SYM(h, "ember_last_error");
  ember_status (*num_inputs)(const ember_model*, size_t*) = SYM(h, "ember_model_num_inputs");
  ember_status (*input_info)(const ember_model*, size_t, ember_io_info*) = SYM(h, "ember_model_input_info");
  ember_status (*run)(const ember_model*, const ember_tensor*, size_t, ember_result**) = SYM(h, "ember_model_run");
  ember_status (*result_destroy)(ember_result*) = SYM(h, "ember_result_destroy");
  ember_status (*model_destroy)(ember_model*) = SYM(h, "ember_model_destroy");
  if (!last_error || !num_inputs || !input_info || !run || !result_destroy || !model_destroy) {
    fprintf(stderr, "startup: the library does not export Ember's C ABI\n");
    return 1;
  }
  ember_model* model = NULL;
  ember_status s;
  if (is_so) {
    ember_status (*create)(const ember_model_options*, ember_model**) = SYM(h, "ember_package_create");
    s = create ? create(NULL, &model) : EMBER_ERR_NOT_A_MODEL;
  } else {
    ember_status (*create)(const char*, const ember_model_options*, ember_model**) = SYM(h, "ember_model_create");
    s = create(model_path, NULL, &model);
  }
  if (s != EMBER_OK) {
    fprintf(stderr, "startup: %s: %s\n", model_path, last_error());
    return 1;
  }
  double t_create = now_ms();

  size_t n = 0;
  num_inputs(model, &n);
  ember_tensor* inputs = calloc(n ? n : 1, sizeof(ember_tensor));
  int64_t(*sizes)[16] = calloc(n ? n : 1, sizeof *sizes);
  for (size_t i = 0; i < n; ++i) {
    ember_io_info info;
    input_info(model, i, &info);
    size_t count = 1;
    for (int d = 0; d < info.ndim && d < 16; ++d) {
      sizes[i][d] = info.dims[d].min > 0 ? info.dims[d].min : 1;
      count *= (size_t)sizes[i][d];
    }
    inputs[i].dtype = info.dtype;
    inputs[i].ndim = info.ndim;
    inputs[i].sizes = sizes[i];
    inputs[i].data = aligned_alloc(64, (count * 8 + 63) / 64 * 64);
    memset(inputs[i].data, 0, count * 8);
  }
  ember_result* r = NULL;
  if (run(model, inputs, n, &r) != EMBER_OK) {
    fprintf(stderr, "startup: %s\n", last_error());
    return 1;
  }
  result_destroy(r);
  double t_first = now_ms();

  double* lat = calloc(iterations > 0 ? (size_t)iterations : 1, sizeof(double));
  for (int i = 0; i < iterations; ++i) {
    double a = now_ms();
    if (run(model, inputs, n, &r) != EMBER_OK) {
      fprintf(stderr, "startup: %s\n", last_error());
      return 1;
    }
    result_destroy(r);
    lat[i] = now_ms() - a;
  }
  qsort(lat, (size_t)iterations, sizeof(double), cmp_double);
  printf(
      "{\"model\": \"%s\", \"open_ms\": %.3f, \"create_ms\": %.3f, \"first_run_ms\": %.3f, "
      "\"to_first_result_ms\": %.3f, \"median_ms\": %.3f, \"min_ms\": %.3f}\n",
      model_path, t_open - t0, t_create - t_open, t_first - t_create, t_first - t0,
      iterations > 0 ? lat[iterations / 2] : 0.0, iterations > 0 ? lat[0] : 0.0);
  model_destroy(model);
  return 0;
}
