// Lowering of one partition into a cpu::EngineGraph, with the graph passes:
//   constant folding   nodes whose inputs are all constants were evaluated by analyze();
//                      here they simply disappear (their values are constants of the ops
//                      that read them)
//   identity removal   dropout(eval) / contiguous / clone / alias / detach
//   BatchNorm folding  eval BN after a conv whose output nothing else reads:
//                      w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta
//   residual placement a residual add that either operand's producer (conv2d / linear /
//                      matmul) could absorb goes to the one whose fused form matches other
//                      ops (fewer distinct kernels)
//   fusion             conv2d / linear / matmul + element-wise activations, then one residual
//                      add (PostOp kSum when the other operand has the output's shape and dies
//                      there, else kBinaryAdd), then activations after the add (relu)
//   dead code          ops whose outputs nothing reads
#include <algorithm>
#include <cmath>
#include <set>

#include "compiler/compiler_internal.h"
#include "ember/error.h"

namespace ember::compiler {
namespace {

// Rewrites every "%<id>" string inside a reference op's argument JSON.
void remap_json(nlohmann::json& j, const std::function<int(int)>& map) {
  if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s.size() > 1 && s[0] == '%') j = cat("%", map(std::stoi(s.substr(1))));
  } else if (j.is_array() || j.is_object()) {
    for (auto& e : j) remap_json(e, map);
  }
}

bool same_shape(const cpu::EngineValue& a, const cpu::EngineValue& b) {
  if (a.dtype != b.dtype || a.dims != b.dims) return false;
  for (size_t d = 0; d < a.dims.size(); ++d)
    if (a.dims[d] < 0 && (a.symbols[d].empty() || a.symbols[d] != b.symbols[d])) return false;
  return true;
}

std::string post_op_name(const cpu::PostOp& p) {
  switch (p.kind) {
    case cpu::PostOp::Kind::kEltwise: return p.alg;
    case cpu::PostOp::Kind::kSum: return "sum";
    case cpu::PostOp::Kind::kBinaryAdd: return "add";
    case cpu::PostOp::Kind::kBinaryMul: return "mul";
  }
  return "?";
}

