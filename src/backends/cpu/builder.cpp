// build_engine: chooses kernels, layouts and tactics for an EngineGraph and writes the
// engine (meta + plan + weights). See docs/cpu-backend.md.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <set>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/exec.h"
#include "backends/cpu/plan.h"
#include "backends/cpu/winograd.h"
#include "ember/error.h"
#include "ember/log.h"
#include "ember/version.h"
#include "ops/arg_convert.h"

namespace ember::cpu {

using dnnl::memory;
using Json = nlohmann::json;

namespace {

// Tactic timing: each candidate is measured for at least this long per round (quick kernels
// run more than BuildOptions::timing_iterations times), and a candidate this many times
// slower than the best after a round is not timed again.
constexpr double kMinTimedMs = 10.0;
constexpr double kHopelessFactor = 3.0;

// Data to time kernels on: zeros, and uniform floats in [-1, 1) where the dtype is float32.
void fill_timing_data(void* data, int64_t bytes, DType dtype, std::mt19937& rng) {
  std::memset(data, 0, static_cast<size_t>(bytes));
  if (dtype != DType::kFloat32) return;
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  float* f = static_cast<float*>(data);
  for (int64_t i = 0; i < bytes / 4; ++i) f[i] = dist(rng);
}

// Restores the calling thread's OpenMP thread count on scope exit.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads) : saved_(omp_get_max_threads()) {
    if (threads > 0) omp_set_num_threads(threads);
  }
  ~ScopedThreads() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

std::vector<int64_t> int_list(const Json& attrs, const char* key, std::vector<int64_t> dflt, const std::string& op) {
  if (!attrs.contains(key) || attrs[key].is_null()) return dflt;
  const Json& v = attrs[key];
  if (v.is_number_integer()) return std::vector<int64_t>(dflt.empty() ? 1 : dflt.size(), v.get<int64_t>());
  EMBER_CHECK(v.is_array(), ErrorCode::kInvalidArgument, op, ": attribute '", key, "' must be an int list");
  std::vector<int64_t> out;
  for (const Json& x : v) {
    EMBER_CHECK(x.is_number_integer(), ErrorCode::kInvalidArgument, op, ": attribute '", key, "' must be an int list");
    out.push_back(x.get<int64_t>());
  }
  if (out.size() == 1 && dflt.size() > 1) out.assign(dflt.size(), out[0]);
  return out;
}
int64_t int_attr(const Json& attrs, const char* key, int64_t dflt) {
  return attrs.contains(key) && attrs[key].is_number_integer() ? attrs[key].get<int64_t>() : dflt;
}
double float_attr(const Json& attrs, const char* key, double dflt) {
  return attrs.contains(key) && attrs[key].is_number() ? attrs[key].get<double>() : dflt;
}
bool bool_attr(const Json& attrs, const char* key, bool dflt) {
  return attrs.contains(key) && attrs[key].is_boolean() ? attrs[key].get<bool>() : dflt;
}
std::string str_attr(const Json& attrs, const char* key, const std::string& dflt) {
  return attrs.contains(key) && attrs[key].is_string() ? attrs[key].get<std::string>() : dflt;
}

std::string post_op_kind(PostOp::Kind k) {
  switch (k) {
    case PostOp::Kind::kEltwise: return "eltwise";
    case PostOp::Kind::kSum: return "sum";
    case PostOp::Kind::kBinaryAdd: return "binary_add";
    case PostOp::Kind::kBinaryMul: return "binary_mul";
  }
  return "?";
}

// Reference targets of eltwise algorithms.
Json eltwise_ref_call(const std::string& alg, float alpha, float beta, std::string* target) {
  Json args = Json::array();
  auto self = Json{{"name", "self"}, {"arg", {{"as_tensor", {{"name", "%IN"}}}}}};
  args.push_back(self);
  static const std::map<std::string, std::string> kSimple = {
      {"relu", "relu"},   {"silu", "silu"},           {"sigmoid", "sigmoid"}, {"tanh", "tanh"},
      {"hardswish", "hardswish"}, {"hardsigmoid", "hardsigmoid"}, {"abs", "abs"}, {"exp", "exp"}, {"sqrt", "sqrt"}};
  if (auto it = kSimple.find(alg); it != kSimple.end()) {
    *target = "torch.ops.aten." + it->second + ".default";
  } else if (alg == "gelu_erf" || alg == "gelu_tanh") {
    *target = "torch.ops.aten.gelu.default";
    args.push_back({{"name", "approximate"}, {"arg", {{"as_string", alg == "gelu_tanh" ? "tanh" : "none"}}}});
  } else if (alg == "clip") {
    *target = "torch.ops.aten.clamp.default";
    args.push_back({{"name", "min"}, {"arg", {{"as_float", alpha}}}});
    args.push_back({{"name", "max"}, {"arg", {{"as_float", beta}}}});
  } else {
    fail(ErrorCode::kUnsupported, "eltwise algorithm '", alg, "' has no reference kernel");
  }
  return args;
}

// Replaces "%IN"-style placeholders or "%<graph id>" names in args with plan names.
void rewrite_tensor_names(Json& j, const std::function<std::string(const std::string&)>& fn) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if ((it.key() == "as_tensor") && it.value().is_object() && it.value().contains("name") &&
          it.value()["name"].is_string()) {
        it.value()["name"] = fn(it.value()["name"].get<std::string>());
      } else if (it.key() == "as_tensors" && it.value().is_array()) {
        for (Json& t : it.value())
          if (t.is_object() && t.contains("name") && t["name"].is_string()) t["name"] = fn(t["name"].get<std::string>());
      } else {
        rewrite_tensor_names(it.value(), fn);
      }
    }
  } else if (j.is_array()) {
    for (Json& x : j) rewrite_tensor_names(x, fn);
  }
}

// BuildOptions::force_tactics plus the entries of EMBER_FORCE_TACTICS ("key=tactic,key=tactic")
// for keys the options do not give.
std::map<std::string, std::string> forced_tactics(const BuildOptions& o) {
  std::map<std::string, std::string> out = o.force_tactics;
  const char* env = std::getenv("EMBER_FORCE_TACTICS");
  if (!env) return out;
  auto trim = [](std::string x) {
    size_t b = x.find_first_not_of(" \t"), e = x.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : x.substr(b, e - b + 1);
  };
  std::string text = env;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = trim(text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    pos = comma == std::string::npos ? text.size() + 1 : comma + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    EMBER_CHECK(eq != std::string::npos && !trim(item.substr(0, eq)).empty() && !trim(item.substr(eq + 1)).empty(),
                ErrorCode::kInvalidArgument, "EMBER_FORCE_TACTICS: entry '", item,
                "' must be <op kind or op name>=<tactic>, e.g. conv2d=reference");
    out.emplace(trim(item.substr(0, eq)), trim(item.substr(eq + 1)));
  }
  return out;
}

using OpSurvey = TacticSurvey;

class EngineBuilder {
 public:
  EngineBuilder(const EngineGraph& g, const BuildOptions& o) : g_(g), opt_(o), forced_(forced_tactics(o)) {}

  // Pass 1 of a timed build: time every candidate, keep the fastest whatever it stores, and
  // record what was found in *out (one entry per op); build() then returns no bytes.
  void survey_into(std::vector<OpSurvey>* out) { survey_out_ = out; }
  // Pass 2: emit decisions[i] for the i-th op, reporting the survey's timings; a non-empty
  // notes[i] says why the decision is not the survey's (and replaces the tie remark).
  void follow(const std::vector<OpSurvey>* survey, const std::vector<std::string>* decisions,
              const std::vector<std::string>* notes = nullptr) {
    survey_in_ = survey;
    decisions_ = decisions;
    notes_ = notes;
  }
  int64_t growth_budget() const { return growth_budget_; }

  std::shared_ptr<Storage> build();

 private:
  // ------------------------------------------------------------ values and layouts
  int add_value(const std::string& name, int gv, DType dtype, const memory::desc* desc) {
    PlanValue v;
    v.name = name;
    v.dtype = dtype;
    v.dims = gdims_[gv];
    v.symbols = g_.values[gv].symbols;
    v.symbols.resize(v.dims.size());
    v.has_desc = to_dnnl(dtype) != memory::data_type::undef;
    if (v.has_desc) v.desc = desc ? *desc : plain_desc(v.dims, dtype);
    plan_.values.push_back(std::move(v));
    value_graph_.push_back(gv);
    return static_cast<int>(plan_.values.size()) - 1;
  }
  const memory::desc& desc_of(int pv) const { return plan_.values[pv].desc; }
  bool f32(int gv) const { return g_.values[gv].dtype == DType::kFloat32; }
  memory::desc plain(int gv) const { return plain_desc(gdims_[gv], g_.values[gv].dtype); }

  // The plan value holding graph value `gv` in layout `d`; emits a reorder when needed.
  int want(int gv, const memory::desc& d) {
    int cur = current_.at(gv);
    EMBER_CHECK(cur >= 0, ErrorCode::kInvalidArgument, g_.name, ": value ", gv, " ('", g_.values[gv].name,
                "') is used before any op produces it");
    if (!plan_.values[cur].has_desc || desc_of(cur) == d) return cur;
    for (int alt : copies_[gv])
      if (desc_of(alt) == d) return alt;
    int nv = add_value(cat(g_.values[gv].name, "@", desc_str(d)), gv, g_.values[gv].dtype, &d);
    PlanStep s;
    s.kind = "reorder";
    s.name = cat("reorder ", g_.values[gv].name, " ", desc_str(desc_of(cur)), "->", desc_str(d));
    s.inputs = {cur};
    s.outputs = {nv};
    plan_.steps.push_back(std::move(s));
    copies_[gv].push_back(nv);
    return nv;
  }
  int want_plain(int gv) {
    int cur = current_.at(gv);
    if (cur >= 0 && !plan_.values[cur].has_desc) return cur;
    return want(gv, plain(gv));
  }
  int produce(int gv, const memory::desc* d) {
    int pv = add_value(g_.values[gv].name, gv, g_.values[gv].dtype, d);
    current_[gv] = pv;
    copies_[gv].clear();
    return pv;
  }

  // ------------------------------------------------------------ weights
  int add_blob(const Tensor& src_plain, const memory::desc& src_desc, const memory::desc& dst_desc) {
    Tensor src = src_plain.contiguous();
    PlanBlob b;
    b.dtype = src.dtype();
    b.dims = Shape(dst_desc.data.dims, dst_desc.data.dims + dst_desc.data.ndims);
    b.desc = dst_desc;
    b.size = static_cast<int64_t>(dst_desc.get_size());
    auto data = Storage::allocate(std::max<size_t>(b.size, 1));
    std::memset(data->data(), 0, b.size);
    const dnnl::engine& eng = cpu_engine();
    memory s(src_desc, eng, src.raw_data()), d(dst_desc, eng, data->data());
    dnnl::stream stream(eng);
    dnnl::reorder(s, d).execute(stream, s, d);
    stream.wait();
    return push_blob(std::move(b), std::move(data));
  }
  int add_plain_blob(const Tensor& t) {
    Tensor src = t.contiguous();
    PlanBlob b;
    b.dtype = src.dtype();
    b.dims = src.sizes();
    b.has_desc = to_dnnl(b.dtype) != memory::data_type::undef;
    if (b.has_desc) b.desc = plain_desc(b.dims, b.dtype);
    b.size = static_cast<int64_t>(src.nbytes());
    auto data = Storage::allocate(std::max<size_t>(b.size, 1));
    if (b.size) std::memcpy(data->data(), src.raw_data(), b.size);
    return push_blob(std::move(b), std::move(data));
  }
  int push_blob(PlanBlob b, std::shared_ptr<Storage> data) {
    plan_.blobs.push_back(std::move(b));
    blob_data_.push_back(std::move(data));
    return static_cast<int>(plan_.blobs.size()) - 1;
  }

