#include "engine_node.h"

#include <mutex>

#include "backends/cpu/cpu_backend.h"
#include "ember/error.h"
#include "ops/registry.h"

namespace ember {
namespace {


std::vector<ops::TensorSpec> infer_engine(const ops::OpCall&) {
  // Output specs live in the engine's I/O bindings; the exported program's tensor_values
  // record them for the interpreter's checks.
  return {};
}

std::shared_ptr<const void> prepare_engine(const ops::OpCall& call) {
  const Tensor& bytes = call.tensor("engine");
  EMBER_CHECK(bytes.defined(), ErrorCode::kCorrupt, "the engine operand must be a tensor constant of the program");
  EMBER_CHECK(bytes.dtype() == DType::kUInt8 && bytes.dim() == 1 && bytes.is_contiguous(), ErrorCode::kCorrupt,
              "the engine operand must be a contiguous 1-D uint8 tensor, found ", bytes.to_string());
  // A view of exactly the engine's bytes inside the archive mapping (kept alive by it).
  auto view = Storage::borrow(bytes.raw_data(), bytes.nbytes(), bytes.storage(), false);
  return cpu::Engine::load(std::move(view), call.node());
}

std::vector<ops::OpArg> run_engine(const ops::OpCall& call) {
  auto engine = std::static_pointer_cast<const cpu::Engine>(call.state());
  EMBER_CHECK(engine != nullptr, ErrorCode::kInternal, "engine node ran without a loaded engine");
  return {ops::OpArg::of_list(engine->run(call.tensor_list("inputs")))};
}

}  // namespace

void register_engine_op() {
  static std::once_flag once;
  std::call_once(once, [] {
    ops::Registry& r = ops::Registry::global();
    if (r.find(kEngineNodeTarget)) return;
    r.add(kEngineNodeTarget, "ember::execute_engine(Tensor[] inputs, Tensor engine) -> Tensor[]", infer_engine, run_engine);
    r.set_prepare(kEngineNodeTarget, prepare_engine);
  });
}

}  // namespace ember
