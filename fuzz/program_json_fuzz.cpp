// libFuzzer entry point: arbitrary bytes as models/<name>.json and as a pytree spec.
// Anything but ember::Error escaping, a crash or a sanitizer report is a bug; so is a
// program that parses but whose written form does not parse again to the same text.
#include <cstdint>
#include <string>
#include <string_view>

#include "ember/error.h"
#include "ember/program.h"

namespace {

void check_treespec(std::string_view text) {
  try {
    ember::ir::TreeSpec spec = ember::ir::parse_treespec(text, "fuzz spec");
    (void)spec.num_leaves();
    (void)ember::ir::treespec_str(spec);
    std::string once = ember::ir::serialize_treespec(spec);
    // What Ember writes must read back to the same spec text.
    if (ember::ir::serialize_treespec(ember::ir::parse_treespec(once, "rewritten spec")) != once) __builtin_trap();
  } catch (const ember::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check_treespec(text);
  ember::ir::ExportedProgram program;
  try {
    program = ember::ir::parse_exported_program(text, "fuzz.json");
  } catch (const ember::Error&) {
    return 0;
  }
  std::string once = ember::ir::serialize_exported_program(program);
  try {
    ember::ir::ExportedProgram again = ember::ir::parse_exported_program(once, "rewritten.json");
    if (ember::ir::serialize_exported_program(again) != once) __builtin_trap();
  } catch (const ember::Error&) {
    __builtin_trap();  // Ember wrote something it cannot read
  }
  try {
    ember::ir::validate(program, "fuzz.json");
  } catch (const ember::Error&) {
  }
  if (const auto* root = program.root_call_signature()) {
    check_treespec(root->in_spec);
    check_treespec(root->out_spec);
  }
  for (const auto& [name, meta] : program.graph_module.graph.tensor_values) (void)ember::ir::concrete_sizes(meta);
  return 0;
}
