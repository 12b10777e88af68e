// package_program: read the archive and the plan, write blobs + glue source, run the
// system C++ compiler, rename the result into place.
#include "package/package.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>

#include "ember/archive.h"
#include "ember/error.h"
#include "ember/format.h"
#include "ember/version.h"

extern char** environ;

namespace ember::package {
namespace fs = std::filesystem;
namespace {

constexpr const char* kRuntimeLibrary = "libember_runtime.so";
constexpr const char* kSampleInputsPrefix = "data/sample_inputs/";
constexpr const char* kEngineTarget = "torch.ops.ember.execute_engine.default";
// How much of a failing compiler's output goes into the error message.
constexpr size_t kCompilerOutputTail = 4000;

#ifndef EMBER_PACKAGE_RUNTIME_DIR
#define EMBER_PACKAGE_RUNTIME_DIR ""
#endif
#ifndef EMBER_PACKAGE_INCLUDE_DIR
#define EMBER_PACKAGE_INCLUDE_DIR ""
#endif

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// `name` itself when it holds a '/', else the first PATH folder where it is executable.
std::optional<std::string> which(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string::npos) return is_executable_file(name) ? std::optional(name) : std::nullopt;
  std::string path = env_or_empty("PATH");
  size_t start = 0;
  while (start <= path.size()) {
    size_t colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return std::nullopt;
}

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// The folder of the running executable (install-relative lookups).
std::string executable_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

std::string shell_quote(const std::string& word) {
  if (!word.empty() &&
      word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=/.,:@") ==
          std::string::npos)
    return word;
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string join_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& w : argv) out += (out.empty() ? "" : " ") + shell_quote(w);
  return out;
}

struct CommandResult {
  int exit_status = -1;  // exit code, or -signal
  std::string output;    // stdout and stderr together
};

// Runs argv (no shell) and collects its stdout + stderr.
CommandResult run_command(const std::vector<std::string>& argv) {
  int fds[2];
  EMBER_CHECK(::pipe2(fds, O_CLOEXEC) == 0, ErrorCode::kIo, "cannot create a pipe: ", std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    fail(ErrorCode::kIo, "cannot run ", argv[0], ": ", std::strerror(rc));
  }
  CommandResult result;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
    // Keep the tail only: a compiler can print a lot.
    if (result.output.size() > 1 << 20) result.output.erase(0, result.output.size() - (1 << 19));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return result;
}

std::string tail_of(const std::string& text, size_t n) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

// The folder holding libember_runtime.so.
std::string find_runtime_dir(const std::string& requested) {
  auto has_lib = [](const std::string& dir) { return !dir.empty() && fs::exists(fs::path(dir) / kRuntimeLibrary); };
  // An explicit choice is used or reported, never silently replaced.
  for (const auto& [dir, from] :
       {std::pair{requested, "--runtime-dir"}, std::pair{env_or_empty("EMBER_RUNTIME_DIR"), "EMBER_RUNTIME_DIR"}}) {
    if (dir.empty()) continue;
    EMBER_CHECK(has_lib(dir), ErrorCode::kNotFound, kRuntimeLibrary, " not found in '", dir, "' (from ", from, ")");
    return fs::absolute(dir).lexically_normal().string();
  }
  std::vector<std::string> tried;
  std::string exe_dir = executable_dir();
  for (const std::string& dir :
       {std::string(EMBER_PACKAGE_RUNTIME_DIR), exe_dir.empty() ? std::string() : exe_dir + "/../lib"}) {
    if (dir.empty()) continue;
    if (has_lib(dir)) return fs::absolute(dir).lexically_normal().string();
    tried.push_back(dir);
  }
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  fail(ErrorCode::kNotFound, kRuntimeLibrary, " not found (looked in: ", list.empty() ? "nowhere" : list,
       "); build the ember_runtime target, or pass --runtime-dir / set EMBER_RUNTIME_DIR");
}

// The folder holding ember/package_abi.h (and ember/ember.h).
std::string find_include_dir(const std::string& requested) {
  auto has_headers = [](const std::string& dir) {
    return !dir.empty() && fs::exists(fs::path(dir) / "ember/package_abi.h") &&
           fs::exists(fs::path(dir) / "ember/ember.h");
  };
  if (!requested.empty()) {
    EMBER_CHECK(has_headers(requested), ErrorCode::kNotFound, "ember/package_abi.h and ember/ember.h not found in '",
                requested, "'");
    return fs::absolute(requested).lexically_normal().string();
  }
  std::vector<std::string> tried;
  std::string exe_dir = executable_dir();
  for (const std::string& dir :
       {std::string(EMBER_PACKAGE_INCLUDE_DIR), exe_dir.empty() ? std::string() : exe_dir + "/../include"}) {
    if (dir.empty()) continue;
    if (has_headers(dir)) return fs::absolute(dir).lexically_normal().string();
    tried.push_back(dir);
  }
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  fail(ErrorCode::kNotFound,
       "Ember's C headers (ember/package_abi.h) not found (looked in: ", list.empty() ? "nowhere" : list, ")");
}

// A folder removed (with its contents) when the object goes, unless kept.
class ScratchDir {
 public:
  ScratchDir() = default;
  ~ScratchDir() {
    if (!path_.empty() && !keep_) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  void make_temporary() {
    std::string pattern = (fs::temp_directory_path() / "ember-package-XXXXXX").string();
    EMBER_CHECK(::mkdtemp(pattern.data()) != nullptr, ErrorCode::kIo, "cannot create a temporary folder ", pattern,
                ": ", std::strerror(errno));
    path_ = pattern;
  }
  void use(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    EMBER_CHECK(!ec && fs::is_directory(dir), ErrorCode::kIo, "cannot create the folder '", dir, "': ", ec.message());
    path_ = fs::absolute(dir).lexically_normal().string();
    keep_ = true;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool keep_ = false;
};

// A temporary output next to the destination, removed unless committed.
class TempOutput {
 public:
  explicit TempOutput(const std::string& destination) : destination_(destination) {
    fs::path dest(destination);
    fs::path dir = dest.parent_path().empty() ? fs::path(".") : dest.parent_path();
    std::string pattern = (dir / ("." + dest.filename().string() + ".tmp-XXXXXX")).string();
    int fd = ::mkstemp(pattern.data());
    EMBER_CHECK(fd >= 0, ErrorCode::kIo, destination,
                ": cannot create a temporary file next to it: ", std::strerror(errno));
    ::close(fd);
    path_ = pattern;
  }
  ~TempOutput() {
    if (!committed_) ::unlink(path_.c_str());
  }
  void commit() {
    // The compiler creates the file with the usual mode; make sure it is readable like any
    // library regardless of mkstemp's 0600.
    ::chmod(path_.c_str(), 0755 & ~current_umask());
    EMBER_CHECK(::rename(path_.c_str(), destination_.c_str()) == 0, ErrorCode::kIo, destination_,
                ": cannot rename the finished library into place: ", std::strerror(errno));
    committed_ = true;
  }
  const std::string& path() const { return path_; }

 private:
  static mode_t current_umask() {
    mode_t m = ::umask(0);
    ::umask(m);
    return m;
  }
  std::string destination_;
  std::string path_;
  bool committed_ = false;
};

void write_file(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  EMBER_CHECK(out.good(), ErrorCode::kIo, "cannot write ", path);
  if (size > 0) out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  EMBER_CHECK(out.good(), ErrorCode::kIo, "cannot write ", size, " bytes to ", path);
}

// The name of the model to package: the requested one, or the archive's only one, or "model".
std::string model_name_of(const ZipReader& zip, const std::string& root, const std::string& requested) {
  if (!requested.empty()) return requested;
  const std::string prefix = root + "/models/";
  std::vector<std::string> names;
  for (const ZipEntry& e : zip.entries()) {
    if (e.name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string rest = e.name.substr(prefix.size());
    if (rest.size() > 5 && rest.find('/') == std::string::npos && rest.compare(rest.size() - 5, 5, ".json") == 0)
      names.push_back(rest.substr(0, rest.size() - 5));
  }
  return names.size() == 1 ? names[0] : std::string("model");
}

}  // namespace

std::vector<std::string> find_cxx(const std::string& requested) {
  if (!requested.empty()) {
    std::vector<std::string> words = split_words(requested);
    std::optional<std::string> found = words.empty() ? std::nullopt : which(words[0]);
    EMBER_CHECK(found.has_value(), ErrorCode::kNotFound, "no C++ compiler found: tried '", requested,
                "' (--cxx), which is not an executable file",
                requested.find('/') == std::string::npos ? " on PATH" : "");
    words[0] = *found;
    return words;
  }
  std::vector<std::string> tried;
  std::string env = env_or_empty("CXX");
  std::vector<std::string> env_words = split_words(env);
  if (!env_words.empty()) {
    if (auto found = which(env_words[0])) {
      env_words[0] = *found;
      return env_words;
    }
    tried.push_back("$CXX (" + env + ")");
  }
  for (const char* name : {"c++", "g++", "clang++"}) {
    if (auto found = which(name)) return {*found};
    tried.push_back(name);
  }
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  fail(ErrorCode::kNotFound, "no C++ compiler found: tried ", list, " on PATH; install one, set CXX or pass --cxx");
}

std::vector<std::string> glue_compile_command(const std::vector<std::string>& cxx, const std::string& source,
                                              const std::string& output, const std::vector<std::string>& include_dirs,
                                              const std::string& runtime_dir) {
  std::vector<std::string> argv = cxx;
  for (const char* flag : {"-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden"}) argv.push_back(flag);
  for (const auto& dir : include_dirs) argv.push_back("-I" + dir);
  argv.push_back(source);
  argv.push_back("-o");
  argv.push_back(output);
  argv.push_back("-L" + runtime_dir);
  argv.push_back("-lember_runtime");
  // The library next to the model first, then the runtime it was packaged against.
  for (const std::string& flag :
       {std::string("-Wl,--as-needed"), std::string("-Wl,-rpath,$ORIGIN"), "-Wl,-rpath," + runtime_dir,
        std::string("-Wl,-z,noexecstack"), std::string("-Wl,--no-undefined")})
    argv.push_back(flag);
  return argv;
}

std::string PackageReport::to_string() const {
  std::ostringstream s;
  s << "package " << input << " -> " << output << "\n";
  s << "  entries:   " << entries << " embedded (" << human_bytes(entry_bytes) << ")";
  if (skipped_entries)
    s << ", " << skipped_entries << " left out (sample inputs, " << human_bytes(skipped_bytes) << ")";
  s << "\n";
  s << "  schedule:  " << steps << " steps (" << engine_steps << " engine calls, " << steps - engine_steps
    << " fallback nodes), " << released_values << " values released\n";
  s << "  compiler:  " << compiler;
  if (!compiler_version.empty()) s << " (" << compiler_version << ")";
  s << ", " << std::fixed;
  s.precision(2);
  s << compile_seconds << " s\n";
  s << "  runtime:   " << runtime_dir << "/" << kRuntimeLibrary << "\n";
  if (!source_dir.empty()) s << "  source:    " << source_dir << " (glue.cpp, blobs, build.sh)\n";
  s << "  output:    " << human_bytes(output_bytes) << "\n";
  return s.str();
}

PackageReport package_program(const std::string& ep_path, const std::string& so_path, const PackageOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](const std::string& msg) {
    if (options.progress) options.progress(msg);
  };
  EMBER_CHECK(!so_path.empty(), ErrorCode::kInvalidArgument, "no output path given");
  PackageReport report;
  report.input = ep_path;
  report.output = so_path;

  // Everything that can fail cheaply first: the archive, the compiler, the runtime.
  std::shared_ptr<ZipReader> zip = ZipReader::open(ep_path);
  EMBER_CHECK(!zip->entries().empty(), ErrorCode::kCorrupt, ep_path, ": the zip archive has no entries");
  const std::string& first = zip->entries().front().name;
  size_t slash = first.find('/');
  EMBER_CHECK(slash != std::string::npos && slash > 0, ErrorCode::kCorrupt, ep_path, ": entry '", first,
              "' is not inside a root folder (expected <root>/...)");
  const std::string root = first.substr(0, slash);
  std::vector<std::string> cxx = find_cxx(options.cxx);
  std::string runtime_dir = find_runtime_dir(options.runtime_dir);
  std::string include_dir = find_include_dir(options.include_dir);
  report.compiler = join_command(cxx);
  report.runtime_dir = runtime_dir;

  // The schedule, without creating engines (the program may target another machine).
  LoadOptions load;
  load.model_name = options.model_name;
  load.prepare_kernels = false;
  Program program = Program::load(ep_path, load);
  GlueSpec spec;
  spec.ember_version = EMBER_VERSION_STRING;
  spec.source = fs::path(ep_path).filename().string();
  spec.archive_root = root;
  spec.model_name = model_name_of(*zip, root, options.model_name);
  spec.plan = program.plan();
  report.steps = spec.plan.size();
  {
    std::set<std::string> released;
    for (const PlanStep& step : spec.plan) {
      if (step.target == kEngineTarget) ++report.engine_steps;
      released.insert(step.release.begin(), step.release.end());
    }
    report.released_values = released.size();
  }
  progress(cat("plan: ", report.steps, " steps (", report.engine_steps, " engine calls)"));

  // Blobs: one file per embedded entry, decompressed.
  ScratchDir scratch;
  if (options.emit_source_dir.empty()) {
    scratch.make_temporary();
  } else {
    scratch.use(options.emit_source_dir);
    report.source_dir = scratch.path();
  }
  const std::string blob_dir = scratch.path() + "/blobs";
  fs::create_directories(blob_dir);
  for (const ZipEntry& e : zip->entries()) {
    std::string rel = e.name.size() > root.size() ? e.name.substr(root.size() + 1) : std::string();
    EMBER_CHECK(e.name.compare(0, root.size() + 1, root + "/") == 0, ErrorCode::kCorrupt, ep_path, ": entry '", e.name,
                "' is outside the root folder '", root, "/' that the other entries share");
    if (rel.empty() || e.is_directory() || rel.compare(0, std::strlen(kSampleInputsPrefix), kSampleInputsPrefix) == 0) {
      ++report.skipped_entries;
      report.skipped_bytes += e.uncompressed_size;
      continue;
    }
    std::shared_ptr<Storage> bytes = zip->read(e, /*verify_crc=*/true);
    GlueEntry g;
    g.name = rel;
    g.size = bytes->nbytes();
    g.blob_path = cat(blob_dir, "/entry_", spec.entries.size(), ".bin");
    write_file(g.blob_path, bytes->data(), bytes->nbytes());
    report.entry_bytes += g.size;
    spec.entries.push_back(std::move(g));
  }
  report.entries = spec.entries.size();
  progress(cat("embedding ", report.entries, " entries (", human_bytes(report.entry_bytes), ")"));

  const std::string source_path = scratch.path() + "/glue.cpp";
  std::string source = generate_glue_source(spec);
  write_file(source_path, source.data(), source.size());

  // Compile into a temporary file next to the destination, then rename it into place.
  TempOutput temp(so_path);
  std::vector<std::string> include_dirs = {include_dir};
  report.compile_command = glue_compile_command(cxx, source_path, temp.path(), include_dirs, runtime_dir);
  if (!options.emit_source_dir.empty()) {
    // build.sh rebuilds the library from the kept files, straight to the destination.
    std::vector<std::string> argv =
        glue_compile_command(cxx, source_path, fs::absolute(so_path).string(), include_dirs, runtime_dir);
    std::string script = "#!/bin/sh\n# Rebuilds " + fs::path(so_path).filename().string() +
                         " from glue.cpp and blobs/ (generated by `ember package`).\nset -e\n" + join_command(argv) +
                         "\n";
    write_file(scratch.path() + "/build.sh", script.data(), script.size());
    ::chmod((scratch.path() + "/build.sh").c_str(), 0755);
  }
  CommandResult version = run_command({cxx[0], "--version"});
  if (version.exit_status == 0) report.compiler_version = version.output.substr(0, version.output.find('\n'));
  progress(cat("compiling with ", report.compiler, report.compiler_version.empty() ? "" : " (", report.compiler_version,
               report.compiler_version.empty() ? "" : ")"));
  auto c0 = std::chrono::steady_clock::now();
  CommandResult compiled = run_command(report.compile_command);
  report.compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
  EMBER_CHECK(compiled.exit_status == 0, ErrorCode::kIo, "compiling the package of ", ep_path, " failed (",
              compiled.exit_status < 0 ? cat("killed by signal ", -compiled.exit_status)
                                       : cat("exit status ", compiled.exit_status),
              "): ", join_command(report.compile_command), "\n", tail_of(compiled.output, kCompilerOutputTail));
  report.output_bytes = fs::file_size(temp.path());
  temp.commit();
  report.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace ember::package
