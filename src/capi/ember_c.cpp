// The C ABI (include/ember/ember.h) over ember::Program.
//
// Every entry point catches everything: a C caller never sees a C++ exception. Errors become
// an ember_status plus a per-thread message for ember_last_error().
#include "ember/ember.h"

#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "ember/error.h"
#include "ember/runtime.h"
#include "ember/version.h"
#include "ops/kernels/parallel.h"

namespace {

thread_local std::string g_last_error;

// What ember_model_*_info hands out: C views over strings the model keeps.
struct IoView {
  std::vector<ember_dim> dims;
  std::vector<std::string> symbols;
  ember_io_info info{};
};

void fill_io(const ember::TensorInfo& t, IoView& v) {
  v.symbols.clear();
  v.dims.clear();
  v.symbols.reserve(t.sizes.size());
  for (const ember::DimInfo& d : t.sizes) {
    v.symbols.push_back(d.is_symbolic ? d.symbol : std::string());
    ember_dim dim{};
    dim.is_symbolic = d.is_symbolic ? 1 : 0;
    dim.min = d.is_symbolic ? d.min : d.value;
    dim.max = d.is_symbolic ? d.max : d.value;
    v.dims.push_back(dim);
  }
  for (size_t i = 0; i < v.dims.size(); ++i) v.dims[i].symbol = v.symbols[i].c_str();
  v.info.name = t.name.c_str();
  v.info.is_tensor = t.is_tensor ? 1 : 0;
  v.info.dtype = static_cast<int32_t>(t.dtype);
  v.info.ndim = static_cast<int32_t>(t.sizes.size());
  v.info.dims = v.dims.data();
}

ember_status status_of(ember::ErrorCode code) {
  switch (code) {
    case ember::ErrorCode::kOk: return EMBER_OK;
    case ember::ErrorCode::kInvalidArgument: return EMBER_ERR_INVALID_ARGUMENT;
    case ember::ErrorCode::kShapeMismatch: return EMBER_ERR_SHAPE_MISMATCH;
    case ember::ErrorCode::kDTypeMismatch: return EMBER_ERR_DTYPE_MISMATCH;
    case ember::ErrorCode::kNotFound: return EMBER_ERR_NOT_FOUND;
    case ember::ErrorCode::kCorrupt: return EMBER_ERR_CORRUPT;
    case ember::ErrorCode::kTruncated: return EMBER_ERR_TRUNCATED;
    case ember::ErrorCode::kChecksumMismatch: return EMBER_ERR_CHECKSUM_MISMATCH;
    case ember::ErrorCode::kLimitExceeded: return EMBER_ERR_LIMIT_EXCEEDED;
    case ember::ErrorCode::kUnsupported: return EMBER_ERR_UNSUPPORTED;
    case ember::ErrorCode::kVersionMismatch: return EMBER_ERR_VERSION_MISMATCH;
    case ember::ErrorCode::kIncompatibleTarget: return EMBER_ERR_INCOMPATIBLE_TARGET;
    case ember::ErrorCode::kNotAModel: return EMBER_ERR_NOT_A_MODEL;
    case ember::ErrorCode::kIo: return EMBER_ERR_IO;
    case ember::ErrorCode::kOutOfMemory: return EMBER_ERR_OUT_OF_MEMORY;
    case ember::ErrorCode::kInternal: return EMBER_ERR_INTERNAL;
  }
  return EMBER_ERR_INTERNAL;
}

ember_status set_error(ember_status s, std::string message) {
  try {
    g_last_error = std::move(message);
  } catch (...) {
  }
  return s;
}

// Runs `body`, turning every exception into a status + message.
template <typename F>
ember_status guarded(const char* fn, F&& body) {
  try {
    body();
    return EMBER_OK;
  } catch (const ember::Error& e) {
    return set_error(status_of(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return set_error(EMBER_ERR_OUT_OF_MEMORY, std::string(fn) + ": out of memory");
  } catch (const std::exception& e) {
    return set_error(EMBER_ERR_INTERNAL, std::string(fn) + ": " + e.what());
  } catch (...) {
    return set_error(EMBER_ERR_INTERNAL, std::string(fn) + ": unknown error");
  }
}

#define EMBER_ARG(cond, fn, what) \
  if (!(cond)) return set_error(EMBER_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + (what))

// "index 5 is out of range (the model has 2 inputs)"
std::string out_of_range(size_t index, size_t size, const char* owner, const char* what) {
  return "index " + std::to_string(index) + " is out of range (the " + owner + " has " + std::to_string(size) + " " +
         what + ")";
}

void apply_options(const ember_model_options* options) {
  if (options == nullptr) return;
  EMBER_CHECK(options->struct_size >= offsetof(ember_model_options, num_threads) + sizeof(int32_t),
              ember::ErrorCode::kInvalidArgument, "ember_model_options.struct_size is ", options->struct_size,
              ", expected at least ", offsetof(ember_model_options, num_threads) + sizeof(int32_t),
              " (set it to sizeof(ember_model_options))");
  EMBER_CHECK(options->num_threads >= 0, ember::ErrorCode::kInvalidArgument, "ember_model_options.num_threads is ",
              options->num_threads, ", expected >= 0");
  if (options->num_threads > 0) ember::ops::set_num_threads(options->num_threads);
}

}  // namespace

struct ember_model {
  explicit ember_model(ember::Program p) : program(std::move(p)) {
    inputs.resize(program.inputs().size());
    outputs.resize(program.outputs().size());
    for (size_t i = 0; i < inputs.size(); ++i) fill_io(program.inputs()[i], inputs[i]);
    for (size_t i = 0; i < outputs.size(); ++i) fill_io(program.outputs()[i], outputs[i]);
  }
  ember::Program program;
  std::vector<IoView> inputs;
  std::vector<IoView> outputs;
};

struct ember_result {
  std::vector<ember::Tensor> outputs;  // contiguous
};

extern "C" {

uint32_t ember_abi_version(void) { return EMBER_ABI_VERSION; }
const char* ember_version(void) { return EMBER_VERSION_STRING; }
const char* ember_last_error(void) { return g_last_error.c_str(); }

const char* ember_status_name(ember_status status) {
  switch (status) {
    case EMBER_OK: return "ok";
    case EMBER_ERR_NOT_A_MODEL: return "not a model";
    default: break;
  }
  int code = static_cast<int>(status);
  if (code == EMBER_ERR_INTERNAL || (code >= 10 && code < 50)) return ember::error_code_name(static_cast<ember::ErrorCode>(code));
  return "unknown status";
}

ember_status ember_model_create(const char* path, const ember_model_options* options, ember_model** out) {
  EMBER_ARG(out != nullptr, "ember_model_create", "out is NULL");
  *out = nullptr;
  EMBER_ARG(path != nullptr && *path, "ember_model_create", "path is NULL or empty");
  return guarded("ember_model_create", [&] {
    apply_options(options);
    *out = new ember_model(ember::Program::load(path));
  });
}

ember_status ember_model_create_from_package(const void* package, const ember_model_options* options,
                                             ember_model** out) {
  EMBER_ARG(out != nullptr, "ember_model_create_from_package", "out is NULL");
  *out = nullptr;
  EMBER_ARG(package != nullptr, "ember_model_create_from_package", "package is NULL");
  return guarded("ember_model_create_from_package", [&] {
    apply_options(options);
    // The descriptor lives in the calling library, which its caller keeps loaded while the
    // model is in use.
    *out = new ember_model(ember::Program::from_package(package, nullptr, "packaged model"));
  });
}

ember_status ember_model_destroy(ember_model* model) {
  delete model;
  return EMBER_OK;
}

ember_status ember_model_num_inputs(const ember_model* model, size_t* count) {
  EMBER_ARG(model != nullptr && count != nullptr, "ember_model_num_inputs", "model or count is NULL");
  *count = model->inputs.size();
  return EMBER_OK;
}

ember_status ember_model_num_outputs(const ember_model* model, size_t* count) {
  EMBER_ARG(model != nullptr && count != nullptr, "ember_model_num_outputs", "model or count is NULL");
  *count = model->outputs.size();
  return EMBER_OK;
}

ember_status ember_model_input_info(const ember_model* model, size_t index, ember_io_info* info) {
  EMBER_ARG(model != nullptr && info != nullptr, "ember_model_input_info", "model or info is NULL");
  EMBER_ARG(index < model->inputs.size(), "ember_model_input_info",
            out_of_range(index, model->inputs.size(), "model", "inputs"));
  *info = model->inputs[index].info;
  return EMBER_OK;
}

ember_status ember_model_output_info(const ember_model* model, size_t index, ember_io_info* info) {
  EMBER_ARG(model != nullptr && info != nullptr, "ember_model_output_info", "model or info is NULL");
  EMBER_ARG(index < model->outputs.size(), "ember_model_output_info",
            out_of_range(index, model->outputs.size(), "model", "outputs"));
  *info = model->outputs[index].info;
  return EMBER_OK;
}

ember_status ember_model_input_spec(const ember_model* model, const char** json) {
  EMBER_ARG(model != nullptr && json != nullptr, "ember_model_input_spec", "model or json is NULL");
  const ember::ir::ModuleCallSignature* root = model->program.exported_program().root_call_signature();
  *json = root ? root->in_spec.c_str() : "";
  return EMBER_OK;
}

ember_status ember_model_output_spec(const ember_model* model, const char** json) {
  EMBER_ARG(model != nullptr && json != nullptr, "ember_model_output_spec", "model or json is NULL");
  const ember::ir::ModuleCallSignature* root = model->program.exported_program().root_call_signature();
  *json = root ? root->out_spec.c_str() : "";
  return EMBER_OK;
}

ember_status ember_model_run(const ember_model* model, const ember_tensor* inputs, size_t num_inputs,
                             ember_result** out) {
  EMBER_ARG(out != nullptr, "ember_model_run", "out is NULL");
  *out = nullptr;
  EMBER_ARG(model != nullptr, "ember_model_run", "model is NULL");
  EMBER_ARG(num_inputs == 0 || inputs != nullptr, "ember_model_run", "inputs is NULL");
  return guarded("ember_model_run", [&] {
    std::vector<ember::Tensor> flat;
    flat.reserve(num_inputs);
    for (size_t i = 0; i < num_inputs; ++i) {
      const ember_tensor& t = inputs[i];
      const std::string who = ember::cat("ember_model_run: input #", i);
      EMBER_CHECK(t.ndim >= 0 && t.ndim <= 64, ember::ErrorCode::kInvalidArgument, who, ": ndim is ", t.ndim,
                  ", expected 0..64");
      EMBER_CHECK(t.ndim == 0 || t.sizes != nullptr, ember::ErrorCode::kInvalidArgument, who, ": sizes is NULL");
      auto dtype = static_cast<ember::DType>(t.dtype);
      size_t item = ember::dtype_size(dtype);
      EMBER_CHECK(item > 0, ember::ErrorCode::kDTypeMismatch, who, ": unknown dtype code ", t.dtype);
      ember::Shape sizes(t.sizes, t.sizes + t.ndim);
      ember::Shape strides = t.strides ? ember::Shape(t.strides, t.strides + t.ndim) : ember::contiguous_strides(sizes);
      // The extent the view addresses, for the borrowed storage's bounds (the caller
      // promises that much memory at `data`).
      int64_t hi = 0;
      bool empty = false;
      for (int d = 0; d < t.ndim; ++d) {
        EMBER_CHECK(sizes[d] >= 0, ember::ErrorCode::kInvalidArgument, who, ": sizes[", d, "] is ", sizes[d]);
        EMBER_CHECK(strides[d] >= 0, ember::ErrorCode::kInvalidArgument, who, ": strides[", d, "] is ", strides[d],
                    " (negative strides are not supported)");
        if (sizes[d] == 0) empty = true;
        int64_t span = 0;
        EMBER_CHECK(!__builtin_mul_overflow(sizes[d] > 0 ? sizes[d] - 1 : 0, strides[d], &span) &&
                        !__builtin_add_overflow(hi, span, &hi),
                    ember::ErrorCode::kLimitExceeded, who, ": the view's extent overflows");
      }
      uint64_t nbytes = empty ? 0 : (static_cast<uint64_t>(hi) + 1) * item;
      EMBER_CHECK(nbytes == 0 || t.data != nullptr, ember::ErrorCode::kInvalidArgument, who, ": data is NULL");
      auto storage = ember::Storage::borrow(t.data, nbytes, nullptr, /*writable=*/true);
      flat.emplace_back(storage, dtype, std::move(sizes), std::move(strides));
    }
    auto result = std::make_unique<ember_result>();
    for (ember::Tensor& t : model->program.run_flat(flat))
      result->outputs.push_back(t.defined() ? t.contiguous() : t);
    *out = result.release();
  });
}

ember_status ember_result_num_outputs(const ember_result* result, size_t* count) {
  EMBER_ARG(result != nullptr && count != nullptr, "ember_result_num_outputs", "result or count is NULL");
  *count = result->outputs.size();
  return EMBER_OK;
}

ember_status ember_result_output(const ember_result* result, size_t index, ember_tensor* out) {
  EMBER_ARG(result != nullptr && out != nullptr, "ember_result_output", "result or out is NULL");
  EMBER_ARG(index < result->outputs.size(), "ember_result_output",
            out_of_range(index, result->outputs.size(), "result", "outputs"));
  const ember::Tensor& t = result->outputs[index];
  EMBER_ARG(t.defined(), "ember_result_output", "output " + std::to_string(index) + " is None");
  out->dtype = static_cast<int32_t>(t.dtype());
  out->ndim = static_cast<int32_t>(t.dim());
  out->sizes = t.sizes().data();
  out->strides = t.strides().data();
  out->data = const_cast<void*>(static_cast<const void*>(t.raw_data()));
  return EMBER_OK;
}

ember_status ember_result_destroy(ember_result* result) {
  delete result;
  return EMBER_OK;
}

}  // extern "C"