  // ------------------------------------------------------------ candidates and timing
  struct Snapshot {
    size_t values, blobs, steps;
    std::vector<int> current;
    std::vector<std::vector<int>> copies;
  };
  Snapshot snapshot() const {
    return {plan_.values.size(), plan_.blobs.size(), plan_.steps.size(), current_, copies_};
  }
  void rollback(const Snapshot& s) {
    plan_.values.resize(s.values);
    value_graph_.resize(s.values);
    plan_.blobs.resize(s.blobs);
    blob_data_.resize(s.blobs);
    plan_.steps.resize(s.steps);
    current_ = s.current;
    copies_ = s.copies;
  }

  // Creates the kernels of steps [first, end) for the build shape (throws if oneDNN refuses).
  std::vector<std::unique_ptr<StepExec>> instantiate(size_t first) {
    ExecEnv env = build_env();
    std::vector<std::unique_ptr<StepExec>> out;
    for (size_t k = first; k < plan_.steps.size(); ++k) out.push_back(make_step_exec(plan_.steps[k], env));
    env_ = std::move(env);
    return out;
  }
  ExecEnv build_env() const {
    ExecEnv env;
    env.plan = &plan_;
    env.symbols = plan_.build_symbols;
    for (const PlanValue& v : plan_.values) {
      env.dims.push_back(v.dims);
      env.descs.push_back(v.has_desc ? v.desc : memory::desc());
    }
    env.blob_ptr = [this](int b) -> const uint8_t* { return blob_data_.at(b)->data(); };
    return env;
  }

