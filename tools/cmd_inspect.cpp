// `ember inspect FILE [--json]`: what a .pt2 / .ep archive holds, without running it.
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "ember/format.h"
#include "ember/pt2.h"
#include "ember/runtime.h"

namespace ember::cli {
namespace {

using Json = nlohmann::ordered_json;

std::string strip(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// "torch.ops.aten.conv2d.default" -> "aten.conv2d.default"
std::string short_target(const std::string& target) {
  const std::string prefix = "torch.ops.";
  return target.rfind(prefix, 0) == 0 ? target.substr(prefix.size()) : target;
}

Json dim_json(const DimInfo& d) {
  if (!d.is_symbolic) return d.value;
  Json j;
  j["symbol"] = d.symbol;
  if (!d.is_expression) {
    j["min"] = d.min;
    if (d.max != INT64_MAX) j["max"] = d.max; else j["max"] = nullptr;
  }
  if (d.hint) j["hint"] = *d.hint;
  return j;
}

Json tensor_info_json(const TensorInfo& t) {
  Json j;
  j["name"] = t.name;
  if (t.name != t.graph_name) j["graph_name"] = t.graph_name;
  if (!t.is_tensor) {
    j["kind"] = t.graph_name == "None" ? "None" : "non-tensor";
    return j;
  }
  j["dtype"] = dtype_name(t.dtype);
  Json dims = Json::array();
  for (const DimInfo& d : t.sizes) dims.push_back(dim_json(d));
  j["shape"] = dims;
  return j;
}

// Counts and bytes of the tensors bound to the program's parameters/buffers/constants.
struct TensorGroup {
  size_t count = 0;
  uint64_t bytes = 0;
};

Json describe_model(const Pt2Model& model, const std::string& source) {
  const ir::ExportedProgram& ep = model.program;
  Json m;
  m["name"] = model.name;
  m["schema_version"] = cat(ep.schema_version.major, ".", ep.schema_version.minor);
  m["torch_version"] = ep.torch_version;
  m["verifiers"] = ep.verifiers;

  ProgramIo io = describe_io(ep);
  Json inputs = Json::array(), outputs = Json::array();
  for (const TensorInfo& t : io.inputs) inputs.push_back(tensor_info_json(t));
  for (const TensorInfo& t : io.outputs) outputs.push_back(tensor_info_json(t));
  m["inputs"] = inputs;
  m["outputs"] = outputs;
  if (const ir::ModuleCallSignature* root = ep.root_call_signature()) {
    m["in_spec"] = ir::treespec_str(ir::parse_treespec(root->in_spec, source + ": in_spec"));
    m["out_spec"] = ir::treespec_str(ir::parse_treespec(root->out_spec, source + ": out_spec"));
  }
  Json ranges = Json::object();
  for (const auto& [sym, r] : ep.range_constraints) {
    Json jr;
    jr["min"] = r.min_val ? Json(*r.min_val) : Json(nullptr);
    jr["max"] = r.max_val ? Json(*r.max_val) : Json(nullptr);
    ranges[sym] = jr;
  }
  m["range_constraints"] = ranges;

  std::map<std::string, size_t> histogram;
  size_t engines = 0;
  for (const ir::Node& n : ep.graph_module.graph.nodes) {
    ++histogram[short_target(n.target)];
    if (n.target == "torch.ops.ember.execute_engine.default") ++engines;
  }
  Json ops = Json::object();
  // Most frequent first, then by name.
  std::vector<std::pair<std::string, size_t>> sorted(histogram.begin(), histogram.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.second > b.second; });
  for (auto& [t, c] : sorted) ops[t] = c;
  m["nodes"] = ep.graph_module.graph.nodes.size();
  m["ops"] = ops;
  m["engines"] = engines;

  TensorGroup params, buffers, constants;
  std::set<const Storage*> storages;
  uint64_t stored_bytes = 0;
  for (const ir::InputSpec& spec : ep.graph_module.signature.input_specs) {
    const Pt2TensorEntry* e = nullptr;
    TensorGroup* g = nullptr;
    switch (spec.kind) {
      case ir::InputKind::kParameter: e = model.find_weight(spec.target); g = &params; break;
      case ir::InputKind::kBuffer:
        e = model.find_weight(spec.target);
        if (!e) e = model.find_constant(spec.target);
        g = &buffers;
        break;
      case ir::InputKind::kTensorConstant: e = model.find_constant(spec.target); g = &constants; break;
      default: break;
    }
    if (!g) continue;
    ++g->count;
    if (e && e->tensor.defined()) {
      g->bytes += e->tensor.nbytes();
      if (storages.insert(e->tensor.storage().get()).second) stored_bytes += e->tensor.storage()->nbytes();
    } else if (e) {
      g->bytes += e->blob.size();
      stored_bytes += e->blob.size();
    }
  }
  auto group = [](const TensorGroup& g) {
    Json j;
    j["count"] = g.count;
    j["bytes"] = g.bytes;
    return j;
  };
  m["parameters"] = group(params);
  m["buffers"] = group(buffers);
  m["constants"] = group(constants);
  m["stored_tensor_bytes"] = stored_bytes;
  return m;
}

std::string dims_text(const Json& shape) {
  std::string s = "[";
  bool first = true;
  for (const Json& d : shape) {
    if (!first) s += ", ";
    first = false;
    if (d.is_number()) {
      s += std::to_string(d.get<int64_t>());
    } else {
      s += d["symbol"].get<std::string>();
      if (d.contains("min")) {
        s += cat(" in ", d["min"].get<int64_t>(), "..",
                 d["max"].is_null() ? std::string("inf") : std::to_string(d["max"].get<int64_t>()));
      }
    }
  }
  return s + "]";
}

void print_text(const Json& report) {
  std::printf("file        %s (%s)\n", report["file"].get<std::string>().c_str(),
              human_bytes(report["file_bytes"].get<uint64_t>()).c_str());
  const Json& a = report["archive"];
  std::printf("archive     format %s, archive_version %s, data version %s, byteorder %s, root '%s'\n",
              a["format"].get<std::string>().c_str(), a["version"].get<std::string>().c_str(),
              a["data_version"].get<std::string>().c_str(), a["byteorder"].get<std::string>().c_str(),
              a["root"].get<std::string>().c_str());
  for (const Json& m : report["models"]) {
    std::printf("\nmodel '%s'  schema %s, torch %s, verifiers", m["name"].get<std::string>().c_str(),
                m["schema_version"].get<std::string>().c_str(), m["torch_version"].get<std::string>().c_str());
    for (const Json& v : m["verifiers"]) std::printf(" %s", v.get<std::string>().c_str());
    std::printf("\n");
    std::printf("  inputs (%zu)%s%s\n", m["inputs"].size(), m.contains("in_spec") ? "  pytree " : "",
                m.contains("in_spec") ? m["in_spec"].get<std::string>().c_str() : "");
    for (const Json& t : m["inputs"]) {
      std::printf("    %-20s %s\n", t["name"].get<std::string>().c_str(),
                  t.contains("dtype") ? (t["dtype"].get<std::string>() + " " + dims_text(t["shape"])).c_str()
                                      : "non-tensor");
    }
    std::printf("  outputs (%zu)%s%s\n", m["outputs"].size(), m.contains("out_spec") ? "  pytree " : "",
                m.contains("out_spec") ? m["out_spec"].get<std::string>().c_str() : "");
    for (const Json& t : m["outputs"]) {
      std::printf("    %-20s %s\n", t["name"].get<std::string>().c_str(),
                  t.contains("dtype") ? (t["dtype"].get<std::string>() + " " + dims_text(t["shape"]) +
                                         (t.contains("graph_name") ? "  (" + t["graph_name"].get<std::string>() + ")" : ""))
                                            .c_str()
                                      : t["kind"].get<std::string>().c_str());
    }
    std::printf("  ops (%zu nodes", m["nodes"].get<size_t>());
    if (m["engines"].get<size_t>() > 0) std::printf(", %zu engines", m["engines"].get<size_t>());
    std::printf(")\n");
    for (auto& [op, count] : m["ops"].items()) std::printf("    %5zu  %s\n", count.get<size_t>(), op.c_str());
    for (const char* g : {"parameters", "buffers", "constants"}) {
      std::printf("  %-11s %zu tensors, %s\n", g, m[g]["count"].get<size_t>(),
                  human_bytes(m[g]["bytes"].get<uint64_t>()).c_str());
    }
    std::printf("  stored      %s of tensor data (shared storages counted once)\n",
                human_bytes(m["stored_tensor_bytes"].get<uint64_t>()).c_str());
  }
  if (!report["other_entries"].empty()) {
    std::printf("\nother entries\n");
    for (const Json& e : report["other_entries"])
      std::printf("    %s (%s)\n", e["name"].get<std::string>().c_str(), human_bytes(e["bytes"].get<uint64_t>()).c_str());
  }
}

}  // namespace

void add_inspect_command(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("inspect", "Show what a .pt2 / .ep archive (or a packaged .so) holds: inputs, outputs, ops, weights");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("file", *path, "The archive (.pt2 or .ep) or a packaged model (.so)")->required();
  cmd->add_flag("--json", *json, "Print a machine-readable report");
  cmd->callback([path, json, exit_code] {
    Pt2Archive archive = read_archive_or_package(*path);
    Json report;
    report["file"] = *path;
    report["file_bytes"] = static_cast<uint64_t>(std::filesystem::file_size(*path));
    Json a;
    a["root"] = archive.root;
    a["format"] = archive.archive_format;
    a["version"] = archive.archive_version;
    a["data_version"] = strip(archive.data_version);
    a["byteorder"] = archive.byteorder;
    a["serialization_id"] = strip(archive.serialization_id);
    report["archive"] = a;
    Json models = Json::array();
    for (const Pt2Model& m : archive.models) models.push_back(describe_model(m, *path + ":" + m.name));
    report["models"] = models;
    Json others = Json::array();
    for (const auto& [name, blob] : archive.other_entries) {
      Json e;
      e["name"] = name;
      e["bytes"] = blob.size();
      others.push_back(e);
    }
    report["other_entries"] = others;
    if (*json) {
      std::printf("%s\n", report.dump(2).c_str());
    } else {
      print_text(report);
    }
    *exit_code = 0;
  });
}

}  // namespace ember::cli
