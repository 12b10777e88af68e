// `ember run`: run a program on given or random inputs, compare with reference outputs,
// report latency (trtexec style).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "ember/error.h"
#include "ember/profile.h"
#include "ember/runtime.h"
#include "ember/safetensors.h"
#include "ops/kernels/parallel.h"

namespace ember::cli {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct RunOptions {
  std::string model;
  std::string model_name;
  std::string inputs;
  std::string compare;
  double rtol = 1e-4;
  double atol = 1e-4;
  int iterations = 0;
  int warmup = 1;
  int threads = 0;
  bool json = false;
  bool profile = false;
  std::string save_outputs;
  std::vector<std::string> shapes;
  uint64_t seed = 0;
};

struct Case {
  int64_t index = 0;
  std::vector<Tensor> inputs;
  std::vector<Tensor> references;  // empty: nothing to compare with
};

// "x:2x3" -> ("x", {2, 3}); "x:2x3,y:4" accepted as separate entries too.
std::map<std::string, Shape> parse_shapes(const std::vector<std::string>& specs) {
  std::map<std::string, Shape> out;
  for (const std::string& all : specs) {
    size_t start = 0;
    while (start <= all.size()) {
      size_t comma = all.find(',', start);
      std::string spec = all.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      start = comma == std::string::npos ? all.size() + 1 : comma + 1;
      if (spec.empty()) continue;
      size_t colon = spec.rfind(':');
      EMBER_CHECK(colon != std::string::npos && colon > 0, ErrorCode::kInvalidArgument, "--shapes '", spec,
                  "': expected NAME:DIMxDIM..., e.g. x:4x32");
      Shape shape;
      std::string dims = spec.substr(colon + 1);
      size_t p = 0;
      while (p <= dims.size() && !dims.empty()) {
        size_t x = dims.find('x', p);
        std::string d = dims.substr(p, x == std::string::npos ? std::string::npos : x - p);
        char* end = nullptr;
        long long v = std::strtoll(d.c_str(), &end, 10);
        EMBER_CHECK(!d.empty() && end == d.c_str() + d.size() && v >= 0, ErrorCode::kInvalidArgument, "--shapes '",
                    spec, "': '", d, "' is not a dimension");
        shape.push_back(v);
        if (x == std::string::npos) break;
        p = x + 1;
      }
      out[spec.substr(0, colon)] = shape;
    }
  }
  return out;
}

Tensor random_tensor(const Shape& shape, DType dtype, std::mt19937_64& rng) {
  Tensor t = Tensor::empty(shape, dtype);
  std::uniform_real_distribution<double> real(-1.0, 1.0);
  std::uniform_int_distribution<int> small(0, 9);
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = dtype_is_floating(dtype) ? real(rng) : dtype == DType::kBool ? small(rng) % 2 : small(rng);
    set_element_from_double(t, i, v);
  }
  return t;
}

std::vector<Tensor> random_inputs(const Program& program, const std::map<std::string, Shape>& shapes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Tensor> out;
  for (const TensorInfo& info : program.inputs()) {
    EMBER_CHECK(info.is_tensor, ErrorCode::kUnsupported, "input '", info.name,
                "' is not a tensor; random inputs are made for tensor inputs only");
    Shape shape;
    auto it = shapes.find(info.name);
    if (it == shapes.end()) it = shapes.find(info.graph_name);
    if (it != shapes.end()) {
      shape = it->second;
    } else {
      for (const DimInfo& d : info.sizes) {
        if (!d.is_symbolic) {
          shape.push_back(d.value);
        } else {
          int64_t v = d.hint.value_or(std::max<int64_t>(d.min, 1));
          shape.push_back(std::clamp(v, d.min, d.max));
        }
      }
    }
    out.push_back(random_tensor(shape, info.dtype, rng));
  }
  return out;
}