  // Fastest of `timing_iterations` runs (milliseconds) of steps [first, end) on random data;
  // `create_ms` receives what creating their kernels took. That is measured with oneDNN's
  // primitive cache emptied first, as a load finds it: another candidate or op timed before
  // may have created the same primitive (e.g. "blocked" when oneDNN's first choice is the
  // implementation another candidate names), which would make it look free to create.
  double time_steps(size_t first, std::string* impl, double* create_ms = nullptr) {
    if (create_ms) {
      const int capacity = dnnl::get_primitive_cache_capacity();
      dnnl::set_primitive_cache_capacity(0);
      dnnl::set_primitive_cache_capacity(capacity);
    }
    const auto t_create = std::chrono::steady_clock::now();
    auto execs = instantiate(first);
    if (create_ms)
      *create_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_create).count();
    if (impl) {
      impl->clear();
      for (auto& e : execs) *impl = e->impl;  // the last step is the op itself
    }
    std::vector<std::shared_ptr<Storage>> buffers;
    RunState st;
    st.ptr.assign(plan_.values.size(), nullptr);
    std::mt19937 rng(1234);
    size_t scratch = 0;
    for (size_t k = first; k < plan_.steps.size(); ++k) {
      scratch = std::max(scratch, execs[k - first]->scratch_bytes);
      const PlanStep& s = plan_.steps[k];
      std::vector<int> vals = s.inputs;
      vals.insert(vals.end(), s.outputs.begin(), s.outputs.end());
      for (const PlanPostOp& p : s.post_ops)
        if (p.value >= 0) vals.push_back(p.value);
      for (int v : vals) {
        if (st.ptr[v]) continue;
        const PlanValue& pv = plan_.values[v];
        int64_t bytes = value_bytes(pv, pv.dims, pv.desc);
        auto buf = Storage::allocate(std::max<int64_t>(bytes, 1));
        fill_timing_data(buf->data(), bytes, pv.dtype, rng);
        st.ptr[v] = buf->data();
        buffers.push_back(std::move(buf));
      }
    }
    auto scratch_buf = Storage::allocate(std::max<size_t>(scratch, 1));
    st.scratch = scratch_buf->data();
    dnnl::stream stream(cpu_engine());
    st.stream = &stream;
    auto once = [&] {
      for (auto& e : execs) e->run(st);
      stream.wait();
    };
    once();  // warm-up
    std::vector<double> ms;
    // At least `timing_iterations` runs and, for quick kernels, more, until kMinTimedMs of
    // measurement (at most 8x the iterations): five runs of a 0.2 ms kernel are one
    // scheduler tick, too few for a clean minimum on a busy machine.
    const int iters = std::max(1, opt_.timing_iterations);
    double total = 0;
    for (int i = 0; i < iters || (total < kMinTimedMs && i < 8 * iters); ++i) {
      auto t0 = std::chrono::steady_clock::now();
      once();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      total += ms.back();
      if (ms.back() > 200) break;  // hopeless candidate (e.g. a reference kernel on a big conv)
    }
    // The minimum: interference from other processes only ever adds time.
    return *std::min_element(ms.begin(), ms.end());
  }

  // What a tactic decision depends on: the op (kind, attributes, forced tactic, the shapes and
  // dtypes of its inputs, outputs, constants and post-op operands, post-op parameters) and
  // the layouts its inputs are in now. Not the constants' values: no candidate depends on them.
  std::string signature(const FusedOp& op, const std::string& forced) const {
    std::string key = cat(op.op, '|', op.attrs.dump(), '|', forced);
    auto bits = [](float f) { return std::bit_cast<uint32_t>(f); };
    auto value = [&](int gv) {
      if (gv < 0 || gv >= static_cast<int>(gdims_.size())) return key += "|?", void();
      key += cat('|', shape_str(gdims_[gv]), ':', static_cast<int>(g_.values[gv].dtype));
      const int pv = gv < static_cast<int>(current_.size()) ? current_[gv] : -1;
      // The layout as the plan stores it: what a load recreates the value from.
      if (pv >= 0 && plan_.values[pv].has_desc) key += cat('@', desc_to_json(desc_of(pv)).dump());
    };
    for (int v : op.inputs) value(v);
    key += "|->";
    for (int v : op.outputs) value(v);
    for (const Tensor& t : op.constants)
      key += t.defined() ? cat("|c", shape_str(t.sizes()), ':', static_cast<int>(t.dtype())) : std::string("|c-");
    for (const PostOp& p : op.post_ops) {
      key += cat("|p", post_op_kind(p.kind), ':', p.alg, ':', bits(p.alpha), ':', bits(p.beta), ':', bits(p.scale));
      if (p.kind != PostOp::Kind::kEltwise) value(p.value);
    }
    return key;
  }

  // Tries each candidate emitter; keeps the fastest (or the first that works when timing is off).
  using Emitter = std::function<void()>;
  void choose(const FusedOp& op, const std::vector<std::pair<std::string, Emitter>>& all_candidates) {
    std::vector<std::pair<std::string, Emitter>> candidates = all_candidates;
    std::string forced;
    if (auto it = forced_.find(op.name); !op.name.empty() && it != forced_.end()) forced = it->second;
    else if (auto k = forced_.find(op.op); k != forced_.end()) forced = k->second;
    if (!forced.empty()) {
      std::string names;
      candidates.clear();
      for (const auto& c : all_candidates) {
        names += cat(names.empty() ? "" : ", ", c.first);
        if (c.first == forced) candidates.push_back(c);
      }
      EMBER_CHECK(!candidates.empty(), ErrorCode::kUnsupported, g_.name, ": op '", op.name, "' (", op.op,
                  "): forced tactic '", forced, "' is not one of its tactics (", names, ")");
    }
    const size_t index = op_index_++;
    if (index >= chosen_ops_.size()) chosen_ops_.push_back(op.name.empty() ? op.op : op.name);
    const OpSurvey* surveyed = nullptr;  // pass 2: this op's survey; only the decided candidate is emitted
    if (decisions_ && !redeciding_ && index < decisions_->size() && index < survey_in_->size()) {
      for (const auto& c : candidates)
        if (c.first == (*decisions_)[index]) {
          surveyed = &(*survey_in_)[index];
          candidates = {c};
          break;
        }
    }
    // Pass 1: an op with the signature of an earlier op repeats that op's survey and pick
    // instead of timing again: both then get one decision (allocate_weight_growth), their
    // kernels are the same, and a load creates them once.
    std::string signature_key;
    const OpSurvey* repeat = nullptr;
    std::string repeat_pick;
    int64_t repeat_of = -1;
    if (survey_out_ && opt_.time_tactics && candidates.size() > 1) {
      signature_key = signature(op, forced);
      if (auto it = signatures_.find(signature_key); it != signatures_.end()) {
        repeat_of = static_cast<int64_t>(it->second.first);
        repeat = &(*survey_out_)[it->second.first];
        repeat_pick = it->second.second;
      }
    }
    Snapshot base = snapshot();
    std::string best;
    double best_ms = 0;
    Json timings = Json::object();
    std::vector<std::string> errors;
    // Bytes a candidate adds to the stored weights beyond the op's own constants (e.g. the
    // Winograd kernel's transformed filters are 16/9 of the filters): candidates are kept
    // within the engine's weight growth budget (untimed builds: spent in graph order; timed
    // builds: allocated over the whole graph between pass 1 and pass 2, see build_engine).
    int64_t own_bytes = 0;
    for (const Tensor& t : op.constants)
      if (t.defined()) own_bytes += t.nbytes();
    auto growth_of_emitted = [&] {
      int64_t added = 0;
      for (size_t b = base.blobs; b < plan_.blobs.size(); ++b) added += plan_.blobs[b].size;
      return std::max<int64_t>(0, added - own_bytes);
    };
    // Passes 1 and 2 of a timed build ignore the budget here: build_engine allocates it over
    // the whole graph between them.
    const int64_t budget_left = survey_out_ || surveyed ? std::numeric_limits<int64_t>::max()
                                                        : growth_budget_ - growth_spent_;
    std::map<std::string, int64_t> growth;
    // Timed builds, per candidate: best time with ties collapsed (collapse_ties) and kernel
    // creation time, from a candidate's first round (later rounds find its kernels in oneDNN's
    // primitive cache, a load does not).
    std::vector<double> tied, create;
    std::vector<std::string> over_budget;
    std::string fallback;  // untimed builds: the first candidate that works, when none fits the budget
    if (repeat != nullptr) {
      best = repeat_pick;
      timings = repeat->timings;
      for (size_t c = 0; c < repeat->names.size(); ++c) growth[repeat->names[c]] = repeat->growth[c];
    } else if (opt_.time_tactics && candidates.size() > 1) {
      // Timed in rounds, candidates interleaved (each round starts with the next candidate),
      // keeping each candidate's minimum over the rounds: a burst of load from other
      // processes then hits one round of one candidate, not all runs of it. Candidates that
      // fail are dropped; so are, after the first round, those more than kHopelessFactor x
      // slower than the best (they cannot win, and timing them again only costs time).
      const size_t n = candidates.size();
      std::vector<double> best_of(n, std::numeric_limits<double>::infinity());
      create.assign(n, std::numeric_limits<double>::infinity());
      std::vector<bool> live(n, true);
      const int rounds = std::max(1, opt_.timing_rounds);
      for (int round = 0; round < rounds; ++round) {
        for (size_t i = 0; i < n; ++i) {
          const size_t c = (i + static_cast<size_t>(round)) % n;
          if (!live[c]) continue;
          try {
            candidates[c].second();
            growth[candidates[c].first] = growth_of_emitted();
            double create_ms = 0;
            best_of[c] = std::min(best_of[c], time_steps(base.steps, nullptr, round == 0 ? &create_ms : nullptr));
            if (round == 0) create[c] = create_ms;
          } catch (const std::exception& e) {
            errors.push_back(cat(candidates[c].first, ": ", e.what()));
            live[c] = false;
          }
          rollback(base);
        }
        double fastest = std::numeric_limits<double>::infinity();
        for (size_t c = 0; c < n; ++c)
          if (live[c]) fastest = std::min(fastest, best_of[c]);
        for (size_t c = 0; c < n; ++c)
          if (live[c] && best_of[c] > kHopelessFactor * fastest) live[c] = false;
      }
      // The fastest within the budget, ties (kTacticTieFraction) going to the cheapest to
      // create; when none fits, the one that grows the weights least.
      tied = collapse_ties(best_of, kTacticTieFraction);
      double best_create = 0;
      int64_t least = std::numeric_limits<int64_t>::max();
      std::string least_name;
      for (size_t c = 0; c < n; ++c) {
        if (best_of[c] == std::numeric_limits<double>::infinity()) continue;  // failed
        const std::string& name = candidates[c].first;
        timings[name] = best_of[c];
        if (growth[name] < least) least = growth[name], least_name = name;
        if (growth[name] > budget_left) {
          over_budget.push_back(name);
          continue;
        }
        if (best.empty() || tied[c] < best_ms || (tied[c] == best_ms && create[c] < best_create))
          best = name, best_ms = tied[c], best_create = create[c];
      }
      if (best.empty()) best = least_name;
    } else {
      for (const auto& [name, emit] : candidates) {
        try {
          emit();
          growth[name] = growth_of_emitted();
          instantiate(base.steps);  // must be creatable
          if (growth[name] > budget_left) {
            over_budget.push_back(name);
            if (fallback.empty()) fallback = name;
            rollback(base);
            continue;
          }
          best = name;
          rollback(base);
          break;
        } catch (const std::exception& e) {
          errors.push_back(cat(name, ": ", e.what()));
        }
        rollback(base);
      }
    }
    if (best.empty()) best = fallback;
    if (best.empty() && surveyed) {
      // The decided candidate failed in pass 2 (its inputs in other layouts than in pass 1):
      // choose among all candidates again, within what is left of the budget.
      redeciding_ = true;
      --op_index_;
      choose(op, all_candidates);
      redeciding_ = false;
      return;
    }
    if (best.empty()) {
      std::string all;
      for (const auto& e : errors) all += "\n  " + e;
      fail(ErrorCode::kUnsupported, g_.name, ": op '", op.name, "' (", op.op, "): no implementation fits:", all);
    }
    if (survey_out_ && repeat != nullptr) {
      OpSurvey sv = *repeat;
      sv.shared_with = repeat_of;
      survey_out_->push_back(std::move(sv));
    } else if (survey_out_) {
      if (!signature_key.empty()) signatures_.emplace(signature_key, std::make_pair(survey_out_->size(), best));
      OpSurvey sv;
      for (size_t c = 0; c < candidates.size(); ++c) {
        const std::string& name = candidates[c].first;
        const bool timed = timings.contains(name);
        if (!timed && candidates.size() > 1) continue;  // failed
        sv.names.push_back(name);
        sv.ms.push_back(timed ? tied[c] : 0.0);
        sv.growth.push_back(growth[name]);
        sv.create_ms.push_back(timed ? create[c] : 0.0);
      }
      sv.timings = timings;
      survey_out_->push_back(std::move(sv));
    }
    if (surveyed) {  // report what pass 1 measured; left out = faster candidates the budget did not admit
      timings = surveyed->timings;
      over_budget.clear();
      for (size_t c = 0; c < surveyed->names.size(); ++c) {
        growth[surveyed->names[c]] = surveyed->growth[c];
        if (timings.contains(best) && surveyed->ms[c] < timings[best].get<double>() &&
            surveyed->growth[c] > growth[best])
          over_budget.push_back(surveyed->names[c]);
      }
    }
    for (const auto& [name, emit] : candidates)
      if (name == best) emit();
    growth_spent_ += growth[best];
    // Record the decision on the op's own step (the last one emitted).
    PlanStep& s = plan_.steps.back();
    s.tactic = best;
    s.timings = timings;
    auto execs = instantiate(plan_.steps.size() - 1);
    s.impl = execs.back()->impl;
    if (survey_out_) return;  // pass 1 reports nothing: its picks are not final
    const size_t n_tactics = surveyed ? surveyed->names.size() : candidates.size();
    std::string msg = cat(g_.name, ": ", op.op, " ", op.name, ": ", n_tactics, " tactic",
                          n_tactics == 1 ? "" : "s", ", picked ", best, " (", s.impl, ")",
                          forced.empty() ? "" : " [forced]");
    if (surveyed && surveyed->shared_with >= 0 && static_cast<size_t>(surveyed->shared_with) < chosen_ops_.size())
      msg += cat(" (same signature as ", chosen_ops_[static_cast<size_t>(surveyed->shared_with)], ", decided once)");
    if (growth[best] > 0) msg += cat(" (+", growth[best], " weight bytes)");
    if (!over_budget.empty() && !(over_budget.size() == 1 && over_budget[0] == best)) {
      msg += " (over the weight growth budget:";
      for (const std::string& name : over_budget)
        if (name != best) msg += cat(" ", name, " +", growth[name], " bytes");
      msg += ")";
    }
    // A candidate measured faster that stores no more than the pick lost a tie on kernel
    // creation cost (kTacticTieFraction).
    std::string tie_with;
    const bool noted = surveyed && notes_ && index < notes_->size() && !(*notes_)[index].empty();
    if (noted) msg += cat(" (", (*notes_)[index], ")");
    if (timings.contains(best) && !noted)
      for (auto it = timings.begin(); it != timings.end(); ++it)
        if (it.value().get<double>() < timings[best].get<double>() && growth[it.key()] <= growth[best] &&
            (tie_with.empty() || it.value().get<double>() < timings[tie_with].get<double>()))
          tie_with = it.key();
    if (!tie_with.empty())
      msg += cat(" (ties with ", tie_with, " within ", kTacticTieFraction * 100, " %, cheaper to create)");
    if (!timings.empty()) {
      msg += " [";
      bool first = true;
      for (auto it = timings.begin(); it != timings.end(); ++it, first = false)
        msg += cat(first ? "" : ", ", it.key(), " ", it.value().get<double>(), " ms");
      msg += "]";
    }
    if (opt_.progress) opt_.progress(msg);
    log_debug(msg);
  }

  // ------------------------------------------------------------ post-ops
  std::vector<PlanPostOp> plan_post_ops(const FusedOp& op, const memory::desc* dst_desc, bool plain_operands) {
    std::vector<PlanPostOp> out;
    for (const PostOp& p : op.post_ops) {
      PlanPostOp q;
      q.kind = post_op_kind(p.kind);
      q.alg = p.alg;
      q.alpha = p.alpha;
      q.beta = p.beta;
      q.scale = p.scale;
      if (p.kind != PostOp::Kind::kEltwise) {
        EMBER_CHECK(p.value >= 0 && p.value < static_cast<int>(g_.values.size()), ErrorCode::kInvalidArgument, g_.name,
                    ": op '", op.name, "': post-op operand ", p.value, " is not a value");
        if (p.kind == PostOp::Kind::kSum && dst_desc && !plain_operands)
          q.value = want(p.value, *dst_desc);
        else
          q.value = want_plain(p.value);
      }
      out.push_back(std::move(q));
    }
    return out;
  }

  PlanStep ref_step(const FusedOp& op, const std::string& target, Json args, const std::vector<int>& graph_inputs,
                    const std::vector<Tensor>& constants) {
    PlanStep s;
    s.kind = "reference";
    s.name = op.name.empty() ? op.op : op.name;
    s.target = target;
    ops::require_op(target);
    std::map<int, int> pid;
    for (int gv : graph_inputs) pid[gv] = want_plain(gv);
    for (const auto& [gv, p] : pid) s.inputs.push_back(p);
    rewrite_tensor_names(args, [&](const std::string& name) -> std::string {
      if (name.size() > 1 && name[0] == '%') {
        int gv = std::stoi(name.substr(1));
        auto it = pid.find(gv);
        EMBER_CHECK(it != pid.end(), ErrorCode::kInvalidArgument, g_.name, ": op '", s.name, "' names value ", name,
                    " that is not among its inputs");
        return cat("%", it->second);
      }
      return name;
    });
    s.args = std::move(args);
    for (const Tensor& c : constants) s.blobs.push_back(add_plain_blob(c));
    return s;
  }
  void finish_ref(const FusedOp& op, PlanStep s) {
    s.post_ops = plan_post_ops(op, nullptr, true);
    for (int out : op.outputs) s.outputs.push_back(produce(out, nullptr));
    plan_.steps.push_back(std::move(s));
  }
  static Json targ(const std::string& name, Json arg) { return Json{{"name", name}, {"arg", std::move(arg)}}; }
  static Json tensor_arg(const std::string& n) { return Json{{"as_tensor", {{"name", n}}}}; }

  // ------------------------------------------------------------ op emitters
  void emit_op(const FusedOp& op);
  void conv(const FusedOp& op);
  void linear(const FusedOp& op);
  void matmul(const FusedOp& op);
  void pool(const FusedOp& op);
  void eltwise(const FusedOp& op);
  void binary(const FusedOp& op);
  void softmax(const FusedOp& op);
  void layer_norm(const FusedOp& op);
  void reference(const FusedOp& op);
  void check_op(const FusedOp& op);

  void finish_outputs();
  void plan_memory();
  EngineMeta make_meta();

  const EngineGraph& g_;
  const BuildOptions& opt_;
  std::map<std::string, std::string> forced_;  // op name or kind -> tactic (options + EMBER_FORCE_TACTICS)
  int64_t growth_budget_ = 0;  // bytes the stored weights may grow by (BuildOptions::max_weight_growth)
  int64_t growth_spent_ = 0;
  std::vector<OpSurvey>* survey_out_ = nullptr;
  const std::vector<OpSurvey>* survey_in_ = nullptr;
  const std::vector<std::string>* decisions_ = nullptr;
  const std::vector<std::string>* notes_ = nullptr;
  size_t op_index_ = 0;      // choose() calls so far
  std::vector<std::string> chosen_ops_;  // choose() call -> op name (messages)
  // Pass 1: signature() -> (survey index, pick) of the first op that had it.
  std::map<std::string, std::pair<size_t, std::string>> signatures_;
  bool redeciding_ = false;  // pass 2, an op whose decided candidate failed
  Plan plan_;
  std::vector<int> value_graph_;            // plan value -> graph value
  std::vector<Shape> gdims_;                // graph value -> build dims
  std::vector<int> current_;                // graph value -> plan value (latest layout)
  std::vector<std::vector<int>> copies_;    // graph value -> reordered copies
  std::vector<std::shared_ptr<Storage>> blob_data_;
  ExecEnv env_;
};

