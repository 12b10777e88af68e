/* run_model: run a packaged Ember model from plain C, with no Python and no libtorch.
 *
 *   run_model MODEL.so INPUTS.safetensors OUTPUTS.safetensors [CASE]
 *
 * dlopens MODEL.so (made by `ember package model.ep -o model.so`), creates the model with
 * the package's own ember_package_create(), feeds it the tensors `case{CASE}.in.{I}` of
 * INPUTS (CASE defaults to 0; plain `in.{I}` or the file's keys in order also work) and
 * writes the outputs as `case{CASE}.out.{J}` to OUTPUTS — the key convention of the
 * reference files, so the result can be compared with PyTorch's outputs directly.
 *
 * The program links nothing of Ember: every function is looked up with dlsym on the model's
 * handle (the model .so depends on libember_runtime.so, which exports the C ABI of
 * ember/ember.h). The safetensors reader and writer below are deliberately small: only
 * what this example needs, with bounds checks on everything read from the file.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ember/ember.h"

/* ------------------------------------------------------------------ the C ABI, via dlsym */

typedef struct {
  ember_status (*package_create)(const ember_model_options*, ember_model**);
  const char* (*last_error)(void);
  ember_status (*num_inputs)(const ember_model*, size_t*);
  ember_status (*input_info)(const ember_model*, size_t, ember_io_info*);
  ember_status (*run)(const ember_model*, const ember_tensor*, size_t, ember_result**);
  ember_status (*result_num_outputs)(const ember_result*, size_t*);
  ember_status (*result_output)(const ember_result*, size_t, ember_tensor*);
  ember_status (*result_destroy)(ember_result*);
  ember_status (*model_destroy)(ember_model*);
  uint32_t (*abi_version)(void);
} Api;

static int load_api(void* handle, Api* api) {
  struct {
    const char* name;
    void** slot;
  } table[] = {
      {"ember_package_create", (void**)&api->package_create},
      {"ember_last_error", (void**)&api->last_error},
      {"ember_model_num_inputs", (void**)&api->num_inputs},
      {"ember_model_input_info", (void**)&api->input_info},
      {"ember_model_run", (void**)&api->run},
      {"ember_result_num_outputs", (void**)&api->result_num_outputs},
      {"ember_result_output", (void**)&api->result_output},
      {"ember_result_destroy", (void**)&api->result_destroy},
      {"ember_model_destroy", (void**)&api->model_destroy},
      {"ember_abi_version", (void**)&api->abi_version},
  };
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); ++i) {
    *table[i].slot = dlsym(handle, table[i].name);
    if (*table[i].slot == NULL) {
      fprintf(stderr, "run_model: the library exports no '%s': not an Ember packaged model\n", table[i].name);
      return 0;
    }
  }
  if (api->abi_version() != EMBER_ABI_VERSION) {
    fprintf(stderr, "run_model: the runtime speaks C ABI version %u, this program was built for %d\n",
            api->abi_version(), EMBER_ABI_VERSION);
    return 0;
  }
  return 1;
}

/* ------------------------------------------------------------------ a small safetensors reader */

#define MAX_TENSORS 256
#define MAX_DIMS 16

typedef struct {
  char name[128];
  int32_t dtype;
  int32_t ndim;
  int64_t sizes[MAX_DIMS];
  uint64_t begin, end; /* byte offsets into the data section */
} StEntry;

typedef struct {
  unsigned char* bytes; /* the whole file */
  size_t size;
  const unsigned char* data; /* start of the data section */
  size_t data_size;
  StEntry entries[MAX_TENSORS];
  int count;
} StFile;

typedef struct {
  const char* p;
  const char* end;
} Cursor;

static void skip_ws(Cursor* c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) ++c->p;
}

static int expect(Cursor* c, char ch) {
  skip_ws(c);
  if (c->p >= c->end || *c->p != ch) return 0;
  ++c->p;
  return 1;
}

/* A JSON string into out (truncated to cap-1); escapes are copied as the escaped character. */
static int parse_string(Cursor* c, char* out, size_t cap) {
  size_t n = 0;
  if (!expect(c, '"')) return 0;
  while (c->p < c->end && *c->p != '"') {
    char ch = *c->p++;
    if (ch == '\\') {
      if (c->p >= c->end) return 0;
      ch = *c->p++;
      if (ch == 'u') { /* \uXXXX: keep a placeholder, names here are ASCII */
        if (c->end - c->p < 4) return 0;
        c->p += 4;
        ch = '?';
      }
    }
    if (out && n + 1 < cap) out[n++] = ch;
  }
  if (c->p >= c->end) return 0;
  ++c->p;
  if (out) out[n] = 0;
  return 1;
}

