#include "backends/cpu/plan.h"

#include <algorithm>
#include <numeric>
#include <optional>

#include <simdjson.h>

#include "ember/error.h"

namespace ember::cpu {

using Json = nlohmann::json;
using dt = dnnl::memory::data_type;

// ---------------------------------------------------------------- JSON field access

// The plan is read with simdjson's DOM parser: it parses the plan text about 8 x faster than
// nlohmann::json (whose tree of std::map nodes costs an allocation per key), and the plan
// parse sits on the load's critical path, before any kernel can be created. The writer
// (plan_to_json) stays on nlohmann::json, which the builder uses throughout.

namespace {

using Node = simdjson::dom::element;

const char* node_type_name(Node v) {
  switch (v.type()) {
    case simdjson::dom::element_type::ARRAY: return "array";
    case simdjson::dom::element_type::OBJECT: return "object";
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64:
    case simdjson::dom::element_type::DOUBLE: return "number";
    case simdjson::dom::element_type::STRING: return "string";
    case simdjson::dom::element_type::BOOL: return "boolean";
    case simdjson::dom::element_type::NULL_VALUE: return "null";
  }
  return "unknown";
}

Node field(Node o, const char* key, const std::string& where) {
  simdjson::dom::object obj;
  EMBER_CHECK(o.get(obj) == simdjson::SUCCESS, ErrorCode::kCorrupt, where, ": expected an object, found ",
              node_type_name(o));
  Node v;
  EMBER_CHECK(obj.at_key(key).get(v) == simdjson::SUCCESS, ErrorCode::kCorrupt, where, ".", key, ": missing");
  return v;
}

// The field when `o` is an object that has it.
std::optional<Node> optional_field(Node o, const char* key) {
  simdjson::dom::object obj;
  Node v;
  if (o.get(obj) != simdjson::SUCCESS || obj.at_key(key).get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

// An integer node in [lo, hi]; `what` names it in messages.
int64_t node_int(Node v, const std::string& where, const char* what, int64_t lo, int64_t hi) {
  int64_t x = 0;
  if (v.is_uint64() && !v.is_int64())  // above INT64_MAX
    fail(ErrorCode::kCorrupt, where, what, ": ", v.get_uint64().value_unsafe(), " is outside [", lo, ", ", hi, "]");
  EMBER_CHECK(v.get(x) == simdjson::SUCCESS, ErrorCode::kCorrupt, where, what, ": expected an integer, found ",
              node_type_name(v));
  EMBER_CHECK(x >= lo && x <= hi, ErrorCode::kCorrupt, where, what, ": ", x, " is outside [", lo, ", ", hi, "]");
  return x;
}

int64_t get_int(Node o, const char* key, const std::string& where, int64_t lo, int64_t hi) {
  return node_int(field(o, key, where), where, (std::string(".") + key).c_str(), lo, hi);
}

float get_float(Node o, const char* key, const std::string& where) {
  Node v = field(o, key, where);
  double x = 0;
  EMBER_CHECK(v.is_number() && v.get_double().get(x) == simdjson::SUCCESS, ErrorCode::kCorrupt, where, ".", key,
              ": expected a number, found ", node_type_name(v));
  return static_cast<float>(x);
}

bool get_bool(Node o, const char* key, const std::string& where) {
  Node v = field(o, key, where);
  bool x = false;
  EMBER_CHECK(v.get(x) == simdjson::SUCCESS, ErrorCode::kCorrupt, where, ".", key, ": expected a boolean, found ",
              node_type_name(v));
  return x;
}

std::string_view node_str(Node v, const std::string& where, const char* what) {
  std::string_view x;
  EMBER_CHECK(v.get(x) == simdjson::SUCCESS, ErrorCode::kCorrupt, where, what, ": expected a string, found ",
              node_type_name(v));
  return x;
}

std::string get_str(Node o, const char* key, const std::string& where) {
  return std::string(node_str(field(o, key, where), where, (std::string(".") + key).c_str()));
}

simdjson::dom::array get_array(Node o, const char* key, const std::string& where, size_t max_len) {
  Node v = field(o, key, where);
  simdjson::dom::array a;
  EMBER_CHECK(v.get(a) == simdjson::SUCCESS && a.size() <= max_len, ErrorCode::kCorrupt, where, ".", key,
              ": expected an array of at most ", max_len, " entries, found ",
              v.is_array() ? cat(a.size(), " entries") : std::string(node_type_name(v)));
  return a;
}

std::vector<int64_t> get_ints(Node o, const char* key, const std::string& where, int64_t lo, int64_t hi,
                              size_t max_len = 64) {
  simdjson::dom::array a = get_array(o, key, where, max_len);
  const std::string what = std::string(".") + key;
  std::vector<int64_t> out;
  out.reserve(a.size());
  for (Node x : a) out.push_back(node_int(x, where, what.c_str(), lo, hi));
  return out;
}

// A plan subtree kept as JSON in the plan (a reference step's args, a step's timings).
Json to_json(Node v) {
  switch (v.type()) {
    case simdjson::dom::element_type::ARRAY: {
      Json out = Json::array();
      simdjson::dom::array a;
      if (v.get(a) == simdjson::SUCCESS)
        for (Node x : a) out.push_back(to_json(x));
      return out;
    }
    case simdjson::dom::element_type::OBJECT: {
      Json out = Json::object();
      simdjson::dom::object o;
      if (v.get(o) == simdjson::SUCCESS)
        for (simdjson::dom::key_value_pair kv : o) out[std::string(kv.key)] = to_json(kv.value);
      return out;
    }
    case simdjson::dom::element_type::INT64: return v.get_int64().value_unsafe();
    case simdjson::dom::element_type::UINT64: return v.get_uint64().value_unsafe();
    case simdjson::dom::element_type::DOUBLE: return v.get_double().value_unsafe();
    case simdjson::dom::element_type::STRING: return std::string(v.get_string().value_unsafe());
    case simdjson::dom::element_type::BOOL: return v.get_bool().value_unsafe();
    case simdjson::dom::element_type::NULL_VALUE: break;
  }
  return nullptr;
}

const char* placement_name(Placement p) {
  switch (p) {
    case Placement::kArena: return "arena";
    case Placement::kInput: return "input";
    case Placement::kOutput: return "output";
  }
  return "?";
}

constexpr int64_t kMaxDim = int64_t{1} << 40;

}  // namespace

// ---------------------------------------------------------------- memory descriptors

dnnl::memory::data_type to_dnnl(DType t) {
  switch (t) {
    case DType::kFloat32: return dt::f32;
    case DType::kFloat16: return dt::f16;
    case DType::kBFloat16: return dt::bf16;
    case DType::kInt32: return dt::s32;
    case DType::kInt8: return dt::s8;
    case DType::kUInt8: return dt::u8;
    default: return dt::undef;
  }
}

dnnl::memory::desc plain_desc(const Shape& dims, DType dtype) {
  dnnl::memory::dims d(dims.begin(), dims.end());
  if (d.empty()) d = {1};  // oneDNN has no 0-d memory; a scalar is one element
  dnnl::memory::dims strides(d.size(), 1);
  for (int i = static_cast<int>(d.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * std::max<int64_t>(d[i + 1], 1);
  return dnnl::memory::desc(d, to_dnnl(dtype), strides);
}

bool is_plain(const dnnl::memory::desc& d) {
  const dnnl_memory_desc_t& c = d.data;
  if (c.format_kind != dnnl_blocked || c.format_desc.blocking.inner_nblks != 0) return false;
  int64_t expect = 1;
  for (int i = c.ndims - 1; i >= 0; --i) {
    if (c.dims[i] != 1 && c.format_desc.blocking.strides[i] != expect) return false;
    expect *= c.dims[i];
  }
  return true;
}

int64_t desc_span_bytes(const dnnl::memory::desc& d) {
  const dnnl_memory_desc_t& c = d.data;
  const auto& b = c.format_desc.blocking;
  int64_t block_elems = 1;
  std::vector<int64_t> blk(c.ndims, 1);
  for (int k = 0; k < b.inner_nblks; ++k) {
    block_elems *= b.inner_blks[k];
    blk[b.inner_idxs[k]] *= b.inner_blks[k];
  }
  int64_t last = 0;  // offset of the last element of the last block
  for (int i = 0; i < c.ndims; ++i) {
    int64_t outer = c.padded_dims[i] / blk[i];
    if (outer == 0) return 0;
    last += (outer - 1) * b.strides[i];
  }
  int64_t elem = static_cast<int64_t>(dnnl_data_type_size(c.data_type));
  return (last + block_elems) * elem;
}

Json desc_to_json(const dnnl::memory::desc& d) {
  const dnnl_memory_desc_t& c = d.data;
  Json j;
  j["ndims"] = c.ndims;
  j["dims"] = std::vector<int64_t>(c.dims, c.dims + c.ndims);
  j["data_type"] = static_cast<int>(c.data_type);
  j["format_kind"] = "blocked";
  j["padded_dims"] = std::vector<int64_t>(c.padded_dims, c.padded_dims + c.ndims);
  j["strides"] = std::vector<int64_t>(c.format_desc.blocking.strides, c.format_desc.blocking.strides + c.ndims);
  const auto& b = c.format_desc.blocking;
  j["inner_blks"] = std::vector<int64_t>(b.inner_blks, b.inner_blks + b.inner_nblks);
  j["inner_idxs"] = std::vector<int64_t>(b.inner_idxs, b.inner_idxs + b.inner_nblks);
  return j;
}

namespace {

// The inverse of desc_to_json; validates every field and throws kCorrupt naming `where`.
dnnl::memory::desc desc_from_json(Node j, const std::string& where) {
  int ndims = static_cast<int>(get_int(j, "ndims", where, 1, DNNL_MAX_NDIMS));
  std::string fk = get_str(j, "format_kind", where);
  EMBER_CHECK(fk == "blocked", ErrorCode::kCorrupt, where, ".format_kind: expected 'blocked', found '", fk, "'");
  auto dims = get_ints(j, "dims", where, 0, kMaxDim, DNNL_MAX_NDIMS);
  auto padded = get_ints(j, "padded_dims", where, 0, kMaxDim, DNNL_MAX_NDIMS);
  auto strides = get_ints(j, "strides", where, 0, kMaxDim, DNNL_MAX_NDIMS);
  auto blks = get_ints(j, "inner_blks", where, 1, 1024, DNNL_MAX_NDIMS);
  auto idxs = get_ints(j, "inner_idxs", where, 0, ndims - 1, DNNL_MAX_NDIMS);
  EMBER_CHECK(dims.size() == size_t(ndims) && padded.size() == size_t(ndims) && strides.size() == size_t(ndims),
              ErrorCode::kCorrupt, where, ": dims, padded_dims and strides must have ndims = ", ndims, " entries");
  EMBER_CHECK(blks.size() == idxs.size(), ErrorCode::kCorrupt, where,
              ": inner_blks and inner_idxs must have the same length");
  int64_t type = get_int(j, "data_type", where, 0, 64);
  EMBER_CHECK(type == dnnl_f32 || type == dnnl_f16 || type == dnnl_bf16 || type == dnnl_s32 || type == dnnl_s8 ||
                  type == dnnl_u8,
              ErrorCode::kCorrupt, where, ".data_type: unsupported oneDNN data type ", type);
  dnnl_memory_desc_t c{};
  c.ndims = ndims;
  c.data_type = static_cast<dnnl_data_type_t>(type);
  c.format_kind = dnnl_blocked;
  // Block sizes per dimension and in all, bounded before they are multiplied further (each
  // inner block is at most 1024, but up to 12 of them could overflow an int64).
  std::vector<int64_t> blk(ndims, 1);
  int64_t block_elems = 1;
  for (size_t k = 0; k < blks.size(); ++k) {
    EMBER_CHECK(blk[idxs[k]] <= kMaxDim / blks[k] && block_elems <= kMaxDim / blks[k], ErrorCode::kCorrupt, where,
                ".inner_blks: the blocks multiply to more than ", kMaxDim, " elements");
    blk[idxs[k]] *= blks[k];
    block_elems *= blks[k];
  }
  for (int i = 0; i < ndims; ++i) {
    EMBER_CHECK(padded[i] >= dims[i] && padded[i] % blk[i] == 0, ErrorCode::kCorrupt, where, ".padded_dims[", i,
                "]: ", padded[i], " must be >= dims (", dims[i], ") and a multiple of the block size ", blk[i]);
    c.dims[i] = dims[i];
    c.padded_dims[i] = padded[i];
    c.format_desc.blocking.strides[i] = strides[i];
  }
  c.format_desc.blocking.inner_nblks = static_cast<int>(blks.size());
  for (size_t k = 0; k < blks.size(); ++k) {
    c.format_desc.blocking.inner_blks[k] = blks[k];
    c.format_desc.blocking.inner_idxs[k] = idxs[k];
  }
  dnnl::memory::desc d(c);
  // Overflow guard: the span must be representable and bounded.
  long double span = 1;
  for (int i = 0; i < ndims; ++i) span += static_cast<long double>(padded[i]) * (strides[i] + 1);
  EMBER_CHECK(span < static_cast<long double>(kMaxDim) * 64, ErrorCode::kCorrupt, where,
              ": the layout addresses an unreasonable number of elements");
  return d;
}

}  // namespace

dnnl::memory::desc relayout(const dnnl::memory::desc& pattern, const Shape& dims) {
  const dnnl_memory_desc_t& p = pattern.data;
  EMBER_CHECK(static_cast<int>(dims.size()) == p.ndims, ErrorCode::kInternal, "relayout: rank ", dims.size(),
              " vs layout rank ", p.ndims);
  const auto& b = p.format_desc.blocking;
  std::vector<int64_t> blk(p.ndims, 1);
  int64_t block_elems = 1;
  for (int k = 0; k < b.inner_nblks; ++k) {
    blk[b.inner_idxs[k]] *= b.inner_blks[k];
    block_elems *= b.inner_blks[k];
  }
  // Outer dims from outermost to innermost: by stride, descending; ties keep index order.
  std::vector<int> order(p.ndims);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return b.strides[a] > b.strides[c]; });
  dnnl_memory_desc_t c = p;
  int64_t stride = block_elems;
  for (int k = p.ndims - 1; k >= 0; --k) {
    int i = order[k];
    c.dims[i] = dims[i];
    c.padded_dims[i] = (dims[i] + blk[i] - 1) / blk[i] * blk[i];
    c.format_desc.blocking.strides[i] = stride;
    stride *= c.padded_dims[i] / blk[i];
  }
  return dnnl::memory::desc(c);
}

std::string desc_str(const dnnl::memory::desc& d) {
  const dnnl_memory_desc_t& c = d.data;
  const auto& b = c.format_desc.blocking;
  std::vector<int> order(c.ndims);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int x) { return b.strides[a] > b.strides[x]; });
  std::vector<bool> blocked(c.ndims, false);
  for (int k = 0; k < b.inner_nblks; ++k) blocked[b.inner_idxs[k]] = true;
  std::string s;
  for (int i : order) s += static_cast<char>(blocked[i] ? 'A' + i : 'a' + i);
  for (int k = 0; k < b.inner_nblks; ++k) s += cat(b.inner_blks[k], static_cast<char>('a' + b.inner_idxs[k]));
  return s;
}

int64_t value_bytes(const PlanValue& v, const Shape& dims, const dnnl::memory::desc& desc) {
  if (v.has_desc) return desc_span_bytes(desc);
  return shape_numel(dims) * static_cast<int64_t>(dtype_size(v.dtype));
}

// ---------------------------------------------------------------- plan JSON

Json plan_to_json(const Plan& plan) {
  Json j;
  j["version"] = kPlanVersion;
  j["engine"] = plan.engine_name;
  j["arena_size"] = plan.arena_size;
  j["inputs"] = plan.inputs;
  j["outputs"] = plan.outputs;
  j["build_symbols"] = plan.build_symbols;
  Json values = Json::array();
  for (const PlanValue& v : plan.values) {
    Json o;
    o["name"] = v.name;
    o["dtype"] = dtype_name(v.dtype);
    o["dims"] = v.dims;
    o["symbols"] = v.symbols;
    o["desc"] = v.has_desc ? desc_to_json(v.desc) : Json(nullptr);
    o["placement"] = placement_name(v.placement);
    o["io_index"] = v.io_index;
    o["offset"] = v.offset;
    o["alias"] = v.alias;
    o["first_use"] = v.first_use;
    o["last_use"] = v.last_use;
    values.push_back(std::move(o));
  }
  j["values"] = std::move(values);
  Json blobs = Json::array();
  for (const PlanBlob& b : plan.blobs)
    blobs.push_back({{"offset", b.offset},
                     {"size", b.size},
                     {"dtype", dtype_name(b.dtype)},
                     {"dims", b.dims},
                     {"desc", b.has_desc ? desc_to_json(b.desc) : Json(nullptr)}});
  j["blobs"] = std::move(blobs);
  Json steps = Json::array();
  for (const PlanStep& s : plan.steps) {
    Json o;
    o["kind"] = s.kind;
    o["name"] = s.name;
    o["inputs"] = s.inputs;
    o["outputs"] = s.outputs;
    o["blobs"] = s.blobs;
    Json pos = Json::array();
    for (const PlanPostOp& p : s.post_ops)
      pos.push_back({{"kind", p.kind}, {"alg", p.alg}, {"alpha", p.alpha}, {"beta", p.beta}, {"scale", p.scale},
                     {"value", p.value}});
    o["post_ops"] = std::move(pos);
    o["alg"] = s.alg;
    o["alpha"] = s.alpha;
    o["beta"] = s.beta;
    o["eps"] = s.eps;
    o["kernel"] = s.kernel;
    o["strides"] = s.strides;
    o["pad_l"] = s.pad_l;
    o["pad_r"] = s.pad_r;
    o["dilation"] = s.dilation;
    o["adaptive"] = s.adaptive;
    o["axis"] = s.axis;
    o["log"] = s.log;
    o["norm_size"] = s.norm_size;
    if (s.kind == "winograd") o["tile"] = s.tile;
    o["target"] = s.target;
    o["args"] = s.args;
    o["tactic"] = s.tactic;
    o["impl"] = s.impl;
    o["timings"] = s.timings;
    steps.push_back(std::move(o));
  }
  j["steps"] = std::move(steps);
  return j;
}

namespace {

const std::vector<std::string>& step_kinds() {
  static const std::vector<std::string> k = {"reorder", "conv",    "inner_product", "matmul",    "pool",
                                             "eltwise", "binary",  "softmax",       "layer_norm", "reference",
                                             "winograd"};
  return k;
}

// Number of inputs / outputs / blobs each kind takes (-1: any).
void check_arity(const PlanStep& s, const std::string& where) {
  auto want = [&](const char* what, size_t have, int lo, int hi) {
    EMBER_CHECK(int(have) >= lo && (hi < 0 || int(have) <= hi), ErrorCode::kCorrupt, where, ".", what, ": a ",
                s.kind, " step takes ", lo, hi == lo ? "" : cat("..", hi < 0 ? std::string("n") : std::to_string(hi)),
                " entries, found ", have);
  };
  if (s.kind == "reference") {
    want("outputs", s.outputs.size(), 1, -1);
    return;
  }
  bool two_inputs = s.kind == "binary" || (s.kind == "matmul" && s.blobs.empty());
  want("inputs", s.inputs.size(), two_inputs ? 2 : 1, two_inputs ? 2 : 1);
  want("outputs", s.outputs.size(), 1, 1);
  const bool weighted = s.kind == "conv" || s.kind == "winograd" || s.kind == "inner_product" ||
                        (s.kind == "matmul" && !s.blobs.empty());
  if (weighted || s.kind == "layer_norm")
    want("blobs", s.blobs.size(), 2, 2);
  else
    want("blobs", s.blobs.size(), 0, 0);
  if (weighted)
    EMBER_CHECK(s.blobs[0] >= 0, ErrorCode::kCorrupt, where, ".blobs[0]: the weights blob is required");
}

}  // namespace

Plan plan_from_json(std::string_view text, int64_t weights_size, const std::string& source) {
  const std::string w = source + ": plan";
  simdjson::dom::parser parser;
  Node j;
  if (simdjson::error_code e = parser.parse(text.data(), text.size()).get(j); e != simdjson::SUCCESS)
    fail(ErrorCode::kCorrupt, source, ": plan section is not valid JSON: ", simdjson::error_message(e));
  EMBER_CHECK(j.is_object(), ErrorCode::kCorrupt, w, ": expected a JSON object, found ", node_type_name(j));
  int64_t version = get_int(j, "version", w, 0, 1 << 20);
  EMBER_CHECK(version == kPlanVersion, ErrorCode::kVersionMismatch, w, ".version: expected ", kPlanVersion,
              ", found ", version);
  Plan plan;
  plan.engine_name = get_str(j, "engine", w);
  plan.arena_size = get_int(j, "arena_size", w, 0, int64_t{1} << 46);
  simdjson::dom::array values = get_array(j, "values", w, 1u << 20);
  const int nv = static_cast<int>(values.size());
  simdjson::dom::array steps = get_array(j, "steps", w, 1u << 20);
  const int ns = static_cast<int>(steps.size());
  for (int64_t v : get_ints(j, "inputs", w, 0, nv - 1, 1 << 16)) plan.inputs.push_back(static_cast<int>(v));
  for (int64_t v : get_ints(j, "outputs", w, 0, nv - 1, 1 << 16)) plan.outputs.push_back(static_cast<int>(v));
  simdjson::dom::object bs;
  EMBER_CHECK(field(j, "build_symbols", w).get(bs) == simdjson::SUCCESS, ErrorCode::kCorrupt, w,
              ".build_symbols: expected an object");
  for (simdjson::dom::key_value_pair kv : bs) {
    const std::string key(kv.key);
    plan.build_symbols[key] = node_int(kv.value, w, (".build_symbols." + key).c_str(), 0, kMaxDim);
  }
  plan.values.reserve(nv);
  int i = 0;
  for (Node o : values) {
    const std::string vw = w + ".values[" + std::to_string(i++) + "]";
    PlanValue v;
    v.name = get_str(o, "name", vw);
    std::string dn = get_str(o, "dtype", vw);
    auto dtype = dtype_from_name(dn);
    EMBER_CHECK(dtype.has_value() && *dtype != DType::kUnknown, ErrorCode::kCorrupt, vw, ".dtype: unknown dtype '", dn, "'");
    v.dtype = *dtype;
    v.dims = get_ints(o, "dims", vw, 0, kMaxDim, DNNL_MAX_NDIMS);
    simdjson::dom::array syms = get_array(o, "symbols", vw, DNNL_MAX_NDIMS);
    EMBER_CHECK(syms.size() == v.dims.size(), ErrorCode::kCorrupt, vw, ".symbols: expected one string per dim (",
                v.dims.size(), "), found ", syms.size());
    for (Node sn : syms) {
      std::string name(node_str(sn, vw, ".symbols"));
      EMBER_CHECK(name.empty() || plan.build_symbols.count(name), ErrorCode::kCorrupt, vw, ".symbols: symbol '", name,
                  "' has no build value in build_symbols");
      v.symbols.push_back(std::move(name));
    }
    Node dj = field(o, "desc", vw);
    v.has_desc = !dj.is_null();
    EMBER_CHECK(v.has_desc == (to_dnnl(v.dtype) != dt::undef), ErrorCode::kCorrupt, vw,
                ".desc: must be present exactly when oneDNN has a type for ", dtype_name(v.dtype));
    if (v.has_desc) {
      v.desc = desc_from_json(dj, vw + ".desc");
      int desc_rank = v.desc.data.ndims;
      Shape expect_dims = v.dims.empty() ? Shape{1} : v.dims;
      EMBER_CHECK(desc_rank == static_cast<int>(expect_dims.size()) &&
                      std::equal(expect_dims.begin(), expect_dims.end(), v.desc.data.dims),
                  ErrorCode::kCorrupt, vw, ".desc: dims do not match the value's dims ", shape_str(v.dims));
      EMBER_CHECK(v.desc.data.data_type == static_cast<dnnl_data_type_t>(to_dnnl(v.dtype)), ErrorCode::kCorrupt, vw,
                  ".desc: data type does not match dtype ", dtype_name(v.dtype));
    }
    std::string pl = get_str(o, "placement", vw);
    if (pl == "arena") v.placement = Placement::kArena;
    else if (pl == "input") v.placement = Placement::kInput;
    else if (pl == "output") v.placement = Placement::kOutput;
    else fail(ErrorCode::kCorrupt, vw, ".placement: expected arena, input or output, found '", pl, "'");
    v.io_index = static_cast<int>(get_int(o, "io_index", vw, -1, 1 << 16));
    v.offset = get_int(o, "offset", vw, 0, plan.arena_size);
    v.alias = static_cast<int>(get_int(o, "alias", vw, -1, nv - 1));
    v.first_use = static_cast<int>(get_int(o, "first_use", vw, -1, ns));
    v.last_use = static_cast<int>(get_int(o, "last_use", vw, -1, ns));
    if (v.placement == Placement::kArena) {
      int64_t bytes = value_bytes(v, v.dims, v.desc);
      EMBER_CHECK(v.offset % kArenaAlignment == 0 && v.offset + bytes <= plan.arena_size,
                  ErrorCode::kCorrupt, vw, ".offset: ", v.offset, " + ", bytes,
                  " bytes does not fit the arena of ", plan.arena_size, " bytes (or is not 64-byte aligned)");
    }
    plan.values.push_back(std::move(v));
  }
  for (int i = 0; i < nv; ++i) {
    const PlanValue& v = plan.values[i];
    if (v.alias >= 0) {
      const PlanValue& a = plan.values[v.alias];
      EMBER_CHECK(v.placement == Placement::kArena && a.placement == Placement::kArena && a.alias < 0 &&
                      v.offset == a.offset && value_bytes(a, a.dims, a.desc) >= value_bytes(v, v.dims, v.desc),
                  ErrorCode::kCorrupt, w, ".values[", i, "].alias: value ", v.alias, " cannot hold this value's bytes");
    }
  }
  for (size_t k = 0; k < plan.inputs.size(); ++k) {
    const PlanValue& v = plan.values[plan.inputs[k]];
    EMBER_CHECK(v.placement == Placement::kInput && v.io_index == int(k) && (!v.has_desc || is_plain(v.desc)), ErrorCode::kCorrupt, w,
                ".inputs[", k, "]: value ", plan.inputs[k], " is not plain input ", k);
  }
  for (size_t k = 0; k < plan.outputs.size(); ++k) {
    const PlanValue& v = plan.values[plan.outputs[k]];
    EMBER_CHECK(v.placement == Placement::kOutput && v.io_index == int(k) && (!v.has_desc || is_plain(v.desc)), ErrorCode::kCorrupt, w,
                ".outputs[", k, "]: value ", plan.outputs[k], " is not plain output ", k);
  }
  for (int i = 0; i < nv; ++i) {
    const PlanValue& v = plan.values[i];
    if (v.placement == Placement::kInput)
      EMBER_CHECK(v.io_index >= 0 && v.io_index < int(plan.inputs.size()) && plan.inputs[v.io_index] == i,
                  ErrorCode::kCorrupt, w, ".values[", i, "].io_index: not bound to an engine input");
    if (v.placement == Placement::kOutput)
      EMBER_CHECK(v.io_index >= 0 && v.io_index < int(plan.outputs.size()) && plan.outputs[v.io_index] == i,
                  ErrorCode::kCorrupt, w, ".values[", i, "].io_index: not bound to an engine output");
  }
  simdjson::dom::array blobs = get_array(j, "blobs", w, 1u << 20);
  plan.blobs.reserve(blobs.size());
  i = 0;
  for (Node o : blobs) {
    const std::string bw = w + ".blobs[" + std::to_string(i++) + "]";
    PlanBlob b;
    b.offset = get_int(o, "offset", bw, 0, weights_size);
    b.size = get_int(o, "size", bw, 0, weights_size);
    std::string dn = get_str(o, "dtype", bw);
    auto dtype = dtype_from_name(dn);
    EMBER_CHECK(dtype.has_value() && dtype_size(*dtype) > 0, ErrorCode::kCorrupt, bw, ".dtype: unknown dtype '", dn, "'");
    b.dtype = *dtype;
    b.dims = get_ints(o, "dims", bw, 0, kMaxDim, DNNL_MAX_NDIMS);
    Node dj = field(o, "desc", bw);
    b.has_desc = !dj.is_null();
    EMBER_CHECK(b.offset % kArenaAlignment == 0 && b.offset + b.size <= weights_size, ErrorCode::kCorrupt, bw,
                ": bytes [", b.offset, ", ", b.offset + b.size, ") are not a 64-byte aligned range inside the weights section of ",
                weights_size, " bytes");
    int64_t need = 0;
    if (b.has_desc) {
      b.desc = desc_from_json(dj, bw + ".desc");
      EMBER_CHECK(b.desc.data.data_type == static_cast<dnnl_data_type_t>(to_dnnl(b.dtype)), ErrorCode::kCorrupt, bw,
                  ".desc: data type does not match dtype ", dn);
      need = desc_span_bytes(b.desc);
    } else {
      need = shape_numel(b.dims) * static_cast<int64_t>(dtype_size(b.dtype));
    }
    EMBER_CHECK(need <= b.size, ErrorCode::kCorrupt, bw, ": the layout needs ", need, " bytes, the blob has ", b.size);
    plan.blobs.push_back(std::move(b));
  }
  const int nb = static_cast<int>(plan.blobs.size());
  plan.steps.reserve(ns);
  i = 0;
  for (Node o : steps) {
    PlanStep s;
    std::string sw = w + ".steps[" + std::to_string(i++) + "]";
    s.kind = get_str(o, "kind", sw);
    EMBER_CHECK(std::find(step_kinds().begin(), step_kinds().end(), s.kind) != step_kinds().end(), ErrorCode::kCorrupt,
                sw, ".kind: unknown step kind '", s.kind, "'");
    s.name = get_str(o, "name", sw);
    sw += " (" + s.kind + " '" + s.name + "')";
    for (int64_t v : get_ints(o, "inputs", sw, 0, nv - 1, 1 << 12)) s.inputs.push_back(static_cast<int>(v));
    for (int64_t v : get_ints(o, "outputs", sw, 0, nv - 1, 1 << 12)) s.outputs.push_back(static_cast<int>(v));
    for (int64_t v : get_ints(o, "blobs", sw, -1, nb - 1, 1 << 12)) s.blobs.push_back(static_cast<int>(v));
    size_t k = 0;
    const simdjson::dom::array post_ops = get_array(o, "post_ops", sw, 32);
    for (Node po : post_ops) {
      const std::string pw = sw + ".post_ops[" + std::to_string(k++) + "]";
      PlanPostOp p;
      p.kind = get_str(po, "kind", pw);
      EMBER_CHECK(p.kind == "eltwise" || p.kind == "sum" || p.kind == "binary_add" || p.kind == "binary_mul",
                  ErrorCode::kCorrupt, pw, ".kind: unknown post-op '", p.kind, "'");
      p.alg = get_str(po, "alg", pw);
      p.alpha = get_float(po, "alpha", pw);
      p.beta = get_float(po, "beta", pw);
      p.scale = get_float(po, "scale", pw);
      p.value = static_cast<int>(get_int(po, "value", pw, -1, nv - 1));
      EMBER_CHECK(p.kind == "eltwise" || p.value >= 0, ErrorCode::kCorrupt, pw, ".value: a ", p.kind,
                  " post-op needs an operand value");
      s.post_ops.push_back(std::move(p));
    }
    s.alg = get_str(o, "alg", sw);
    s.alpha = get_float(o, "alpha", sw);
    s.beta = get_float(o, "beta", sw);
    s.eps = get_float(o, "eps", sw);
    s.kernel = get_ints(o, "kernel", sw, 0, 1 << 20, DNNL_MAX_NDIMS);
    s.strides = get_ints(o, "strides", sw, 0, 1 << 20, DNNL_MAX_NDIMS);
    s.pad_l = get_ints(o, "pad_l", sw, 0, 1 << 20, DNNL_MAX_NDIMS);
    s.pad_r = get_ints(o, "pad_r", sw, -(1 << 20), 1 << 20, DNNL_MAX_NDIMS);
    s.dilation = get_ints(o, "dilation", sw, 0, 1 << 20, DNNL_MAX_NDIMS);
    s.adaptive = get_bool(o, "adaptive", sw);
    s.axis = get_int(o, "axis", sw, -64, 64);
    s.log = get_bool(o, "log", sw);
    s.norm_size = get_int(o, "norm_size", sw, 0, kMaxDim);
    if (s.kind == "winograd" && optional_field(o, "tile")) {
      s.tile = get_int(o, "tile", sw, 2, 4);
      EMBER_CHECK(s.tile != 3, ErrorCode::kCorrupt, sw, ".tile: expected 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3)), found 3");
    }
    s.target = get_str(o, "target", sw);
    Node args = field(o, "args", sw);
    EMBER_CHECK(args.is_array(), ErrorCode::kCorrupt, sw, ".args: expected an array, found ", node_type_name(args));
    s.args = to_json(args);
    s.tactic = get_str(o, "tactic", sw);
    s.impl = get_str(o, "impl", sw);
    if (std::optional<Node> t = optional_field(o, "timings")) s.timings = to_json(*t);
    check_arity(s, sw);
    for (int out : s.outputs)
      EMBER_CHECK(plan.values[out].placement != Placement::kInput, ErrorCode::kCorrupt, sw,
                  ".outputs: writes engine input value ", out);
    plan.steps.push_back(std::move(s));
  }
  // Lifetimes must be what the steps imply (they drive buffer sharing).
  const std::vector<std::pair<int, int>> implied = lifetimes(plan);
  for (int i = 0; i < nv; ++i)
    EMBER_CHECK(implied[i].first == plan.values[i].first_use && implied[i].second == plan.values[i].last_use,
                ErrorCode::kCorrupt, w, ".values[", i, "]: lifetime [", plan.values[i].first_use, ", ",
                plan.values[i].last_use, "] does not match the steps, which give [", implied[i].first, ", ",
                implied[i].second, "]");
  return plan;
}

// ---------------------------------------------------------------- memory planning

std::vector<std::pair<int, int>> lifetimes(const Plan& plan) {
  std::vector<std::pair<int, int>> life(plan.values.size(), {-1, -1});
  const int nv = static_cast<int>(plan.values.size());
  for (int s = 0; s < static_cast<int>(plan.steps.size()); ++s) {
    const PlanStep& st = plan.steps[s];
    auto use = [&](int v) {
      if (v >= 0 && v < nv) life[v].second = std::max(life[v].second, s);
    };
    for (int v : st.inputs) use(v);
    for (const PlanPostOp& p : st.post_ops) use(p.value);
    for (int v : st.outputs) {
      if (v < 0 || v >= nv) continue;
      if (life[v].first < 0) life[v].first = s;
      life[v].second = std::max(life[v].second, s);
    }
  }
  return life;
}

void compute_lifetimes(Plan& plan) {
  const std::vector<std::pair<int, int>> life = lifetimes(plan);
  for (size_t i = 0; i < life.size(); ++i) std::tie(plan.values[i].first_use, plan.values[i].last_use) = life[i];
}

int64_t assign_arena(const Plan& plan, const std::vector<int64_t>& sizes, std::vector<int64_t>* offsets) {
  const int n = static_cast<int>(plan.values.size());
  offsets->assign(n, 0);
  // Allocation roots: a value and everything aliasing it form one allocation whose lifetime
  // is the union of theirs.
  struct Alloc {
    int root;
    int64_t size;
    int first, last;
  };
  std::vector<Alloc> allocs;
  std::vector<int> alloc_of(n, -1);
  for (int i = 0; i < n; ++i) {
    const PlanValue& v = plan.values[i];
    if (v.placement != Placement::kArena || v.alias >= 0) continue;
    alloc_of[i] = static_cast<int>(allocs.size());
    allocs.push_back({i, sizes[i], v.first_use, v.last_use});
  }
  for (int i = 0; i < n; ++i) {
    const PlanValue& v = plan.values[i];
    if (v.placement != Placement::kArena || v.alias < 0 || alloc_of[v.alias] < 0) continue;
    Alloc& a = allocs[alloc_of[v.alias]];
    a.size = std::max(a.size, sizes[i]);
    a.first = std::min(a.first, v.first_use);
    a.last = std::max(a.last, v.last_use);
  }
  std::vector<int> order(allocs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return allocs[a].size > allocs[b].size; });
  struct Placed {
    int64_t begin, end;
    int first, last;
  };
  std::vector<Placed> placed;
  std::vector<int64_t> alloc_offset(allocs.size(), 0);
  int64_t total = 0;
  for (int idx : order) {
    const Alloc& a = allocs[idx];
    int64_t size = (std::max<int64_t>(a.size, 1) + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
    // Conflicting ranges (lifetimes overlap), sorted by start: take the first gap that fits.
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (const Placed& p : placed)
      if (!(p.last < a.first || a.last < p.first)) busy.emplace_back(p.begin, p.end);
    std::sort(busy.begin(), busy.end());
    int64_t at = 0;
    for (const auto& [b, e] : busy) {
      if (at + size <= b) break;
      at = std::max(at, e);
    }
    alloc_offset[idx] = at;
    placed.push_back({at, at + size, a.first, a.last});
    total = std::max(total, at + size);
  }
  for (int i = 0; i < n; ++i) {
    const PlanValue& v = plan.values[i];
    if (v.placement != Placement::kArena) continue;
    int root = v.alias >= 0 ? v.alias : i;
    if (alloc_of[root] >= 0) (*offsets)[i] = alloc_offset[alloc_of[root]];
  }
  return total;
}

}  // namespace ember::cpu