void EngineBuilder::check_op(const FusedOp& op) {
  const int nv = static_cast<int>(g_.values.size());
  for (int v : op.inputs)
    EMBER_CHECK(v >= 0 && v < nv, ErrorCode::kInvalidArgument, g_.name, ": op '", op.name, "': input ", v,
                " is not a value id");
  for (int v : op.outputs)
    EMBER_CHECK(v >= 0 && v < nv, ErrorCode::kInvalidArgument, g_.name, ": op '", op.name, "': output ", v,
                " is not a value id");
  EMBER_CHECK(!op.outputs.empty(), ErrorCode::kInvalidArgument, g_.name, ": op '", op.name, "' has no output");
}

void EngineBuilder::emit_op(const FusedOp& op) {
  check_op(op);
  auto need_inputs = [&](size_t n) {
    EMBER_CHECK(op.inputs.size() == n, ErrorCode::kInvalidArgument, g_.name, ": op '", op.name, "' (", op.op,
                ") takes ", n, " inputs, found ", op.inputs.size());
  };
  if (op.op == "conv2d") need_inputs(1), conv(op);
  else if (op.op == "linear") need_inputs(1), linear(op);
  else if (op.op == "matmul") need_inputs(2), matmul(op);
  else if (op.op == "max_pool2d" || op.op == "avg_pool2d" || op.op == "adaptive_avg_pool2d") need_inputs(1), pool(op);
  else if (op.op == "eltwise") need_inputs(1), eltwise(op);
  else if (op.op == "binary") need_inputs(2), binary(op);
  else if (op.op == "softmax" || op.op == "log_softmax") need_inputs(1), softmax(op);
  else if (op.op == "layer_norm") need_inputs(1), layer_norm(op);
  else if (op.op == "reference") reference(op);
  else fail(ErrorCode::kUnsupported, g_.name, ": op '", op.name, "': kind '", op.op, "' is not supported by the CPU backend");
}

void EngineBuilder::conv(const FusedOp& op) {
  int x = op.inputs[0], y = op.outputs[0];
  EMBER_CHECK(!op.constants.empty() && op.constants[0].dim() == 4 && gdims_[x].size() == 4, ErrorCode::kInvalidArgument,
              g_.name, ": conv2d '", op.name, "' needs a 4-D input and a 4-D weight constant");
  const Tensor& w = op.constants[0];
  const Tensor* bias = op.constants.size() > 1 && op.constants[1].defined() ? &op.constants[1] : nullptr;
  int64_t groups = int_attr(op.attrs, "groups", 1);
  auto stride = int_list(op.attrs, "stride", {1, 1}, op.name);
  auto pad = int_list(op.attrs, "padding", {0, 0}, op.name);
  auto dil = int_list(op.attrs, "dilation", {1, 1}, op.name);
  EMBER_CHECK(stride.size() == 2 && dil.size() == 2 && (pad.size() == 2 || pad.size() == 4) && groups >= 1,
              ErrorCode::kInvalidArgument, g_.name, ": conv2d '", op.name, "': bad stride/padding/dilation/groups");
  std::vector<int64_t> pl = {pad[0], pad[1]};
  std::vector<int64_t> pr = pad.size() == 4 ? std::vector<int64_t>{pad[2], pad[3]} : pl;
  const Shape& xd = gdims_[x];
  const Shape& yd = gdims_[y];
  int64_t o = w.size(0), kh = w.size(2), kw = w.size(3);
  EMBER_CHECK(o % groups == 0 && xd[1] == w.size(1) * groups, ErrorCode::kInvalidArgument, g_.name, ": conv2d '",
              op.name, "': weight ", shape_str(w.sizes()), " does not fit input ", shape_str(xd), " with groups ", groups);
  (void)kh;
  (void)kw;
  std::vector<int64_t> odil = {dil[0] - 1, dil[1] - 1};
  Shape wdims = groups > 1 ? Shape{groups, o / groups, w.size(1), kh, kw} : Shape{o, w.size(1), kh, kw};
  memory::desc w_plain = plain_desc(wdims, DType::kFloat32);
  bool fp32 = f32(x) && w.dtype() == DType::kFloat32 && (!bias || bias->dtype() == DType::kFloat32);
  bool has_sum = false;
  for (const PostOp& p : op.post_ops) has_sum = has_sum || p.kind == PostOp::Kind::kSum;

  // One convolution step of `kind` from src_d to dst_d; `weights` adds the weights blob;
  // `impl` pins a oneDNN implementation (empty: oneDNN's first choice for the layouts).
  auto emit_step = [&](const char* kind, const memory::desc& src_d, const memory::desc& dst_d,
                       const std::function<int()>& weights, const std::string& impl = {}) {
    PlanStep s;
    s.kind = kind;
    s.impl = impl;
    s.name = op.name.empty() ? "conv2d" : op.name;
    s.inputs = {want(x, src_d)};
    s.blobs = {weights(), bias ? add_plain_blob(*bias) : -1};
    s.strides = stride;
    s.dilation = odil;
    s.pad_l = pl;
    s.pad_r = pr;
    s.post_ops = plan_post_ops(op, &dst_d, false);
    s.outputs = {produce(y, &dst_d)};
    plan_.steps.push_back(std::move(s));
  };
  // oneDNN's implementations for this convolution with the layouts left to it
  // (format_tag::any; post-ops included, they can change the choice), in oneDNN's order.
  // The descriptor and attributes outlive every primitive_desc made from them: oneDNN 2's
  // implementation iterator (next_impl) keeps a pointer to the descriptor.
  std::optional<dnnl::convolution_forward::desc> any_cd;
  dnnl::primitive_attr any_attr;
  auto any_pd = [&] {
    if (!any_cd) {
      const auto f = memory::data_type::f32;
      const auto any = memory::format_tag::any;
      memory::desc bias_d = bias ? plain_desc({o}, DType::kFloat32) : memory::desc();
      dnnl::post_ops po;
      for (const PostOp& p : op.post_ops) {
        if (p.kind == PostOp::Kind::kSum) po.append_sum(p.scale);
        else if (p.kind == PostOp::Kind::kEltwise) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      }
      any_attr.set_post_ops(po);
      any_cd.emplace(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                     memory::desc(xd, f, any), memory::desc(wdims, f, any), bias_d, memory::desc(yd, f, any), stride,
                     odil, pl, pr);
    }
    return dnnl::convolution_forward::primitive_desc(*any_cd, any_attr, cpu_engine());
  };
  // blocked: oneDNN's layouts for implementation `impl` (empty: its first choice, the
  // "blocked" tactic; else "blocked/<impl>"); otherwise plain layouts.
  auto emit_dnnl = [&](bool blocked, const std::string& impl) {
    memory::desc src_d, w_d, dst_d;
    if (blocked) {
      dnnl::convolution_forward::primitive_desc pd = any_pd();
      while (!impl.empty() && pd.impl_info_str() != impl)
        EMBER_CHECK(pd.next_impl(), ErrorCode::kUnsupported, "oneDNN has no implementation '", impl, "' here");
      src_d = pd.src_desc();
      w_d = pd.weights_desc();
      dst_d = pd.dst_desc();
    } else {
      src_d = plain(x);
      w_d = w_plain;
      dst_d = plain(y);
    }
    emit_step("conv", src_d, dst_d, [&] { return add_blob(w, w_plain, w_d); }, impl);
  };
  // The implementations after oneDNN's first choice, each its own tactic "blocked/<impl>":
  // oneDNN takes the first that accepts a descriptor, which is not always the fastest (nor
  // the cheapest to create). Its GEMM-based ones are the "plain" tactic, its reference ones
  // the "reference" tactic.
  std::vector<std::string> alternatives;
  if (fp32) {
    try {
      dnnl::convolution_forward::primitive_desc pd = any_pd();
      std::set<std::string> seen = {pd.impl_info_str()};
      while (pd.next_impl()) {
        std::string name = pd.impl_info_str();
        if (name.rfind("ref", 0) == 0 || name.find("gemm") != std::string::npos) continue;
        if (seen.insert(name).second) alternatives.push_back(name);
      }
    } catch (const dnnl::error&) {
      // No oneDNN implementation at all: "blocked" fails when timed and reports why.
    }
  }
  auto emit_ref = [&] {
    EMBER_CHECK(pad.size() == 2, ErrorCode::kUnsupported, "asymmetric padding");
    Json args = Json::array();
    args.push_back(targ("input", tensor_arg(cat("%", x))));
    args.push_back(targ("weight", tensor_arg("$0")));
    args.push_back(targ("bias", bias ? tensor_arg("$1") : Json{{"as_none", true}}));
    args.push_back(targ("stride", {{"as_ints", stride}}));
    args.push_back(targ("padding", {{"as_ints", pl}}));
    args.push_back(targ("dilation", {{"as_ints", dil}}));
    args.push_back(targ("transposed", {{"as_bool", false}}));
    args.push_back(targ("output_padding", {{"as_ints", std::vector<int64_t>{0, 0}}}));
    args.push_back(targ("groups", {{"as_int", groups}}));
    std::vector<Tensor> consts = {w};
    if (bias) consts.push_back(*bias);
    finish_ref(op, ref_step(op, "torch.ops.aten.convolution.default", std::move(args), {x}, consts));
  };
  // Winograd F(2x2, 3x3) or F(4x4, 3x3); post-ops limited to what its output transform
  // applies. It works in nhwc where its source already is in nhwc (oneDNN's AVX-512
  // convolutions and pooling write it), else in nChw8c (its AVX2 ones): either way no reorder
  // where it sits between two of oneDNN's kernels of the same kind.
  const int x_now = current_.at(x);
  const bool winograd_nhwc =
      x_now >= 0 && plan_.values[x_now].has_desc && desc_of(x_now) == winograd_layout(xd, true);
  auto emit_winograd = [&](bool compact, int tile) {
    emit_step("winograd", winograd_layout(xd, winograd_nhwc), winograd_layout(yd, winograd_nhwc), [&] {
      return add_plain_blob(compact ? winograd_filters(w) : winograd_transform_weights(w, tile));
    });
    plan_.steps.back().tile = tile;
  };
  bool winograd_post_ops = true;
  for (const PostOp& p : op.post_ops)
    winograd_post_ops = winograd_post_ops && (p.kind == PostOp::Kind::kSum ||
                                              (p.kind == PostOp::Kind::kEltwise && p.alg == "relu" && p.alpha == 0.f));
  std::vector<std::pair<std::string, Emitter>> c;
  if (fp32) {
    c.push_back({"blocked", [&] { emit_dnnl(true, {}); }});
    for (const std::string& impl : alternatives) c.push_back({"blocked/" + impl, [&, impl] { emit_dnnl(true, impl); }});
    c.push_back({"plain", [&] { emit_dnnl(false, {}); }});
    if (winograd_post_ops && winograd_supported_on_host() && winograd_fits(xd, w.sizes(), groups, stride, dil, pl, pr)) {
      c.push_back({"winograd", [&] { emit_winograd(false, 2); }});
      c.push_back({"winograd_compact", [&] { emit_winograd(true, 2); }});
      c.push_back({"winograd4x4", [&] { emit_winograd(false, 4); }});
      c.push_back({"winograd4x4_compact", [&] { emit_winograd(true, 4); }});
    }
  }
  c.push_back({"reference", emit_ref});
  (void)has_sum;
  choose(op, c);
}

