// Building OpCalls outside the interpreter: from torch.export's JSON argument form or from
// a partial map of OpArgs, with the op schema's defaults filled in.
//
// Engines that run an op with its reference kernel (e.g. the CPU backend's "reference"
// steps) store the node's arguments as JSON (ir::argument_to_json form) and turn them back
// into OpArgs here; tensors are named by the caller's own scheme and resolved through
// callbacks.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ops/registry.h"

namespace ember::ops {

// Turns a schema default as written in a schema ("None", "1", "[0, 0]", "1e-05", "False",
// "'none'", "contiguous_format") into the OpArg for an argument of `type`.
OpArg parse_schema_default(const std::string& type, const std::string& text);

// Resolves the names the JSON arguments use.
struct ArgResolver {
  // Tensor by name (run mode). Must throw ember::Error for an unknown name.
  std::function<Tensor(const std::string& name)> tensor;
  // Spec by name (infer mode). Must throw ember::Error for an unknown name.
  std::function<TensorSpec(const std::string& name)> spec;
  // Value of a symbolic integer by name ("s0"). Optional: without it, symbolic names fail.
  std::function<int64_t(const std::string& name)> symbol;
};

// `args`: a JSON array of {"name": ..., "arg": {<as_* union>}} objects. Every argument is
// checked against `def`'s schema (unknown names, wrong kinds and missing required
// arguments throw kCorrupt naming `node`); absent ones take their defaults.
OpCall make_call_from_json(const OpDef& def, const std::string& node, const nlohmann::json& args,
                           const ArgResolver& resolver, bool infer_mode);

// The same from OpArgs the caller already has; absent arguments take their defaults.
OpCall make_call(const OpDef& def, const std::string& node, std::map<std::string, OpArg, std::less<>> given,
                 bool infer_mode);

// Looks `target` up in the global registry and throws kUnsupported naming it when absent.
const OpDef& require_op(std::string_view target);

}  // namespace ember::ops
