// The CPU engine plan: what the builder decided, in a form the runtime can replay without
// making any choice. Serialized as the "plan" section (JSON, schema in docs/cpu-backend.md).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>

#include "ember/dtype.h"
#include "ember/tensor.h"

namespace ember::cpu {

inline constexpr int kPlanVersion = 1;
inline constexpr int64_t kArenaAlignment = 64;

// Where a value's bytes live during a run.
enum class Placement { kArena, kInput, kOutput };

struct PlanValue {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape dims;                        // at the build shape
  std::vector<std::string> symbols;  // per dim; "" for static dims
  bool has_desc = true;              // false for dtypes oneDNN has no type for (int64, bool, ...): plain
  dnnl::memory::desc desc;           // exact layout at the build shape
  Placement placement = Placement::kArena;
  int io_index = -1;    // kInput / kOutput: index into the engine's inputs / outputs
  int64_t offset = 0;   // kArena: byte offset in the arena at the build shape
  int alias = -1;       // kArena: shares the bytes of this value (in-place residual add)
  int first_use = -1;   // step that produces it (-1: engine input)
  int last_use = -1;    // last step that reads it
};

// A constant (weights, bias, scale) in the "weights" section.
struct PlanBlob {
  int64_t offset = 0;  // byte offset in the weights section (64-byte aligned)
  int64_t size = 0;    // bytes
  DType dtype = DType::kFloat32;
  Shape dims;              // logical dims
  bool has_desc = true;    // false: plain row-major bytes of a dtype oneDNN has no type for
  dnnl::memory::desc desc;
};

struct PlanPostOp {
  std::string kind;  // "eltwise", "sum", "binary_add", "binary_mul"
  std::string alg;   // eltwise algorithm (PostOp::alg spelling)
  float alpha = 0.f;
  float beta = 0.f;
  float scale = 1.f;
  int value = -1;    // sum / binary: operand value id
};

// One step. `kind` selects the kernel; only the fields of that kind are meaningful.
//   reorder       inputs {src} outputs {dst}
//   conv          inputs {src} outputs {dst} blobs {weights, bias|-1}; strides, pad_l, pad_r, dilation
//                 (oneDNN convention: 0 = dense)
//   inner_product inputs {src} outputs {dst} blobs {weights, bias|-1}   (src/dst viewed as 2-D)
//   matmul        inputs {src} outputs {dst} blobs {weights [K,N], bias [1,N] | -1}  (src/dst as 2-D)
//                 or inputs {a, b} (both runtime values, same rank) with no blobs
//   pool          inputs {src} outputs {dst}; alg ("max", "avg_include_pad", "avg_exclude_pad"),
//                 kernel, strides, pad_l, pad_r, dilation; adaptive: kernel/strides from the shapes
//   eltwise       inputs {src} outputs {dst}; alg, alpha, beta
//   binary        inputs {a, b} outputs {dst}; alg ("add", "sub", "mul", "div", "max", "min")
//   softmax       inputs {src} outputs {dst}; axis, log
//   layer_norm    inputs {src} outputs {dst} blobs {scale|-1, shift|-1}; eps, norm_size (trailing dims)
//   winograd      inputs {src} outputs {dst} blobs {U [P, C, K] | g [9, C, K], bias|-1}; pad_l, pad_r;
//                 tile; a 3x3 stride-1 convolution by Winograd F(2x2, 3x3) (tile 2, P = 16) or
//                 F(4x4, 3x3) (tile 4, P = 36) (winograd.h); src, dst (and a sum operand) nChw8c;
//                 post-ops sum and eltwise relu only (engine format 1.1; the compact form g,
//                 transformed per run, 1.2; tile, absent meaning 2, 1.3)
//   reference     inputs {...} outputs {...} blobs {constants...}; target, args (JSON, "%<value>" /
//                 "$<k>" tensor names), post_ops applied with reference kernels
struct PlanStep {
  std::string kind;
  std::string name;
  std::vector<int> inputs;
  std::vector<int> outputs;
  std::vector<int> blobs;
  std::vector<PlanPostOp> post_ops;
  std::string alg;
  float alpha = 0.f, beta = 0.f, eps = 0.f;
  std::vector<int64_t> kernel, strides, pad_l, pad_r, dilation;
  bool adaptive = false;
  int64_t axis = -1;
  bool log = false;
  int64_t norm_size = 0;
  int64_t tile = 2;  // winograd: output tile edge, 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3), engine format 1.3)
  std::string target;
  nlohmann::json args = nlohmann::json::array();
  // Informational (never read back to make a decision): what the build chose and why.
  std::string tactic;
  std::string impl;
  nlohmann::json timings = nlohmann::json::object();
};

struct Plan {
  std::string engine_name;
  std::vector<PlanValue> values;
  std::vector<PlanBlob> blobs;
  std::vector<PlanStep> steps;
  std::vector<int> inputs;   // value ids of the engine inputs
  std::vector<int> outputs;  // value ids of the engine outputs (placement kOutput)
  std::map<std::string, int64_t> build_symbols;  // symbol -> value used at build
  int64_t arena_size = 0;
};

// dnnl::memory::desc <-> JSON: {"ndims", "dims", "data_type", "format_kind", "padded_dims",
// "strides", "inner_blks", "inner_idxs"} (inner_nblks = inner_blks.size()).
nlohmann::json desc_to_json(const dnnl::memory::desc& d);
// A desc with the blocking pattern of `pattern` (inner blocks and the order of the outer
// dims) for new dims: used for dynamic shapes.
dnnl::memory::desc relayout(const dnnl::memory::desc& pattern, const Shape& dims);
// Plain row-major desc.
dnnl::memory::desc plain_desc(const Shape& dims, DType dtype);
bool is_plain(const dnnl::memory::desc& d);
// Bytes a desc addresses (from its strides and padded dims), computed independently of
// oneDNN for validation.
int64_t desc_span_bytes(const dnnl::memory::desc& d);
dnnl::memory::data_type to_dnnl(DType t);  // undef when oneDNN has no such type
// "nChw8c"-like short description for messages and describe().
std::string desc_str(const dnnl::memory::desc& d);

// Bytes a value occupies for the given dims (its relaid-out desc, or plain).
int64_t value_bytes(const PlanValue& v, const Shape& dims, const dnnl::memory::desc& desc);

nlohmann::json plan_to_json(const Plan& plan);
// Parses the plan section's text and validates every field (ids in range, sizes, blob bounds
// against `weights_size`, lifetimes); throws kCorrupt naming `source` and the step / value /
// field (kVersionMismatch for another plan version).
Plan plan_from_json(std::string_view text, int64_t weights_size, const std::string& source);

// Lifetimes (first_use, last_use) of every value, derived from the steps.
std::vector<std::pair<int, int>> lifetimes(const Plan& plan);
// Sets every value's first_use / last_use to lifetimes(plan).
void compute_lifetimes(Plan& plan);
// Greedy arena assignment for the given sizes (bytes per value; ignored for non-arena values).
// Returns the arena size; writes offsets.
int64_t assign_arena(const Plan& plan, const std::vector<int64_t>& sizes, std::vector<int64_t>* offsets);

}  // namespace ember::cpu