void EngineBuilder::linear(const FusedOp& op) {
  int x = op.inputs[0], y = op.outputs[0];
  EMBER_CHECK(!op.constants.empty() && op.constants[0].dim() == 2 && !gdims_[x].empty(), ErrorCode::kInvalidArgument,
              g_.name, ": linear '", op.name, "' needs a weight constant [out, in]");
  const Tensor& w = op.constants[0];
  const Tensor* bias = op.constants.size() > 1 && op.constants[1].defined() ? &op.constants[1] : nullptr;
  int64_t n = w.size(0), k = w.size(1);
  EMBER_CHECK(gdims_[x].back() == k, ErrorCode::kInvalidArgument, g_.name, ": linear '", op.name, "': input ",
              shape_str(gdims_[x]), " does not match weight ", shape_str(w.sizes()));
  int64_t m = shape_numel(gdims_[x]) / std::max<int64_t>(k, 1);
  bool fp32 = f32(x) && w.dtype() == DType::kFloat32 && (!bias || bias->dtype() == DType::kFloat32);
  const auto f = memory::data_type::f32;
  auto emit = [&](bool matmul) {
    memory::desc src = plain_desc({m, k}, DType::kFloat32), dst = plain_desc({m, n}, DType::kFloat32);
    memory::desc w_src, w_any, bias_d;
    if (matmul) {
      w_src = memory::desc({k, n}, f, memory::dims{1, k});  // W^T viewed over W's bytes
      w_any = memory::desc({k, n}, f, memory::format_tag::any);
      bias_d = bias ? plain_desc({1, n}, DType::kFloat32) : memory::desc();
      dnnl::matmul::desc d(src, w_any, bias_d, dst);
      w_any = dnnl::matmul::primitive_desc(d, cpu_engine()).weights_desc();
    } else {
      w_src = plain_desc({n, k}, DType::kFloat32);
      w_any = memory::desc({n, k}, f, memory::format_tag::any);
      bias_d = bias ? plain_desc({n}, DType::kFloat32) : memory::desc();
      dnnl::inner_product_forward::desc d(dnnl::prop_kind::forward_inference, src, w_any, bias_d, dst);
      w_any = dnnl::inner_product_forward::primitive_desc(d, cpu_engine()).weights_desc();
    }
    PlanStep s;
    s.kind = matmul ? "matmul" : "inner_product";
    s.name = op.name.empty() ? "linear" : op.name;
    s.inputs = {want_plain(x)};
    s.blobs = {add_blob(w, w_src, w_any), -1};
    if (bias) {
      Tensor b = bias->contiguous();
      s.blobs[1] = add_blob(b, bias_d, bias_d);
    }
    s.post_ops = plan_post_ops(op, nullptr, true);
    s.outputs = {produce(y, nullptr)};
    plan_.steps.push_back(std::move(s));
  };
  auto emit_ref = [&] {
    Json args = Json::array();
    args.push_back(targ("input", tensor_arg(cat("%", x))));
    args.push_back(targ("weight", tensor_arg("$0")));
    args.push_back(targ("bias", bias ? tensor_arg("$1") : Json{{"as_none", true}}));
    std::vector<Tensor> consts = {w};
    if (bias) consts.push_back(*bias);
    finish_ref(op, ref_step(op, "torch.ops.aten.linear.default", std::move(args), {x}, consts));
  };
  std::vector<std::pair<std::string, Emitter>> c;
  if (fp32) {
    c.push_back({"inner_product", [&] { emit(false); }});
    c.push_back({"matmul", [&] { emit(true); }});
  }
  c.push_back({"reference", emit_ref});
  choose(op, c);
}

void EngineBuilder::matmul(const FusedOp& op) {
  int a = op.inputs[0], b = op.inputs[1], y = op.outputs[0];
  bool dnnl_ok = f32(a) && f32(b) && gdims_[a].size() == gdims_[b].size() && gdims_[a].size() >= 2 &&
                 gdims_[y].size() == gdims_[a].size();
  auto emit = [&] {
    PlanStep s;
    s.kind = "matmul";
    s.name = op.name.empty() ? "matmul" : op.name;
    s.inputs = {want_plain(a), want_plain(b)};
    s.post_ops = plan_post_ops(op, nullptr, true);
    s.outputs = {produce(y, nullptr)};
    plan_.steps.push_back(std::move(s));
  };
  auto emit_ref = [&] {
    Json args = Json::array({targ("self", tensor_arg(cat("%", a))), targ("other", tensor_arg(cat("%", b)))});
    finish_ref(op, ref_step(op, "torch.ops.aten.matmul.default", std::move(args), {a, b}, {}));
  };
  std::vector<std::pair<std::string, Emitter>> c;
  if (dnnl_ok) c.push_back({"matmul", emit});
  c.push_back({"reference", emit_ref});
  choose(op, c);
}

void EngineBuilder::pool(const FusedOp& op) {
  int x = op.inputs[0], y = op.outputs[0];
  const Shape& xd = gdims_[x];
  const Shape& yd = gdims_[y];
  EMBER_CHECK(xd.size() == 4 && yd.size() == 4, ErrorCode::kUnsupported, g_.name, ": ", op.op, " '", op.name,
              "': only 4-D (NCHW) inputs are supported");
  bool spatial_dynamic = false;
  for (int i = 2; i < 4; ++i)
    spatial_dynamic = spatial_dynamic || (!g_.values[x].symbols.empty() && !g_.values[x].symbols[i].empty());
  PlanStep s;
  s.kind = "pool";
  s.name = op.name.empty() ? op.op : op.name;
  bool dnnl_ok = f32(x) && !spatial_dynamic;
  std::string ref_target;
  Json ref_args = Json::array({targ("self", tensor_arg(cat("%", x)))});
  if (op.op == "adaptive_avg_pool2d") {
    auto out = int_list(op.attrs, "output_size", {yd[2], yd[3]}, op.name);
    s.adaptive = true;
    s.alg = "avg_exclude_pad";
    dnnl_ok = dnnl_ok && xd[2] % yd[2] == 0 && xd[3] % yd[3] == 0;
    ref_target = "torch.ops.aten.adaptive_avg_pool2d.default";
    ref_args.push_back(targ("output_size", {{"as_ints", out}}));
  } else {
    auto kernel = int_list(op.attrs, "kernel", {}, op.name);
    if (kernel.empty()) kernel = int_list(op.attrs, "kernel_size", {}, op.name);
    EMBER_CHECK(kernel.size() == 2, ErrorCode::kInvalidArgument, g_.name, ": ", op.op, " '", op.name,
                "': attribute kernel[2] is required");
    auto stride = int_list(op.attrs, "stride", kernel, op.name);
    if (stride.empty()) stride = kernel;
    auto pad = int_list(op.attrs, "padding", {0, 0}, op.name);
    auto dil = int_list(op.attrs, "dilation", {1, 1}, op.name);
    bool ceil_mode = bool_attr(op.attrs, "ceil_mode", false);
    bool max = op.op == "max_pool2d";
    bool include_pad = bool_attr(op.attrs, "count_include_pad", true);
    s.kernel = kernel;
    s.strides = stride;
    s.pad_l = pad;
    s.dilation = {dil[0] - 1, dil[1] - 1};
    s.pad_r.resize(2);
    bool extra_pad = false;
    for (int i = 0; i < 2; ++i) {
      // Right padding such that oneDNN's output size is the graph's (ceil_mode adds some).
      s.pad_r[i] = std::max<int64_t>(pad[i], (yd[2 + i] - 1) * stride[i] + dil[i] * (kernel[i] - 1) + 1 - xd[2 + i] - pad[i]);
      extra_pad = extra_pad || s.pad_r[i] > pad[i];
    }
    s.alg = max ? "max" : include_pad ? "avg_include_pad" : "avg_exclude_pad";
    if (!max && include_pad && extra_pad) dnnl_ok = false;  // PyTorch does not count ceil-mode padding
    if (int_attr(op.attrs, "divisor_override", 0) != 0) dnnl_ok = false;
    ref_target = max ? "torch.ops.aten.max_pool2d.default" : "torch.ops.aten.avg_pool2d.default";
    ref_args.push_back(targ("kernel_size", {{"as_ints", kernel}}));
    ref_args.push_back(targ("stride", {{"as_ints", stride}}));
    ref_args.push_back(targ("padding", {{"as_ints", pad}}));
    if (max) ref_args.push_back(targ("dilation", {{"as_ints", dil}}));
    ref_args.push_back(targ("ceil_mode", {{"as_bool", ceil_mode}}));
    if (!max) ref_args.push_back(targ("count_include_pad", {{"as_bool", include_pad}}));
  }
  auto emit = [&, s]() mutable {
    // Pooling works on whatever layout the input is in; the output keeps that layout.
    int in = current_.at(x);
    memory::desc src = desc_of(in);
    memory::desc dst = relayout(src, yd);
    s.inputs = {in};
    s.outputs = {produce(y, &dst)};
    plan_.steps.push_back(s);
  };
  auto emit_ref = [&] { finish_ref(op, ref_step(op, ref_target, ref_args, {x}, {})); };
  EMBER_CHECK(op.post_ops.empty(), ErrorCode::kUnsupported, g_.name, ": ", op.op, " '", op.name,
              "': post-ops are not supported on pooling");
  std::vector<std::pair<std::string, Emitter>> c;
  if (dnnl_ok) c.push_back({"onednn", emit});
  c.push_back({"reference", emit_ref});
  choose(op, c);
}