// Fuses activations and one residual add into conv2d / linear / matmul ops. `members`, when
// given, receives for each op left the positions (in eg.ops before the call) of the ops it
// absorbed, its own first.
void fuse(cpu::EngineGraph& eg, std::vector<std::vector<size_t>>* members = nullptr) {
  auto& ops = eg.ops;
  std::vector<bool> dead(ops.size(), false);
  std::vector<std::vector<size_t>> parts(ops.size());
  for (size_t k = 0; k < ops.size(); ++k) parts[k] = {k};
  auto is_output = [&](int v) { return std::find(eg.outputs.begin(), eg.outputs.end(), v) != eg.outputs.end(); };
  auto readers = [&](int v) {
    std::vector<size_t> r;
    for (size_t k = 0; k < ops.size(); ++k) {
      if (dead[k]) continue;
      bool reads = std::count(ops[k].inputs.begin(), ops[k].inputs.end(), v) > 0;
      for (const auto& p : ops[k].post_ops) reads = reads || p.value == v;
      if (reads) r.push_back(k);
    }
    return r;
  };
  auto producer = [&](int v) -> int {
    for (size_t k = 0; k < ops.size(); ++k)
      if (!dead[k] && std::count(ops[k].outputs.begin(), ops[k].outputs.end(), v)) return static_cast<int>(k);
    return -1;
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    cpu::FusedOp& op = ops[i];
    if (dead[i] || (op.op != "conv2d" && op.op != "linear" && op.op != "matmul")) continue;
    bool has_binary = false;
    while (true) {
      int out = op.outputs[0];
      if (is_output(out)) break;
      std::vector<size_t> r = readers(out);
      if (r.size() != 1) break;
      cpu::FusedOp& next = ops[r[0]];
      if (next.op == "eltwise" && next.inputs.size() == 1 && next.inputs[0] == out) {
        cpu::PostOp p;
        p.kind = cpu::PostOp::Kind::kEltwise;
        p.alg = next.attrs.value("alg", "");
        p.alpha = next.attrs.value("alpha", 0.f);
        p.beta = next.attrs.value("beta", 0.f);
        op.post_ops.push_back(p);
      } else if (!has_binary && next.op == "binary" && next.attrs.value("alg", "") == "add" && next.inputs.size() == 2 &&
                 (next.inputs[0] == out) != (next.inputs[1] == out)) {
        int other = next.inputs[0] == out ? next.inputs[1] : next.inputs[0];
        // The other operand must exist when the fused op runs (it runs at op i's place).
        int prod = producer(other);
        if (prod >= static_cast<int>(i)) break;
        const cpu::EngineValue& ov = eg.values[other];
        const cpu::EngineValue& nv = eg.values[next.outputs[0]];
        // Post-ops keep the op's shape: an add that broadcasts the op's own output into a
        // larger operand stays a separate op.
        if (!same_shape(eg.values[out], nv)) break;
        // kSum accumulates into the other operand's buffer: allowed when nothing reads it
        // after the fused op starts (every other reader runs before op i, and op i itself
        // does not read it) and it is neither an engine input nor an output.
        bool dies = !is_output(other) && std::find(eg.inputs.begin(), eg.inputs.end(), other) == eg.inputs.end();
        for (size_t k : readers(other))
          if (k != r[0] && k >= i) dies = false;
        cpu::PostOp p;
        p.kind = same_shape(ov, nv) && dies ? cpu::PostOp::Kind::kSum : cpu::PostOp::Kind::kBinaryAdd;
        p.value = other;
        op.post_ops.push_back(p);
        has_binary = true;
      } else {
        break;
      }
      op.outputs[0] = next.outputs[0];
      op.name += "+" + next.name;
      parts[i].push_back(r[0]);
      dead[r[0]] = true;
    }
  }
  std::vector<cpu::FusedOp> kept;
  if (members != nullptr) members->clear();
  for (size_t k = 0; k < ops.size(); ++k)
    if (!dead[k]) {
      kept.push_back(std::move(ops[k]));
      if (members != nullptr) members->push_back(std::move(parts[k]));
    }
  ops = std::move(kept);
}

// What decides a fused op's kernel as far as the graph can tell: its kind, attributes, the
// shapes and dtypes of its inputs, outputs and constants, and its post-ops (an operand's
// shape included). Two ops with the same key get the same kernel from the builder when their
// inputs are in the same layouts, which the builder checks itself (it decides such ops once).
std::string kernel_key(const cpu::EngineGraph& eg, const cpu::FusedOp& op) {
  auto value = [&](int v) {
    if (v < 0 || v >= static_cast<int>(eg.values.size())) return std::string("?");
    const cpu::EngineValue& ev = eg.values[static_cast<size_t>(v)];
    std::string k = cat(shape_str(ev.dims), ':', static_cast<int>(ev.dtype));
    for (const std::string& sym : ev.symbols) k += cat(',', sym);
    return k;
  };
  std::string key = cat(op.op, '|', op.attrs.dump());
  for (int v : op.inputs) key += cat("|i", value(v));
  for (int v : op.outputs) key += cat("|o", value(v));
  for (const Tensor& t : op.constants)
    key += t.defined() ? cat("|c", shape_str(t.sizes()), ':', static_cast<int>(t.dtype())) : std::string("|c-");
  for (const cpu::PostOp& p : op.post_ops) {
    key += cat("|p", post_op_name(p), ':', p.alpha, ':', p.beta, ':', p.scale);
    if (p.kind != cpu::PostOp::Kind::kEltwise) key += cat(':', value(p.value));
  }
  return key;
}

