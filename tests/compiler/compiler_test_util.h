// Helpers for the compiler tests: hand-made models, comparisons, and a tiny executor that
// runs an .ep model (engines through cpu::Engine, every other node through the reference
// kernels) so compiled programs can be checked against PyTorch's outputs.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "compiler/compiler_internal.h"
#include "ember/compiler.h"
#include "ember/program.h"
#include "ember/pt2.h"

namespace ember::testing {

inline std::string fixture(const std::string& name) { return std::string(EMBER_FIXTURES_DIR) + "/" + name; }
// The project's bundled example models (examples/models/).
inline std::string example(const std::string& name) {
  return std::string(EMBER_SOURCE_DIR) + "/examples/models/" + name;
}

// Deterministic pseudo-random float tensor in [-1, 1).
inline Tensor random_tensor(const Shape& shape, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  Tensor t = Tensor::empty(shape, DType::kFloat32);
  uint32_t s = seed * 2654435761u + 12345u;
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    s = s * 1664525u + 1013904223u;
    p[i] = lo + (hi - lo) * static_cast<float>(s >> 8) / static_cast<float>(1u << 24);
  }
  return t;
}

inline ::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, double rtol = 1e-4,
                                            double atol = 1e-4) {
  if (got.dtype() != want.dtype())
    return ::testing::AssertionFailure() << "dtype " << dtype_name(got.dtype()) << " vs " << dtype_name(want.dtype());
  if (got.sizes() != want.sizes())
    return ::testing::AssertionFailure() << "shape " << shape_str(got.sizes()) << " vs " << shape_str(want.sizes());
  double worst = 0;
  int64_t bad = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    double g = element_as_double(got, i), w = element_as_double(want, i);
    double err = std::fabs(g - w);
    if (!(err <= atol + rtol * std::fabs(w))) ++bad;
    worst = std::max(worst, err);
  }
  if (bad) return ::testing::AssertionFailure() << bad << " of " << want.numel() << " differ, max abs error " << worst;
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------- hand-made models

inline ir::Argument T(const std::string& name) { return ir::Argument::tensor(name); }
inline ir::Argument I(int64_t v) {
  ir::Argument a;
  a.kind = ir::ArgKind::kInt;
  a.i = v;
  return a;
}
inline ir::Argument Is(std::vector<int64_t> v) {
  ir::Argument a;
  a.kind = ir::ArgKind::kInts;
  a.ints = std::move(v);
  return a;
}
inline ir::Argument F(double v) {
  ir::Argument a;
  a.kind = ir::ArgKind::kFloat;
  a.f = v;
  return a;
}
inline ir::Argument B(bool v) {
  ir::Argument a;
  a.kind = ir::ArgKind::kBool;
  a.b = v;
  return a;
}

inline ir::TensorMeta meta_of(const Shape& shape, DType dtype = DType::kFloat32) {
  ir::TensorMeta m;
  m.dtype = dtype;
  for (int64_t d : shape) m.sizes.push_back(ir::SymInt{false, d, {}});
  for (int64_t s : contiguous_strides(shape)) m.strides.push_back(ir::SymInt{false, s, {}});
  m.storage_offset = ir::SymInt{false, 0, {}};
  return m;
}

// Builds a Pt2Model node by node. Parameters come first in the signature, then buffers,
// then user inputs, as PyTorch orders them.
class ModelBuilder {
 public:
  ModelBuilder() { model_.name = "model"; }