void EngineBuilder::eltwise(const FusedOp& op) {
  int x = op.inputs[0], y = op.outputs[0];
  std::string alg = str_attr(op.attrs, "alg", "");
  float alpha = static_cast<float>(float_attr(op.attrs, "alpha", 0)), beta = static_cast<float>(float_attr(op.attrs, "beta", 0));
  bool only_eltwise = std::all_of(op.post_ops.begin(), op.post_ops.end(),
                                  [](const PostOp& p) { return p.kind == PostOp::Kind::kEltwise; });
  auto emit = [&] {
    int in = current_.at(x);
    memory::desc d = desc_of(in);
    int out = produce(y, &d);
    PlanStep s;
    s.kind = "eltwise";
    s.name = op.name.empty() ? alg : op.name;
    s.alg = alg;
    s.alpha = alpha;
    s.beta = beta;
    s.inputs = {in};
    s.outputs = {out};
    plan_.steps.push_back(s);
    for (const PostOp& p : op.post_ops) {  // fused eltwise chain: applied in place
      PlanStep t = s;
      t.name = cat(s.name, "+", p.alg);
      t.alg = p.alg;
      t.alpha = p.alpha;
      t.beta = p.beta;
      t.inputs = {out};
      plan_.steps.push_back(std::move(t));
    }
  };
  auto emit_ref = [&] {
    std::string target;
    Json args = eltwise_ref_call(alg, alpha, beta, &target);
    rewrite_tensor_names(args, [&](const std::string&) { return cat("%", x); });
    finish_ref(op, ref_step(op, target, std::move(args), {x}, {}));
  };
  std::vector<std::pair<std::string, Emitter>> c;
  if (f32(x) && only_eltwise) c.push_back({"onednn", emit});
  c.push_back({"reference", emit_ref});
  choose(op, c);
}

void EngineBuilder::binary(const FusedOp& op) {
  int a = op.inputs[0], b = op.inputs[1], y = op.outputs[0];
  std::string alg = str_attr(op.attrs, "alg", "");
  bool commutative = alg == "add" || alg == "mul" || alg == "max" || alg == "min";
  if (gdims_[a] != gdims_[y] && gdims_[b] == gdims_[y] && commutative) std::swap(a, b);
  bool dnnl_ok = f32(a) && f32(b) && gdims_[a] == gdims_[y] && gdims_[b].size() <= gdims_[y].size();
  auto emit = [&] {
    int in_a = current_.at(a);
    memory::desc d = desc_of(in_a);
    int in_b = gdims_[b] == gdims_[a] ? want(b, d) : want_plain(b);
    PlanStep s;
    s.kind = "binary";
    s.name = op.name.empty() ? alg : op.name;
    s.alg = alg;
    s.inputs = {in_a, in_b};
    s.post_ops = plan_post_ops(op, &d, true);
    s.outputs = {produce(y, &d)};
    plan_.steps.push_back(std::move(s));
  };
  auto emit_ref = [&] {
    static const std::map<std::string, std::string> kTargets = {
        {"add", "torch.ops.aten.add.Tensor"}, {"sub", "torch.ops.aten.sub.Tensor"},
        {"mul", "torch.ops.aten.mul.Tensor"}, {"div", "torch.ops.aten.div.Tensor"},
        {"max", "torch.ops.aten.maximum.default"}, {"min", "torch.ops.aten.minimum.default"}};
    auto it = kTargets.find(alg);
    EMBER_CHECK(it != kTargets.end(), ErrorCode::kUnsupported, "binary alg '", alg, "'");
    int l = op.inputs[0], r = op.inputs[1];
    Json args = Json::array({targ("self", tensor_arg(cat("%", l))), targ("other", tensor_arg(cat("%", r)))});
    finish_ref(op, ref_step(op, it->second, std::move(args), {l, r}, {}));
  };
  std::vector<std::pair<std::string, Emitter>> c;
  if (dnnl_ok) c.push_back({"onednn", emit});
  c.push_back({"reference", emit_ref});
  choose(op, c);
}

void EngineBuilder::softmax(const FusedOp& op) {
  int x = op.inputs[0], y = op.outputs[0];
  bool log = op.op == "log_softmax";
  int64_t dim = int_attr(op.attrs, "dim", -1);
  auto emit = [&] {
    PlanStep s;
    s.kind = "softmax";
    s.name = op.name.empty() ? op.op : op.name;
    s.axis = dim;
    s.log = log;
    s.inputs = {want_plain(x)};
    s.outputs = {produce(y, nullptr)};
    plan_.steps.push_back(std::move(s));
  };
  auto emit_ref = [&] {
    Json args = Json::array({targ("self", tensor_arg(cat("%", x))), targ("dim", {{"as_int", dim}}),
                             targ("half_to_float", {{"as_bool", false}})});
    finish_ref(op, ref_step(op, log ? "torch.ops.aten._log_softmax.default" : "torch.ops.aten._softmax.default",
                            std::move(args), {x}, {}));
  };
  std::vector<std::pair<std::string, Emitter>> c;
  if (f32(x) && op.post_ops.empty() && !gdims_[x].empty()) c.push_back({"onednn", emit});
  c.push_back({"reference", emit_ref});
  choose(op, c);
}

void EngineBuilder::layer_norm(const FusedOp& op) {
  int x = op.inputs[0], y = op.outputs[0];
  auto shape = int_list(op.attrs, "normalized_shape", {gdims_[x].empty() ? 1 : gdims_[x].back()}, op.name);
  double eps = float_attr(op.attrs, "eps", 1e-5);
  bool has_w = bool_attr(op.attrs, "has_weight", !op.constants.empty());
  bool has_b = bool_attr(op.attrs, "has_bias", op.constants.size() > 1);
  const Tensor* w = has_w ? &op.constants.at(0) : nullptr;
  const Tensor* b = has_b ? &op.constants.at(has_w ? 1 : 0) : nullptr;
  int64_t norm = shape_numel(shape);
  bool fp32 = f32(x) && (!w || w->dtype() == DType::kFloat32) && (!b || b->dtype() == DType::kFloat32);
  auto emit = [&] {
    PlanStep s;
    s.kind = "layer_norm";
    s.name = op.name.empty() ? "layer_norm" : op.name;
    s.eps = static_cast<float>(eps);
    s.norm_size = norm;
    s.inputs = {want_plain(x)};
    s.blobs = {w ? add_plain_blob(w->contiguous().view({norm})) : -1, b ? add_plain_blob(b->contiguous().view({norm})) : -1};
    s.post_ops = plan_post_ops(op, nullptr, true);
    s.outputs = {produce(y, nullptr)};
    plan_.steps.push_back(std::move(s));
  };
  auto emit_ref = [&] {
    Json args = Json::array({targ("input", tensor_arg(cat("%", x))), targ("normalized_shape", {{"as_ints", shape}}),
                             targ("weight", w ? tensor_arg("$0") : Json{{"as_none", true}}),
                             targ("bias", b ? tensor_arg(w ? "$1" : "$0") : Json{{"as_none", true}}),
                             targ("eps", {{"as_float", eps}})});
    std::vector<Tensor> consts;
    if (w) consts.push_back(*w);
    if (b) consts.push_back(*b);
    finish_ref(op, ref_step(op, "torch.ops.aten.layer_norm.default", std::move(args), {x}, consts));
  };
  std::vector<std::pair<std::string, Emitter>> c;
  if (fp32 && op.post_ops.empty()) c.push_back({"onednn", emit});
  c.push_back({"reference", emit_ref});
  choose(op, c);
}

void EngineBuilder::reference(const FusedOp& op) {
  std::string target = str_attr(op.attrs, "target", "");
  EMBER_CHECK(!target.empty(), ErrorCode::kInvalidArgument, g_.name, ": reference op '", op.name,
              "' needs attrs.target");
  Json args = op.attrs.contains("args") ? op.attrs["args"] : Json::array();
  EMBER_CHECK(args.is_array(), ErrorCode::kInvalidArgument, g_.name, ": reference op '", op.name,
              "': attrs.args must be an array");
  // Validate against the schema now (in infer mode), so a bad call fails at build, not at run.
  const ops::OpDef& def = ops::require_op(target);
  ops::ArgResolver r;
  r.spec = [&](const std::string& name) -> ops::TensorSpec {
    EMBER_CHECK(name.size() > 1 && (name[0] == '%' || name[0] == '$'), ErrorCode::kInvalidArgument, g_.name,
                ": reference op '", op.name, "': tensor name '", name, "' must be %<value> or $<constant>");
    int id = std::stoi(name.substr(1));
    if (name[0] == '$') {
      EMBER_CHECK(id >= 0 && id < static_cast<int>(op.constants.size()), ErrorCode::kInvalidArgument, g_.name,
                  ": reference op '", op.name, "': constant ", name, " does not exist");
      return {op.constants[id].dtype(), op.constants[id].sizes()};
    }
    EMBER_CHECK(std::find(op.inputs.begin(), op.inputs.end(), id) != op.inputs.end(), ErrorCode::kInvalidArgument,
                g_.name, ": reference op '", op.name, "': value ", name, " is not among the op's inputs");
    return {g_.values[id].dtype, gdims_[id]};
  };
  r.symbol = [&](const std::string& name) -> int64_t {
    auto it = plan_.build_symbols.find(name);
    EMBER_CHECK(it != plan_.build_symbols.end(), ErrorCode::kInvalidArgument, g_.name, ": reference op '", op.name,
                "' uses symbol '", name, "' that no engine input binds");
    return it->second;
  };
  ops::OpCall call = ops::make_call_from_json(def, op.name, args, r, true);
  std::vector<ops::TensorSpec> specs = def.infer(call);
  EMBER_CHECK(specs.size() >= op.outputs.size(), ErrorCode::kInvalidArgument, g_.name, ": reference op '", op.name,
              "' (", target, ") has ", specs.size(), " tensor outputs, the graph binds ", op.outputs.size());
  for (size_t k = 0; k < op.outputs.size(); ++k) {
    const EngineValue& v = g_.values[op.outputs[k]];
    EMBER_CHECK(specs[k].dtype == v.dtype && specs[k].sizes == gdims_[op.outputs[k]], ErrorCode::kInvalidArgument,
                g_.name, ": reference op '", op.name, "' (", target, "): output ", k, " is ", dtype_name(specs[k].dtype),
                shape_str(specs[k].sizes), ", the graph says ", dtype_name(v.dtype), shape_str(gdims_[op.outputs[k]]));
  }
  std::vector<std::pair<std::string, Emitter>> c;
  std::set<int> ins(op.inputs.begin(), op.inputs.end());
  c.push_back({"reference", [&] {
                 finish_ref(op, ref_step(op, target, args, std::vector<int>(ins.begin(), ins.end()), op.constants));
               }});
  choose(op, c);
}

void EngineBuilder::finish_outputs() {
  std::set<int> used_as_output;
  for (size_t k = 0; k < g_.outputs.size(); ++k) {
    int gv = g_.outputs[k];
    EMBER_CHECK(gv >= 0 && gv < static_cast<int>(g_.values.size()), ErrorCode::kInvalidArgument, g_.name,
                ": output ", k, " is not a value id");
    int cur = current_.at(gv);
    EMBER_CHECK(cur >= 0, ErrorCode::kInvalidArgument, g_.name, ": output ", k, " ('", g_.values[gv].name,
                "') is never produced");
    int pv = -1;
    // Prefer an existing plain copy produced by a step (not an engine input, not another output).
    std::vector<int> cands = {cur};
    cands.insert(cands.end(), copies_[gv].begin(), copies_[gv].end());
    for (int c : cands) {
      const PlanValue& v = plan_.values[c];
      if (v.placement == Placement::kArena && (!v.has_desc || is_plain(v.desc)) && !used_as_output.count(c)) {
        pv = c;
        break;
      }
    }
    if (pv < 0) {
      memory::desc d = plain(gv);
      pv = add_value(cat(g_.values[gv].name, "@out", k), gv, g_.values[gv].dtype, &d);
      PlanStep s;
      s.kind = "reorder";
      s.name = cat("output ", k, " ", g_.values[gv].name);
      s.inputs = {cur};
      s.outputs = {pv};
      s.impl = "reorder";
      s.tactic = "copy";
      EMBER_CHECK(plan_.values[cur].has_desc, ErrorCode::kUnsupported, g_.name, ": output ", k, " ('",
                  g_.values[gv].name, "') of dtype ", dtype_name(g_.values[gv].dtype),
                  " is an engine input or repeated output, which only oneDNN types support");
      plan_.steps.push_back(std::move(s));
    }
    plan_.values[pv].placement = Placement::kOutput;
    plan_.values[pv].io_index = static_cast<int>(k);
    plan_.outputs.push_back(pv);
    used_as_output.insert(pv);
  }
}