// Moves the ops at positions `from` (ascending) to just before position `to`, keeping their
// order, when that is legal: every value they read, other than each other's outputs, is
// produced before `to`. Returns whether it moved them.
bool move_before(cpu::EngineGraph& eg, const std::vector<size_t>& from, size_t to) {
  auto moving = [&](size_t k) { return std::binary_search(from.begin(), from.end(), k); };
  std::set<int> moved_outputs;
  for (size_t f : from) moved_outputs.insert(eg.ops[f].outputs.begin(), eg.ops[f].outputs.end());
  for (size_t f : from) {
    std::vector<int> reads = eg.ops[f].inputs;
    for (const cpu::PostOp& q : eg.ops[f].post_ops)
      if (q.value >= 0) reads.push_back(q.value);
    for (int v : reads) {
      if (moved_outputs.count(v)) continue;
      for (size_t k = to; k < eg.ops.size(); ++k)
        if (!moving(k) && std::count(eg.ops[k].outputs.begin(), eg.ops[k].outputs.end(), v)) return false;
    }
  }
  std::vector<cpu::FusedOp> moved, rest;
  for (size_t k = 0; k < eg.ops.size(); ++k) (moving(k) ? moved : rest).push_back(std::move(eg.ops[k]));
  rest.insert(rest.begin() + static_cast<std::ptrdiff_t>(to), std::make_move_iterator(moved.begin()),
              std::make_move_iterator(moved.end()));
  eg.ops = std::move(rest);
  return true;
}

// A residual add whose operands both come from ops that can absorb it (a ResNet block with a
// downsample branch: the block's last convolution and the branch's 1x1 convolution) is fused
// by fuse() into whichever of the two runs later. Here it goes instead to the one whose fused
// form then matches more of the engine's other ops: in ResNet the block's 3x3 convolution,
// which then has the shape and post-ops (bias, add, relu) of the next block's last 3x3
// convolution, so both get one kernel, timed once at build and created once at load. The
// choice is made on a trial fusion and applied by moving the op that absorbed the add there
// (its root op and the activations fused into it before the add) to just before the other
// operand's producer, which fuse() then sees as the later of the two and fuses the add into.
// The result is the same sum; it need not be the same bits, since the two convolutions are
// timed again in their new forms and may get other kernels. One move per trial fusion (a
// move changes the positions the others were found at).
bool place_one_residual_add(cpu::EngineGraph& eg) {
  cpu::EngineGraph trial = eg;
  std::vector<std::vector<size_t>> members;
  fuse(trial, &members);
  const size_t n = trial.ops.size();
  std::vector<std::string> keys(n);
  for (size_t k = 0; k < n; ++k) keys[k] = kernel_key(trial, trial.ops[k]);
  auto shared = [&](const std::string& key, size_t a, size_t b) {
    for (size_t k = 0; k < n; ++k)
      if (k != a && k != b && keys[k] == key) return true;
    return false;
  };
  auto absorbs = [](const cpu::FusedOp& op) { return op.op == "conv2d" || op.op == "linear" || op.op == "matmul"; };
  auto binary = [](const cpu::PostOp& p) { return p.kind != cpu::PostOp::Kind::kEltwise; };
  for (size_t a = 0; a < n; ++a) {
    const cpu::FusedOp& absorber = trial.ops[a];
    auto bin = std::find_if(absorber.post_ops.begin(), absorber.post_ops.end(), binary);
    if (!absorbs(absorber) || bin == absorber.post_ops.end() || bin->kind != cpu::PostOp::Kind::kSum) continue;
    const int other = bin->value;
    size_t p = n;
    for (size_t k = 0; k < n; ++k)
      if (k != a && std::count(trial.ops[k].outputs.begin(), trial.ops[k].outputs.end(), other)) p = k;
    if (p == n || !absorbs(trial.ops[p])) continue;
    const cpu::FusedOp& producer = trial.ops[p];
    if (std::any_of(producer.post_ops.begin(), producer.post_ops.end(), binary) || producer.outputs.size() != 1) continue;
    // `other` must die at the add: read by nothing else, not an engine output.
    bool dies = std::find(trial.outputs.begin(), trial.outputs.end(), other) == trial.outputs.end();
    for (size_t k = 0; k < n && dies; ++k) {
      if (k == a) dies = std::count(absorber.inputs.begin(), absorber.inputs.end(), other) == 0;
      else dies = std::count(trial.ops[k].inputs.begin(), trial.ops[k].inputs.end(), other) == 0;
      for (const cpu::PostOp& q : trial.ops[k].post_ops)
        if (k != a && q.value == other) dies = false;
    }
    if (!dies) continue;
    // The swap: the producer takes the add, now of the absorber's value before the add (the
    // output of the last op fused into it before the add), and the activations after it;
    // the absorber keeps what it had before the add. fuse() makes that add a sum only when
    // the value has the add's shape (an absorber may broadcast into the other operand).
    const size_t kept = static_cast<size_t>(bin - absorber.post_ops.begin());
    const int x = eg.ops[members[a][kept]].outputs[0];
    if (!same_shape(eg.values[static_cast<size_t>(x)], eg.values[static_cast<size_t>(absorber.outputs[0])])) continue;
    cpu::FusedOp before = absorber;
    before.post_ops.assign(absorber.post_ops.begin(), bin);
    before.outputs = {x};
    cpu::FusedOp after = producer;
    for (auto q = bin; q != absorber.post_ops.end(); ++q) after.post_ops.push_back(*q);
    after.post_ops[producer.post_ops.size()].value = x;
    after.outputs = absorber.outputs;
    const int now_shared = int{shared(keys[a], a, p)} + int{shared(keys[p], a, p)};
    const int swap_shared = int{shared(kernel_key(trial, before), a, p)} + int{shared(kernel_key(trial, after), a, p)};
    if (swap_shared <= now_shared) continue;
    // The absorber's root op and the activations fused into it before the add (one op per
    // post-op), moved to just before the producer's root op (which fuse() required to be
    // earlier).
    std::vector<size_t> from(members[a].begin(), members[a].begin() + static_cast<std::ptrdiff_t>(kept + 1));
    std::sort(from.begin(), from.end());
    if (from.front() > members[p].front() && move_before(eg, from, members[p].front())) return true;
  }
  return false;
}

