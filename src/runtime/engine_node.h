// The ember::execute_engine node of .ep programs (see DESIGN.md, "The engine node in .ep").
#pragma once

#include <memory>
#include <string>

#include "ember/pt2.h"

namespace ember {

inline constexpr const char* kEngineNodeTarget = "torch.ops.ember.execute_engine.default";

// Registers torch.ops.ember.execute_engine.default in the op registry (once per process):
// at load its prepare step parses the engine constant (zero-copy), checks it against this
// host by the compatibility policy and prepares its kernels; each run executes the engine.
void register_engine_op();

// A standalone engine file as a program: its input bindings are the user inputs, one
// execute_engine node, its output bindings the outputs (a dict keyed by binding name).
// The engine is parsed with minimal verification here; loading the program checks it fully.
Pt2Model model_from_engine(std::shared_ptr<Storage> bytes, const std::string& source);

}  // namespace ember