void EngineBuilder::plan_memory() {
  compute_lifetimes(plan_);
  // In-place residual adds: the destination of a sum post-op takes the operand's bytes when
  // the operand dies at that step, has the same layout and is not also read by the step.
  auto root = [&](int v) { return plan_.values[v].alias >= 0 ? plan_.values[v].alias : v; };
  for (int k = 0; k < static_cast<int>(plan_.steps.size()); ++k) {
    const PlanStep& s = plan_.steps[k];
    for (const PlanPostOp& p : s.post_ops) {
      if (p.kind != "sum") continue;
      int r = p.value, d = s.outputs[0];
      const PlanValue& rv = plan_.values[r];
      const PlanValue& dv = plan_.values[d];
      bool read_by_step = std::find(s.inputs.begin(), s.inputs.end(), r) != s.inputs.end();
      if (rv.placement == Placement::kArena && dv.placement == Placement::kArena && rv.last_use == k &&
          !read_by_step && rv.desc == dv.desc && dv.alias < 0)
        plan_.values[d].alias = root(r);
    }
  }
  std::vector<int64_t> sizes, offsets;
  for (const PlanValue& v : plan_.values) sizes.push_back(value_bytes(v, v.dims, v.desc));
  plan_.arena_size = assign_arena(plan_, sizes, &offsets);
  for (size_t i = 0; i < plan_.values.size(); ++i) plan_.values[i].offset = offsets[i];
}

EngineMeta EngineBuilder::make_meta() {
  EngineMeta meta;
  meta.name = g_.name;
  meta.backend = "cpu";
  meta.target.arch = build_arch();
  for (const PlanStep& s : plan_.steps)
    if (s.kind != "reference")
      for (const std::string& f : isa_features_of_impl(s.impl)) meta.target.isa_features.insert(f);
  auto binding = [&](int gv, int k, bool input) {
    const EngineValue& v = g_.values[gv];
    EngineIoBinding b;
    b.name = v.name.empty() ? cat(input ? "input" : "output", k) : v.name;
    b.dtype = v.dtype;
    for (size_t i = 0; i < v.dims.size(); ++i) {
      EngineDim d;
      std::string sym = i < v.symbols.size() ? v.symbols[i] : "";
      if (sym.empty()) {
        d.min = d.max = v.dims[i];
      } else {
        const SymbolRange& r = g_.ranges.at(sym);
        d.min = r.min;
        d.max = r.max;
        d.symbol = sym;
      }
      b.shape.push_back(d);
    }
    return b;
  };
  for (size_t k = 0; k < g_.inputs.size(); ++k) meta.inputs.push_back(binding(g_.inputs[k], int(k), true));
  for (size_t k = 0; k < g_.outputs.size(); ++k) meta.outputs.push_back(binding(g_.outputs[k], int(k), false));
  Json ops = Json::array();
  for (const FusedOp& op : g_.ops) ops.push_back(op.op);
  Json steps = Json::array();
  for (const PlanStep& s : plan_.steps) steps.push_back(cat(s.kind, " ", s.name, ": ", s.tactic, " ", s.impl));
  meta.build_settings = Json{{"threads", opt_.threads},
                             {"time_tactics", opt_.time_tactics},
                             {"timing_iterations", opt_.timing_iterations},
                             {"timing_rounds", opt_.timing_rounds},
                             {"onednn_version", cat(dnnl_version()->major, ".", dnnl_version()->minor, ".",
                                                    dnnl_version()->patch)},
                             {"host_isa", cat(static_cast<int>(dnnl::get_effective_cpu_isa()))},
                             {"build_symbols", plan_.build_symbols},
                             {"ops", ops},
                             {"steps", steps},
                             {"arena_bytes", plan_.arena_size}};
  return meta;
}

std::shared_ptr<Storage> EngineBuilder::build() {
  ScopedThreads threads(opt_.threads);
  plan_.engine_name = g_.name;
  const int nv = static_cast<int>(g_.values.size());
  // Build-time value of each symbol: the midpoint of its range, capped at 64 (docs/cpu-backend.md).
  for (const EngineValue& v : g_.values) {
    EMBER_CHECK(v.symbols.empty() || v.symbols.size() == v.dims.size(), ErrorCode::kInvalidArgument, g_.name,
                ": value '", v.name, "': symbols must be empty or one per dim");
    for (const std::string& s : v.symbols) {
      if (s.empty() || plan_.build_symbols.count(s)) continue;
      auto it = g_.ranges.find(s);
      EMBER_CHECK(it != g_.ranges.end(), ErrorCode::kInvalidArgument, g_.name, ": symbol '", s, "' of value '", v.name,
                  "' has no range");
      int64_t lo = std::max<int64_t>(it->second.min, 0), hi = it->second.max;
      EMBER_CHECK(hi >= lo, ErrorCode::kInvalidArgument, g_.name, ": symbol '", s, "' has an empty range");
      int64_t mid = lo + (std::min<int64_t>(hi, lo + 126) - lo) / 2;
      if (mid < 1 && hi >= 1) mid = 1;
      plan_.build_symbols[s] = mid;
    }
  }
  for (const EngineValue& v : g_.values) {
    Shape d = v.dims;
    for (size_t i = 0; i < d.size(); ++i) {
      if (i < v.symbols.size() && !v.symbols[i].empty()) d[i] = plan_.build_symbols.at(v.symbols[i]);
      EMBER_CHECK(d[i] >= 0, ErrorCode::kInvalidArgument, g_.name, ": value '", v.name, "' dim ", i,
                  " is dynamic but names no symbol");
    }
    gdims_.push_back(std::move(d));
  }
  current_.assign(nv, -1);
  copies_.assign(nv, {});
  int64_t constant_bytes = 0;
  for (const FusedOp& op : g_.ops)
    for (const Tensor& c : op.constants)
      if (c.defined()) constant_bytes += c.nbytes();
  EMBER_CHECK(opt_.max_weight_growth >= 0, ErrorCode::kInvalidArgument, g_.name,
              ": max_weight_growth must be >= 0, found ", opt_.max_weight_growth);
  growth_budget_ = static_cast<int64_t>(std::min(opt_.max_weight_growth * static_cast<double>(constant_bytes), 9.0e18));
  for (size_t k = 0; k < g_.inputs.size(); ++k) {
    int gv = g_.inputs[k];
    EMBER_CHECK(gv >= 0 && gv < nv, ErrorCode::kInvalidArgument, g_.name, ": input ", k, " is not a value id");
    int pv = produce(gv, nullptr);
    plan_.values[pv].placement = Placement::kInput;
    plan_.values[pv].io_index = static_cast<int>(k);
    plan_.inputs.push_back(pv);
  }
  try {
    for (const FusedOp& op : g_.ops) emit_op(op);
  } catch (const dnnl::error& e) {
    fail(ErrorCode::kUnsupported, g_.name, ": oneDNN refused a kernel: ", e.what());
  }
  if (survey_out_) return nullptr;
  finish_outputs();
  plan_memory();
  EngineMeta meta = make_meta();

  // Weights section: every blob 64-byte aligned.
  int64_t wsize = 0;
  for (PlanBlob& b : plan_.blobs) {
    b.offset = wsize;
    wsize += (b.size + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  }
  auto weights = Storage::allocate(std::max<int64_t>(wsize, 1));
  std::memset(weights->data(), 0, std::max<int64_t>(wsize, 1));
  for (size_t i = 0; i < plan_.blobs.size(); ++i)
    if (plan_.blobs[i].size) std::memcpy(weights->data() + plan_.blobs[i].offset, blob_data_[i]->data(), plan_.blobs[i].size);
  std::string plan_text = plan_to_json(plan_).dump();
  EngineWriter writer;
  writer.set_meta(std::move(meta));
  writer.add_section(kSectionPlan, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(plan_text.data()),
                                                            plan_text.size()));
  writer.add_section(kSectionWeights, std::span<const uint8_t>(weights->data(), static_cast<size_t>(wsize)));
  return writer.write_to_storage();
}

}  // namespace

std::vector<double> collapse_ties(const std::vector<double>& ms, double tie_fraction) {
  if (ms.empty()) return {};
  const double fastest = *std::min_element(ms.begin(), ms.end());
  std::vector<double> out = ms;
  for (double& t : out)
    if (t <= fastest * (1.0 + tie_fraction)) t = fastest;
  return out;
}

std::vector<std::string> allocate_weight_growth(const std::vector<TacticSurvey>& survey, int64_t budget) {
  auto create_ms = [](const TacticSurvey& o, size_t c) { return c < o.create_ms.size() ? o.create_ms[c] : 0.0; };
  // Decisions are made for the first op of each signature (its leader) and weigh as many ops
  // as share it; a load creates the shared kernels once.
  const size_t n = survey.size();
  std::vector<size_t> leader(n);
  std::vector<double> weight(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const int64_t l = survey[i].shared_with;
    leader[i] = l >= 0 && static_cast<size_t>(l) < i ? leader[static_cast<size_t>(l)] : i;
    if (survey[leader[i]].names != survey[i].names) leader[i] = i;  // not the same candidates: decide alone
    weight[leader[i]] += 1.0;
  }
  std::vector<size_t> pick(n, 0);
  int64_t spent = 0;
  for (size_t i = 0; i < n; ++i) {
    if (leader[i] != i) continue;
    const TacticSurvey& o = survey[i];
    for (size_t c = 1; c < o.names.size(); ++c)
      if (o.growth[c] < o.growth[pick[i]] ||
          (o.growth[c] == o.growth[pick[i]] &&
           (o.ms[c] < o.ms[pick[i]] || (o.ms[c] == o.ms[pick[i]] && create_ms(o, c) < create_ms(o, pick[i])))))
        pick[i] = c;
    if (!o.names.empty()) spent += static_cast<int64_t>(weight[i]) * o.growth[pick[i]];
  }
  for (;;) {
    size_t best_i = 0, best_c = 0;
    double best_ratio = 0, best_saved = 0;
    bool found = false;
    for (size_t i = 0; i < n; ++i) {
      if (leader[i] != i) continue;
      const TacticSurvey& o = survey[i];
      for (size_t c = 0; c < o.names.size(); ++c) {
        const double saved = weight[i] * (o.ms[pick[i]] - o.ms[c]);
        const int64_t extra = static_cast<int64_t>(weight[i]) * (o.growth[c] - o.growth[pick[i]]);
        if (saved <= 0 || spent + extra > budget) continue;
        const double ratio = extra <= 0 ? std::numeric_limits<double>::infinity() : saved / static_cast<double>(extra);
        if (!found || ratio > best_ratio || (ratio == best_ratio && saved > best_saved)) {
          best_i = i, best_c = c, best_ratio = ratio, best_saved = saved, found = true;
        }
      }
    }
    if (!found) break;
    spent += static_cast<int64_t>(weight[best_i]) * (survey[best_i].growth[best_c] - survey[best_i].growth[pick[best_i]]);
    pick[best_i] = best_c;
  }
  std::vector<std::string> out(n);
  for (size_t i = 0; i < n; ++i)
    if (!survey[i].names.empty()) out[i] = survey[i].names[pick[leader[i]]];
  return out;
}