void place_residual_adds(cpu::EngineGraph& eg) {
  for (size_t round = 0; round < eg.ops.size() && place_one_residual_add(eg); ++round) {
  }
}

void eliminate_dead_code(cpu::EngineGraph& eg) {
  std::set<int> live(eg.outputs.begin(), eg.outputs.end());
  std::vector<bool> keep(eg.ops.size(), false);
  for (size_t k = eg.ops.size(); k-- > 0;) {
    const cpu::FusedOp& op = eg.ops[k];
    bool needed = std::any_of(op.outputs.begin(), op.outputs.end(), [&](int v) { return live.count(v) > 0; });
    if (!needed) continue;
    keep[k] = true;
    live.insert(op.inputs.begin(), op.inputs.end());
    for (const auto& p : op.post_ops)
      if (p.value >= 0) live.insert(p.value);
  }
  std::vector<cpu::FusedOp> kept;
  for (size_t k = 0; k < eg.ops.size(); ++k)
    if (keep[k]) kept.push_back(std::move(eg.ops[k]));
  eg.ops = std::move(kept);
}

}  // namespace

std::pair<Tensor, Tensor> fold_batch_norm(const Tensor& weight, const Tensor& bias, const Tensor& gamma,
                                          const Tensor& beta, const Tensor& mean, const Tensor& var, double eps) {
  const int64_t out_ch = weight.size(0);
  EMBER_CHECK(mean.numel() == out_ch && var.numel() == out_ch, ErrorCode::kShapeMismatch,
              "BatchNorm folding: running stats have ", mean.numel(), " channels, the conv has ", out_ch);
  EMBER_CHECK(!gamma.defined() || gamma.numel() == out_ch, ErrorCode::kShapeMismatch,
              "BatchNorm folding: weight has ", gamma.numel(), " channels, expected ", out_ch);
  EMBER_CHECK(!beta.defined() || beta.numel() == out_ch, ErrorCode::kShapeMismatch,
              "BatchNorm folding: bias has ", beta.numel(), " channels, expected ", out_ch);
  Tensor w = weight.contiguous().clone();
  Tensor b = Tensor::empty({out_ch}, weight.dtype());
  const int64_t per = out_ch == 0 ? 0 : w.numel() / out_ch;
  for (int64_t o = 0; o < out_ch; ++o) {
    double g = gamma.defined() ? element_as_double(gamma, o) : 1.0;
    double bt = beta.defined() ? element_as_double(beta, o) : 0.0;
    double scale = g / std::sqrt(element_as_double(var, o) + eps);
    double b0 = bias.defined() ? element_as_double(bias, o) : 0.0;
    set_element_from_double(b, o, (b0 - element_as_double(mean, o)) * scale + bt);
    if (w.dtype() == DType::kFloat32) {
      float* p = w.data<float>() + o * per;
      for (int64_t k = 0; k < per; ++k) p[k] = static_cast<float>(p[k] * scale);
    } else {
      for (int64_t k = 0; k < per; ++k) set_element_from_double(w, o * per + k, element_as_double(w, o * per + k) * scale);
    }
  }
  return {w, b};
}

