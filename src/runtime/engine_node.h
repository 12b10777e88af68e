// The ember::execute_engine node of .ep programs (see DESIGN.md, "The engine node in .ep").
#pragma once

namespace ember {

// Registers torch.ops.ember.execute_engine.default in the op registry (once per process):
// at load its prepare step parses the engine constant (zero-copy), checks it against this
// host by the compatibility policy and prepares its kernels; each run executes the engine.
void register_engine_op();

}  // namespace ember