static int parse_int(Cursor* c, int64_t* v) {
  skip_ws(c);
  char* stop = NULL;
  errno = 0;
  long long x = strtoll(c->p, &stop, 10);
  if (stop == c->p || stop > c->end || errno != 0) return 0;
  c->p = stop;
  *v = (int64_t)x;
  return 1;
}

static int skip_value(Cursor* c, int depth);

static int skip_container(Cursor* c, char close, int depth, int keyed) {
  if (depth > 32) return 0;
  skip_ws(c);
  if (c->p < c->end && *c->p == close) {
    ++c->p;
    return 1;
  }
  for (;;) {
    if (keyed && (!parse_string(c, NULL, 0) || !expect(c, ':'))) return 0;
    if (!skip_value(c, depth + 1)) return 0;
    skip_ws(c);
    if (c->p < c->end && *c->p == ',') {
      ++c->p;
      continue;
    }
    return expect(c, close);
  }
}

static int skip_value(Cursor* c, int depth) {
  skip_ws(c);
  if (c->p >= c->end) return 0;
  if (*c->p == '"') return parse_string(c, NULL, 0);
  if (*c->p == '{') return ++c->p, skip_container(c, '}', depth, 1);
  if (*c->p == '[') return ++c->p, skip_container(c, ']', depth, 0);
  while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']') ++c->p; /* number, true, null */
  return 1;
}

static int32_t dtype_of(const char* s) {
  static const struct {
    const char* name;
    int32_t code;
  } table[] = {{"F32", EMBER_FLOAT32}, {"F16", EMBER_FLOAT16}, {"BF16", EMBER_BFLOAT16}, {"F64", EMBER_FLOAT64},
               {"I64", EMBER_INT64},   {"I32", EMBER_INT32},   {"I16", EMBER_INT16},     {"I8", EMBER_INT8},
               {"U8", EMBER_UINT8},    {"BOOL", EMBER_BOOL}};
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); ++i)
    if (strcmp(s, table[i].name) == 0) return table[i].code;
  return -1;
}

static const char* dtype_name(int32_t code) {
  switch (code) {
    case EMBER_FLOAT32: return "F32";
    case EMBER_FLOAT16: return "F16";
    case EMBER_BFLOAT16: return "BF16";
    case EMBER_FLOAT64: return "F64";
    case EMBER_INT64: return "I64";
    case EMBER_INT32: return "I32";
    case EMBER_INT16: return "I16";
    case EMBER_INT8: return "I8";
    case EMBER_UINT8: return "U8";
    case EMBER_BOOL: return "BOOL";
    default: return NULL;
  }
}

static size_t dtype_size(int32_t code) {
  switch (code) {
    case EMBER_FLOAT64:
    case EMBER_INT64: return 8;
    case EMBER_FLOAT32:
    case EMBER_INT32: return 4;
    case EMBER_FLOAT16:
    case EMBER_BFLOAT16:
    case EMBER_INT16: return 2;
    default: return 1;
  }
}

static int parse_entry(Cursor* c, StEntry* e, const char* path) {
  char key[32], dt[16] = "";
  int have_offsets = 0;
  e->ndim = -1;
  if (!expect(c, '{')) return 0;
  skip_ws(c);
  if (c->p < c->end && *c->p == '}') return ++c->p, 0;
  for (;;) {
    if (!parse_string(c, key, sizeof key) || !expect(c, ':')) return 0;
    if (strcmp(key, "dtype") == 0) {
      if (!parse_string(c, dt, sizeof dt)) return 0;
    } else if (strcmp(key, "shape") == 0 || strcmp(key, "data_offsets") == 0) {
      int64_t vals[MAX_DIMS];
      int n = 0;
      if (!expect(c, '[')) return 0;
      skip_ws(c);
      if (c->p < c->end && *c->p == ']') {
        ++c->p;
      } else {
        for (;;) {
          if (n == MAX_DIMS || !parse_int(c, &vals[n++])) return 0;
          skip_ws(c);
          if (c->p < c->end && *c->p == ',') {
            ++c->p;
            continue;
          }
          if (!expect(c, ']')) return 0;
          break;
        }
      }
      if (key[0] == 's') {
        e->ndim = n;
        for (int i = 0; i < n; ++i) {
          if (vals[i] < 0) return 0;
          e->sizes[i] = vals[i];
        }
      } else {
        if (n != 2 || vals[0] < 0 || vals[1] < vals[0]) return 0;
        e->begin = (uint64_t)vals[0];
        e->end = (uint64_t)vals[1];
        have_offsets = 1;
      }
    } else if (!skip_value(c, 1)) {
      return 0;
    }
    skip_ws(c);
    if (c->p < c->end && *c->p == ',') {
      ++c->p;
      continue;
    }
    if (!expect(c, '}')) return 0;
    break;
  }
  e->dtype = dtype_of(dt);
  if (e->dtype < 0 || e->ndim < 0 || !have_offsets) {
    fprintf(stderr, "run_model: %s: tensor '%s' has an unknown dtype '%s' or lacks shape/data_offsets\n", path,
            e->name, dt);
    return 0;
  }
  uint64_t n = dtype_size(e->dtype);
  for (int i = 0; i < e->ndim; ++i) {
    if (e->sizes[i] != 0 && n > UINT64_MAX / (uint64_t)e->sizes[i]) return 0;
    n *= (uint64_t)e->sizes[i];
  }
  if (e->end - e->begin != n) {
    fprintf(stderr, "run_model: %s: tensor '%s' holds %llu bytes, its dtype and shape need %llu\n", path, e->name,
            (unsigned long long)(e->end - e->begin), (unsigned long long)n);
    return 0;
  }
  return 1;
}

