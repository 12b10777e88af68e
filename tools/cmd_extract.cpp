// ember extract MODEL.ep [--engine I|NAME] [--model-name NAME] -o x.engine
//
// Copies one engine out of an .ep archive into a standalone engine file (checked first:
// every section checksum). Without --engine the archive must hold exactly one engine;
// otherwise the error lists the engines there are.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "ember/compiler.h"
#include "ember/engine.h"
#include "ember/error.h"
#include "ember/pt2.h"

namespace ember::cli {
namespace {

struct ExtractOptions {
  std::string file;
  std::string engine;
  std::string model_name;
  std::string output;
};

int run_extract(const ExtractOptions& o) {
  Pt2Archive archive = read_pt2(o.file);
  const Pt2Model* model = nullptr;
  if (!o.model_name.empty()) {
    model = archive.find_model(o.model_name);
    EMBER_CHECK(model != nullptr, ErrorCode::kNotFound, o.file, ": no model '", o.model_name, "'");
  } else {
    model = archive.find_model("model");
    if (!model) {
      EMBER_CHECK(archive.models.size() == 1, ErrorCode::kInvalidArgument, o.file, ": holds ", archive.models.size(),
                  " models; choose one with --model-name");
      model = &archive.models[0];
    }
  }
  auto engines = list_engines(*model);
  EMBER_CHECK(!engines.empty(), ErrorCode::kNotFound, o.file, ": model '", model->name,
              "' has no execute_engine node (not a compiled .ep?)");
  std::string listing;
  for (size_t i = 0; i < engines.size(); ++i)
    listing += cat("\n  ", i, ": ", engines[i].first, " (", engines[i].second->nbytes(), " bytes)");
  size_t pick = engines.size();
  if (o.engine.empty()) {
    EMBER_CHECK(engines.size() == 1, ErrorCode::kInvalidArgument, o.file, ": holds ", engines.size(),
                " engines; choose one with --engine INDEX|NAME:", listing);
    pick = 0;
  } else {
    for (size_t i = 0; i < engines.size(); ++i)
      if (engines[i].first == o.engine || cat(i) == o.engine) pick = i;
    EMBER_CHECK(pick < engines.size(), ErrorCode::kNotFound, o.file, ": no engine '", o.engine,
                "'; the engines are:", listing);
  }
  const std::string source = cat(o.file, ":", engines[pick].first);
  // Check before writing: every section checksum, and a compatibility summary.
  EngineView::parse(engines[pick].second, source, EngineVerification::kFull);
  write_engine_file(o.output, *engines[pick].second);
  std::printf("extracted %s (%zu bytes) to %s\n", engines[pick].first.c_str(), engines[pick].second->nbytes(),
              o.output.c_str());
  return 0;
}

}  // namespace

void add_extract_command(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<ExtractOptions>();
  CLI::App* cmd = app.add_subcommand("extract", "Copy one engine out of a compiled .ep into an .engine file");
  cmd->add_option("file", o->file, "The .ep file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--engine", o->engine, "Engine index or name (default: the only engine)");
  cmd->add_option("--model-name", o->model_name, "Model inside the archive (default: model, or the only one)");
  cmd->add_option("-o,--output", o->output, "Output .engine file")->required();
  cmd->callback([o, exit_code] { *exit_code = run_extract(*o); });
}

}  // namespace ember::cli
