// The CPU backend: builds an engine from an EngineGraph (a fused, partitioned subgraph the
// compiler hands over) and runs engines it built.
//
// Build (compiler side, may take time): chooses an implementation for every op (oneDNN
// primitives where oneDNN has them, Ember's reference kernels otherwise; where several fit
// it times them and keeps the fastest), chooses activation layouts (e.g. blocked formats
// kept across a chain of convolutions, reorders only at the boundaries), reorders weights
// into the layout the chosen kernel wants, and plans memory (one arena, buffers reused
// by lifetime). Everything it decides goes into the engine bytes (engine.h container:
// "meta" + "plan" + "weights").
//
// Load (runtime side, fast): parses the plan, maps the weights zero-copy, creates kernels
// from the stored descriptors — no timing, no weight reordering — and checks the engine's
// target against the host (compat policy).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ember/engine.h"
#include "ember/program.h"
#include "ember/tensor.h"

namespace ember::cpu {

// ---------------------------------------------------------------- build input

// A value flowing through the engine graph. Dims < 0 are dynamic; `symbols[i]` names the
// shape symbol of dim i ("s77") when dynamic, and `ranges` in EngineGraph bound it.
struct EngineValue {
  std::string name;  // graph value name, for messages and I/O binding names
  DType dtype = DType::kFloat32;
  Shape dims;
  std::vector<std::string> symbols;  // same length as dims; empty strings for static dims
};

// A post-op fused into a conv/linear/matmul (applied in order, as oneDNN post-ops).
struct PostOp {
  enum class Kind { kEltwise, kSum, kBinaryAdd, kBinaryMul };
  Kind kind = Kind::kEltwise;
  std::string alg;        // kEltwise: "relu", "gelu_erf", "gelu_tanh", "silu", "sigmoid", "tanh",
                          //   "hardswish", "hardsigmoid", "clip" (alpha=min, beta=max), "linear"
  float alpha = 0.f;
  float beta = 0.f;
  int value = -1;         // kSum / kBinary*: the value id of the other operand (same shape as
                          //   the output for kSum; broadcastable for kBinary*)
  float scale = 1.f;      // kSum scale
};

// One (possibly fused) operation. `op` names what to compute:
//   "conv2d"      inputs {x}; constants {weight, bias?}; attrs stride[2], padding[2] (or
//                 padding[4]: top, left, bottom, right), dilation[2], groups
//   "linear"      inputs {x}; constants {weight [out, in], bias?}   (y = x W^T + b)
//   "matmul"      inputs {a, b} (both runtime values), attrs none (torch.matmul semantics)
//   "max_pool2d"  inputs {x}; attrs kernel[2], stride[2], padding[2], dilation[2], ceil_mode
//   "avg_pool2d"  inputs {x}; attrs kernel, stride, padding, ceil_mode, count_include_pad
//   "adaptive_avg_pool2d"  inputs {x}; attrs output_size[2]
//   "eltwise"     inputs {x}; attrs alg/alpha/beta as in PostOp
//   "binary"      inputs {a, b} broadcasting; attrs alg: "add" | "sub" | "mul" | "div" | "max" | "min"
//   "softmax", "log_softmax"  inputs {x}; attrs dim
//   "layer_norm"  inputs {x}; constants {weight?, bias?}; attrs normalized_shape, eps
//   "reference"   any op of the ops registry: attrs target (e.g. "torch.ops.aten.permute.default")
//                 and args: a JSON array of the node's named arguments in ir::argument_to_json
//                 form, where tensor arguments name values as "%<id>" (runtime values) or
//                 "$<k>" (constants[k]); outputs map the op's tensor outputs in order.
// `post_ops` apply to conv2d / linear / matmul (and eltwise/binary chains the builder may merge).
struct FusedOp {
  std::string op;
  nlohmann::json attrs = nlohmann::json::object();
  std::vector<int> inputs;        // value ids
  std::vector<int> outputs;       // value ids
  std::vector<Tensor> constants;  // weights, already folded (BN folded into conv, ...)
  std::vector<PostOp> post_ops;
  std::string name;               // originating node name(s), for messages and profiling
};

struct SymbolRange {
  int64_t min = 1;
  int64_t max = INT64_MAX;
};

struct EngineGraph {
  std::string name;                       // "engine_0"
  std::vector<EngineValue> values;
  std::vector<int> inputs;                // value ids bound to the engine's inputs, in order
  std::vector<int> outputs;               // value ids returned, in order
  std::vector<FusedOp> ops;               // topological order
  std::map<std::string, SymbolRange> ranges;  // shape symbol -> range
};

struct BuildOptions {
  int threads = 0;              // 0: all cores (for timing tactics)
  bool time_tactics = true;     // false: take oneDNN's first choice (faster builds, tests)
  int timing_iterations = 5;    // timed runs per candidate and round (more for quick kernels)
  int timing_rounds = 3;        // rounds over the candidates, interleaved; each keeps its minimum
  // How much the stored weights may grow beyond the constants the engine absorbs, as a
  // fraction of those constants (0.01: 1 %). Some kernels trade size for speed (Winograd
  // convolutions store 16/9 of their filters). Timed builds spread the budget over the whole
  // graph (allocate_weight_growth); untimed builds keep the first candidate that fits, in
  // graph order. Use a large value (e.g. 1.0) for the fastest engine whatever its size, 0
  // for no growth at all.
  double max_weight_growth = 0.01;
  // Progress callback (e.g. "engine_0: conv2d layer1.0.conv1: 3 tactics, picked jit:avx2 blocked").
  std::function<void(const std::string&)> progress;
  // Forced tactics (deterministic builds, tests, debugging): key -> tactic name. A key is an
  // op's name (FusedOp::name, e.g. "layer1.0.conv1") or an op kind (FusedOp::op: "conv2d",
  // "linear", "max_pool2d", ...); a name wins over a kind. Tactic names: conv2d "blocked" |
  // "blocked/<oneDNN implementation>" (e.g. "blocked/jit:avx512_core") | "plain" | "winograd" |
  // "winograd_compact" | "reference"; linear "inner_product" | "matmul" | "reference"; other ops
  // "onednn" | "reference". A forced tactic that does not apply to the op (or that oneDNN
  // refuses) fails the build with kUnsupported naming the op. The environment variable
  // EMBER_FORCE_TACTICS ("conv2d=reference,max_pool2d=onednn") adds entries for keys not
  // given here.
  std::map<std::string, std::string> force_tactics;
};

// Returns the complete engine file (engine.h container). Throws kUnsupported naming the
// op when something cannot be built.
std::shared_ptr<Storage> build_engine(const EngineGraph& graph, const BuildOptions& options = {});

// What tactic timing found for one op's candidates: the ones that worked, their best times
// (ms, ties collapsed: see collapse_ties), the bytes each adds to the stored weights beyond
// the op's own constants, and what creating its kernels cost (ms; paid again at every load).
struct TacticSurvey {
  std::vector<std::string> names;
  std::vector<double> ms;
  std::vector<int64_t> growth;
  std::vector<double> create_ms;  // empty: not measured (taken as equal)
  nlohmann::json timings = nlohmann::json::object();  // name -> measured ms, as recorded in the plan
  // >= 0: the index of an earlier op with the same signature (kind, attributes, shapes,
  // dtypes, input layouts, post-ops) whose survey this one repeats; the two get one decision,
  // so their kernels are the same and a load creates them once.
  int64_t shared_with = -1;
};

// Run times within this fraction of the fastest are ties: a timed build on a shared machine
// does not resolve differences that small, so among tied candidates the one whose kernels are
// cheapest to create wins (they are created again at every load). On an AVX-512 Xeon,
// oneDNN's jit:avx512_core convolution kernels are 2-7x cheaper to create than brgconv's;
// timed alone they ran within 0-3 % of brgconv on ResNet's 64-256 channel 3x3 layers, but
// in the builder's timing (in the network, reorders included) 5-45 % slower, so there only
// the final linear layer was decided by a tie.
constexpr double kTacticTieFraction = 0.02;

// Each time within `tie_fraction` of the fastest becomes the fastest; the others unchanged.
std::vector<double> collapse_ties(const std::vector<double>& ms, double tie_fraction);

// Spreads a weight growth budget (bytes) over a timed build's ops: one tactic per survey
// entry; entries that share a decision (TacticSurvey::shared_with) get the same one, and
// weigh as their number (run time saved and bytes added both count once per op). Every op
// starts on the candidate that stores least (the fastest of those, then the cheapest to
// create); then the upgrade that saves the most time per extra byte and still fits is
// applied, until none fits (upgrades that save time at no extra bytes first). A greedy answer
// to the multiple-choice knapsack; exact enough for budgets spent on a few dozen ops.
std::vector<std::string> allocate_weight_growth(const std::vector<TacticSurvey>& survey, int64_t budget);

// The two halves of a timed build_engine, separately (tests use them to steer the decisions):
// pass 1, which times every candidate of every op and reports what it found, with the
// weight growth budget in bytes; and pass 2 with the whole-engine check, which emits one
// decision per op (a name from that op's survey) and returns the engine file.
struct TacticSurveyResult {
  std::vector<TacticSurvey> survey;
  int64_t budget = 0;
};
TacticSurveyResult survey_tactics(const EngineGraph& graph, const BuildOptions& options);
std::shared_ptr<Storage> build_decided(const EngineGraph& graph, const BuildOptions& options,
                                       const std::vector<TacticSurvey>& survey,
                                       const std::vector<std::string>& decisions);

// The layout-consistent alternative to a timed build's decisions: every convolution decided
// on one of oneDNN's other implementations ("blocked/<impl>") gets oneDNN's first choice
// ("blocked") instead, where that was a working candidate storing no more bytes. Per-op
// timing is greedy (each op timed after the picks before it, its input reorders included),
// so a near tie early on -- e.g. ResNet's stem on jit:avx512_core's nChw16c instead of
// brgconv's nhwc -- can keep a whole stage on a layout the next stage reorders away, while
// oneDNN's first choices agree on one layout. With `winograd` other than kNone, convolutions
// decided on Ember's Winograd kernels take oneDNN's first choice too (same conditions): those
// F(2x2, 3x3) only (kSmallTiles), or every one (kAll). Those kernels work in a blocked layout,
// and the reorders into it and back that their neighbours pay were not charged to them; the
// F(4x4, 3x3) ones gain more per layer, so they get an alternative of their own that keeps
// them. build_engine builds the per-op engine and each distinct alternative, times them
// whole and keeps the fastest (static engines only).
enum class MoveWinograd { kNone, kSmallTiles, kAll };
std::vector<std::string> consistent_layout_decisions(const std::vector<TacticSurvey>& survey,
                                                     const std::vector<std::string>& decisions,
                                                     MoveWinograd winograd = MoveWinograd::kNone);

// Whether the CPU backend can put `op` (a normalized op name + dtypes) into an engine;
// the compiler's partitioner asks this. `reason` receives why not.
bool supports(const FusedOp& op, const std::vector<EngineValue>& values, std::string* reason = nullptr);

// ---------------------------------------------------------------- runtime

struct RunOptions {
  int threads = 0;  // 0: default (all cores)
};

class Engine {
 public:
  // Parses `bytes` (a standalone engine file, or the uint8 constant of an .ep), checks
  // compatibility with this host (errors thrown, warnings logged), and prepares kernels
  // from the stored descriptors. Never rebuilds or times anything.
  static std::shared_ptr<const Engine> load(std::shared_ptr<Storage> bytes, const std::string& source,
                                            EngineVerification verification = EngineVerification::kFull);
  virtual ~Engine() = default;

  virtual const EngineMeta& meta() const = 0;
  // Runs on `inputs` (validated against the I/O bindings: dtype, rank, dims within range)
  // and returns the outputs (owned, contiguous). Thread-safe: concurrent calls allowed.
  virtual std::vector<Tensor> run(const std::vector<Tensor>& inputs, const RunOptions& options = {}) const = 0;
  // Human-readable summary of the plan (steps, kernels chosen, arena size).
  virtual std::string describe() const = 0;
};

}  // namespace ember::cpu