static int read_safetensors(const char* path, StFile* f) {
  memset(f, 0, sizeof *f);
  FILE* fp = fopen(path, "rb");
  if (!fp) {
    fprintf(stderr, "run_model: %s: cannot open: %s\n", path, strerror(errno));
    return 0;
  }
  int ok = 0;
  long size = -1;
  if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
  if (size >= 8 && fseek(fp, 0, SEEK_SET) == 0 && (f->bytes = malloc((size_t)size)) != NULL &&
      fread(f->bytes, 1, (size_t)size, fp) == (size_t)size)
    ok = 1;
  fclose(fp);
  if (!ok) {
    fprintf(stderr, "run_model: %s: cannot read (or shorter than a safetensors header)\n", path);
    return 0;
  }
  f->size = (size_t)size;
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | f->bytes[i];
  if (header > f->size - 8) {
    fprintf(stderr, "run_model: %s: header length %llu exceeds the file (%zu bytes)\n", path,
            (unsigned long long)header, f->size);
    return 0;
  }
  f->data = f->bytes + 8 + header;
  f->data_size = f->size - 8 - (size_t)header;
  Cursor c = {(const char*)f->bytes + 8, (const char*)f->bytes + 8 + header};
  if (!expect(&c, '{')) goto bad;
  skip_ws(&c);
  if (c.p < c.end && *c.p == '}') return 1;
  for (;;) {
    char name[128];
    if (!parse_string(&c, name, sizeof name) || !expect(&c, ':')) goto bad;
    if (strcmp(name, "__metadata__") == 0) {
      if (!skip_value(&c, 1)) goto bad;
    } else {
      if (f->count == MAX_TENSORS) {
        fprintf(stderr, "run_model: %s: more than %d tensors\n", path, MAX_TENSORS);
        return 0;
      }
      StEntry* e = &f->entries[f->count];
      snprintf(e->name, sizeof e->name, "%s", name);
      if (!parse_entry(&c, e, path)) goto bad;
      if (e->end > f->data_size) {
        fprintf(stderr, "run_model: %s: tensor '%s' ends at byte %llu, the data section has %zu\n", path, name,
                (unsigned long long)e->end, f->data_size);
        return 0;
      }
      ++f->count;
    }
    skip_ws(&c);
    if (c.p < c.end && *c.p == ',') {
      ++c.p;
      continue;
    }
    if (!expect(&c, '}')) goto bad;
    return 1;
  }
bad:
  fprintf(stderr, "run_model: %s: malformed safetensors header\n", path);
  return 0;
}

static const StEntry* find_entry(const StFile* f, const char* name) {
  for (int i = 0; i < f->count; ++i)
    if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
  return NULL;
}