// Inputs from a file that does not follow the case convention: in0, in1, ... or input names.
std::vector<Tensor> named_inputs(const Program& program, const SafetensorsFile& file, const std::string& path) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < program.inputs().size(); ++i) {
    const TensorInfo& info = program.inputs()[i];
    const Tensor* t = file.find(cat("in", i));
    if (!t) t = file.find(info.name);
    if (!t) t = file.find(info.graph_name);
    EMBER_CHECK(t != nullptr, ErrorCode::kNotFound, path, ": no tensor for input ", i, " '", info.name,
                "' (looked for keys 'in", i, "', '", info.name, "', case0.in.", i, ")");
    out.push_back(*t);
  }
  return out;
}

std::vector<Tensor> named_outputs(const Program& program, const SafetensorsFile& file) {
  std::vector<Tensor> out;
  for (size_t j = 0; j < program.outputs().size(); ++j) {
    const Tensor* t = file.find(cat("out", j));
    if (!t) t = file.find(program.outputs()[j].name);
    if (!t) return {};
    out.push_back(*t);
  }
  return out;
}

std::vector<Case> collect_cases(const Program& program, const RunOptions& o) {
  std::vector<Case> cases;
  std::optional<SafetensorsFile> compare;
  std::optional<std::vector<ReferenceCase>> compare_cases;
  if (!o.compare.empty()) {
    compare = read_safetensors(o.compare);
    compare_cases = group_reference_cases(*compare, o.compare);
  }
  std::string inputs_path = o.inputs.empty() && compare_cases ? o.compare : o.inputs;
  if (!inputs_path.empty()) {
    SafetensorsFile in = inputs_path == o.compare ? *compare : read_safetensors(inputs_path);
    auto in_cases = group_reference_cases(in, inputs_path);
    if (in_cases) {
      for (const ReferenceCase& rc : *in_cases) cases.push_back(Case{rc.index, rc.inputs, {}});
    } else {
      cases.push_back(Case{0, named_inputs(program, in, inputs_path), {}});
    }
  } else {
    cases.push_back(Case{0, random_inputs(program, parse_shapes(o.shapes), o.seed), {}});
  }
  if (compare) {
    for (Case& c : cases) {
      if (compare_cases) {
        auto it = std::find_if(compare_cases->begin(), compare_cases->end(),
                               [&](const ReferenceCase& rc) { return rc.index == c.index; });
        EMBER_CHECK(it != compare_cases->end(), ErrorCode::kNotFound, o.compare, ": no reference outputs for case ",
                    c.index);
        c.references = it->outputs;
      } else {
        c.references = named_outputs(program, *compare);
      }
      // References list tensor leaves; PyTorch's tree_flatten drops None leaves, so a file
      // may hold only the tensor outputs: line them up with the program's tensor outputs.
      size_t tensor_outputs = 0;
      for (const TensorInfo& t : program.outputs()) tensor_outputs += t.is_tensor;
      if (c.references.size() == tensor_outputs && tensor_outputs != program.outputs().size()) {
        std::vector<Tensor> aligned;
        size_t k = 0;
        for (const TensorInfo& t : program.outputs()) aligned.push_back(t.is_tensor ? c.references[k++] : Tensor());
        c.references = std::move(aligned);
      }
      EMBER_CHECK(c.references.size() == program.outputs().size(), ErrorCode::kInvalidArgument, o.compare,
                  ": case ", c.index, " has ", c.references.size(), " reference outputs, the program has ",
                  program.outputs().size(), " (", tensor_outputs, " of them tensors)");
    }
  }
  return cases;
}

struct Comparison {
  bool pass = true;
  bool shape_ok = true;
  double max_abs = 0;
  double max_rel = 0;
  int64_t mismatches = 0;
};