std::vector<int> values_needed_outside(const GraphAnalysis& g, const Partition& part) {
  std::set<size_t> inside(part.nodes.begin(), part.nodes.end());
  std::set<int> needed;
  for (size_t n : part.nodes) {
    for (int v : g.nodes[n].tensor_outputs) {
      if (g.graph_outputs.count(v)) needed.insert(v);
      for (size_t u : g.users[v])
        if (!inside.count(u)) needed.insert(v);
    }
  }
  // In production order (node order, then output order).
  std::vector<int> outs;
  for (size_t n : part.nodes)
    for (int v : g.nodes[n].tensor_outputs)
      if (needed.count(v)) outs.push_back(v);
  return outs;
}

LoweredEngine lower(const GraphAnalysis& g, const Partition& part, const std::string& engine_name,
                    const std::vector<int>& outputs, const std::vector<int>& fixed_inputs) {
  const std::set<int> needed_outside(outputs.begin(), outputs.end());
  LoweredEngine le;
  cpu::EngineGraph& eg = le.graph;
  eg.name = engine_name;
  eg.ranges = g.ranges;
  std::set<size_t> inside(part.nodes.begin(), part.nodes.end());
  std::map<int, int> local;  // global id -> local id
  std::map<int, int> alias;  // identity output -> its input (global ids)
  auto resolve = [&](int gid) {
    while (alias.count(gid)) gid = alias.at(gid);
    return gid;
  };
  auto local_of = [&](int gid) {
    auto it = local.find(gid);
    if (it != local.end()) return it->second;
    int lid = static_cast<int>(eg.values.size());
    eg.values.push_back(g.values.at(gid));
    local[gid] = lid;
    return lid;
  };
  std::set<int> produced;  // global ids produced inside (after alias resolution)
  auto use = [&](int gid) {
    gid = resolve(gid);
    if (!produced.count(gid) && !g.is_constant(gid)) {
      int lid = local_of(gid);
      if (std::find(eg.inputs.begin(), eg.inputs.end(), lid) == eg.inputs.end()) {
        eg.inputs.push_back(lid);
        le.input_names.push_back(g.values[gid].name);
      }
    }
    return local_of(gid);
  };
  std::map<int, size_t> conv_of;  // local output id -> index of the conv2d op producing it
  for (int v : fixed_inputs) {
    int lid = local_of(v);
    eg.inputs.push_back(lid);
    le.input_names.push_back(g.values[v].name);
  }

  const ir::Graph& gr = g.model->program.graph_module.graph;
  for (size_t n : part.nodes) {
    const NodeInfo& info = g.nodes[n];
    for (int v : info.tensor_inputs)
      if (g.archive_constants.count(v)) le.absorbed_constants.insert(v);
    switch (info.kind) {
      case NodeKind::kConstant: {
        bool needed = std::any_of(info.tensor_outputs.begin(), info.tensor_outputs.end(),
                                  [&](int v) { return needed_outside.count(v) > 0; });
        if (!needed) break;
        cpu::FusedOp op = make_reference_op(g, gr.nodes[n], info.target, info.tensor_outputs);
        for (int& v : op.outputs) {
          produced.insert(v);
          v = local_of(v);
        }
        eg.ops.push_back(std::move(op));
        break;
      }
      case NodeKind::kIdentity: alias[info.op.outputs[0]] = resolve(info.op.inputs[0]); break;
      case NodeKind::kBatchNorm: {
        int x = resolve(info.bn_input);
        auto it = local.find(x);
        bool fold = it != local.end() && conv_of.count(it->second) && g.users[info.bn_input].size() == 1 &&
                    !needed_outside.count(info.bn_input);
        if (fold) {
          const size_t conv_index = conv_of.at(it->second);
          cpu::FusedOp& conv = eg.ops[conv_index];
          Tensor bias = conv.constants.size() > 1 ? conv.constants[1] : Tensor();
          auto [w, b] = fold_batch_norm(conv.constants[0], bias, info.bn_params[0], info.bn_params[1],
                                        info.bn_params[2], info.bn_params[3], info.bn_eps);
          conv.constants = {w, b};
          int out = info.tensor_outputs[0];
          produced.insert(out);
          conv.outputs[0] = local_of(out);
          conv.name += "+" + info.name;
          conv_of.erase(it->second);
          conv_of[conv.outputs[0]] = conv_index;
          break;
        }
        [[fallthrough]];
      }
      case NodeKind::kFused: {
        cpu::FusedOp op = info.op;
        EMBER_CHECK(!op.op.empty(), ErrorCode::kUnsupported, g.source, ": node '", info.name, "' (", info.target,
                    ") cannot be built outside the fusion it was partitioned for");
        if (op.op == "reference") {
          // Re-derive against the folded constants of this engine (ids are global here).
          op = make_reference_op(g, gr.nodes[n], info.op.attrs.at("target").get<std::string>(), info.tensor_outputs);
          for (int& v : op.inputs) v = use(v);
          remap_json(op.attrs["args"], [&](int gid) { return local_of(resolve(gid)); });
        } else {
          for (int& v : op.inputs) v = use(v);
        }
        for (int& v : op.outputs) {
          produced.insert(v);
          v = local_of(v);
        }
        op.name = info.name;
        if (op.op == "conv2d") conv_of[op.outputs[0]] = eg.ops.size();
        eg.ops.push_back(std::move(op));
        break;
      }
      case NodeKind::kFallback: fail(ErrorCode::kInternal, g.source, ": node '", info.name, "' is not supported");
    }
  }
  // Outputs in the order given; copies where an output is an engine input, a constant, or
  // already an output (identities made them the same value).
  const std::vector<int>& outs = outputs;
  for (int v : outs) {
    int src = resolve(v);
    bool copy = !produced.count(src) ||
                std::find(eg.outputs.begin(), eg.outputs.end(), local.count(src) ? local.at(src) : -1) != eg.outputs.end();
    int lid;
    if (copy) {
      cpu::FusedOp op;
      op.op = "reference";
      op.name = cat(g.values[v].name, "_copy");
      op.attrs["target"] = "torch.ops.aten.clone.default";
      std::string ref;
      if (g.is_constant(src)) {
        op.constants.push_back(g.constants.at(src));
        ref = "$0";
      } else {
        int in = use(src);
        op.inputs = {in};
        ref = cat("%", in);
      }
      op.attrs["args"] = nlohmann::json::array({{{"name", "self"}, {"arg", {{"as_tensor", {{"name", ref}}}}}}});
      cpu::EngineValue ev = g.values.at(v);
      lid = static_cast<int>(eg.values.size());
      eg.values.push_back(ev);
      op.outputs = {lid};
      eg.ops.push_back(std::move(op));
    } else {
      lid = local.at(src);
      eg.values[lid].name = g.values[v].name;
    }
    eg.outputs.push_back(lid);
    le.output_names.push_back(g.values[v].name);
  }
  place_residual_adds(eg);
  fuse(eg);
  eliminate_dead_code(eg);
  for (const auto& op : eg.ops) {
    std::string d = op.op == "reference" ? op.attrs.value("target", std::string("reference")) : op.op;
    for (const auto& p : op.post_ops) d += "+" + post_op_name(p);
    le.fused_descriptions.push_back(cat(op.name, ": ", d));
  }
  return le;
}

}  // namespace ember::compiler