/* Writes tensors as safetensors, atomically (temporary file, then rename). */
static int write_safetensors(const char* path, const char* const* names, const ember_tensor* tensors, size_t n) {
  size_t cap = 256 + n * 256, len = 0;
  char* header = malloc(cap);
  uint64_t offset = 0;
  if (!header) return 0;
  len += (size_t)snprintf(header + len, cap - len, "{");
  for (size_t i = 0; i < n; ++i) {
    const ember_tensor* t = &tensors[i];
    uint64_t bytes = dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; ++d) bytes *= (uint64_t)t->sizes[d];
    if (len + 128 + (size_t)t->ndim * 24 > cap) {
      char* grown = realloc(header, cap *= 2);
      if (!grown) return free(header), 0;
      header = grown;
    }
    len += (size_t)snprintf(header + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", names[i],
                            dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; ++d)
      len += (size_t)snprintf(header + len, cap - len, "%s%lld", d ? "," : "", (long long)t->sizes[d]);
    len += (size_t)snprintf(header + len, cap - len, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                            (unsigned long long)(offset + bytes));
    offset += bytes;
  }
  len += (size_t)snprintf(header + len, cap - len, "}");
  while (len % 8) header[len++] = ' '; /* pad so the data section is 8-byte aligned */

  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE* fp = fopen(tmp, "wb");
  int ok = fp != NULL;
  unsigned char len_le[8];
  for (int i = 0; i < 8; ++i) len_le[i] = (unsigned char)(((uint64_t)len >> (8 * i)) & 0xff);
  ok = ok && fwrite(len_le, 1, 8, fp) == 8 && fwrite(header, 1, len, fp) == len;
  for (size_t i = 0; ok && i < n; ++i) {
    size_t bytes = dtype_size(tensors[i].dtype);
    for (int d = 0; d < tensors[i].ndim; ++d) bytes *= (size_t)tensors[i].sizes[d];
    ok = fwrite(tensors[i].data, 1, bytes, fp) == bytes; /* result outputs are contiguous */
  }
  if (fp && fclose(fp) != 0) ok = 0;
  free(header);
  if (ok && rename(tmp, path) != 0) ok = 0;
  if (!ok) {
    fprintf(stderr, "run_model: %s: cannot write: %s\n", path, strerror(errno));
    remove(tmp);
  }
  return ok;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: %s MODEL.so INPUTS.safetensors OUTPUTS.safetensors [CASE]\n", argv[0]);
    return 2;
  }
  const char* model_path = argv[1];
  int case_index = argc == 5 ? atoi(argv[4]) : 0;

  /* A path without '/' would make dlopen search the library path, not this folder. */
  char open_path[4096];
  snprintf(open_path, sizeof open_path, "%s%s", strchr(model_path, '/') ? "" : "./", model_path);
  void* handle = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    fprintf(stderr, "run_model: %s: cannot load: %s\n", model_path, dlerror());
    return 1;
  }
  Api api;
  if (!load_api(handle, &api)) return 1;

  ember_model* model = NULL;
  if (api.package_create(NULL, &model) != EMBER_OK) {
    fprintf(stderr, "run_model: %s: %s\n", model_path, api.last_error());
    return 1;
  }

  StFile in;
  if (!read_safetensors(argv[2], &in)) return 1;
  size_t n_in = 0;
  api.num_inputs(model, &n_in);
  ember_tensor* inputs = calloc(n_in ? n_in : 1, sizeof(ember_tensor));
  for (size_t i = 0; i < n_in; ++i) {
    char key[64];
    snprintf(key, sizeof key, "case%d.in.%zu", case_index, i);
    const StEntry* e = find_entry(&in, key);
    if (!e) {
      snprintf(key, sizeof key, "in.%zu", i);
      e = find_entry(&in, key);
    }
    if (!e && (int)i < in.count && n_in == (size_t)in.count) e = &in.entries[i];
    ember_io_info info;
    api.input_info(model, i, &info);
    if (!e) {
      fprintf(stderr, "run_model: %s: no tensor for input '%s' (expected key case%d.in.%zu)\n", argv[2], info.name,
              case_index, i);
      return 1;
    }
    inputs[i].dtype = e->dtype;
    inputs[i].ndim = e->ndim;
    inputs[i].sizes = e->sizes;
    inputs[i].strides = NULL;
    /* Safetensors data is only byte-aligned; copy into aligned memory for the kernels. */
    size_t bytes = (size_t)(e->end - e->begin);
    void* data = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!data) return 1;
    memcpy(data, in.data + e->begin, bytes);
    inputs[i].data = data;
  }

  ember_result* result = NULL;
  if (api.run(model, inputs, n_in, &result) != EMBER_OK) {
    fprintf(stderr, "run_model: %s\n", api.last_error());
    return 1;
  }
  size_t n_out = 0;
  api.result_num_outputs(result, &n_out);
  ember_tensor* outputs = calloc(n_out ? n_out : 1, sizeof(ember_tensor));
  char** names = calloc(n_out ? n_out : 1, sizeof(char*));
  for (size_t j = 0; j < n_out; ++j) {
    if (api.result_output(result, j, &outputs[j]) != EMBER_OK) {
      fprintf(stderr, "run_model: %s\n", api.last_error());
      return 1;
    }
    names[j] = malloc(64);
    snprintf(names[j], 64, "case%d.out.%zu", case_index, j);
  }
  int ok = write_safetensors(argv[3], (const char* const*)names, outputs, n_out);
  if (ok) printf("run_model: %s: %zu input(s) -> %zu output(s) written to %s\n", model_path, n_in, n_out, argv[3]);

  for (size_t j = 0; j < n_out; ++j) free(names[j]);
  free(names);
  free(outputs);
  api.result_destroy(result);
  for (size_t i = 0; i < n_in; ++i) free(inputs[i].data);
  free(inputs);
  api.model_destroy(model);
  free(in.bytes);
  dlclose(handle);
  return ok ? 0 : 1;
}
