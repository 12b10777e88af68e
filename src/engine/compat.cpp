// Compatibility policy for engines (docs/engine-format.md, "Compatibility").
#include <algorithm>
#include <nlohmann/json.hpp>

#include "ember/engine.h"
#include "ember/log.h"
#include "ember/version.h"

namespace ember {
namespace {

std::string version_str(uint16_t major, uint16_t minor) { return cat(major, ".", minor); }

std::string runtime_format_str() {
  return cat(kEngineFormatMajor, ".", kEngineFormatMinor, " (reads ", kEngineFormatMajor, ".0 to ", kEngineFormatMajor,
             ".", kEngineFormatMinor, ")");
}

CompatFinding format_finding(uint16_t major, uint16_t minor) {
  CompatFinding f;
  f.what = "engine format";
  f.expected = version_str(major, minor);
  f.found = runtime_format_str();
  if (major != kEngineFormatMajor) {
    f.severity = CompatSeverity::kError;
    f.code = ErrorCode::kVersionMismatch;
    f.found += "; format major differs";
  } else if (minor > kEngineFormatMinor) {
    f.severity = CompatSeverity::kError;
    f.code = ErrorCode::kVersionMismatch;
    f.found += "; engine format is newer";
  }
  return f;
}

std::string describe(const CompatFinding& f) { return cat(f.what, ": expected ", f.expected, ", found ", f.found); }

std::string engine_label(const CompatReport& r) { return r.engine.empty() ? "(unnamed)" : r.engine; }

}  // namespace

const char* compat_severity_name(CompatSeverity s) {
  switch (s) {
    case CompatSeverity::kOk:
      return "OK";
    case CompatSeverity::kWarning:
      return "WARN";
    case CompatSeverity::kError:
      return "ERROR";
  }
  return "?";
}

bool CompatReport::compatible() const { return count(CompatSeverity::kError) == 0; }

size_t CompatReport::count(CompatSeverity s) const {
  return static_cast<size_t>(
      std::count_if(findings.begin(), findings.end(), [s](const CompatFinding& f) { return f.severity == s; }));
}

CompatReport check_compatibility(const EngineMeta& meta, const TargetDescriptor& host, const std::string& source) {
  CompatReport r;
  r.source = source;
  r.engine = meta.name;
  r.host = target_str(host);

  r.findings.push_back(format_finding(meta.format_major, meta.format_minor));

  {
    CompatFinding f;
    f.what = "Ember version";
    f.expected = meta.ember_version;
    f.found = EMBER_VERSION_STRING;
    if (meta.ember_version != EMBER_VERSION_STRING) {
      f.severity = CompatSeverity::kWarning;
      f.found += " (differs from the building Ember; loading anyway)";
    }
    r.findings.push_back(std::move(f));
  }

  const bool arch_matches = meta.target.arch == host.arch;
  {
    CompatFinding f;
    f.what = "architecture";
    f.expected = meta.target.arch;
    f.found = host.arch;
    if (!arch_matches) {
      f.severity = CompatSeverity::kError;
      f.code = ErrorCode::kIncompatibleTarget;
    }
    r.findings.push_back(std::move(f));
  }

  // ISA features only mean something within one architecture; across architectures the
  // arch row already says everything.
  if (arch_matches) {
    std::set<std::string> missing;
    for (const auto& feature : meta.target.isa_features) {
      if (!host.has_feature(feature)) missing.insert(feature);
    }
    CompatFinding f;
    f.what = "ISA features";
    f.expected = features_str(meta.target.isa_features);
    if (missing.empty()) {
      f.found = meta.target.isa_features.empty() ? "nothing required" : "all present";
    } else {
      f.severity = CompatSeverity::kError;
      f.code = ErrorCode::kIncompatibleTarget;
      f.found = "missing " + features_str(missing);
    }
    r.findings.push_back(std::move(f));
  }

  if (meta.target.has_cuda()) {
    const std::string want_sm = cat(meta.target.cuda_sm_major, ".", meta.target.cuda_sm_minor);
    CompatFinding sm;
    sm.what = "CUDA SM";
    sm.expected = want_sm;
    if (!host.has_cuda()) {
      sm.found = "no CUDA device";
      sm.severity = CompatSeverity::kError;
      sm.code = ErrorCode::kIncompatibleTarget;
    } else {
      sm.found = cat(host.cuda_sm_major, ".", host.cuda_sm_minor);
      if (host.cuda_sm_major != meta.target.cuda_sm_major || host.cuda_sm_minor != meta.target.cuda_sm_minor) {
        sm.severity = CompatSeverity::kError;
        sm.code = ErrorCode::kIncompatibleTarget;
      }
    }
    const bool sm_matches = sm.severity == CompatSeverity::kOk;
    r.findings.push_back(std::move(sm));
    if (sm_matches) {
      CompatFinding dev;
      dev.what = "CUDA device";
      dev.expected = meta.target.cuda_device_name;
      dev.found = host.cuda_device_name;
      if (dev.expected != dev.found) {
        dev.severity = CompatSeverity::kWarning;
        dev.found += " (same SM, different device; tuned choices may be slower)";
      }
      r.findings.push_back(std::move(dev));
    }
  }
  return r;
}

void enforce(const CompatReport& report) {
  std::string errors;
  ErrorCode code = ErrorCode::kOk;
  for (const auto& f : report.findings) {
    if (f.severity == CompatSeverity::kWarning) {
      log_warning(report.source, ": engine '", engine_label(report), "': ", describe(f));
    } else if (f.severity == CompatSeverity::kError) {
      errors += (errors.empty() ? "" : "; ") + describe(f);
      if (f.code == ErrorCode::kVersionMismatch) {
        code = ErrorCode::kVersionMismatch;
      } else if (code == ErrorCode::kOk) {
        code = f.code == ErrorCode::kOk ? ErrorCode::kIncompatibleTarget : f.code;
      }
    }
  }
  if (!errors.empty()) {
    fail(code, report.source, ": engine '", engine_label(report), "' cannot run here (host ", report.host,
         "): ", errors);
  }
}

EngineView load_engine(std::shared_ptr<Storage> bytes, std::string source, const TargetDescriptor& host,
                       EngineVerification verification) {
  EngineView view = EngineView::parse(std::move(bytes), std::move(source), verification);
  enforce(check_compatibility(view.meta(), host, view.source()));
  return view;
}

std::string format_report(const CompatReport& report) {
  size_t what_width = 0, expected_width = 0;
  for (const auto& f : report.findings) {
    what_width = std::max(what_width, f.what.size());
    expected_width = std::max(expected_width, f.expected.size());
  }
  auto pad = [](const std::string& s, size_t w) { return s + std::string(w > s.size() ? w - s.size() : 0, ' '); };
  std::string out = cat(report.source, ": engine '", engine_label(report), "'\n  host: ", report.host, "\n");
  for (const auto& f : report.findings) {
    out += cat("  ", pad(compat_severity_name(f.severity), 6), pad(f.what, what_width + 2), "expected ",
               pad(f.expected, expected_width + 2), "found ", f.found, "\n");
  }
  const size_t errors = report.count(CompatSeverity::kError), warnings = report.count(CompatSeverity::kWarning);
  out += cat("  result: ", errors ? "incompatible" : "compatible", " (", errors, " error", errors == 1 ? "" : "s", ", ",
             warnings, " warning", warnings == 1 ? "" : "s", ")\n");
  return out;
}

nlohmann::json report_to_json(const CompatReport& report) {
  nlohmann::json findings = nlohmann::json::array();
  for (const auto& f : report.findings) {
    findings.push_back({{"severity", compat_severity_name(f.severity)},
                        {"what", f.what},
                        {"expected", f.expected},
                        {"found", f.found}});
  }
  return {{"source", report.source},
          {"engine", report.engine},
          {"host", report.host},
          {"compatible", report.compatible()},
          {"errors", report.count(CompatSeverity::kError)},
          {"warnings", report.count(CompatSeverity::kWarning)},
          {"findings", std::move(findings)}};
}

std::vector<EngineCheckResult> check_engines(const std::vector<EngineSource>& engines, const TargetDescriptor& host) {
  std::vector<EngineCheckResult> results;
  for (const auto& e : engines) {
    EngineCheckResult r;
    r.source = e.source;
    r.name = e.name;
    try {
      EMBER_CHECK(e.bytes != nullptr, ErrorCode::kInvalidArgument, e.source, ": no engine bytes");
      EngineFormatVersion v = peek_engine_format({e.bytes->data(), e.bytes->nbytes()}, e.source);
      if (v.major != kEngineFormatMajor) {
        // The layout of another major cannot be read; the version itself is the finding.
        r.readable = true;
        r.report.source = e.source;
        r.report.engine = e.name;
        r.report.host = target_str(host);
        r.report.findings.push_back(format_finding(v.major, v.minor));
      } else {
        EngineView view = EngineView::parse(e.bytes, e.source, EngineVerification::kFull);
        r.report = check_compatibility(view.meta(), host, e.source);
        if (!e.name.empty()) r.report.engine = e.name;
        if (r.name.empty()) r.name = view.meta().name;
        r.readable = true;
      }
    } catch (const Error& err) {
      r.readable = false;
      r.error_code = err.code();
      r.error_message = err.what();
    }
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace ember