  std::string input(const std::string& name, const Shape& shape) {
    users_.push_back({name, shape});
    graph().tensor_values[name] = meta_of(shape);
    return name;
  }
  std::string param(const std::string& fqn, const Tensor& t, bool buffer = false) {
    std::string arg = (buffer ? "b_" : "p_") + fqn;
    for (char& c : arg)
      if (c == '.') c = '_';
    ir::InputSpec spec;
    spec.kind = buffer ? ir::InputKind::kBuffer : ir::InputKind::kParameter;
    spec.arg = T(arg);
    spec.target = fqn;
    if (buffer) spec.persistent = true;
    (buffer ? buffers_ : params_).push_back(spec);
    graph().tensor_values[arg] = meta_of(t.sizes());
    Pt2TensorEntry e;
    e.fqn = fqn;
    e.path_name = "weight_" + std::to_string(model_.weights.size());
    e.is_param = !buffer;
    e.meta = meta_of(t.sizes());
    e.tensor = t;
    model_.weights.push_back(e);
    return arg;
  }
  // One node; `outs`: (name, shape) of each tensor output.
  void node(const std::string& target, std::vector<std::pair<std::string, ir::Argument>> args,
            std::vector<std::pair<std::string, Shape>> outs) {
    ir::Node n;
    n.target = target;
    for (auto& [name, a] : args) {
      ir::NamedArgument na;
      na.name = name;
      na.arg = a;
      na.kind = 1;
      n.inputs.push_back(na);
    }
    for (auto& [name, shape] : outs) {
      n.outputs.push_back(T(name));
      graph().tensor_values[name] = meta_of(shape);
    }
    n.name = outs.empty() ? target : outs[0].first;
    graph().nodes.push_back(n);
  }
  void output(const std::string& name) {
    graph().outputs.push_back(T(name));
    ir::OutputSpec o;
    o.kind = ir::OutputKind::kUserOutput;
    o.arg = T(name);
    model_.program.graph_module.signature.output_specs.push_back(o);
  }
  Pt2Model finish() {
    auto& specs = model_.program.graph_module.signature.input_specs;
    specs.clear();
    graph().inputs.clear();
    for (const auto* list : {&params_, &buffers_})
      for (const auto& s : *list) specs.push_back(s);
    for (const auto& [name, shape] : users_) {
      ir::InputSpec s;
      s.kind = ir::InputKind::kUserInput;
      s.arg = T(name);
      specs.push_back(s);
    }
    for (const auto& s : specs) graph().inputs.push_back(s.arg);
    model_.program.schema_version = {8, 17};
    return model_;
  }

 private:
  ir::Graph& graph() { return model_.program.graph_module.graph; }
  Pt2Model model_;
  std::vector<ir::InputSpec> params_, buffers_;
  std::vector<std::pair<std::string, Shape>> users_;
};

// A capability function that accepts everything (tests of the pipeline without the backend).
inline bool support_all(const cpu::FusedOp&, const std::vector<cpu::EngineValue>&, std::string*) { return true; }

// ---------------------------------------------------------------- executing .ep / .pt2 models

// Runs `model` on the flattened user tensor inputs: engines through cpu::Engine::load, the
// other nodes through the reference kernels. Returns the flattened user outputs.
inline std::vector<Tensor> run_model(const Pt2Model& model, const std::vector<Tensor>& user_inputs) {
  std::map<std::string, Tensor> env;
  const auto& sig = model.program.graph_module.signature;
  size_t k = 0;
  for (const auto& spec : sig.input_specs) {
    if (spec.kind == ir::InputKind::kUserInput) {
      EMBER_CHECK(k < user_inputs.size(), ErrorCode::kInvalidArgument, "too few inputs");
      env[spec.arg.name] = user_inputs[k++];
      continue;
    }
    const Pt2TensorEntry* e = model.find_weight(spec.target);
    if (!e) e = model.find_constant(spec.target);
    EMBER_CHECK(e != nullptr, ErrorCode::kNotFound, "no tensor for ", spec.target);
    // Buffers may be written in place by nodes outside engines: give them a private copy.
    env[spec.arg.name] = spec.kind == ir::InputKind::kBuffer ? e->tensor.clone() : e->tensor;
  }
  std::map<std::string, std::shared_ptr<const cpu::Engine>> engines;
  for (const auto& [name, bytes] : list_engines(model)) engines[name] = cpu::Engine::load(bytes, name);
  auto engine_list = list_engines(model);
  size_t engine_index = 0;
  for (const auto& node : model.program.graph_module.graph.nodes) {
    if (node.target == kExecuteEngineTarget) {
      std::vector<Tensor> ins;
      for (const auto& n : node.input("inputs")->names) ins.push_back(env.at(n));
      auto outs = engines.at(engine_list[engine_index++].first)->run(ins);
      const auto& names = node.outputs.at(0).names;
      EMBER_CHECK(outs.size() == names.size(), ErrorCode::kInternal, "engine output count");
      for (size_t j = 0; j < names.size(); ++j) env[names[j]] = outs[j];
      continue;
    }
    for (auto& [name, t] : compiler::evaluate_node(node, env, "test")) env[name] = t;
  }
  std::vector<Tensor> result;
  for (const auto& o : sig.output_specs)
    if (o.kind == ir::OutputKind::kUserOutput && o.arg.kind == ir::ArgKind::kTensor)
      result.push_back(env.at(o.arg.name).contiguous());
  return result;
}

}  // namespace ember::testing
