/* Ember's C ABI: load a compiled model and run it from any language that can call C.
 *
 *   ember_model* m = NULL;
 *   if (ember_model_create("model.so", NULL, &m) != EMBER_OK)      // or "model.ep", "model.engine"
 *     fprintf(stderr, "%s\n", ember_last_error());
 *   ember_tensor in = {EMBER_FLOAT32, 4, sizes, NULL, data};
 *   ember_result* r = NULL;
 *   ember_model_run(m, &in, 1, &r);
 *   ember_tensor out;
 *   ember_result_output(r, 0, &out);                               // a view, owned by r
 *   ...
 *   ember_result_destroy(r);
 *   ember_model_destroy(m);
 *
 * Stability: this header is versioned by EMBER_ABI_VERSION. Within one ABI version, functions
 * are only ever added, structs only ever grow at their end (each options struct starts with
 * its own size), and enum values keep their numbers. A program built against ABI version N
 * runs on any runtime whose ember_abi_version() is N.
 *
 * Errors: every function returns an ember_status; EMBER_OK is 0. After a failure,
 * ember_last_error() returns the message (per thread; valid until the next failing call
 * on the same thread). Messages name the file, node or field, what was expected and what
 * was found. No function aborts on bad input.
 *
 * Threads: a model may be run from several threads at once; each run returns its own
 * ember_result. A result must not be used after ember_result_destroy, nor a model after
 * ember_model_destroy (results stay valid after their model is destroyed).
 *
 * Shipped in libember_runtime.so. A packaged model (`ember package model.ep -o model.so`)
 * links it, so `dlopen("model.so")` and `dlsym` on that handle reach every function here;
 * the package also exports ember_package_create() to make its own model.
 */
#ifndef EMBER_EMBER_H_
#define EMBER_EMBER_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_ABI_VERSION 1

#if defined(__GNUC__)
#define EMBER_API __attribute__((visibility("default")))
#else
#define EMBER_API
#endif

typedef enum ember_status {
  EMBER_OK = 0,
  /* the caller passed something wrong */
  EMBER_ERR_INVALID_ARGUMENT = 10,
  EMBER_ERR_SHAPE_MISMATCH = 11,
  EMBER_ERR_DTYPE_MISMATCH = 12,
  EMBER_ERR_NOT_FOUND = 13,
  /* a file is malformed, truncated or corrupted */
  EMBER_ERR_CORRUPT = 20,
  EMBER_ERR_TRUNCATED = 21,
  EMBER_ERR_CHECKSUM_MISMATCH = 22,
  EMBER_ERR_LIMIT_EXCEEDED = 23,
  /* well-formed, but not something this runtime can run */
  EMBER_ERR_UNSUPPORTED = 30,
  EMBER_ERR_VERSION_MISMATCH = 31,
  EMBER_ERR_INCOMPATIBLE_TARGET = 32,
  EMBER_ERR_NOT_A_MODEL = 33,
  /* the environment failed */
  EMBER_ERR_IO = 40,
  EMBER_ERR_OUT_OF_MEMORY = 41,
  /* a bug in Ember */
  EMBER_ERR_INTERNAL = 50
} ember_status;

/* Element types; the numbers are PyTorch's serialization schema's ScalarType. */
typedef enum ember_dtype {
  EMBER_UINT8 = 1,
  EMBER_INT8 = 2,
  EMBER_INT16 = 3,
  EMBER_INT32 = 4,
  EMBER_INT64 = 5,
  EMBER_FLOAT16 = 6,
  EMBER_FLOAT32 = 7,
  EMBER_FLOAT64 = 8,
  EMBER_BOOL = 12,
  EMBER_BFLOAT16 = 13
} ember_dtype;

/* A tensor view: `data` holds the elements, `strides` are in elements (NULL: contiguous).
 * Inputs are never written, except for inputs the program itself mutates in place. */
typedef struct ember_tensor {
  int32_t dtype; /* ember_dtype */
  int32_t ndim;
  const int64_t* sizes;
  const int64_t* strides;
  void* data;
} ember_tensor;

/* One dimension of an input or output: fixed (`is_symbolic` 0, size in `min` == `max`), or
 * symbolic with the range the program allows (inclusive; max INT64_MAX for unbounded). */
typedef struct ember_dim {
  int32_t is_symbolic;
  int64_t min;
  int64_t max;
  const char* symbol; /* "s0", or the expression ("2*s0"); "" when fixed */
} ember_dim;

typedef struct ember_io_info {
  const char* name;  /* forward argument name for inputs; pytree path for outputs ("logits") */
  int32_t is_tensor; /* 0: an int/float/bool/None leaf; dtype and dims then do not apply */
  int32_t dtype;     /* ember_dtype */
  int32_t ndim;
  const ember_dim* dims;
} ember_io_info;

typedef struct ember_model_options {
  uint32_t struct_size; /* sizeof(ember_model_options) */
  int32_t num_threads;  /* kernel threads; 0: EMBER_NUM_THREADS or all cores */
} ember_model_options;

typedef struct ember_model ember_model;
typedef struct ember_result ember_result;

EMBER_API uint32_t ember_abi_version(void);
EMBER_API const char* ember_version(void);
EMBER_API const char* ember_status_name(ember_status status);
EMBER_API const char* ember_last_error(void);

/* Loads a packaged model (.so), a compiled program (.ep), a standalone engine (.engine) or an
 * exported program (.pt2). Engines are checked against this host (format version, target
 * ISA features, checksums) before anything runs. `options` may be NULL. */
EMBER_API ember_status ember_model_create(const char* path, const ember_model_options* options, ember_model** out);
/* Used by a packaged model's ember_package_create(); `package` is its descriptor. */
EMBER_API ember_status ember_model_create_from_package(const void* package, const ember_model_options* options,
                                                       ember_model** out);
EMBER_API ember_status ember_model_destroy(ember_model* model);

/* Flattened user inputs and outputs, in pytree order. Strings stay valid while the model lives. */
EMBER_API ember_status ember_model_num_inputs(const ember_model* model, size_t* count);
EMBER_API ember_status ember_model_num_outputs(const ember_model* model, size_t* count);
EMBER_API ember_status ember_model_input_info(const ember_model* model, size_t index, ember_io_info* info);
EMBER_API ember_status ember_model_output_info(const ember_model* model, size_t index, ember_io_info* info);
/* PyTorch's serialized TreeSpec (JSON) of the inputs ((args, kwargs)) and of the outputs. */
EMBER_API ember_status ember_model_input_spec(const ember_model* model, const char** json);
EMBER_API ember_status ember_model_output_spec(const ember_model* model, const char** json);

/* Runs the model on `num_inputs` flattened inputs (tensors only; non-tensor inputs are not
 * supported through this ABI). Inputs are checked (count, dtype, rank, sizes within range)
 * before any kernel runs. */
EMBER_API ember_status ember_model_run(const ember_model* model, const ember_tensor* inputs, size_t num_inputs,
                                       ember_result** out);
EMBER_API ember_status ember_result_num_outputs(const ember_result* result, size_t* count);
/* A view of output `index` (contiguous; sizes/strides/data owned by the result). Non-tensor
 * outputs (ints, floats, bools) come as 0-d tensors. */
EMBER_API ember_status ember_result_output(const ember_result* result, size_t index, ember_tensor* out);
EMBER_API ember_status ember_result_destroy(ember_result* result);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EMBER_EMBER_H_ */