namespace {
bool has_dynamic_dims(const EngineGraph& g) {
  for (int v : g.inputs)
    for (const std::string& sym : g.values.at(v).symbols)
      if (!sym.empty()) return true;
  return false;
}

// Median run time (ms) of each of several engines of the same graph, loaded like any engine
// and run on the same random inputs, interleaved over BuildOptions::timing_rounds rounds (the
// order rotating each round); each keeps its fastest round.
std::vector<double> time_engines(const EngineGraph& g, const std::vector<std::shared_ptr<Storage>>& files,
                                 const BuildOptions& o) {
  std::vector<Tensor> inputs;
  std::mt19937 rng(4321);
  for (int v : g.inputs) {
    const EngineValue& ev = g.values.at(v);
    Tensor t = Tensor::empty(ev.dims, ev.dtype);
    fill_timing_data(t.raw_data(), static_cast<int64_t>(t.nbytes()), ev.dtype, rng);
    inputs.push_back(std::move(t));
  }
  std::vector<std::shared_ptr<const Engine>> engines;
  for (const auto& f : files) engines.push_back(Engine::load(f, g.name));
  RunOptions ro;
  ro.threads = o.threads;
  const size_t n = engines.size();
  std::vector<double> best(n, std::numeric_limits<double>::infinity());
  for (const auto& e : engines)
    for (int i = 0; i < 2; ++i) e->run(inputs, ro);  // warm-up: first-touch of buffers and weights
  const int runs = std::max(3, o.timing_iterations * 2);
  for (int round = 0; round < std::max(1, o.timing_rounds); ++round) {
    for (size_t k = 0; k < n; ++k) {
      const size_t which = (k + static_cast<size_t>(round)) % n;
      std::vector<double> ms;
      for (int i = 0; i < runs; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        engines[which]->run(inputs, ro);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::nth_element(ms.begin(), ms.begin() + static_cast<ptrdiff_t>(ms.size() / 2), ms.end());
      best[which] = std::min(best[which], ms[ms.size() / 2]);
    }
  }
  return best;
}

}  // namespace

std::vector<std::string> consistent_layout_decisions(const std::vector<OpSurvey>& survey,
                                                     const std::vector<std::string>& decisions, MoveWinograd winograd) {
  auto moves = [winograd](const std::string& d) {
    if (d.starts_with("blocked/")) return true;
    if (!d.starts_with("winograd")) return false;
    return winograd == MoveWinograd::kAll || (winograd == MoveWinograd::kSmallTiles && !d.starts_with("winograd4x4"));
  };
  std::vector<std::string> alt = decisions;
  for (size_t i = 0; i < survey.size() && i < decisions.size(); ++i) {
    if (!moves(decisions[i])) continue;
    const OpSurvey& sv = survey[i];
    auto index = [&](const std::string& name) -> int64_t {
      for (size_t c = 0; c < sv.names.size(); ++c)
        if (sv.names[c] == name) return static_cast<int64_t>(c);
      return -1;
    };
    const int64_t first = index("blocked"), picked = index(decisions[i]);
    const size_t known = std::min(sv.ms.size(), sv.growth.size());
    if (first < 0 || picked < 0 || static_cast<size_t>(std::max(first, picked)) >= known) continue;
    if (!std::isfinite(sv.ms[first]) || sv.growth[first] > sv.growth[picked]) continue;
    alt[i] = "blocked";
  }
  return alt;
}

TacticSurveyResult survey_tactics(const EngineGraph& graph, const BuildOptions& options) {
  TacticSurveyResult r;
  EngineBuilder pass1(graph, options);
  pass1.survey_into(&r.survey);
  pass1.build();
  r.budget = pass1.growth_budget();
  return r;
}

std::shared_ptr<Storage> build_engine(const EngineGraph& graph, const BuildOptions& options) {
  if (!options.time_tactics) {  // untimed: the first candidate that works and fits, in graph order
    EngineBuilder b(graph, options);
    return b.build();
  }
  // Timed: pass 1 times every candidate of every op (each after the fastest picks before
  // it), the budget is then allocated over the whole graph, and pass 2 emits those
  // decisions without timing again.
  const TacticSurveyResult r = survey_tactics(graph, options);
  return build_decided(graph, options, r.survey, allocate_weight_growth(r.survey, r.budget));
}

std::shared_ptr<Storage> build_decided(const EngineGraph& graph, const BuildOptions& options,
                                       const std::vector<TacticSurvey>& survey,
                                       const std::vector<std::string>& decisions) {
  // Pass 2 emits the decisions. Its progress lines wait until the whole-engine check below
  // has chosen which build they describe.
  auto build_with = [&](const std::vector<std::string>& d, const std::vector<std::string>* notes,
                        std::vector<std::string>* lines) {
    BuildOptions o = options;
    o.progress = [lines](const std::string& line) { lines->push_back(line); };
    EngineBuilder b(graph, o);
    b.follow(&survey, &d, notes);
    return b.build();
  };
  std::vector<std::string> lines;
  std::shared_ptr<Storage> bytes = build_with(decisions, nullptr, &lines);
  // Up to three alternatives: oneDNN's first choice for the convolutions decided on another
  // of its implementations; then also for those decided on Ember's Winograd kernels
  // (Winograd's blocked layout costs reorders around it that its own timing did not see);
  // then for the F(2x2, 3x3) ones only, keeping F(4x4, 3x3), which gains more per layer.
  // Alternatives identical to the per-op decisions or to an earlier alternative are not
  // built (so the last exists only where both kinds of Winograd decision do).
  struct Alternative {
    std::vector<std::string> decisions;
    MoveWinograd winograd = MoveWinograd::kNone;  // Winograd decisions moved too
    size_t changed = 0;
    std::shared_ptr<Storage> bytes;
    std::vector<std::string> lines;
  };
  std::vector<Alternative> alts;
  if (!has_dynamic_dims(graph)) {
    for (MoveWinograd w : {MoveWinograd::kNone, MoveWinograd::kAll, MoveWinograd::kSmallTiles}) {
      std::vector<std::string> d = consistent_layout_decisions(survey, decisions, w);
      bool seen = d == decisions;
      for (const Alternative& a : alts) seen = seen || d == a.decisions;
      if (!seen) alts.push_back({std::move(d), w, 0, nullptr, {}});
    }
  }
  auto winograd_words = [](MoveWinograd w) -> std::string {
    switch (w) {
      case MoveWinograd::kSmallTiles: return "Winograd F(2x2, 3x3) included";
      case MoveWinograd::kAll: return "Winograd included";
      default: return {};
    }
  };
  if (!alts.empty()) {
    // The check only ever chooses among working engines: when an alternative cannot be
    // built, loaded or run, the per-op decisions stand.
    std::vector<double> times;
    try {
      std::vector<std::shared_ptr<Storage>> files = {bytes};
      for (Alternative& a : alts) {
        std::vector<std::string> notes(a.decisions.size());
        for (size_t i = 0; i < a.decisions.size(); ++i)
          if (a.decisions[i] != decisions[i]) {
            notes[i] = cat("whole-engine check: oneDNN's first choice instead of ", decisions[i]);
            ++a.changed;
          }
        a.bytes = build_with(a.decisions, &notes, &a.lines);
        files.push_back(a.bytes);
      }
      times = time_engines(graph, files, options);
    } catch (const std::exception& e) {
      times.clear();
      log_warning(graph.name, ": whole-engine check skipped (building or timing the engines failed): ", e.what());
    }
    if (!times.empty()) {
      size_t best = 0;
      for (size_t k = 1; k < times.size(); ++k)
        if (times[k] < times[best]) best = k;
      std::string msg = cat(graph.name, ": whole-engine check: as decided per op ", times[0], " ms");
      for (size_t k = 0; k < alts.size(); ++k) {
        const size_t n = alts[k].changed;
        msg += cat("; with oneDNN's first choice for the ", n, " convolution", n == 1 ? "" : "s", " decided on ",
                   alts[k].winograd != MoveWinograd::kNone
                       ? cat("another implementation (", winograd_words(alts[k].winograd), ") ")
                       : std::string("another of its implementations "),
                   times[k + 1], " ms");
      }
      msg += ": kept ";
      if (best == 0) {
        msg += "the per-op decisions";
      } else {
        Alternative& a = alts[best - 1];
        msg += a.winograd != MoveWinograd::kNone ? cat("oneDNN's first choices, ", winograd_words(a.winograd))
                                                 : std::string("oneDNN's first choices");
        bytes = std::move(a.bytes);
        lines = std::move(a.lines);
      }
      lines.push_back(msg);
    }
  }
  for (const std::string& line : lines) {
    if (options.progress) options.progress(line);
  }
  return bytes;
}

bool supports(const FusedOp& op, const std::vector<EngineValue>& values, std::string* reason) {
  auto no = [&](const std::string& why) {
    if (reason) *reason = why;
    return false;
  };
  static const std::set<std::string> kOps = {"conv2d",  "linear",  "matmul",     "max_pool2d", "avg_pool2d",
                                             "adaptive_avg_pool2d", "eltwise", "binary", "softmax",
                                             "log_softmax", "layer_norm", "reference"};
  if (!kOps.count(op.op)) return no(cat("op kind '", op.op, "' is not implemented by the CPU backend"));
  for (int v : op.inputs)
    if (v < 0 || v >= static_cast<int>(values.size())) return no(cat("input ", v, " is not a value"));
  if (op.op == "reference") {
    std::string target = op.attrs.contains("target") && op.attrs["target"].is_string()
                             ? op.attrs["target"].get<std::string>()
                             : std::string();
    if (!ops::Registry::global().find(target)) return no(cat("op '", target, "' has no reference kernel"));
    return true;
  }
  if (op.op == "eltwise") {
    std::string alg = str_attr(op.attrs, "alg", "");
    std::string target;
    try {
      eltwise_ref_call(alg, 0, 0, &target);
    } catch (const Error&) {
      if (values[op.inputs[0]].dtype != DType::kFloat32) return no(cat("eltwise '", alg, "' needs float32"));
    }
  }
  return true;
}

}  // namespace ember::cpu