Comparison compare_tensors(const Tensor& got, const Tensor& want, double rtol, double atol) {
  Comparison c;
  if (got.dtype() != want.dtype() || got.sizes() != want.sizes()) {
    c.pass = c.shape_ok = false;
    return c;
  }
  bool exact = !dtype_is_floating(want.dtype());
  for (int64_t i = 0; i < want.numel(); ++i) {
    double g = element_as_double(got, i), w = element_as_double(want, i);
    if (std::isnan(g) && std::isnan(w)) continue;
    double err = std::fabs(g - w);
    if (std::isnan(err)) err = INFINITY;
    double rel = err == 0 ? 0 : err / std::max(std::fabs(w), 1e-30);
    c.max_abs = std::max(c.max_abs, err);
    c.max_rel = std::max(c.max_rel, rel);
    bool ok = exact ? err == 0 : err <= atol + rtol * std::fabs(w);
    if (!ok) ++c.mismatches;
  }
  c.pass = c.mismatches == 0;
  return c;
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  double pos = p / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

// `runs` profiled runs of `program`: per step (engine step or interpreter node, in execution
// order) the median and mean time and the share of the summed medians. Prints a table
// unless `quiet`; returns the JSON form.
Json profile_runs(const Program& program, const std::vector<Tensor>& inputs, int runs, bool quiet) {
  Profile profile;
  {
    ProfileScope scope(profile);
    for (int i = 0; i < runs; ++i) program.run_flat(inputs);
  }
  struct Step {
    const ProfileEntry* first;
    std::vector<double> ms;
  };
  std::vector<Step> steps;
  std::map<std::tuple<std::string, std::string, std::string>, size_t> index;
  for (const ProfileEntry& e : profile.entries) {
    auto [it, inserted] = index.emplace(std::make_tuple(e.engine, e.name, e.kind), steps.size());
    if (inserted) steps.push_back({&e, {}});
    steps[it->second].ms.push_back(e.ms);
  }
  double total = 0;
  std::vector<double> medians;
  for (Step& s : steps) {
    std::sort(s.ms.begin(), s.ms.end());
    medians.push_back(percentile(s.ms, 50));
    total += medians.back();
  }
  Json out = {{"runs", runs}, {"total_median_ms", total}, {"steps", Json::array()}};
  if (!quiet)
    std::printf("[I] === Profile (%d runs; median per step, each step timed on its own) ===\n"
                "[I]     #   median ms  share   kind          impl                              step\n",
                runs);
  for (size_t i = 0; i < steps.size(); ++i) {
    const ProfileEntry& e = *steps[i].first;
    double mean = 0;
    for (double v : steps[i].ms) mean += v;
    mean /= static_cast<double>(steps[i].ms.size());
    const double share = total > 0 ? 100.0 * medians[i] / total : 0;
    const std::string where = e.engine.empty() ? e.name : e.engine + "/" + e.name;
    out["steps"].push_back({{"engine", e.engine}, {"name", e.name}, {"kind", e.kind}, {"impl", e.impl},
                            {"median_ms", medians[i]}, {"mean_ms", mean}, {"share_percent", share}});
    if (!quiet)
      std::printf("[I] %5zu %11.3f %5.1f%%   %-13s %-33s %s\n", i + 1, medians[i], share, e.kind.c_str(),
                  e.impl.c_str(), where.c_str());
  }
  if (!quiet) std::printf("[I] Profile total: %.3f ms (sum of the step medians)\n", total);
  return out;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

int run_command(const RunOptions& o) {
  if (o.threads > 0) ops::set_num_threads(o.threads);
  Json report;
  report["model"] = o.model;
  auto t0 = Clock::now();
  LoadOptions lo;
  lo.model_name = o.model_name;
  Program program = Program::load(o.model, lo);
  double load_ms = ms_since(t0);
  report["load_ms"] = load_ms;
  if (!o.json) {
    std::printf("[I] Model: %s (%zu nodes)\n", o.model.c_str(), program.num_nodes());
    for (const TensorInfo& in : program.inputs())
      std::printf("[I] Input  '%s': %s\n", in.name.c_str(), in.to_string().c_str());
    for (const TensorInfo& out : program.outputs())
      std::printf("[I] Output '%s': %s\n", out.name.c_str(), out.to_string().c_str());
    std::printf("[I] Load time: %.3f ms\n", load_ms);
  }

  std::vector<Case> cases = collect_cases(program, o);
  bool all_pass = true;
  bool compared = false;
  Json jcases = Json::array();
  std::vector<std::pair<std::string, Tensor>> saved;
  double first_run_ms = 0;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    auto t1 = Clock::now();
    std::vector<Tensor> outputs = program.run_flat(c.inputs);
    double run_ms = ms_since(t1);
    if (ci == 0) first_run_ms = run_ms;
    Json jc;
    jc["index"] = c.index;
    jc["run_ms"] = run_ms;
    std::string in_shapes;
    for (const Tensor& t : c.inputs) in_shapes += (in_shapes.empty() ? "" : ", ") + t.to_string();
    jc["inputs"] = Json::array();
    for (const Tensor& t : c.inputs) jc["inputs"].push_back({{"dtype", dtype_name(t.dtype())}, {"shape", t.sizes()}});
    if (!o.json) std::printf("[I] Case %lld: inputs %s (%.3f ms)\n", static_cast<long long>(c.index), in_shapes.c_str(), run_ms);
    Json jouts = Json::array();
    for (size_t j = 0; j < outputs.size(); ++j) {
      const Tensor& out = outputs[j];
      Json jo;
      jo["index"] = j;
      jo["name"] = j < program.outputs().size() ? program.outputs()[j].name : cat("out", j);
      jo["dtype"] = out.defined() ? dtype_name(out.dtype()) : "none";
      jo["shape"] = out.defined() ? out.sizes() : Shape{};
      std::string line = cat("[I]   output ", j, " '", jo["name"].get<std::string>(), "': ", out.to_string());
      if (!c.references.empty() && c.references[j].defined()) {
        compared = true;
        Comparison cmp = compare_tensors(out, c.references[j], o.rtol, o.atol);
        all_pass = all_pass && cmp.pass;
        jo["max_abs_err"] = cmp.max_abs;
        jo["max_rel_err"] = cmp.max_rel;
        jo["mismatches"] = cmp.mismatches;
        jo["pass"] = cmp.pass;
        if (!cmp.shape_ok) {
          jo["expected"] = c.references[j].to_string();
          line += cat("  expected ", c.references[j].to_string(), "  FAIL (dtype/shape)");
        } else {
          line += cat("  max abs err ", fmt(cmp.max_abs), "  max rel err ", fmt(cmp.max_rel), "  ",
                      cmp.pass ? "PASS" : cat("FAIL (", cmp.mismatches, " of ", out.numel(), " elements)"));
        }
      }
      if (!o.json) std::printf("%s\n", line.c_str());
      jouts.push_back(jo);
      if (!o.save_outputs.empty() && out.defined()) saved.emplace_back(cat("case", c.index, ".out.", j), out);
    }
    if (!o.save_outputs.empty())
      for (size_t i = 0; i < c.inputs.size(); ++i) saved.emplace_back(cat("case", c.index, ".in.", i), c.inputs[i]);
    jc["outputs"] = jouts;
    jcases.push_back(jc);
  }
  report["first_run_ms"] = first_run_ms;
  report["cases"] = jcases;
  if (compared) {
    report["rtol"] = o.rtol;
    report["atol"] = o.atol;
    report["passed"] = all_pass;
  }
  if (!o.save_outputs.empty()) {
    std::stable_sort(saved.begin(), saved.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    write_safetensors(o.save_outputs, saved);
    if (!o.json) std::printf("[I] Saved outputs to %s\n", o.save_outputs.c_str());
  }

  if (o.iterations > 0) {
    const std::vector<Tensor>& inputs = cases.front().inputs;
    for (int i = 0; i < o.warmup; ++i) program.run_flat(inputs);
    std::vector<double> times;
    times.reserve(static_cast<size_t>(o.iterations));
    auto total0 = Clock::now();
    for (int i = 0; i < o.iterations; ++i) {
      auto t = Clock::now();
      program.run_flat(inputs);
      times.push_back(ms_since(t));
    }
    double total_ms = ms_since(total0);
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    double mean = 0;
    for (double t : times) mean += t;
    mean /= static_cast<double>(times.size());
    double qps = total_ms > 0 ? 1000.0 * static_cast<double>(times.size()) / total_ms : 0;
    Json lat = {{"iterations", o.iterations}, {"warmup", o.warmup},
                {"min", sorted.front()},      {"max", sorted.back()},
                {"mean", mean},               {"median", percentile(sorted, 50)},
                {"p90", percentile(sorted, 90)}, {"p95", percentile(sorted, 95)},
                {"p99", percentile(sorted, 99)}};
    report["latency_ms"] = lat;
    report["throughput_qps"] = qps;
    report["threads"] = ops::num_threads();
    if (!o.json) {
      std::printf("[I] === Performance summary (%d iterations, %d warm-up, %d threads) ===\n", o.iterations, o.warmup,
                  ops::num_threads());
      std::printf("[I] Load time: %.3f ms\n", load_ms);
      std::printf("[I] First run: %.3f ms\n", first_run_ms);
      std::printf("[I] Throughput: %.3f qps\n", qps);
      std::printf(
          "[I] Latency: min = %.3f ms, max = %.3f ms, mean = %.3f ms, median = %.3f ms, percentile(90%%) = %.3f ms, "
          "percentile(95%%) = %.3f ms, percentile(99%%) = %.3f ms\n",
          sorted.front(), sorted.back(), mean, percentile(sorted, 50), percentile(sorted, 90), percentile(sorted, 95),
          percentile(sorted, 99));
    }
  }
  if (o.profile) report["profile"] = profile_runs(program, cases.front().inputs, std::max(o.iterations, 10), o.json);
  if (o.json) std::cout << report.dump(2) << std::endl;
  if (compared && !o.json) std::printf("[I] Result: %s\n", all_pass ? "PASSED" : "FAILED");
  return compared && !all_pass ? 1 : 0;
}

}  // namespace

void add_run_command(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run a .pt2 program on inputs; compare outputs; measure latency");
  cmd->add_option("model", options->model, "The .pt2 file")->required();
  cmd->add_option("--model-name", options->model_name, "Model inside the archive (default: model, or the only one)");
  cmd->add_option("--inputs", options->inputs,
                  "Inputs (.safetensors): case{K}.in.{I} keys (every case runs), in0/in1/..., or input names");
  cmd->add_option("--compare", options->compare,
                  "Reference outputs (.safetensors): case{K}.out.{J}, out0/out1/... or output names; "
                  "also supplies the inputs when --inputs is absent and it holds case{K}.in.{I} keys");
  cmd->add_option("--rtol", options->rtol, "Relative tolerance (default 1e-4)");
  cmd->add_option("--atol", options->atol, "Absolute tolerance (default 1e-4); integers compare exactly");
  cmd->add_option("--iterations", options->iterations, "Timed runs for the latency report")->check(CLI::NonNegativeNumber);
  cmd->add_option("--warmup", options->warmup, "Untimed runs before timing (default 1)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", options->threads, "Kernel threads (default: EMBER_NUM_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", options->json, "Print a machine-readable JSON report instead of text");
  cmd->add_flag("--profile", options->profile,
                "Per-step timings: after the timed runs, max(--iterations, 10) more runs with every engine step and "
                "interpreter node timed; prints each step's median and share");
  cmd->add_option("--save-outputs", options->save_outputs,
                  "Write inputs and outputs as case{K}.in.{I} / case{K}.out.{J} to this .safetensors file");
  cmd->add_option("--shapes", options->shapes,
                  "Shapes of random inputs, NAME:DIMxDIM (e.g. x:4x32); dynamic dims default to the export hint");
  cmd->add_option("--seed", options->seed, "Seed for random inputs (default 0)");
  cmd->callback([options, exit_code] { *exit_code = run_command(*options); });
}

}  // namespace ember::cli
